//! A full consistency check of records, indexes and counters: read [`check`]
//! first. It walks every key once and does point lookups for cross-references,
//! so it costs O(pinset) time and memory proportional to the number of users.

use std::collections::HashMap;

use pincluster_model::{PinStatus, Timestamp};

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
        let holders = db.scan_prefix(keys::holder_prefix(&cid)?).count() as u64;
        if holders != u64::from(rec.holders) || holders == 0 {
            report.problem(format!("{cid}: record says {} holders, index has {holders}", rec.holders));
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

    // Listing records: the user's pin objects, with their index entries.
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
        let (pin, copy) = (&view.user, &view.cluster);
        let cid = pin.cid;
        if pin.created != created {
            report.problem(format!("{show}: created {} in the record", pin.created.0));
        }
        let cid_bytes = cid.to_bytes();
        let points_here = |value: Option<sled::IVec>| value.is_some_and(|v| v.as_ref() == cid_bytes.as_slice());
        if !points_here(db.get(keys::by_created(&user, created)?)?) {
            report.problem(format!("{user}/{cid}: missing creation index entry"));
        }
        if let Some(name) = &pin.name {
            if !points_here(db.get(keys::by_name(&user, name, created)?)?) {
                report.problem(format!("{user}/{cid}: missing name index entry"));
            }
        }
        let holder = db.get(keys::holder(&cid, &user)?)?;
        if holder.as_deref().and_then(keys::decode_u64) != Some(created.0) {
            report.problem(format!("{user}/{cid}: missing or wrong holder entry"));
        }
        match read::cluster(db, &cid) {
            Ok(Some(rec)) => {
                if rec.pin != *copy {
                    report.problem(format!("{user}/{cid}: copy of the cluster record is stale"));
                }
                let status = rec.pin.status;
                user_tally.entry(user.as_str().as_bytes().to_vec()).or_default()[usize::from(status.code())] += 1;
                if !points_here(db.get(keys::by_status(&user, status, created)?)?) {
                    report.problem(format!("{user}/{cid}: missing status index entry {status}"));
                }
            }
            _ => report.problem(format!("{user}/{cid}: no readable cluster record")),
        }
    }

    // Index entries must lead to a listing record that agrees.
    for tag in [Tag::ByCreated, Tag::ByStatus, Tag::ByName] {
        for item in entries(db, tag) {
            let (key, value) = item?;
            let show = keys::display(&key);
            let user = split_user(&key).and_then(|(user, _)| keys::decode_user(user));
            let created = keys::trailing_created(&key);
            let cid = keys::decode_cid(&value);
            let (Some(user), Some(created), Some(cid)) = (user, created, cid) else {
                report.problem(format!("{show}: malformed index entry"));
                continue;
            };
            match read::listing(db, &user, created, Some(&cid)) {
                Ok(Some(view)) => {
                    if tag == Tag::ByStatus && status_byte(&key) != Some(view.cluster.status) {
                        report.problem(format!("{show}: status index entry disagrees with the record"));
                    }
                    if tag == Tag::ByName && !name_matches(&key, view.user.name.as_deref()) {
                        report.problem(format!("{show}: name index entry disagrees with the record"));
                    }
                }
                _ => report.problem(format!("{show}: index entry without a matching user pin")),
            }
        }
    }
    for item in entries(db, Tag::Holder) {
        let (key, value) = item?;
        let show = keys::display(&key);
        let parsed = key
            .get(1..)
            .and_then(keys::split_short)
            .and_then(|(cid, user)| Some((keys::decode_cid(cid)?, keys::decode_user(user)?)));
        let Some((cid, user)) = parsed else {
            report.problem(format!("{show}: malformed holder key"));
            continue;
        };
        let Some(created) = keys::decode_u64(&value).map(Timestamp) else {
            report.problem(format!("{show}: created is not 8 bytes"));
            continue;
        };
        match read::listing(db, &user, created, Some(&cid)) {
            Ok(Some(_)) => {}
            Ok(None) => report.problem(format!("{show}: holder entry without a matching user pin")),
            Err(error) => report.problem(error.to_string()),
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

