//! Stored forms of the pinset's records, each behind a leading format-version
//! byte; read [`ClusterRecord`], [`LocalRecord`] and [`encode_listing`] first.
//!
//! These structs are private to the crate and independent of `pincluster-model`,
//! so the domain types can change without changing what is on disk. A new
//! format adds a new struct and a new version byte; decoding keeps reading the
//! old ones.
//!
//! Schema 4 split what schema 3 kept in one cluster record (format 3, still
//! decoded, for the migration) into the shared record (format 4: options,
//! allocations, holders; the same on every peer) and this peer's local record
//! (format 1: status, error, attempts, progress). Schema 5's shared record
//! (format 5) adds each peer's reported status and their summary, the status
//! listings go by; formats 3 and 4 are read by the migration only. Listing
//! records join both: format 4 adds the summary to format 3, which adds the
//! allocations to format 2 (both still read: their summary is the status
//! they are filed under, this peer's own, as schema 4 listed them).

use std::collections::BTreeMap;

use pincluster_model::{
    summarize, Cid, ClusterPin, Multiaddr, PeerPin, PinMode, PinOptions, PinStatus, PinView, Progress, Timestamp,
    UserName, UserPin,
};
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::StateError;

/// Listing records of schema 3, still read.
const LISTING_V2: u8 = 2;
/// Listing records of schema 4, still read.
const LISTING_V3: u8 = 3;
/// Listing records written by schema 5.
const LISTING_V4: u8 = 4;
/// Cluster records of schema 3, read by the migration only.
const CLUSTER_V3: u8 = 3;
/// Shared cluster records of schema 4, read by the migration only.
const CLUSTER_V4: u8 = 4;
/// Shared cluster records of schema 5.
const CLUSTER_V5: u8 = 5;
/// Local records of schema 4.
const LOCAL_V1: u8 = 1;

/// A user's pin object with a copy of its cluster pin, as stored under
/// `s | user | status | !created` (format 2).
#[derive(Serialize, Deserialize)]
struct ListingRecordV2 {
    cid: Vec<u8>,
    user: UserRecordV2,
    cluster: ClusterPinV2,
}

/// Format 3: format 2 with the allocations of the cluster pin.
#[derive(Serialize, Deserialize)]
struct ListingRecordV3 {
    cid: Vec<u8>,
    user: UserRecordV2,
    cluster: ClusterPinV2,
    allocations: Vec<String>,
}

/// Format 4: format 3 with the summary of the peers' statuses.
#[derive(Serialize, Deserialize)]
struct ListingRecordV4 {
    cid: Vec<u8>,
    user: UserRecordV2,
    cluster: ClusterPinV2,
    allocations: Vec<String>,
    summary: u8,
    summary_error: Option<String>,
}

/// A user's own pin object (inside listing and cluster records).
#[derive(Serialize, Deserialize)]
struct UserRecordV2 {
    name: Option<String>,
    meta: Vec<(String, String)>,
    /// Multiaddrs in their binary form.
    origins: Vec<Vec<u8>>,
    created: u64,
}

/// Schema 3's cluster record under `c | cid` (format 3), shared and local in one.
#[derive(Serialize, Deserialize)]
struct ClusterRecordV3 {
    pin: ClusterPinV2,
    holders: Vec<(String, u64)>,
    first: Option<UserRecordV2>,
}

/// The shared cluster record under `c | cid` (format 4).
#[derive(Serialize, Deserialize)]
struct ClusterRecordV4 {
    options: OptionsV1,
    allocations: Vec<String>,
    created: u64,
    /// Every user holding the CID, in user-name byte order, with the
    /// `created` of their pin (which locates their listing record).
    holders: Vec<(String, u64)>,
    /// A copy of the pin object of the first holder; `None` only without holders.
    first: Option<UserRecordV2>,
}

/// The shared cluster record under `c | cid` (format 5).
#[derive(Serialize, Deserialize)]
struct ClusterRecordV5 {
    options: OptionsV1,
    allocations: Vec<String>,
    created: u64,
    holders: Vec<(String, u64)>,
    first: Option<UserRecordV2>,
    /// Each allocated peer's reported status, in peer ID order.
    peers: Vec<PeerRecordV1>,
    /// Their summary (`summarize`), stored so that the listing records'
    /// status is read, never recomputed.
    summary: u8,
}

/// One peer's reported status of a CID, in the shared record and in the
/// command format alike.
#[derive(Serialize, Deserialize)]
pub(crate) struct PeerRecordV1 {
    pub(crate) peer: String,
    pub(crate) status: u8,
    pub(crate) error: Option<String>,
    pub(crate) updated: u64,
}

