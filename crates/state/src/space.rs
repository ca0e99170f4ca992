//! The free-space guard of the data folder: [`Space`] refuses writes with
//! [`StateError::NoSpace`] while the filesystem holding the pinset has less
//! free space than a reserve, before sled or the Raft log could run into a
//! full disk.
//!
//! Why a guard rather than handling `ENOSPC`: sled 0.34 records the first
//! failed write of its log as a global error, and every later write of that
//! database fails with it until the database is opened again (its reads keep
//! working); openraft stops a node whose log storage fails. Neither recovers
//! in place, so writes must stop while there is still room for them. The
//! guard has two levels:
//!
//! - below the *reserve*, writes that grow the pinset on a user's behalf (new
//!   pins) are refused, and so are new blocks (the IPFS node's own guard);
//! - below half the reserve (the *floor*), every write the pinset can refuse
//!   is refused too: proposals of any kind and this peer's status updates.
//!
//! Between the two, the peer keeps its books (statuses, reports, unpins,
//! which free space) in the room the reserve kept. Each check is one
//! `statvfs`, so space freed on the disk is seen at the next write: there is
//! no mode to leave.

use std::path::{Path, PathBuf};

use crate::StateError;

/// The smallest automatic reserve: room for sled's snapshot at open and a
/// good many status writes.
pub const MIN_AUTO_RESERVE: u64 = 64 * 1024 * 1024;
/// The largest automatic reserve.
pub const MAX_AUTO_RESERVE: u64 = 1024 * 1024 * 1024;

/// The free-space guard of the filesystem that holds the pinset. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Space {
    path: PathBuf,
    reserve: u64,
}

/// Not enough free space for a write; [`StateError::NoSpace`] carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no space left on the data folder's filesystem: {available} bytes free, below the {needed} bytes kept free \
     (a reserve of {reserve})"
)]
pub struct NoSpace {
    /// Bytes free for this process when checked.
    pub available: u64,
    /// The bytes the refused write needed free.
    pub needed: u64,
    /// The configured reserve.
    pub reserve: u64,
}

/// The free bytes and the size of the filesystem holding `path`.
pub fn filesystem_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    let unit = stat.f_frsize.max(1);
    Ok((stat.f_bavail.saturating_mul(unit), stat.f_blocks.saturating_mul(unit)))
}

/// The automatic reserve for a filesystem of `size` bytes: 1 %, at least
/// [`MIN_AUTO_RESERVE`] and at most [`MAX_AUTO_RESERVE`].
pub fn auto_reserve(size: u64) -> u64 {
    (size / 100).clamp(MIN_AUTO_RESERVE, MAX_AUTO_RESERVE)
}

impl Space {
    /// The guard of the filesystem holding `path` (which must exist), with
    /// `reserve` bytes kept free, or the automatic reserve when `None`. A
    /// reserve of 0 turns the guard off.
    pub fn new(path: &Path, reserve: Option<u64>) -> std::io::Result<Space> {
        let reserve = match reserve {
            Some(bytes) => bytes,
            None => auto_reserve(filesystem_space(path)?.1),
        };
        Ok(Space { path: path.to_path_buf(), reserve })
    }

    /// The bytes kept free.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Free bytes now; `None` when the filesystem cannot be asked.
    pub fn available(&self) -> Option<u64> {
        filesystem_space(&self.path).ok().map(|(free, _)| free)
    }

    /// Whether a write that grows the pinset may go ahead: at least the reserve is free.
    pub fn check(&self) -> Result<(), NoSpace> {
        self.check_for(self.reserve)
    }

    /// Whether any refusable write may go ahead: at least half the reserve is free.
    pub fn check_floor(&self) -> Result<(), NoSpace> {
        self.check_for(self.reserve / 2)
    }

    fn check_for(&self, needed: u64) -> Result<(), NoSpace> {
        if self.reserve == 0 {
            return Ok(());
        }
        match self.available() {
            // A filesystem that cannot be asked is not refused for it: the write tells.
            None => Ok(()),
            Some(available) if available >= needed => Ok(()),
            Some(available) => Err(NoSpace { available, needed, reserve: self.reserve }),
        }
    }
}

impl From<NoSpace> for StateError {
    fn from(error: NoSpace) -> StateError {
        StateError::NoSpace(error)
    }
}

/// Whether `error` is the operating system's "no space left on device" (or "quota exceeded").
pub fn is_no_space_io(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        || error.raw_os_error() == Some(28)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_reserve_is_one_percent_within_bounds() {
        assert_eq!(auto_reserve(1024 * 1024 * 1024), MIN_AUTO_RESERVE);
        assert_eq!(auto_reserve(20 * 1024 * 1024 * 1024), 20 * 1024 * 1024 * 1024 / 100);
        assert_eq!(auto_reserve(u64::MAX), MAX_AUTO_RESERVE);
    }

    #[test]
    fn a_reserve_larger_than_the_free_space_refuses_and_zero_never_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let huge = Space::new(dir.path(), Some(u64::MAX)).expect("space");
        let refused = huge.check().expect_err("refused");
        assert_eq!(refused.reserve, u64::MAX);
        assert!(refused.to_string().starts_with("no space left"), "{refused}");
        assert!(huge.check_floor().is_err());
        let off = Space::new(dir.path(), Some(0)).expect("space");
        assert_eq!(off.check(), Ok(()));
        let small = Space::new(dir.path(), Some(1)).expect("space");
        assert_eq!(small.check(), Ok(()));
    }

    #[test]
    fn enospc_is_recognised() {
        assert!(is_no_space_io(&std::io::Error::from_raw_os_error(28)));
        assert!(!is_no_space_io(&std::io::Error::from_raw_os_error(5)));
    }
}
