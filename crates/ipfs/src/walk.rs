//! Pinning: [`Node::pin`] walks a DAG, fetching what is missing, then records the pin.
//!
//! The walk is depth-first with a bounded window of outstanding wants (`max_outstanding`), so
//! memory stays bounded whatever the DAG size: at most the window's blocks, the stack of CIDs
//! still to visit and one multihash per block seen. Blocks already on disk are read, not fetched.
//! Every block the network sends is hash-checked by the engine and written (fsynced) to the block
//! store before it reaches the walk; the pin record is written only after the whole DAG is on
//! disk.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use libp2p::kad::RecordKey;
use multiaddr::Multiaddr;
use pincluster_model::{PinMode, Progress};
use rust_ipfs::repo::{PinMode as EnginePinMode, PinStore};
use rust_ipfs::Block;
use tokio::time::Instant;

use crate::error::{ProvidersFound, Stall};
use crate::gc::Protection;
use crate::{IpfsError, Node};

pub(crate) const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const DAG_CBOR: u64 = 0x71;
const DAG_JSON: u64 = 0x0129;

/// How one pin fetches its DAG.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Peers dialled first, best effort: a failed dial does not fail the pin. After them, every
    /// connected peer is asked, then DHT providers.
    pub origins: Vec<Multiaddr>,
    /// The pin fails when no block arrives for this long.
    pub stall_timeout: Duration,
    /// The pin fails when the DAG's blocks add up to more bytes than this.
    pub max_dag_size: Option<u64>,
    /// The most blocks wanted from the network at once (at least 1).
    pub max_outstanding: usize,
}

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions {
            origins: Vec::new(),
            stall_timeout: Duration::from_secs(60),
            max_dag_size: None,
            max_outstanding: 64,
        }
    }
}

/// What a successful pin found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DagStats {
    /// Blocks in the pinned DAG (the root only for a direct pin), each counted once.
    pub blocks: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// How many of them came from the network during this call (the others were on disk).
    pub fetched_blocks: u64,
    /// Their total size in bytes.
    pub fetched_bytes: u64,
}

impl Node {
    /// Fetches (or confirms) every block of the DAG under `cid` (`Recursive`) or its root block
    /// (`Direct`), then pins it so [`Node::gc`] keeps it.
    ///
    /// Blocks already in the store are not fetched again, so a pin interrupted by a crash resumes
    /// where it stopped. `progress` is called after each block with the blocks and bytes of the DAG
    /// confirmed so far (on disk before the call or fetched by it). Fails with a reason when no
    /// block arrives for `stall_timeout`, when the DAG exceeds `max_dag_size`, or when a block
    /// cannot be decoded for its links (dag-pb, raw, dag-cbor and dag-json are understood).
    pub async fn pin(
        &self,
        cid: &Cid,
        mode: PinMode,
        options: FetchOptions,
        mut progress: impl FnMut(Progress),
    ) -> Result<DagStats, IpfsError> {
        self.dial_origins(&options.origins).await;
        let lookup = ProviderLookup::default();
        // Without origins the DHT is the likely source: ask it at once, beside connected peers.
        let delay = if options.origins.is_empty() { Duration::ZERO } else { PROVIDER_LOOKUP_DELAY };
        let _lookup = crate::AbortOnDrop(tokio::spawn(dial_providers(self.clone(), *cid, delay, lookup.clone())));
        let protection = self.inner.guard.protect();
        let mut walk = Walk {
            node: self,
            protection: &protection,
            mode,
            options: &options,
            stats: DagStats::default(),
            stack: Vec::new(),
            refs: Vec::new(),
            fetched: Vec::new(),
            progress: &mut progress,
        };
        walk.run(*cid).await.map_err(|e| match e {
            IpfsError::Stalled(mut stall) => {
                stall.providers = lookup.outcome();
                IpfsError::Stalled(stall)
            }
            other => other,
        })?;
        let Walk { stats, refs, fetched, .. } = walk;
        // Every fetched block is on disk before the pin is recorded.
        crate::blockfile::sync_blocks(&self.inner.repo_path, &fetched).await?;

        let root = canonical(cid);
        let store = self.inner.ipfs.repo().data_store();
        match mode {
            PinMode::Recursive => {
                let refs =
                    futures_util::stream::iter(refs.into_iter().map(Ok::<Cid, rust_ipfs::refs::IpldRefsError>)).boxed();
                store.insert_recursive_pin(&root, refs).await.map_err(IpfsError::store)?;
            }
            PinMode::Direct => {
                if !self.pinned_as(&root, EnginePinMode::Recursive).await {
                    store.insert_direct_pin(&root).await.map_err(IpfsError::store)?;
                }
            }
        }
        drop(protection);
        Ok(stats)
    }

