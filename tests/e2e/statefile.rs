//! `pincluster-service state export` and `state import` end to end: a pinset
//! made through both APIs survives export and import into a new peer (every
//! listing, `created` and option alike, the re-export byte for byte), imports
//! refuse a non-empty pinset without `--merge`, a broken line is named, and a
//! running daemon keeps both commands off its pinset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pincluster_tests::*;
use serde_json::{json, Value};

/// The header line every export starts with.
const HEADER: &str = r#"{"format":"pincluster-state","version":1}"#;

/// Runs `pincluster-service --config-dir DIR ARGS…`.
fn service(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary("pincluster-service"))
        .arg("--config-dir")
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run pincluster-service")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `state export` of `dir` into `file`; it must succeed. Returns the file's text.
fn export(dir: &Path, file: &Path) -> String {
    let output = service(dir, &["state", "export", "--output", &file.to_string_lossy()]);
    assert!(output.status.success(), "export failed: {}", stderr(&output));
    assert!(output.stdout.is_empty(), "a file export writes nothing to stdout");
    std::fs::read_to_string(file).expect("read export")
}

/// `state import [--merge] FILE` into `dir`.
fn import(dir: &Path, file: &Path, merge: bool) -> Output {
    let file = file.to_string_lossy();
    let mut args = vec!["state", "import", &*file];
    if merge {
        args.insert(2, "--merge");
    }
    service(dir, &args)
}

