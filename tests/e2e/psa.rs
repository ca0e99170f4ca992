//! Issue 4: the Pinning Service API end to end: every operation and status
//! code, every error case, per-user isolation, the default-status rule,
//! replace semantics, paging that never skips, the official JS client and a
//! spec-driven fuzzer.

use std::collections::BTreeSet;
use std::process::Command;

use pincluster_tests::*;
use serde_json::{json, Value};

/// A client bound to one user of the PSA.
struct Psa {
    base: String,
    token: String,
}

impl Psa {
    fn new(daemon: &Daemon, user: &str, password: &str) -> Psa {
        Psa { base: daemon.pinsvc.clone(), token: token(&daemon.pinsvc, user, password) }
    }

    fn get(&self, path_and_query: &str) -> (StatusCode, Value) {
        json_of(client().get(format!("{}{path_and_query}", self.base)).bearer_auth(&self.token).send().expect("get"))
    }

    fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        json_of(client().post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(body).send().expect("post"))
    }

    fn post_raw(&self, path: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
        let request = client()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Content-Type", content_type)
            .body(body.to_string());
        json_of(request.send().expect("post"))
    }

    fn delete(&self, path: &str) -> (StatusCode, String) {
        let response = client().delete(format!("{}{path}", self.base)).bearer_auth(&self.token).send().expect("delete");
        let status = response.status();
        (status, response.text().expect("body"))
    }

    fn pin(&self, body: Value) -> Value {
        let (status, reply) = self.post("/pins", &body);
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
        reply
    }
}

/// Checks a PinStatus against the spec's schema, strictly: required keys,
/// no extra keys, no nulls, no empty optional strings.
fn check_pin_status(value: &Value, peer_id: &str) {
    let object = value.as_object().expect("PinStatus is an object");
    for key in object.keys() {
        assert!(
            ["requestid", "status", "created", "pin", "delegates", "info"].contains(&key.as_str()),
            "extra key {key}"
        );
    }
    assert!(value["requestid"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(["queued", "pinning", "pinned", "failed"].contains(&value["status"].as_str().unwrap_or_default()));
    let created = value["created"].as_str().expect("created");
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");
    let pin = value["pin"].as_object().expect("pin");
    for (key, v) in pin {
        assert!(["cid", "name", "origins", "meta"].contains(&key.as_str()), "extra pin key {key}");
        assert!(!v.is_null() && v != "", "{key} must be omitted rather than empty");
    }
    let delegates = value["delegates"].as_array().expect("delegates");
    assert!((1..=20).contains(&delegates.len()));
    for d in delegates {
        assert!(d.as_str().unwrap_or_default().ends_with(&format!("/p2p/{peer_id}")), "{d}");
    }
    if let Some(info) = value.get("info") {
        for (k, v) in info.as_object().expect("info object") {
            assert!(v.as_str().is_some_and(|s| !s.is_empty()), "info.{k} = {v}");
        }
    }
}

fn error_reason(body: &Value) -> &str {
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    body["error"]["reason"].as_str().expect("reason")
}

#[test]
fn operations_answer_the_spec_codes_and_shapes() {
    let daemon = Daemon::start(test_config(json!({})));
    let alice = Psa::new(&daemon, "alice", "alice-pw");
    let cid = fake_cid(1);
    let origin = format!("/ip4/127.0.0.1/tcp/4001/p2p/{}", daemon.peer_id);
    let created = alice.pin(json!({ "cid": cid, "name": "first", "meta": { "app": "x" }, "origins": [origin] }));
    check_pin_status(&created, &daemon.peer_id);
    assert_eq!(created["requestid"], cid.as_str());
    assert_eq!(created["status"], "queued");
    assert_eq!(created["pin"]["meta"]["app"], "x");

    let (status, got) = alice.get(&format!("/pins/{cid}"));
    assert_eq!(status, StatusCode::OK);
    check_pin_status(&got, &daemon.peer_id);
    assert_eq!(got["created"], created["created"]);

    // Pinning the same CID again updates the user's pin object, created unchanged.
    let again = alice.pin(json!({ "cid": cid, "name": "renamed" }));
    assert_eq!(again["pin"]["name"], "renamed");
    assert_eq!(again["created"], created["created"]);
    assert!(again["pin"].get("meta").is_none());

    let (status, list) = alice.get("/pins?status=queued,pinning,pinned,failed");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["count"], 1);
    assert_eq!(list.as_object().map(|o| o.len()), Some(2));
    check_pin_status(&list["results"][0], &daemon.peer_id);

    let (status, body) = alice.delete(&format!("/pins/{cid}"));
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, "");
    let (status, body) = alice.get(&format!("/pins/{cid}"));
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_reason(&body), "NOT_FOUND");
    let (status, list) = alice.get("/pins?status=queued");
    assert_eq!((status, list["count"].clone(), list["results"].clone()), (StatusCode::OK, json!(0), json!([])));
}

