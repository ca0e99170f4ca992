//! Issue 14 end to end: the embedded node in a DHT of real Kubo peers (their LAN DHT, on
//! loopback), finding content by CID alone, being found as a provider by a Kubo that never heard
//! of us, and a private network (swarm key) that only peers with the same key can enter.

use std::path::Path;
use std::time::Duration;

use pincluster_tests::*;
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

fn id(daemon: &Daemon) -> Value {
    let (status, body) =
        json_of(client().get(format!("{}/id", daemon.rest)).basic_auth("alice", Some("alice-pw")).send().unwrap());
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn pin_by_cid(daemon: &Daemon, cid: &str, origins: &[&str]) {
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let (status, reply) = json_of(
        client()
            .post(format!("{}/pins", daemon.pinsvc))
            .bearer_auth(token)
            .json(&json!({ "cid": cid, "origins": origins }))
            .send()
            .unwrap(),
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
}

fn pin_status(daemon: &Daemon, cid: &str) -> Value {
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let (status, body) =
        json_of(client().get(format!("{}/pins/{cid}", daemon.pinsvc)).bearer_auth(token).send().unwrap());
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn wait_for(daemon: &Daemon, cid: &str, wanted: &str, timeout: Duration) -> Value {
    eventually(timeout, &format!("{cid} {wanted}"), || {
        let body = pin_status(daemon, cid);
        if wanted != "failed" {
            assert_ne!(body["status"], "failed", "{body}\n{}", daemon.log());
        }
        (body["status"] == wanted).then_some(body)
    })
}

/// A daemon whose DHT bootstraps from `bootstrap`, once it has a DHT peer.
fn daemon_in_dht(bootstrap: &[String], extra: Value) -> Daemon {
    let mut config = test_config(
        json!({ "ipfs": { "bootstrap": bootstrap, "pin_timeout": "30s" }, "pin_tracker": { "max_retries": 0 } }),
    );
    merge(&mut config, extra);
    let daemon = Daemon::start(config);
    if !bootstrap.is_empty() {
        eventually(Duration::from_secs(30), "a LAN DHT peer", || {
            (id(&daemon)["ipfs"]["dht"]["lan_peers"].as_u64() > Some(0)).then_some(())
        });
    }
    daemon
}

/// Whether the daemon's node has connected to `peer`: the swarm logs every connection.
fn connected(daemon: &Daemon, peer: &str) -> bool {
    daemon.log().lines().any(|l| l.contains("connection established") && l.contains(peer))
}

/// `a` and `b` connect (both ways known); the LAN DHT adds each to the other's table.
fn link(a: &mut Kubo, b: &Kubo) {
    assert!(a.connect(&b.addrs[0]), "kubo could not connect to kubo");
}

#[test]
fn a_pin_without_origins_is_found_through_dht_provider_records() {
    let tmp = tempfile::tempdir().unwrap();
    // B and C form the DHT; our node, a DHT client, joins through B and walks it.
    let (mut b, c) = (Kubo::start(), Kubo::start());
    link(&mut b, &c);
    let daemon = daemon_in_dht(&[b.addrs[0].clone()], json!({ "ipfs": { "dht_mode": "client" } }));
    eventually(Duration::from_secs(30), "B and C in the table", || {
        (id(&daemon)["ipfs"]["dht"]["lan_peers"].as_u64() >= Some(2)).then_some(())
    });
    // The bootstrap walk's last queries end.
    std::thread::sleep(Duration::from_secs(3));
    // Then A joins through C and adds content, announcing it; no routing table lists a DHT
    // client, so A never hears of our node, nor ours of A.
    let mut a = Kubo::start();
    link(&mut a, &c);
    let file = tmp.path().join("content.bin");
    random_file(&file, 3 * MIB, 14);
    let cid = a.add(&file);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!connected(&daemon, &a.peer_id), "our node is already connected to A:\n{}", daemon.log());

    pin_by_cid(&daemon, &cid, &[]);
    wait_for(&daemon, &cid, "pinned", Duration::from_secs(90));
    let log = daemon.log();
    assert!(
        log.contains("found a provider in the DHT") && log.contains(&a.peer_id),
        "A was not found as a provider:\n{log}"
    );

    // Nobody has this one: the pin fails in time, and says the DHT knew no provider.
    let missing = fake_cid(14);
    pin_by_cid(&daemon, &missing, &[]);
    let failed = wait_for(&daemon, &missing, "failed", Duration::from_secs(90));
    let info = failed["info"]["status_details"].as_str().unwrap_or_default().to_string();
    assert!(info.contains("no provider found in the DHT"), "{failed}");
    drop((b, c));
}

#[test]
fn a_kubo_that_knows_only_the_dht_finds_us_as_provider_and_downloads_from_us() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut b, c) = (Kubo::start(), Kubo::start());
    link(&mut b, &c);
    // The content comes from a Kubo that then leaves: afterwards only our node has it.
    let mut source = Kubo::start();
    let file = tmp.path().join("content.bin");
    let bytes = random_file(&file, 2 * MIB, 41);
    let cid = source.add(&file);
    let daemon = daemon_in_dht(&[b.addrs[0].clone()], json!({}));
    pin_by_cid(&daemon, &cid, &[&source.addrs[0]]);
    wait_for(&daemon, &cid, "pinned", Duration::from_secs(60));
    drop(source);
    eventually(Duration::from_secs(60), "the pin announced", || {
        (id(&daemon)["ipfs"]["reprovider"]["announced"].as_u64() >= Some(1)).then_some(())
    });

    // A fresh Kubo joins the DHT through C, never told about us.
    let mut fresh = Kubo::start();
    link(&mut fresh, &c);
    let dest = tmp.path().join("downloaded.bin");
    assert!(fresh.download(&cid, &dest, Duration::from_secs(120)), "the fresh Kubo could not download {cid}");
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    drop((b, c));
}

