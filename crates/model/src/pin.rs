//! Pins as the domain sees them: [`NewPin`] is a validated request, [`UserPin`]
//! a user's own pin object, [`ClusterPin`] the one peer-side record per CID.

use std::collections::BTreeMap;

use cid::Cid;
use multiaddr::Multiaddr;

use crate::{PinStatus, Timestamp};

/// The longest pin name, in characters (the spec's `maxLength: 255`).
pub const MAX_NAME_CHARS: usize = 255;
/// The most `meta` entries one pin may carry (the spec's `maxProperties: 1000`).
pub const MAX_META_ENTRIES: usize = 1000;
/// The longest `meta` key, in bytes.
pub const MAX_META_KEY_BYTES: usize = 255;
/// The longest `meta` value, in bytes.
pub const MAX_META_VALUE_BYTES: usize = 4096;
/// The most origins one pin may list (the spec's `maxItems: 20`).
pub const MAX_ORIGINS: usize = 20;
/// The longest user name, in bytes; user names are parts of storage keys.
const MAX_USER_BYTES: usize = 255;

/// Why a value was refused; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("name is longer than {MAX_NAME_CHARS} characters")]
    NameTooLong,
    #[error("meta has more than {MAX_META_ENTRIES} entries")]
    TooManyMeta,
    #[error("meta key is longer than {MAX_META_KEY_BYTES} bytes")]
    BadMetaKey,
    #[error("meta value for key {0:?} is longer than {MAX_META_VALUE_BYTES} bytes")]
    MetaValueTooLong(String),
    #[error("origins has more than {MAX_ORIGINS} entries")]
    TooManyOrigins,
    #[error("user name is empty, longer than {MAX_USER_BYTES} bytes or contains a control character")]
    BadUserName,
}

/// An authenticated user's name: non-empty, at most 255 bytes, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

impl UserName {
    pub fn new(name: impl Into<String>) -> Result<UserName, ValidationError> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_USER_BYTES || name.chars().any(char::is_control) {
            return Err(ValidationError::BadUserName);
        }
        Ok(UserName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How much of a DAG a pin keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PinMode {
    /// The root and every block reachable from it.
    #[default]
    Recursive,
    /// The root block only.
    Direct,
}

impl PinMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Recursive => "recursive",
            PinMode::Direct => "direct",
        }
    }
}

/// Cluster-level options of a pin, shared by all users who hold its CID.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PinOptions {
    pub mode: PinMode,
    /// Minimum replication factor; -1 means "every peer".
    pub replication_min: i32,
    /// Maximum replication factor; -1 means "every peer".
    pub replication_max: i32,
    /// Peers to allocate the pin to first.
    pub user_allocations: Vec<String>,
    /// When set, the pin is removed at this time.
    pub expire_at: Option<Timestamp>,
}

impl PinOptions {
    /// The defaults of a pin made through the Pinning Service API.
    pub fn everywhere() -> PinOptions {
        PinOptions { replication_min: -1, replication_max: -1, ..PinOptions::default() }
    }
}

/// A validated request to pin a CID on behalf of one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPin {
    pub cid: Cid,
    pub name: Option<String>,
    pub meta: BTreeMap<String, String>,
    pub origins: Vec<Multiaddr>,
    pub options: PinOptions,
}

impl NewPin {
    /// Checks the limits that hold whichever API the request came through.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(name) = &self.name {
            if name.chars().count() > MAX_NAME_CHARS {
                return Err(ValidationError::NameTooLong);
            }
        }
        if self.meta.len() > MAX_META_ENTRIES {
            return Err(ValidationError::TooManyMeta);
        }
        for (key, value) in &self.meta {
            if key.len() > MAX_META_KEY_BYTES {
                return Err(ValidationError::BadMetaKey);
            }
            if value.len() > MAX_META_VALUE_BYTES {
                return Err(ValidationError::MetaValueTooLong(key.clone()));
            }
        }
        if self.origins.len() > MAX_ORIGINS {
            return Err(ValidationError::TooManyOrigins);
        }
        Ok(())
    }
}

/// One user's pin object for a CID. Its request ID is the CID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPin {
    pub cid: Cid,
    pub name: Option<String>,
    pub meta: BTreeMap<String, String>,
    pub origins: Vec<Multiaddr>,
    /// When the request entered the service: immutable and unique per user.
    pub created: Timestamp,
}

/// Blocks and bytes fetched so far for a pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Progress {
    pub blocks: u64,
    pub bytes: u64,
}

/// One peer's status of a pin's content, as that peer reported it through
/// the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPin {
    /// The peer's ID.
    pub peer: String,
    /// `pinning`, `pinned` or `failed` (a peer that has not started reports nothing).
    pub status: PinStatus,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When the peer reported it (the peer's clock).
    pub updated: Timestamp,
}

