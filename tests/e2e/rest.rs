//! Issue 6: the IPFS Cluster compatible REST API end to end: every route,
//! pin option and error through HTTP, NDJSON stream framing, the admin view
//! across users, expiry, `pincluster-ctl` and the `@nftstorage/ipfs-cluster`
//! JS client, all against the real daemon.

use std::process::{Command, Output};
use std::time::Duration;

use pincluster_tests::{fake_cid as cid, *};
use serde_json::{json, Value};

/// A valid peer ID that is not the daemon's.
fn other_peer_id() -> String {
    let dir = tempfile::tempdir().unwrap();
    init_dir(dir.path(), &json!({}));
    let identity: Value = serde_json::from_slice(&std::fs::read(dir.path().join("identity.json")).unwrap()).unwrap();
    identity["id"].as_str().unwrap().to_string()
}

/// A raw answer: status, headers we look at, and the body text.
struct Raw {
    status: StatusCode,
    trailer: Option<String>,
    content_type: Option<String>,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The NDJSON items, checking the framing: one compact object per line,
    /// each line ended by `\n`, never a blank line.
    fn lines(&self) -> Vec<Value> {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert_eq!(self.trailer.as_deref(), Some("X-Stream-Error"), "the stream announces its trailer");
        if self.body.is_empty() {
            return Vec::new();
        }
        assert!(self.body.ends_with('\n'), "last line not terminated: {:?}", self.body);
        self.body
            .strip_suffix('\n')
            .unwrap()
            .split('\n')
            .map(|line| {
                assert!(!line.trim().is_empty(), "blank line in stream: {:?}", self.body);
                let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
                assert_eq!(
                    line.len(),
                    serde_json::to_string(&value).unwrap().len(),
                    "line is not compact JSON: {line}"
                );
                assert!(value.is_object(), "{line}");
                value
            })
            .collect()
    }

    /// The API's error body, checked for shape and code.
    fn error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let body = self.json();
        assert_eq!(body["code"], status.as_u16(), "{body}");
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
        body["message"].as_str().expect("message").to_string()
    }
}

/// A REST client authenticated as one user.
struct Rest {
    base: String,
    user: &'static str,
    password: &'static str,
}

impl Rest {
    fn new(daemon: &Daemon) -> Rest {
        Rest { base: daemon.rest.clone(), user: "alice", password: "alice-pw" }
    }

    fn as_user(&self, user: &'static str, password: &'static str) -> Rest {
        Rest { base: self.base.clone(), user, password }
    }

    fn send(&self, method: &str, path: &str) -> Raw {
        self.send_with(method, path, |r| r)
    }

    fn send_with(&self, method: &str, path: &str, f: impl FnOnce(RequestBuilder) -> RequestBuilder) -> Raw {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let request =
            client().request(method, format!("{}{path}", self.base)).basic_auth(self.user, Some(self.password));
        let response = f(request).send().expect("request");
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
        let (trailer, content_type) = (header("trailer"), header("content-type"));
        let status = response.status();
        Raw { status, trailer, content_type, body: response.text().expect("body") }
    }

    fn ok(&self, method: &str, path: &str) -> Value {
        let raw = self.send(method, path);
        assert_eq!(raw.status, StatusCode::OK, "{method} {path}: {}", raw.body);
        raw.json()
    }

    fn pin(&self, cid: &str, query: &str) -> Value {
        self.ok("POST", &format!("/pins/{cid}?{query}"))
    }
}

/// The keys of an object, in the order they were sent.
fn keys_in_order(body: &str) -> Vec<String> {
    // serde_json keeps insertion order only with preserve_order; read the text instead.
    let value: Value = serde_json::from_str(body).unwrap();
    let mut keys: Vec<(usize, String)> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (body.find(&format!("\"{k}\":")).expect("key in text"), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

const PIN_FIELDS: [&str; 16] = [
    "replication_factor_min",
    "replication_factor_max",
    "name",
    "mode",
    "shard_size",
    "user_allocations",
    "expire_at",
    "metadata",
    "pin_update",
    "origins",
    "cid",
    "type",
    "allocations",
    "max_depth",
    "reference",
    "timestamp",
];

const IN_PROGRESS: [&str; 4] = ["pin_queued", "pinning", "pinned", "pin_error"];

fn peer_status<'a>(info: &'a Value, peer_id: &str) -> &'a str {
    info["peer_map"][peer_id]["status"].as_str().unwrap_or_else(|| panic!("no status for {peer_id}: {info}"))
}