/// A pin's options, in the stored records and in the command format alike
/// (a change to either needs a new version of both).
#[derive(Serialize, Deserialize)]
pub(crate) struct OptionsV1 {
    mode: u8,
    replication_min: i32,
    replication_max: i32,
    user_allocations: Vec<String>,
    expire_at: Option<u64>,
}

/// This peer's record of a CID under `l | cid` (format 1).
#[derive(Serialize, Deserialize)]
struct LocalRecordV1 {
    status: u8,
    error: Option<String>,
    attempts: u32,
    blocks: u64,
    bytes: u64,
    dag_size: Option<u64>,
    updated: u64,
}

/// The joined cluster pin inside listing records (and schema 3's cluster records).
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

/// The shared record of a CID: identical on every peer that applied the same commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClusterRecord {
    pub(crate) cid: Cid,
    pub(crate) options: PinOptions,
    pub(crate) allocations: Vec<String>,
    /// The proposer's time of the command that created it.
    pub(crate) created: Timestamp,
    /// Every holder with the `created` of their pin, in user-name byte order.
    pub(crate) holders: Vec<(UserName, Timestamp)>,
    /// The first holder with a copy of their pin object. The writer keeps it
    /// equal to that holder's listing record (see `Staged::put_cluster`);
    /// decoding checks that it belongs to the first holder.
    pub(crate) first: Option<(UserName, UserPin)>,
    /// Each allocated peer's reported status, in peer ID order.
    pub(crate) peers: Vec<PeerPin>,
    /// The summary of `peers`: the status the holders' listing records are filed under.
    pub(crate) summary: PinStatus,
}

/// This peer's record of a CID: what its node did about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LocalRecord {
    pub(crate) status: PinStatus,
    pub(crate) error: Option<String>,
    pub(crate) attempts: u32,
    pub(crate) progress: Progress,
    pub(crate) dag_size: Option<u64>,
    pub(crate) updated: Timestamp,
}

impl LocalRecord {
    /// The local record of a CID the tracker has not touched yet.
    pub(crate) fn fresh(created: Timestamp) -> LocalRecord {
        LocalRecord {
            status: PinStatus::Queued,
            error: None,
            attempts: 0,
            progress: Progress::default(),
            dag_size: None,
            updated: created,
        }
    }
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

    /// The summary of the peers' statuses, and the error that goes with it.
    pub(crate) fn summarize(&self) -> (PinStatus, Option<String>) {
        summarize(&self.options, &self.allocations, &self.peers)
    }

