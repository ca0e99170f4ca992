//! `service.json`: the schema, its defaults, loading with environment and flag
//! overrides, validation, and `init`. Read [`ServiceConfig`] first.
//!
//! Each crate receives its own section (an options struct), never the whole file.

mod duration;
mod identity;
mod load;
mod schema;
mod swarm_key;

pub use duration::Duration;
pub use identity::{Identity, IDENTITY_FILE};
pub use load::{init, init_with, is_loopback, load, ConfigError, InitReport, Overrides, CONFIG_FILE};
pub use schema::{
    amino_bootstrap, ApiConfig, ApiSections, ClusterConfig, DhtMode, GatewayConfig, IpfsConfig, ListenAddresses,
    LogFormat, ObservationsConfig, RateLimit, ReprovideStrategy, ReproviderConfig, ServiceConfig, StateConfig,
    TrackerConfig,
};
pub use swarm_key::read_swarm_key;
