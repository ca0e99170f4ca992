//! Streaming every cluster pin, optionally by status: read [`ClusterPins`] and
//! [`ClusterSummaries`] first. Without a filter the shared records (`c`) and
//! this peer's local records (`l`), both in CID byte order, are walked side by
//! side and joined, with no point lookups; with one, the `q` ranges of the
//! selected statuses are merged oldest first. Memory stays bounded: sled
//! iterators are lazy and a filter merges at most four of them.

use pincluster_model::{ClusterPin, StatusSet, UserName, UserPin};

use crate::keys::{self, Tag};
use crate::read;
use crate::records::{self, ClusterRecord, LocalRecord};
use crate::StateError;

/// A lazy stream of cluster pins; see [`crate::Reader::cluster_pins`].
///
/// A record that cannot be decoded is yielded as an error; iteration goes on after it.
pub struct ClusterPins {
    records: Records,
}

/// A cluster pin with its representative holder, as [`ClusterSummaries`] yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSummary {
    /// The cluster record.
    pub pin: ClusterPin,
    /// The first holder in user-name byte order with their pin object; `None`
    /// only for a record without holders, which the integrity check reports.
    pub representative: Option<(UserName, UserPin)>,
}

/// A lazy stream of cluster pins with their representative holder; see
/// [`crate::Reader::cluster_summaries`]. Reads nothing but the cluster and
/// local records (and, with a status filter, the status index).
///
/// A record that cannot be decoded is yielded as an error; iteration goes on after it.
pub struct ClusterSummaries {
    records: Records,
}

/// The cluster records behind both streams (and the export), joined with the local records.
pub(crate) struct Records {
    inner: Inner,
}

/// One status range: its iterator, the key looked at next, and whether it is exhausted.
type StatusSource = (sled::Iter, Option<sled::IVec>, bool);

enum Inner {
    /// Walks the cluster records and the local records side by side.
    All { records: Box<sled::Iter>, locals: Box<sled::Iter>, local: Option<(sled::IVec, LocalRecord)> },
    /// Merges the `q | status | created | cid` ranges of the selected statuses, oldest first.
    ByStatus { db: sled::Db, filter: StatusSet, sources: Vec<StatusSource> },
}

impl std::fmt::Debug for ClusterPins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPins").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClusterSummaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSummaries").finish_non_exhaustive()
    }
}

impl ClusterPins {
    pub(crate) fn new(db: &sled::Db, filter: StatusSet) -> ClusterPins {
        ClusterPins { records: Records::new(db, filter) }
    }
}

impl Iterator for ClusterPins {
    type Item = Result<ClusterPin, StateError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.records.next()?.map(|(_, pin)| pin))
    }
}

impl ClusterSummaries {
    pub(crate) fn new(db: &sled::Db, filter: StatusSet) -> ClusterSummaries {
        ClusterSummaries { records: Records::new(db, filter) }
    }
}

impl Iterator for ClusterSummaries {
    type Item = Result<ClusterSummary, StateError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.records.next()?.map(|(rec, pin)| ClusterSummary { pin, representative: rec.first }))
    }
}

impl Records {
    pub(crate) fn new(db: &sled::Db, filter: StatusSet) -> Records {
        let inner = if filter.is_all() {
            Inner::All {
                records: Box::new(db.scan_prefix([Tag::Cluster as u8])),
                locals: Box::new(db.scan_prefix([Tag::Local as u8])),
                local: None,
            }
        } else {
            let sources = filter
                .iter()
                .map(|status| (db.scan_prefix(keys::cluster_status_prefix(status)), None, false))
                .collect();
            Inner::ByStatus { db: db.clone(), filter, sources }
        };
        Records { inner }
    }
}

impl Iterator for Records {
    type Item = Result<(ClusterRecord, ClusterPin), StateError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::All { records, locals, local } => {
                let (key, value) = match records.next()? {
                    Ok(entry) => entry,
                    Err(error) => return Some(Err(error.into())),
                };
                let Some(cid) = key.get(1..).and_then(keys::decode_cid) else {
                    return Some(Err(StateError::Corrupt {
                        key: keys::display(&key),
                        reason: "malformed CID in key".into(),
                    }));
                };
                let rec = match records::decode_cluster(&key, cid, &value) {
                    Ok(rec) => rec,
                    Err(error) => return Some(Err(error)),
                };
                // Both keyspaces are in CID byte order: advance the local
                // records up to this CID. A CID without one is still `queued`.
                let wanted = key.get(1..).unwrap_or_default();
                loop {
                    if let Some((at, _)) = local {
                        if at.get(1..).unwrap_or_default() >= wanted {
                            break;
                        }
                    }
                    match locals.next() {
                        None => {
                            *local = None;
                            break;
                        }
                        Some(Err(error)) => return Some(Err(error.into())),
                        Some(Ok((at, value))) => match records::decode_local(&at, &value) {
                            Ok(found) => *local = Some((at, found)),
                            Err(error) => return Some(Err(error)),
                        },
                    }
                }
                let pin = match local {
                    Some((at, found)) if at.get(1..) == Some(wanted) => rec.joined(found),
                    _ => rec.joined(&LocalRecord::fresh(rec.created)),
                };
                Some(Ok((rec, pin)))
            }
            Inner::ByStatus { db, filter, sources } => loop {
                for (iter, head, done) in sources.iter_mut() {
                    if head.is_none() && !*done {
                        match iter.next() {
                            Some(Ok((key, _))) => *head = Some(key),
                            Some(Err(error)) => return Some(Err(error.into())),
                            None => *done = true,
                        }
                    }
                }
                // Keys are `q | status | created | cid`: compare from `created` on.
                let (_, head, _) = sources.iter_mut().filter(|(_, head, _)| head.is_some()).min_by(|a, b| {
                    let ka = a.1.as_ref().and_then(|k| k.get(2..));
                    let kb = b.1.as_ref().and_then(|k| k.get(2..));
                    ka.cmp(&kb)
                })?;
                let key = head.take()?;
                let Some((_, _, cid)) = keys::split_cluster_status(&key) else {
                    return Some(Err(StateError::Corrupt {
                        key: keys::display(&key),
                        reason: "malformed status index key".into(),
                    }));
                };
                match read::joined(db, &cid) {
                    // Removed, or moved to another status, since the index entry was read.
                    Ok(None) => continue,
                    Ok(Some((_, pin))) if !filter.contains(pin.status) => continue,
                    Ok(Some(found)) => return Some(Ok(found)),
                    Err(error) => return Some(Err(error)),
                }
            },
        }
    }
}
