//! Durability under `kill -9`: a child process (this test binary, re-executed
//! with an environment variable) writes pins with 32 concurrent writers and
//! prints each acknowledged one; the parent kills it at random moments,
//! reopens the database and checks that every acknowledged pin is there and
//! that records, indexes and counters agree.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{cid, new_pin, open, runtime, user};
use pincluster_model::{PinStatus, UserName};
use pincluster_state::StatusUpdate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHILD_DIR: &str = "PINCLUSTER_STATE_CRASH_DIR";
const CHILD_CYCLE: &str = "PINCLUSTER_STATE_CRASH_CYCLE";
const CYCLES: u64 = 24;
const WRITERS: u64 = 32;

/// The child's body; a no-op unless started by the parent test.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(cycle)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_CYCLE)) else {
        return;
    };
    let cycle: u64 = cycle.parse().unwrap();
    let pinset = open(std::path::Path::new(&dir));
    println!("READY");
    runtime().block_on(async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let pinset = pinset.clone();
                tokio::spawn(async move {
                    let u = user(&format!("writer{}", writer % 8));
                    // Bounded, in case the parent is gone.
                    for i in 0..5_000u64 {
                        let n = (cycle << 32) | (writer << 16) | i;
                        let c = cid(n);
                        pinset.pin(&u, new_pin(c, Some("crash"), &[("i", "1")])).await.unwrap();
                        println!("ACK {u} {n}");
                        if i % 3 == 0 {
                            pinset.update_status(&c, StatusUpdate::status(PinStatus::Pinned)).await.unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    std::io::stdout().flush().unwrap();
}

#[test]
fn acknowledged_pins_survive_kill_9() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(99);
    let mut acknowledged: Vec<(UserName, u64)> = Vec::new();
    for cycle in 0..CYCLES {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_CYCLE, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a random number of acknowledgements, while 32 writes are in flight.
        let target = rng.gen_range(1..600);
        let mut seen = 0;
        let mut ready = false;
        while seen < target {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.ends_with("READY") => ready = true,
                Ok(line) => {
                    if let Some(ack) = parse_ack(&line) {
                        acknowledged.push(ack);
                        seen += 1;
                    }
                }
                Err(_) => break,
            }
        }
        assert!(ready, "cycle {cycle}: the child never opened the database");
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        // Lines written before the kill are still in the pipe.
        acknowledged.extend(rx.try_iter().filter_map(|line| parse_ack(&line)));

        let pinset = open(dir.path());
        for (u, n) in &acknowledged {
            assert!(pinset.get(u, &cid(*n)).unwrap().is_some(), "cycle {cycle}: acknowledged pin {u}/{n} lost");
        }
        let report = pinset.check_integrity().unwrap();
        assert!(report.is_ok(), "cycle {cycle}: {:#?}", report.problems);
        assert!(report.user_pins >= acknowledged.len() as u64);
    }
    assert!(acknowledged.len() as u64 >= CYCLES);
}

fn parse_ack(line: &str) -> Option<(UserName, u64)> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let u = user(parts.next()?);
    let n = parts.next()?.parse().ok()?;
    Some((u, n))
}