#[test]
fn id_version_and_peers_describe_a_cluster_of_one() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    let raw = rest.send("GET", "/id");
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(
        keys_in_order(&raw.body),
        [
            "id",
            "addresses",
            "cluster_peers",
            "cluster_peers_addresses",
            "version",
            "commit",
            "rpc_protocol_version",
            "error",
            "ipfs",
            "peername",
            // pincluster's own: leader, voter or learner (Cluster's clients ignore unknown fields).
            "role"
        ]
    );
    let id = raw.json();
    assert_eq!(id["id"], daemon.peer_id);
    assert_eq!(id["cluster_peers"], json!([daemon.peer_id]));
    assert_eq!(id["peername"], "test-peer");
    assert_eq!(id["error"], "");
    assert_eq!(id["ipfs"]["error"], "");
    assert_eq!(rest.ok("GET", "/version")["version"], env!("CARGO_PKG_VERSION"));

    let peers = rest.send("GET", "/peers").lines();
    assert_eq!(peers, vec![id.clone()]);
}

#[test]
fn pin_status_allocation_and_unpin_round_trip() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    let c = cid(1);
    // Exactly what the Go client sends: every option, most of them empty.
    let go_query = "name=first&mode=recursive&replication-min=0&replication-max=0&shard-size=0&user-allocations=&\
                    expire-at=0001-01-01T00%3A00%3A00Z&pin-update=&origins=&meta-app=rest&meta-k=v";
    let raw = rest.send("POST", &format!("/pins/{c}?{go_query}"));
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.body);
    assert_eq!(keys_in_order(&raw.body), PIN_FIELDS);
    let pin = raw.json();
    assert_eq!(pin["cid"], c);
    assert_eq!(pin["name"], "first");
    assert_eq!(pin["mode"], "recursive");
    assert_eq!(pin["replication_factor_min"], -1);
    assert_eq!(pin["replication_factor_max"], -1);
    assert_eq!(pin["shard_size"], 0);
    assert_eq!(pin["user_allocations"], Value::Null);
    assert_eq!(pin["expire_at"], "0001-01-01T00:00:00Z");
    assert_eq!(pin["metadata"], json!({"app": "rest", "k": "v"}));
    assert_eq!(pin["pin_update"], Value::Null);
    assert_eq!(pin["origins"], json!([]));
    assert_eq!(pin["type"], "pin");
    assert_eq!(pin["allocations"], json!([]));
    assert_eq!(pin["max_depth"], -1);
    assert_eq!(pin["reference"], Value::Null);
    assert!(pin["timestamp"].as_str().unwrap().ends_with('Z'));

    let raw = rest.send("GET", &format!("/pins/{c}"));
    assert_eq!(keys_in_order(&raw.body), ["cid", "name", "allocations", "origins", "created", "metadata", "peer_map"]);
    let info = raw.json();
    assert_eq!(info["cid"], c);
    assert_eq!(info["name"], "first");
    assert_eq!(info["metadata"], json!({"app": "rest", "k": "v"}));
    assert!(IN_PROGRESS.contains(&peer_status(&info, &daemon.peer_id)), "{info}");
    let peer = &info["peer_map"][&daemon.peer_id];
    assert_eq!(peer["peername"], "test-peer");
    assert_eq!(peer["ipfs_peer_id"], daemon.peer_id);
    for key in ["timestamp", "error", "attempt_count", "priority_pin"] {
        assert!(peer.get(key).is_some(), "{key} missing: {peer}");
    }
    // local=true gives the same shape.
    assert_eq!(rest.ok("GET", &format!("/pins/{c}?local=true"))["cid"], c);
    assert_eq!(
        rest.send("GET", &format!("/pins/{c}?local=maybe")).error(StatusCode::BAD_REQUEST),
        "local: \"maybe\" is not a boolean"
    );

    let allocation = rest.ok("GET", &format!("/allocations/{c}"));
    assert_eq!(allocation["cid"], c);
    assert_eq!(allocation["name"], "first");

    // Re-pinning updates the pin in place.
    let again = rest.pin(&c, "name=renamed");
    assert_eq!(again["name"], "renamed");

    let removed = rest.ok("DELETE", &format!("/pins/{c}"));
    assert_eq!(removed["cid"], c);
    assert_eq!(removed["name"], "renamed");
    let message = rest.send("DELETE", &format!("/pins/{c}")).error(StatusCode::NOT_FOUND);
    assert_eq!(message, "pin is not part of the pinset");
    let info = rest.ok("GET", &format!("/pins/{c}"));
    assert_eq!(peer_status(&info, &daemon.peer_id), "unpinned");
    assert_eq!(info["created"], "0001-01-01T00:00:00Z");
    rest.send("GET", &format!("/allocations/{c}")).error(StatusCode::NOT_FOUND);

    // Bad CIDs in paths.
    let message = rest.send("GET", "/pins/not-a-cid").error(StatusCode::BAD_REQUEST);
    assert!(message.starts_with("error decoding Cid"), "{message}");
    rest.send("POST", "/pins/not-a-cid").error(StatusCode::BAD_REQUEST);
    rest.send("DELETE", "/pins/not-a-cid").error(StatusCode::BAD_REQUEST);
    rest.send("GET", "/allocations/not-a-cid").error(StatusCode::BAD_REQUEST);
}