    /// Announces this node on the DHT as a provider of `cid`; false when no DHT peer took the
    /// record (or there is none).
    pub async fn provide(&self, cid: &Cid) -> bool {
        self.inner.dht.provide(RecordKey::new(&cid.hash().to_bytes())).await
    }

    /// Announces every block of the local DAG under `root` (what is on disk; nothing is fetched),
    /// a few at a time; returns how many announcements reached a peer and how many did not.
    pub async fn provide_dag(&self, root: &Cid) -> (u64, u64) {
        let repo = self.inner.ipfs.repo();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![*root];
        let mut inflight = FuturesUnordered::new();
        let (mut ok, mut failed) = (0u64, 0u64);
        loop {
            while inflight.len() < PROVIDE_DAG_CONCURRENCY {
                let Some(cid) = stack.pop() else { break };
                if !seen.insert(*cid.hash()) {
                    continue;
                }
                if let Ok(Some(block)) = repo.get_block_now(&cid).await {
                    let mut links: Vec<Cid> = Vec::new();
                    if cid.codec() != RAW && block.references(&mut links).is_ok() {
                        stack.extend(links);
                    }
                }
                inflight.push(async move { self.provide(&cid).await });
            }
            match inflight.next().await {
                Some(true) => ok += 1,
                Some(false) => failed += 1,
                None => return (ok, failed),
            }
        }
    }
    /// Removes the pin of `cid` (direct or recursive, whichever form of the CID was pinned). The
    /// blocks stay until [`Node::gc`]. Unpinning a CID that is not pinned is not an error.
    pub async fn unpin(&self, cid: &Cid) -> Result<(), IpfsError> {
        let root = canonical(cid);
        let pinned =
            self.pinned_as(&root, EnginePinMode::Recursive).await || self.pinned_as(&root, EnginePinMode::Direct).await;
        if !pinned {
            return Ok(());
        }
        self.inner.ipfs.remove_pin(root).recursive().await.map_err(IpfsError::store)
    }

