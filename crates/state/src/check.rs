//! A full consistency check of records, indexes and counters: read [`check`]
//! first. It walks every key once and does point lookups for cross-references,
//! so it costs O(pinset) time and memory proportional to the number of users.

use std::collections::HashMap;

use pincluster_model::PinStatus;

use crate::keys::{self, Tag};
use crate::read;
use crate::records;
use crate::StateError;

/// The most problems a report lists.
const MAX_PROBLEMS: usize = 100;

/// What [`crate::Pinset::check_integrity`] found.
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

    // Cluster records, with their holders' listing records.
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
        let status = rec.pin.status;
        cluster_tally[usize::from(status.code())] += 1;
        if db.get(keys::cluster_status(status, &cid))?.is_none() {
            report.problem(format!("{cid}: no status index entry for {status}"));
        }
        if rec.holders.is_empty() {
            report.problem(format!("{cid}: cluster record without holders"));
        }
        for (index, (user, created)) in rec.holders.iter().enumerate() {
            let record_key = keys::record(user, *created)?;
            let record = db.get(&record_key)?;
            let view = match record.as_deref().map(|bytes| records::decode_listing(&record_key, bytes)) {
                Some(Ok(view)) => view,
                Some(Err(error)) => {
                    report.problem(error.to_string());
                    continue;
                }
                None => {
                    report.problem(format!("{user}/{cid}: holder without a listing record"));
                    continue;
                }
            };
            if view.user.cid != cid {
                report.problem(format!("{user}/{cid}: the holder's listing record is of {}", view.user.cid));
                continue;
            }
            if view.cluster != rec.pin {
                report.problem(format!("{user}/{cid}: copy of the cluster record is stale"));
            }
            if index == 0 && rec.first.as_ref().is_none_or(|(first, pin)| first != user || *pin != view.user) {
                report.problem(format!("{user}/{cid}: the cluster record's copy of the first holder's pin is stale"));
            }
            user_tally.entry(user.as_str().as_bytes().to_vec()).or_default()[usize::from(status.code())] += 1;
            if db.get(keys::by_status(user, status, *created)?)? != record {
                report.problem(format!("{user}/{cid}: status entry {status} differs from the listing record"));
            }
        }
    }
    for item in entries(db, Tag::ClusterStatus) {
        let (key, _) = item?;
        let status = key.get(1).copied().and_then(PinStatus::from_code);
        let cid = key.get(2..).and_then(keys::decode_cid);
        match (status, cid) {
            (Some(status), Some(cid)) => match read::cluster(db, &cid) {
                Ok(Some(rec)) if rec.pin.status == status => {}
                _ => report.problem(format!("{cid}: stale cluster status index entry {status}")),
            },
            _ => report.problem(format!("{}: malformed key", keys::display(&key))),
        }
    }
    for status in PinStatus::ALL {
        let stored = read::counter(db, &keys::cluster_count(status))?;
        let seen = cluster_tally[usize::from(status.code())];
        if stored != seen {
            report.problem(format!("cluster counter {status} is {stored}, records say {seen}"));
        }
    }

    // Listing records: each must be its CID's holder entry, with its name entry.
    for item in entries(db, Tag::Record) {
        let (key, value) = item?;
        let show = keys::display(&key);
        let user = split_user(&key).and_then(|(user, _)| keys::decode_user(user));
        let (Some(user), Some(created)) = (user, keys::trailing_created(&key)) else {
            report.problem(format!("{show}: malformed key"));
            continue;
        };
        let view = match records::decode_listing(&key, &value) {
            Ok(view) => view,
            Err(error) => {
                report.problem(error.to_string());
                continue;
            }
        };
        report.user_pins += 1;
        let pin = &view.user;
        let cid = pin.cid;
        if pin.created != created {
            report.problem(format!("{show}: created {} in the record", pin.created.0));
        }
        if let Some(name) = &pin.name {
            let entry = db.get(keys::by_name(&user, name, created)?)?;
            if entry.is_none_or(|v| v.as_ref() != cid.to_bytes().as_slice()) {
                report.problem(format!("{user}/{cid}: missing name index entry"));
            }
        }
        match read::cluster(db, &cid) {
            Ok(Some(rec)) if rec.holder(&user) == Some(created) => {}
            Ok(_) => report.problem(format!("{user}/{cid}: the cluster record does not list this pin")),
            Err(error) => report.problem(error.to_string()),
        }
    }

    // Status and name entries must lead to a listing record that agrees.
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
                        if status_byte(&key) != Some(view.cluster.status) {
                            report.problem(format!("{show}: status entry disagrees with its record"));
                        }
                        if db.get(keys::record(&user, created)?)?.is_none_or(|r| r != value) {
                            report.problem(format!("{show}: status entry differs from the listing record"));
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
            match read::listing(db, &user, created, Some(&cid)) {
                Ok(Some(view)) => {
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