#[test]
fn pin_options_are_applied_and_invalid_values_are_400() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    let other = other_peer_id();
    let me = daemon.peer_id.clone();

    let pin = rest.pin(&cid(10), "replication=1&mode=direct");
    assert_eq!((pin["replication_factor_min"].clone(), pin["replication_factor_max"].clone()), (json!(1), json!(1)));
    assert_eq!(pin["mode"], "direct");
    assert_eq!(pin["max_depth"], 0);
    assert_eq!(pin["allocations"], json!([me]));

    let origin = format!("/ip4/10.0.0.1/tcp/4001/p2p/{other}");
    let query = format!(
        "user-allocations={other},{me}&origins={}&replication-min=1&replication-max=3&expire-at=2999-01-02T03:04:05Z",
        urlencode(&origin)
    );
    let pin = rest.pin(&cid(11), &query);
    assert_eq!(pin["user_allocations"], json!([other, me]));
    assert_eq!(pin["origins"], json!([origin]));
    assert_eq!(pin["replication_factor_min"], 1);
    assert_eq!(pin["replication_factor_max"], 3);
    assert_eq!(pin["expire_at"], "2999-01-02T03:04:05.000Z");

    let pin = rest.pin(&cid(12), "expire-in=1h30m");
    let expire = pin["expire_at"].as_str().unwrap();
    assert!(expire > "2025" && expire.ends_with('Z'), "{expire}");

    // Going from recursive to direct is refused, as in Cluster.
    rest.pin(&cid(13), "");
    let message = rest.send("POST", &format!("/pins/{}?mode=direct", cid(13))).error(StatusCode::BAD_REQUEST);
    assert!(message.contains("recursive"), "{message}");

    let bad = [
        ("mode=sideways", "mode"),
        ("replication=two", "replication"),
        ("replication-min=2&replication-max=2", "not enough peers"),
        ("replication-min=3&replication-max=2", "larger than"),
        ("replication-min=1", "both"),
        ("replication=-5", "-1"),
        ("shard-size=big", "shard-size"),
        ("user-allocations=nobody", "user-allocations"),
        ("origins=/ip4/1.2.3.4/tcp/1", "/p2p/"),
        ("origins=garbage", "origins"),
        ("expire-at=yesterday", "expire-at"),
        ("expire-at=2001-01-01T00:00:00Z", "not in the future"),
        ("expire-in=500ms", "shorter than 1s"),
        ("expire-in=soon", "expire-in"),
        ("pin-update=not-a-cid", "pin-update"),
        ("meta-=x", "meta"),
        ("local=perhaps", "local"),
    ];
    for (query, words) in bad {
        let raw = rest.send("POST", &format!("/pins/{}?{query}", cid(14)));
        let message = raw.error(StatusCode::BAD_REQUEST);
        assert!(message.contains(words), "{query}: {message}");
    }
    let message =
        rest.send("POST", &format!("/pins/{}?pin-update={}", cid(14), cid(999))).error(StatusCode::BAD_REQUEST);
    assert!(message.contains("not part of the pinset"), "{message}");
    let name = "n".repeat(256);
    rest.send("POST", &format!("/pins/{}?name={name}", cid(14))).error(StatusCode::BAD_REQUEST);
    // Nothing was pinned by the refused requests.
    assert_eq!(peer_status(&rest.ok("GET", &format!("/pins/{}", cid(14))), &me), "unpinned");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[test]
