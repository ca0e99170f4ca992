//! Issue 17, full disks: on a small tmpfs the test makes itself (see
//! `SmallDisk`), new pins answer 507 while the disk is full and work again
//! once space is freed, without a restart; a pin whose blocks do not fit fails
//! with "no space left" while the others keep theirs, and is recovered once
//! there is room; a restart on a full disk comes up read-only and says so.

use std::time::Duration;

use pincluster_tests::{
    client, eventually, fake_cid, json_of, post_add, random_file, test_config, token, Daemon, Kubo, SmallDisk,
    StatusCode,
};
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;
/// The small disk holding the daemon's `data` folder.
const DISK: u64 = 64 * MIB;
/// `state.min_free_space`: new pins and blocks stop below it, every write below half of it.
const RESERVE: u64 = 16 * MIB;

/// A daemon whose `data` folder is a small disk of its own, started through the disk's namespace.
fn start_on_small_disk(extra: Value) -> (Daemon, SmallDisk) {
    let mut config = test_config(json!({
        "state": { "min_free_space": RESERVE },
        "ipfs": { "pin_timeout": "30s" },
        "pin_tracker": { "max_retries": 0, "retry_backoff": "1h" },
    }));
    pincluster_tests::merge(&mut config, extra);
    let mut daemon = Daemon::init(config);
    let disk = SmallDisk::mount(&daemon.dir().join("data"), DISK);
    daemon.wrapper = disk.wrapper();
    daemon.spawn();
    (daemon, disk)
}

fn psa_pin(daemon: &Daemon, token: &str, body: &Value) -> (StatusCode, Value) {
    json_of(client().post(format!("{}/pins", daemon.pinsvc)).bearer_auth(token).json(body).send().expect("post"))
}

fn rest(daemon: &Daemon, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
    json_of(
        client()
            .request(method, format!("{}{path}", daemon.rest))
            .basic_auth("alice", Some("alice-pw"))
            .send()
            .expect("rest request"),
    )
}

