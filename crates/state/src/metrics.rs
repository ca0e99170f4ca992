//! The names of the metrics the pinset records (through the `metrics`
//! facade; the binary chooses the exporter) and their descriptions.

/// Groups of writes applied to the database.
pub const WRITE_BATCHES: &str = "pincluster_pinset_write_batches_total";
/// Requests (commands, status updates) per group: how well writes coalesce.
pub const BATCH_REQUESTS: &str = "pincluster_pinset_batch_requests";
/// Keys written per group.
pub const BATCH_KEYS: &str = "pincluster_pinset_batch_keys";
/// One flush and `fdatasync` of the database file, shared by every group waiting.
pub const FSYNC_DURATION: &str = "pincluster_pinset_fsync_duration_seconds";

/// 1 while the free space of the data folder's filesystem is below the reserve (read-only).
pub const READ_ONLY: &str = "pincluster_read_only";
/// Bytes free on the data folder's filesystem.
pub const FREE_SPACE: &str = "pincluster_data_free_bytes";

/// Registers the descriptions of the pinset's metrics with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(WRITE_BATCHES, "Groups of pinset writes applied to the database.");
    metrics::describe_histogram!(BATCH_REQUESTS, "Write requests coalesced into one group.");
    metrics::describe_histogram!(BATCH_KEYS, "Database keys written by one group.");
    metrics::describe_histogram!(
        FSYNC_DURATION,
        metrics::Unit::Seconds,
        "Time of one flush and fdatasync of the pinset file (group commit)."
    );
    metrics::describe_gauge!(
        READ_ONLY,
        "1 while the data folder has less free space than the reserve: writes refused."
    );
    metrics::describe_gauge!(FREE_SPACE, metrics::Unit::Bytes, "Bytes free on the data folder's filesystem.");
}
