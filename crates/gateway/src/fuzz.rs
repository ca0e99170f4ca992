//! Entry points for the fuzz targets of `crates/fuzz` (feature `fuzzing`, off by default): the
//! gateway's UnixFS reading (path resolution through directories and HAMT shards, CAR walks,
//! file bytes with ranges) over blocks from untrusted bytes. A panic, a hang or an unbounded
//! allocation in here is a bug in the walk or in the UnixFS decoding under it.

use std::cell::Cell;

use bytes::Bytes;
use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};

use crate::request::Scope;
use crate::walk::{self, Blocks, ByteSink, Sink};
use crate::GatewayError;

/// Separates the blocks of one input.
pub const BLOCK_SEPARATOR: &[u8] = b"|BLK|";
/// The most block reads of one input: a DAG made of untrusted blocks may link in cycles, which
/// content addressing rules out for real blocks.
const MAX_READS: usize = 512;

/// The blocks of one input. A CID finds the block whose sha2-256 digest is its digest (so a
/// real DAG links as it should), else the block its digest's last byte points at (so the fuzzer
/// can link anything to anything).
struct Store {
    blocks: Vec<Bytes>,
    digests: Vec<[u8; 32]>,
    reads: Cell<usize>,
}

impl Blocks for Store {
    async fn get(&self, cid: &Cid) -> Result<Option<Bytes>, GatewayError> {
        let reads = self.reads.get() + 1;
        self.reads.set(reads);
        if reads > MAX_READS || self.blocks.is_empty() {
            return Ok(None);
        }
        let digest = cid.hash().digest();
        let by_hash = self.digests.iter().position(|d| d[..] == *digest);
        let index = by_hash.unwrap_or_else(|| usize::from(digest.last().copied().unwrap_or(0)) % self.blocks.len());
        Ok(self.blocks.get(index).cloned())
    }
}

struct Discard;

impl Sink for Discard {
    async fn block(&mut self, _: &Cid, _: &Bytes) -> Result<(), GatewayError> {
        Ok(())
    }
}

impl ByteSink for Discard {
    async fn bytes(&mut self, _: Bytes) -> Result<(), GatewayError> {
        Ok(())
    }
}

/// Input: a mode byte (bits 0-1: the scope, 2: `car-dups`, 3: a range, 4-5: how many of the
/// path segments `a`, `b`, `c` to resolve, 6: the root is raw), two bytes for the range, then
/// blocks separated by [`BLOCK_SEPARATOR`]; the first block is the root.
pub fn unixfs(data: &[u8]) {
    let [mode, from, span, rest @ ..] = data else {
        return;
    };
    let blocks: Vec<Bytes> = split(rest).map(Bytes::copy_from_slice).take(64).collect();
    let digests = blocks.iter().map(|b| sha256(b)).collect();
    let store = Store { blocks, digests, reads: Cell::new(0) };
    let Some(root_block) = store.blocks.first().cloned() else {
        return;
    };
    let codec = if mode & 0x40 != 0 { walk::RAW } else { walk::DAG_PB };
    let root = Cid::new_v1(codec, Code::Sha2_256.digest(&root_block));
    let scope = match mode & 3 {
        0 => Scope::Block,
        1 => Scope::Entity,
        _ => Scope::All,
    };
    let range = (mode & 8 != 0).then(|| {
        let first = u64::from(*from) * 97;
        (first, first + u64::from(*span) * 97)
    });
    let segments: Vec<String> =
        ["a", "b", "c"].iter().take(usize::from((mode >> 4) & 3)).map(|s| s.to_string()).collect();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    runtime.block_on(async {
        let _ = walk::file_size(&root, &root_block);
        let Ok(resolved) = walk::resolve(&store, root, root_block, &segments).await else {
            return;
        };
        let (terminus, block) = (resolved.terminus, resolved.block.clone());
        let _ = walk::CarWalk::new(&store, Discard, mode & 4 != 0).run(resolved, scope, range).await;
        store.reads.set(0);
        if walk::file_size(&terminus, &block).is_some() {
            let _ = walk::file_bytes(&store, terminus, block, range, &mut Discard).await;
        }
    });
}

fn split(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let at = data.windows(BLOCK_SEPARATOR.len()).position(|w| w == BLOCK_SEPARATOR);
        let (block, rest) = match at {
            Some(at) => (&data[..at], &data[at + BLOCK_SEPARATOR.len()..]),
            None => (data, &data[data.len()..]),
        };
        data = rest;
        Some(block)
    })
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let hash = Code::Sha2_256.digest(data);
    out.copy_from_slice(&hash.digest()[..32]);
    out
}
