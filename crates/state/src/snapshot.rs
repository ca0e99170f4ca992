//! Snapshots of the shared half, streamed: what a replicated log sends a peer
//! that is too far behind, instead of the entries it purged. Read
//! [`Pinset::begin_snapshot`] and [`Pinset::install_snapshot`] first.
//!
//! The format is a header, then one frame per cluster entry in CID order: a
//! big-endian `u32` length and the entry as an encoded [`Command::Restore`]
//! (the log's own versioned form). Writing walks the pinset lazily and
//! installing reads frame by frame, so neither holds more than one batch in
//! memory, whatever the size of the pinset.
//!
//! # A point-in-time view while entries go on being applied
//!
//! sled 0.34 has no snapshots of its own, and holding back the log while a
//! million entries are written takes minutes. So a snapshot is copy-on-write,
//! in [`Cow`]: the writer thread marks the point where the snapshot begins
//! (after everything before it is in the tree), and from then on, before it
//! applies a command, it saves the encoded entry of each CID the command may
//! change ([`Command::cids`]) that the walk has not passed yet, once (`None`
//! for a CID that did not exist). The walk reads the tree in CID order, a
//! chunk at a time under the same lock, and takes a saved entry wherever
//! there is one, including for CIDs removed from the tree since. What the
//! walk emits is therefore exactly the shared half at its beginning.
//!
//! The saved entries are dropped as the walk passes them, so they hold at
//! most the entries changed during the walk, ahead of it: bounded by the
//! write rate times the walk's duration, not by the pinset. Local status
//! updates never change a shared entry and are not saved.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Bound;
use std::sync::{Condvar, Mutex, MutexGuard};

use pincluster_model::Cid;

use crate::records;
use crate::writer::{Entry, Op, Staged};
use crate::{keys, read, Command, Pinset, Reader, StateError};

/// The first bytes of every snapshot.
const MAGIC: &[u8] = b"pincluster-snapshot\0";
/// The format version after [`MAGIC`].
const VERSION: u32 = 1;
/// The largest frame a snapshot may hold: one cluster entry with every holder.
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Entries restored per write request while installing.
const INSTALL_BATCH: usize = 1000;
/// Keys removed per write request while wiping.
const WIPE_BATCH: usize = 10_000;
/// Cluster records the walk reads per turn of the lock that the writer also takes.
const WALK_CHUNK: usize = 256;

/// Storage errors of the snapshot stream itself.
fn io_error(error: std::io::Error) -> StateError {
    StateError::from(sled::Error::Io(error))
}

/// The copy-on-write state of the snapshot being written, shared by the
/// writer thread and the walk (see the module documentation).
#[derive(Default)]
pub(crate) struct Cow {
    state: Mutex<Walk>,
    /// Signalled when a walk ends.
    ended: Condvar,
}

#[derive(Default)]
struct Walk {
    active: bool,
    /// The last `c` key the walk emitted; the writer saves only keys above it.
    cursor: Option<Vec<u8>>,
    /// The encoded entry of each `c` key as it was when the walk began
    /// (`None`: absent then), for the keys changed since, ahead of the cursor.
    saved: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Why saving an entry failed: the walk cannot be exact any more.
    failed: Option<StateError>,
}

impl Cow {
    fn lock(&self) -> MutexGuard<'_, Walk> {
        // A panic while holding the lock leaves plain data behind; go on with it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the point a snapshot begins at; the writer thread calls it in order with the commands.
    pub(crate) fn begin(&self) -> Result<(), StateError> {
        let mut walk = self.lock();
        if walk.active {
            return Err(StateError::Refused("a snapshot is already being written".into()));
        }
        *walk = Walk { active: true, ..Walk::default() };
        Ok(())
    }

    /// Saves the entries `command` may change that the walk has yet to pass,
    /// as they are in `st` before it applies; the writer thread calls it.
    pub(crate) fn save(&self, st: &Staged<'_>, command: &Command) {
        let mut walk = self.lock();
        if !walk.active || walk.failed.is_some() {
            return;
        }
        for cid in command.cids() {
            let key = keys::cluster(&cid);
            if walk.cursor.as_ref().is_some_and(|cursor| key <= *cursor) || walk.saved.contains_key(&key) {
                continue;
            }
            let frame = match st.get(&key) {
                Ok(Some(bytes)) => frame(&key, cid, &bytes, |k| st.get(k)).map(Some),
                Ok(None) => Ok(None),
                Err(error) => Err(error),
            };
            match frame {
                Ok(frame) => {
                    walk.saved.insert(key, frame);
                }
                Err(error) => {
                    walk.failed = Some(error);
                    return;
                }
            }
        }
    }

