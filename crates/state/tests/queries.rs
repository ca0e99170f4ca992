//! Listing against a brute-force reference: every filter and combination over
//! seeded random data, per-user isolation, and paging by `before`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{cid, list_all, new_pin, open, runtime, set_status, user, Model};
use pincluster_model::{NameMatch, PinStatus, StatusSet, Timestamp, UserName};
use pincluster_state::{Query, StatusUpdate};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const NAMES: [Option<&str>; 7] =
    [None, Some("Alpha"), Some("alpha"), Some("ALPHA beta"), Some("gamma"), Some("Beta"), Some("")];
const PATTERNS: [&str; 6] = ["alpha", "Alpha", "beta", "a", "gamma", "zzz"];

fn random_meta(rng: &mut StdRng) -> Vec<(&'static str, &'static str)> {
    let mut meta = Vec::new();
    for key in ["k1", "k2", "k3"] {
        if rng.gen_bool(0.5) {
            meta.push((key, *["a", "b"].choose(rng).unwrap()));
        }
    }
    meta
}

fn random_statuses(rng: &mut StdRng) -> StatusSet {
    match rng.gen_range(0..4) {
        0 => StatusSet::ALL,
        1 => StatusSet::only(*PinStatus::ALL.choose(rng).unwrap()),
        2 => StatusSet::EMPTY,
        _ => PinStatus::ALL.into_iter().filter(|_| rng.gen_bool(0.5)).collect(),
    }
}

/// Builds random pins for several users over a shared CID pool, with random statuses.
fn populate(rng: &mut StdRng, pinset: &pincluster_state::Pinset, users: &[UserName], pins: usize) -> Model {
    let rt = runtime();
    let mut model = Model::default();
    rt.block_on(async {
        for i in 0..pins {
            let u = users.choose(rng).unwrap();
            let c = cid(rng.gen_range(0..(pins as u64)));
            let meta = random_meta(rng);
            let out = pinset.pin(u, new_pin(c, *NAMES.choose(rng).unwrap(), &meta)).await.unwrap();
            let fresh = model.pinned(u, &out.view);
            assert_eq!(out.new_cluster_pin, fresh);
            if i % 3 == 0 {
                let status = *PinStatus::ALL.choose(rng).unwrap();
                set_status(pinset, &c, StatusUpdate::status(status)).await.unwrap();
                model.status.insert(c, status);
            }
        }
    });
    model
}

fn random_query(rng: &mut StdRng, model: &Model, u: &UserName) -> Query {
    let created: Vec<Timestamp> =
        model.users.get(u).map(|p| p.values().map(|p| p.created).collect()).unwrap_or_default();
    let pick_time = |rng: &mut StdRng| -> Timestamp {
        let base = created.choose(rng).copied().unwrap_or(Timestamp(1000));
        Timestamp(base.0.saturating_add_signed(rng.gen_range(-1..=1)))
    };
    let mut q =
        Query { statuses: StatusSet::ALL, limit: *[0, 1, 3, 10, 1000, 5000].choose(rng).unwrap(), ..Query::default() };
    if rng.gen_bool(0.15) {
        let n = rng.gen_range(0..=10);
        q.cids = Some((0..n).map(|_| cid(rng.gen_range(0..300))).collect());
    }
    if rng.gen_bool(0.4) {
        let how = *[NameMatch::Exact, NameMatch::IExact, NameMatch::Partial, NameMatch::IPartial].choose(rng).unwrap();
        q.name = Some((PATTERNS.choose(rng).unwrap().to_string(), how));
    }
    if rng.gen_bool(0.5) {
        q.statuses = random_statuses(rng);
    }
    if rng.gen_bool(0.3) {
        q.before = Some(pick_time(rng));
    }
    if rng.gen_bool(0.3) {
        q.after = Some(pick_time(rng));
    }
    if rng.gen_bool(0.3) {
        q.meta = random_meta(rng).into_iter().take(2).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }
    q
}

