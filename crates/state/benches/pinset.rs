//! Placeholder for the pinset benchmark.
fn main() {}