fn pin_update_takes_the_old_pins_options_and_keeps_it() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    let (from, to) = (cid(20), cid(21));
    rest.pin(&from, "name=old&replication=1&meta-app=one");
    let pin = rest.pin(&to, &format!("pin-update={from}&name=new&meta-ignored=yes&replication-min=0"));
    assert_eq!(pin["pin_update"], from);
    assert_eq!(pin["name"], "new");
    assert_eq!(pin["metadata"], json!({"app": "one"}));
    assert_eq!(pin["replication_factor_min"], 1);
    assert_eq!(rest.ok("GET", &format!("/allocations/{from}"))["name"], "old");
    assert_eq!(rest.ok("GET", &format!("/allocations/{to}"))["pin_update"], Value::Null);
}

#[test]
fn path_forms_take_a_bare_cid_and_refuse_paths_that_need_resolving() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    let c = cid(30);
    assert_eq!(rest.ok("POST", &format!("/pins/ipfs/{c}?name=by-path"))["cid"], c);
    assert_eq!(rest.ok("GET", &format!("/pins/{c}"))["name"], "by-path");
    assert_eq!(rest.ok("DELETE", &format!("/pins/ipfs/{c}"))["cid"], c);
    assert_eq!(rest.ok("POST", &format!("/pins/ipld/{c}"))["cid"], c);
    assert_eq!(rest.ok("DELETE", &format!("/pins/ipld/{c}/"))["cid"], c);
    rest.send("DELETE", &format!("/pins/ipfs/{c}")).error(StatusCode::NOT_FOUND);
    for path in [format!("/pins/ipfs/{c}/dir/file"), "/pins/ipns/example.com".to_string()] {
        let message = rest.send("POST", &path).error(StatusCode::BAD_REQUEST);
        assert!(message.contains("resolv"), "{message}");
    }
    rest.send("POST", "/pins/ipfs/not-a-cid").error(StatusCode::BAD_REQUEST);
    rest.send("POST", "/pins/other/thing").error(StatusCode::NOT_FOUND);
}

#[test]
fn streams_are_ndjson_with_a_trailer_and_empty_is_200() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);

    // Empty pinset: 200, empty body, trailer announced.
    for path in ["/pins", "/allocations", "/pins?filter=pinned", "/pins/recover"] {
        let method = if path == "/pins/recover" { "POST" } else { "GET" };
        let raw = rest.send(method, path);
        assert_eq!(raw.status, StatusCode::OK, "{path}");
        assert_eq!(raw.body, "", "{path}");
        assert_eq!(raw.lines(), Vec::<Value>::new());
        assert_eq!(raw.content_type.as_deref(), Some("application/json"));
    }

    let cids: Vec<String> = (0..7).map(|i| cid(100 + i)).collect();
    for (i, c) in cids.iter().enumerate() {
        rest.pin(c, &format!("name=s{i}"));
    }
    // A pin of another user, made through the PSA: the REST view sees it.
    let bob = token(&daemon.pinsvc, "bob", "bob-pw");
    let bobs = cid(200);
    let (status, _) = json_of(
        client()
            .post(format!("{}/pins", daemon.pinsvc))
            .bearer_auth(&bob)
            .json(&json!({"cid": bobs, "name": "bobs"}))
            .send()
            .unwrap(),
    );
    assert_eq!(status, StatusCode::ACCEPTED);

    let all = rest.send("GET", "/pins").lines();
    assert_eq!(all.len(), 8);
    let mut seen: Vec<String> = all.iter().map(|v| v["cid"].as_str().unwrap().to_string()).collect();
    seen.sort();
    let mut expected = cids.clone();
    expected.push(bobs.clone());
    expected.sort();
    assert_eq!(seen, expected);
    let bob_info = all.iter().find(|v| v["cid"] == bobs).unwrap();
    assert_eq!(bob_info["name"], "bobs");
    for info in &all {
        assert!(IN_PROGRESS.contains(&peer_status(info, &daemon.peer_id)), "{info}");
    }

    let every = rest.send("GET", "/pins?filter=pin_queued,pinning,pinned,pin_error").lines();
    assert_eq!(every.len(), 8);
    assert_eq!(rest.send("GET", "/pins?filter=queued,error,pinning,pinned,bogus").lines().len(), 8);
    assert!(rest.send("GET", "/pins?filter=unpinned").lines().is_empty());
    assert!(rest.send("GET", "/pins?filter=remote,sharded").lines().is_empty());
    let message = rest.send("GET", "/pins?filter=bogus").error(StatusCode::BAD_REQUEST);
    assert!(message.contains("invalid filter value"), "{message}");

    // Per-CID mode: in the order asked, unknown CIDs unpinned, filter ignored.
    let unknown = cid(300);
    let some = rest.send("GET", &format!("/pins?cids={},{unknown},{}&filter=unpinned", cids[3], cids[0])).lines();
    assert_eq!(
        some.iter().map(|v| v["cid"].clone()).collect::<Vec<_>>(),
        vec![json!(cids[3]), json!(unknown), json!(cids[0])]
    );
    assert_eq!(peer_status(&some[1], &daemon.peer_id), "unpinned");
    rest.send("GET", "/pins?cids=nope").error(StatusCode::BAD_REQUEST);
    rest.send("GET", "/pins?local=sometimes").error(StatusCode::BAD_REQUEST);

    let allocations = rest.send("GET", "/allocations").lines();
    assert_eq!(allocations.len(), 8);
    for pin in &allocations {
        assert_eq!(pin.as_object().unwrap().len(), PIN_FIELDS.len(), "{pin}");
    }
    assert_eq!(rest.send("GET", "/allocations?filter=pin").lines().len(), 8);
    assert_eq!(rest.send("GET", "/allocations?filter=all").lines().len(), 8);
    assert!(rest.send("GET", "/allocations?filter=shard-pin,meta-pin").lines().is_empty());
    rest.send("GET", "/allocations?filter=bogus").error(StatusCode::BAD_REQUEST);

    // The admin view removes another user's pin too.
    rest.ok("DELETE", &format!("/pins/{bobs}"));
    let (status, _) = json_of(client().get(format!("{}/pins/{bobs}", daemon.pinsvc)).bearer_auth(&bob).send().unwrap());
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn a_large_pinset_streams_every_pin_once() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    let bob = token(&daemon.pinsvc, "bob", "bob-pw");
    // Pinned through the PSA concurrently to be quick; the stream must list each once.
    let cids: Vec<String> = (0..300).map(|i| cid(1000 + i)).collect();
    std::thread::scope(|s| {
        for chunk in cids.chunks(50) {
            let (pinsvc, bob) = (daemon.pinsvc.clone(), bob.clone());
            s.spawn(move || {
                for c in chunk {
                    let response = client()
                        .post(format!("{pinsvc}/pins"))
                        .bearer_auth(&bob)
                        .json(&json!({"cid": c}))
                        .send()
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::ACCEPTED);
                }
            });
        }
    });
    let lines = rest.send("GET", "/pins").lines();
    let mut seen: Vec<String> = lines.iter().map(|v| v["cid"].as_str().unwrap().to_string()).collect();
    seen.sort();
    let mut expected = cids.clone();
    expected.sort();
    assert_eq!(seen, expected);
}

