//! Issue 6, `POST /add`: multipart uploads are imported into the embedded
//! node with exactly Kubo's CIDs, pinned for the caller, served to Kubo, and
//! refused clearly when bad or too large; CAR imports; `pincluster-ctl add`.

use std::path::Path;
use std::time::Duration;

use pincluster_tests::*;
use reqwest::blocking::multipart::{Form, Part};
use serde_json::{json, Value};
use sha2::Digest;

use crate::rest::{ctl_err, ctl_ok, multiaddr_of};

const KIB: usize = 1024;

/// One upload entry: a file with its bytes, or a directory.
enum Entry<'a> {
    File(&'a str, Vec<u8>),
    Dir(&'a str),
}

fn form(entries: Vec<Entry<'_>>) -> Form {
    entries.into_iter().fold(Form::new(), |form, entry| {
        let part = match entry {
            Entry::File(name, bytes) => Part::bytes(bytes).file_name(name.to_string()),
            Entry::Dir(name) => {
                Part::bytes(Vec::new()).file_name(name.to_string()).mime_str("application/x-directory").unwrap()
            }
        };
        form.part("file", part)
    })
}

/// Posts an upload as alice; returns the status and the body text.
fn post_add(daemon: &Daemon, query: &str, form: Form) -> (StatusCode, String) {
    let response = client()
        .post(format!("{}/add?{query}", daemon.rest))
        .basic_auth("alice", Some("alice-pw"))
        .multipart(form)
        .send()
        .expect("POST /add");
    let status = response.status();
    (status, response.text().expect("body"))
}

/// The NDJSON objects of a successful add.
fn add_ok(daemon: &Daemon, query: &str, entries: Vec<Entry<'_>>) -> Vec<Value> {
    let (status, body) = post_add(daemon, query, form(entries));
    assert_eq!(status, StatusCode::OK, "{body}\n{}", daemon.log());
    body.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// The `{"code","message"}` error of a failed add.
fn add_err(daemon: &Daemon, query: &str, form: Form, wanted: StatusCode) -> String {
    let (status, body) = post_add(daemon, query, form);
    assert_eq!(status, wanted, "{body}");
    let body: Value = serde_json::from_str(&body).expect("error body is JSON");
    assert_eq!(body["code"], wanted.as_u16(), "{body}");
    body["message"].as_str().expect("message").to_string()
}

fn cid_of(line: &Value) -> String {
    line["cid"].as_str().unwrap_or_else(|| panic!("no cid in {line}")).to_string()
}

/// The CIDv1 of a raw block: what Kubo gives a one-chunk file with raw leaves.
fn raw_cid(bytes: &[u8]) -> String {
    let digest = sha2::Sha256::digest(bytes);
    let hash = cid::multihash::Multihash::<64>::wrap(0x12, &digest).unwrap();
    cid::Cid::new_v1(0x55, hash).to_string()
}

fn rest_status(daemon: &Daemon, cid: &str) -> Value {
    let (status, body) = json_of(
        client().get(format!("{}/pins/{cid}", daemon.rest)).basic_auth("alice", Some("alice-pw")).send().unwrap(),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn wait_pinned(daemon: &Daemon, cid: &str) -> Value {
    eventually(Duration::from_secs(30), &format!("{cid} pinned"), || {
        let status = rest_status(daemon, cid);
        let peer = status["peer_map"].as_object().and_then(|m| m.values().next().cloned())?;
        assert_ne!(peer["status"], "pin_error", "{status}");
        (peer["status"] == "pinned").then_some(status)
    })
}

/// The daemon's swarm addresses, from `/id`.
fn swarm_addresses(daemon: &Daemon) -> Vec<String> {
    let (_, id) = json_of(client().get(format!("{}/id", daemon.rest)).basic_auth("alice", Some("alice-pw")).send().unwrap());
    id["ipfs"]["addresses"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn add_gives_kubo_cids_pins_them_and_keeps_them_across_kill_9() {
    let files = tempfile::tempdir().unwrap();
    let root = files.path();
    let sizes = [("empty", 0), ("one", 1), ("chunk", 256 * KIB), ("chunk-plus-one", 256 * KIB + 1), ("big", 3 * 1024 * KIB + 7)];
    let mut kubo = Kubo::start();
    let mut single = Vec::new();
    for (i, (name, len)) in sizes.iter().enumerate() {
        let bytes = random_file(&root.join(name), *len, i as u64 + 10);
        single.push((*name, bytes, kubo.add(&root.join(name))));
    }
    // A tree: nested directories, an empty one, files of several chunks.
    let tree = root.join("tree");
    write(&tree.join("a.txt"), b"hello\n");
    write(&tree.join("sub/b.bin"), &random_file(&root.join("b"), 600 * KIB, 2));
    write(&tree.join("sub/deeper/c.txt"), b"world\n");
    std::fs::create_dir_all(tree.join("empty")).unwrap();
    let tree_cid = kubo.add(&tree);

    let mut daemon = Daemon::start(test_config(json!({})));
    for (name, bytes, kubo_cid) in &single {
        let lines = add_ok(&daemon, "", vec![Entry::File(name, bytes.clone())]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(cid_of(&lines[0]), *kubo_cid, "{name}: {lines:?}");
        assert_eq!(lines[0]["name"], *name);
        assert_eq!(lines[0]["bytes"].as_u64().unwrap_or(0), bytes.len() as u64);
        assert!(lines[0]["size"].as_u64().unwrap() >= bytes.len() as u64, "{lines:?}");
        assert_eq!(lines[0]["allocations"].as_array().unwrap().len(), 1, "pinned here: {lines:?}");
    }

    let read = |p: &str| std::fs::read(tree.join(p)).unwrap();
    let lines = add_ok(
        &daemon,
        "",
        vec![
            Entry::Dir("tree"),
            Entry::File("tree/a.txt", read("a.txt")),
            Entry::Dir("tree/empty"),
            Entry::Dir("tree/sub"),
            Entry::File("tree/sub/b.bin", read("sub/b.bin")),
            Entry::File("tree/sub/deeper/c.txt", read("sub/deeper/c.txt")),
        ],
    );
    let names: Vec<&str> = lines.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names.last(), Some(&"tree"), "the root comes last: {names:?}");
    for name in ["tree/a.txt", "tree/sub/b.bin", "tree/sub/deeper/c.txt", "tree/empty", "tree/sub/deeper", "tree/sub"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let last = lines.last().unwrap();
    assert_eq!(cid_of(last), tree_cid, "{lines:?}");
    assert!(lines[..lines.len() - 1].iter().all(|l| l.get("allocations").is_none()), "only the pinned root is allocated");

    // Pinned for alice, under the root's name, in both APIs.
    wait_pinned(&daemon, &tree_cid);
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let (_, pin) = json_of(client().get(format!("{}/pins/{tree_cid}", daemon.pinsvc)).bearer_auth(&token).send().unwrap());
    assert_eq!(pin["pin"]["name"], "tree", "{pin}");
    let big_cid = &single[4].2;
    wait_pinned(&daemon, big_cid);

    // Acknowledged means kept: kill -9, restart, still pinned, and Kubo can
    // read the tree from us.
    daemon.kill9();
    daemon.spawn();
    wait_pinned(&daemon, &tree_cid);
    let mut reader = Kubo::start();
    assert!(swarm_addresses(&daemon).iter().any(|a| reader.connect(a)));
    let out = files.path().join("fetched");
    assert!(reader.download(&tree_cid, &out, Duration::from_secs(60)), "kubo could not fetch the tree");
    assert_eq!(std::fs::read(out.join("sub/b.bin")).unwrap(), read("sub/b.bin"));
    assert_eq!(std::fs::read(out.join("sub/deeper/c.txt")).unwrap(), b"world\n");
}

#[test]
fn add_options_raw_leaves_cid_version_chunker_wrap_hidden_and_no_pin() {
    let daemon = Daemon::start(test_config(json!({})));
    let hello = b"hello world\n".to_vec();

    // CIDv1 implies raw leaves; a one-chunk file is its raw leaf.
    let lines = add_ok(&daemon, "cid-version=1", vec![Entry::File("hello.txt", hello.clone())]);
    assert_eq!(cid_of(&lines[0]), raw_cid(&hello));
    let loose = b"imported, not pinned".to_vec();
    let lines = add_ok(&daemon, "raw-leaves=true&no-pin=true", vec![Entry::File("loose.txt", loose.clone())]);
    assert_eq!(cid_of(&lines[0]), raw_cid(&loose));
    assert!(lines[0].get("allocations").is_none(), "no-pin: {lines:?}");
    let (status, _) = json_of(
        client().get(format!("{}/allocations/{}", daemon.rest, raw_cid(&loose))).basic_auth("alice", Some("alice-pw")).send().unwrap(),
    );
    assert_eq!(status, StatusCode::NOT_FOUND, "no-pin leaves the pinset alone");
    let lines = add_ok(&daemon, "", vec![Entry::File("hello.txt", hello.clone())]);
    assert_eq!(cid_of(&lines[0]), "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", "Kubo's CID of hello world");
    let lines = add_ok(&daemon, "cid-version=1&raw-leaves=false", vec![Entry::File("hello.txt", hello.clone())]);
    let v1_pb = cid_of(&lines[0]);
    assert!(v1_pb.starts_with("bafybei"), "dag-pb CIDv1: {v1_pb}");

    // A multi-chunk, multi-level file with small chunks and raw leaves:
    // Kubo reads it back from us byte for byte.
    let files = tempfile::tempdir().unwrap();
    let data = random_file(&files.path().join("data"), 300 * KIB + 5, 7);
    let lines = add_ok(&daemon, "chunker=size-1024&cid-version=1", vec![Entry::File("data", data.clone())]);
    let small_chunks = cid_of(&lines[0]);
    let lines = add_ok(&daemon, "cid-version=1", vec![Entry::File("data", data.clone())]);
    assert_ne!(cid_of(&lines[0]), small_chunks, "the chunker changes the DAG");
    wait_pinned(&daemon, &small_chunks);
    let mut reader = Kubo::start();
    assert!(swarm_addresses(&daemon).iter().any(|a| reader.connect(a)));
    let out = files.path().join("out");
    assert!(reader.download(&small_chunks, &out, Duration::from_secs(60)), "kubo could not fetch the file");
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // Wrapped: both files, then the wrapper named "" which is the pin; the
    // Cluster JS client's `wrap` alias and `stream-channels=false` array.
    let (status, body) = post_add(
        &daemon,
        "wrap=true&stream-channels=false&cid-version=1",
        form(vec![Entry::File("a.txt", b"a".to_vec()), Entry::File("b.txt", b"b".to_vec())]),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let array: Vec<Value> = serde_json::from_str(&body).expect("a JSON array");
    assert_eq!(array.len(), 3, "{array:?}");
    assert_eq!(cid_of(&array[0]), raw_cid(b"a"));
    assert_eq!(cid_of(&array[1]), raw_cid(b"b"));
    assert_eq!(array[2]["name"], "");
    let wrapper = cid_of(&array[2]);
    wait_pinned(&daemon, &wrapper);
    let out = files.path().join("wrapped");
    assert!(reader.download(&wrapper, &out, Duration::from_secs(60)));
    assert_eq!(std::fs::read(out.join("b.txt")).unwrap(), b"b");

    // Hidden entries below the top level are skipped unless hidden=true.
    let entries = || vec![Entry::Dir("d"), Entry::File("d/.secret", b"s".to_vec()), Entry::File("d/shown", b"x".to_vec())];
    let lines = add_ok(&daemon, "", entries());
    assert!(lines.iter().all(|l| l["name"] != "d/.secret"), "{lines:?}");
    let without = cid_of(lines.last().unwrap());
    let lines = add_ok(&daemon, "hidden=true", entries());
    assert!(lines.iter().any(|l| l["name"] == "d/.secret"), "{lines:?}");
    assert_ne!(cid_of(lines.last().unwrap()), without);

    // Progress objects name the file and count bytes, without a CID.
    let lines = add_ok(&daemon, "progress=true", vec![Entry::File("p.bin", vec![7u8; 3 * 1024 * KIB])]);
    assert!(lines.iter().any(|l| l.get("cid").is_none() && l["bytes"].as_u64().unwrap() > 0), "{lines:?}");
    assert!(lines.last().unwrap().get("cid").is_some());
}

/// A CAR v1 file with `roots` and `blocks` (raw CIDv1 blocks), by hand.
fn car(roots: &[&[u8]], blocks: &[&[u8]]) -> Vec<u8> {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let cid_bytes = |b: &[u8]| cid::Cid::try_from(raw_cid(b).as_str()).unwrap().to_bytes();
    // DAG-CBOR {"roots": [CID...], "version": 1}, keys in canonical order.
    let mut header = vec![0xa2, 0x65];
    header.extend_from_slice(b"roots");
    header.push(0x80 | roots.len() as u8);
    for root in roots {
        let bytes = cid_bytes(root);
        header.extend_from_slice(&[0xd8, 0x2a, 0x58, bytes.len() as u8 + 1, 0x00]);
        header.extend_from_slice(&bytes);
    }
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);
    let mut out = Vec::new();
    varint(header.len(), &mut out);
    out.extend_from_slice(&header);
    for block in blocks {
        let cid = cid_bytes(block);
        varint(cid.len() + block.len(), &mut out);
        out.extend_from_slice(&cid);
        out.extend_from_slice(block);
    }
    out
}

#[test]
fn add_imports_a_car_and_refuses_bad_ones() {
    let daemon = Daemon::start(test_config(json!({})));
    let block: &[u8] = b"a block carried in a CAR";
    let lines = add_ok(&daemon, "format=car", vec![Entry::File("x.car", car(&[block], &[block]))]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(cid_of(&lines[0]), raw_cid(block));
    wait_pinned(&daemon, &raw_cid(block));

    let file = |bytes: Vec<u8>| form(vec![Entry::File("x.car", bytes)]);
    let two_roots = car(&[b"one", b"two"], &[b"one", b"two"]);
    assert!(add_err(&daemon, "format=car", file(two_roots), StatusCode::BAD_REQUEST).contains("one root"));
    let mut tampered = car(&[block], &[block]);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    add_err(&daemon, "format=car", file(tampered), StatusCode::BAD_REQUEST);
    let whole = car(&[block], &[block]);
    add_err(&daemon, "format=car", file(whole[..whole.len() - 3].to_vec()), StatusCode::BAD_REQUEST);
    add_err(&daemon, "format=car", file(b"not a car at all".to_vec()), StatusCode::BAD_REQUEST);
    let two_files = form(vec![Entry::File("a.car", car(&[block], &[block])), Entry::File("b.car", car(&[block], &[block]))]);
    add_err(&daemon, "format=car", two_files, StatusCode::BAD_REQUEST);
}

#[test]
fn add_errors_are_clear_and_bounded() {
    let daemon = Daemon::start(test_config(json!({ "api": { "restapi": { "max_upload_bytes": 100_000 } } })));
    let small = || form(vec![Entry::File("f", b"data".to_vec())]);
    for (query, words) in [
        ("chunker=rabin-1-2-3", "chunker"),
        ("chunker=size-0", "chunker"),
        ("cid-version=7", "cid-version"),
        ("layout=trickle", "trickle"),
        ("hash=md5", "hash"),
        ("format=zip", "format"),
        ("raw-leaves=perhaps", "raw-leaves"),
        ("nocopy=true", "filestore"),
        ("expire-in=nonsense", "expire-in"),
    ] {
        assert!(add_err(&daemon, query, small(), StatusCode::BAD_REQUEST).contains(words), "{query}");
    }
    let message = add_err(&daemon, "", form(vec![Entry::File("big", vec![1u8; 150_000])]), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(message.contains("max_upload_bytes"), "{message}");
    add_err(&daemon, "", Form::new().text("note", "no file here"), StatusCode::BAD_REQUEST);
    let symlink = Form::new().part("file", Part::bytes(b"target".to_vec()).file_name("link").mime_str("application/symlink").unwrap());
    assert!(add_err(&daemon, "", symlink, StatusCode::BAD_REQUEST).contains("symbolic link"));

    let not_multipart = client()
        .post(format!("{}/add", daemon.rest))
        .basic_auth("alice", Some("alice-pw"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(not_multipart.status(), StatusCode::BAD_REQUEST);
    let anonymous = client().post(format!("{}/add", daemon.rest)).multipart(small()).send().unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Still serving after all that.
    assert_eq!(add_ok(&daemon, "", vec![Entry::File("f", b"data".to_vec())]).len(), 1);
}

#[test]
fn pincluster_ctl_add_uploads_files_and_directories() {
    let daemon = Daemon::start(test_config(json!({})));
    let host = multiaddr_of(&daemon.rest);
    let auth = ["--basic-auth", "alice:alice-pw"];
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("hello.txt");
    std::fs::write(&file, b"hello world\n").unwrap();
    let out = ctl_ok(&host, &auth, &["add", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "added QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o hello.txt");

    let dir = files.path().join("site");
    write(&dir.join("index.html"), b"<p>hi</p>");
    write(&dir.join("css/a.css"), b"p{}");
    write(&dir.join(".git/HEAD"), b"ref");
    let err = ctl_err(&host, &auth, &["add", dir.to_str().unwrap()]);
    assert!(err.contains("-r"), "{err}");
    let out = ctl_ok(&host, &auth, &["add", "-r", "--cid-version", "1", dir.to_str().unwrap()]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "index.html, css/a.css, css, site (no .git): {out}");
    assert!(lines.iter().all(|l| !l.contains(".git")), "{out}");
    assert!(lines[3].ends_with(" site") && lines[3].contains(" bafybei"), "{out}");
    let root = lines[3].split(' ').nth(1).unwrap().to_string();

    let quiet = ctl_ok(&host, &auth, &["add", "-r", "-Q", "--cid-version", "1", dir.to_str().unwrap()]);
    assert_eq!(quiet.trim(), root);
    let json = ctl_ok(&host, &auth, &["--enc", "json", "add", "-w", file.to_str().unwrap(), "--name", "wrapped"]);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{json}");
    let status = ctl_ok(&host, &auth, &["status", &root]);
    assert!(status.contains(&root), "{status}");
    let err = ctl_err(&host, &auth, &["add", "--chunker", "rabin", file.to_str().unwrap()]);
    assert!(err.contains("400"), "{err}");
}
