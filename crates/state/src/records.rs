//! Stored forms of the domain types, each behind a leading format-version
//! byte; read [`encode_listing`] and [`ClusterRecord`] first.
//!
//! These structs are private to the crate and independent of `pincluster-model`,
//! so the domain types can change without changing what is on disk. A new
//! format adds a new struct and a new version byte; decoding keeps reading the
//! old ones.

use std::collections::BTreeMap;

use pincluster_model::{
    Cid, ClusterPin, Multiaddr, PinMode, PinOptions, PinStatus, PinView, Progress, Timestamp, UserPin,
};
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::StateError;

/// The format version written for both record kinds.
const FORMAT_V1: u8 = 1;

/// A user's pin object with a copy of its cluster record, as stored under
/// `t | user | created` (format 1): everything a listing shows, in time order.
#[derive(Serialize, Deserialize)]
struct ListingRecordV1 {
    cid: Vec<u8>,
    user: UserRecordV1,
    cluster: ClusterRecordV1,
}

/// A user's own pin object (inside a listing record).
#[derive(Serialize, Deserialize)]
struct UserRecordV1 {
    name: Option<String>,
    meta: Vec<(String, String)>,
    /// Multiaddrs in their binary form.
    origins: Vec<Vec<u8>>,
    created: u64,
}

/// The cluster record of a CID as stored under `c | cid` (format 1).
#[derive(Serialize, Deserialize)]
struct ClusterRecordV1 {
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
    /// How many users hold this CID (the number of `h | cid | *` keys).
    holders: u32,
}

/// The cluster pin together with its stored holder count.
#[derive(Clone, Debug)]
pub(crate) struct ClusterRecord {
    pub(crate) pin: ClusterPin,
    pub(crate) holders: u32,
}

fn corrupt(key: &[u8], reason: impl Into<String>) -> StateError {
    StateError::Corrupt { key: keys::display(key), reason: reason.into() }
}

fn with_version<T: Serialize>(record: &T) -> Result<Vec<u8>, StateError> {
    let mut bytes = vec![FORMAT_V1];
    let body = postcard::to_allocvec(record)
        .map_err(|e| StateError::Encode(e.to_string()))?;
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Encodes a user's pin together with a copy of its cluster record.
pub(crate) fn encode_listing(pin: &UserPin, cluster: &ClusterPin) -> Result<Vec<u8>, StateError> {
    with_version(&ListingRecordV1 {
        cid: pin.cid.to_bytes(),
        user: UserRecordV1 {
            name: pin.name.clone(),
            meta: pin.meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            origins: pin.origins.iter().map(|a| a.to_vec()).collect(),
            created: pin.created.0,
        },
        cluster: cluster_v1(&ClusterRecord { pin: cluster.clone(), holders: 0 }),
    })
}

/// Decodes a listing record into the user's pin and the copy of its cluster
/// record; `key` is only used in the error.
pub(crate) fn decode_listing(key: &[u8], bytes: &[u8]) -> Result<PinView, StateError> {
    let (&version, body) = bytes.split_first().ok_or_else(|| corrupt(key, "empty record"))?;
    match version {
        FORMAT_V1 => {
            let rec: ListingRecordV1 =
                postcard::from_bytes(body).map_err(|e| corrupt(key, e.to_string()))?;
            let cid = keys::decode_cid(&rec.cid).ok_or_else(|| corrupt(key, "malformed CID"))?;
            let origins = rec
                .user
                .origins
                .into_iter()
                .map(Multiaddr::try_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| corrupt(key, format!("bad origin: {e}")))?;
            let user = UserPin {
                cid,
                name: rec.user.name,
                meta: rec.user.meta.into_iter().collect::<BTreeMap<_, _>>(),
                origins,
                created: Timestamp(rec.user.created),
            };
            let cluster = cluster_from_v1(key, cid, rec.cluster)?.pin;
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
    with_version(&cluster_v1(rec))
}

fn cluster_v1(rec: &ClusterRecord) -> ClusterRecordV1 {
    let pin = &rec.pin;
    ClusterRecordV1 {
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
        holders: rec.holders,
    }
}

/// Decodes a cluster record; `key` is only used in the error.
pub(crate) fn decode_cluster(key: &[u8], cid: Cid, bytes: &[u8]) -> Result<ClusterRecord, StateError> {
    let (&version, body) = bytes.split_first().ok_or_else(|| corrupt(key, "empty record"))?;
    match version {
        FORMAT_V1 => {
            let rec: ClusterRecordV1 =
                postcard::from_bytes(body).map_err(|e| corrupt(key, e.to_string()))?;
            cluster_from_v1(key, cid, rec)
        }
        other => Err(corrupt(key, format!("unknown cluster record format {other}"))),
    }
}

fn cluster_from_v1(key: &[u8], cid: Cid, rec: ClusterRecordV1) -> Result<ClusterRecord, StateError> {
    let mode = match rec.mode {
        0 => PinMode::Recursive,
        1 => PinMode::Direct,
        other => return Err(corrupt(key, format!("unknown pin mode {other}"))),
    };
    let status = PinStatus::from_code(rec.status)
        .ok_or_else(|| corrupt(key, format!("unknown status {}", rec.status)))?;
    Ok(ClusterRecord {
        pin: ClusterPin {
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
        },
        holders: rec.holders,
    })
}