#[test]
fn a_rest_pin_belongs_to_the_rest_user_in_the_psa_view() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    let c = cid(40);
    rest.pin(&c, "name=mine&meta-owner=alice");
    let alice = token(&daemon.pinsvc, "alice", "alice-pw");
    let bob = token(&daemon.pinsvc, "bob", "bob-pw");
    let (status, body) =
        json_of(client().get(format!("{}/pins/{c}", daemon.pinsvc)).bearer_auth(&alice).send().unwrap());
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pin"]["name"], "mine");
    assert_eq!(body["pin"]["meta"], json!({"owner": "alice"}));
    let (status, _) = json_of(client().get(format!("{}/pins/{c}", daemon.pinsvc)).bearer_auth(&bob).send().unwrap());
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bob pins the same CID through REST: both hold it; GET shows the caller's own name.
    let bob_rest = rest.as_user("bob", "bob-pw");
    bob_rest.pin(&c, "name=bobs-name");
    assert_eq!(bob_rest.ok("GET", &format!("/pins/{c}"))["name"], "bobs-name");
    assert_eq!(rest.ok("GET", &format!("/pins/{c}"))["name"], "mine");
    // A Bearer token works on REST as well.
    let rest_token = token(&daemon.rest, "alice", "alice-pw");
    let (status, body) =
        json_of(client().get(format!("{}/pins/{c}", daemon.rest)).bearer_auth(rest_token).send().unwrap());
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "mine");
}

#[test]
fn expired_pins_are_unpinned_automatically() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    let (short, long) = (cid(50), cid(51));
    rest.pin(&long, "expire-in=1h");
    let pin = rest.pin(&short, "expire-in=1s");
    assert_ne!(pin["expire_at"], "0001-01-01T00:00:00Z");
    eventually(Duration::from_secs(20), "the expired pin to go", || {
        let info = rest.ok("GET", &format!("/pins/{short}"));
        (peer_status(&info, &daemon.peer_id) == "unpinned").then_some(())
    });
    assert!(IN_PROGRESS.contains(&peer_status(&rest.ok("GET", &format!("/pins/{long}")), &daemon.peer_id)));
    // The log is read from the daemon's stderr by another thread: wait for the line.
    eventually(Duration::from_secs(5), "the expiry log line", || {
        daemon.log().contains("unpinned an expired pin").then_some(())
    });
}