    /// Whether the block is in the store. Blocks are found by multihash: a CIDv0 finds the block
    /// fetched as CIDv1 and the other way round, and a raw CID finds a dag-pb block with the same
    /// hash.
    pub async fn has_block(&self, cid: &Cid) -> Result<bool, IpfsError> {
        let repo = self.inner.ipfs.repo();
        let mut codecs = vec![cid.codec()];
        for codec in [DAG_PB, RAW, DAG_CBOR, DAG_JSON] {
            if !codecs.contains(&codec) {
                codecs.push(codec);
            }
        }
        for codec in codecs {
            let candidate = Cid::new_v1(codec, *cid.hash());
            if repo.contains(&candidate).await.map_err(IpfsError::store)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn pinned_as(&self, root: &Cid, mode: EnginePinMode) -> bool {
        self.inner.ipfs.query_pins(vec![*root], Some(mode)).await.is_ok()
    }

    /// Dials every origin at once; failures are only logged.
    async fn dial_origins(&self, origins: &[Multiaddr]) {
        let dials = origins.iter().map(|addr| {
            let addr = addr.clone();
            async move {
                if let Err(e) = self.connect(addr).await {
                    tracing::info!(error = %e, "origin not reachable");
                }
            }
        });
        futures_util::future::join_all(dials).await;
    }
}

/// When a pin with origins has not finished after this long, DHT providers of its root are
/// looked up too (Kubo's Bitswap waits 1 s before its provider search).
const PROVIDER_LOOKUP_DELAY: Duration = Duration::from_secs(1);
/// The most providers dialled per lookup.
const MAX_PROVIDERS: usize = 8;
/// How often a walk looks at the block store's free space.
const SPACE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The walk gives up when less than the reserve and this is free: a block write is refused
/// below the reserve plus the block's size, and Bitswap blocks are at most 2 MiB.
const MAX_BLOCK_MARGIN: u64 = 2 * 1024 * 1024;
/// Blocks of one DAG announced at once by [`Node::provide_dag`].
const PROVIDE_DAG_CONCURRENCY: usize = 8;

/// What one pin's provider lookup found, for the reason of a pin that stalls.
#[derive(Clone, Default)]
struct ProviderLookup(Arc<Mutex<Option<ProvidersFound>>>);

impl ProviderLookup {
    fn outcome(&self) -> Option<ProvidersFound> {
        self.0.lock().ok().and_then(|found| *found)
    }

    fn set(&self, found: ProvidersFound) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(found);
        }
    }
}

/// Looks up DHT providers of `root` (after `delay`, so pins served by their origins never pay
/// for it); the DHT dials each one found and the Bitswap engine then
/// asks them.
async fn dial_providers(node: Node, root: Cid, delay: Duration, lookup: ProviderLookup) {
    tokio::time::sleep(delay).await;
    let dht = &node.inner.dht;
    if !dht.has_peers() {
        lookup.set(ProvidersFound::NoDhtPeers);
        return;
    }
    let mut found = dht.find_providers(RecordKey::new(&root.hash().to_bytes())).await;
    let mut providers = 0usize;
    lookup.set(ProvidersFound::Searching(0));
    while let Some(peer) = found.recv().await {
        providers += 1;
        tracing::info!(%root, %peer, "found a provider in the DHT");
        lookup.set(ProvidersFound::Searching(providers));
        if providers >= MAX_PROVIDERS {
            break;
        }
    }
    lookup.set(ProvidersFound::Done(providers));
    tracing::debug!(%root, providers, "provider lookup done");
}
/// The pin record is kept under the CIDv1 form, so a pin made as CIDv0 is found as CIDv1 too.
fn canonical(cid: &Cid) -> Cid {
    Cid::new_v1(cid.codec(), *cid.hash())
}

/// The state of one pin's walk.
struct Walk<'a, F: FnMut(Progress)> {
    node: &'a Node,
    protection: &'a Protection,
    mode: PinMode,
    options: &'a FetchOptions,
    stats: DagStats,
    /// CIDs marked but not yet looked at, depth-first order (last is next).
    stack: Vec<Cid>,
    /// Every block below the root, for the recursive pin record.
    refs: Vec<Cid>,
    /// Blocks this walk fetched (written unsynced), to sync before the pin is recorded.
    fetched: Vec<Cid>,
    progress: &'a mut F,
}