    /// The next frames of the walk, in CID order, and whether it is complete.
    fn next_chunk(&self, db: &sled::Db) -> Result<(Vec<Vec<u8>>, bool), StateError> {
        let mut guard = self.lock();
        let walk = &mut *guard;
        if let Some(error) = walk.failed.clone() {
            return Err(error);
        }
        let from = walk.cursor.clone().map_or(Bound::Included(vec![keys::Tag::Cluster as u8]), Bound::Excluded);
        let mut chunk: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let tree = db.range::<Vec<u8>, _>((from.clone(), Bound::Excluded(vec![keys::Tag::Cluster as u8 + 1])));
        for item in tree {
            let (key, value) = item?;
            let entry = match walk.saved.remove(key.as_ref()) {
                Some(saved) => saved,
                None => {
                    let cid = key.get(1..).and_then(keys::decode_cid).ok_or_else(|| StateError::Corrupt {
                        key: keys::display(&key),
                        reason: "malformed CID in key".into(),
                    })?;
                    Some(frame(&key, cid, &value, |k| Ok(db.get(k)?.map(|v| v.to_vec())))?)
                }
            };
            chunk.insert(key.to_vec(), entry);
            if chunk.len() == WALK_CHUNK {
                break;
            }
        }
        // Saved entries of CIDs removed from the tree since the walk began, up
        // to where the tree's chunk ends (or all, once the tree is exhausted).
        let done = chunk.len() < WALK_CHUNK;
        let to = match chunk.keys().next_back() {
            Some(last) if !done => Bound::Included(last.clone()),
            _ => Bound::Unbounded,
        };
        let removed: Vec<Vec<u8>> = walk.saved.range((from, to)).map(|(key, _)| key.clone()).collect();
        for key in removed {
            if let Some(entry) = walk.saved.remove(&key) {
                chunk.insert(key, entry);
            }
        }
        if let Some(last) = chunk.keys().next_back() {
            walk.cursor = Some(last.clone());
        }
        Ok((chunk.into_values().flatten().collect(), done))
    }

    /// Ends the walk and drops what it saved.
    fn end(&self) {
        *self.lock() = Walk::default();
        self.ended.notify_all();
    }

