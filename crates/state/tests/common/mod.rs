//! Helpers shared by the pinset tests: CIDs, users, pins and a reference model
//! that answers every query by brute force. Read [`Model`] first.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use pincluster_model::{
    Cid, ClusterPin, NewPin, PinOptions, PinStatus, PinView, StatusSet, Timestamp, UserName, UserPin,
};
use pincluster_state::{Command, Page, Pinset, Query, Reported, StateError, StateOptions, StatusUpdate};

/// A CIDv1 (raw codec, sha2-256 multihash) whose digest encodes `n`.
pub fn cid(n: u64) -> Cid {
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&n.to_be_bytes());
    digest[8..16].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    bytes.extend_from_slice(&digest);
    Cid::try_from(bytes).unwrap()
}

pub fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

pub fn new_pin(cid: Cid, name: Option<&str>, meta: &[(&str, &str)]) -> NewPin {
    NewPin {
        cid,
        name: name.map(str::to_owned),
        meta: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        origins: Vec::new(),
        options: PinOptions::everywhere(),
    }
}

pub fn open(dir: &std::path::Path) -> Pinset {
    Pinset::open(&StateOptions::new(dir)).unwrap()
}

/// Sets this peer's status of `cid` and reports it through the log, as the
/// tracker does, so that the summary (what listings go by) follows.
pub async fn set_status(pinset: &Pinset, cid: &Cid, update: StatusUpdate) -> Result<(), StateError> {
    let reported = Reported { cid: *cid, status: update.status, error: update.error.clone() };
    pinset.update_status(cid, update).await?;
    let report = Command::Report { peer: "me".into(), at: Timestamp(1), statuses: vec![reported] };
    pinset.propose(vec![report]).await?.pop().unwrap().map(drop)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// What the pinset should contain, kept by applying each acknowledged operation.
#[derive(Default, Clone, Debug)]
pub struct Model {
    pub users: BTreeMap<UserName, BTreeMap<Cid, UserPin>>,
    pub status: BTreeMap<Cid, PinStatus>,
}

impl Model {
    pub fn holders(&self, cid: &Cid) -> Vec<UserName> {
        self.users.iter().filter(|(_, pins)| pins.contains_key(cid)).map(|(u, _)| u.clone()).collect()
    }

    /// Records a pin the store acknowledged; returns whether the CID was new to the cluster.
    pub fn pinned(&mut self, user: &UserName, view: &PinView) -> bool {
        self.users.entry(user.clone()).or_default().insert(view.user.cid, view.user.clone());
        self.status.insert(view.user.cid, view.cluster.status).is_none()
    }

    /// Removes a user's pin; returns whether the CID lost its last holder.
    pub fn unpinned(&mut self, user: &UserName, cid: &Cid) -> bool {
        if let Some(pins) = self.users.get_mut(user) {
            pins.remove(cid);
        }
        let orphaned = self.holders(cid).is_empty();
        if orphaned {
            self.status.remove(cid);
        }
        orphaned
    }

    /// Every match of `query` for `user`, newest first.
    pub fn all_matches(&self, user: &UserName, query: &Query) -> Vec<(UserPin, PinStatus)> {
        let Some(pins) = self.users.get(user) else { return Vec::new() };
        let cids: Option<BTreeSet<Cid>> = query.cids.as_ref().map(|c| c.iter().copied().collect());
        let mut out: Vec<(UserPin, PinStatus)> = pins
            .values()
            .filter(|p| cids.as_ref().is_none_or(|c| c.contains(&p.cid)))
            .filter(|p| query.before.is_none_or(|b| p.created < b))
            .filter(|p| query.after.is_none_or(|a| p.created > a))
            .filter(|p| match (&query.name, &p.name) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some((pat, how)), Some(name)) => how.matches(pat, name),
            })
            .filter(|p| query.meta.iter().all(|(k, v)| p.meta.get(k) == Some(v)))
            .map(|p| (p.clone(), self.status[&p.cid]))
            .filter(|(_, s)| query.statuses.contains(*s))
            .collect();
        out.sort_by_key(|(p, _)| std::cmp::Reverse(p.created));
        out
    }

    /// Asserts that a page from the store is what brute force says.
    pub fn assert_page(&self, user: &UserName, query: &Query, page: &Page) {
        let all = self.all_matches(user, query);
        assert_eq!(page.count, all.len() as u64, "count of {query:?}");
        let limit = query.limit.min(1000);
        let expected: Vec<_> = all.into_iter().take(limit).collect();
        let got: Vec<_> = page.results.iter().map(|v| (v.user.clone(), v.cluster.status)).collect();
        assert_eq!(got, expected, "results of {query:?}");
    }

    /// Asserts that everything readable from the store agrees with the model.
    pub fn assert_store(&self, pinset: &Pinset) {
        for (user, pins) in &self.users {
            assert_eq!(pinset.user_pin_count(user).unwrap(), pins.len() as u64);
            let listed = list_all(pinset, user, &Query::default());
            let mut expected: Vec<&UserPin> = pins.values().collect();
            expected.sort_by_key(|p| std::cmp::Reverse(p.created));
            let listed_pins: Vec<&UserPin> = listed.iter().map(|v| &v.user).collect();
            assert_eq!(listed_pins, expected, "listing of {user}");
            for status in PinStatus::ALL {
                let query = Query { statuses: StatusSet::only(status), limit: 0, ..Query::default() };
                let want = pins.values().filter(|p| self.status[&p.cid] == status).count() as u64;
                assert_eq!(pinset.list(user, &query).unwrap().count, want, "{user} {status}");
            }
        }
        let streamed: Vec<(Cid, PinStatus)> =
            pinset.cluster_pins(StatusSet::ALL).map(|p| p.unwrap()).map(|p| (p.cid, p.status)).collect();
        let mut expected: Vec<(Cid, PinStatus)> = self.status.iter().map(|(c, s)| (*c, *s)).collect();
        expected.sort_by_key(|(c, _)| c.to_bytes());
        assert_eq!(streamed, expected, "cluster_pins(ALL)");
        assert_eq!(pinset.cluster_count(StatusSet::ALL).unwrap(), expected.len() as u64);
        for status in PinStatus::ALL {
            let mut filter = StatusSet::only(status);
            filter.insert(PinStatus::Pinned);
            let got = by_cid(filter, pinset.cluster_pins(filter).map(|p| p.unwrap()).collect());
            let want: Vec<Cid> = expected.iter().filter(|(_, s)| filter.contains(*s)).map(|(c, _)| *c).collect();
            assert_eq!(got, want, "cluster_pins({filter:?})");
            assert_eq!(pinset.cluster_count(filter).unwrap(), want.len() as u64);
        }
        for filter in [StatusSet::ALL, StatusSet::only(PinStatus::Pinned)] {
            let summaries: Vec<_> = pinset.cluster_summaries(filter).map(|s| s.unwrap()).collect();
            let want: Vec<Cid> = expected.iter().filter(|(_, s)| filter.contains(*s)).map(|(c, _)| *c).collect();
            let got = by_cid(filter, summaries.iter().map(|s| s.pin.clone()).collect());
            assert_eq!(got, want, "cluster_summaries({filter:?})");
            for summary in summaries {
                let entry = pinset.cluster_pin(&summary.pin.cid).unwrap().unwrap();
                assert_eq!(summary.pin, entry.pin);
                let first = self.holders(&summary.pin.cid).into_iter().next().unwrap();
                let pin = self.users[&first][&summary.pin.cid].clone();
                assert_eq!(summary.representative, Some((first, pin)), "representative of {}", summary.pin.cid);
                assert_eq!(summary.representative.as_ref(), entry.holders.first());
            }
        }
        for (cid, status) in &self.status {
            let entry = pinset.cluster_pin(cid).unwrap().unwrap();
            assert_eq!(entry.pin.status, *status);
            let holders: Vec<UserName> = entry.holders.iter().map(|(u, _)| u.clone()).collect();
            assert_eq!(holders, self.holders(cid), "holders of {cid}");
        }
        let report = pinset.check_integrity().unwrap();
        assert!(report.is_ok(), "integrity: {:#?}", report.problems);
    }
}

/// Every page of a query, following `before` from the last result.
pub fn list_all(pinset: &Pinset, user: &UserName, query: &Query) -> Vec<PinView> {
    let mut out = Vec::new();
    let mut q = query.clone();
    if q.limit == 0 {
        q.limit = 10;
    }
    loop {
        let page = pinset.list(user, &q).unwrap();
        let Some(last) = page.results.last() else { break };
        q.before = Some(last.user.created);
        out.extend(page.results);
    }
    out
}

pub fn ts(ms: u64) -> Timestamp {
    Timestamp(ms)
}

/// The CIDs of a cluster stream in CID byte order, after checking the order
/// the stream promises: CID order without a filter, else oldest `created` first.
pub fn by_cid(filter: StatusSet, pins: Vec<ClusterPin>) -> Vec<Cid> {
    let order = |p: &ClusterPin| if filter.is_all() { (0, p.cid.to_bytes()) } else { (p.created.0, p.cid.to_bytes()) };
    assert!(pins.windows(2).all(|w| order(&w[0]) < order(&w[1])), "stream order for {filter:?}");
    let mut cids: Vec<Cid> = pins.iter().map(|p| p.cid).collect();
    cids.sort_by_key(|c| c.to_bytes());
    cids
}
