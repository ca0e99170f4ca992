//! Random interleaved pin/replace/unpin/update_status against the reference
//! model: outcomes, reads, counters and indexes must agree after every phase,
//! also after concurrent writers and after reopening.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cid, new_pin, open, runtime, set_status, user, Model};
use pincluster_model::{PinStatus, Progress, StatusSet, UserName};
use pincluster_state::{Pinset, StateError, StatusUpdate};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const POOL: u64 = 60;

async fn random_op(rng: &mut StdRng, pinset: &Pinset, model: &mut Model, users: &[UserName]) {
    let u = users.choose(rng).unwrap().clone();
    let c = cid(rng.gen_range(0..POOL));
    let name = *[None, Some("x"), Some("X"), Some("y")].choose(rng).unwrap();
    match rng.gen_range(0..10) {
        0..=3 => {
            // Options are per CID: another user's pin changes them for every holder.
            let mut pin = new_pin(c, name, &[("k", "v")]);
            // (At most 1, so that this one peer's report makes the summary.)
            pin.options.replication_min = rng.gen_range(-1..2);
            let out = pinset.pin(&u, pin).await.unwrap();
            let before = model.users.get(&u).and_then(|p| p.get(&c)).map(|p| p.created);
            if let Some(created) = before {
                assert_eq!(out.view.user.created, created, "re-pin keeps created");
            }
            assert_eq!(out.view.user.name.as_deref(), name);
            let fresh = model.pinned(&u, &out.view);
            assert_eq!(out.new_cluster_pin, fresh);
        }
        4 | 5 => {
            let old = cid(rng.gen_range(0..POOL));
            let held = model.users.get(&u).is_some_and(|p| p.contains_key(&old));
            match pinset.replace(&u, &old, new_pin(c, name, &[])).await {
                Ok(out) => {
                    assert!(held);
                    let fresh = model.pinned(&u, &out.view);
                    assert_eq!(out.new_cluster_pin, fresh);
                    let orphaned = if old != c { model.unpinned(&u, &old) } else { false };
                    assert_eq!(out.orphaned, orphaned.then_some(old));
                }
                Err(StateError::NotFound) => assert!(!held),
                Err(e) => panic!("{e}"),
            }
        }
        6 | 7 => {
            let held = model.users.get(&u).is_some_and(|p| p.contains_key(&c));
            match pinset.unpin(&u, &c).await {
                Ok(out) => {
                    assert!(held);
                    assert_eq!(out.orphaned, model.unpinned(&u, &c));
                }
                Err(StateError::NotFound) => assert!(!held),
                Err(e) => panic!("{e}"),
            }
        }
        _ => {
            let status = *PinStatus::ALL.choose(rng).unwrap();
            let update = StatusUpdate {
                status,
                error: (status == PinStatus::Failed).then(|| "boom".to_string()),
                attempts: Some(rng.gen_range(0..5)),
                progress: Some(Progress { blocks: 3, bytes: 300 }),
                dag_size: None,
            };
            match set_status(pinset, &c, update).await {
                Ok(()) => {
                    assert!(model.status.contains_key(&c));
                    model.status.insert(c, status);
                    let entry = pinset.cluster_pin(&c).unwrap().unwrap();
                    assert_eq!(entry.pin.status, status);
                    assert_eq!(entry.pin.error.is_some(), status == PinStatus::Failed);
                    assert_eq!(entry.pin.progress.bytes, 300);
                }
                Err(StateError::NotFound) => assert!(!model.status.contains_key(&c)),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

#[test]
fn random_interleaved_operations_keep_indexes_and_counters_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let users: Vec<UserName> = ["ann", "ann2", "ben", "cy"].into_iter().map(user).collect();
    let mut rng = StdRng::seed_from_u64(2024);
    let mut model = Model::default();
    {
        let pinset = open(dir.path());
        for round in 0..6 {
            rt.block_on(async {
                for _ in 0..250 {
                    random_op(&mut rng, &pinset, &mut model, &users).await;
                }
            });
            model.assert_store(&pinset);
            assert!(round < 1 || !model.status.is_empty());
        }
    }
    // Everything is still there, consistent, after reopening.
    let pinset = open(dir.path());
    model.assert_store(&pinset);
}

#[test]
fn concurrent_writers_leave_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let pinset = open(dir.path());
    let rt = runtime();
    rt.block_on(async {
        let tasks: Vec<_> = (0..32u64)
            .map(|task| {
                let pinset = pinset.clone();
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(task);
                    let u = user(&format!("user{}", task % 5));
                    for _ in 0..60 {
                        let c = cid(rng.gen_range(0..40));
                        // Outcomes race with other tasks; only errors other than NotFound are bugs.
                        let result = match rng.gen_range(0..4) {
                            0 | 1 => pinset.pin(&u, new_pin(c, Some("n"), &[])).await.map(|_| ()),
                            2 => pinset.unpin(&u, &c).await.map(|_| ()),
                            _ => set_status(&pinset, &c, StatusUpdate::status(PinStatus::Pinning)).await,
                        };
                        assert!(matches!(result, Ok(()) | Err(StateError::NotFound)), "{result:?}");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let report = pinset.check_integrity().unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    let total = pinset.cluster_pins(StatusSet::ALL).inspect(|p| assert!(p.is_ok())).count() as u64;
    assert_eq!(pinset.cluster_count(StatusSet::ALL).unwrap(), total);
}

#[test]
fn writes_fail_cleanly_on_missing_pins_and_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let pinset = open(dir.path());
    let rt = runtime();
    let u = user("u");
    rt.block_on(async {
        assert!(matches!(pinset.unpin(&u, &cid(1)).await, Err(StateError::NotFound)));
        assert!(matches!(pinset.replace(&u, &cid(1), new_pin(cid(2), None, &[])).await, Err(StateError::NotFound)));
        assert!(matches!(
            set_status(&pinset, &cid(1), StatusUpdate::status(PinStatus::Pinned)).await,
            Err(StateError::NotFound)
        ));
        let long = "n".repeat(300);
        assert!(matches!(pinset.pin(&u, new_pin(cid(3), Some(&long), &[])).await, Err(StateError::Invalid(_))));
        // A failed operation in a bulk group leaves the others intact.
        let results = pinset
            .pin_many(vec![
                (u.clone(), new_pin(cid(4), None, &[])),
                (u.clone(), new_pin(cid(5), Some(&long), &[])),
                (u.clone(), new_pin(cid(6), None, &[])),
            ])
            .await
            .unwrap();
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
    });
    assert_eq!(pinset.user_pin_count(&u).unwrap(), 2);
    assert!(pinset.get(&u, &cid(5)).unwrap().is_none());
    assert!(pinset.check_integrity().unwrap().is_ok());
}

/// The representative of `c` as `cluster_summaries` streams it: the holder's name and pin name.
fn representative(pinset: &Pinset, c: &pincluster_model::Cid) -> Option<(String, Option<String>)> {
    let summary = pinset.cluster_summaries(StatusSet::ALL).map(|s| s.unwrap()).find(|s| s.pin.cid == *c)?;
    let (user, pin) = summary.representative?;
    assert_eq!(pin.cid, *c);
    Some((user.as_str().to_owned(), pin.name))
}

#[test]
fn the_streamed_representative_follows_the_first_holder_and_their_pin() {
    let dir = tempfile::tempdir().unwrap();
    let pinset = open(dir.path());
    let rt = runtime();
    let (aaron, bob, carol) = (user("aaron"), user("bob"), user("carol"));
    let c = cid(7);
    let rep = |expected: (&str, Option<&str>)| {
        assert_eq!(representative(&pinset, &c), Some((expected.0.to_owned(), expected.1.map(str::to_owned))));
        assert!(pinset.check_integrity().unwrap().is_ok());
    };
    rt.block_on(pinset.pin(&bob, new_pin(c, Some("b1"), &[]))).unwrap();
    rep(("bob", Some("b1")));
    // A later holder sorting after the first changes nothing.
    rt.block_on(pinset.pin(&carol, new_pin(c, Some("c1"), &[]))).unwrap();
    rep(("bob", Some("b1")));
    // The first holder renames their pin; created stays, the copy follows.
    rt.block_on(pinset.pin(&bob, new_pin(c, Some("b2"), &[("k", "v")]))).unwrap();
    rep(("bob", Some("b2")));
    // A holder sorting first takes over.
    rt.block_on(pinset.pin(&aaron, new_pin(c, None, &[]))).unwrap();
    rep(("aaron", None));
    // Status updates keep it.
    rt.block_on(set_status(&pinset, &c, StatusUpdate::status(PinStatus::Pinned))).unwrap();
    rep(("aaron", None));
    // The first holder leaves: the next one, with their current pin.
    rt.block_on(pinset.unpin(&aaron, &c)).unwrap();
    rep(("bob", Some("b2")));
    // Replacing moves the first holder away from `c`.
    rt.block_on(pinset.replace(&bob, &c, new_pin(cid(8), Some("moved"), &[]))).unwrap();
    rep(("carol", Some("c1")));
    assert_eq!(representative(&pinset, &cid(8)), Some(("bob".to_owned(), Some("moved".to_owned()))));
    // And it survives reopening.
    drop(pinset);
    let pinset = open(dir.path());
    assert_eq!(representative(&pinset, &c), Some(("carol".to_owned(), Some("c1".to_owned()))));
    let entry = pinset.cluster_pin(&c).unwrap().unwrap();
    let summary = pinset.cluster_summaries(StatusSet::only(PinStatus::Pinned)).next().unwrap().unwrap();
    assert_eq!((summary.pin, summary.representative.as_ref()), (entry.pin.clone(), entry.holders.first()));
}
