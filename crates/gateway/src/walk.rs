//! Walking a DAG from the local store in the order the Trustless Gateway asks for: UnixFS path
//! resolution ([`resolve`], flat and HAMT-sharded directories, keeping only the shards on the way
//! to the entry) and the blocks of each `dag-scope` ([`CarWalk`]), depth-first, one block in hand
//! at a time. Every block comes from a [`Blocks`] source; nothing here reaches the network.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};

use bytes::Bytes;
use cid::Cid;
use futures_util::stream::{FuturesOrdered, StreamExt};
use rust_unixfs::dir::{describe, NodeDescription};
use rust_unixfs::file::visit::{FileVisit, IdleFileVisit};
use rust_unixfs::MaybeResolved;

use crate::range::walk_target;
use crate::request::Scope;
use crate::GatewayError;

pub(crate) const RAW: u64 = 0x55;
pub(crate) const DAG_PB: u64 = 0x70;
/// Multihash code of identity CIDs: their data is in the CID, so CARs do not carry them and
/// they are always servable.
pub(crate) const IDENTITY: u64 = 0x00;
/// The most distinct blocks a `car-dups=n` response remembers (a 64-bit hash each, about 16 MiB
/// at most); a DAG with more blocks must be asked for with `car-dups=y`.
pub(crate) const MAX_SEEN: usize = 1 << 20;
/// Blocks of a file read ahead of the one being written.
const READ_AHEAD: usize = 4;

/// Where blocks come from: the local store only.
pub(crate) trait Blocks {
    /// The block of `cid`, or `None` when the store does not have it.
    async fn get(&self, cid: &Cid) -> Result<Option<Bytes>, GatewayError>;
}

/// Where a walk's blocks go.
pub(crate) trait Sink {
    async fn block(&mut self, cid: &Cid, data: &Bytes) -> Result<(), GatewayError>;
}

async fn need<B: Blocks>(blocks: &B, cid: &Cid) -> Result<Bytes, GatewayError> {
    blocks.get(cid).await?.ok_or(GatewayError::MissingBlock(*cid))
}

/// [`need`] with the CID moved in, so that reads ahead are futures of one type.
async fn need_owned<B: Blocks>(blocks: &B, cid: Cid) -> Result<Bytes, GatewayError> {
    need(blocks, &cid).await
}

/// A path resolved from the root: the blocks on the way and the terminus.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The blocks met on the way (each directory, and the HAMT shards from its root to the
    /// bucket holding the entry), in order; empty without a path.
    pub(crate) path: Vec<(Cid, Bytes)>,
    pub(crate) terminus: Cid,
    pub(crate) block: Bytes,
    /// The root and each segment's CID (`X-Ipfs-Roots`).
    pub(crate) roots: Vec<Cid>,
}

/// Resolves `segments` below `root` through UnixFS directories.
pub(crate) async fn resolve<B: Blocks>(
    blocks: &B,
    root: Cid,
    root_block: Bytes,
    segments: &[String],
) -> Result<Resolved, GatewayError> {
    let mut path = Vec::new();
    let mut roots = vec![root];
    let (mut cid, mut block) = (root, root_block);
    for segment in segments {
        let not_found = || GatewayError::PathNotFound(format!("no {segment:?} in {cid}"));
        if cid.codec() != DAG_PB {
            return Err(GatewayError::PathNotFound(format!("{cid} is not a UnixFS directory")));
        }
        let mut cache = None;
        let next = match rust_unixfs::resolve(&block, segment, &mut cache) {
            Ok(MaybeResolved::Found(next)) => {
                path.push((cid, block.clone()));
                next
            }
            Ok(MaybeResolved::NotFound) => return Err(not_found()),
            Ok(MaybeResolved::NeedToLoadMore(lookup)) => {
                let (shards, next) = hamt_lookup(blocks, cid, &block, lookup).await?.ok_or_else(not_found)?;
                path.extend(shards);
                next
            }
            Err(e) => return Err(GatewayError::PathNotFound(format!("cannot resolve {segment:?} in {cid}: {e}"))),
        };
        block = blocks.get(&next).await?.ok_or_else(|| GatewayError::PathNotFound(format!("{next} is not here")))?;
        cid = next;
        roots.push(cid);
    }
    Ok(Resolved { path, terminus: cid, block, roots })
}

