//! Benchmark of issue 5: pin a random file from a Kubo origin over loopback with our node, and
//! have a second Kubo peer pin the same file from the same origin; print both times, the ratio
//! and our peak RSS. Run through `benches/pin-from-kubo.sh` (release build); `MIB` sets the size.
#![allow(clippy::unwrap_used)] // Unwrap is fine in tests.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use std::io::Write;

use common::{start_node, KuboPeer};
use pincluster_ipfs::FetchOptions;
use pincluster_model::PinMode;
use rand::{RngCore, SeedableRng};

#[tokio::main]
async fn main() {
    let mib: usize = std::env::var("MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let window: usize =
        std::env::var("WINDOW").ok().and_then(|v| v.parse().ok()).unwrap_or(FetchOptions::default().max_outstanding);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.bin");
    // Written 1 MiB at a time so the file does not count in this process's peak RSS.
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(256);
    let mut chunk = vec![0u8; 1024 * 1024];
    for _ in 0..mib {
        rng.fill_bytes(&mut chunk);
        out.write_all(&chunk).unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();

    let mut origin = KuboPeer::start(&dir.path().join("kubo-origin")).await;
    let cid = origin.add(&file).await;
    std::fs::remove_file(&file).unwrap();
    println!("file: {mib} MiB, cid {cid}");

    let node = start_node(&dir.path().join("node"), 1).await;
    let options = FetchOptions {
        origins: origin.addrs.clone(),
        stall_timeout: Duration::from_secs(60),
        max_outstanding: window,
        ..FetchOptions::default()
    };
    let started = Instant::now();
    let stats = node.pin(&cid, PinMode::Recursive, options, |_| {}).await.unwrap();
    let ours = started.elapsed();
    println!(
        "pincluster: {:.2} s ({:.1} MiB/s), {} blocks, window {window}",
        ours.as_secs_f64(),
        stats.bytes as f64 / 1048576.0 / ours.as_secs_f64(),
        stats.blocks
    );

    let mut second = KuboPeer::start(&dir.path().join("kubo-second")).await;
    assert!(second.connect(&origin.addrs[0]).await, "second kubo cannot reach the origin");
    let started = Instant::now();
    assert!(second.pin(&cid, Duration::from_secs(1800)).await, "kubo pin failed");
    let kubo = started.elapsed();
    println!(
        "kubo:       {:.2} s ({:.1} MiB/s)",
        kubo.as_secs_f64(),
        stats.bytes as f64 / 1048576.0 / kubo.as_secs_f64()
    );
    println!("ratio kubo/us: {:.2}", kubo.as_secs_f64() / ours.as_secs_f64());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status.lines().filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS")) {
        println!("pincluster process {line}");
    }
    node.shutdown().await;
}
