//! Opening a database of any known schema: a new one is stamped, schemas 3
//! and 4 are migrated to schema 5, a newer one is refused. Read [`prepare`] first.
//!
//! From schema 4, each cluster record gains the (empty) list of the peers'
//! reported statuses and a summary equal to this peer's local status, which
//! its holders' listing records are filed under. From schema 3, the
//! migration also splits each cluster record into the shared record and
//! this peer's local record, rewrites its status index entry in the new
//! order, deletes schema 3's `r` keyspace and records each user's newest
//! `created`. It works in atomic batches of [`BATCH`] records and stamps the
//! schema last, so an interrupted migration simply runs again: records already
//! converted are recognised by their format and only counted.

use std::collections::HashMap;
use std::fs::File;

use pincluster_model::UserName;

use crate::keys::{self, Tag};
use crate::read;
use crate::records::{self, StoredCluster};
use crate::{StateError, SCHEMA_VERSION};

/// Records converted (or keys deleted) per atomic batch.
const BATCH: usize = 1000;

/// Writes the schema version into a new database, migrates a schema-3 one,
/// or checks the stored version.
pub(crate) fn prepare(db: &sled::Db, log_file: &File) -> Result<(), StateError> {
    let corrupt = |reason: &str| StateError::Corrupt { key: keys::display(keys::SCHEMA_KEY), reason: reason.into() };
    match db.get(keys::SCHEMA_KEY)? {
        Some(bytes) => {
            let raw: [u8; 4] = bytes.as_ref().try_into().map_err(|_| corrupt("schema version is not 4 bytes"))?;
            match u32::from_be_bytes(raw) {
                SCHEMA_VERSION => Ok(()),
                found @ (3 | 4) => migrate(db, log_file, found),
                found if found > SCHEMA_VERSION => Err(StateError::NewerSchema { found, supported: SCHEMA_VERSION }),
                found => Err(corrupt(&format!(
                    "schema version {found} only existed in development builds and is not migrated; \
                     move the pinset folder away to start afresh"
                ))),
            }
        }
        None if db.is_empty() => {
            db.insert(keys::SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            durable(db, log_file)
        }
        None => Err(corrupt("the database has data but no schema version")),
    }
}

fn durable(db: &sled::Db, log_file: &File) -> Result<(), StateError> {
    db.flush()?;
    log_file.sync_data().map_err(|e| StateError::from(sled::Error::Io(e)))
}

/// The next up to [`BATCH`] entries of the keyspace `tag`, from `from` on.
fn next_entries(db: &sled::Db, tag: Tag, from: &[u8]) -> Result<Vec<(sled::IVec, sled::IVec)>, StateError> {
    let mut out = Vec::with_capacity(BATCH);
    for item in db.range(from.to_vec()..).take(BATCH) {
        let (key, value) = item?;
        if key.first() != Some(&(tag as u8)) {
            break;
        }
        out.push((key, value));
    }
    Ok(out)
}

/// The smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

fn migrate(db: &sled::Db, log_file: &File, from_schema: u32) -> Result<(), StateError> {
    tracing::info!("migrating the pinset from schema {from_schema} to schema {SCHEMA_VERSION}");
    let mut newest: HashMap<UserName, u64> = HashMap::new();
    let (mut converted, mut seen) = (0u64, 0u64);
    let mut from = vec![Tag::Cluster as u8];
    loop {
        let entries = next_entries(db, Tag::Cluster, &from)?;
        let Some((last, _)) = entries.last() else { break };
        from = successor(last);
        let mut batch = sled::Batch::default();
        for (key, value) in &entries {
            let cid = key.get(1..).and_then(keys::decode_cid).ok_or_else(|| StateError::Corrupt {
                key: keys::display(key),
                reason: "malformed CID in key".into(),
            })?;
            let stored = records::decode_any_cluster(key, cid, value)?;
            for (user, created) in &stored.record().holders {
                let slot = newest.entry(user.clone()).or_default();
                *slot = (*slot).max(created.0);
            }
            seen += 1;
            let (mut rec, summary) = match stored {
                StoredCluster::Shared(_) => continue,
                StoredCluster::Schema4(rec) => (rec, read::local_status(db, &cid)?),
                StoredCluster::Legacy(rec, local) => {
                    batch.insert(keys::local(&cid), records::encode_local(&local)?);
                    batch.remove(keys::legacy_cluster_status(local.status, &cid));
                    batch.insert(keys::cluster_status(local.status, rec.created, &cid), Vec::new());
                    (rec, local.status)
                }
            };
            // Filed under this peer's status so far; peers report theirs from now on.
            rec.summary = summary;
            batch.insert(key.as_ref(), records::encode_cluster(&rec)?);
            converted += 1;
        }
        db.apply_batch(batch)?;
    }
    let mut batch = sled::Batch::default();
    for (user, created) in &newest {
        let key = keys::newest(user)?;
        let stored = db.get(&key)?.and_then(|v| keys::decode_u64(&v)).unwrap_or(0);
        batch.insert(key, keys::encode_u64(stored.max(*created)).to_vec());
    }
    db.apply_batch(batch)?;
    let mut deleted = 0u64;
    loop {
        let entries = next_entries(db, Tag::LegacyRecord, &[Tag::LegacyRecord as u8])?;
        if entries.is_empty() {
            break;
        }
        let mut batch = sled::Batch::default();
        for (key, _) in &entries {
            batch.remove(key.as_ref());
        }
        deleted += entries.len() as u64;
        db.apply_batch(batch)?;
    }
    db.insert(keys::SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
    durable(db, log_file)?;
    tracing::info!(cluster_pins = seen, converted, legacy_records_deleted = deleted, "pinset migrated to schema 5");
    Ok(())
}
