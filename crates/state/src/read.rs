//! Point reads shared by the public read methods and the query engine; read
//! [`view`] first. Reads go straight to sled and never wait for the writer.

use pincluster_model::{Cid, PinView, Timestamp, UserName};

use crate::keys;
use crate::records::{self, ClusterRecord};
use crate::StateError;

pub(crate) fn cluster(db: &sled::Db, cid: &Cid) -> Result<Option<ClusterRecord>, StateError> {
    let key = keys::cluster(cid);
    db.get(&key)?.map(|bytes| records::decode_cluster(&key, *cid, &bytes)).transpose()
}

/// The `created` of the user's pin of `cid`, when the user holds it: the
/// cluster record lists every holder.
pub(crate) fn created(db: &sled::Db, user: &UserName, cid: &Cid) -> Result<Option<Timestamp>, StateError> {
    Ok(cluster(db, cid)?.and_then(|rec| rec.holder(user)))
}

/// The listing record of the user's pin created at `created`; `None` when
/// absent or when it is not the pin of `cid` (both only after a concurrent write).
pub(crate) fn listing(
    db: &sled::Db,
    user: &UserName,
    created: Timestamp,
    cid: Option<&Cid>,
) -> Result<Option<PinView>, StateError> {
    let key = keys::record(user, created)?;
    let Some(bytes) = db.get(&key)? else {
        return Ok(None);
    };
    let view = records::decode_listing(&key, &bytes)?;
    Ok(cid.is_none_or(|cid| view.user.cid == *cid).then_some(view))
}

/// A user's pin with its cluster status; `None` when the user does not hold `cid`.
pub(crate) fn view(db: &sled::Db, user: &UserName, cid: &Cid) -> Result<Option<PinView>, StateError> {
    let Some(created) = created(db, user, cid)? else {
        return Ok(None);
    };
    // Between the two reads the pin may have been removed (then `None`).
    listing(db, user, created, Some(cid))
}

/// A counter's value; missing counters are zero.
pub(crate) fn counter(db: &sled::Db, key: &[u8]) -> Result<u64, StateError> {
    match db.get(key)? {
        None => Ok(0),
        Some(bytes) => keys::decode_u64(&bytes)
            .ok_or_else(|| StateError::Corrupt { key: keys::display(key), reason: "counter is not 8 bytes".into() }),
    }
}
