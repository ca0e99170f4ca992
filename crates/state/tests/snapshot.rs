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
    assert_eq!(rt.block_on(a.begin_snapshot()).unwrap().write(&mut snapshot).unwrap(), 300);
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

/// Pauses a snapshot being written after its first chunk until the test has
/// changed the pinset: says so on `paused`, then waits on `resume`.
struct PausingWriter {
    out: Vec<u8>,
    pause: Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>,
}

impl std::io::Write for PausingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The header is 24 bytes; the first frame comes with the first chunk.
        if self.out.len() > 24 {
            if let Some((paused, resume)) = self.pause.take() {
                paused.send(()).unwrap();
                resume.recv().unwrap();
            }
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_snapshot_is_the_pinset_at_its_beginning_while_entries_go_on_being_applied() {
    let rt = runtime();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(a_dir.path()), open(b_dir.path()));
    let at = Timestamp(1_700_000_000_000);
    let pin = |who: &str, n: u64| Command::Pin {
        user: user(who),
        pin: new_pin(cid(n), Some("x"), &[]),
        at,
        update_from: None,
    };
    rt.block_on(a.propose((0..1000).map(|n| pin("alice", n)).collect())).unwrap();
    rt.block_on(a.propose((0..100).map(|n| pin("bob", n)).collect())).unwrap();
    let shared = |p: &pincluster_state::Pinset| {
        p.entries()
            .map(|e| e.map(|e| (e.pin.cid, e.holders, e.pin.peers, e.pin.summary, e.pin.allocations)))
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let expected = shared(&a);
    let walk = rt.block_on(a.begin_snapshot()).unwrap();
    // A second snapshot waits its turn.
    assert!(rt.block_on(a.begin_snapshot()).is_err());

    let (paused_tx, paused) = std::sync::mpsc::channel();
    let (resume, resume_rx) = std::sync::mpsc::channel();
    let mut out = PausingWriter { out: Vec::new(), pause: Some((paused_tx, resume_rx)) };
    let written = std::thread::scope(|s| {
        let walker = s.spawn(|| walk.write(&mut out));
        paused.recv().unwrap();
        // Changes on both sides of where the walk stands: removals, new CIDs,
        // reports that move listing records, allocations, new holders.
        let reported = (300..400).map(|n| Reported { cid: cid(n), status: PinStatus::Pinned, error: None }).collect();
        let mut changes: Vec<Command> = (0..200).map(|n| Command::Unpin { user: user("alice"), cid: cid(n) }).collect();
        changes.extend((500..520).map(|n| Command::UnpinAll { cid: cid(n) }));
        changes.extend((2000..2300).map(|n| pin("carol", n)));
        changes.push(Command::Report { peer: "p".into(), at, statuses: reported });
        changes.extend((600..650).map(|n| Command::SetAllocations { cid: cid(n), allocations: vec!["p".into()] }));
        changes.extend((700..750).map(|n| pin("dave", n)));
        for result in rt.block_on(a.propose(changes)).unwrap() {
            result.unwrap();
        }
        resume.send(()).unwrap();
        walker.join().unwrap()
    });
    assert_eq!(written.unwrap(), 1000);
    assert_ne!(shared(&a), expected, "the pinset changed while the snapshot was written");

    let installed =
        std::thread::scope(|s| s.spawn(|| b.install_snapshot(&mut out.out.as_slice(), 5, Vec::new())).join().unwrap());
    assert_eq!(installed.unwrap(), 1000);
    assert_eq!(shared(&b), expected);
    assert!(b.check_integrity().unwrap().is_ok());
    // The walk ended: a new snapshot may begin, and it sees the changes (bob
    // still holds 0..100; 100..200 and 500..520 are gone; carol's 300 are new).
    let mut now = Vec::new();
    assert_eq!(rt.block_on(a.begin_snapshot()).unwrap().write(&mut now).unwrap(), 1000 - 100 - 20 + 300);
}
