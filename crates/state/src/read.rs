//! Point reads shared by the public read methods and the query engine; read
//! [`view`] first. Reads go straight to sled and never wait for the writer.

use pincluster_model::{Cid, PinView, UserName, UserPin};

use crate::keys;
use crate::records::{self, ClusterRecord};
use crate::StateError;

pub(crate) fn user_pin(db: &sled::Db, user: &UserName, cid: &Cid) -> Result<Option<UserPin>, StateError> {
    let key = keys::user_pin(user, cid)?;
    db.get(&key)?.map(|bytes| records::decode_user(&key, *cid, &bytes)).transpose()
}

pub(crate) fn cluster(db: &sled::Db, cid: &Cid) -> Result<Option<ClusterRecord>, StateError> {
    let key = keys::cluster(cid);
    db.get(&key)?.map(|bytes| records::decode_cluster(&key, *cid, &bytes)).transpose()
}

/// A user's pin with its cluster status; `None` when the user does not hold `cid`.
pub(crate) fn view(db: &sled::Db, user: &UserName, cid: &Cid) -> Result<Option<PinView>, StateError> {
    let Some(pin) = user_pin(db, user, cid)? else {
        return Ok(None);
    };
    match cluster(db, cid)? {
        Some(rec) => Ok(Some(PinView { user: pin, cluster: rec.pin })),
        // The user's pin was removed between the two reads, or the store is damaged.
        None => match user_pin(db, user, cid)? {
            None => Ok(None),
            Some(_) => Err(StateError::Corrupt {
                key: keys::display(&keys::cluster(cid)),
                reason: "a user holds this CID but it has no cluster record".into(),
            }),
        },
    }
}

/// A counter's value; missing counters are zero.
pub(crate) fn counter(db: &sled::Db, key: &[u8]) -> Result<u64, StateError> {
    match db.get(key)? {
        None => Ok(0),
        Some(bytes) => keys::decode_u64(&bytes).ok_or_else(|| StateError::Corrupt {
            key: keys::display(key),
            reason: "counter is not 8 bytes".into(),
        }),
    }
}