/// Finds an entry below a HAMT root. rust-unixfs searches the buckets without hashing the name,
/// so it may open shards off the entry's way: the parent of each shard is remembered, and only
/// the chain from the root to the shard holding the entry is returned (with the entry's CID).
async fn hamt_lookup<B: Blocks>(
    blocks: &B,
    root: Cid,
    root_block: &Bytes,
    mut lookup: rust_unixfs::dir::ShardedLookup<'_>,
) -> Result<Option<(Vec<(Cid, Bytes)>, Cid)>, GatewayError> {
    let mut parents: HashMap<Cid, Cid> = HashMap::new();
    remember_buckets(&mut parents, root, root_block);
    let mut cache = None;
    loop {
        let shard = *lookup.pending_links().0;
        let block = need(blocks, &shard).await?;
        remember_buckets(&mut parents, shard, &block);
        match lookup.continue_walk(&block, &mut cache) {
            Ok(MaybeResolved::Found(entry)) => {
                let mut chain = vec![(shard, block)];
                let mut at = shard;
                while let Some(parent) = parents.get(&at).copied() {
                    chain
                        .push((parent, if parent == root { root_block.clone() } else { need(blocks, &parent).await? }));
                    at = parent;
                }
                chain.reverse();
                return Ok(Some((chain, entry)));
            }
            Ok(MaybeResolved::NotFound) => return Ok(None),
            Ok(MaybeResolved::NeedToLoadMore(next)) => lookup = next,
            Err(e) => return Err(GatewayError::Decode { cid: shard, reason: e.to_string() }),
        }
    }
}

/// The child shards of a HAMT shard: links whose name is the two-character bucket alone.
fn buckets(block: &[u8]) -> Vec<Cid> {
    match describe(block) {
        NodeDescription::HamtShard { links } => {
            links.into_iter().filter(|l| l.name.len() == 2).map(|l| l.target).collect()
        }
        _ => Vec::new(),
    }
}

fn remember_buckets(parents: &mut HashMap<Cid, Cid>, shard: Cid, block: &[u8]) {
    for child in buckets(block) {
        parents.entry(child).or_insert(shard);
    }
}

/// The size of the UnixFS file `cid` (its root block `block`), or `None` when it is not a file.
pub(crate) fn file_size(cid: &Cid, block: &[u8]) -> Option<u64> {
    match cid.codec() {
        RAW => Some(block.len() as u64),
        DAG_PB => match describe(block) {
            NodeDescription::File { size } => Some(size),
            _ => None,
        },
        _ => None,
    }
}

/// The blocks of one CAR response after its header, written to a [`Sink`] in depth-first order.
pub(crate) struct CarWalk<'a, B, S> {
    pub(crate) blocks: &'a B,
    pub(crate) sink: S,
    /// `car-dups=y`: write a block each time it is met.
    pub(crate) dups: bool,
    seen: HashSet<u64>,
    hasher: RandomState,
}

impl<'a, B: Blocks, S: Sink> CarWalk<'a, B, S> {
    pub(crate) fn new(blocks: &'a B, sink: S, dups: bool) -> Self {
        CarWalk { blocks, sink, dups, seen: HashSet::new(), hasher: RandomState::new() }
    }

    /// Writes the path's blocks, then what `scope` asks of the terminus; `range` is the inclusive
    /// byte range of `entity-bytes`, already resolved against the file's size.
    pub(crate) async fn run(
        &mut self,
        resolved: Resolved,
        scope: Scope,
        range: Option<(u64, u64)>,
    ) -> Result<(), GatewayError> {
        for (cid, block) in &resolved.path {
            self.emit(cid, block).await?;
        }
        let (cid, block) = (resolved.terminus, resolved.block);
        match scope {
            Scope::Block => {
                self.emit(&cid, &block).await?;
            }
            Scope::All => self.all(cid, block).await?,
            Scope::Entity => match (cid.codec(), file_size(&cid, &block)) {
                (_, Some(_)) => self.file(cid, block, range).await?,
                (DAG_PB, None) if matches!(describe(&block), NodeDescription::HamtShard { .. }) => {
                    self.hamt(cid, block).await?
                }
                _ => {
                    self.emit(&cid, &block).await?;
                }
            },
        }
        Ok(())
    }

