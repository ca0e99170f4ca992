//! The fuzz targets of pincluster: each parser of untrusted input, by name. Read [`TARGETS`].
//!
//! Each target is a function of the owning crate's `fuzz` module (built with that crate's
//! `fuzzing` feature) that runs the parser on arbitrary bytes and ignores whether it accepted
//! them: a panic, a hang or an unbounded allocation is the bug. `tests/corpus.rs` replays the
//! committed corpora (`corpus/<target>/`) and every crash found so far (`regressions/<target>/`)
//! through them in `make test`; `benches/fuzz.sh` builds the libFuzzer campaign (`campaign/`)
//! over the same functions and runs it.

use std::path::PathBuf;

/// One fuzz target: its name (the folder of its corpus) and the function it runs.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    // The Pinning Service API: `GET /pins` query strings and `Pin` bodies.
    Target { name: "psa_query", run: pincluster_pinsvc::fuzz::query },
    Target { name: "psa_body", run: pincluster_pinsvc::fuzz::pin_body },
    // The REST API: query-string options, the multipart body of `/add`.
    Target { name: "rest_options", run: pincluster_restapi::fuzz::options },
    Target { name: "add_multipart", run: pincluster_restapi::fuzz::multipart },
    // `Authorization` headers (Basic and Bearer), and signed JWT claims.
    Target { name: "auth_headers", run: pincluster_auth::fuzz::headers },
    Target { name: "jwt_claims", run: pincluster_auth::fuzz::token_claims },
    // The CAR reader of `/add?format=car`.
    Target { name: "car", run: pincluster_ipfs::fuzz::car },
    // dag-pb (and dag-cbor, dag-json) links, and the gateway's UnixFS reading.
    Target { name: "block_links", run: pincluster_ipfs::fuzz::block_links },
    Target { name: "unixfs", run: pincluster_gateway::fuzz::unixfs },
    // Bitswap messages from peers.
    Target { name: "bitswap", run: pincluster_ipfs::fuzz::bitswap_message },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// This crate's folder, where `corpus/` and `regressions/` are.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