#[test]
fn every_filter_combination_matches_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let pinset = open(dir.path());
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let users: Vec<UserName> = ["alice", "bob", "carol", "dave"].into_iter().map(user).collect();
    let model = populate(&mut rng, &pinset, &users, 300);

    for _ in 0..3000 {
        let u = users.choose(&mut rng).unwrap();
        let q = random_query(&mut rng, &model, u);
        let page = pinset.list(u, &q).unwrap();
        model.assert_page(u, &q, &page);
    }
    // Walking every page of a filtered query yields exactly the matches.
    for _ in 0..200 {
        let u = users.choose(&mut rng).unwrap();
        let mut q = random_query(&mut rng, &model, u);
        q.cids = None;
        q.limit = rng.gen_range(1..5);
        let walked: Vec<_> = list_all(&pinset, u, &q).into_iter().map(|v| v.user).collect();
        let want: Vec<_> = model.all_matches(u, &q).into_iter().map(|(p, _)| p).collect();
        assert_eq!(walked, want, "{q:?}");
    }
    model.assert_store(&pinset);
}

#[test]
fn each_filter_alone_matches_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let pinset = open(dir.path());
    let mut rng = StdRng::seed_from_u64(42);
    let users: Vec<UserName> = ["u1", "u2", "u3"].into_iter().map(user).collect();
    let model = populate(&mut rng, &pinset, &users, 200);
    let u = &users[0];
    let all_created: Vec<Timestamp> = model.users[u].values().map(|p| p.created).collect();
    let mut queries = vec![Query::default(), Query { limit: 1000, ..Query::default() }];
    for how in [NameMatch::Exact, NameMatch::IExact, NameMatch::Partial, NameMatch::IPartial] {
        for pattern in PATTERNS.iter().chain([&""]) {
            queries.push(Query { name: Some((pattern.to_string(), how)), limit: 1000, ..Query::default() });
        }
    }
    for status in PinStatus::ALL {
        queries.push(Query { statuses: StatusSet::only(status), limit: 1000, ..Query::default() });
    }
    queries.push(Query { statuses: StatusSet::EMPTY, ..Query::default() });
    for t in all_created.iter().step_by(17) {
        queries.push(Query { before: Some(*t), limit: 1000, ..Query::default() });
        queries.push(Query { after: Some(*t), limit: 1000, ..Query::default() });
        queries.push(Query { after: Some(*t), before: Some(Timestamp(t.0 + 30)), limit: 5, ..Query::default() });
    }
    for (k, v) in [("k1", "a"), ("k2", "b"), ("k3", "zz")] {
        queries.push(Query { meta: BTreeMap::from([(k.into(), v.into())]), limit: 1000, ..Query::default() });
    }
    let held: Vec<_> = model.users[u].keys().take(5).copied().collect();
    queries.push(Query { cids: Some(held.iter().copied().chain([cid(9999)]).collect()), ..Query::default() });
    queries.push(Query { cids: Some(vec![held[0], held[0]]), ..Query::default() });
    for q in &queries {
        model.assert_page(u, q, &pinset.list(u, q).unwrap());
    }
}

