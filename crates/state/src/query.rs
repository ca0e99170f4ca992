//! One user's listing: picks an index to drive the scan, filters, pages and
//! counts; read [`list`] first.
//!
//! The driving index is chosen so that the first page costs the page plus the
//! entries that the remaining filters skip: the name index for `exact`/`iexact`,
//! else a newest-first merge of the `s` ranges of the selected statuses (all
//! four without a status filter). All of them are walked newest first (a
//! forward scan: `created` is inverted in keys), bounded by `after`/`before`
//! in the key. The `s` ranges hold whole listing records, so a page is one
//! range scan per status and no point lookups; only the name index leads to
//! records by key.

use std::collections::BTreeSet;

use pincluster_model::{Cid, NameMatch, PinView, StatusSet, Timestamp, UserName, UserPin};

use crate::keys;
use crate::read;
use crate::records;
use crate::{Page, Query, StateError, MAX_LIMIT};

/// Which index a query walks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Driver {
    Status,
    Name,
}

/// Lists one user's pins newest first; see [`crate::Reader::list`].
pub(crate) fn list(db: &sled::Db, user: &UserName, query: &Query) -> Result<Page, StateError> {
    let limit = query.limit.min(MAX_LIMIT);
    let lo = query.after.map_or(0, |t| t.0.saturating_add(1));
    let hi = query.before.map_or(u64::MAX, |t| t.0);
    if query.statuses.is_empty() || lo >= hi {
        return Ok(Page { count: 0, results: Vec::new() });
    }
    if let Some(cids) = &query.cids {
        return by_cids(db, user, query, cids, limit);
    }

    let driver = match &query.name {
        Some((_, NameMatch::Exact | NameMatch::IExact)) => Driver::Name,
        _ => Driver::Status,
    };
    let mut prefixes = Vec::new();
    match driver {
        Driver::Status => {
            for status in query.statuses.iter() {
                prefixes.push(keys::by_status_prefix(user, status)?);
            }
        }
        Driver::Name => {
            let pattern = query.name.as_ref().map_or("", |(p, _)| p.as_str());
            prefixes.push(keys::by_name_prefix(user, &keys::fold_name(pattern))?);
        }
    }
    let candidates = Candidates::new(db, &prefixes, lo, hi);

    // Whether the index entry alone proves a match, so counting needs no record.
    let index_decides = query.meta.is_empty()
        && match driver {
            Driver::Status => query.name.is_none(),
            Driver::Name => matches!(query.name, Some((_, NameMatch::IExact))) && query.statuses.is_all(),
        };
    // Whether the maintained counters answer `count`.
    let from_counters =
        query.before.is_none() && query.after.is_none() && query.name.is_none() && query.meta.is_empty();

    let mut results = Vec::with_capacity(limit.min(64));
    let mut count = 0u64;
    for candidate in candidates {
        let (key, created, value) = candidate?;
        if results.len() >= limit {
            if from_counters {
                break;
            }
            if index_decides {
                count += 1;
                continue;
            }
        }
        let Some(view) = candidate_view(db, user, driver, &key, created, &value) else {
            continue;
        };
        if matches_user(query, &view.user) && query.statuses.contains(view.cluster.summary) {
            count += 1;
            if results.len() < limit {
                results.push(view);
            }
        }
    }
    if from_counters {
        count = user_count(db, user, query.statuses)?;
    }
    Ok(Page { count, results })
}

/// The `cids` filter: direct lookups, then the other filters.
fn by_cids(db: &sled::Db, user: &UserName, query: &Query, cids: &[Cid], limit: usize) -> Result<Page, StateError> {
    let distinct: BTreeSet<Cid> = cids.iter().copied().collect();
    let mut found: Vec<PinView> = distinct
        .iter()
        .filter_map(|cid| load_view(db, user, cid))
        .filter(|view| matches_user(query, &view.user) && query.statuses.contains(view.cluster.summary))
        .collect();
    found.sort_by_key(|view| std::cmp::Reverse(view.user.created));
    let count = found.len() as u64;
    found.truncate(limit);
    Ok(Page { count, results: found })
}

