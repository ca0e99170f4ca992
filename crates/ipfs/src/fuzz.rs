//! Entry points for the fuzz targets of `crates/fuzz` (feature `fuzzing`, off by default): each
//! runs one decoder of this crate on untrusted bytes and ignores the outcome. A panic, a hang or
//! an unbounded allocation in here is a bug in the decoder.

use bytes::Bytes;
use cid::Cid;

use crate::car::CarReader;

/// The CAR reader of `/add?format=car`. The first byte sets how the rest is split into pushes
/// (0: one push; n: pushes of n bytes), as a network stream would split it.
pub fn car(data: &[u8]) {
    let Some((&split, mut rest)) = data.split_first() else {
        return;
    };
    let mut reader = CarReader::new();
    let chunk = if split == 0 { rest.len().max(1) } else { usize::from(split) };
    while !rest.is_empty() {
        let (mut push, tail) = rest.split_at(chunk.min(rest.len()));
        rest = tail;
        while !push.is_empty() {
            if reader.extend(&mut push).is_err() {
                return;
            }
            loop {
                match reader.step() {
                    Ok(Some(_block)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }
    let _ = reader.finish();
}

/// One Bitswap message as read from a peer's stream, and the CID of each block it carries.
pub fn bitswap_message(data: &[u8]) {
    let decoded = crate::bitswap::message::Message::decode(Bytes::copy_from_slice(data));
    for block in decoded.iter().flat_map(|message| &message.blocks) {
        let _ = crate::bitswap::message::cid_of(&block.prefix, &block.data);
    }
}

/// The links of one block as [`crate::block_links`] reads them. The first byte picks the codec
/// (dag-pb, dag-cbor, dag-json, raw or the byte itself); the rest is the block.
pub fn block_links(data: &[u8]) {
    let Some((&codec, block)) = data.split_first() else {
        return;
    };
    let codec = match codec % 8 {
        0..=2 => 0x70,
        3 | 4 => 0x71,
        5 => 0x0129,
        6 => 0x55,
        _ => u64::from(codec),
    };
    let hash = cid::multihash::Multihash::<64>::wrap(0x00, &[]).unwrap_or_default();
    let _ = crate::block_links(&Cid::new_v1(codec, hash), &Bytes::copy_from_slice(block));
}