#[test]
fn users_never_see_each_others_pins() {
    let dir = tempfile::tempdir().unwrap();
    let pinset = open(dir.path());
    let rt = runtime();
    // "ab" is a prefix of "abc": keys must not mix them up.
    let (a, b, c) = (user("ab"), user("abc"), user("b"));
    rt.block_on(async {
        for i in 0..20 {
            pinset.pin(&a, new_pin(cid(i), Some("same"), &[("k", "v")])).await.unwrap();
        }
        for i in 10..15 {
            pinset.pin(&b, new_pin(cid(i), Some("same"), &[("k", "v")])).await.unwrap();
        }
        // Unpinning for one user leaves the other's pin and the cluster record.
        assert!(!pinset.unpin(&b, &cid(10)).await.unwrap().orphaned);
        assert!(pinset.unpin(&c, &cid(1)).await.is_err());
    });
    assert_eq!(pinset.user_pin_count(&a).unwrap(), 20);
    assert_eq!(pinset.user_pin_count(&b).unwrap(), 4);
    assert_eq!(pinset.user_pin_count(&c).unwrap(), 0);
    let q = Query { name: Some(("same".into(), NameMatch::Exact)), limit: 1000, ..Query::default() };
    assert_eq!(pinset.list(&b, &q).unwrap().count, 4);
    assert!(pinset.list(&b, &q).unwrap().results.iter().all(|v| (11..15).any(|i| cid(i) == v.user.cid)));
    assert_eq!(pinset.list(&c, &Query::default()).unwrap().count, 0);
    assert!(pinset.get(&c, &cid(1)).unwrap().is_none());
    assert!(pinset.get(&b, &cid(1)).unwrap().is_none());
    assert!(pinset.get(&a, &cid(10)).unwrap().is_some());
    let entry = pinset.cluster_pin(&cid(12)).unwrap().unwrap();
    assert_eq!(entry.holders.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(), vec![a.clone(), b.clone()]);
    assert!(pinset.check_integrity().unwrap().is_ok());
}

#[test]
fn paging_by_before_over_pins_created_in_the_same_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let pinset = open(dir.path());
    let rt = runtime();
    let u = user("pager");
    let other = user("other");
    rt.block_on(async {
        // One bulk group plus concurrent single pins: all land within a few ms.
        let bulk = (0..4000).map(|i| (u.clone(), new_pin(cid(i), None, &[]))).collect();
        let tasks: Vec<_> = (4000..5000)
            .map(|i| {
                let (p, u) = (pinset.clone(), u.clone());
                tokio::spawn(async move { p.pin(&u, new_pin(cid(i), None, &[])).await.unwrap() })
            })
            .collect();
        let interleaved: Vec<_> = (0..300)
            .map(|i| {
                let (p, o) = (pinset.clone(), other.clone());
                tokio::spawn(async move { p.pin(&o, new_pin(cid(i), None, &[])).await.unwrap() })
            })
            .collect();
        for r in pinset.pin_many(bulk).await.unwrap() {
            r.unwrap();
        }
        for t in tasks.into_iter().chain(interleaved) {
            t.await.unwrap();
        }
    });
    for limit in [1, 7, 10, 1000] {
        let q = Query { limit, ..Query::default() };
        let all = list_all(&pinset, &u, &q);
        assert_eq!(all.len(), 5000, "limit {limit}");
        assert!(all.windows(2).all(|w| w[0].user.created > w[1].user.created));
        let distinct: BTreeSet<_> = all.iter().map(|v| v.user.cid).collect();
        assert_eq!(distinct.len(), 5000);
        assert!((0..5000).all(|i| distinct.contains(&cid(i))));
    }
    // Paging with a status filter (merging index ranges) is just as exact.
    rt.block_on(async {
        for i in (0..5000).step_by(3) {
            set_status(&pinset, &cid(i), StatusUpdate::status(PinStatus::Pinned)).await.unwrap();
        }
    });
    let mut statuses = StatusSet::only(PinStatus::Pinned);
    statuses.insert(PinStatus::Queued);
    let q = Query { limit: 13, statuses, ..Query::default() };
    let all = list_all(&pinset, &u, &q);
    assert_eq!(all.len(), 5000);
    assert!(all.windows(2).all(|w| w[0].user.created > w[1].user.created));
    let pinned = Query { limit: 1000, statuses: StatusSet::only(PinStatus::Pinned), ..Query::default() };
    assert_eq!(list_all(&pinset, &u, &pinned).len(), 1667);
    assert_eq!(pinset.list(&u, &pinned).unwrap().count, 1667);
}