    /// Writes a block unless `dups=n` and it was written already; returns whether it is new.
    async fn emit(&mut self, cid: &Cid, data: &Bytes) -> Result<bool, GatewayError> {
        if !self.dups {
            if !self.seen.insert(self.hasher.hash_one(cid.to_bytes())) {
                return Ok(false);
            }
            if self.seen.len() > MAX_SEEN {
                return Err(GatewayError::TooManyBlocks(MAX_SEEN));
            }
        }
        if cid.hash().code() != IDENTITY {
            self.sink.block(cid, data).await?;
        }
        Ok(true)
    }

    /// The whole DAG below `cid`. With `dups=n` a block met again is skipped with everything
    /// below it, which was written the first time.
    async fn all(&mut self, cid: Cid, block: Bytes) -> Result<(), GatewayError> {
        let mut stack: Vec<Cid> = Vec::new();
        let mut next = Some((cid, block));
        while let Some((cid, block)) = next.take() {
            if file_size(&cid, &block).is_some() {
                // A UnixFS file: its blocks are walked without decoding them to IPLD, which
                // would copy each leaf's data.
                self.file(cid, block, None).await?;
            } else if self.emit(&cid, &block).await? {
                let links = pincluster_tracker::block_links(&cid, &block)
                    .map_err(|e| GatewayError::Decode { cid, reason: e.to_string() })?;
                drop(block);
                stack.extend(links.into_iter().rev());
            }
            if let Some(child) = stack.pop() {
                next = Some((child, need(self.blocks, &child).await?));
            }
        }
        Ok(())
    }

    /// A UnixFS file: every block, or with a range only the blocks that hold some of its bytes
    /// (so blocks outside it need not even be in the store).
    async fn file(&mut self, cid: Cid, block: Bytes, range: Option<(u64, u64)>) -> Result<(), GatewayError> {
        // Written already (dups=n): so is everything below it.
        if !self.emit(&cid, &block).await? || cid.codec() == RAW {
            return Ok(());
        }
        let visit = match range {
            Some((first, last)) => IdleFileVisit::default().with_target_range(walk_target(first, last)),
            None => IdleFileVisit::default(),
        };
        let decode = |cid: Cid, e: &dyn std::fmt::Display| GatewayError::Decode { cid, reason: e.to_string() };
        let mut visit = visit.start(&block).map_err(|e| decode(cid, &e))?.3;
        let mut cache = None;
        // The next blocks of the walk are read while this one is written: each read (and its
        // hash check) runs on the store's blocking threads, so they overlap with the sending.
        let blocks = self.blocks;
        let mut ahead = FuturesOrdered::new();
        let mut queued: VecDeque<Cid> = VecDeque::new();
        while let Some(current) = visit {
            let (next, rest) = current.pending_links();
            let mut rest = rest.peekable();
            let last = rest.peek().is_none();
            let child = *next;
            if queued.front() != Some(&child) {
                ahead = FuturesOrdered::new();
                queued.clear();
            }
            for link in std::iter::once(next).chain(rest) {
                if queued.len() >= READ_AHEAD {
                    break;
                }
                if !queued.contains(link) {
                    queued.push_back(*link);
                    ahead.push_back(need_owned(blocks, *link));
                }
            }
            let data = ahead.next().await.ok_or(GatewayError::MissingBlock(child))??;
            queued.pop_front();
            self.emit(&child, &data).await?;
            visit = current.continue_walk(&data, &mut cache).map_err(|e| decode(child, &e))?.1;
            refuse_empty_visit(visit.as_ref(), last, child)?;
        }
        Ok(())
    }

    /// A HAMT directory's listing: its root and every shard below, no entries.
    async fn hamt(&mut self, cid: Cid, block: Bytes) -> Result<(), GatewayError> {
        let mut stack: Vec<Cid> = Vec::new();
        let mut next = Some((cid, block));
        while let Some((cid, block)) = next.take() {
            if self.emit(&cid, &block).await? {
                stack.extend(buckets(&block).into_iter().rev());
            }
            if let Some(child) = stack.pop() {
                next = Some((child, need(self.blocks, &child).await?));
            }
        }
        Ok(())
    }
}

