//! One integration-test binary: every test starts the real daemon on port 0
//! in its own temp folder and talks HTTP to it.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod add;
mod bitswap_flood;
mod cluster;
mod dashboard;
mod dht;
mod foundation;
mod full_disk;
mod gateway;
mod hostile_http;
mod observe;
mod pinning;
mod psa;
mod rest;
mod statefile;
