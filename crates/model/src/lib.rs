//! Domain values shared by every pincluster crate: read [`Pin`] first.
//!
//! Nothing here does IO or knows a wire format; the API crates convert these
//! values to and from their own JSON types, and the state crate to and from its
//! stored records.

mod pin;
mod status;
mod time;

pub use cid::Cid;
pub use multiaddr::Multiaddr;
pub use pin::{
    summarize, ClusterPin, NameMatch, NewPin, PeerPin, PinMode, PinOptions, PinView, Progress, UserName, UserPin,
    ValidationError, MAX_META_ENTRIES, MAX_META_KEY_BYTES, MAX_META_VALUE_BYTES, MAX_NAME_CHARS, MAX_ORIGINS,
};
pub use status::{PinStatus, StatusSet};
pub use time::Timestamp;
