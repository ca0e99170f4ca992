//! Snapshots of the shared half, streamed: what a replicated log sends a peer
//! that is too far behind, instead of the entries it purged. Read
//! [`Pinset::install_snapshot`] first.
//!
//! The format is a header, then one frame per cluster entry in CID order: a
//! big-endian `u32` length and the entry as an encoded [`Command::Restore`]
//! (the log's own versioned form). Writing walks the pinset lazily and
//! installing reads frame by frame, so neither holds more than one batch in
//! memory, whatever the size of the pinset.
//!
//! Writing is a point-in-time view only while no log entry is applied meanwhile:
//! the caller (the state machine) holds back entries while it writes. Local
//! status updates may go on; they are not part of a snapshot.

use std::io::{Read, Write};

use crate::writer::{Entry, Op};
use crate::{keys, Command, Pinset, Reader, StateError};

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

/// Storage errors of the snapshot stream itself.
fn io_error(error: std::io::Error) -> StateError {
    StateError::from(sled::Error::Io(error))
}

impl Reader {
    /// Writes every cluster entry of the shared half to `out`; returns how
    /// many. See the module documentation for the format.
    pub fn write_snapshot(&self, out: &mut dyn Write) -> Result<u64, StateError> {
        out.write_all(MAGIC).map_err(io_error)?;
        out.write_all(&VERSION.to_be_bytes()).map_err(io_error)?;
        let mut count = 0u64;
        for entry in self.entries() {
            let frame = Command::Restore { entry: entry?, merge: false }.encode()?;
            let len = u32::try_from(frame.len()).map_err(|_| StateError::Encode("snapshot frame too large".into()))?;
            out.write_all(&len.to_be_bytes()).map_err(io_error)?;
            out.write_all(&frame).map_err(io_error)?;
            count += 1;
        }
        out.flush().map_err(io_error)?;
        Ok(count)
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
    /// disk when it has them). No log entry may be applied meanwhile. A crash
    /// before the end leaves a marker, and the next [`Pinset::open`] wipes
    /// the partial shared half (applied index 0), so the log starts over.
    pub fn install_snapshot(&self, input: &mut dyn Read, index: u64, meta: Vec<u8>) -> Result<u64, StateError> {
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
