//! The pinset as a replicated state machine: two fresh pinsets that apply the
//! same seeded random log (same-millisecond bursts, replaces, pin updates,
//! unpins, expiries, allocations and peers' status reports by several users)
//! end byte-for-byte equal, listing for listing; a replayed prefix is a
//! no-op; and this peer's local updates never touch the shared keys nor move
//! a listing record.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{cid, new_pin, open, runtime, user};
use pincluster_model::{Cid, PinMode, PinStatus, StatusSet, Timestamp, UserName};
use pincluster_state::{Command, Pinset, Query, Reported, StatusUpdate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const USERS: u64 = 5;
const CIDS: u64 = 60;

/// A seeded random log: entries of 1 to 12 commands, the clock moving by
/// 0 to 2 ms between entries so that bursts share a millisecond.
fn random_log(seed: u64, entries: usize) -> Vec<Vec<Command>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clock = 1_700_000_000_000u64;
    let users: Vec<UserName> = (0..USERS).map(|i| user(&format!("user{i}"))).collect();
    (0..entries)
        .map(|_| {
            clock += rng.gen_range(0..3);
            let at = Timestamp(clock);
            (0..rng.gen_range(1..=12))
                .map(|_| {
                    let u = users[rng.gen_range(0..users.len())].clone();
                    let c = cid(rng.gen_range(0..CIDS));
                    let mut pin = new_pin(c, [None, Some("a"), Some("B")][rng.gen_range(0..3)], &[("k", "v")]);
                    if rng.gen_bool(0.1) {
                        pin.options.mode = PinMode::Direct;
                    }
                    if rng.gen_bool(0.2) {
                        pin.options.expire_at = Some(Timestamp(clock + rng.gen_range(0..20)));
                    }
                    pin.options.replication_min = rng.gen_range(-1..3);
                    match rng.gen_range(0..100) {
                        0..=44 => Command::Pin { user: u, pin, at, update_from: None },
                        45..=54 => Command::Pin { user: u, pin, at, update_from: Some(cid(rng.gen_range(0..CIDS))) },
                        55..=69 => Command::Replace { user: u, old: cid(rng.gen_range(0..CIDS)), pin, at },
                        70..=84 => Command::Unpin { user: u, cid: c },
                        85..=89 => Command::UnpinAll { cid: c },
                        90..=92 => Command::SetAllocations {
                            cid: c,
                            allocations: (0..rng.gen_range(0..3)).map(|p| format!("peer{p}")).collect(),
                        },
                        93..=96 => Command::Report {
                            peer: format!("peer{}", rng.gen_range(0..3)),
                            at,
                            statuses: (0..rng.gen_range(1..4))
                                .map(|_| {
                                    let status = PinStatus::ALL[rng.gen_range(0..4)];
                                    let error = (status == PinStatus::Failed).then(|| "no".to_string());
                                    Reported { cid: cid(rng.gen_range(0..CIDS)), status, error }
                                })
                                .collect(),
                        },
                        _ => Command::Expire { cids: (0..5).map(|_| cid(rng.gen_range(0..CIDS))).collect(), at },
                    }
                })
                .collect()
        })
        .collect()
}

/// Applies `log` from index `first` on; each command goes through its
/// encoded form, as a replicated log would carry it.
fn apply(pinset: &Pinset, log: &[Vec<Command>], first: u64) -> usize {
    let rt = runtime();
    let mut answered = 0;
    for (i, entry) in log.iter().enumerate() {
        let decoded = entry.iter().map(|c| Command::decode(&c.encode().unwrap()).unwrap()).collect();
        answered += rt.block_on(pinset.apply_entry(first + i as u64, decoded, None, true)).unwrap().len();
    }
    answered
}

fn listings(pinset: &Pinset) -> Vec<String> {
    (0..USERS)
        .map(|i| {
            let u = user(&format!("user{i}"));
            let page = pinset.list(&u, &Query { statuses: StatusSet::ALL, limit: 1000, ..Query::default() }).unwrap();
            format!("{} {:?}", page.count, page.results)
        })
        .collect()
}

/// Every key and value of the closed database at `dir`, optionally only the
/// shared keyspaces, with the keys of the listing records (filed by summary)
/// and the values of their counters.
fn dump(dir: &Path, shared_only: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = sled::open(dir).unwrap();
    db.iter()
        .map(|kv| kv.unwrap())
        .filter_map(|(k, v)| match k.first() {
            _ if !shared_only => Some((k.to_vec(), v.to_vec())),
            Some(b'c' | b'n' | b't' | b'm' | 0) => Some((k.to_vec(), v.to_vec())),
            Some(b's') => Some((k.to_vec(), Vec::new())),
            _ => None,
        })
        .collect()
}

#[test]
fn two_pinsets_applying_the_same_log_are_byte_for_byte_equal() {
    let log = random_log(7, 400);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(a_dir.path()), open(b_dir.path()));
    apply(&a, &log, 1);
    apply(&b, &log, 1);
    assert_eq!(a.applied_index().unwrap(), log.len() as u64);
    let listed = listings(&a);
    assert!(listed.iter().any(|l| !l.starts_with("0 ")), "the log leaves pins behind");
    for status in [PinStatus::Pinning, PinStatus::Pinned, PinStatus::Failed] {
        let filter = Query { statuses: StatusSet::only(status), limit: 0, ..Query::default() };
        let counted: u64 = (0..USERS).map(|i| a.list(&user(&format!("user{i}")), &filter).unwrap().count).sum();
        assert!(counted > 0, "the reports leave some pins {status}");
    }
    assert_eq!(listed, listings(&b));
    assert!(a.check_integrity().unwrap().is_ok(), "{:?}", a.check_integrity().unwrap().problems);

    // Replaying a prefix (as Raft does after a restart) answers nothing and changes nothing.
    assert_eq!(apply(&a, &log[..50], 1), 0);
    assert_eq!(listings(&a), listed);

    // Local updates on one peer only: its shared keys stay equal to the other's.
    let rt = runtime();
    for n in 0..CIDS {
        let c: Cid = cid(n);
        let update = StatusUpdate { error: Some("x".into()), ..StatusUpdate::status(PinStatus::Failed) };
        let _ = rt.block_on(b.update_status(&c, update));
    }
    assert!(b.check_integrity().unwrap().is_ok());
    assert!(a.close().unwrap() && b.close().unwrap());
    assert_eq!(dump(a_dir.path(), true), dump(b_dir.path(), true));
    assert_ne!(dump(a_dir.path(), false), dump(b_dir.path(), false), "the local updates did write");

    // Without local updates, the whole databases are equal.
    let c_dir = tempfile::tempdir().unwrap();
    let c = open(c_dir.path());
    apply(&c, &log, 1);
    assert!(c.close().unwrap());
    assert_eq!(dump(a_dir.path(), false), dump(c_dir.path(), false));
}

#[test]
fn created_is_unique_per_user_within_a_same_millisecond_burst() {
    let dir = tempfile::tempdir().unwrap();
    let pinset = open(dir.path());
    let u = user("burst");
    let at = Timestamp(1_000);
    let burst: Vec<Command> = (0..50)
        .map(|n| Command::Pin { user: u.clone(), pin: new_pin(cid(n), None, &[]), at, update_from: None })
        .collect();
    runtime().block_on(pinset.propose(burst)).unwrap();
    let page = pinset.list(&u, &Query { limit: 1000, ..Query::default() }).unwrap();
    let created: Vec<u64> = page.results.iter().map(|v| v.user.created.0).collect();
    assert_eq!(created, (1_000..1_050).rev().collect::<Vec<_>>());
}