#[test]
fn expiry_survives_a_restart() {
    let mut daemon = Daemon::start(test_config(json!({})));
    let c = cid(55);
    Rest::new(&daemon).pin(&c, "expire-in=3s");
    daemon.stop();
    std::thread::sleep(Duration::from_secs(3));
    daemon.spawn();
    let rest = Rest::new(&daemon);
    eventually(Duration::from_secs(20), "the pin that expired while down to go", || {
        let info = rest.ok("GET", &format!("/pins/{c}"));
        (peer_status(&info, &daemon.peer_id) == "unpinned").then_some(())
    });
}

#[test]
fn recover_requeues_failed_pins() {
    // Content that exists nowhere fails after a 1s stall, without retries.
    let daemon =
        Daemon::start(test_config(json!({ "ipfs": { "pin_timeout": "1s" }, "pin_tracker": { "max_retries": 0 } })));
    let rest = Rest::new(&daemon);
    let (c, other) = (cid(60), cid(61));
    rest.send("POST", &format!("/pins/{}/recover", cid(62))).error(StatusCode::NOT_FOUND);
    rest.send("POST", "/pins/nope/recover").error(StatusCode::BAD_REQUEST);
    rest.pin(&c, "");
    rest.pin(&other, "");
    for each in [&c, &other] {
        let info = eventually(Duration::from_secs(30), "the pin to fail", || {
            let info = rest.ok("GET", &format!("/pins/{each}"));
            (peer_status(&info, &daemon.peer_id) == "pin_error").then_some(info)
        });
        assert_ne!(info["peer_map"][&daemon.peer_id]["error"], "", "{info}");
    }
    let filtered = rest.send("GET", "/pins?filter=pin_error").lines();
    assert_eq!(filtered.len(), 2);

    let info = rest.ok("POST", &format!("/pins/{c}/recover?local=true"));
    assert_eq!(info["cid"], c);
    assert!(["pin_queued", "pinning"].contains(&peer_status(&info, &daemon.peer_id)), "{info}");

    // Recover-all lists only what it re-queued: `other`, not `c` (unless it failed again meanwhile).
    let requeued = rest.send("POST", "/pins/recover").lines();
    assert!(requeued.iter().any(|v| v["cid"] == other), "{requeued:?}");
    for info in &requeued {
        assert!(["pin_queued", "pinning"].contains(&peer_status(info, &daemon.peer_id)), "{info}");
    }
}

#[test]
fn peers_can_not_be_added_or_removed_in_a_cluster_of_one() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    let other = other_peer_id();
    let add = |body: &str| {
        rest.send_with("POST", "/peers", |r| r.header("content-type", "application/json").body(body.to_string()))
    };
    // Peers join by themselves (`daemon --bootstrap`); the message says how.
    let message = add(&json!({ "peer_id": other }).to_string()).error(StatusCode::NOT_IMPLEMENTED);
    assert!(message.contains("--bootstrap"), "{message}");
    add(&json!({ "peer_id": "not-a-peer" }).to_string()).error(StatusCode::BAD_REQUEST);
    add("{").error(StatusCode::BAD_REQUEST);
    add(&json!({ "peer": other }).to_string()).error(StatusCode::BAD_REQUEST);
    let me = add(&json!({ "peer_id": daemon.peer_id }).to_string());
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["id"], daemon.peer_id);

    let message = rest.send("DELETE", &format!("/peers/{}", daemon.peer_id)).error(StatusCode::BAD_REQUEST);
    assert!(message.contains("only"), "{message}");
    rest.send("DELETE", &format!("/peers/{other}")).error(StatusCode::NOT_FOUND);
    rest.send("DELETE", "/peers/garbage").error(StatusCode::BAD_REQUEST);
}

