//! The one error type of the pinset: [`StateError`].

use std::sync::Arc;

use pincluster_model::ValidationError;

/// Why a pinset operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    /// The user has no pin for that CID, or the CID has no cluster record.
    #[error("not found")]
    NotFound,
    /// One stored record or key could not be decoded. Other records are unaffected.
    #[error("corrupt record at key {key}: {reason}")]
    Corrupt {
        /// The key, printable (non-graphic bytes escaped).
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The database was written by a newer pincluster; refuse to touch it.
    #[error("the pinset database has schema version {found}, newer than the supported {supported}; upgrade pincluster to open it")]
    NewerSchema {
        /// The version found in the database.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The writer has stopped (the pinset is shutting down or failed).
    #[error("the pinset is closed")]
    Closed,
    /// The command contradicts the pinset (a rule of the state machine said no);
    /// the text says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// The request would not fit in a storage key or record.
    #[error("invalid pin: {0}")]
    Invalid(#[from] ValidationError),
    /// A key part is too long to encode.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A record could not be encoded.
    #[error("cannot encode record: {0}")]
    Encode(String),
    /// The storage engine failed (IO error, full disk, ...).
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    /// The free-space guard refused the write: the data folder's filesystem
    /// has less free space than the reserve (see `space.rs`). Nothing was written.
    #[error(transparent)]
    NoSpace(crate::space::NoSpace),
}

impl StateError {
    pub(crate) fn invalid_key(what: &'static str) -> StateError {
        StateError::InvalidKey(what)
    }

    /// Whether the write failed for lack of disk space: refused by the guard,
    /// or the storage engine's own "no space left on device".
    pub fn is_no_space(&self) -> bool {
        match self {
            StateError::NoSpace(_) => true,
            StateError::Storage(StorageError(error)) => {
                matches!(error.as_ref(), sled::Error::Io(io) if crate::space::is_no_space_io(io))
            }
            _ => false,
        }
    }
}

/// An error of the storage engine, kept opaque so that no other crate depends on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(Arc<sled::Error>);

impl From<sled::Error> for StateError {
    fn from(error: sled::Error) -> StateError {
        StateError::Storage(StorageError(Arc::new(error)))
    }
}
