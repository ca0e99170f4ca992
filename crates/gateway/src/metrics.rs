//! The metrics the gateway records, by name, and their descriptions: [`describe`]. Requests
//! themselves are counted by the shared HTTP layer (`api="gateway"`).

use metrics::{describe_counter, Unit};

/// Bytes of response bodies handed to clients, by `format` (`raw`, `car`, `file`).
pub const SENT_BYTES: &str = "pincluster_gateway_sent_bytes_total";
/// Blocks written into responses, by `format` (`raw`, `car`).
pub const SENT_BLOCKS: &str = "pincluster_gateway_sent_blocks_total";
/// Responses cut off after their head was sent, by `reason` (`missing_block`,
/// `write_timeout`, `too_many_blocks`, `decode`, `store`).
pub const ABORTED: &str = "pincluster_gateway_aborted_responses_total";
/// Requests refused before any work, by `reason` (`client_limit`, `not_pinned`).
pub const REFUSED: &str = "pincluster_gateway_refused_total";

/// Registers the descriptions of the metrics this crate records.
pub fn describe() {
    describe_counter!(SENT_BYTES, Unit::Bytes, "Bytes of gateway response bodies sent, by format.");
    describe_counter!(SENT_BLOCKS, "Blocks written into gateway responses, by format.");
    describe_counter!(ABORTED, "Gateway responses cut off after their head was sent, by reason.");
    describe_counter!(REFUSED, "Gateway requests refused before any work, by reason.");
}
