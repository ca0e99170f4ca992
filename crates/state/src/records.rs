//! Stored forms of the domain types, each behind a leading format-version
//! byte; read [`encode_listing`] and [`ClusterRecord`] first.
//!
//! These structs are private to the crate and independent of `pincluster-model`,
//! so the domain types can change without changing what is on disk. A new
//! format adds a new struct and a new version byte; decoding keeps reading the
//! old ones. Format 2 (schema 2) moved the holders of a CID into its cluster
//! record; format 1 only existed in development databases of schema 1, which
//! this build refuses to open. Cluster record format 3 (schema 3) adds a copy
//! of the first holder's pin object, so that streaming cluster pins with their
//! representative holder is one sequential scan; cluster records of format 2
//! only existed in schema 2 databases, which this build refuses to open too.
//! Listing records are still format 2.

use std::collections::BTreeMap;

use pincluster_model::{
    Cid, ClusterPin, Multiaddr, PinMode, PinOptions, PinStatus, PinView, Progress, Timestamp, UserName, UserPin,
};
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::StateError;

/// The format version written for listing records.
const FORMAT_V2: u8 = 2;
/// The format version written for cluster records.
const FORMAT_V3: u8 = 3;

/// A user's pin object with a copy of its cluster record, as stored under
/// `r | user | !created` and `s | user | status | !created` (format 2):
/// everything a listing shows.
#[derive(Serialize, Deserialize)]
struct ListingRecordV2 {
    cid: Vec<u8>,
    user: UserRecordV2,
    cluster: ClusterPinV2,
}

/// A user's own pin object (inside a listing record).
#[derive(Serialize, Deserialize)]
struct UserRecordV2 {
    name: Option<String>,
    meta: Vec<(String, String)>,
    /// Multiaddrs in their binary form.
    origins: Vec<Vec<u8>>,
    created: u64,
}

/// The cluster record of a CID as stored under `c | cid` (format 3).
#[derive(Serialize, Deserialize)]
struct ClusterRecordV3 {
    pin: ClusterPinV2,
    /// Every user holding the CID, in user-name byte order, with the
    /// `created` of their pin (which locates their listing record).
    holders: Vec<(String, u64)>,
    /// A copy of the pin object of the first holder (`holders[0]`); `None`
    /// only when there are no holders.
    first: Option<UserRecordV2>,
}

/// The cluster pin itself: in the cluster record, and copied into listing records.
#[derive(Serialize, Deserialize)]
struct ClusterPinV2 {
    mode: u8,
    replication_min: i32,
    replication_max: i32,
    user_allocations: Vec<String>,
    expire_at: Option<u64>,
    status: u8,
    error: Option<String>,
    attempts: u32,
    blocks: u64,
    bytes: u64,
    dag_size: Option<u64>,
    created: u64,
    updated: u64,
}

/// The cluster pin together with the users who hold it.
#[derive(Clone, Debug)]
pub(crate) struct ClusterRecord {
    pub(crate) pin: ClusterPin,
    /// Every holder with the `created` of their pin, in user-name byte order.
    pub(crate) holders: Vec<(UserName, Timestamp)>,
    /// The first holder with a copy of their pin object. The writer keeps it
    /// equal to that holder's listing record (see `Staged::put_cluster`);
    /// decoding checks that it belongs to the first holder.
    pub(crate) first: Option<(UserName, UserPin)>,
}

impl ClusterRecord {
    /// True when `first` is the pin of the first holder (or both are absent).
    /// Only the pin object itself can be stale then, which the writer updates
    /// whenever it writes that holder's pin.
    pub(crate) fn first_is_current(&self) -> bool {
        match (self.holders.first(), &self.first) {
            (None, None) => true,
            (Some((user, created)), Some((first, pin))) => user == first && pin.created == *created,
            _ => false,
        }
    }

    /// The `created` of `user`'s pin of this CID, when `user` holds it.
    pub(crate) fn holder(&self, user: &UserName) -> Option<Timestamp> {
        self.holders.binary_search_by(|(u, _)| u.cmp(user)).ok().and_then(|i| self.holders.get(i)).map(|(_, t)| *t)
    }

    /// Adds (or moves) `user`'s holder entry.
    pub(crate) fn add_holder(&mut self, user: &UserName, created: Timestamp) {
        match self.holders.binary_search_by(|(u, _)| u.cmp(user)) {
            Ok(i) => {
                if let Some(entry) = self.holders.get_mut(i) {
                    entry.1 = created;
                }
            }
            Err(i) => self.holders.insert(i, (user.clone(), created)),
        }
    }

    /// Removes `user`'s holder entry, if any.
    pub(crate) fn remove_holder(&mut self, user: &UserName) {
        if let Ok(i) = self.holders.binary_search_by(|(u, _)| u.cmp(user)) {
            self.holders.remove(i);
        }
    }
}

fn corrupt(key: &[u8], reason: impl Into<String>) -> StateError {
    StateError::Corrupt { key: keys::display(key), reason: reason.into() }
}

fn with_version<T: Serialize>(version: u8, record: &T) -> Result<Vec<u8>, StateError> {
    let mut bytes = Vec::with_capacity(160);
    bytes.push(version);
    postcard::to_extend(record, bytes).map_err(|e| StateError::Encode(e.to_string()))
}

/// Encodes a user's pin together with a copy of its cluster record.
pub(crate) fn encode_listing(pin: &UserPin, cluster: &ClusterPin) -> Result<Vec<u8>, StateError> {
    with_version(FORMAT_V2, &ListingRecordV2 { cid: pin.cid.to_bytes(), user: user_v2(pin), cluster: pin_v2(cluster) })
}

