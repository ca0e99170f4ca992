//! Issue 6, `POST /add`: multipart uploads are imported into the embedded
//! node with exactly Kubo's CIDs, pinned for the caller, served to Kubo, and
//! refused clearly when bad or too large; CAR imports; `pincluster-ctl add`;
//! the chunked framing of streams and the `X-Stream-Error` trailer.

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
    let (_, id) =
        json_of(client().get(format!("{}/id", daemon.rest)).basic_auth("alice", Some("alice-pw")).send().unwrap());
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
    let sizes = [
        ("empty", 0),
        ("one", 1),
        ("chunk", 256 * KIB),
        ("chunk-plus-one", 256 * KIB + 1),
        ("big", 3 * 1024 * KIB + 7),
    ];
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
    assert!(
        lines[..lines.len() - 1].iter().all(|l| l.get("allocations").is_none()),
        "only the pinned root is allocated"
    );

    // Pinned for alice, under the root's name, in both APIs.
    wait_pinned(&daemon, &tree_cid);
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let (_, pin) =
        json_of(client().get(format!("{}/pins/{tree_cid}", daemon.pinsvc)).bearer_auth(&token).send().unwrap());
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
        client()
            .get(format!("{}/allocations/{}", daemon.rest, raw_cid(&loose)))
            .basic_auth("alice", Some("alice-pw"))
            .send()
            .unwrap(),
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
    let entries =
        || vec![Entry::Dir("d"), Entry::File("d/.secret", b"s".to_vec()), Entry::File("d/shown", b"x".to_vec())];
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
    fn varint(n: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(unsigned_varint::encode::usize(n, &mut unsigned_varint::encode::usize_buffer()));
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
    let two_files =
        form(vec![Entry::File("a.car", car(&[block], &[block])), Entry::File("b.car", car(&[block], &[block]))]);
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
    let message =
        add_err(&daemon, "", form(vec![Entry::File("big", vec![1u8; 150_000])]), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(message.contains("max_upload_bytes"), "{message}");
    add_err(&daemon, "", Form::new().text("note", "no file here"), StatusCode::BAD_REQUEST);
    let symlink = Form::new()
        .part("file", Part::bytes(b"target".to_vec()).file_name("link").mime_str("application/symlink").unwrap());
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

    // Past the limit after the first line was sent: pincluster-ctl reads the
    // X-Stream-Error trailer and fails with the server's message.
    let tree = tempfile::tempdir().unwrap();
    write(&tree.path().join("d/a"), b"small");
    write(&tree.path().join("d/b"), &vec![2u8; 120_000]);
    let basic: &[&str] = &["--basic-auth", "alice:alice-pw"];
    let dir = tree.path().join("d");
    let message = ctl_err(&multiaddr_of(&daemon.rest), basic, &["add", "-r", &dir.to_string_lossy()]);
    assert!(message.contains("max_upload_bytes"), "{message}");
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

/// One HTTP/1.x response read off a raw connection: status line, headers
/// (lower-cased names), the de-chunked body and the trailer fields.
struct RawResponse {
    status: String,
    headers: Vec<(String, String)>,
    body: String,
    trailers: Vec<(String, String)>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn read_line(reader: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read a line");
    assert!(line.ends_with("\r\n"), "line not ended by CRLF: {line:?}");
    line.truncate(line.len() - 2);
    line
}

fn read_fields(reader: &mut impl std::io::BufRead) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    loop {
        let line = read_line(reader);
        if line.is_empty() {
            return fields;
        }
        let (name, value) = line.split_once(':').expect("a header field");
        fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// Reads one response; a chunked body is decoded by hand so that the
/// trailer fields are seen; a body without a length runs to the end of the stream.
fn read_response(reader: &mut impl std::io::BufRead) -> RawResponse {
    let status = read_line(reader);
    let headers = read_fields(reader);
    let mut response = RawResponse { status, headers, body: String::new(), trailers: Vec::new() };
    if let Some(length) = response.header("content-length") {
        let mut data = vec![0u8; length.parse().expect("content-length")];
        reader.read_exact(&mut data).expect("body");
        response.body = String::from_utf8(data).expect("UTF-8");
        return response;
    }
    if response.header("transfer-encoding") != Some("chunked") {
        reader.read_to_string(&mut response.body).expect("body");
        return response;
    }
    loop {
        let size = usize::from_str_radix(&read_line(reader), 16).expect("chunk size");
        if size == 0 {
            response.trailers = read_fields(reader);
            return response;
        }
        let mut data = vec![0u8; size + 2];
        reader.read_exact(&mut data).expect("chunk data");
        assert_eq!(&data[size..], b"\r\n", "chunk not ended by CRLF");
        response.body.push_str(std::str::from_utf8(&data[..size]).expect("UTF-8"));
    }
}

#[test]
fn streams_end_with_a_chunked_trailer_and_a_late_error_arrives_in_x_stream_error() {
    use std::io::{BufReader, Write};
    let daemon = Daemon::start(test_config(json!({})));
    let address = daemon.rest.trim_start_matches("http://").to_string();
    let auth = "Authorization: Basic YWxpY2U6YWxpY2UtcHc="; // alice:alice-pw
    let mut connection = std::net::TcpStream::connect(&address).unwrap();
    connection.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(connection.try_clone().unwrap());

    // A directory's file is announced as soon as it is imported; the third
    // part (a symbolic link) then fails the upload after output has begun.
    let boundary = "pincluster-boundary";
    let mut body = String::new();
    for (name, kind, data) in [
        ("d", "application/x-directory", ""),
        ("d%2Fa", "application/octet-stream", "hello"),
        ("d%2Flink", "application/symlink", "a"),
    ] {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n{data}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    write!(
        connection,
        "POST /add HTTP/1.1\r\nHost: {address}\r\n{auth}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let failed = read_response(&mut reader);
    assert!(failed.status.starts_with("HTTP/1.1 200"), "{}", failed.status);
    assert_eq!(failed.header("trailer"), Some("X-Stream-Error"));
    assert_eq!(failed.header("x-chunked-output"), Some("1"));
    let first: Value = serde_json::from_str(failed.body.lines().next().expect("one line before the error")).unwrap();
    assert_eq!(first["name"], "d/a", "{}", failed.body);
    let error = failed.trailers.iter().find(|(n, _)| n == "x-stream-error").map(|(_, v)| v.clone());
    assert!(error.as_deref().is_some_and(|e| e.contains("symbolic link")), "{:?}", failed.trailers);

    // The same connection still serves: a stream that succeeds ends with an
    // empty X-Stream-Error, as Cluster sends it.
    let cid = fake_cid(7);
    write!(connection, "POST /pins/{cid} HTTP/1.1\r\nHost: {address}\r\n{auth}\r\nContent-Length: 0\r\n\r\n").unwrap();
    let pinned = read_response(&mut reader);
    assert!(pinned.status.starts_with("HTTP/1.1 200"), "{} {}", pinned.status, pinned.body);
    write!(connection, "GET /pins HTTP/1.1\r\nHost: {address}\r\n{auth}\r\n\r\n").unwrap();
    let listed = read_response(&mut reader);
    assert!(listed.status.starts_with("HTTP/1.1 200"), "{}", listed.status);
    assert_eq!(listed.header("transfer-encoding"), Some("chunked"));
    assert_eq!(listed.trailers, vec![("x-stream-error".to_string(), String::new())]);
    let line: Value = serde_json::from_str(listed.body.trim_end()).unwrap();
    assert_eq!(line["cid"], cid.as_str());

    // HTTP/1.0 has no chunks: the body runs to the end of the connection.
    let mut old = std::net::TcpStream::connect(&address).unwrap();
    write!(old, "GET /pins HTTP/1.0\r\nHost: {address}\r\n{auth}\r\n\r\n").unwrap();
    let plain = read_response(&mut BufReader::new(old));
    assert!(plain.status.starts_with("HTTP/1.0 200") || plain.status.starts_with("HTTP/1.1 200"), "{}", plain.status);
    assert_eq!(plain.header("transfer-encoding"), None);
    assert_eq!(plain.body, listed.body);
}

#[test]
fn pins_beyond_the_queue_wait_in_the_pinset_and_are_all_pinned() {
    let daemon = Daemon::start(test_config(json!({
        "pin_tracker": { "concurrent_pins": 1, "max_pin_queue_size": 4, "max_retries": 0 },
        "ipfs": { "pin_timeout": "3s" },
    })));
    let pin = |cid: &str| {
        let response =
            client().post(format!("{}/pins/{cid}", daemon.rest)).basic_auth("alice", Some("alice-pw")).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{cid}");
    };
    // Twelve files whose blocks are local, added without pinning.
    let names: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
    let entries = names.iter().map(|name| Entry::File(name, format!("queued {name}").into_bytes())).collect();
    let cids: Vec<String> = add_ok(&daemon, "raw-leaves=true&no-pin=true", entries).iter().map(cid_of).collect();
    assert_eq!(cids.len(), 12);
    // The one worker is held by content that exists nowhere while the twelve
    // arrive: four fit the queue, eight overflow and stay queued on disk.
    pin(&fake_cid(99));
    for cid in &cids {
        pin(cid);
    }
    for cid in &cids {
        eventually(Duration::from_secs(60), &format!("{cid} pinned"), || {
            let status = rest_status(&daemon, cid);
            let peer = status["peer_map"].as_object().and_then(|m| m.values().next().cloned())?;
            (peer["status"] == "pinned").then_some(())
        });
    }
}
