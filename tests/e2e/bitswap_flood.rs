//! Issue 17, hostile peers: `bitswap-flood` (a libp2p peer built with the IPFS crate,
//! `crates/ipfs/testbin/bitswap_flood.rs`) floods the daemon with wantlists, 4 MiB messages and
//! streams beyond the per-peer limit, then sends an oversized frame, garbage and a wantlist over
//! the item limit, while a well-behaved Kubo serves content the daemon pins. The pins complete,
//! the daemon's memory stays under a stated bound, and each violation closes the connection.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pincluster_tests::*;
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

/// The bound on the daemon's resident memory during the flood, in KiB. Measured on the test
/// machine: about 100 MiB before the flood, a peak of about 205 MiB during it (the test prints
/// both). What a peer can make our Bitswap hold is bounded by constants in
/// `crates/ipfs/src/bitswap` (32 MiB of received messages in hand overall, 8 MiB per peer, 64
/// streams per peer, 8192 items per message, replies backpressured); on top of that come
/// yamux's per-stream receive windows (libp2p's, up to 256 KiB for each open stream and more for
/// streams read quickly) and the daemon's own working set. The flood sends about 720 MiB (640
/// MiB of blocks nobody wants, 80 MiB of wantlists), so an unbounded queue anywhere on the way
/// would blow through 320 MiB, while allocator slack and scheduling leave the measured peak
/// over 100 MiB of margin.
const RSS_BOUND_KIB: u64 = 320 * 1024;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The daemon's swarm addresses, from `/id`.
fn swarm_addresses(daemon: &Daemon) -> Vec<String> {
    let (_, id) =
        json_of(client().get(format!("{}/id", daemon.rest)).basic_auth("alice", Some("alice-pw")).send().unwrap());
    id["ipfs"]["addresses"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

fn pin_status(daemon: &Daemon, token: &str, cid: &str) -> Value {
    let (status, body) =
        json_of(client().get(format!("{}/pins/{cid}", daemon.pinsvc)).bearer_auth(token).send().expect("get"));
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[test]
fn a_flooding_peer_is_cut_off_while_pins_from_kubo_complete() {
    let files = tempfile::tempdir().unwrap();
    let mut origin = Kubo::start();
    let cids: Vec<String> = (0..3)
        .map(|i| {
            let path = files.path().join(format!("in{i}.bin"));
            random_file(&path, 8 * MIB + i, 100 + i as u64);
            origin.add(&path)
        })
        .collect();
    let daemon = Daemon::start(test_config(json!({ "ipfs": { "pin_timeout": "60s" } })));
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let target = swarm_addresses(&daemon)
        .into_iter()
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
        .expect("a loopback TCP swarm address");

    // Resident memory, sampled until the end of the test.
    let pid = daemon.pid();
    let before = rss_kib(pid).expect("VmRSS");
    let (done, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(before)));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let mut flooder = Command::new(binary("bitswap-flood"))
        .arg(&target)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn bitswap-flood");
    let stdout = flooder.stdout.take().unwrap();
    let phases = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());

    // Pins from the well-behaved Kubo, while the flood goes on.
    for cid in &cids {
        let (status, reply) = json_of(
            client()
                .post(format!("{}/pins", daemon.pinsvc))
                .bearer_auth(&token)
                .json(&json!({ "cid": cid, "origins": [origin.addrs[0]] }))
                .send()
                .unwrap(),
        );
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    }
    for cid in &cids {
        eventually(Duration::from_secs(300), "pin from kubo during the flood", || {
            let body = pin_status(&daemon, &token, cid);
            assert_ne!(body["status"], "failed", "{body}\n{}", daemon.log());
            (body["status"] == "pinned").then_some(())
        });
    }
    let pinned_at = Instant::now();

    let exit = wait_with_timeout(&mut flooder, Duration::from_secs(600));
    let phases = phases.join().unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "bitswap flood: VmRSS before {before} KiB, peak {peak} KiB (bound {RSS_BOUND_KIB} KiB); flood ran {:?} past the pins; {phases:?}",
        pinned_at.elapsed()
    );
    assert!(exit.success(), "bitswap-flood failed: {exit:?}");
    let expected = [
        "phase=wantlists disconnected=false",
        "phase=oversized disconnected=true",
        "phase=garbage disconnected=true",
        "phase=too-many-items disconnected=true",
    ];
    assert_eq!(phases, expected, "{}", daemon.log());
    assert!(daemon.log().contains("disconnecting a bitswap peer"), "{}", daemon.log());
    assert!(peak < RSS_BOUND_KIB, "peak VmRSS {peak} KiB over the bound of {RSS_BOUND_KIB} KiB");
}
