//! CARv1 framing: the dag-cbor header ([`header`]) and each block's frame prefix
//! ([`frame_prefix`]: varint of the CID and data length, then the CID's bytes). The data follows
//! the prefix as its own chunk, so blocks are never copied into the stream.

use bytes::Bytes;
use cid::Cid;

/// The CAR v1 header (`{"roots": [root], "version": 1}` in dag-cbor), length-prefixed.
pub(crate) fn header(root: &Cid) -> Bytes {
    #[derive(serde::Serialize)]
    struct Header<'a> {
        // dag-cbor orders map keys by length, then bytes: `roots` before `version`.
        roots: [&'a Cid; 1],
        version: u64,
    }
    // A map of one CID and an integer always encodes.
    let body = serde_ipld_dagcbor::to_vec(&Header { roots: [root], version: 1 }).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(unsigned_varint::encode::usize(body.len(), &mut unsigned_varint::encode::usize_buffer()));
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// What precedes a block's data in a CAR: varint(CID length + data length), then the CID.
pub(crate) fn frame_prefix(cid: &Cid, data_len: usize) -> Bytes {
    let cid_bytes = cid.to_bytes();
    let mut buffer = unsigned_varint::encode::usize_buffer();
    let length = unsigned_varint::encode::usize(cid_bytes.len() + data_len, &mut buffer);
    let mut out = Vec::with_capacity(length.len() + cid_bytes.len());
    out.extend_from_slice(length);
    out.extend_from_slice(&cid_bytes);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a varint and returns it with the rest.
    fn varint(bytes: &[u8]) -> (usize, &[u8]) {
        unsigned_varint::decode::usize(bytes).expect("varint")
    }

    #[test]
    fn header_is_the_dag_cbor_map_with_the_root() {
        let root: Cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e".parse().expect("cid");
        let bytes = header(&root);
        let (len, rest) = varint(&bytes);
        assert_eq!(len, rest.len());
        // a2 (map of 2), 65 "roots", 81 (array of 1), d8 2a (tag 42), 58 25 (bytes, 37), 00 + CID.
        let mut expected = vec![0xa2, 0x65];
        expected.extend_from_slice(b"roots");
        expected.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, 0x25, 0x00]);
        expected.extend_from_slice(&root.to_bytes());
        expected.push(0x67);
        expected.extend_from_slice(b"version");
        expected.push(0x01);
        assert_eq!(rest, expected.as_slice());
    }

    #[test]
    fn frame_prefix_counts_the_cid_and_the_data() {
        let cid: Cid = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n".parse().expect("cid");
        let prefix = frame_prefix(&cid, 300);
        let (len, rest) = varint(&prefix);
        assert_eq!(len, cid.to_bytes().len() + 300);
        assert_eq!(rest, cid.to_bytes().as_slice(), "a CIDv0 is written as its bare multihash");
        assert_eq!(prefix.len(), 2 + 34, "300 + 34 needs a two-byte varint");
    }
}