    /// The cluster pin as the APIs show it: this record joined with the local one.
    pub(crate) fn joined(&self, local: &LocalRecord) -> ClusterPin {
        ClusterPin {
            cid: self.cid,
            options: self.options.clone(),
            allocations: self.allocations.clone(),
            status: local.status,
            error: local.error.clone(),
            attempts: local.attempts,
            progress: local.progress,
            dag_size: local.dag_size,
            created: self.created,
            updated: local.updated,
            summary: self.summary,
            summary_error: self.summarize().1,
            peers: self.peers.clone(),
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

fn body<'a, T: Deserialize<'a>>(key: &[u8], body: &'a [u8]) -> Result<T, StateError> {
    postcard::from_bytes(body).map_err(|e| corrupt(key, e.to_string()))
}

/// Encodes a user's pin together with a copy of its joined cluster pin.
pub(crate) fn encode_listing(pin: &UserPin, cluster: &ClusterPin) -> Result<Vec<u8>, StateError> {
    with_version(
        LISTING_V4,
        &ListingRecordV4 {
            cid: pin.cid.to_bytes(),
            user: user_v2(pin),
            cluster: pin_v2(cluster),
            allocations: cluster.allocations.clone(),
            summary: cluster.summary.code(),
            summary_error: cluster.summary_error.clone(),
        },
    )
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
/// pin; `key` is only used in the error.
pub(crate) fn decode_listing(key: &[u8], bytes: &[u8]) -> Result<PinView, StateError> {
    let (&version, rest) = bytes.split_first().ok_or_else(|| corrupt(key, "empty record"))?;
    let (cid, user, cluster, allocations, summary) = match version {
        LISTING_V2 => {
            let rec: ListingRecordV2 = body(key, rest)?;
            (rec.cid, rec.user, rec.cluster, Vec::new(), None)
        }
        LISTING_V3 => {
            let rec: ListingRecordV3 = body(key, rest)?;
            (rec.cid, rec.user, rec.cluster, rec.allocations, None)
        }
        LISTING_V4 => {
            let rec: ListingRecordV4 = body(key, rest)?;
            (rec.cid, rec.user, rec.cluster, rec.allocations, Some((rec.summary, rec.summary_error)))
        }
        other => return Err(corrupt(key, format!("unknown listing record format {other}"))),
    };
    let cid = keys::decode_cid(&cid).ok_or_else(|| corrupt(key, "malformed CID"))?;
    let user = user_from_v2(key, cid, user)?;
    let mut cluster = pin_from_v2(key, cid, cluster)?;
    cluster.allocations = allocations;
    (cluster.summary, cluster.summary_error) = match summary {
        Some((code, error)) => (status_from(key, code)?, error),
        // Filed under this peer's own status, as schema 4 listed them.
        None => (cluster.status, None),
    };
    Ok(PinView { user, cluster })
}

fn mode_code(mode: PinMode) -> u8 {
    match mode {
        PinMode::Recursive => 0,
        PinMode::Direct => 1,
    }
}

fn mode_from(key: &[u8], code: u8) -> Result<PinMode, StateError> {
    match code {
        0 => Ok(PinMode::Recursive),
        1 => Ok(PinMode::Direct),
        other => Err(corrupt(key, format!("unknown pin mode {other}"))),
    }
}

fn status_from(key: &[u8], code: u8) -> Result<PinStatus, StateError> {
    PinStatus::from_code(code).ok_or_else(|| corrupt(key, format!("unknown status {code}")))
}

pub(crate) fn options_v1(options: &PinOptions) -> OptionsV1 {
    OptionsV1 {
        mode: mode_code(options.mode),
        replication_min: options.replication_min,
        replication_max: options.replication_max,
        user_allocations: options.user_allocations.clone(),
        expire_at: options.expire_at.map(|t| t.0),
    }
}

pub(crate) fn options_from_v1(key: &[u8], options: OptionsV1) -> Result<PinOptions, StateError> {
    Ok(PinOptions {
        mode: mode_from(key, options.mode)?,
        replication_min: options.replication_min,
        replication_max: options.replication_max,
        user_allocations: options.user_allocations,
        expire_at: options.expire_at.map(Timestamp),
    })
}

/// Encodes a shared cluster record (its CID lives in the key).
pub(crate) fn encode_cluster(rec: &ClusterRecord) -> Result<Vec<u8>, StateError> {
    with_version(
        CLUSTER_V5,
        &ClusterRecordV5 {
            options: options_v1(&rec.options),
            allocations: rec.allocations.clone(),
            created: rec.created.0,
            holders: rec.holders.iter().map(|(user, created)| (user.as_str().to_owned(), created.0)).collect(),
            first: rec.first.as_ref().map(|(_, pin)| user_v2(pin)),
            peers: rec.peers.iter().map(peer_v1).collect(),
            summary: rec.summary.code(),
        },
    )
}

pub(crate) fn peer_v1(peer: &PeerPin) -> PeerRecordV1 {
    PeerRecordV1 {
        peer: peer.peer.clone(),
        status: peer.status.code(),
        error: peer.error.clone(),
        updated: peer.updated.0,
    }
}

pub(crate) fn peer_from_v1(key: &[u8], peer: PeerRecordV1) -> Result<PeerPin, StateError> {
    Ok(PeerPin {
        peer: peer.peer,
        status: status_from(key, peer.status)?,
        error: peer.error,
        updated: Timestamp(peer.updated),
    })
}

/// A decoded `c | cid` record: schema 5's shared record, or an older one
/// (only before the migration): schema 4's, whose summary was this peer's
/// local status, or schema 3's, with the local part it still carried.
pub(crate) enum StoredCluster {
    Shared(ClusterRecord),
    Schema4(ClusterRecord),
    Legacy(ClusterRecord, LocalRecord),
}

impl StoredCluster {
    pub(crate) fn record(&self) -> &ClusterRecord {
        match self {
            StoredCluster::Shared(rec) | StoredCluster::Schema4(rec) | StoredCluster::Legacy(rec, _) => rec,
        }
    }
}

/// Decodes a schema-5 cluster record; an older one is reported as corrupt
/// (the migration converts them all before the pinset opens).
pub(crate) fn decode_cluster(key: &[u8], cid: Cid, bytes: &[u8]) -> Result<ClusterRecord, StateError> {
    match decode_any_cluster(key, cid, bytes)? {
        StoredCluster::Shared(rec) => Ok(rec),
        StoredCluster::Schema4(..) | StoredCluster::Legacy(..) => {
            Err(corrupt(key, "a cluster record of an older schema in a schema 5 pinset"))
        }
    }
}

/// Decodes a cluster record of either schema; `key` is only used in the error.
pub(crate) fn decode_any_cluster(key: &[u8], cid: Cid, bytes: &[u8]) -> Result<StoredCluster, StateError> {
    let (&version, rest) = bytes.split_first().ok_or_else(|| corrupt(key, "empty record"))?;
    let (rec, local) = match version {
        CLUSTER_V5 => {
            let rec: ClusterRecordV5 = body(key, rest)?;
            let options = options_from_v1(key, rec.options)?;
            let mut built =
                build_cluster(key, cid, options, rec.allocations, Timestamp(rec.created), rec.holders, rec.first)?;
            built.peers = rec.peers.into_iter().map(|p| peer_from_v1(key, p)).collect::<Result<_, _>>()?;
            built.summary = status_from(key, rec.summary)?;
            return Ok(StoredCluster::Shared(built));
        }
        CLUSTER_V4 => {
            let rec: ClusterRecordV4 = body(key, rest)?;
            let options = options_from_v1(key, rec.options)?;
            let built =
                build_cluster(key, cid, options, rec.allocations, Timestamp(rec.created), rec.holders, rec.first)?;
            return Ok(StoredCluster::Schema4(built));
        }
        CLUSTER_V3 => {
            let rec: ClusterRecordV3 = body(key, rest)?;
            let pin = pin_from_v2(key, cid, rec.pin)?;
            let local = LocalRecord {
                status: pin.status,
                error: pin.error,
                attempts: pin.attempts,
                progress: pin.progress,
                dag_size: pin.dag_size,
                updated: pin.updated,
            };
            (build_cluster(key, cid, pin.options, Vec::new(), pin.created, rec.holders, rec.first)?, Some(local))
        }
        other => return Err(corrupt(key, format!("unknown cluster record format {other}"))),
    };
    Ok(match local {
        None => StoredCluster::Schema4(rec),
        Some(local) => StoredCluster::Legacy(rec, local),
    })
}

fn build_cluster(
    key: &[u8],
    cid: Cid,
    options: PinOptions,
    allocations: Vec<String>,
    created: Timestamp,
    holders: Vec<(String, u64)>,
    first: Option<UserRecordV2>,
) -> Result<ClusterRecord, StateError> {
    let holders = holders
        .into_iter()
        .map(|(user, created)| {
            let user = UserName::new(user).map_err(|e| corrupt(key, format!("bad holder: {e}")))?;
            Ok((user, Timestamp(created)))
        })
        .collect::<Result<Vec<_>, StateError>>()?;
    if holders.windows(2).any(|w| matches!(w, [a, b] if a.0 >= b.0)) {
        return Err(corrupt(key, "holders are not in user-name order"));
    }
    let first = match (holders.first(), first) {
        (None, None) => None,
        (Some((user, created)), Some(first)) if first.created == created.0 => {
            Some((user.clone(), user_from_v2(key, cid, first)?))
        }
        _ => return Err(corrupt(key, "the copy of the first holder's pin does not match the holders")),
    };
    Ok(ClusterRecord {
        cid,
        options,
        allocations,
        created,
        holders,
        first,
        peers: Vec::new(),
        summary: PinStatus::Queued,
    })
}

/// Encodes this peer's local record of a CID.
pub(crate) fn encode_local(local: &LocalRecord) -> Result<Vec<u8>, StateError> {
    with_version(
        LOCAL_V1,
        &LocalRecordV1 {
            status: local.status.code(),
            error: local.error.clone(),
            attempts: local.attempts,
            blocks: local.progress.blocks,
            bytes: local.progress.bytes,
            dag_size: local.dag_size,
            updated: local.updated.0,
        },
    )
}

/// Decodes this peer's local record; `key` is only used in the error.
pub(crate) fn decode_local(key: &[u8], bytes: &[u8]) -> Result<LocalRecord, StateError> {
    let (&version, rest) = bytes.split_first().ok_or_else(|| corrupt(key, "empty record"))?;
    match version {
        LOCAL_V1 => {
            let rec: LocalRecordV1 = body(key, rest)?;
            Ok(LocalRecord {
                status: status_from(key, rec.status)?,
                error: rec.error,
                attempts: rec.attempts,
                progress: Progress { blocks: rec.blocks, bytes: rec.bytes },
                dag_size: rec.dag_size,
                updated: Timestamp(rec.updated),
            })
        }
        other => Err(corrupt(key, format!("unknown local record format {other}"))),
    }
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

fn pin_from_v2(key: &[u8], cid: Cid, rec: ClusterPinV2) -> Result<ClusterPin, StateError> {
    Ok(ClusterPin {
        cid,
        options: PinOptions {
            mode: mode_from(key, rec.mode)?,
            replication_min: rec.replication_min,
            replication_max: rec.replication_max,
            user_allocations: rec.user_allocations,
            expire_at: rec.expire_at.map(Timestamp),
        },
        allocations: Vec::new(),
        status: status_from(key, rec.status)?,
        error: rec.error,
        attempts: rec.attempts,
        progress: Progress { blocks: rec.blocks, bytes: rec.bytes },
        dag_size: rec.dag_size,
        created: Timestamp(rec.created),
        updated: Timestamp(rec.updated),
        summary: PinStatus::Queued,
        summary_error: None,
        peers: Vec::new(),
    })
}
