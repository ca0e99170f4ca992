//! The Bitswap wire format as this crate uses it: [`Message`], converted to and from the prost
//! types of `pb.rs`, and the one size limit of a message ([`MAX_MESSAGE_BYTES`]). Frames (a
//! varint length, then the message) are read and written by `crate::varint`.

use bytes::Bytes;
use cid::Cid;
use multihash_codetable::Code;
use multihash_derive::MultihashDigest;
use prost::Message as _;

use super::pb;

/// The largest message accepted from a peer: Kubo's own limit (libp2p's `MessageSizeMax`, 4 MiB).
pub(crate) const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// One want (or cancel) of a wantlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Want {
    pub(crate) cid: Cid,
    pub(crate) cancel: bool,
    /// Asks only whether the peer has the block (`WANT_HAVE`), not for the block.
    pub(crate) have_only: bool,
    pub(crate) send_dont_have: bool,
}

/// A block as sent: the CID prefix of the wanted CID and the data. `prefix` is empty for the
/// 1.0.0 `blocks` field (CIDv0, sha2-256 implied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WireBlock {
    pub(crate) prefix: Bytes,
    pub(crate) data: Bytes,
}

/// One Bitswap message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) wants: Vec<Want>,
    pub(crate) full: bool,
    pub(crate) blocks: Vec<WireBlock>,
    /// `(cid, have)`: `have == false` is `DONT_HAVE`.
    pub(crate) presences: Vec<(Cid, bool)>,
}

/// Why a peer's message was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge(usize),
    #[error("invalid protobuf")]
    Protobuf(#[source] prost::DecodeError),
    #[error("{0}")]
    Invalid(&'static str),
}

impl Message {
    pub(crate) fn is_empty(&self) -> bool {
        self.wants.is_empty() && self.blocks.is_empty() && self.presences.is_empty()
    }

    /// Items in the message: wants, blocks and presences.
    pub(crate) fn items(&self) -> usize {
        self.wants.len() + self.blocks.len() + self.presences.len()
    }

    /// Appends `other`'s items (a later message to the same peer).
    pub(crate) fn merge(&mut self, other: Message) {
        self.wants.extend(other.wants);
        self.full |= other.full;
        self.blocks.extend(other.blocks);
        self.presences.extend(other.presences);
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let wantlist = (!self.wants.is_empty() || self.full).then(|| pb::Wantlist {
            entries: self
                .wants
                .iter()
                .map(|want| pb::Entry {
                    block: Bytes::from(want.cid.to_bytes()),
                    priority: 1,
                    cancel: want.cancel,
                    want_type: if want.have_only { pb::WANT_TYPE_HAVE } else { 0 },
                    send_dont_have: want.send_dont_have,
                })
                .collect(),
            full: self.full,
            overflow: false,
        });
        let message = pb::Message {
            wantlist,
            blocks: Vec::new(),
            payload: self
                .blocks
                .iter()
                .map(|block| pb::Block { prefix: block.prefix.clone(), data: block.data.clone() })
                .collect(),
            block_presences: self
                .presences
                .iter()
                .map(|(cid, have)| pb::BlockPresence {
                    cid: Bytes::from(cid.to_bytes()),
                    r#type: if *have { 0 } else { pb::PRESENCE_DONT_HAVE },
                })
                .collect(),
            pending_bytes: 0,
            overflow: false,
        };
        message.encode_to_vec()
    }

    /// Decodes one message body (without its length prefix). Byte fields stay slices of `body`.
    pub(crate) fn decode(body: Bytes) -> Result<Message, DecodeError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge(body.len()));
        }
        let raw = pb::Message::decode(body).map_err(DecodeError::Protobuf)?;
        if raw.overflow || raw.wantlist.as_ref().is_some_and(|w| w.overflow) {
            return Err(DecodeError::Invalid("too many items in one message"));
        }
        let mut message = Message::default();
        if let Some(list) = raw.wantlist {
            message.full = list.full;
            message.wants.reserve(list.entries.len());
            for entry in list.entries {
                if entry.block.is_empty() {
                    return Err(DecodeError::Invalid("wantlist entry without cid"));
                }
                message.wants.push(Want {
                    cid: parse_cid(&entry.block)?,
                    cancel: entry.cancel,
                    have_only: entry.want_type == pb::WANT_TYPE_HAVE,
                    send_dont_have: entry.send_dont_have,
                });
            }
        }
        message.blocks.extend(raw.blocks.into_iter().map(|data| WireBlock { prefix: Bytes::new(), data }));
        for block in raw.payload {
            if block.prefix.is_empty() {
                return Err(DecodeError::Invalid("payload block without prefix"));
            }
            message.blocks.push(WireBlock { prefix: block.prefix, data: block.data });
        }
        for presence in raw.block_presences {
            if presence.cid.is_empty() {
                return Err(DecodeError::Invalid("block presence without cid"));
            }
            message.presences.push((parse_cid(&presence.cid)?, presence.r#type != pb::PRESENCE_DONT_HAVE));
        }
        Ok(message)
    }
}

fn parse_cid(bytes: &[u8]) -> Result<Cid, DecodeError> {
    Cid::try_from(bytes).map_err(|_| DecodeError::Invalid("invalid cid"))
}

