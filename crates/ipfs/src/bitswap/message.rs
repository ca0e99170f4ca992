//! The Bitswap wire format: [`Message`] and its protobuf encoding, written by hand (five small
//! message types), plus the unsigned-varint length framing of each message on a stream.
//!
//! Schema (bitswap 1.2.0, `message.proto`): `Message { Wantlist wantlist = 1; repeated bytes
//! blocks = 2; repeated Block payload = 3; repeated BlockPresence blockPresences = 4; int32
//! pendingBytes = 5 }`, `Wantlist { repeated Entry entries = 1; bool full = 2 }`, `Entry { bytes
//! block = 1; int32 priority = 2; bool cancel = 3; WantType wantType = 4 (Block 0, Have 1); bool
//! sendDontHave = 5 }`, `Block { bytes prefix = 1; bytes data = 2 }`, `BlockPresence { bytes cid
//! = 1; Type type = 2 (Have 0, DontHave 1) }`.

use cid::Cid;
use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use multihash_codetable::Code;
use multihash_derive::MultihashDigest;

/// The largest message accepted from a peer (Kubo's own limit is 4 MiB).
pub(crate) const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024 + 64 * 1024;

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
    pub(crate) prefix: Vec<u8>,
    pub(crate) data: Vec<u8>,
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

impl Message {
    pub(crate) fn is_empty(&self) -> bool {
        self.wants.is_empty() && self.blocks.is_empty() && self.presences.is_empty()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.wants.is_empty() || self.full {
            let mut list = Vec::new();
            for want in &self.wants {
                let mut entry = Vec::new();
                put_bytes(&mut entry, 1, &want.cid.to_bytes());
                put_uint(&mut entry, 2, 1);
                if want.cancel {
                    put_uint(&mut entry, 3, 1);
                }
                if want.have_only {
                    put_uint(&mut entry, 4, 1);
                }
                if want.send_dont_have {
                    put_uint(&mut entry, 5, 1);
                }
                put_bytes(&mut list, 1, &entry);
            }
            if self.full {
                put_uint(&mut list, 2, 1);
            }
            put_bytes(&mut out, 1, &list);
        }
        for block in &self.blocks {
            let mut payload = Vec::with_capacity(block.data.len() + 16);
            put_bytes(&mut payload, 1, &block.prefix);
            put_bytes(&mut payload, 2, &block.data);
            put_bytes(&mut out, 3, &payload);
        }
        for (cid, have) in &self.presences {
            let mut presence = Vec::new();
            put_bytes(&mut presence, 1, &cid.to_bytes());
            if !have {
                put_uint(&mut presence, 2, 1);
            }
            put_bytes(&mut out, 4, &presence);
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let mut message = Message::default();
        for field in Fields(bytes) {
            match field? {
                (1, Value::Bytes(list)) => {
                    for field in Fields(list) {
                        match field? {
                            (1, Value::Bytes(entry)) => message.wants.push(decode_want(entry)?),
                            (2, Value::Varint(full)) => message.full = full != 0,
                            _ => {}
                        }
                    }
                }
                (2, Value::Bytes(data)) => message.blocks.push(WireBlock { prefix: Vec::new(), data: data.to_vec() }),
                (3, Value::Bytes(payload)) => {
                    let mut block = WireBlock { prefix: Vec::new(), data: Vec::new() };
                    for field in Fields(payload) {
                        match field? {
                            (1, Value::Bytes(prefix)) => block.prefix = prefix.to_vec(),
                            (2, Value::Bytes(data)) => block.data = data.to_vec(),
                            _ => {}
                        }
                    }
                    if block.prefix.is_empty() {
                        return Err(DecodeError("payload block without prefix"));
                    }
                    message.blocks.push(block);
                }
                (4, Value::Bytes(presence)) => {
                    let (mut cid, mut have) = (None, true);
                    for field in Fields(presence) {
                        match field? {
                            (1, Value::Bytes(bytes)) => cid = Some(parse_cid(bytes)?),
                            (2, Value::Varint(kind)) => have = kind == 0,
                            _ => {}
                        }
                    }
                    let cid = cid.ok_or(DecodeError("block presence without cid"))?;
                    message.presences.push((cid, have));
                }
                _ => {}
            }
        }
        Ok(message)
    }
}

fn decode_want(entry: &[u8]) -> Result<Want, DecodeError> {
    let mut want = Want { cid: Cid::default(), cancel: false, have_only: false, send_dont_have: false };
    let mut seen_cid = false;
    for field in Fields(entry) {
        match field? {
            (1, Value::Bytes(bytes)) => {
                want.cid = parse_cid(bytes)?;
                seen_cid = true;
            }
            (3, Value::Varint(v)) => want.cancel = v != 0,
            (4, Value::Varint(v)) => want.have_only = v == 1,
            (5, Value::Varint(v)) => want.send_dont_have = v != 0,
            _ => {}
        }
    }
    if !seen_cid {
        return Err(DecodeError("wantlist entry without cid"));
    }
    Ok(want)
}

fn parse_cid(bytes: &[u8]) -> Result<Cid, DecodeError> {
    Cid::try_from(bytes).map_err(|_| DecodeError("invalid cid"))
}

/// The CID prefix Kubo expects: version, codec, hash code and digest length, each a varint.
/// For CIDv0 that is `0, 0x70, 0x12, 32`.
pub(crate) fn prefix_of(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    put_varint(&mut out, u64::from(cid.version()));
    put_varint(&mut out, cid.codec());
    put_varint(&mut out, cid.hash().code());
    put_varint(&mut out, u64::from(cid.hash().size()));
    out
}

/// Hashes `data` as `prefix` says and returns the block's CID. An empty prefix means CIDv0.
pub(crate) fn cid_of(prefix: &[u8], data: &[u8]) -> Result<Cid, DecodeError> {
    let (version, codec, code, size) = if prefix.is_empty() {
        (0, 0x70, 0x12, 32)
    } else {
        let mut rest = prefix;
        let mut next = || read_varint(&mut rest).ok_or(DecodeError("truncated cid prefix"));
        (next()?, next()?, next()?, next()?)
    };
    let code = Code::try_from(code).map_err(|_| DecodeError("unsupported hash function"))?;
    let hash = code.digest(data);
    if u64::from(hash.size()) != size {
        return Err(DecodeError("unsupported digest length"));
    }
    match version {
        0 if codec == 0x70 => Ok(Cid::new_v0(hash).map_err(|_| DecodeError("invalid CIDv0"))?),
        1 => Ok(Cid::new_v1(codec, hash)),
        _ => Err(DecodeError("unsupported cid version")),
    }
}

/// Why a peer's bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Reads one length-prefixed message; `Ok(None)` at a clean end of stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let mut byte = [0u8; 1];
        match reader.read(&mut byte).await? {
            0 if shift == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => {}
        }
        len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "frame length too long"));
        }
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_MESSAGE_BYTES {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bitswap message too large"));
    }
    let mut buf = vec![0u8; len];
    reader.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// Writes one length-prefixed message and flushes.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, body: &[u8]) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(5);
    put_varint(&mut head, body.len() as u64);
    writer.write_all(&head).await?;
    writer.write_all(body).await?;
    writer.flush().await
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates over the fields of one protobuf message.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let result = (|| {
            let key = read_varint(&mut self.0).ok_or(DecodeError("truncated field key"))?;
            let value = match key & 7 {
                0 => Value::Varint(read_varint(&mut self.0).ok_or(DecodeError("truncated varint"))?),
                2 => {
                    let len = read_varint(&mut self.0).ok_or(DecodeError("truncated length"))?;
                    let len = usize::try_from(len).map_err(|_| DecodeError("length too large"))?;
                    if len > self.0.len() {
                        return Err(DecodeError("field longer than message"));
                    }
                    let (bytes, rest) = self.0.split_at(len);
                    self.0 = rest;
                    Value::Bytes(bytes)
                }
                1 => skip(&mut self.0, 8)?,
                5 => skip(&mut self.0, 4)?,
                _ => return Err(DecodeError("unsupported wire type")),
            };
            Ok((key >> 3, value))
        })();
        if result.is_err() {
            self.0 = &[];
        }
        Some(result)
    }
}