#[test]
fn bad_input_gets_400_with_a_failure_body_naming_the_parameter() {
    let daemon = Daemon::start(test_config(json!({})));
    let alice = Psa::new(&daemon, "alice", "alice-pw");
    let cids: Vec<String> = (0..11).map(fake_cid).collect();
    let list_cases = [
        ("/pins?cid=not-a-cid", "cid"),
        (&*format!("/pins?cid={}", cids.join(",")), "cid"),
        ("/pins?status=done", "status"),
        ("/pins?status=", "status"),
        ("/pins?match=fuzzy&name=x", "match"),
        ("/pins?limit=0", "limit"),
        ("/pins?limit=1001", "limit"),
        ("/pins?limit=ten", "limit"),
        ("/pins?before=yesterday", "before"),
        ("/pins?after=2020-13-01T00:00:00Z", "after"),
        ("/pins?meta=%7Bnot%20json", "meta"),
        ("/pins?meta=%7B%22a%22%3A1%7D", "meta"),
        (&*format!("/pins?name={}", "n".repeat(256)), "name"),
    ];
    for (path, param) in list_cases {
        let (status, body) = alice.get(path);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(error_reason(&body), "BAD_REQUEST");
        assert!(body["error"]["details"].as_str().unwrap_or_default().starts_with(param), "{path}: {body}");
    }
    let cid = fake_cid(1);
    let origins: Vec<String> = (0..21).map(|i| format!("/ip4/10.0.0.{i}/tcp/4001")).collect();
    let body_cases = [
        (json!({ "cid": "nope" }), "cid"),
        (json!({ "name": "no cid" }), "cid"),
        (json!({ "cid": cid, "name": "n".repeat(256) }), "name"),
        (json!({ "cid": cid, "origins": origins }), "origins"),
        (json!({ "cid": cid, "origins": ["not-a-multiaddr"] }), "origins[0]"),
        (json!({ "cid": cid, "meta": { "k": 1 } }), "meta"),
        (json!({ "cid": cid, "extra": true }), "extra"),
        (json!([cid]), "object"),
    ];
    for (body, word) in body_cases {
        for path in ["/pins".to_string(), format!("/pins/{cid}")] {
            let (status, reply) = alice.post(&path, &body);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {reply}");
            assert_eq!(error_reason(&reply), "BAD_REQUEST");
            assert!(reply["error"]["details"].as_str().unwrap_or_default().contains(word), "{body}: {reply}");
        }
    }
    let (status, reply) = alice.post_raw("/pins", "application/json", "{\"cid\": ");
    assert_eq!((status, error_reason(&reply)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));
    let (status, reply) = alice.post_raw("/pins", "text/plain", &json!({ "cid": cid }).to_string());
    assert_eq!((status, error_reason(&reply)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{reply}");
    // Unknown request IDs, valid or not, are 404 on every operation.
    for requestid in [fake_cid(99), "definitely-not-a-cid".to_string()] {
        let (status, reply) = alice.get(&format!("/pins/{requestid}"));
        assert_eq!((status, error_reason(&reply)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
        let (status, reply) = alice.post(&format!("/pins/{requestid}"), &json!({ "cid": cid }));
        assert_eq!((status, error_reason(&reply)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
        let (status, _) = alice.delete(&format!("/pins/{requestid}"));
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[test]
fn users_never_see_or_touch_each_others_pins() {
    let daemon = Daemon::start(test_config(json!({})));
    let alice = Psa::new(&daemon, "alice", "alice-pw");
    let bob = Psa::new(&daemon, "bob", "bob-pw");
    let shared = fake_cid(7);
    let only_alice = fake_cid(8);
    let a = alice.pin(json!({ "cid": shared, "name": "alice's", "meta": { "owner": "alice" } }));
    alice.pin(json!({ "cid": only_alice }));
    let (status, _) = bob.get(&format!("/pins/{only_alice}"));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = bob.post(&format!("/pins/{only_alice}"), &json!({ "cid": fake_cid(9) }));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = bob.delete(&format!("/pins/{only_alice}"));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = bob.get("/pins?status=queued,pinning,pinned,failed");
    assert_eq!(list["count"], 0);

    // The same CID is two independent pin objects; content stays while either holds it.
    let b = bob.pin(json!({ "cid": shared, "name": "bob's" }));
    assert_eq!(b["pin"]["name"], "bob's");
    assert!(b["pin"].get("meta").is_none());
    let (_, still) = alice.get(&format!("/pins/{shared}"));
    assert_eq!(still["pin"]["name"], "alice's");
    assert_eq!(still["created"], a["created"]);
    let (status, _) = bob.delete(&format!("/pins/{shared}"));
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = alice.get(&format!("/pins/{shared}"));
    assert_eq!(status, StatusCode::OK);
    let (_, list) = alice.get("/pins?status=queued,pinning,pinned,failed");
    assert_eq!(list["count"], 2);
}

#[test]
fn default_status_is_pinned_only_without_other_filters() {
    let daemon = Daemon::start(test_config(json!({})));
    let alice = Psa::new(&daemon, "alice", "alice-pw");
    let cid = fake_cid(3);
    let pinned = alice.pin(json!({ "cid": cid, "name": "Report-2024", "meta": { "k": "v" } }));
    assert_ne!(pinned["status"], "pinned");
    // No filter: pinned only, so the unfinished pin is hidden.
    let (_, list) = alice.get("/pins");
    assert_eq!(list["count"], 0);
    let (_, list) = alice.get("/pins?limit=5");
    assert_eq!(list["count"], 0);
    // Any filter: every status.
    let created = pinned["created"].as_str().unwrap_or_default();
    for query in [
        format!("/pins?cid={cid}"),
        "/pins?name=Report-2024".to_string(),
        "/pins?name=report-2024&match=iexact".to_string(),
        "/pins?name=port&match=partial".to_string(),
        "/pins?name=REPORT&match=ipartial".to_string(),
        "/pins?meta=%7B%22k%22%3A%22v%22%7D".to_string(),
        "/pins?meta%5Bk%5D=v".to_string(),
        "/pins?before=2999-01-01T00:00:00Z".to_string(),
        "/pins?after=2000-01-01T00:00:00%2B02:00".to_string(),
        "/pins?status=queued%2Cpinning%2Cfailed".to_string(),
    ] {
        let (status, list) = alice.get(&query);
        assert_eq!(status, StatusCode::OK, "{query}: {list}");
        assert_eq!(list["count"], 1, "{query}: {list}");
    }
    // Filters that exclude it.
    for query in [
        "/pins?name=report-2024".to_string(),
        "/pins?name=nothing&match=ipartial".to_string(),
        "/pins?meta=%7B%22k%22%3A%22w%22%7D".to_string(),
        format!("/pins?before={created}"),
        format!("/pins?after={created}"),
        "/pins?status=pinned".to_string(),
    ] {
        let (_, list) = alice.get(&query);
        assert_eq!(list["count"], 0, "{query}: {list}");
    }
}

#[test]
fn replace_moves_to_the_new_cid_or_updates_in_place() {
    let daemon = Daemon::start(test_config(json!({})));
    let alice = Psa::new(&daemon, "alice", "alice-pw");
    let old = fake_cid(10);
    let new = fake_cid(11);
    let first = alice.pin(json!({ "cid": old, "name": "v1" }));

    // Same CID: updated in place, still there (Cluster deletes it here).
    let (status, same) =
        alice.post(&format!("/pins/{old}"), &json!({ "cid": old, "name": "v1b", "meta": { "m": "1" } }));
    assert_eq!(status, StatusCode::ACCEPTED, "{same}");
    assert_eq!(same["requestid"], old.as_str());
    assert_eq!(same["pin"]["meta"]["m"], "1");
    assert_eq!(same["created"], first["created"]);
    let (status, _) = alice.get(&format!("/pins/{old}"));
    assert_eq!(status, StatusCode::OK);

    // Different CID: a new object with a new request ID; the old one is gone.
    let (status, replaced) =
        alice.post(&format!("/pins/{old}"), &json!({ "cid": new, "name": "v2", "origins": ["/ip4/127.0.0.1/tcp/1"] }));
    assert_eq!(status, StatusCode::ACCEPTED, "{replaced}");
    check_pin_status(&replaced, &daemon.peer_id);
    assert_eq!(replaced["requestid"], new.as_str());
    assert_eq!(replaced["pin"]["name"], "v2");
    let (status, _) = alice.get(&format!("/pins/{old}"));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = alice.get(&format!("/pins/{new}"));
    assert_eq!(status, StatusCode::OK);
    let (_, list) = alice.get("/pins?status=queued,pinning,pinned,failed");
    assert_eq!(list["count"], 1);
}

/// Formats a ms RFC 3339 time the way Kubo's Go client does (RFC3339Nano:
/// up to nine digits, trailing zeros dropped).
fn as_go_nano(ms_time: &str) -> String {
    let (head, fraction) = ms_time.trim_end_matches('Z').split_once('.').expect("fraction");
    let nanos = format!("{fraction:0<9}");
    let trimmed = nanos.trim_end_matches('0');
    if trimmed.is_empty() {
        format!("{head}Z")
    } else {
        format!("{head}.{trimmed}Z")
    }
}

#[test]
fn paging_by_before_over_a_burst_never_skips_or_repeats() {
    let daemon = Daemon::start(test_config(json!({})));
    let alice = Psa::new(&daemon, "alice", "alice-pw");
    const PINS: u64 = 2000;
    const THREADS: u64 = 8;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let alice = &alice;
            scope.spawn(move || {
                for i in (t..PINS).step_by(THREADS as usize) {
                    alice.pin(json!({ "cid": fake_cid(1000 + i) }));
                }
            });
        }
    });
    let everything = "status=queued,pinning,pinned,failed";
    let (_, first) = alice.get(&format!("/pins?{everything}&limit=1"));
    assert_eq!(first["count"], PINS);

    for go_precision in [false, true] {
        let mut seen = BTreeSet::new();
        let mut before: Option<String> = None;
        let mut last_created = String::from("9999");
        loop {
            let mut query = format!("/pins?{everything}&limit=97");
            if let Some(b) = &before {
                query.push_str(&format!("&before={b}"));
            }
            let (status, page) = alice.get(&query);
            assert_eq!(status, StatusCode::OK, "{page}");
            let results = page["results"].as_array().expect("results").clone();
            for r in &results {
                let created = r["created"].as_str().expect("created").to_string();
                assert!(created < last_created, "not strictly newest first: {created} after {last_created}");
                last_created = created;
                assert!(seen.insert(r["requestid"].as_str().expect("id").to_string()), "repeated {r}");
            }
            // Kubo stops when count equals the page length.
            if page["count"].as_u64() == Some(results.len() as u64) {
                break;
            }
            let oldest = results.last().expect("non-empty page")["created"].as_str().expect("created").to_string();
            before = Some(if go_precision { as_go_nano(&oldest) } else { oldest });
        }
        assert_eq!(seen.len() as u64, PINS, "go precision: {go_precision}");
    }
}

pub(crate) fn require_tool(path: &std::path::Path, what: &str) {
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/setup-test-deps.sh (make test does) to install {what}",
        path.display()
    );
}

#[test]
fn the_official_js_client_drives_every_operation() {
    let daemon = Daemon::start(test_config(json!({})));
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let cids: Vec<String> = (0..31).map(|i| fake_cid(5000 + i)).collect();
    let mut args = vec![daemon.pinsvc.as_str(), token.as_str(), daemon.peer_id.as_str()];
    args.extend(cids.iter().map(String::as_str));
    run_js_client("psa-client.mjs", &args);
}

#[test]
fn schemathesis_finds_no_schema_violation_and_no_server_error() {
    let root = repo_root();
    let st = root.join(".venv/bin/schemathesis");
    require_tool(&st, "schemathesis");
    let daemon = Daemon::start(test_config(json!({})));
    let alice = Psa::new(&daemon, "alice", "alice-pw");
    // Request IDs in paths are mapped to this pin so those operations reach real logic.
    let known = fake_cid(424_242);
    alice.pin(json!({ "cid": known }));
    // The official document, kept unchanged in the repository (tests/spec/README.md).
    let spec = root.join("tests/spec/ipfs-pinning-service.yaml");
    assert!(spec.is_file(), "{} is missing from the repository", spec.display());
    let output = Command::new(&st)
        .current_dir(tempfile::tempdir().expect("tmp").path())
        .env("PYTHONPATH", root.join("tests/fuzz"))
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PSA_KNOWN_CID", &known)
        .args(["run", &spec.to_string_lossy(), "--url", &daemon.pinsvc])
        .args(["--header", &format!("Authorization: Bearer {}", alice.token)])
        .args(["--checks", "all", "--max-examples", "100", "--seed", "1", "--no-color"])
        .args(["--request-timeout", "20"])
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "schemathesis failed:\n{stdout}\n{stderr}");
}
