//! Writing fetched blocks into the engine's flat-file block store without one fsync per block,
//! then making a whole pin's blocks durable at once: [`write_unsynced`], [`sync_blocks`].
//!
//! rust-ipfs's own `put_block` serializes every write behind one lock and fsyncs the file and its
//! folder each time (about 2.3 ms per block here), which capped pins at about half of Kubo's
//! speed. The files written here use the engine's layout (`<repo>/blockstore/<shard>/<CIDv1>.data`,
//! the shard being the two characters before the last of the key), so the engine reads, serves,
//! lists and collects them like its own. A pin is recorded only after [`sync_blocks`] returned.
//!
//! Block writes stop while the filesystem has less free space than the reserve
//! ([`set_block_reserve`]), which is kept for the pinset and the Raft log: a full disk is met by
//! the block store, never by the database.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cid::Cid;

use multihash_codetable::{Code, MultihashDigest};

use crate::IpfsError;

/// Multihash code of the identity "hash": the digest is the data itself.
pub(crate) const IDENTITY: u64 = 0x00;

/// Parallel fsync tasks per pin.
const SYNC_TASKS: usize = 8;

/// Bytes block writes leave free on the block store's filesystem; 0 = no limit.
///
/// Process-wide rather than per node because every block write, the Bitswap engine's too, goes
/// through [`write_unsynced`], which knows only the file's path. The daemon runs one node.
static BLOCK_RESERVE: AtomicU64 = AtomicU64::new(0);

/// Sets the bytes block writes and pin walks leave free on the block store's filesystem (the
/// pinset's reserve); 0 turns the limit off (the default).
pub fn set_block_reserve(bytes: u64) {
    BLOCK_RESERVE.store(bytes, Ordering::Relaxed);
}

/// `Some((available, reserve))` when the filesystem holding `path` has less than `reserve +
/// extra` bytes free; `None` when there is room, no limit or no answer from the filesystem.
pub(crate) fn short_of_space(path: &Path, extra: u64) -> Option<(u64, u64)> {
    let reserve = BLOCK_RESERVE.load(Ordering::Relaxed);
    if reserve == 0 {
        return None;
    }
    let stat = rustix::fs::statvfs(path).ok()?;
    let available = stat.f_bavail.saturating_mul(stat.f_frsize.max(1));
    (available < reserve.saturating_add(extra)).then_some((available, reserve))
}

/// Where the engine keeps the block of `cid` (by its CIDv1 form, so v0 and v1 share a file).
pub(crate) fn block_path(repo: &Path, cid: &Cid) -> PathBuf {
    let key = Cid::new_v1(cid.codec(), *cid.hash()).to_string();
    let shard = key.get(key.len().saturating_sub(3)..key.len().saturating_sub(1)).unwrap_or("_");
    repo.join("blockstore").join(shard).join(format!("{key}.data"))
}

/// Whether `data` hashes to `cid`'s multihash; `None` when the hash function is not supported.
pub(crate) fn hash_matches(cid: &Cid, data: &[u8]) -> Option<bool> {
    let hash = cid.hash();
    if hash.code() == IDENTITY {
        return Some(hash.digest() == data);
    }
    let code = Code::try_from(hash.code()).ok()?;
    Some(code.digest(data).digest() == hash.digest())
}

/// What [`read_small`] found.
pub(crate) enum SmallRead {
    /// No file for the block.
    Missing,
    /// The block's data, its hash checked.
    Block(Vec<u8>),
    /// Larger than asked for, unreadable or not matching its hash: read it the engine's way.
    Other,
}

/// Reads the block file of `cid` on the calling thread when it holds at most `max` bytes: for
/// small blocks, two syscalls from the page cache cost less than a trip to the blocking pool.
pub(crate) fn read_small(repo: &Path, cid: &Cid, max: u64) -> SmallRead {
    use std::io::Read as _;
    let mut file = match std::fs::File::open(block_path(repo, cid)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SmallRead::Missing,
        Err(_) => return SmallRead::Other,
    };
    let len = match file.metadata() {
        Ok(meta) if meta.len() <= max => meta.len(),
        _ => return SmallRead::Other,
    };
    let mut data = Vec::with_capacity(len as usize);
    match file.read_to_end(&mut data) {
        Ok(_) if hash_matches(cid, &data) == Some(true) => SmallRead::Block(data),
        _ => SmallRead::Other,
    }
}

/// Writes a block file atomically (temp file, then rename over any previous, possibly torn,
/// copy) without syncing it.
pub(crate) fn write_unsynced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
        if let Some((available, reserve)) = short_of_space(folder, data.len() as u64) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("no space left for blocks: {available} bytes free, below the reserve of {reserve} bytes"),
            ));
        }
    }
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{}.{}.part", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let temp = PathBuf::from(temp);
    let written = std::fs::File::create(&temp).and_then(|mut file| file.write_all(data));
    if let Err(e) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(())
}

/// Makes the files of `cids` and their folders durable, several fsyncs in flight at once.
pub(crate) async fn sync_blocks(repo: &Path, cids: &[Cid]) -> Result<(), IpfsError> {
    let files: Vec<PathBuf> = cids.iter().map(|cid| block_path(repo, cid)).collect();
    let folders: BTreeSet<PathBuf> = files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
    let mut work: Vec<PathBuf> = files;
    work.extend(folders);
    sync_paths(work).await
}

/// Syncs every file or folder of `work`, several fsyncs in flight at once.
pub(crate) async fn sync_paths(work: Vec<PathBuf>) -> Result<(), IpfsError> {
    if work.is_empty() {
        return Ok(());
    }
    let chunk = work.len().div_ceil(SYNC_TASKS).max(1);
    let tasks: Vec<_> = work
        .chunks(chunk)
        .map(|part| {
            let part = part.to_vec();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                for path in part {
                    std::fs::File::open(&path)?.sync_all()?;
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| IpfsError::Store(format!("sync task failed: {e}")))?
            .map_err(|e| IpfsError::Store(format!("cannot sync written blocks: {e}")))?;
    }
    Ok(())
}
