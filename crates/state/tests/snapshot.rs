//! Snapshots of the shared half: written from one pinset, installed over
//! another that holds different pins, they leave the same shared pinset.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cid, new_pin, open, runtime, user};
use pincluster_model::{PinStatus, StatusSet, Timestamp};
use pincluster_state::{Command, Reported, StatusUpdate};

#[test]
fn installing_a_snapshot_replaces_the_shared_half() {
    let rt = runtime();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(a_dir.path()), open(b_dir.path()));
    let at = Timestamp(1_700_000_000_000);
    let pins = |range: std::ops::Range<u64>, who: &str| -> Vec<Command> {
        range
            .map(|n| Command::Pin { user: user(who), pin: new_pin(cid(n), Some("x"), &[]), at, update_from: None })
            .collect()
    };
    rt.block_on(a.propose(pins(0..300, "alice"))).unwrap();
    rt.block_on(a.propose(pins(100..150, "bob"))).unwrap();
    // Peers reported on some of a's CIDs: the snapshot carries their statuses and summary.
    let reported = (0..40).map(|n| Reported { cid: cid(n), status: PinStatus::Pinned, error: None }).collect();
    rt.block_on(a.propose(vec![Command::Report { peer: "p".into(), at, statuses: reported }])).unwrap();
    // b holds other pins, some shared with a, with local statuses.
    rt.block_on(b.propose(pins(250..400, "carol"))).unwrap();
    rt.block_on(b.update_status(&cid(260), StatusUpdate::status(PinStatus::Pinned))).unwrap();
    rt.block_on(b.update_status(&cid(390), StatusUpdate::status(PinStatus::Pinned))).unwrap();

    let mut snapshot = Vec::new();
    assert_eq!(a.write_snapshot(&mut snapshot).unwrap(), 300);
    let installed = std::thread::scope(|s| {
        s.spawn(|| b.install_snapshot(&mut snapshot.as_slice(), 77, b"meta".to_vec())).join().unwrap()
    });
    assert_eq!(installed.unwrap(), 300);

    let entries = |p: &pincluster_state::Pinset| p.entries().collect::<Result<Vec<_>, _>>().unwrap();
    let (ea, eb) = (entries(&a), entries(&b));
    assert_eq!(ea.len(), eb.len());
    for (x, y) in ea.iter().zip(&eb) {
        assert_eq!(x.pin.cid, y.pin.cid);
        assert_eq!(x.holders, y.holders);
        assert_eq!((&x.pin.peers, x.pin.summary), (&y.pin.peers, y.pin.summary));
    }
    let pinned = pincluster_state::Query { statuses: StatusSet::only(PinStatus::Pinned), ..Default::default() };
    assert_eq!(b.list(&user("alice"), &pinned).unwrap().count, 40);
    assert_eq!(b.user_pin_count(&user("carol")).unwrap(), 0);
    assert_eq!(b.user_pin_count(&user("bob")).unwrap(), 50);
    // Local statuses are gone: every CID starts queued again, as a new pin does.
    assert_eq!(b.cluster_count(StatusSet::only(PinStatus::Queued)).unwrap(), 300);
    assert_eq!(b.applied_index().unwrap(), 77);
    assert_eq!(b.applied_meta().unwrap().as_deref(), Some(&b"meta"[..]));
    let report = b.check_integrity().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);

    // A truncated snapshot fails, and the next open wipes the partial state.
    let cut = &snapshot[..snapshot.len() / 2];
    let failed = std::thread::scope(|s| s.spawn(|| b.install_snapshot(&mut &cut[..], 90, Vec::new())).join().unwrap());
    assert!(failed.is_err());
    drop(b);
    let b = open(b_dir.path());
    assert_eq!(b.cluster_count(StatusSet::ALL).unwrap(), 0);
    assert_eq!(b.applied_index().unwrap(), 0);
    assert!(b.check_integrity().unwrap().is_ok());
}