impl<F: FnMut(Progress)> Walk<'_, F> {
    async fn run(&mut self, root: Cid) -> Result<(), IpfsError> {
        {
            let _shared = self.node.inner.guard.lock.read().await;
            self.protection.mark(&root);
        }
        self.stack.push(root);
        let window = self.options.max_outstanding.max(1);
        let bitswap = &self.node.inner.bitswap;
        let mut inflight = FuturesUnordered::new();
        // The CIDs of `inflight`, oldest first (at most `window` of them).
        let mut wanted: Vec<Cid> = Vec::new();
        let mut last_progress = Instant::now();
        // Blocks that arrive while the disk is short of space are dropped (see `blockfile.rs`):
        // look at the free space each second, so the pin fails saying why instead of stalling.
        let mut space_check = tokio::time::interval(SPACE_CHECK_INTERVAL);

        loop {
            while inflight.len() < window {
                let Some(cid) = self.stack.pop() else { break };
                if self.absorb_local(&cid).await? {
                    last_progress = Instant::now();
                } else {
                    let want = bitswap.fetch(cid);
                    inflight.push(want.map(move |result| (cid, result)));
                    wanted.push(cid);
                }
            }
            if inflight.is_empty() {
                if self.stack.is_empty() {
                    return Ok(());
                }
                continue;
            }
            let deadline = last_progress + self.options.stall_timeout;
            tokio::select! {
                Some((cid, result)) = inflight.next() => {
                    wanted.retain(|w| *w != cid);
                    let block = result?;
                    let len = block.data().len() as u64;
                    self.absorb(cid, len, Some(block), true).await?;
                    last_progress = Instant::now();
                }
                _ = space_check.tick() => self.check_space()?,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(IpfsError::Stalled(Box::new(Stall {
                        stalled_for: self.options.stall_timeout,
                        waiting: wanted.len(),
                        first_wanted: wanted.first().copied().unwrap_or(root),
                        blocks: self.stats.blocks,
                        bytes: self.stats.bytes,
                        providers: None,
                    })));
                }
            }
        }
    }

    /// Fails the walk when the block store's filesystem is short of space.
    #[allow(clippy::result_large_err)] // the crate's one error type, on a cold path
    fn check_space(&self) -> Result<(), IpfsError> {
        match crate::blockfile::short_of_space(&self.node.inner.repo_path, MAX_BLOCK_MARGIN) {
            Some((available, reserve)) => {
                Err(IpfsError::NoSpace { available, reserve, blocks: self.stats.blocks, bytes: self.stats.bytes })
            }
            None => Ok(()),
        }
    }

    /// Takes the block from disk when it is there (its hash checked); returns false when it must
    /// be fetched.
    async fn absorb_local(&mut self, cid: &Cid) -> Result<bool, IpfsError> {
        let repo = self.node.inner.ipfs.repo();
        // A block that cannot be read back (e.g. torn by a crash before its pin synced it) is
        // fetched again; the new copy replaces the file.
        let block = repo.get_block_now(cid).await.unwrap_or_else(|e| {
            tracing::warn!(%cid, error = %e, "unreadable block, fetching it again");
            None
        });
        match block {
            Some(block) => {
                let len = block.data().len() as u64;
                self.absorb(*cid, len, Some(block), false).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Counts a block, checks the size limit, reports progress and queues its unseen links.
    async fn absorb(&mut self, cid: Cid, len: u64, block: Option<Block>, fetched: bool) -> Result<(), IpfsError> {
        self.stats.blocks += 1;
        self.stats.bytes += len;
        if fetched {
            self.fetched.push(cid);
            self.stats.fetched_blocks += 1;
            self.stats.fetched_bytes += len;
        }
        if let Some(max) = self.options.max_dag_size {
            if self.stats.bytes > max {
                return Err(IpfsError::TooLarge { cid, max_bytes: max });
            }
        }
        (self.progress)(Progress { blocks: self.stats.blocks, bytes: self.stats.bytes });

        let Some(block) = block else { return Ok(()) };
        if self.mode == PinMode::Direct || cid.codec() == RAW {
            return Ok(());
        }
        let mut links: Vec<Cid> = Vec::new();
        block.references(&mut links).map_err(|e| IpfsError::Decode {
            cid,
            reason: if e.kind() == std::io::ErrorKind::Unsupported {
                format!("codec 0x{:x} is not supported", cid.codec())
            } else {
                e.to_string()
            },
        })?;
        drop(block);
        let _shared = self.node.inner.guard.lock.read().await;
        // Reversed so that the first link is visited first.
        for link in links.into_iter().rev() {
            if self.protection.mark(&link) {
                self.stack.push(link);
                self.refs.push(link);
            }
        }
        Ok(())
    }
}
