//! Where imports put their blocks: [`BlockSink`] marks each block against GC, writes it unsynced
//! and makes everything durable in one pass at the end; [`ImportProtection`] is what keeps the
//! blocks of a finished import safe until its pin is recorded.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cid::Cid;

use crate::blockfile::{block_path, sync_paths, write_unsynced};
use crate::gc::Protection;
use crate::{IpfsError, Node};

/// Written files are synced in batches of this many, so the list of unsynced files stays short
/// however large the import.
const SYNC_BATCH: usize = 1024;

/// Keeps every block of one import safe from [`Node::gc`] while it lives. Drop it once the pin of
/// the import's roots is recorded (or once the import is abandoned); the blocks are then
/// collectable like any unpinned block.
pub struct ImportProtection {
    _protection: Protection,
}

impl std::fmt::Debug for ImportProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportProtection").finish_non_exhaustive()
    }
}

/// The block writer shared by the UnixFS and CAR importers.
pub(crate) struct BlockSink {
    node: Node,
    protection: Protection,
    /// Files written and not yet synced (at most [`SYNC_BATCH`]).
    unsynced: Vec<PathBuf>,
    /// Every shard folder written to, synced once at the end.
    folders: BTreeSet<PathBuf>,
    /// Distinct blocks written and their bytes.
    pub(crate) blocks: u64,
    pub(crate) bytes: u64,
}

impl BlockSink {
    pub(crate) fn new(node: &Node) -> BlockSink {
        BlockSink {
            node: node.clone(),
            protection: node.inner.guard.protect(),
            unsynced: Vec::new(),
            folders: BTreeSet::new(),
            blocks: 0,
            bytes: 0,
        }
    }

    /// Marks the block against GC, then writes it (off the async worker). A block this import
    /// already wrote is not written again.
    pub(crate) async fn put(&mut self, cid: Cid, data: Vec<u8>) -> Result<(), IpfsError> {
        let fresh = {
            let _shared = self.node.inner.guard.lock.read().await;
            self.protection.mark(&cid)
        };
        if !fresh {
            return Ok(());
        }
        let path = block_path(&self.node.inner.repo_path, &cid);
        let target = path.clone();
        let len = data.len() as u64;
        tokio::task::spawn_blocking(move || write_unsynced(&target, &data))
            .await
            .map_err(|e| IpfsError::Store(format!("block write task failed: {e}")))?
            .map_err(|source| IpfsError::WriteBlock { cid, source })?;
        if let Some(folder) = path.parent() {
            if !self.folders.contains(folder) {
                self.folders.insert(folder.to_path_buf());
            }
        }
        self.unsynced.push(path);
        self.blocks += 1;
        self.bytes += len;
        if self.unsynced.len() >= SYNC_BATCH {
            sync_paths(std::mem::take(&mut self.unsynced)).await?;
        }
        Ok(())
    }

    /// Syncs what is left and every folder; returns the protection of the written blocks.
    pub(crate) async fn finish(mut self) -> Result<ImportProtection, IpfsError> {
        let mut work = std::mem::take(&mut self.unsynced);
        work.extend(std::mem::take(&mut self.folders));
        sync_paths(work).await?;
        Ok(ImportProtection { _protection: self.protection })
    }
}