fn user_v2(pin: &UserPin) -> UserRecordV2 {
    UserRecordV2 {
        name: pin.name.clone(),
        meta: pin.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        origins: pin.origins.iter().map(|a| a.to_vec()).collect(),
        created: pin.created.0,
    }
}

/// The user's pin object of `cid` from its stored form.
fn user_from_v2(key: &[u8], cid: Cid, rec: UserRecordV2) -> Result<UserPin, StateError> {
    let origins = rec
        .origins
        .into_iter()
        .map(Multiaddr::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(key, format!("bad origin: {e}")))?;
    Ok(UserPin {
        cid,
        name: rec.name,
        meta: rec.meta.into_iter().collect::<BTreeMap<_, _>>(),
        origins,
        created: Timestamp(rec.created),
    })
}

/// Decodes a listing record into the user's pin and the copy of its cluster
/// record; `key` is only used in the error.
pub(crate) fn decode_listing(key: &[u8], bytes: &[u8]) -> Result<PinView, StateError> {
    let (&version, body) = bytes.split_first().ok_or_else(|| corrupt(key, "empty record"))?;
    match version {
        FORMAT_V2 => {
            let rec: ListingRecordV2 = postcard::from_bytes(body).map_err(|e| corrupt(key, e.to_string()))?;
            let cid = keys::decode_cid(&rec.cid).ok_or_else(|| corrupt(key, "malformed CID"))?;
            let user = user_from_v2(key, cid, rec.user)?;
            let cluster = pin_from_v2(key, cid, rec.cluster)?;
            Ok(PinView { user, cluster })
        }
        other => Err(corrupt(key, format!("unknown listing record format {other}"))),
    }
}

fn mode_code(mode: PinMode) -> u8 {
    match mode {
        PinMode::Recursive => 0,
        PinMode::Direct => 1,
    }
}

/// Encodes a cluster record (its CID lives in the key).
pub(crate) fn encode_cluster(rec: &ClusterRecord) -> Result<Vec<u8>, StateError> {
    with_version(
        FORMAT_V3,
        &ClusterRecordV3 {
            pin: pin_v2(&rec.pin),
            holders: rec.holders.iter().map(|(user, created)| (user.as_str().to_owned(), created.0)).collect(),
            first: rec.first.as_ref().map(|(_, pin)| user_v2(pin)),
        },
    )
}

fn pin_v2(pin: &ClusterPin) -> ClusterPinV2 {
    ClusterPinV2 {
        mode: mode_code(pin.options.mode),
        replication_min: pin.options.replication_min,
        replication_max: pin.options.replication_max,
        user_allocations: pin.options.user_allocations.clone(),
        expire_at: pin.options.expire_at.map(|t| t.0),
        status: pin.status.code(),
        error: pin.error.clone(),
        attempts: pin.attempts,
        blocks: pin.progress.blocks,
        bytes: pin.progress.bytes,
        dag_size: pin.dag_size,
        created: pin.created.0,
        updated: pin.updated.0,
    }
}

/// Decodes a cluster record; `key` is only used in the error.
pub(crate) fn decode_cluster(key: &[u8], cid: Cid, bytes: &[u8]) -> Result<ClusterRecord, StateError> {
    let (&version, body) = bytes.split_first().ok_or_else(|| corrupt(key, "empty record"))?;
    match version {
        FORMAT_V3 => {
            let rec: ClusterRecordV3 = postcard::from_bytes(body).map_err(|e| corrupt(key, e.to_string()))?;
            let pin = pin_from_v2(key, cid, rec.pin)?;
            let holders = rec
                .holders
                .into_iter()
                .map(|(user, created)| {
                    let user = UserName::new(user).map_err(|e| corrupt(key, format!("bad holder: {e}")))?;
                    Ok((user, Timestamp(created)))
                })
                .collect::<Result<Vec<_>, StateError>>()?;
            if holders.windows(2).any(|w| matches!(w, [a, b] if a.0 >= b.0)) {
                return Err(corrupt(key, "holders are not in user-name order"));
            }
            let first = match (holders.first(), rec.first) {
                (None, None) => None,
                (Some((user, created)), Some(first)) if first.created == created.0 => {
                    Some((user.clone(), user_from_v2(key, cid, first)?))
                }
                _ => return Err(corrupt(key, "the copy of the first holder's pin does not match the holders")),
            };
            Ok(ClusterRecord { pin, holders, first })
        }
        other => Err(corrupt(key, format!("unknown cluster record format {other}"))),
    }
}

fn pin_from_v2(key: &[u8], cid: Cid, rec: ClusterPinV2) -> Result<ClusterPin, StateError> {
    let mode = match rec.mode {
        0 => PinMode::Recursive,
        1 => PinMode::Direct,
        other => return Err(corrupt(key, format!("unknown pin mode {other}"))),
    };
    let status =
        PinStatus::from_code(rec.status).ok_or_else(|| corrupt(key, format!("unknown status {}", rec.status)))?;
    Ok(ClusterPin {
        cid,
        options: PinOptions {
            mode,
            replication_min: rec.replication_min,
            replication_max: rec.replication_max,
            user_allocations: rec.user_allocations,
            expire_at: rec.expire_at.map(Timestamp),
        },
        status,
        error: rec.error,
        attempts: rec.attempts,
        progress: Progress { blocks: rec.blocks, bytes: rec.bytes },
        dag_size: rec.dag_size,
        created: Timestamp(rec.created),
        updated: Timestamp(rec.updated),
    })
}
