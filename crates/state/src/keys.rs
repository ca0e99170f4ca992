//! Byte layout of every key in the single sled tree; read [`Tag`] first.
//!
//! Each keyspace starts with one tag byte. Variable-length parts that are not
//! the last part of a key carry a length prefix, so that a prefix never matches
//! a longer user name, CID or pin name by accident. Counters are big-endian.
//! `created` in a key is stored inverted (`!created`, big-endian), so that a
//! forward scan, which sled does much faster than a reverse one, yields the
//! newest pin first.

use pincluster_model::{Cid, PinStatus, Timestamp, UserName};

use crate::StateError;

/// The key holding the schema version (a big-endian `u32`).
pub(crate) const SCHEMA_KEY: &[u8] = b"\x00schema";
/// The key holding the index of the last applied log entry (a big-endian `u64`).
pub(crate) const APPLIED_KEY: &[u8] = b"\x00applied";
/// The key holding the log's own record of the last applied entry (opaque
/// bytes the consensus layer gives with each entry), written with [`APPLIED_KEY`].
pub(crate) const APPLIED_META_KEY: &[u8] = b"\x00applied_meta";
/// Present while a snapshot is being installed: the shared half is partial
/// and is wiped at the next open.
pub(crate) const INSTALLING_KEY: &[u8] = b"\x00installing";

/// The first byte of every key except [`SCHEMA_KEY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tag {
    /// `c | cid` → the shared cluster record: options, allocations, every
    /// holder and the `created` of their pin (which locates their listing record).
    Cluster = b'c',
    /// `l | cid` → this peer's local record of the CID: status, error,
    /// attempts, progress. Absent until the tracker first writes it (`queued`).
    Local = b'l',
    /// `q | status | created | cid` → empty: cluster pins by this peer's
    /// status, oldest first, so that a new pin appends.
    ClusterStatus = b'q',
    /// `k | status` → `u64`: number of cluster pins in that status.
    ClusterCount = b'k',
    /// `r | len(user) | user | !created`: schema 3's listing records, which
    /// the migration to schema 4 deletes; nothing else reads or writes them.
    LegacyRecord = b'r',
    /// `s | len(user) | user | status | !created` → listing record: a user's
    /// pin with a copy of its cluster pin, by the CID's summary, newest first.
    ByStatus = b's',
    /// `n | len(user) | user | len16(lowercase name) | name | !created` → cid.
    ByName = b'n',
    /// `m | len(user) | user | status` → `u64`: a user's pins in that status.
    UserCount = b'm',
    /// `t | len(user) | user` → `u64`: the newest `created` ever given to the
    /// user's pins, so that applying a command finds the next one in the state.
    Newest = b't',
}

/// Appends a byte string with a one-byte length prefix.
fn push_short(key: &mut Vec<u8>, part: &[u8]) -> Result<(), StateError> {
    let len =
        u8::try_from(part.len()).map_err(|_| StateError::invalid_key("a user name or CID is longer than 255 bytes"))?;
    key.push(len);
    key.extend_from_slice(part);
    Ok(())
}

/// `tag | len(user) | user`: the prefix of every per-user keyspace.
pub(crate) fn user_prefix(tag: Tag, user: &UserName) -> Result<Vec<u8>, StateError> {
    let mut key = Vec::with_capacity(2 + user.as_str().len() + 48);
    key.push(tag as u8);
    push_short(&mut key, user.as_str().as_bytes())?;
    Ok(key)
}

pub(crate) fn cluster(cid: &Cid) -> Vec<u8> {
    let mut key = vec![Tag::Cluster as u8];
    key.extend_from_slice(&cid.to_bytes());
    key
}

pub(crate) fn local(cid: &Cid) -> Vec<u8> {
    let mut key = vec![Tag::Local as u8];
    key.extend_from_slice(&cid.to_bytes());
    key
}

pub(crate) fn cluster_status_prefix(status: PinStatus) -> Vec<u8> {
    vec![Tag::ClusterStatus as u8, status.code()]
}

pub(crate) fn cluster_status(status: PinStatus, created: Timestamp, cid: &Cid) -> Vec<u8> {
    let mut key = cluster_status_prefix(status);
    key.extend_from_slice(&created.0.to_be_bytes());
    key.extend_from_slice(&cid.to_bytes());
    key
}

/// Splits `q | status | created | cid` into its parts.
pub(crate) fn split_cluster_status(key: &[u8]) -> Option<(PinStatus, Timestamp, Cid)> {
    let status = PinStatus::from_code(*key.get(1)?)?;
    let created = Timestamp(decode_u64(key.get(2..10)?)?);
    let cid = decode_cid(key.get(10..)?)?;
    Some((status, created, cid))
}