/// Streams the bytes of `first..=last` of the UnixFS file `cid` (or all of it) to `out`, reading
/// only the blocks that hold them.
pub(crate) async fn file_bytes<B: Blocks, O: ByteSink>(
    blocks: &B,
    cid: Cid,
    block: Bytes,
    range: Option<(u64, u64)>,
    out: &mut O,
) -> Result<(), GatewayError> {
    let visit = match range {
        Some((first, last)) => IdleFileVisit::default().with_target_range(first..last.saturating_add(1)),
        None => IdleFileVisit::default(),
    };
    let decode = |cid: Cid, e: &dyn std::fmt::Display| GatewayError::Decode { cid, reason: e.to_string() };
    if cid.codec() == RAW {
        let (content, ..) = visit.start_from_raw(&block);
        return out.bytes(block.slice_ref(content)).await;
    }
    let (content, _, _, mut visit) = visit.start(&block).map_err(|e| decode(cid, &e))?;
    if !content.is_empty() {
        out.bytes(block.slice_ref(content)).await?;
    }
    let mut cache = None;
    while let Some(current) = visit {
        let (child, last) = {
            let (next, mut rest) = current.pending_links();
            (*next, rest.next().is_none())
        };
        let data = need(blocks, &child).await?;
        let (content, next) = current.continue_walk(&data, &mut cache).map_err(|e| decode(child, &e))?;
        if !content.is_empty() {
            out.bytes(data.slice_ref(content)).await?;
        }
        refuse_empty_visit(next.as_ref(), last, child)?;
        visit = next;
    }
    Ok(())
}

/// rust-unixfs 0.6 trusts each block's sizes: when the last pending block of a ranged file
/// visit lists none of its children inside the range (its sizes disagree with its parent's),
/// it returns a visit with nothing pending, whose `pending_links` panics. Such a DAG is refused
/// here. Whether the visit is empty shows only in its Debug form, and only `last` (the block
/// just read was the last one pending) can lead there, so that form is built rarely.
fn refuse_empty_visit(visit: Option<&FileVisit>, last: bool, child: Cid) -> Result<(), GatewayError> {
    match visit {
        Some(visit) if last && format!("{visit:?}").starts_with("FileVisit { pending: [],") => {
            Err(GatewayError::Decode {
                cid: child,
                reason: "its sizes disagree with its parent's: none of its blocks holds the asked range".into(),
            })
        }
        _ => Ok(()),
    }
}

/// Where a deserialized file's bytes go.
pub(crate) trait ByteSink {
    async fn bytes(&mut self, chunk: Bytes) -> Result<(), GatewayError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks in memory, for walks without a node.
    struct Memory(HashMap<Cid, Bytes>);

    impl Blocks for Memory {
        async fn get(&self, cid: &Cid) -> Result<Option<Bytes>, GatewayError> {
            Ok(self.0.get(cid).cloned())
        }
    }

    struct Collect(Vec<Cid>);

    impl Sink for &mut Collect {
        async fn block(&mut self, cid: &Cid, _: &Bytes) -> Result<(), GatewayError> {
            self.0.push(*cid);
            Ok(())
        }
    }

    /// `content` as a UnixFS file in `chunk`-byte leaves under nodes of at most `fanout` links,
    /// as rust-unixfs lays it out, in memory; returns the root.
    fn build(content: &[u8], chunk: usize, fanout: usize) -> (Cid, Memory) {
        use rust_unixfs::file::adder::{BalancedCollector, Chunker, FileAdder};
        let mut adder = FileAdder::builder()
            .with_chunker(Chunker::Size(chunk))
            .with_collector(BalancedCollector::with_branching_factor(fanout))
            .build();
        let mut blocks = Vec::new();
        let mut fed = 0;
        while fed < content.len() {
            let (produced, taken) = adder.push(&content[fed..]);
            blocks.extend(produced);
            fed += taken;
        }
        blocks.extend(adder.finish());
        let root = blocks.last().map(|(c, _)| *c).expect("a root");
        (root, Memory(blocks.into_iter().map(|(c, d)| (c, Bytes::from(d))).collect()))
    }

