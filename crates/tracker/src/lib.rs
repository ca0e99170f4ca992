//! The pin tracker: the one door through which the APIs change the pinset, so
//! that every new, replaced or dropped pin reaches the workers that fetch or
//! release its content. Read [`Tracker`] first.

use pincluster_model::{Cid, NewPin, PinView, UserName, ValidationError};
use pincluster_state::{Pinset, StateError};

/// Why a tracker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("pin not found")]
    NotFound,
    #[error(transparent)]
    State(StateError),
}

impl From<StateError> for TrackerError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::NotFound => TrackerError::NotFound,
            other => TrackerError::State(other),
        }
    }
}

/// The pin tracker. Cheap to clone.
#[derive(Clone)]
pub struct Tracker {
    state: Pinset,
}

impl Tracker {
    pub fn new(state: Pinset) -> Tracker {
        Tracker { state }
    }

    /// The pinset, for reads.
    pub fn state(&self) -> &Pinset {
        &self.state
    }

    /// Pins `pin.cid` for `user`, or updates that user's pin object.
    pub async fn pin(&self, user: &UserName, pin: NewPin) -> Result<PinView, TrackerError> {
        pin.validate()?;
        let outcome = self.state.pin(user, pin).await?;
        Ok(outcome.view)
    }

    /// Replaces `user`'s pin of `old` by `pin` in one step.
    pub async fn replace(&self, user: &UserName, old: &Cid, pin: NewPin) -> Result<PinView, TrackerError> {
        pin.validate()?;
        let outcome = self.state.replace(user, old, pin).await?;
        Ok(outcome.view)
    }

    /// Drops `user`'s pin of `cid`.
    pub async fn unpin(&self, user: &UserName, cid: &Cid) -> Result<(), TrackerError> {
        self.state.unpin(user, cid).await?;
        Ok(())
    }
}
