//! Issue 6: the REST API (filled in by its owner).
