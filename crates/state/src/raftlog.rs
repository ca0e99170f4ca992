//! The replicated log's own storage, beside the pinset in the same database:
//! entries by index, and a few named values (vote, purge point). Read
//! [`LogStore`] first.
//!
//! The consensus layer owns what the bytes mean; this crate only keeps them,
//! durably where it is asked to, so that sled stays behind this one crate.
//! Entries live in their own sled tree (`raft`): `e` + index (big-endian)
//! → entry, `m` + name → value.

use std::fs::File;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use crate::StateError;

const ENTRY: u8 = b'e';
const META: u8 = b'm';

/// The log store. Cheap to clone; clones share the tree. Every call blocks
/// on the disk: run it where blocking is allowed.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    tree: sled::Tree,
    /// sled's data file, fsynced after each durable write (sled's flush is
    /// only `sync_file_range`; see `writer.rs`).
    file: Arc<File>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

fn entry_key(index: u64) -> [u8; 9] {
    let mut key = [ENTRY; 9];
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut key = vec![META];
    key.extend_from_slice(name.as_bytes());
    key
}

fn index_of(key: &[u8]) -> Result<u64, StateError> {
    key.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StateError::Corrupt { key: "raft log".into(), reason: "short entry key".into() })
}

impl LogStore {
    pub(crate) fn open(db: &sled::Db, path: &Path) -> Result<LogStore, StateError> {
        let tree = db.open_tree("raft")?;
        let file = File::open(path.join("db")).map_err(|e| StateError::from(sled::Error::Io(e)))?;
        Ok(LogStore { db: db.clone(), tree, file: Arc::new(file) })
    }

    /// The entries whose index is in `range`, in order, stopping after
    /// `max_bytes` of entries (at least one is returned when any exists).
    pub fn entries(&self, range: impl RangeBounds<u64>, max_bytes: usize) -> Result<Vec<(u64, Vec<u8>)>, StateError> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(entry_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(entry_key(*i)),
            Bound::Unbounded => Bound::Included(entry_key(0)),
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(entry_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(entry_key(*i)),
            Bound::Unbounded => Bound::Included(entry_key(u64::MAX)),
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.tree.range::<[u8; 9], _>((start, end)) {
            let (key, value) = item?;
            if !out.is_empty() && bytes + value.len() > max_bytes {
                break;
            }
            bytes += value.len();
            out.push((index_of(&key)?, value.to_vec()));
        }
        Ok(out)
    }

    /// The last entry, if any.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StateError> {
        match self.tree.range(entry_key(0)..=entry_key(u64::MAX)).next_back() {
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((index_of(&key)?, value.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Appends `entries` (index, bytes) durably: on disk when this returns.
    pub fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        for (index, bytes) in entries {
            batch.insert(&entry_key(index), bytes);
        }
        self.tree.apply_batch(batch)?;
        self.sync()
    }

    /// Removes every entry from `index` on, durably.
    pub fn truncate(&self, index: u64) -> Result<(), StateError> {
        self.remove_range(entry_key(index)..=entry_key(u64::MAX), None)?;
        self.sync()
    }

    /// Removes every entry up to `index` included and stores `marker` under
    /// `name` in the same batch (the log's record of what it purged).
    /// Not fsynced: losing it only keeps entries longer.
    pub fn purge(&self, index: u64, name: &str, marker: Vec<u8>) -> Result<(), StateError> {
        self.remove_range(entry_key(0)..=entry_key(index), Some((meta_key(name), marker)))
    }

    fn remove_range(
        &self,
        range: std::ops::RangeInclusive<[u8; 9]>,
        put: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        for item in self.tree.range(range) {
            let (key, _) = item?;
            batch.remove(key);
        }
        if let Some((key, value)) = put {
            batch.insert(key, value);
        }
        Ok(self.tree.apply_batch(batch)?)
    }

    /// The value stored under `name`.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.tree.get(meta_key(name))?.map(|v| v.to_vec()))
    }

    /// Stores `value` under `name`; with `durable`, on disk when this returns.
    pub fn set(&self, name: &str, value: Vec<u8>, durable: bool) -> Result<(), StateError> {
        self.tree.insert(meta_key(name), value)?;
        if durable {
            self.sync()?;
        }
        Ok(())
    }

    /// Removes every entry and value, durably.
    pub fn clear(&self) -> Result<(), StateError> {
        self.tree.clear()?;
        self.sync()
    }

    fn sync(&self) -> Result<(), StateError> {
        self.db.flush()?;
        self.file.sync_data().map_err(|e| StateError::from(sled::Error::Io(e)))
    }
}
