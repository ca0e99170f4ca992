//! Issue 4: the Pinning Service API end to end.