fn skip<'a>(buf: &mut &'a [u8], n: usize) -> Result<Value<'a>, DecodeError> {
    if buf.len() < n {
        return Err(DecodeError("truncated fixed field"));
    }
    *buf = &buf[n..];
    Ok(Value::Fixed)
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_uint(out: &mut Vec<u8>, field: u64, value: u64) {
    put_varint(out, field << 3);
    put_varint(out, value);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Unwrap is fine in tests.
mod tests {
    use super::*;

    fn cid(text: &str) -> Cid {
        text.parse().unwrap()
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
            blocks: vec![WireBlock { prefix: prefix_of(&v1), data: b"hello".to_vec() }],
            presences: vec![(v0, true), (v1, false)],
        };
        assert_eq!(Message::decode(&message.encode()).unwrap(), message);
    }

    #[test]
    fn cidv0_prefix_is_what_kubo_expects() {
        let v0 = cid("QmYekbPpaCQmrDxp2yzA6gzFgxVUGcGKVzEdc9kS5gwjQg");
        assert_eq!(prefix_of(&v0), vec![0x00, 0x70, 0x12, 0x20]);
    }

    #[test]
    fn cid_of_hashes_with_the_prefix() {
        let v1 = cid("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy");
        let got = cid_of(&prefix_of(&v1), b"hello world").unwrap();
        assert_eq!((got.version(), got.codec()), (cid::Version::V1, 0x55));
        assert!(rust_ipfs::Block::new(got, b"hello world".to_vec()).is_ok(), "engine agrees");
        let v0 = cid_of(&[], b"hello world").unwrap();
        assert_eq!(v0.version(), cid::Version::V0);
        assert_eq!(v0.hash(), got.hash());
        assert!(cid_of(&prefix_of(&v1)[..2], b"x").is_err());
    }

    #[test]
    fn garbage_is_refused_not_panicking() {
        for bytes in [&[0xff][..], &[0x0a, 0x05, 0x01], &[0x1a, 0x00], &[0x0f]] {
            assert!(Message::decode(bytes).is_err(), "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"abc").await.unwrap();
        write_frame(&mut buf, &[7u8; 300]).await.unwrap();
        let mut reader = futures_util::io::Cursor::new(buf);
        assert_eq!(read_frame(&mut reader).await.unwrap().unwrap(), b"abc");
        assert_eq!(read_frame(&mut reader).await.unwrap().unwrap(), vec![7u8; 300]);
        assert!(read_frame(&mut reader).await.unwrap().is_none());
    }
}