    /// A file of `len` bytes in 1000-byte leaves under nodes of 4 links.
    fn file(len: usize) -> (Cid, Memory, Vec<u8>) {
        let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let (root, memory) = build(&content, 1000, 4);
        (root, memory, content)
    }

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(future)
    }

    struct Gather(Vec<u8>);

    impl ByteSink for Gather {
        async fn bytes(&mut self, chunk: Bytes) -> Result<(), GatewayError> {
            self.0.extend_from_slice(&chunk);
            Ok(())
        }
    }

    #[test]
    fn a_file_walk_is_depth_first_and_a_range_takes_only_its_leaves() {
        let (root, memory, content) = file(10_500);
        let root_block = memory.0.get(&root).cloned().expect("root block");
        let resolved = || Resolved { path: vec![], terminus: root, block: root_block.clone(), roots: vec![root] };
        let mut all = Collect(Vec::new());
        run(CarWalk::new(&memory, &mut all, false).run(resolved(), Scope::All, None)).expect("walk");
        assert_eq!(all.0.len(), memory.0.len(), "every block once");
        assert_eq!(all.0[0], root, "the root first");
        let mut entity = Collect(Vec::new());
        run(CarWalk::new(&memory, &mut entity, false).run(resolved(), Scope::Entity, None)).expect("walk");
        assert_eq!(entity.0, all.0, "a whole file's entity is the whole DAG, in the same order");

        // 11 leaves of 1000 bytes (the last 500) under a tree of fanout 4: bytes 1500..=2500
        // live in leaves 1 and 2.
        let leaves: Vec<Cid> = all.0.iter().copied().filter(|c| memory.0[c].len() > 900 && *c != root).collect();
        let mut ranged = Collect(Vec::new());
        run(CarWalk::new(&memory, &mut ranged, false).run(resolved(), Scope::Entity, Some((1500, 2500))))
            .expect("walk");
        let got_leaves: Vec<Cid> = ranged.0.iter().copied().filter(|c| leaves.contains(c)).collect();
        assert_eq!(got_leaves, leaves[1..3].to_vec());
        assert_eq!(ranged.0[0], root);
        // A block boundary: 2000..=2999 is leaf 2 alone.
        let mut exact = Collect(Vec::new());
        run(CarWalk::new(&memory, &mut exact, false).run(resolved(), Scope::Entity, Some((2000, 2999)))).expect("walk");
        let got_leaves: Vec<Cid> = exact.0.iter().copied().filter(|c| leaves.contains(c)).collect();
        assert_eq!(got_leaves, leaves[2..3].to_vec());

        let mut block = Collect(Vec::new());
        run(CarWalk::new(&memory, &mut block, false).run(resolved(), Scope::Block, None)).expect("walk");
        assert_eq!(block.0, vec![root]);

        let mut bytes = Gather(Vec::new());
        run(file_bytes(&memory, root, root_block.clone(), Some((1500, 2500)), &mut bytes)).expect("bytes");
        assert_eq!(bytes.0, content[1500..=2500].to_vec());
        let mut whole = Gather(Vec::new());
        run(file_bytes(&memory, root, root_block, None, &mut whole)).expect("bytes");
        assert_eq!(whole.0, content);
    }

    #[test]
    fn dups_are_written_once_unless_asked() {
        // Zeros chunk into identical leaves.
        let (root, memory) = build(&[0u8; 1000], 100, 174);
        let block = memory.0[&root].clone();
        let resolved = || Resolved { path: vec![], terminus: root, block: block.clone(), roots: vec![root] };
        let mut once = Collect(Vec::new());
        run(CarWalk::new(&memory, &mut once, false).run(resolved(), Scope::All, None)).expect("walk");
        assert_eq!(once.0.len(), 2, "the root and one leaf");
        let mut every = Collect(Vec::new());
        run(CarWalk::new(&memory, &mut every, true).run(resolved(), Scope::All, None)).expect("walk");
        assert_eq!(every.0.len(), 11, "the root and ten leaves");
    }

    #[test]
    fn a_missing_block_is_an_error() {
        let (root, mut memory, _) = file(5_000);
        let block = memory.0[&root].clone();
        let leaf = *memory.0.keys().find(|c| **c != root).expect("a leaf");
        memory.0.remove(&leaf);
        let resolved = Resolved { path: vec![], terminus: root, block, roots: vec![root] };
        let mut got = Collect(Vec::new());
        let result = run(CarWalk::new(&memory, &mut got, false).run(resolved, Scope::All, None));
        assert!(matches!(result, Err(GatewayError::MissingBlock(c)) if c == leaf));
    }
}