#[test]
fn health_metrics_and_gc_answer_for_this_peer() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    let me = daemon.peer_id.clone();
    let graph = rest.ok("GET", "/health/graph");
    assert_eq!(graph["cluster_id"], me);
    assert_eq!(graph["id_to_peername"][&me], "test-peer");
    assert_eq!(graph["cluster_to_ipfs"][&me], me);
    assert_eq!(graph["cluster_links"][&me], json!([]));
    assert_eq!(rest.ok("GET", "/health/alerts"), json!([]));
    assert!(rest.ok("GET", "/health/bandwidth").is_object());

    let names = rest.ok("GET", "/monitor/metrics");
    assert_eq!(names, json!(["freespace", "ping", "pinqueue", "reposize"]));
    let free = rest.ok("GET", "/monitor/metrics/freespace");
    let bytes: u64 = free[0]["value"].as_str().unwrap().parse().unwrap();
    assert!(bytes > 0 && free[0]["weight"].as_i64() == i64::try_from(bytes).ok(), "{free}");
    rest.pin(&cid(70), "");
    let queue = rest.ok("GET", "/monitor/metrics/pinqueue");
    let metric = &queue[0];
    assert_eq!(queue.as_array().unwrap().len(), 1);
    for key in ["name", "peer", "value", "expire", "valid", "weight", "partitionable", "received_at"] {
        assert!(metric.get(key).is_some(), "{key}: {metric}");
    }
    assert_eq!(metric["name"], "pinqueue");
    assert_eq!(metric["peer"], me);
    assert!(metric["value"].as_str().unwrap().parse::<u64>().is_ok(), "{metric}");
    assert!(metric["expire"].as_i64().unwrap() > metric["received_at"].as_i64().unwrap());
    let size = rest.ok("GET", "/monitor/metrics/reposize");
    assert!(size[0]["value"].as_str().unwrap().parse::<u64>().is_ok(), "{size}");
    assert_eq!(rest.ok("GET", "/monitor/metrics/ping")[0]["valid"], true);
    assert_eq!(rest.ok("GET", "/monitor/metrics/nonsense"), json!([]));

    let gc = rest.ok("POST", "/ipfs/gc");
    assert_eq!(gc["peer_map"][&me]["peer"], me);
    assert_eq!(gc["peer_map"][&me]["peername"], "test-peer");
    assert_eq!(gc["peer_map"][&me]["error"], "");
    assert_eq!(gc["peer_map"][&me]["keys"], json!([]));
}