/// The one record of a CID, whoever pinned it: what the cluster shares
/// (options, allocations, `created`, each peer's reported status and their
/// summary) with this peer's own status of its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPin {
    pub cid: Cid,
    pub options: PinOptions,
    /// The peers the pin is allocated to (peer IDs); empty = every peer.
    pub allocations: Vec<String>,
    pub status: PinStatus,
    /// Why the last attempt failed, when it did.
    pub error: Option<String>,
    /// How many times the tracker has tried to pin it.
    pub attempts: u32,
    pub progress: Progress,
    /// Size of the whole DAG in bytes, once known.
    pub dag_size: Option<u64>,
    /// When the first user pinned it (the proposer's clock).
    pub created: Timestamp,
    /// When this peer last changed its status (this peer's clock).
    pub updated: Timestamp,
    /// The cluster's status of the pin, summed up from the peers' reports:
    /// what users see, list, filter and count by (see `docs/ARCHITECTURE.md`).
    pub summary: PinStatus,
    /// Why the pin failed, with a `failed` summary: a failed peer's error.
    pub summary_error: Option<String>,
    /// Every allocated peer's reported status, in peer ID order (empty in
    /// listings, which carry only the summary).
    pub peers: Vec<PeerPin>,
}

impl ClusterPin {
    /// A cluster pin as the cluster shares it, before this peer did anything
    /// about it: `queued`, no error, no progress, updated when created.
    pub fn shared(cid: Cid, options: PinOptions, allocations: Vec<String>, created: Timestamp) -> ClusterPin {
        ClusterPin {
            cid,
            options,
            allocations,
            status: PinStatus::Queued,
            error: None,
            attempts: 0,
            progress: Progress::default(),
            dag_size: None,
            created,
            updated: created,
            summary: PinStatus::Queued,
            summary_error: None,
            peers: Vec::new(),
        }
    }
}

/// The cluster's status of a pin from its peers' reports (its *summary*):
/// `pinned` once `required` allocated peers report it pinned, where
/// `required` is `replication_factor_min` (1 for `-1`, a pin on every
/// peer), capped at the number of allocations; else `pinning` while a peer
/// fetches it or some but not enough peers hold it; else `failed` when a
/// peer failed it (with that peer's error); else `queued`.
///
/// It depends on the pin alone, not on the membership, so a peer joining or
/// leaving never rewrites the pinset: a pin on every peer counts as pinned
/// once one peer holds it, and the REST API shows every peer's own status.
pub fn summarize(options: &PinOptions, allocations: &[String], peers: &[PeerPin]) -> (PinStatus, Option<String>) {
    let mut required = usize::try_from(options.replication_min).unwrap_or(0).max(1);
    if !allocations.is_empty() {
        required = required.min(allocations.len());
    }
    let count = |status: PinStatus| peers.iter().filter(|p| p.status == status).count();
    let pinned = count(PinStatus::Pinned);
    if pinned >= required {
        return (PinStatus::Pinned, None);
    }
    if count(PinStatus::Pinning) > 0 {
        return (PinStatus::Pinning, None);
    }
    if let Some(failed) = peers.iter().find(|p| p.status == PinStatus::Failed) {
        return (PinStatus::Failed, failed.error.clone());
    }
    if pinned > 0 {
        return (PinStatus::Pinning, None);
    }
    (PinStatus::Queued, None)
}

/// A user's pin object together with the status of its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinView {
    pub user: UserPin,
    pub cluster: ClusterPin,
}

/// How a `name` filter compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NameMatch {
    /// Whole name, case-sensitive.
    #[default]
    Exact,
    /// Whole name, case-insensitive.
    IExact,
    /// Substring, case-sensitive.
    Partial,
    /// Substring, case-insensitive.
    IPartial,
}

impl NameMatch {
    /// Whether `name` matches `pattern` under this strategy.
    pub fn matches(self, pattern: &str, name: &str) -> bool {
        match self {
            NameMatch::Exact => name == pattern,
            NameMatch::IExact => name.to_lowercase() == pattern.to_lowercase(),
            NameMatch::Partial => name.contains(pattern),
            NameMatch::IPartial => name.to_lowercase().contains(&pattern.to_lowercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, status: PinStatus) -> PeerPin {
        let error = (status == PinStatus::Failed).then(|| format!("{name} failed"));
        PeerPin { peer: name.into(), status, error, updated: Timestamp(1) }
    }

    fn options(min: i32) -> PinOptions {
        PinOptions { replication_min: min, replication_max: min, ..PinOptions::default() }
    }

    #[test]
    fn pinned_once_min_allocated_peers_hold_it() {
        let alloc = vec!["a".to_string(), "b".into(), "c".into()];
        let one = [peer("a", PinStatus::Pinned)];
        assert_eq!(summarize(&options(2), &alloc, &one).0, PinStatus::Pinning);
        let two = [peer("a", PinStatus::Pinned), peer("b", PinStatus::Pinned)];
        assert_eq!(summarize(&options(2), &alloc, &two), (PinStatus::Pinned, None));
        // More required than allocated: all allocations suffice.
        assert_eq!(summarize(&options(5), &alloc[..2], &two).0, PinStatus::Pinned);
        // A pin on every peer: one holder is enough.
        assert_eq!(summarize(&options(-1), &[], &one).0, PinStatus::Pinned);
    }

    #[test]
    fn fetching_wins_over_failed_and_failed_over_queued() {
        let alloc = vec!["a".to_string(), "b".into()];
        let both = [peer("a", PinStatus::Failed), peer("b", PinStatus::Pinning)];
        assert_eq!(summarize(&options(2), &alloc, &both).0, PinStatus::Pinning);
        let failed = [peer("a", PinStatus::Failed), peer("b", PinStatus::Pinned)];
        assert_eq!(summarize(&options(2), &alloc, &failed), (PinStatus::Failed, Some("a failed".into())));
        assert_eq!(summarize(&options(2), &alloc, &[]), (PinStatus::Queued, None));
    }
}
