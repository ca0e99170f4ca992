//! The names of the metrics the tracker records (through the `metrics`
//! facade) and their descriptions.

/// Pin attempts that ended, by `outcome` (`pinned`, `failed`).
pub const PIN_ATTEMPTS: &str = "pincluster_pin_attempts_total";

/// Registers the descriptions of the tracker's metrics with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(PIN_ATTEMPTS, "Pin attempts that ended, by outcome (pinned, failed).");
}