/// Schema 3's `q | status | cid`, deleted by the migration.
pub(crate) fn legacy_cluster_status(status: PinStatus, cid: &Cid) -> Vec<u8> {
    let mut key = cluster_status_prefix(status);
    key.extend_from_slice(&cid.to_bytes());
    key
}

pub(crate) fn newest(user: &UserName) -> Result<Vec<u8>, StateError> {
    user_prefix(Tag::Newest, user)
}

pub(crate) fn cluster_count(status: PinStatus) -> Vec<u8> {
    vec![Tag::ClusterCount as u8, status.code()]
}

pub(crate) fn by_status_prefix(user: &UserName, status: PinStatus) -> Result<Vec<u8>, StateError> {
    let mut key = user_prefix(Tag::ByStatus, user)?;
    key.push(status.code());
    Ok(key)
}

pub(crate) fn by_status(user: &UserName, status: PinStatus, created: Timestamp) -> Result<Vec<u8>, StateError> {
    let mut key = by_status_prefix(user, status)?;
    key.extend_from_slice(&invert(created));
    Ok(key)
}

/// The form of a name that the name index stores: lowercase, so that both
/// `exact` and `iexact` can seek to it.
pub(crate) fn fold_name(name: &str) -> String {
    name.to_lowercase()
}

pub(crate) fn by_name_prefix(user: &UserName, folded: &str) -> Result<Vec<u8>, StateError> {
    let mut key = user_prefix(Tag::ByName, user)?;
    let len =
        u16::try_from(folded.len()).map_err(|_| StateError::invalid_key("a pin name is longer than 65535 bytes"))?;
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(folded.as_bytes());
    Ok(key)
}

pub(crate) fn by_name(user: &UserName, name: &str, created: Timestamp) -> Result<Vec<u8>, StateError> {
    let mut key = by_name_prefix(user, &fold_name(name))?;
    key.extend_from_slice(&invert(created));
    Ok(key)
}

pub(crate) fn user_count(user: &UserName, status: PinStatus) -> Result<Vec<u8>, StateError> {
    let mut key = user_prefix(Tag::UserCount, user)?;
    key.push(status.code());
    Ok(key)
}

/// The key form of `created`: newest sorts first.
pub(crate) fn invert(created: Timestamp) -> [u8; 8] {
    (!created.0).to_be_bytes()
}

/// Reads the inverted timestamp that ends an index key.
pub(crate) fn trailing_created(key: &[u8]) -> Option<Timestamp> {
    let start = key.len().checked_sub(8)?;
    let bytes: [u8; 8] = key.get(start..)?.try_into().ok()?;
    Some(Timestamp(!u64::from_be_bytes(bytes)))
}

/// Splits `len | part | rest` into `(part, rest)`.
pub(crate) fn split_short(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = bytes.split_first()?;
    let len = usize::from(len);
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// Decodes a user name stored inside a key.
pub(crate) fn decode_user(bytes: &[u8]) -> Option<UserName> {
    let text = std::str::from_utf8(bytes).ok()?;
    UserName::new(text).ok()
}

/// Decodes CID bytes stored in a key or value.
pub(crate) fn decode_cid(bytes: &[u8]) -> Option<Cid> {
    Cid::try_from(bytes).ok()
}

pub(crate) fn encode_u64(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// A printable form of a key for error messages.
pub(crate) fn display(key: &[u8]) -> String {
    key.iter().map(|b| if b.is_ascii_graphic() { char::from(*b).to_string() } else { format!("\\x{b:02x}") }).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn user_prefixes_do_not_overlap() {
        let a = UserName::new("ab").unwrap();
        let b = UserName::new("abc").unwrap();
        let pa = user_prefix(Tag::ByStatus, &a).unwrap();
        let kb = by_status(&b, PinStatus::Queued, Timestamp(1)).unwrap();
        assert!(!kb.starts_with(&pa));
    }

    #[test]
    fn created_is_read_back() {
        let u = UserName::new("u").unwrap();
        let k = by_status(&u, PinStatus::Pinned, Timestamp(1234)).unwrap();
        assert_eq!(trailing_created(&k), Some(Timestamp(1234)));
    }

    #[test]
    fn status_index_keys_split_back() {
        let c = Cid::try_from("bafkqaaa").unwrap();
        let k = cluster_status(PinStatus::Failed, Timestamp(77), &c);
        assert_eq!(split_cluster_status(&k), Some((PinStatus::Failed, Timestamp(77), c)));
        assert!(
            cluster_status(PinStatus::Queued, Timestamp(1), &c) < cluster_status(PinStatus::Queued, Timestamp(2), &c)
        );
    }
}