    /// Waits until no snapshot is being written.
    fn wait_idle(&self) {
        let mut walk = self.lock();
        while walk.active {
            walk = self.ended.wait(walk).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// The encoded [`Command::Restore`] of the cluster record `bytes` at `key`,
/// reading its holders through `get`.
fn frame(
    key: &[u8],
    cid: Cid,
    bytes: &[u8],
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StateError>,
) -> Result<Vec<u8>, StateError> {
    let entry = read::shared_entry(records::decode_cluster(key, cid, bytes)?, get)?;
    Command::Restore { entry, merge: false }.encode()
}

/// A snapshot of the shared half as it was when [`Pinset::begin_snapshot`]
/// returned, to be written by [`SnapshotWriter::write`] while entries go on
/// being applied. Dropping it ends the snapshot.
pub struct SnapshotWriter {
    reader: Reader,
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter").finish_non_exhaustive()
    }
}

impl SnapshotWriter {
    /// Writes every cluster entry of the snapshot to `out`; returns how
    /// many. Blocking: call it from a thread that may block. See the module
    /// documentation for the format.
    pub fn write(self, out: &mut dyn Write) -> Result<u64, StateError> {
        out.write_all(MAGIC).map_err(io_error)?;
        out.write_all(&VERSION.to_be_bytes()).map_err(io_error)?;
        let mut count = 0u64;
        loop {
            let (frames, done) = self.reader.inner.cow.next_chunk(&self.reader.inner.db)?;
            for frame in frames {
                let len =
                    u32::try_from(frame.len()).map_err(|_| StateError::Encode("snapshot frame too large".into()))?;
                out.write_all(&len.to_be_bytes()).map_err(io_error)?;
                out.write_all(&frame).map_err(io_error)?;
                count += 1;
            }
            if done {
                break;
            }
        }
        out.flush().map_err(io_error)?;
        Ok(count)
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        self.reader.inner.cow.end();
    }
}

impl Pinset {
    /// Begins a snapshot of the shared half as it is once every write
    /// submitted before this call is durable; entries applied afterwards do
    /// not change it. One at a time: [`StateError::Refused`] while another
    /// is being written.
    pub async fn begin_snapshot(&self) -> Result<SnapshotWriter, StateError> {
        for result in self.submit(Entry::Local, vec![Op::BeginSnapshot], true).await? {
            result?;
        }
        Ok(SnapshotWriter { reader: self.reader() })
    }
}

impl Pinset {
    /// Replaces the shared half with the snapshot read from `input`, then
    /// records `index` (and the log's `meta`) as the last applied entry;
    /// returns how many cluster entries it holds. Blocking: call it from a
    /// thread that may block.
    ///
    /// This peer's local records go too: every CID starts `queued`, as a new
    /// pin does, and the tracker walks it again (from the blocks already on
    /// disk when it has them). No log entry may be applied meanwhile; a
    /// snapshot being written is waited for. A crash
    /// before the end leaves a marker, and the next [`Pinset::open`] wipes
    /// the partial shared half (applied index 0), so the log starts over.
    pub fn install_snapshot(&self, input: &mut dyn Read, index: u64, meta: Vec<u8>) -> Result<u64, StateError> {
        // The walk of a snapshot being written reads the tree this replaces.
        self.inner.cow.wait_idle();
        let mut header = vec![0u8; MAGIC.len() + 4];
        input.read_exact(&mut header).map_err(io_error)?;
        if &header[..MAGIC.len()] != MAGIC || header[MAGIC.len()..] != VERSION.to_be_bytes() {
            return Err(StateError::Corrupt {
                key: "snapshot".into(),
                reason: "not a version-1 pincluster snapshot".into(),
            });
        }
        self.raw(vec![(keys::INSTALLING_KEY.to_vec(), Some(Vec::new()))], true)?;
        wipe(
            self.db(),
            |batch| self.raw(batch.into_iter().map(|k| (k, None)).collect(), false),
            |key| key != keys::SCHEMA_KEY && key != keys::INSTALLING_KEY,
        )?;
        let mut count = 0u64;
        let mut batch = Vec::with_capacity(INSTALL_BATCH);
        while let Some(frame) = read_frame(input)? {
            match Command::decode(&frame)? {
                command @ Command::Restore { .. } => batch.push(Op::Command(command)),
                _ => {
                    return Err(StateError::Corrupt {
                        key: "snapshot".into(),
                        reason: "a frame is not an entry".into(),
                    })
                }
            }
            count += 1;
            if batch.len() == INSTALL_BATCH {
                self.ops(std::mem::take(&mut batch))?;
            }
        }
        self.ops(batch)?;
        let finish = vec![Op::Raw(vec![(keys::INSTALLING_KEY.to_vec(), None)])];
        self.submit_blocking(Entry::Install(index), finish, Some(meta), true)?;
        Ok(count)
    }

    /// Applies `ops` as local writes (no log index), answered once in the tree.
    fn ops(&self, ops: Vec<Op>) -> Result<(), StateError> {
        if ops.is_empty() {
            return Ok(());
        }
        for result in self.submit_blocking(Entry::Local, ops, None, false)? {
            result?;
        }
        Ok(())
    }

    /// Raw writes through the writer, so they order with everything in flight.
    fn raw(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>, durable: bool) -> Result<(), StateError> {
        self.submit_blocking(Entry::Local, vec![Op::Raw(writes)], None, durable)?
            .into_iter()
            .try_for_each(|r| r.map(drop))
    }
}

/// Removes every key that `doomed` selects, [`WIPE_BATCH`] at a time, through `remove`.
fn wipe(
    db: &sled::Db,
    mut remove: impl FnMut(Vec<Vec<u8>>) -> Result<(), StateError>,
    doomed: impl Fn(&[u8]) -> bool,
) -> Result<(), StateError> {
    let mut from: Vec<u8> = Vec::new();
    loop {
        let mut batch = Vec::with_capacity(WIPE_BATCH);
        for item in db.range(from.clone()..) {
            let (key, _) = item?;
            if doomed(&key) {
                batch.push(key.to_vec());
            }
            from = key.to_vec();
            from.push(0);
            if batch.len() == WIPE_BATCH {
                break;
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        remove(batch)?;
    }
}

/// Wipes what a crashed install left, before the writer starts: every key
/// but the schema version, in atomic batches, the marker last.
pub(crate) fn recover(db: &sled::Db) -> Result<(), StateError> {
    if db.get(keys::INSTALLING_KEY)?.is_none() {
        return Ok(());
    }
    tracing::warn!("a snapshot install was interrupted; wiping the partial pinset so the log starts over");
    wipe(
        db,
        |keys| {
            let mut batch = sled::Batch::default();
            keys.iter().for_each(|k| batch.remove(k.as_slice()));
            Ok(db.apply_batch(batch)?)
        },
        |key| key != keys::SCHEMA_KEY && key != keys::INSTALLING_KEY,
    )?;
    db.remove(keys::INSTALLING_KEY)?;
    db.flush()?;
    Ok(())
}

/// The next frame, or `None` at a clean end of the stream.
fn read_frame(input: &mut dyn Read) -> Result<Option<Vec<u8>>, StateError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(truncated()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(StateError::Corrupt { key: "snapshot".into(), reason: format!("a frame of {len} bytes") });
    }
    let mut frame = vec![0u8; len];
    input.read_exact(&mut frame).map_err(|_| truncated())?;
    Ok(Some(frame))
}

fn truncated() -> StateError {
    StateError::Corrupt { key: "snapshot".into(), reason: "truncated".into() }
}
