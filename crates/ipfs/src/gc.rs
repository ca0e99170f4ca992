//! Garbage collection and store figures: [`Node::gc`], [`Node::repo_stat`], and the [`Guard`]
//! that keeps the blocks of in-progress pins safe from a concurrent collection.
//!
//! Blocks are compared by multihash: rust-ipfs names block files by CIDv1 while a pin made from
//! a CIDv0 records CIDv0 links, so comparing whole CIDs would collect pinned blocks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cid::Cid;
use futures_util::StreamExt;

use crate::{IpfsError, Node};

/// What one garbage collection removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Blocks removed from the store.
    pub removed_blocks: u64,
    /// Their total size in bytes.
    pub removed_bytes: u64,
}

/// Figures of the block store, like Kubo's `repo/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepoStat {
    /// Blocks in the store.
    pub blocks: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// A set of multihashes (as bytes).
pub(crate) type HashSetShared = Arc<Mutex<HashSet<Vec<u8>>>>;

/// Coordinates pins in progress with the collector.
///
/// A walk marks each block's multihash in its own set while holding `lock` for reading, before it
/// checks the store for the block or asks the network for it; the collector holds `lock` for
/// writing for its whole run and keeps every marked block. So a block is either marked before a
/// collection starts (and kept) or looked up after it ended (and fetched again if it was removed).
#[derive(Default)]
pub(crate) struct Guard {
    pub(crate) lock: tokio::sync::RwLock<()>,
    walks: Walks,
    next_id: AtomicU64,
}

/// The mark sets of every walk or import in progress, by id.
type Walks = Arc<Mutex<HashMap<u64, HashSetShared>>>;

impl Guard {
    /// Registers a walk or an import; its marks last until the returned value is dropped (it
    /// does not borrow the guard, so an import can hand it to its caller).
    pub(crate) fn protect(&self) -> Protection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let set = HashSetShared::default();
        self.walks.lock().unwrap_or_else(PoisonError::into_inner).insert(id, set.clone());
        Protection { walks: self.walks.clone(), id, set }
    }

    fn is_protected(&self, multihash: &[u8]) -> bool {
        let walks = self.walks.lock().unwrap_or_else(PoisonError::into_inner);
        walks.values().any(|set| set.lock().unwrap_or_else(PoisonError::into_inner).contains(multihash))
    }
}

/// One walk's (or import's) marks; removed from the [`Guard`] on drop (success, failure or
/// cancellation).
pub(crate) struct Protection {
    walks: Walks,
    id: u64,
    set: HashSetShared,
}

impl Protection {
    /// Marks a block; returns false when it was already marked by this walk.
    /// Call with `Guard::lock` held for reading.
    pub(crate) fn mark(&self, cid: &Cid) -> bool {
        self.set.lock().unwrap_or_else(PoisonError::into_inner).insert(cid.hash().to_bytes())
    }
}

impl Drop for Protection {
    fn drop(&mut self) {
        self.walks.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

impl Node {
    /// Removes every block that no pin reaches (recursive pins reach their whole DAG, direct pins
    /// their root), that no pin or import in progress has seen, and that is not reachable
    /// *locally* from `extra_roots`. Blocks shared by several pins stay while any of them remains.
    /// Pins in progress wait while a collection runs.
    ///
    /// `extra_roots` are the pins the caller has recorded but not finished (queued, pinning,
    /// failed): their DAGs are walked through the blocks on disk only (nothing is fetched), so an
    /// imported DAG whose pin is still queued is kept whole. A missing block ends that branch; a
    /// block that cannot be decoded is kept, its links unknown.
    pub async fn gc(&self, extra_roots: &[Cid]) -> Result<GcStats, IpfsError> {
        let guard = &self.inner.guard;
        let _exclusive = guard.lock.write().await;
        let repo = self.inner.ipfs.repo();

        let mut live: HashSet<Vec<u8>> = HashSet::new();
        let mut pins = repo.list_pins(None).await;
        while let Some(pin) = pins.next().await {
            let (cid, _) = pin.map_err(IpfsError::store)?;
            live.insert(cid.hash().to_bytes());
        }
        self.mark_local_dags(extra_roots, &mut live).await;

        let mut doomed: Vec<Cid> = Vec::new();
        let mut blocks = repo.list_blocks().await;
        while let Some(cid) = blocks.next().await {
            let multihash = cid.hash().to_bytes();
            if !live.contains(&multihash) && !guard.is_protected(&multihash) {
                doomed.push(cid);
            }
        }

        let mut stats = GcStats::default();
        for cid in doomed {
            let size = repo.get_blocks_size(&[cid]).await.ok().flatten().unwrap_or(0);
            match self.inner.ipfs.remove_block(cid, false).await {
                Ok(removed) if !removed.is_empty() => {
                    stats.removed_blocks += 1;
                    stats.removed_bytes += size as u64;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%cid, error = %e, "gc could not remove block"),
            }
        }
        metrics::counter!(crate::metrics::GC_RUNS).increment(1);
        metrics::counter!(crate::metrics::GC_FREED_BYTES).increment(stats.removed_bytes);
        metrics::counter!(crate::metrics::GC_REMOVED_BLOCKS).increment(stats.removed_blocks);
        tracing::info!(blocks = stats.removed_blocks, bytes = stats.removed_bytes, "gc done");
        Ok(stats)
    }

    /// Adds to `live` every block reachable from `roots` through blocks on disk (depth first,
    /// each block read once).
    async fn mark_local_dags(&self, roots: &[Cid], live: &mut HashSet<Vec<u8>>) {
        let repo = self.inner.ipfs.repo();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut stack: Vec<Cid> = Vec::new();
        for root in roots {
            if seen.insert(root.hash().to_bytes()) {
                stack.push(*root);
            }
        }
        while let Some(cid) = stack.pop() {
            live.insert(cid.hash().to_bytes());
            if cid.codec() == crate::walk::RAW {
                continue;
            }
            let block = match repo.get_block_now(&cid).await {
                Ok(Some(block)) => block,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(%cid, error = %e, "gc cannot read a block of an unfinished pin");
                    continue;
                }
            };
            let mut links: Vec<Cid> = Vec::new();
            if let Err(e) = block.references(&mut links) {
                tracing::warn!(%cid, error = %e, "gc cannot decode a block of an unfinished pin");
                continue;
            }
            for link in links {
                if seen.insert(link.hash().to_bytes()) {
                    stack.push(link);
                }
            }
        }
    }

    /// Counts the blocks in the store and their total size.
    pub async fn repo_stat(&self) -> Result<RepoStat, IpfsError> {
        let repo = self.inner.ipfs.repo();
        let blocks = repo.list_blocks().await.count().await as u64;
        let bytes = repo.get_total_size().await.map_err(IpfsError::store)? as u64;
        Ok(RepoStat { blocks, bytes })
    }
}