#[test]
fn unknown_routes_wrong_methods_and_auth_failures_use_the_error_shape() {
    let daemon = Daemon::start(test_config(json!({})));
    let rest = Rest::new(&daemon);
    assert_eq!(rest.send("GET", "/nothing-here").error(StatusCode::NOT_FOUND), "not found");
    assert_eq!(rest.send("PUT", &format!("/pins/{}", cid(80))).status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(rest.send("GET", "/pins/recover").status, StatusCode::METHOD_NOT_ALLOWED);
    let wrong = rest.as_user("alice", "wrong");
    assert_eq!(wrong.send("GET", "/pins").error(StatusCode::UNAUTHORIZED), "unauthorized: access denied");
    // A trailing slash is the same route.
    assert_eq!(rest.ok("GET", "/version/")["version"], env!("CARGO_PKG_VERSION"));
}

// ---- pincluster-ctl ------------------------------------------------------

/// `http://127.0.0.1:PORT` as `/ip4/127.0.0.1/tcp/PORT`.
pub(crate) fn multiaddr_of(url: &str) -> String {
    let host_port = url.strip_prefix("http://").unwrap();
    let (host, port) = host_port.rsplit_once(':').unwrap();
    format!("/ip4/{host}/tcp/{port}")
}

fn ctl(host: &str, auth: &[&str], args: &[&str]) -> Output {
    Command::new(binary("pincluster-ctl"))
        .args(["--host", host])
        .args(auth)
        .args(args)
        .output()
        .expect("run pincluster-ctl")
}

pub(crate) fn ctl_ok(host: &str, auth: &[&str], args: &[&str]) -> String {
    let out = ctl(host, auth, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{args:?} failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    stdout
}

pub(crate) fn ctl_err(host: &str, auth: &[&str], args: &[&str]) -> String {
    let out = ctl(host, auth, args);
    assert!(!out.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

#[test]
fn pincluster_ctl_drives_the_api_end_to_end() {
    let daemon = Daemon::start(test_config(json!({})));
    let host = multiaddr_of(&daemon.rest);
    let basic: &[&str] = &["--basic-auth", "alice:alice-pw"];
    let me = daemon.peer_id.as_str();

    let id = ctl_ok(&host, basic, &["id"]);
    assert!(id.starts_with(&format!("{me} | test-peer | Sees 0 other peers")), "{id}");
    let id_json: Value = serde_json::from_str(&ctl_ok(&host, basic, &["--enc", "json", "id"])).unwrap();
    assert_eq!(id_json["id"], me);
    assert_eq!(ctl_ok(&host, basic, &["version"]).trim(), env!("CARGO_PKG_VERSION"));
    assert!(ctl_ok(&host, basic, &["peers", "ls"]).contains(me));

    let (a, b) = (cid(90), cid(91));
    let added =
        ctl_ok(&host, basic, &["pin", "add", &a, "--name", "from-ctl", "--metadata", "k=v", "--replication", "1"]);
    assert!(added.starts_with(&format!("{a} | from-ctl:")), "{added}");
    assert!(added.contains("test-peer"), "{added}");
    let ls = ctl_ok(&host, basic, &["pin", "ls"]);
    assert!(ls.contains(&format!("{a} | from-ctl | PIN | Repl. Factor: 1--1")), "{ls}");
    assert!(ls.contains("Metadata: yes"), "{ls}");
    let one: Value = serde_json::from_str(&ctl_ok(&host, basic, &["--enc", "json", "pin", "ls", &a])).unwrap();
    assert_eq!(one["metadata"], json!({"k": "v"}));

    let updated = ctl_ok(&host, basic, &["pin", "update", &a, &b, "--name", "updated"]);
    assert!(updated.starts_with(&format!("{b} | updated:")), "{updated}");
    let status = ctl_ok(&host, basic, &["status"]);
    assert!(status.contains(&a) && status.contains(&b), "{status}");
    let status = ctl_ok(&host, basic, &["status", &b]);
    assert!(status.contains(&b) && !status.contains(&a), "{status}");
    let status: Value =
        serde_json::from_str(&ctl_ok(&host, basic, &["--enc", "json", "status", "--filter", "unpinned"])).unwrap();
    assert_eq!(status, json!([]));
    let recovered = ctl_ok(&host, basic, &["recover", &a]);
    assert!(recovered.contains(&a), "{recovered}");
    ctl_ok(&host, basic, &["recover"]);

    let removed = ctl_ok(&host, basic, &["pin", "rm", &a]);
    assert!(removed.contains("UNPINNED"), "{removed}");
    let message = ctl_err(&host, basic, &["pin", "rm", &a]);
    assert!(message.contains("404") && message.contains("pin is not part of the pinset"), "{message}");

    // A token from `token` works with --token, and the URL form of --host too.
    let token = ctl_ok(&host, basic, &["token"]).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let listed = ctl_ok(&daemon.rest, &["--token", &token], &["pin", "ls", &b]);
    assert!(listed.contains("updated"), "{listed}");

    assert_eq!(ctl_ok(&host, &[], &["health"]).trim(), "ok");
    assert!(ctl_ok(&host, basic, &["health", "graph"]).contains(me));
    assert_eq!(ctl_ok(&host, basic, &["health", "alerts"]).trim(), "no alerts");
    assert!(ctl_ok(&host, basic, &["health", "metrics"]).contains("pinqueue"));
    assert!(ctl_ok(&host, basic, &["health", "metrics", "pinqueue"]).contains("pinqueue"));
    ctl_ok(&host, basic, &["health", "bandwidth"]);

    // Errors: one line on stderr, non-zero exit.
    let message = ctl_err(&host, &["--basic-auth", "alice:nope"], &["id"]);
    assert!(message.contains("401") && message.contains("unauthorized"), "{message}");
    let message = ctl_err(&host, &[], &["pin", "ls"]);
    assert!(message.contains("401"), "{message}");
    let message = ctl_err(&host, basic, &["pin", "add", "not-a-cid"]);
    assert!(message.contains("400"), "{message}");
    let message = ctl_err(&host, basic, &["pin", "add", &a, "--mode", "sideways"]);
    assert!(message.contains("mode"), "{message}");
    ctl_err("/ip4/127.0.0.1/tcp/1", basic, &["id"]);
    ctl_err("not an address", basic, &["id"]);
    ctl_err(&host, &["--basic-auth", "no-colon"], &["id"]);
}

// ---- the @nftstorage/ipfs-cluster JS client -------------------------------

#[test]
fn the_nftstorage_js_client_drives_every_method_it_has() {
    let daemon = Daemon::start(test_config(json!({})));
    let auth = format!("Basic {}", base64_of("alice:alice-pw"));
    let cids = [cid(400), cid(401), cid(402)];
    run_js_client("cluster-client.mjs", &[&daemon.rest, &auth, &daemon.peer_id, &cids[0], &cids[1], &cids[2]]);
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
