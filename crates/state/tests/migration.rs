//! Opening a pinset written by the schema-3 code (`fixtures/schema3.tar.gz`,
//! with the listing every user saw in it) migrates it to the current schema: every user
//! sees the same listing, the records agree, and running the migration again
//! over its own result changes nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{open, user};
use pincluster_model::{PinView, StatusSet, UserName};
use pincluster_state::{Query, SCHEMA_VERSION};

/// One pin as the fixture's `expected.txt` lists it.
fn line(user: &UserName, v: &PinView) -> String {
    format!(
        "{user}|{}|{:?}|{:?}|{:?}|{}|{}|{:?}|{}|{}|{}|{:?}|{}|{}|{}|{:?}|{:?}",
        v.user.cid,
        v.user.name,
        v.user.meta,
        v.user.origins.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        v.user.created.0,
        v.cluster.status,
        v.cluster.error,
        v.cluster.attempts,
        v.cluster.progress.blocks,
        v.cluster.progress.bytes,
        v.cluster.dag_size,
        v.cluster.options.mode.as_str(),
        v.cluster.options.replication_min,
        v.cluster.options.replication_max,
        v.cluster.options.user_allocations,
        v.cluster.options.expire_at.map(|t| t.0),
    )
}

fn unpack(dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema3.tar.gz");
    let status = Command::new("tar").arg("-xzf").arg(&fixture).arg("-C").arg(dir).status().unwrap();
    assert!(status.success(), "cannot unpack {}", fixture.display());
}

fn listings(dir: &Path) -> String {
    let pinset = open(&dir.join("pinset"));
    let report = pinset.check_integrity().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let mut out = String::new();
    for name in ["alice", "bob", "carol"] {
        let u = user(name);
        let page = pinset.list(&u, &Query { statuses: StatusSet::ALL, limit: 1000, ..Query::default() }).unwrap();
        for view in &page.results {
            out.push_str(&line(&u, view));
            out.push('\n');
            assert_eq!(pinset.get(&u, &view.user.cid).unwrap().as_ref(), Some(view));
        }
    }
    assert!(pinset.close().unwrap());
    out
}

fn set_schema(dir: &Path, version: u32) {
    let db = sled::open(dir.join("pinset")).unwrap();
    db.insert(b"\x00schema", &version.to_be_bytes()).unwrap();
    db.flush().unwrap();
}

#[test]
fn a_schema_3_pinset_is_migrated_with_every_listing_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    unpack(dir.path());
    let expected = std::fs::read_to_string(dir.path().join("expected.txt")).unwrap();
    assert_eq!(expected.lines().count(), 240);
    assert_eq!(listings(dir.path()), expected);
    {
        let db = sled::open(dir.path().join("pinset")).unwrap();
        assert_eq!(db.get(b"\x00schema").unwrap().unwrap().as_ref(), SCHEMA_VERSION.to_be_bytes());
        assert!(db.scan_prefix(b"r").next().is_none(), "the listing keyspace r is gone");
    }
    // As if the migration had been cut short after its last batch: it runs again, and changes nothing.
    set_schema(dir.path(), 3);
    assert_eq!(listings(dir.path()), expected);
}

#[test]
fn a_migrated_pinset_keeps_created_unique_for_new_pins() {
    let dir = tempfile::tempdir().unwrap();
    unpack(dir.path());
    let pinset = open(&dir.path().join("pinset"));
    let alice = user("alice");
    let newest = pinset.list(&alice, &Query { limit: 1, ..Query::default() }).unwrap().results[0].user.created;
    let rt = common::runtime();
    // A proposer whose clock is behind every stored pin still gets a later `created`.
    let pin = common::new_pin(common::cid(9_999), None, &[]);
    let command = pincluster_state::Command::Pin {
        user: alice.clone(),
        pin,
        at: pincluster_model::Timestamp(1),
        update_from: None,
    };
    let applied = rt.block_on(pinset.propose(vec![command])).unwrap().pop().unwrap().unwrap();
    match applied {
        pincluster_state::Applied::Pin(out) => assert_eq!(out.view.user.created.0, newest.0 + 1),
        other => panic!("{other:?}"),
    }
    assert!(pinset.check_integrity().unwrap().is_ok());
}