fn psa_status(daemon: &Daemon, token: &str, cid: &str) -> Value {
    let (status, body) =
        json_of(client().get(format!("{}/pins/{cid}", daemon.pinsvc)).bearer_auth(token).send().expect("get"));
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn wait_for(daemon: &Daemon, token: &str, cid: &str, wanted: &str) -> Value {
    eventually(Duration::from_secs(120), &format!("{cid} {wanted}"), || {
        let body = psa_status(daemon, token, cid);
        (body["status"] == wanted).then_some(body)
    })
}

/// Every CID of the user's listing (at most 1000), and the count.
fn listed(daemon: &Daemon, token: &str) -> (u64, Vec<String>) {
    let (status, body) = json_of(
        client()
            .get(format!("{}/pins?status=queued,pinning,pinned,failed&limit=1000", daemon.pinsvc))
            .bearer_auth(token)
            .send()
            .expect("list"),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let cids = body["results"].as_array().unwrap().iter().map(|r| r["pin"]["cid"].as_str().unwrap().to_owned());
    (body["count"].as_u64().unwrap(), cids.collect())
}

/// A refused write: 507 in each API's own error shape, saying why.
fn assert_refused_for_space(daemon: &Daemon, token: &str, cid: &str) {
    let (status, body) = psa_pin(daemon, token, &json!({ "cid": cid }));
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["error"]["reason"], "INSUFFICIENT_STORAGE", "{body}");
    assert!(body["error"]["details"].as_str().unwrap().contains("no space left"), "{body}");
    let (status, body) = rest(daemon, reqwest::Method::POST, &format!("/pins/{cid}"));
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["code"], 507, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no space left"), "{body}");
}

#[test]
fn a_full_disk_refuses_new_pins_with_507_keeps_the_acknowledged_ones_and_recovers_without_restart() {
    let (daemon, disk) = start_on_small_disk(json!({}));
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let acknowledged: Vec<String> = (0..5).map(fake_cid).collect();
    for (i, cid) in acknowledged.iter().enumerate() {
        let (status, body) = psa_pin(&daemon, &token, &json!({ "cid": cid, "name": format!("pin {i}") }));
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (_, id) = rest(&daemon, reqwest::Method::GET, "/id");
    assert_eq!(id["error"], "", "{id}");

    // Below half the reserve: every write the peer can refuse is refused.
    disk.fill_leaving(RESERVE / 4);
    let refused = fake_cid(100);
    assert_refused_for_space(&daemon, &token, &refused);
    let upload = reqwest::blocking::multipart::Part::bytes(vec![7u8; 1024 * 1024]).file_name("big.bin");
    let (status, body) = post_add(&daemon, "", reqwest::blocking::multipart::Form::new().part("file", upload));
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "/add: {body}");
    assert!(body.contains("no space left"), "/add: {body}");
    let (count, cids) = listed(&daemon, &token);
    assert_eq!(count, 5);
    for (i, cid) in acknowledged.iter().enumerate() {
        assert!(cids.contains(cid), "{cid} missing from {cids:?}");
        assert_eq!(psa_status(&daemon, &token, cid)["pin"]["name"], format!("pin {i}"));
    }
    assert!(!cids.contains(&refused));
    let (_, id) = rest(&daemon, reqwest::Method::GET, "/id");
    assert!(id["error"].as_str().unwrap().starts_with("read-only: no space left"), "{id}");
    eventually(Duration::from_secs(30), "the read-only log line", || daemon.log().contains("read-only").then_some(()));

    // Space freed: the same request works, with no restart.
    disk.free();
    let (status, body) = psa_pin(&daemon, &token, &json!({ "cid": refused, "name": "after" }));
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = rest(&daemon, reqwest::Method::POST, &format!("/pins/{}", fake_cid(101)));
    assert_eq!(status, StatusCode::OK, "{body}");
    let (count, cids) = listed(&daemon, &token);
    assert_eq!(count, 7);
    assert!(acknowledged.iter().chain([&refused]).all(|c| cids.contains(c)), "{cids:?}");
    eventually(Duration::from_secs(30), "the writes-resume log line", || {
        daemon.log().contains("writes resume").then_some(())
    });
}

#[test]
fn a_pin_that_does_not_fit_fails_with_no_space_left_and_the_others_keep_their_blocks() {
    let files = tempfile::tempdir().unwrap();
    let mut origin = Kubo::start();
    let small = random_file(&files.path().join("small.bin"), 2 * MIB as usize + 7, 1);
    let small_cid = origin.add(&files.path().join("small.bin"));
    let big = random_file(&files.path().join("big.bin"), 30 * MIB as usize, 2);
    let big_cid = origin.add(&files.path().join("big.bin"));
    let gateway = json!({ "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/0", "deserialized_responses": true });
    let (daemon, disk) = start_on_small_disk(json!({ "api": { "gateway": gateway } }));
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let origins = json!([origin.addrs[0]]);
    let (status, body) = psa_pin(&daemon, &token, &json!({ "cid": small_cid, "origins": origins }));
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_for(&daemon, &token, &small_cid, "pinned");

    // Room above the reserve for a third of the big file.
    disk.fill_leaving(RESERVE + 10 * MIB);
    let (status, body) = psa_pin(&daemon, &token, &json!({ "cid": big_cid, "origins": origins }));
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let failed = wait_for(&daemon, &token, &big_cid, "failed");
    let details = failed["info"]["status_details"].as_str().unwrap();
    assert!(details.contains("no space left"), "{failed}");
    let (_, status) = rest(&daemon, reqwest::Method::GET, &format!("/pins/{big_cid}"));
    let error = status["peer_map"][&daemon.peer_id]["error"].as_str().unwrap();
    assert!(error.contains("no space left"), "{status}");
    // The blocks the failed pin fetched are collected: the room comes back.
    eventually(Duration::from_secs(60), "the failed pin's blocks collected", || {
        (disk.available() > RESERVE + 8 * MIB).then_some(())
    });

    // The other pin is still pinned, its blocks all there.
    assert_eq!(psa_status(&daemon, &token, &small_cid)["status"], "pinned");
    let read_small = |what: &str| {
        let response = client().get(format!("{}/ipfs/{small_cid}", daemon.gateway)).send().expect("gateway");
        assert_eq!(response.status(), StatusCode::OK, "{what}");
        assert!(response.bytes().expect("body").as_ref() == small.as_slice(), "{what}: bytes differ");
    };
    read_small("after the failure");

    // Space freed: recover, and it is pinned, with no restart.
    disk.free();
    let (status, body) = rest(&daemon, reqwest::Method::POST, &format!("/pins/{big_cid}/recover"));
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for(&daemon, &token, &big_cid, "pinned");
    let response = client().get(format!("{}/ipfs/{big_cid}", daemon.gateway)).send().expect("gateway");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().expect("body").as_ref() == big.as_slice(), "recovered bytes differ");
    read_small("after the recovery");
}

#[test]
fn a_restart_on_a_full_disk_comes_up_read_only_and_takes_writes_once_space_is_freed() {
    let (mut daemon, disk) = start_on_small_disk(json!({}));
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let acknowledged: Vec<String> = (0..3).map(fake_cid).collect();
    for cid in &acknowledged {
        let (status, body) = psa_pin(&daemon, &token, &json!({ "cid": cid }));
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    daemon.kill9();
    disk.fill_leaving(2 * MIB);

    daemon.spawn();
    let log = daemon.log();
    assert!(log.contains("read-only: free space is below the reserve"), "{log}");
    let (_, id) = rest(&daemon, reqwest::Method::GET, "/id");
    assert!(id["error"].as_str().unwrap().starts_with("read-only"), "{id}");
    let token = pincluster_tests::token(&daemon.pinsvc, "alice", "alice-pw");
    let (count, cids) = listed(&daemon, &token);
    assert_eq!(count, 3);
    assert!(acknowledged.iter().all(|c| cids.contains(c)), "{cids:?}");
    let (status, lines) = rest(&daemon, reqwest::Method::GET, "/pins");
    assert_eq!(status, StatusCode::OK, "{lines}");
    assert_refused_for_space(&daemon, &token, &fake_cid(200));

    disk.free();
    let (status, body) = psa_pin(&daemon, &token, &json!({ "cid": fake_cid(200) }));
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(listed(&daemon, &token).0, 4);
    eventually(Duration::from_secs(30), "the writes-resume log line", || {
        daemon.log().contains("writes resume").then_some(())
    });
    let (_, id) = rest(&daemon, reqwest::Method::GET, "/id");
    assert_eq!(id["error"], "", "{id}");
}