/// The CID prefix Kubo expects: version, codec, hash code and digest length, each a varint.
/// For CIDv0 that is `0, 0x70, 0x12, 32`.
pub(crate) fn prefix_of(cid: &Cid) -> Bytes {
    let mut out = Vec::with_capacity(8);
    crate::varint::put(&mut out, u64::from(cid.version()));
    crate::varint::put(&mut out, cid.codec());
    crate::varint::put(&mut out, cid.hash().code());
    crate::varint::put(&mut out, u64::from(cid.hash().size()));
    Bytes::from(out)
}

/// Hashes `data` as `prefix` says and returns the block's CID. An empty prefix means CIDv0.
pub(crate) fn cid_of(prefix: &[u8], data: &[u8]) -> Result<Cid, DecodeError> {
    let (version, codec, code, size) = if prefix.is_empty() {
        (0, 0x70, 0x12, 32)
    } else {
        let mut rest = prefix;
        let mut next = || crate::varint::take(&mut rest).ok_or(DecodeError::Invalid("invalid cid prefix"));
        (next()?, next()?, next()?, next()?)
    };
    let code = Code::try_from(code).map_err(|_| DecodeError::Invalid("unsupported hash function"))?;
    let hash = code.digest(data);
    if u64::from(hash.size()) != size {
        return Err(DecodeError::Invalid("unsupported digest length"));
    }
    match version {
        0 if codec == 0x70 => Ok(Cid::new_v0(hash).map_err(|_| DecodeError::Invalid("invalid CIDv0"))?),
        1 => Ok(Cid::new_v1(codec, hash)),
        _ => Err(DecodeError::Invalid("unsupported cid version")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(text: &str) -> Cid {
        text.parse().expect("cid")
    }

    #[test]
    fn messages_round_trip() {
        let v0 = cid("QmYekbPpaCQmrDxp2yzA6gzFgxVUGcGKVzEdc9kS5gwjQg");
        let v1 = cid("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy");
        let message = Message {
            wants: vec![
                Want { cid: v0, cancel: false, have_only: true, send_dont_have: true },
                Want { cid: v1, cancel: true, have_only: false, send_dont_have: false },
            ],
            full: true,
            blocks: vec![WireBlock { prefix: prefix_of(&v1), data: Bytes::from_static(b"hello") }],
            presences: vec![(v0, true), (v1, false)],
        };
        assert_eq!(Message::decode(Bytes::from(message.encode())).expect("decode"), message);
    }

    #[test]
    fn cidv0_prefix_is_what_kubo_expects() {
        let v0 = cid("QmYekbPpaCQmrDxp2yzA6gzFgxVUGcGKVzEdc9kS5gwjQg");
        assert_eq!(&prefix_of(&v0)[..], &[0x00, 0x70, 0x12, 0x20]);
    }

    #[test]
    fn cid_of_hashes_with_the_prefix() {
        let v1 = cid("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy");
        let got = cid_of(&prefix_of(&v1), b"hello world").expect("cid");
        assert_eq!((got.version(), got.codec()), (cid::Version::V1, 0x55));
        assert!(rust_ipfs::Block::new(got, b"hello world".to_vec()).is_ok(), "engine agrees");
        let v0 = cid_of(&[], b"hello world").expect("cid");
        assert_eq!(v0.version(), cid::Version::V0);
        assert_eq!(v0.hash(), got.hash());
        assert!(cid_of(&prefix_of(&v1)[..2], b"x").is_err());
        // An over-long varint in the prefix is refused, not read as its value.
        assert!(cid_of(&[0x81, 0x00, 0x55, 0x12, 0x20], b"x").is_err());
    }

    #[test]
    fn garbage_is_refused_not_panicking() {
        for bytes in [&[0xff][..], &[0x0a, 0x05, 0x01], &[0x1a, 0x00], &[0x0f], &[0x0a, 0x02, 0x0a, 0x00]] {
            assert!(Message::decode(Bytes::copy_from_slice(bytes)).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn many_tiny_items_are_refused_before_they_are_all_built() {
        // 100 000 empty payload blocks: two bytes each on the wire, far more in memory.
        let body = [0x1a, 0x00].repeat(100_000);
        let err = Message::decode(Bytes::from(body)).expect_err("too many items");
        assert!(err.to_string().contains("too many items"), "{err:?}");
        // The same inside a wantlist.
        let mut list = Vec::new();
        for _ in 0..100_000 {
            list.extend_from_slice(&[0x0a, 0x00]);
        }
        let mut body = vec![0x0a];
        crate::varint::put(&mut body, list.len() as u64);
        body.extend_from_slice(&list);
        let err = Message::decode(Bytes::from(body)).expect_err("too many entries");
        assert!(err.to_string().contains("too many items"), "{err:?}");
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let body = Bytes::from(vec![0u8; MAX_MESSAGE_BYTES + 1]);
        assert!(matches!(Message::decode(body), Err(DecodeError::TooLarge(_))));
        assert_eq!(Message::decode(Bytes::new()).expect("an empty message is valid").items(), 0);
    }
}