/// The lines of an export, parsed.
fn lines(text: &str) -> Vec<Value> {
    assert!(text.ends_with('\n'), "the last line is terminated");
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// A user's whole PSA listing (every status): the count and, for each pin,
/// what the pinset shares (request ID, pin object, `created`). `status`,
/// `delegates` and `info` are this peer's own and are left out.
fn psa_listing(daemon: &Daemon, user: &str, password: &str) -> (Value, Vec<Value>) {
    let token = token(&daemon.pinsvc, user, password);
    let url = format!("{}/pins?status=queued,pinning,pinned,failed&limit=1000", daemon.pinsvc);
    let (status, body) = json_of(client().get(url).bearer_auth(token).send().expect("list"));
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results").iter();
    let shared = results.map(|r| json!({ "requestid": r["requestid"], "pin": r["pin"], "created": r["created"] }));
    (body["count"].clone(), shared.collect())
}

/// Every pin of the REST API's `/allocations` stream, less `allocations`
/// (which names this peer when the replication is not "everywhere").
fn rest_allocations(daemon: &Daemon) -> Vec<Value> {
    let response =
        client().get(format!("{}/allocations", daemon.rest)).basic_auth("alice", Some("alice-pw")).send().expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().expect("body");
    text.lines()
        .map(|line| {
            let mut pin: Value = serde_json::from_str(line).expect("NDJSON line");
            pin.as_object_mut().expect("object").remove("allocations");
            pin
        })
        .collect()
}

/// What both listings show of a daemon, for every user.
fn snapshot(daemon: &Daemon) -> Value {
    let users: Vec<Value> = USERS
        .iter()
        .map(|(user, password)| {
            let (count, results) = psa_listing(daemon, user, password);
            json!({ "user": user, "count": count, "results": results })
        })
        .collect();
    json!({ "psa": users, "rest": rest_allocations(daemon) })
}

fn psa_pin(daemon: &Daemon, token: &str, body: Value) {
    let response = client().post(format!("{}/pins", daemon.pinsvc)).bearer_auth(token).json(&body).send();
    let (status, reply) = json_of(response.expect("pin"));
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
}

fn rest_pin(daemon: &Daemon, user: &str, password: &str, cid: &str, query: &str) -> Value {
    let url = format!("{}/pins/{cid}?{query}", daemon.rest);
    let (status, reply) = json_of(client().post(url).basic_auth(user, Some(password)).send().expect("pin"));
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply
}

/// Pins through both APIs as several users: shared CIDs, names that need
/// escaping, meta, origins, and the REST options (mode, replication,
/// user allocations, expiry).
fn fill(daemon: &Daemon) {
    let alice = token(&daemon.pinsvc, "alice", "alice-pw");
    let bob = token(&daemon.pinsvc, "bob", "bob-pw");
    let origin = format!("/ip4/10.0.0.1/tcp/4001/p2p/{}", daemon.peer_id);
    for i in 0..20u64 {
        let mut body = json!({ "cid": fake_cid(i), "name": format!("alice {i}") });
        if i % 3 == 0 {
            body["meta"] = json!({ "app": "backup", "i": i.to_string() });
        }
        if i % 4 == 0 {
            body["origins"] = json!([origin, "/dns4/example.com/tcp/443/wss"]);
        }
        psa_pin(daemon, &alice, body);
    }
    // 10..20 are held by both users.
    for i in 10..30u64 {
        let mut body = json!({ "cid": fake_cid(i) });
        if i % 2 == 0 {
            body["name"] = json!(format!("café \"{i}\" ☕\n"));
            body["meta"] = json!({ "quote\"d": "tab\there", "ü": "" });
        }
        psa_pin(daemon, &bob, body);
    }
    let me = daemon.peer_id.clone();
    rest_pin(daemon, "alice", "alice-pw", &fake_cid(100), "mode=direct&replication=1&name=rest-direct&meta-k=v");
    let pin = rest_pin(
        daemon,
        "alice",
        "alice-pw",
        &fake_cid(101),
        &format!("replication-min=1&replication-max=3&user-allocations={me}&expire-at=2999-01-02T03:04:05Z"),
    );
    assert_eq!(pin["expire_at"], "2999-01-02T03:04:05.000Z");
    rest_pin(daemon, "bob", "bob-pw", &fake_cid(102), "expire-in=1h&name=soon");
}

#[test]
fn export_import_into_a_new_peer_keeps_every_listing_and_reexports_identically() {
    let mut old = Daemon::start(test_config(json!({})));
    fill(&old);
    let before = snapshot(&old);
    assert_eq!(before["psa"][0]["count"], 22, "{before}");
    assert_eq!(before["psa"][1]["count"], 21, "{before}");
    assert_eq!(before["psa"][2]["count"], 0, "{before}");
    assert_eq!(before["rest"].as_array().map(Vec::len), Some(33));
    assert!(old.stop().success(), "{}", old.log());

    let files = tempfile::tempdir().unwrap();
    let first = files.path().join("pinset.ndjson");
    let text = export(old.dir(), &first);
    assert!(text.starts_with(&format!("{HEADER}\n")), "{text}");
    let exported = lines(&text);
    assert_eq!(exported.len(), 34);
    let by_cid = |cid: &str| exported.iter().find(|l| l["cid"] == cid).unwrap_or_else(|| panic!("{cid}")).clone();
    let direct = by_cid(&fake_cid(100));
    assert_eq!((&direct["mode"], &direct["replication_factor_min"]), (&json!("direct"), &json!(1)), "{direct}");
    let expiring = by_cid(&fake_cid(101));
    assert_eq!(expiring["expire_at"], 32_472_241_445_000_u64, "{expiring}");
    assert_eq!(expiring["user_allocations"], json!([old.peer_id]));
    let shared = by_cid(&fake_cid(12));
    let holders: Vec<&Value> = shared["holders"].as_array().unwrap().iter().map(|h| &h["user"]).collect();
    assert_eq!(holders, [&json!("alice"), &json!("bob")], "{shared}");
    assert!(shared["created"].as_u64().is_some() && shared["holders"][1]["created"].as_u64().is_some());
    assert_eq!(by_cid(&fake_cid(0))["expire_at"], Value::Null);

    // A new peer: its own identity, an empty pinset.
    let mut new = Daemon::init(test_config(json!({})));
    let output = import(new.dir(), &first, false);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("imported 33 cluster pins"), "{}", stderr(&output));
    new.spawn();
    assert_ne!(new.peer_id, old.peer_id);
    // Statuses are left out of the comparison: they are each peer's own work on
    // the content (not part of the export), and the new peer starts every pin
    // over (queued, then pinning until the fetch of these unreachable CIDs
    // times out). What users asked for, and when, is identical.
    assert_eq!(snapshot(&new), before);
    assert!(new.stop().success(), "{}", new.log());

    let second = files.path().join("again.ndjson");
    assert_eq!(export(new.dir(), &second), text, "the re-export is byte-identical");
}

