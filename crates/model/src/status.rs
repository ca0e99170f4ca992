//! The life cycle of a pin on this peer, and sets of statuses used as filters.

use std::fmt;
use std::str::FromStr;

/// Where the content of a pin stands on this peer.
///
/// These are the four statuses of the Pinning Service API; the REST API maps
/// them onto IPFS Cluster's tracker statuses (`pin_queued`, `pinning`,
/// `pinned`, `pin_error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PinStatus {
    /// Waiting for a tracker worker; no work started.
    Queued,
    /// A worker is fetching the DAG.
    Pinning,
    /// Every block of the DAG is stored here.
    Pinned,
    /// The tracker gave up; the pin carries the reason.
    Failed,
}

impl PinStatus {
    pub const ALL: [PinStatus; 4] = [PinStatus::Queued, PinStatus::Pinning, PinStatus::Pinned, PinStatus::Failed];

    /// The name used by the Pinning Service API.
    pub fn as_str(self) -> &'static str {
        match self {
            PinStatus::Queued => "queued",
            PinStatus::Pinning => "pinning",
            PinStatus::Pinned => "pinned",
            PinStatus::Failed => "failed",
        }
    }

    /// A small stable number, used in storage keys.
    pub fn code(self) -> u8 {
        match self {
            PinStatus::Queued => 0,
            PinStatus::Pinning => 1,
            PinStatus::Pinned => 2,
            PinStatus::Failed => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<PinStatus> {
        PinStatus::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl fmt::Display for PinStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PinStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PinStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or(())
    }
}

/// A set of statuses, as a bit mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct StatusSet(u8);

impl StatusSet {
    pub const EMPTY: StatusSet = StatusSet(0);
    pub const ALL: StatusSet = StatusSet(0b1111);

    pub fn only(status: PinStatus) -> StatusSet {
        StatusSet(1 << status.code())
    }

    pub fn insert(&mut self, status: PinStatus) {
        self.0 |= 1 << status.code();
    }

    pub fn contains(self, status: PinStatus) -> bool {
        self.0 & (1 << status.code()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn is_all(self) -> bool {
        self == StatusSet::ALL
    }

    pub fn iter(self) -> impl Iterator<Item = PinStatus> {
        PinStatus::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<PinStatus> for StatusSet {
    fn from_iter<I: IntoIterator<Item = PinStatus>>(iter: I) -> Self {
        let mut set = StatusSet::EMPTY;
        for s in iter {
            set.insert(s);
        }
        set
    }
}
