//! The names of the metrics the IPFS node records (through the `metrics`
//! facade; the binary chooses the exporter) and their descriptions. Figures
//! read from the node (peers, store size, [`crate::Traffic`]) are sampled by
//! the binary under the names given here.

/// Blocks received over Bitswap and stored (wanted and verified).
pub const BITSWAP_RECEIVED_BLOCKS: &str = "pincluster_bitswap_received_blocks_total";
/// Their bytes.
pub const BITSWAP_RECEIVED_BYTES: &str = "pincluster_bitswap_received_bytes_total";
/// Blocks served to other peers over Bitswap.
pub const BITSWAP_SENT_BLOCKS: &str = "pincluster_bitswap_sent_blocks_total";
/// Their bytes.
pub const BITSWAP_SENT_BYTES: &str = "pincluster_bitswap_sent_bytes_total";
/// Garbage collections run.
pub const GC_RUNS: &str = "pincluster_gc_runs_total";
/// Bytes of blocks garbage collection removed.
pub const GC_FREED_BYTES: &str = "pincluster_gc_freed_bytes_total";
/// Blocks garbage collection removed.
pub const GC_REMOVED_BLOCKS: &str = "pincluster_gc_removed_blocks_total";

/// Registers the descriptions of the node's metrics with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, Unit};
    describe_counter!(BITSWAP_RECEIVED_BLOCKS, "Blocks received over Bitswap, verified and stored.");
    describe_counter!(BITSWAP_RECEIVED_BYTES, Unit::Bytes, "Bytes of blocks received over Bitswap and stored.");
    describe_counter!(BITSWAP_SENT_BLOCKS, "Blocks served to other peers over Bitswap.");
    describe_counter!(BITSWAP_SENT_BYTES, Unit::Bytes, "Bytes of blocks served to other peers over Bitswap.");
    describe_counter!(GC_RUNS, "Garbage collections run on the block store.");
    describe_counter!(GC_FREED_BYTES, Unit::Bytes, "Bytes of blocks removed by garbage collection.");
    describe_counter!(GC_REMOVED_BLOCKS, "Blocks removed by garbage collection.");
}