/// A pin's view for listing: absent (removed meanwhile) or corrupt pins are skipped.
fn load_view(db: &sled::Db, user: &UserName, cid: &Cid) -> Option<PinView> {
    match read::view(db, user, cid) {
        Ok(view) => view,
        Err(error) => {
            tracing::error!(%error, %cid, "skipping unreadable pin in listing");
            None
        }
    }
}

/// The pin behind an index entry. An `s` entry holds the listing record
/// itself; a name entry holds the CID and leads to the listing record
/// through the cluster record. Unreadable pins and pins removed meanwhile are skipped.
fn candidate_view(
    db: &sled::Db,
    user: &UserName,
    driver: Driver,
    key: &[u8],
    created: Timestamp,
    value: &[u8],
) -> Option<PinView> {
    let loaded = match driver {
        Driver::Status => records::decode_listing(key, value).map(Some),
        Driver::Name => match keys::decode_cid(value) {
            Some(cid) => read::view(db, user, &cid).map(|view| view.filter(|v| v.user.created == created)),
            None => Err(StateError::Corrupt {
                key: format!("name index entry of {user} at {}", created.0),
                reason: "malformed CID".into(),
            }),
        },
    };
    match loaded {
        Ok(view) => view,
        Err(error) => {
            tracing::error!(%error, "skipping unreadable pin in listing");
            None
        }
    }
}

/// The filters that look at the user's own pin object.
fn matches_user(query: &Query, pin: &UserPin) -> bool {
    if let Some(before) = query.before {
        if pin.created >= before {
            return false;
        }
    }
    if let Some(after) = query.after {
        if pin.created <= after {
            return false;
        }
    }
    if let Some((pattern, how)) = &query.name {
        match &pin.name {
            Some(name) if how.matches(pattern, name) => {}
            _ => return false,
        }
    }
    query.meta.iter().all(|(key, value)| pin.meta.get(key) == Some(value))
}

/// The sum of a user's counters for `statuses`.
pub(crate) fn user_count(db: &sled::Db, user: &UserName, statuses: StatusSet) -> Result<u64, StateError> {
    let mut total = 0u64;
    for status in statuses.iter() {
        total = total.saturating_add(read::counter(db, &keys::user_count(user, status)?)?);
    }
    Ok(total)
}

/// An index entry: its key, the `created` at the end of the key, its value.
type Entry = (sled::IVec, Timestamp, sled::IVec);

/// One index range walked newest first, with its next entry looked at.
struct Source {
    iter: sled::Iter,
    head: Option<Entry>,
    done: bool,
}

/// Newest-first merge of up to four index ranges whose keys end in `created`.
struct Candidates {
    sources: Vec<Source>,
}

impl Candidates {
    fn new(db: &sled::Db, prefixes: &[Vec<u8>], lo: u64, hi: u64) -> Candidates {
        let sources = prefixes
            .iter()
            .map(|prefix| {
                // `created` in [lo, hi) is `!created` in [!(hi - 1), !lo]; callers ensure lo < hi.
                let mut start = prefix.clone();
                start.extend_from_slice(&keys::invert(Timestamp(hi.saturating_sub(1))));
                let mut end = prefix.clone();
                end.extend_from_slice(&keys::invert(Timestamp(lo)));
                Source { iter: db.range(start..=end), head: None, done: false }
            })
            .collect();
        Candidates { sources }
    }
}

impl Iterator for Candidates {
    type Item = Result<Entry, StateError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            for source in &mut self.sources {
                if source.head.is_none() && !source.done {
                    match source.iter.next() {
                        Some(Ok((key, value))) => match keys::trailing_created(&key) {
                            Some(created) => source.head = Some((key, created, value)),
                            None => {
                                tracing::error!(key = %keys::display(&key), "skipping malformed index key")
                            }
                        },
                        Some(Err(error)) => return Some(Err(error.into())),
                        None => source.done = true,
                    }
                }
            }
            if self.sources.iter().any(|s| s.head.is_none() && !s.done) {
                // A malformed key was skipped; refill before choosing.
                continue;
            }
            let newest = self
                .sources
                .iter_mut()
                .filter(|s| s.head.is_some())
                .max_by_key(|s| s.head.as_ref().map(|(_, created, _)| *created))?;
            return newest.head.take().map(Ok);
        }
    }
}