fn swarm_key(path: &Path, byte: u8) {
    let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
    std::fs::write(path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n")).unwrap();
}

#[test]
fn with_a_swarm_key_only_peers_with_the_same_key_connect() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, other) = (tmp.path().join("swarm.key"), tmp.path().join("other.key"));
    swarm_key(&ours, 0x5a);
    swarm_key(&other, 0xa5);
    let daemon = daemon_in_dht(&[], json!({ "ipfs": { "swarm_key_file": ours.to_str().unwrap(), "bootstrap": [] } }));
    let our_addr = id(&daemon)["ipfs"]["addresses"][0].as_str().unwrap().to_string();

    // Same key: blocks flow both ways.
    let mut friend = Kubo::start_in_private_network(&ours);
    assert!(friend.connect(&our_addr), "a Kubo with the same key could not connect");
    let file = tmp.path().join("content.bin");
    let bytes = random_file(&file, MIB, 7);
    let cid = friend.add(&file);
    pin_by_cid(&daemon, &cid, &[&friend.addrs[0]]);
    wait_for(&daemon, &cid, "pinned", Duration::from_secs(60));
    let mut second = Kubo::start_in_private_network(&ours);
    assert!(second.connect(&our_addr));
    let dest = tmp.path().join("back.bin");
    assert!(second.download(&cid, &dest, Duration::from_secs(60)));
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);

    // Another key, or none: never connected, either way.
    let mut stranger = Kubo::start_in_private_network(&other);
    let mut public = Kubo::start();
    assert!(!stranger.connect(&our_addr), "a Kubo with another key connected");
    assert!(!public.connect(&our_addr), "a Kubo without a key connected");
    // Nor can we reach them: content only they hold, with their addresses as origins, never comes.
    let missing_file = tmp.path().join("stranger-only.bin");
    random_file(&missing_file, 1000, 99);
    let stranger_only = stranger.add(&missing_file);
    assert_eq!(public.add(&missing_file), stranger_only);
    pin_by_cid(&daemon, &stranger_only, &[&stranger.addrs[0], &public.addrs[0]]);
    let failed = wait_for(&daemon, &stranger_only, "failed", Duration::from_secs(90));
    assert!(failed["info"]["status_details"].as_str().unwrap_or_default().contains("no progress"), "{failed}");
    assert!(daemon.log().contains("private_network=true"), "{}", daemon.log());
}