/// A small export: `n` pins of alice, bob holding the first one too.
fn small_export(n: u64) -> String {
    let mut text = format!("{HEADER}\n");
    for i in 0..n {
        let mut holders = vec![json!({
            "user": "alice",
            "name": format!("pin {i}"),
            "meta": { "i": i.to_string() },
            "origins": ["/ip4/127.0.0.1/tcp/4001"],
            "created": 1_700_000_000_000 + i,
        })];
        if i == 0 {
            let bob =
                json!({ "user": "bob", "name": null, "meta": {}, "origins": [], "created": 1_700_000_000_500_u64 });
            holders.push(bob);
        }
        let line = json!({
            "cid": fake_cid(1000 + i),
            "mode": "recursive",
            "replication_factor_min": -1,
            "replication_factor_max": -1,
            "user_allocations": [],
            "allocations": [],
            "expire_at": null,
            "created": 1_700_000_000_000 + i,
            "holders": holders,
        });
        text.push_str(&format!("{line}\n"));
    }
    text
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn import_into_a_non_empty_pinset_needs_merge() {
    let files = tempfile::tempdir().unwrap();
    let peer = Daemon::init(test_config(json!({})));
    let file = write(files.path(), "three.ndjson", &small_export(3));
    assert!(import(peer.dir(), &file, false).status.success());
    let before = export(peer.dir(), &files.path().join("before.ndjson"));
    assert_eq!(lines(&before).len(), 4);

    // The same file again, without --merge: refused, nothing changed.
    let output = import(peer.dir(), &file, false);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("already holds 3 cluster pins") && message.contains("--merge"), "{message}");
    assert!(message.contains("nothing was imported"), "{message}");
    assert_eq!(export(peer.dir(), &files.path().join("after.ndjson")), before);

    // With --merge: an existing CID gains the holder it lacks, a new CID is
    // added, the holders already present are left as they are.
    let mut more = lines(&small_export(2));
    more[1]["holders"] = json!([
        { "user": "alice", "name": "changed", "meta": {}, "origins": [], "created": 1 },
        { "user": "testuser", "name": "t", "meta": {}, "origins": [], "created": 1_800_000_000_000_u64 },
    ]);
    more[2]["cid"] = json!(fake_cid(2000));
    more[2]["holders"][0]["created"] = json!(1_900_000_000_000_u64);
    let text: String = more.iter().map(|l| format!("{l}\n")).collect();
    let output = import(peer.dir(), &write(files.path(), "more.ndjson", &text), true);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("imported 2 cluster pins"), "{}", stderr(&output));
    let merged = lines(&export(peer.dir(), &files.path().join("merged.ndjson")));
    assert_eq!(merged.len(), 5);
    let first = merged.iter().find(|l| l["cid"] == fake_cid(1000)).unwrap();
    let users: Vec<&Value> = first["holders"].as_array().unwrap().iter().map(|h| &h["user"]).collect();
    assert_eq!(users, [&json!("alice"), &json!("bob"), &json!("testuser")]);
    assert_eq!(first["holders"][0]["name"], "pin 0", "an existing holder is kept as it is");
    assert!(merged.iter().any(|l| l["cid"] == fake_cid(2000)));
}

