//! Point reads shared by the public read methods and the query engine; read
//! [`view`] first. Reads go straight to sled and never wait for the writer.

use pincluster_model::{Cid, ClusterPin, PinStatus, PinView, Timestamp, UserName, UserPin};

use crate::keys;
use crate::records::{self, ClusterRecord, LocalRecord};
use crate::{ClusterEntry, StateError};

pub(crate) fn cluster(db: &sled::Db, cid: &Cid) -> Result<Option<ClusterRecord>, StateError> {
    let key = keys::cluster(cid);
    db.get(&key)?.map(|bytes| records::decode_cluster(&key, *cid, &bytes)).transpose()
}

/// This peer's record of `rec`'s CID; a fresh one (`queued`) when it has none yet.
pub(crate) fn local(db: &sled::Db, rec: &ClusterRecord) -> Result<LocalRecord, StateError> {
    let key = keys::local(&rec.cid);
    match db.get(&key)? {
        Some(bytes) => records::decode_local(&key, &bytes),
        None => Ok(LocalRecord::fresh(rec.created)),
    }
}

/// This peer's status of `cid` (`queued` without a local record).
pub(crate) fn local_status(db: &sled::Db, cid: &Cid) -> Result<PinStatus, StateError> {
    let key = keys::local(cid);
    match db.get(&key)? {
        Some(bytes) => Ok(records::decode_local(&key, &bytes)?.status),
        None => Ok(PinStatus::Queued),
    }
}

/// The joined cluster pin of `cid`, with its shared record.
pub(crate) fn joined(db: &sled::Db, cid: &Cid) -> Result<Option<(ClusterRecord, ClusterPin)>, StateError> {
    let Some(rec) = cluster(db, cid)? else {
        return Ok(None);
    };
    let pin = rec.joined(&local(db, &rec)?);
    Ok(Some((rec, pin)))
}

/// The listing record of the user's pin of `cid` created at `created`, looked
/// for in the `s` range of `status` first and then in the others (the status
/// may have moved since it was read); `None` when the user holds no such pin.
pub(crate) fn listing(
    db: &sled::Db,
    user: &UserName,
    status: PinStatus,
    created: Timestamp,
    cid: &Cid,
) -> Result<Option<PinView>, StateError> {
    let others = PinStatus::ALL.into_iter().filter(|s| *s != status);
    for status in std::iter::once(status).chain(others) {
        let key = keys::by_status(user, status, created)?;
        if let Some(bytes) = db.get(&key)? {
            let view = records::decode_listing(&key, &bytes)?;
            return Ok((view.user.cid == *cid).then_some(view));
        }
    }
    Ok(None)
}

/// The entry of a cluster record: its joined pin with every holder's pin
/// object (a holder removed since the record was read is left out).
pub(crate) fn entry(db: &sled::Db, rec: ClusterRecord, pin: ClusterPin) -> Result<ClusterEntry, StateError> {
    if let Some(only) = only_holder(&rec) {
        return Ok(ClusterEntry { pin, holders: vec![only] });
    }
    let mut holders = Vec::with_capacity(rec.holders.len());
    for (user, created) in rec.holders {
        if let Some(view) = listing(db, &user, pin.summary, created, &rec.cid)? {
            holders.push((user, view.user));
        }
    }
    Ok(ClusterEntry { pin, holders })
}

/// The holder of a CID that only one user holds, from the cluster record's
/// copy of their pin: most CIDs need no lookup of a listing record.
fn only_holder(rec: &ClusterRecord) -> Option<(UserName, UserPin)> {
    (rec.holders.len() == 1 && rec.first_is_current()).then(|| rec.first.clone()).flatten()
}

/// The shared half of `rec`'s entry (its local half fresh, as a new peer
/// starts), reading the holders' listing records through `get`, which sees
/// the state the record was read from (the tree, or the writer's overlay).
pub(crate) fn shared_entry(
    rec: ClusterRecord,
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StateError>,
) -> Result<ClusterEntry, StateError> {
    let pin = rec.joined(&LocalRecord::fresh(rec.created));
    if let Some(only) = only_holder(&rec) {
        return Ok(ClusterEntry { pin, holders: vec![only] });
    }
    let mut holders = Vec::with_capacity(rec.holders.len());
    for (user, created) in rec.holders {
        let key = keys::by_status(&user, rec.summary, created)?;
        let bytes = get(&key)?.ok_or_else(|| StateError::Corrupt {
            key: keys::display(&key),
            reason: "a holder has no listing record".into(),
        })?;
        holders.push((user, records::decode_listing(&key, &bytes)?.user));
    }
    Ok(ClusterEntry { pin, holders })
}

/// A user's pin with its cluster status; `None` when the user does not hold `cid`.
pub(crate) fn view(db: &sled::Db, user: &UserName, cid: &Cid) -> Result<Option<PinView>, StateError> {
    let Some((rec, pin)) = joined(db, cid)? else {
        return Ok(None);
    };
    let Some(created) = rec.holder(user) else {
        return Ok(None);
    };
    // Between the reads the pin may have been removed (then `None`).
    listing(db, user, pin.summary, created, cid)
}

/// A counter's value; missing counters are zero.
pub(crate) fn counter(db: &sled::Db, key: &[u8]) -> Result<u64, StateError> {
    match db.get(key)? {
        None => Ok(0),
        Some(bytes) => keys::decode_u64(&bytes)
            .ok_or_else(|| StateError::Corrupt { key: keys::display(key), reason: "counter is not 8 bytes".into() }),
    }
}
