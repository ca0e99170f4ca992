//! What happens with a database this build did not write: a newer schema is
//! refused with a clear error, and a corrupt record fails only that record.
//! These tests edit the sled files directly, as a newer version or a damaged
//! disk would.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cid, new_pin, open, runtime, user};
use pincluster_model::{PinStatus, StatusSet};
use pincluster_state::{Pinset, Query, StateError, StateOptions, StatusUpdate, SCHEMA_VERSION};

fn raw_insert(dir: &std::path::Path, key: &[u8], value: &[u8]) {
    let db = sled::open(dir).unwrap();
    db.insert(key, value).unwrap();
    db.flush().unwrap();
}

#[test]
fn opening_a_newer_schema_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    raw_insert(dir.path(), b"\x00schema", &(SCHEMA_VERSION + 1).to_be_bytes());
    match Pinset::open(&StateOptions::new(dir.path())) {
        Err(err @ StateError::NewerSchema { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            assert!(err.to_string().contains("upgrade"), "{err}");
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[test]
fn a_development_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    raw_insert(dir.path(), b"\x00schema", &2u32.to_be_bytes());
    match Pinset::open(&StateOptions::new(dir.path())) {
        Err(err @ StateError::Corrupt { .. }) => assert!(err.to_string().contains("development"), "{err}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn close_waits_for_the_last_handle_and_keeps_every_pin() {
    let dir = tempfile::tempdir().unwrap();
    let u = user("u");
    let rt = runtime();
    let pinset = open(dir.path());
    for i in 0..50 {
        rt.block_on(pinset.pin(&u, new_pin(cid(i), Some("p"), &[]))).unwrap();
    }
    let other = pinset.clone();
    // Another handle is alive: nothing happens and it keeps working.
    assert!(!pinset.close().unwrap());
    rt.block_on(other.pin(&u, new_pin(cid(50), None, &[]))).unwrap();
    assert!(other.close().unwrap());
    let pinset = open(dir.path());
    assert_eq!(pinset.user_pin_count(&u).unwrap(), 51);
    assert!(pinset.get(&u, &cid(50)).unwrap().is_some());
    assert!(pinset.check_integrity().unwrap().is_ok());
    assert!(pinset.close().unwrap());
}

#[test]
fn a_fresh_database_reopens_with_its_pins() {
    let dir = tempfile::tempdir().unwrap();
    let u = user("u");
    {
        let pinset = open(dir.path());
        runtime().block_on(pinset.pin(&u, new_pin(cid(1), Some("a"), &[]))).unwrap();
    }
    let pinset = open(dir.path());
    assert_eq!(pinset.get(&u, &cid(1)).unwrap().unwrap().user.name.as_deref(), Some("a"));
}

#[test]
fn a_corrupt_record_fails_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let u = user("u");
    let created_of_2;
    {
        let pinset = open(dir.path());
        let rt = runtime();
        for i in 0..5 {
            rt.block_on(pinset.pin(&u, new_pin(cid(i), None, &[]))).unwrap();
        }
        rt.block_on(common::set_status(&pinset, &cid(4), StatusUpdate::status(PinStatus::Pinned))).unwrap();
        created_of_2 = pinset.get(&u, &cid(2)).unwrap().unwrap().user.created;
    }
    // Both copies of the listing record, `r | len(user) | user | !created` and
    // `s | len(user) | user | status | !created` (queued is 0), and `c | cid`,
    // per the documented layout.
    let mut listing_key = vec![b'r', 1, b'u'];
    listing_key.extend_from_slice(&(!created_of_2.0).to_be_bytes());
    raw_insert(dir.path(), &listing_key, &[2, 0xff, 0xff, 0xff]);
    let mut status_key = vec![b's', 1, b'u', 0];
    status_key.extend_from_slice(&(!created_of_2.0).to_be_bytes());
    raw_insert(dir.path(), &status_key, &[2, 0xff, 0xff, 0xff]);
    let mut cluster_key = vec![b'c'];
    cluster_key.extend_from_slice(&cid(3).to_bytes());
    raw_insert(dir.path(), &cluster_key, &[7, 1, 2, 3]);

    let pinset = open(dir.path());
    assert!(matches!(pinset.get(&u, &cid(2)), Err(StateError::Corrupt { .. })));
    assert!(matches!(pinset.cluster_pin(&cid(3)), Err(StateError::Corrupt { .. })));
    assert!(pinset.get(&u, &cid(1)).unwrap().is_some());
    // Listing skips the unreadable pin and returns the rest, with every filter path.
    let page = pinset.list(&u, &Query { limit: 100, ..Query::default() }).unwrap();
    let cids: Vec<_> = page.results.iter().map(|v| v.user.cid).collect();
    assert_eq!(cids, vec![cid(4), cid(3), cid(1), cid(0)]);
    let queued = Query { limit: 100, statuses: StatusSet::only(PinStatus::Queued), ..Query::default() };
    let cids: Vec<_> = pinset.list(&u, &queued).unwrap().results.iter().map(|v| v.user.cid).collect();
    assert_eq!(cids, vec![cid(3), cid(1), cid(0)]);
    // Streaming yields one error for the bad cluster record and goes on.
    let streamed: Vec<_> = pinset.cluster_pins(StatusSet::ALL).collect();
    assert_eq!(streamed.len(), 5);
    assert_eq!(streamed.iter().filter(|r| r.is_err()).count(), 1);
    let pinned: Vec<_> = pinset.cluster_pins(StatusSet::only(PinStatus::Pinned)).map(|r| r.unwrap().cid).collect();
    assert_eq!(pinned, vec![cid(4)]);
    // The integrity check reports both (and what follows from them).
    let report = pinset.check_integrity().unwrap();
    let corrupt = report.problems.iter().filter(|p| p.starts_with("corrupt record")).count();
    assert!(corrupt >= 2, "{:#?}", report.problems);
    // Writes to other pins still work.
    runtime().block_on(pinset.pin(&u, new_pin(cid(9), None, &[]))).unwrap();
}

#[test]
fn below_the_free_space_floor_status_writes_are_refused_and_leave_nothing_while_log_entries_apply() {
    let dir = tempfile::tempdir().unwrap();
    // A reserve no filesystem has: every guarded write is refused.
    let options = StateOptions { min_free_space: Some(u64::MAX), ..StateOptions::new(dir.path()) };
    let pinset = Pinset::open(&options).unwrap();
    let rt = runtime();
    let alice = user("alice");
    assert!(pinset.space().check().is_err());
    // A log entry is applied whatever the space: the log already holds it.
    rt.block_on(pinset.pin(&alice, new_pin(cid(1), None, &[]))).unwrap();
    let refused = rt.block_on(common::set_status(&pinset, &cid(1), StatusUpdate::status(PinStatus::Pinned)));
    match refused {
        Err(err @ StateError::NoSpace(_)) => {
            assert!(err.is_no_space());
            assert!(err.to_string().starts_with("no space left"), "{err}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert_eq!(pinset.get(&alice, &cid(1)).unwrap().unwrap().cluster.status, PinStatus::Queued);
    assert!(pinset.check_integrity().unwrap().is_ok());
    pinset.close().unwrap();

    // Without the guard the same write goes through.
    let options = StateOptions { min_free_space: Some(0), ..StateOptions::new(dir.path()) };
    let pinset = Pinset::open(&options).unwrap();
    rt.block_on(common::set_status(&pinset, &cid(1), StatusUpdate::status(PinStatus::Pinned))).unwrap();
    assert_eq!(pinset.get(&alice, &cid(1)).unwrap().unwrap().cluster.status, PinStatus::Pinned);
}
