//! A full consistency check of records, indexes and counters: read [`check`]
//! first. It walks every key once and does point lookups for cross-references,
//! so it costs O(pinset) time and memory proportional to the number of users.

use std::collections::HashMap;

use pincluster_model::{ClusterPin, PinStatus};

use crate::keys::{self, Tag};
use crate::read;
use crate::records;
use crate::StateError;

/// The most problems a report lists.
const MAX_PROBLEMS: usize = 100;

/// What [`crate::Reader::check_integrity`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntegrityReport {
    /// User pin objects seen.
    pub user_pins: u64,
    /// Cluster records seen.
    pub cluster_pins: u64,
    /// One sentence per inconsistency (at most 100).
    pub problems: Vec<String>,
}

impl IntegrityReport {
    /// True when records, indexes and counters all agree.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        }
    }
}

fn entries(db: &sled::Db, tag: Tag) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StateError>> {
    db.scan_prefix([tag as u8]).map(|item| item.map_err(StateError::from))
}

/// Splits a per-user key `tag | len | user | rest` into the user name bytes and the rest.
fn split_user(key: &[u8]) -> Option<(&[u8], &[u8])> {
    keys::split_short(key.get(1..)?)
}

pub(crate) fn check(db: &sled::Db) -> Result<IntegrityReport, StateError> {
    let mut report = IntegrityReport::default();
    let mut cluster_tally = [0u64; 4];
    let mut user_tally: HashMap<Vec<u8>, [u64; 4]> = HashMap::new();
    let mut newest: HashMap<Vec<u8>, u64> = HashMap::new();

    // Cluster records, with their local records and their holders' listing records.
    for item in entries(db, Tag::Cluster) {
        let (key, value) = item?;
        let show = keys::display(&key);
        let Some(cid) = key.get(1..).and_then(keys::decode_cid) else {
            report.problem(format!("{show}: malformed CID"));
            continue;
        };
        report.cluster_pins += 1;
        let rec = match records::decode_cluster(&key, cid, &value) {
            Ok(rec) => rec,
            Err(error) => {
                report.problem(error.to_string());
                continue;
            }
        };
        let pin = match read::local(db, &rec) {
            Ok(local) => rec.joined(&local),
            Err(error) => {
                report.problem(error.to_string());
                continue;
            }
        };
        let status = pin.status;
        cluster_tally[usize::from(status.code())] += 1;
        if db.get(keys::cluster_status(status, rec.created, &cid))?.is_none() {
            report.problem(format!("{cid}: no status index entry for {status}"));
        }
        if rec.holders.is_empty() {
            report.problem(format!("{cid}: cluster record without holders"));
        }
        let summary = rec.summary;
        // A record no peer reported on keeps the summary it was given (a
        // migrated one: this peer's status then).
        if !rec.peers.is_empty() && rec.summarize().0 != summary {
            report.problem(format!("{cid}: the summary {summary} disagrees with the peers' statuses"));
        }
        if rec.peers.windows(2).any(|w| matches!(w, [a, b] if a.peer >= b.peer)) {
            report.problem(format!("{cid}: peers' statuses are not in peer ID order"));
        }
        // Listing records carry the summary, not every peer's status.
        let copy = ClusterPin { peers: Vec::new(), ..pin.clone() };
        for (index, (user, created)) in rec.holders.iter().enumerate() {
            let record_key = keys::by_status(user, summary, *created)?;
            let record = db.get(&record_key)?;
            let view = match record.as_deref().map(|bytes| records::decode_listing(&record_key, bytes)) {
                Some(Ok(view)) => view,
                Some(Err(error)) => {
                    report.problem(error.to_string());
                    continue;
                }
                None => {
                    report.problem(format!("{user}/{cid}: holder without a listing record in {summary}"));
                    continue;
                }
            };
            if view.user.cid != cid {
                report.problem(format!("{user}/{cid}: the holder's listing record is of {}", view.user.cid));
                continue;
            }
            if view.cluster != copy {
                report.problem(format!("{user}/{cid}: copy of the cluster pin is stale"));
            }
            if index == 0 && rec.first.as_ref().is_none_or(|(first, pin)| first != user || *pin != view.user) {
                report.problem(format!("{user}/{cid}: the cluster record's copy of the first holder's pin is stale"));
            }
            let name = user.as_str().as_bytes().to_vec();
            let slot = newest.entry(name.clone()).or_default();
            *slot = (*slot).max(created.0);
            user_tally.entry(name).or_default()[usize::from(summary.code())] += 1;
        }
    }
    for item in entries(db, Tag::Local) {
        let (key, value) = item?;
        let show = keys::display(&key);
        match (key.get(1..).and_then(keys::decode_cid), records::decode_local(&key, &value)) {
            (Some(cid), Ok(_)) => {
                if read::cluster(db, &cid)?.is_none() {
                    report.problem(format!("{cid}: local record without a cluster record"));
                }
            }
            (None, _) => report.problem(format!("{show}: malformed CID")),
            (_, Err(error)) => report.problem(error.to_string()),
        }
    }
    for item in entries(db, Tag::ClusterStatus) {
        let (key, _) = item?;
        match keys::split_cluster_status(&key) {
            Some((status, created, cid)) => match read::joined(db, &cid) {
                Ok(Some((rec, pin))) if pin.status == status && rec.created == created => {}
                _ => report.problem(format!("{cid}: stale cluster status index entry {status}")),
            },
            None => report.problem(format!("{}: malformed key", keys::display(&key))),
        }
    }
    for status in PinStatus::ALL {
        let stored = read::counter(db, &keys::cluster_count(status))?;
        let seen = cluster_tally[usize::from(status.code())];
        if stored != seen {
            report.problem(format!("cluster counter {status} is {stored}, records say {seen}"));
        }
    }

    // Listing records and name entries must lead to a user pin that agrees.
    for tag in [Tag::ByStatus, Tag::ByName] {
        for item in entries(db, tag) {
            let (key, value) = item?;
            let show = keys::display(&key);
            let user = split_user(&key).and_then(|(user, _)| keys::decode_user(user));
            let (Some(user), Some(created)) = (user, keys::trailing_created(&key)) else {
                report.problem(format!("{show}: malformed index entry"));
                continue;
            };
            let cid = match tag {
                Tag::ByStatus => match records::decode_listing(&key, &value) {
                    Ok(view) => {
                        report.user_pins += 1;
                        if status_byte(&key) != Some(view.cluster.summary) {
                            report.problem(format!("{show}: status entry disagrees with its record"));
                        }
                        if view.user.created != created {
                            report.problem(format!("{show}: created {} in the record", view.user.created.0));
                        }
                        if let Some(name) = &view.user.name {
                            let entry = db.get(keys::by_name(&user, name, created)?)?;
                            if entry.is_none_or(|v| v.as_ref() != view.user.cid.to_bytes().as_slice()) {
                                report.problem(format!("{user}/{}: missing name index entry", view.user.cid));
                            }
                        }
                        Some(view.user.cid)
                    }
                    Err(error) => {
                        report.problem(error.to_string());
                        continue;
                    }
                },
                _ => keys::decode_cid(&value),
            };
            let Some(cid) = cid else {
                report.problem(format!("{show}: malformed CID"));
                continue;
            };
            match read::view(db, &user, &cid) {
                Ok(Some(view)) if view.user.created == created => {
                    if tag == Tag::ByName && !name_matches(&key, view.user.name.as_deref()) {
                        report.problem(format!("{show}: name index entry disagrees with the record"));
                    }
                }
                _ => report.problem(format!("{show}: index entry without a matching user pin")),
            }
        }
    }
    for item in entries(db, Tag::UserCount) {
        let (key, value) = item?;
        let parsed = split_user(&key).and_then(|(user, rest)| {
            let status = PinStatus::from_code(*rest.first()?)?;
            Some((user.to_vec(), status))
        });
        let Some((user, status)) = parsed else {
            report.problem(format!("{}: malformed counter key", keys::display(&key)));
            continue;
        };
        let stored = keys::decode_u64(&value).unwrap_or(u64::MAX);
        let seen = user_tally.get_mut(&user).map_or(0, |t| std::mem::take(&mut t[usize::from(status.code())]));
        if stored != seen {
            report.problem(format!("{}: counter is {stored}, records say {seen}", keys::display(&key)));
        }
    }
    for (user, tally) in user_tally {
        if tally.iter().any(|n| *n != 0) {
            report.problem(format!("{}: pins without a counter", String::from_utf8_lossy(&user)));
        }
    }
    // Each user's newest `created` is at least that of every pin they hold.
    for (user, created) in newest {
        let stored = keys::decode_user(&user)
            .map(|u| keys::newest(&u))
            .transpose()?
            .map(|key| read::counter(db, &key))
            .transpose()?
            .unwrap_or(0);
        if stored < created {
            report.problem(format!(
                "{}: newest created is {stored}, a pin has {created}",
                String::from_utf8_lossy(&user)
            ));
        }
    }
    if db.scan_prefix([Tag::LegacyRecord as u8]).next().is_some() {
        report.problem("schema 3 listing records are left".into());
    }
    Ok(report)
}

/// The status byte of `s | len | user | status | created`, just before the timestamp.
fn status_byte(key: &[u8]) -> Option<PinStatus> {
    key.len().checked_sub(9).and_then(|i| key.get(i)).copied().and_then(PinStatus::from_code)
}

fn name_matches(key: &[u8], name: Option<&str>) -> bool {
    let Some((_, rest)) = split_user(key) else {
        return false;
    };
    let Some(name) = name else {
        return false;
    };
    let folded = keys::fold_name(name);
    let mut expected = (folded.len() as u16).to_be_bytes().to_vec();
    expected.extend_from_slice(folded.as_bytes());
    rest.len() == expected.len() + 8 && rest.starts_with(&expected)
}