#[test]
fn a_broken_line_is_named_and_the_lines_before_it_are_imported() {
    let files = tempfile::tempdir().unwrap();
    let good = small_export(4);
    let good_lines: Vec<&str> = good.lines().collect();
    let with_line = |number: usize, replace: &dyn Fn(&str) -> String| -> String {
        let mut out = String::new();
        for (i, line) in good_lines.iter().enumerate() {
            out.push_str(&if i + 1 == number { replace(line) } else { line.to_string() });
            out.push('\n');
        }
        out
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated", with_line(3, &|l| l[..l.len() / 2].to_string()), "line 3: invalid pin: EOF while parsing"),
        ("unknown field", with_line(3, &|l| l.replacen('{', r#"{"colour":"red","#, 1)), "unknown field `colour`"),
        ("bad CID", with_line(3, &|l| l.replacen(&fake_cid(1001), "bafynotacid", 1)), "line 3: invalid pin: cid"),
        ("bad user", with_line(3, &|l| l.replacen(r#""user":"alice""#, r#""user":"""#, 1)), "user name is empty"),
        ("bad origin", with_line(3, &|l| l.replacen("/ip4/127.0.0.1/tcp/4001", "/ip4/nowhere", 1)), "origins[0]"),
        ("bad mode", with_line(3, &|l| l.replacen("recursive", "sideways", 1)), "unknown variant `sideways`"),
        ("empty line", with_line(3, &|_| String::new()), "line 3: the line is empty"),
    ];
    for (what, text, expected) in cases {
        let peer = Daemon::init(test_config(json!({})));
        let output = import(peer.dir(), &write(files.path(), "broken.ndjson", &text), false);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{what}: {message}");
        assert!(message.contains("line 3: ") && message.contains(expected), "{what}: {message}");
        assert!(message.contains("The 1 cluster pin before line 3 was imported"), "{what}: {message}");
        // Exactly line 2 made it.
        let exported = lines(&export(peer.dir(), &files.path().join("after.ndjson")));
        assert_eq!(exported.len(), 2, "{what}");
        assert_eq!(exported[1]["cid"], fake_cid(1000), "{what}");
    }

    // A line the pinset refuses: its batch (here, the whole file) is in but for that line.
    let peer = Daemon::init(test_config(json!({})));
    let text = with_line(3, &|_| good_lines[1].to_string());
    let output = import(peer.dir(), &write(files.path(), "twice.ndjson", &text), false);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains(&format!("line 3: {} is already in the pinset", fake_cid(1000))), "{message}");
    assert!(
        message.contains("3 cluster pins imported, from every line up to line 5 except 1 refused line (3)"),
        "{message}"
    );
    assert_eq!(lines(&export(peer.dir(), &files.path().join("after.ndjson"))).len(), 4);

    // A wrong header: nothing is read.
    for header in ["{\"format\":\"something-else\",\"version\":1}", "{\"format\":\"pincluster-state\",\"version\":2}"] {
        let peer = Daemon::init(test_config(json!({})));
        let output =
            import(peer.dir(), &write(files.path(), "header.ndjson", &with_line(1, &|_| header.into())), false);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{message}");
        assert!(message.contains("line 1: ") && message.contains("Nothing was imported"), "{message}");
    }
}

#[test]
fn a_running_daemon_keeps_export_and_import_off_its_pinset() {
    let daemon = Daemon::start(test_config(json!({})));
    let files = tempfile::tempdir().unwrap();
    let file = write(files.path(), "three.ndjson", &small_export(3));
    let out = files.path().join("out.ndjson").to_string_lossy().into_owned();
    for output in [service(daemon.dir(), &["state", "export", "-o", &out]), import(daemon.dir(), &file, true)] {
        assert_eq!(output.status.code(), Some(1));
        let message = stderr(&output);
        assert!(message.starts_with("pincluster-service: the pinset is in use: stop the daemon first"), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
    }
    assert!(!Path::new(&out).exists(), "no partial file is left");
}
