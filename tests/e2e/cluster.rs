//! Issue 13, a real cluster: several real daemons on loopback, each with its
//! own folder and embedded node, sharing one pinset through Raft on the
//! private cluster port. Allocation by replication factor, writes through
//! any peer, losing peers, repair, `peers rm`, outsiders refused.

use std::time::Duration;

use pincluster_tests::*;
use serde_json::{json, Value};

use crate::rest::multiaddr_of;

/// The cluster secret of these tests (64 hex characters).
const SECRET: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
const WAIT: Duration = Duration::from_secs(60);

/// `len` pseudo-random bytes from `seed`: content no other test pins.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn peer_config(extra: Value) -> Value {
    let mut cluster = json!({
        "secret": SECRET,
        "monitor_ping_interval": "500ms",
        "metric_ttl": "2s",
        "repin_delay": "1s",
    });
    if let (Some(c), Value::Object(e)) = (cluster.as_object_mut(), extra) {
        c.extend(e);
    }
    test_config(json!({ "cluster": cluster }))
}

/// GET `url` as alice: status and JSON body.
fn alice_get(url: String) -> (StatusCode, Value) {
    json_of(client().get(url).basic_auth("alice", Some("alice-pw")).send().unwrap())
}

/// The peers `daemon` lists, one JSON object each.
fn peers(daemon: &Daemon) -> Vec<Value> {
    let response = client().get(format!("{}/peers", daemon.rest)).basic_auth("alice", Some("alice-pw")).send();
    let Ok(response) = response else { return Vec::new() };
    response.text().unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Waits until every daemon lists `n` peers, all up, exactly one leader.
fn wait_for_members(daemons: &[&Daemon], n: usize) {
    eventually(WAIT, &format!("{n} healthy peers seen by every peer"), || {
        daemons
            .iter()
            .all(|d| {
                let list = peers(d);
                list.len() == n
                    && list.iter().all(|p| p["error"] == "")
                    && list.iter().filter(|p| p["role"] == "leader").count() == 1
            })
            .then_some(())
    });
}

/// Starts a cluster of `n` voters: the first alone, the others joining it.
fn start_cluster(n: usize) -> Vec<Daemon> {
    start_cluster_with(n, json!({}))
}

/// [`start_cluster`] with more settings of the `cluster` section.
fn start_cluster_with(n: usize, extra: Value) -> Vec<Daemon> {
    let config = |name: String, bootstrap: Option<String>| {
        let mut cluster = extra.clone();
        cluster["peername"] = json!(name);
        if let Some(bootstrap) = bootstrap {
            cluster["bootstrap"] = json!([bootstrap]);
        }
        peer_config(cluster)
    };
    let first = Daemon::start(config("peer0".into(), None));
    let mut daemons = vec![first];
    for i in 1..n {
        let bootstrap = daemons[0].cluster.clone();
        daemons.push(Daemon::start(config(format!("peer{i}"), Some(bootstrap))));
    }
    wait_for_members(&daemons.iter().collect::<Vec<_>>(), n);
    daemons
}

fn role_of(daemon: &Daemon, of: &Daemon) -> String {
    peers(daemon)
        .iter()
        .find(|p| p["id"] == of.peer_id.as_str())
        .map(|p| p["role"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Adds a small file through `daemon`'s `/add` with `query`; returns its CID.
fn add(daemon: &Daemon, query: &str, bytes: Vec<u8>) -> String {
    let added = add_files(daemon, query, &[("f.bin", &bytes)]);
    added.last().and_then(|root| root["cid"].as_str()).expect("the root's CID").to_string()
}

fn status(daemon: &Daemon, cid: &str) -> Value {
    let (code, body) = alice_get(format!("{}/pins/{cid}", daemon.rest));
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// The statuses in a `GlobalPinInfo`'s peer map, by peer ID.
fn peer_statuses(info: &Value) -> Vec<(String, String)> {
    info["peer_map"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v["status"].as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

/// How many of alice's pins the PSA lists for `cid` (with `filter`, e.g. `&status=pinned`).
fn psa_count(daemon: &Daemon, cid: &str, filter: &str) -> u64 {
    let (code, body) = alice_get(format!("{}/pins?cid={cid}{filter}", daemon.pinsvc));
    assert_eq!(code, StatusCode::OK, "{body}");
    body["count"].as_u64().unwrap()
}

fn allocations(daemon: &Daemon, cid: &str) -> Vec<String> {
    let (code, body) = alice_get(format!("{}/allocations/{cid}", daemon.rest));
    assert_eq!(code, StatusCode::OK, "{body}");
    body["allocations"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

/// Waits until exactly `holders` show `pinned` for `cid` and the others `remote`, as `daemon` sees it.
fn wait_held_by(daemon: &Daemon, cid: &str, holders: &[&str], peers_total: usize) -> Value {
    let mut last = Value::Null;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let info = status(daemon, cid);
        let statuses = peer_statuses(&info);
        let ok = statuses.len() == peers_total
            && statuses.iter().all(|(peer, status)| {
                if holders.contains(&peer.as_str()) {
                    status == "pinned"
                } else {
                    status == "remote"
                }
            });
        if ok {
            return info;
        }
        assert!(std::time::Instant::now() < deadline, "{cid} not pinned on {holders:?}: last status {last}");
        last = info;
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_voters_pin_through_a_follower_on_exactly_two_peers() {
    let daemons = start_cluster(3);
    let follower = daemons.iter().find(|d| role_of(&daemons[0], d) != "leader").unwrap();
    let cid = add(follower, "replication-min=2&replication-max=2", bytes(200 * 1024, 13));

    let allocated = allocations(follower, &cid);
    assert_eq!(allocated.len(), 2, "{allocated:?}");
    let holders: Vec<&str> = allocated.iter().map(String::as_str).collect();
    for daemon in &daemons {
        // Every peer shows the same allocation, both holders pinned and the third remote.
        assert_eq!(allocations(daemon, &cid), allocated);
        let info = wait_held_by(daemon, &cid, &holders, 3);
        assert_eq!(info["allocations"].as_array().unwrap().len(), 2);
        // Both APIs on every peer show the pin and count it, and the PSA
        // lists it `pinned` everywhere (the summary of the holders' reports),
        // also on the peer that holds nothing.
        assert_eq!(psa_count(daemon, &cid, ""), 1);
        eventually(WAIT, "pinned in the PSA listing of every peer", || {
            (psa_count(daemon, &cid, "&status=pinned") == 1).then_some(())
        });
        assert_eq!(psa_count(daemon, &cid, "&status=queued,pinning,failed"), 0);
    }
    // `peers ls` through the real client shows every peer with its role and health.
    let output = std::process::Command::new(binary("pincluster-ctl"))
        .args(["--host", &multiaddr_of(&daemons[2].rest), "--basic-auth", "alice:alice-pw", "peers", "ls"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    for name in ["peer0", "peer1", "peer2"] {
        assert!(text.contains(name), "{text}");
    }
    assert_eq!(text.matches("> Role: leader, up").count(), 1, "{text}");
    assert_eq!(text.matches("> Role: voter, up").count(), 2, "{text}");
}

/// The PSA status of alice's pin of `cid` on `daemon`.
fn psa_status(daemon: &Daemon, cid: &str) -> String {
    let (code, body) = alice_get(format!("{}/pins/{cid}", daemon.pinsvc));
    assert_eq!(code, StatusCode::OK, "{body}");
    body["status"].as_str().unwrap_or_default().to_string()
}

/// `daemon`'s own repo size metric, in bytes.
fn repo_size(daemon: &Daemon) -> u64 {
    let (_, metrics) = alice_get(format!("{}/monitor/metrics/reposize", daemon.rest));
    let own = metrics.as_array().and_then(|m| m.iter().find(|m| m["peer"] == daemon.peer_id.as_str()).cloned());
    own.and_then(|m| m["value"].as_str().and_then(|v| v.parse().ok())).unwrap_or(0)
}

/// POSTs a PSA pin body to `path` on `daemon`; returns the status code.
fn psa_post(daemon: &Daemon, path: &str, cid: &str) -> StatusCode {
    client()
        .post(format!("{}{path}", daemon.pinsvc))
        .basic_auth("alice", Some("alice-pw"))
        .json(&json!({ "cid": cid }))
        .send()
        .unwrap()
        .status()
}

#[test]
fn psa_pins_and_replacements_are_allocated_and_an_adder_drops_what_others_hold() {
    let daemons = start_cluster_with(3, json!({ "replication_factor_min": 2, "replication_factor_max": 2 }));
    let (adder, other) = (&daemons[0], &daemons[1]);

    // Added on one peer for another alone: once that one holds it, the adder's
    // collector drops the blocks it only kept to serve them.
    let query = format!("user-allocations={}&replication-min=1&replication-max=1", other.peer_id);
    let cid = add(adder, &query, bytes(300 * 1024, 21));
    assert_eq!(allocations(adder, &cid), vec![other.peer_id.clone()]);
    eventually(WAIT, "the allocated peer's report", || (psa_status(adder, &cid) == "pinned").then_some(()));
    let before = repo_size(adder);
    assert!(before >= 300 * 1024, "the adder holds the DAG: {before}");
    let gc = client().post(format!("{}/ipfs/gc", adder.rest)).basic_auth("alice", Some("alice-pw")).send().unwrap();
    assert_eq!(gc.status(), StatusCode::OK);
    eventually(WAIT, "the adder's repo to shrink", || (repo_size(adder) + 250 * 1024 <= before).then_some(()));

    // A PSA pin takes the default replication factor, and so does the CID a
    // replacement brings: each lands on exactly two peers, pinned everywhere.
    let first = add(adder, "no-pin=true", bytes(64 * 1024, 22));
    let second = add(adder, "no-pin=true", bytes(64 * 1024, 23));
    assert_eq!(psa_post(adder, "/pins", &first), StatusCode::ACCEPTED);
    assert_eq!(allocations(adder, &first).len(), 2);
    assert_eq!(psa_post(other, &format!("/pins/{first}"), &second), StatusCode::ACCEPTED);
    let allocated = allocations(other, &second);
    assert_eq!(allocated.len(), 2, "{allocated:?}");
    let holders: Vec<&str> = allocated.iter().map(String::as_str).collect();
    for daemon in &daemons {
        wait_held_by(daemon, &second, &holders, 3);
        eventually(WAIT, "the replacement pinned in every PSA", || {
            (psa_status(daemon, &second) == "pinned").then_some(())
        });
        assert_eq!(psa_count(daemon, &first, ""), 0);
    }
}

#[test]
fn a_dead_holder_is_replaced_after_repin_delay_and_nothing_is_lost() {
    let mut daemons = start_cluster(3);
    let leader = daemons.iter().position(|d| role_of(&daemons[0], d) == "leader").unwrap();
    // Pin on two peers, added through the leader so that it holds the content.
    let cid = add(&daemons[leader], "replication-min=2&replication-max=2", bytes(300 * 1024, 31));
    let allocated = allocations(&daemons[leader], &cid);
    let holders: Vec<&str> = allocated.iter().map(String::as_str).collect();
    wait_held_by(&daemons[leader], &cid, &holders, 3);

    // kill -9 a holder that is not the leader (or, if the leader holds both... it holds one of them).
    let victim = daemons
        .iter()
        .position(|d| holders.contains(&d.peer_id.as_str()) && role_of(&daemons[leader], d) != "leader")
        .unwrap();
    let victim_id = daemons[victim].peer_id.clone();
    daemons[victim].kill9();

    // After metric_ttl + repin_delay the pin is re-allocated away from it and fetched.
    let survivor = &daemons[leader];
    let moved = eventually(WAIT, "the pin re-allocated away from the dead holder", || {
        let now = allocations(survivor, &cid);
        (now.len() == 2 && !now.contains(&victim_id)).then_some(now)
    });
    let alerts: Vec<Value> = client()
        .get(format!("{}/health/alerts", survivor.rest))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(alerts.iter().any(|a| a["peer"] == victim_id.as_str()), "{alerts:?}");
    let others: Vec<&Daemon> = daemons.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, d)| d).collect();
    eventually(WAIT, "the new holders pinned it", || {
        let statuses = peer_statuses(&status(survivor, &cid));
        let pinned: Vec<&String> = statuses.iter().filter(|(_, s)| s == "pinned").map(|(p, _)| p).collect();
        (moved.iter().all(|m| pinned.contains(&m))).then_some(())
    });
    for d in others {
        assert_eq!(psa_count(d, &cid, ""), 1);
    }
}

#[test]
fn peers_rm_moves_the_pins_first_then_the_peer_leaves() {
    let daemons = start_cluster(3);
    // The hardest case: the peer that leaves holds the pin and leads the cluster.
    let leaving = daemons.iter().find(|d| role_of(&daemons[0], d) == "leader").unwrap();
    let query = format!("replication-min=2&replication-max=2&user-allocations={}", leaving.peer_id);
    let cid = add(&daemons[0], &query, bytes(100 * 1024, 5));
    let allocated = allocations(&daemons[0], &cid);
    assert!(allocated.contains(&leaving.peer_id), "{allocated:?}");
    let holders: Vec<&str> = allocated.iter().map(String::as_str).collect();
    wait_held_by(&daemons[0], &cid, &holders, 3);
    let asker = daemons.iter().find(|d| d.peer_id != leaving.peer_id).unwrap();

    let output = std::process::Command::new(binary("pincluster-ctl"))
        .args(["--host", &multiaddr_of(&asker.rest), "--basic-auth", "alice:alice-pw", "peers", "rm", &leaving.peer_id])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let staying: Vec<&Daemon> = daemons.iter().filter(|d| d.peer_id != leaving.peer_id).collect();
    for d in &staying {
        eventually(WAIT, "the membership without the removed peer", || {
            let list = peers(d);
            (list.len() == 2 && list.iter().all(|p| p["id"] != leaving.peer_id.as_str())).then_some(())
        });
        let now = allocations(d, &cid);
        assert_eq!(now.len(), 2);
        assert!(!now.contains(&leaving.peer_id), "{now:?}");
    }
    let both: Vec<&str> = staying.iter().map(|d| d.peer_id.as_str()).collect();
    wait_held_by(staying[0], &cid, &both, 2);
    // The two that stay elected a leader between them and take writes.
    let cid = add(staying[1], "replication-min=2&replication-max=2", bytes(1000, 6));
    wait_held_by(staying[0], &cid, &both, 2);
}

#[test]
fn a_peer_with_the_wrong_secret_cannot_join_or_read_anything() {
    let cluster = start_cluster(1);
    let cid = add(&cluster[0], "", bytes(10 * 1024, 7));
    let outsider = Daemon::start(test_config(json!({
        "cluster": {
            "secret": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "bootstrap": [cluster[0].cluster.clone()],
            "monitor_ping_interval": "500ms",
        }
    })));
    // Its join attempts fail (the private network drops the connection).
    eventually(WAIT, "a failed join attempt", || outsider.log().contains("cannot join the cluster yet").then_some(()));
    assert_eq!(peers(&cluster[0]).len(), 1, "the outsider joined");
    assert!(peers(&outsider).len() <= 1);
    assert_eq!(psa_count(&outsider, &cid, ""), 0, "the outsider learnt the pinset");
}

/// Pins `cid` through the PSA of `daemon` as alice; whether it was acknowledged.
fn psa_pin(daemon: &Daemon, cid: &str) -> bool {
    let response = client()
        .post(format!("{}/pins", daemon.pinsvc))
        .basic_auth("alice", Some("alice-pw"))
        .json(&json!({ "cid": cid }))
        .send();
    matches!(response, Ok(r) if r.status().is_success())
}

/// How many cluster pins `daemon` has (its `/allocations` stream).
fn cluster_count(daemon: &Daemon) -> usize {
    let response = client().get(format!("{}/allocations", daemon.rest)).basic_auth("alice", Some("alice-pw")).send();
    response.map(|r| r.text().unwrap_or_default().lines().count()).unwrap_or(0)
}

#[test]
fn killing_the_leader_under_sixteen_writers_loses_no_acknowledged_pin() {
    let mut daemons = start_cluster(3);
    let leader = daemons.iter().position(|d| role_of(&daemons[0], d) == "leader").unwrap();
    let urls: Vec<(String, String)> = daemons.iter().map(|d| (d.pinsvc.clone(), d.peer_id.clone())).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..16u64)
        .map(|w| {
            let (urls, stop, acked) = (urls.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let cid = fake_cid(1_000_000 * (w + 1) + n);
                    // Each writer goes round the peers; a dead one just fails.
                    let (url, _) = &urls[(w + n) as usize % urls.len()];
                    let ok = client()
                        .post(format!("{url}/pins"))
                        .basic_auth("alice", Some("alice-pw"))
                        .json(&json!({ "cid": cid }))
                        .send()
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        acked.lock().unwrap().push(cid);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    daemons[leader].kill9();
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "only {} pins acknowledged", acked.len());
    let survivors: Vec<&Daemon> = daemons.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, d)| d).collect();
    // A new leader took writes after the old one died.
    let fresh = fake_cid(42_000_000);
    assert!(psa_pin(survivors[0], &fresh));
    for d in &survivors {
        eventually(WAIT, "every acknowledged pin on the survivors", || (cluster_count(d) > acked.len()).then_some(()));
        for cid in acked.iter().step_by(7) {
            assert_eq!(psa_count(d, cid, ""), 1, "{cid} acknowledged but missing");
        }
    }
    // The killed peer restarts and catches up.
    let total = cluster_count(survivors[0]);
    daemons[leader].spawn();
    eventually(WAIT, "the restarted peer to catch up", || (cluster_count(&daemons[leader]) == total).then_some(()));
}

#[test]
fn a_learner_joins_through_a_snapshot_and_pins_what_it_is_allocated() {
    let first = Daemon::start(peer_config(json!({
        "peername": "peer0",
        "raft_snapshot_threshold": 20,
        "raft_trailing_logs": 5,
    })));
    // Thousands of pins from a few writers: hundreds of log entries, purged
    // behind snapshots. They are allocated to the first peer only (its only
    // peer then), so the learner has none of them to fetch.
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let url = first.rest.clone();
            std::thread::spawn(move || {
                for n in 0..500u64 {
                    let cid = fake_cid(7_000_000 + w * 1000 + n);
                    let ok = client()
                        .post(format!("{url}/pins/{cid}?replication-min=1&replication-max=1"))
                        .basic_auth("alice", Some("alice-pw"))
                        .send()
                        .is_ok_and(|r| r.status().is_success());
                    assert!(ok);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let content = add(&first, "", bytes(50 * 1024, 99));
    let learner = Daemon::start(peer_config(json!({
        "peername": "learner",
        "learner": true,
        "bootstrap": [first.cluster.clone()],
    })));
    eventually(WAIT, "the learner to hold the whole pinset", || (cluster_count(&learner) == 2001).then_some(()));
    assert!(learner.log().contains("snapshot installed"), "no snapshot was installed:\n{}", learner.log());
    assert_eq!(role_of(&first, &learner), "learner");
    // It pins what it is allocated (this pin is on every peer), and only that.
    // (The first peer's own workers are busy with the CIDs nobody has.)
    eventually(WAIT, "the learner to pin the content", || {
        peer_statuses(&status(&first, &content))
            .iter()
            .any(|(peer, s)| *peer == learner.peer_id && s == "pinned")
            .then_some(())
    });
}

#[test]
fn a_peer_with_other_api_passwords_is_refused_with_the_reason() {
    let cluster = start_cluster(1);
    let mut config = peer_config(json!({ "bootstrap": [cluster[0].cluster.clone()] }));
    config["api"]["restapi"]["basic_auth_credentials"]["alice"] = json!("another-password");
    let other = Daemon::start(config);
    eventually(WAIT, "the refusal in the joining peer's log", || {
        other.log().contains("API users or passwords differ").then_some(())
    });
    assert_eq!(peers(&cluster[0]).len(), 1);
}
