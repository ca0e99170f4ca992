//! Interop of our node with real Kubo 0.22 peers over loopback: pin from Kubo, serve to Kubo,
//! stall timeout, shared blocks and GC, CIDv0/CIDv1. Needs `scripts/setup-test-deps.sh` (the tests
//! fail with that advice when the venv is missing).
#![allow(clippy::unwrap_used)] // Unwrap is fine in tests.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{random_file, start_node, KuboPeer};
use pincluster_ipfs::{FetchOptions, IpfsError};
use pincluster_model::{Cid, PinMode};

const MIB: usize = 1024 * 1024;

fn from_origins(kubo: &KuboPeer) -> FetchOptions {
    FetchOptions { origins: kubo.addrs.clone(), stall_timeout: Duration::from_secs(30), ..FetchOptions::default() }
}

/// Issue 5, tests 1 and 2, plus CIDv0/CIDv1: a Kubo peer adds a file, our node pins it from that
/// origin, every block is local, the bytes are equal, and a fresh Kubo downloads it from us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_from_kubo_and_serves_to_a_fresh_kubo() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.bin");
    let content = random_file(&file, 6 * MIB + 12345, 5);

    let mut origin = KuboPeer::start(&dir.path().join("kubo-origin")).await;
    let cid = origin.add(&file).await;
    assert_eq!(cid.version(), cid::Version::V0, "Kubo adds as CIDv0 by default");

    let node = start_node(&dir.path().join("node"), 1).await;
    let calls = AtomicU64::new(0);
    let mut last = pincluster_model::Progress::default();
    let stats = node
        .pin(&cid, PinMode::Recursive, from_origins(&origin), |p| {
            calls.fetch_add(1, Ordering::Relaxed);
            assert!(p.blocks > last.blocks && p.bytes >= last.bytes, "progress goes forward");
            last = p;
        })
        .await
        .unwrap();
    // 6 MiB in 256 KiB chunks: 25 leaves and a root.
    assert_eq!(stats.blocks, 26, "{stats:?}");
    assert_eq!(stats.fetched_blocks, stats.blocks, "nothing was local before");
    assert!(stats.bytes > content.len() as u64, "{stats:?}");
    assert_eq!(calls.load(Ordering::Relaxed), stats.blocks);
    assert_eq!((last.blocks, last.bytes), (stats.blocks, stats.bytes));

    let stat = node.repo_stat().await.unwrap();
    assert_eq!((stat.blocks, stat.bytes), (stats.blocks, stats.bytes));

    // Reassembled from local blocks only: every data block is present.
    let out = dir.path().join("out.bin");
    assert_eq!(node.export_file(&cid, &out).await.unwrap(), content.len() as u64);
    assert!(std::fs::read(&out).unwrap() == content, "reassembled bytes differ");

    // The block fetched as CIDv0 is found as CIDv1 (same codec) and by multihash under raw.
    let v1 = Cid::new_v1(cid.codec(), *cid.hash());
    assert!(node.has_block(&cid).await.unwrap());
    assert!(node.has_block(&v1).await.unwrap());
    assert!(node.has_block(&Cid::new_v1(0x55, *cid.hash())).await.unwrap());

    // Pinning again fetches nothing.
    let again = node.pin(&v1, PinMode::Recursive, FetchOptions::default(), |_| {}).await.unwrap();
    assert_eq!((again.blocks, again.fetched_blocks), (stats.blocks, 0));

    // A fresh Kubo peer connects to one of our delegates and downloads the file from us.
    let delegates = node.delegates().await;
    assert!(!delegates.is_empty());
    for addr in &delegates {
        assert!(addr.to_string().ends_with(&format!("/p2p/{}", node.peer_id())), "{addr}");
    }
    let mut fresh = KuboPeer::start(&dir.path().join("kubo-fresh")).await;
    let loopback = delegates.iter().find(|a| a.to_string().starts_with("/ip4/127.0.0.1/")).unwrap();
    assert!(fresh.connect(loopback).await, "kubo could not connect to {loopback}");
    let copy = dir.path().join("copy.bin");
    assert!(fresh.download(&cid, &copy, Duration::from_secs(120)).await);
    assert!(std::fs::read(&copy).unwrap() == content, "bytes served to Kubo differ");

    node.shutdown().await;
}

/// Issue 5, test 3: an origin that does not answer and no provider: the pin fails with a reason
/// once the stall timeout has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_origin_fails_after_the_stall_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), 2).await;
    // A closed port and an unknown peer: the dial fails, nobody else is connected.
    let silent_peer = libp2p_identity::Keypair::ed25519_from_bytes([9; 32]).unwrap().public();
    let origin = format!("/ip4/127.0.0.1/tcp/9/p2p/{}", silent_peer.to_peer_id()).parse().unwrap();
    let missing: Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".parse().unwrap();
    let stall = Duration::from_secs(2);
    let options = FetchOptions { origins: vec![origin], stall_timeout: stall, ..FetchOptions::default() };

    let started = Instant::now();
    let error = node.pin(&missing, PinMode::Recursive, options, |_| {}).await.unwrap_err();
    let elapsed = started.elapsed();
    match &error {
        IpfsError::Stalled(stall) => {
            assert_eq!(stall.waiting, 1);
            assert_eq!(stall.first_wanted, missing);
        }
        other => panic!("expected a stall, got {other:?}"),
    }
    assert!(error.to_string().contains("no progress for 2s"), "{error}");
    assert!(elapsed >= stall, "failed before the stall timeout: {elapsed:?}");
    // Dial (≤ 10 s) plus stall; generous, this only catches a pin that never gives up.
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    assert!(!node.has_block(&missing).await.unwrap());
    node.shutdown().await;
}

/// Issue 5, test 5 at the node level: two pins share blocks; unpinning one and collecting keeps
/// the shared blocks (the other file still reads back whole); unpinning both empties the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_blocks_survive_gc_until_the_last_pin_goes() {
    let dir = tempfile::tempdir().unwrap();
    // Two files with the same first MiB: Kubo's 256 KiB chunker gives them 4 identical leaves.
    let shared = random_file(&dir.path().join("shared.bin"), MIB, 11);
    let mut first = shared.clone();
    first.extend(random_file(&dir.path().join("a-tail.bin"), MIB, 12));
    let mut second = shared.clone();
    second.extend(random_file(&dir.path().join("b-tail.bin"), MIB, 13));
    std::fs::write(dir.path().join("a.bin"), &first).unwrap();
    std::fs::write(dir.path().join("b.bin"), &second).unwrap();

    let mut kubo = KuboPeer::start(&dir.path().join("kubo")).await;
    let cid_a = kubo.add(&dir.path().join("a.bin")).await;
    let cid_b = kubo.add(&dir.path().join("b.bin")).await;

    let node = start_node(&dir.path().join("node"), 3).await;
    let a = node.pin(&cid_a, PinMode::Recursive, from_origins(&kubo), |_| {}).await.unwrap();
    let b = node.pin(&cid_b, PinMode::Recursive, from_origins(&kubo), |_| {}).await.unwrap();
    assert_eq!((a.blocks, b.blocks), (9, 9), "8 leaves and a root each");
    assert_eq!(b.fetched_blocks, 5, "the 4 shared leaves were already local");
    assert_eq!(node.repo_stat().await.unwrap().blocks, 14);

    // Nothing unpinned yet: GC keeps everything.
    assert_eq!(node.gc(&[]).await.unwrap().removed_blocks, 0);

    // Unpin A (as CIDv1, pinned as CIDv0): its 5 own blocks go, B is still whole.
    node.unpin(&Cid::new_v1(cid_a.codec(), *cid_a.hash())).await.unwrap();
    let gc = node.gc(&[]).await.unwrap();
    assert_eq!(gc.removed_blocks, 5, "{gc:?}");
    assert!(!node.has_block(&cid_a).await.unwrap());
    let out = dir.path().join("b-out.bin");
    node.export_file(&cid_b, &out).await.unwrap();
    assert!(std::fs::read(&out).unwrap() == second, "B lost blocks to GC");

    // Unpin B: everything goes. Unpinning twice is fine.
    node.unpin(&cid_b).await.unwrap();
    node.unpin(&cid_b).await.unwrap();
    let gc = node.gc(&[]).await.unwrap();
    assert_eq!(gc.removed_blocks, 9, "{gc:?}");
    let stat = node.repo_stat().await.unwrap();
    assert_eq!((stat.blocks, stat.bytes), (0, 0));
    node.shutdown().await;
}

/// The DAG size limit stops a pin with a reason; a later pin reuses what it fetched; a direct
/// pin keeps only the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_pins_and_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    random_file(&dir.path().join("f.bin"), 2 * MIB, 21);
    let mut kubo = KuboPeer::start(&dir.path().join("kubo")).await;
    let cid = kubo.add(&dir.path().join("f.bin")).await;
    let node = start_node(&dir.path().join("node"), 4).await;

    let limited = FetchOptions { max_dag_size: Some(MIB as u64), ..from_origins(&kubo) };
    let error = node.pin(&cid, PinMode::Recursive, limited, |_| {}).await.unwrap_err();
    assert!(matches!(error, IpfsError::TooLarge { max_bytes, .. } if max_bytes == MIB as u64), "{error}");

    // What the failed pin fetched stays on disk and is not fetched again (a resumed pin).
    let kept = node.repo_stat().await.unwrap().blocks;
    assert!(kept > 0);
    let full = node.pin(&cid, PinMode::Recursive, from_origins(&kubo), |_| {}).await.unwrap();
    assert_eq!(full.blocks, 9, "8 leaves and a root");
    // Blocks still in flight when the first pin failed may land after `kept` was read, so at
    // least `kept` blocks were reused.
    assert!(full.fetched_blocks <= full.blocks - kept, "{full:?}, {kept} kept");

    // Unpinned blocks go at the next collection.
    node.unpin(&cid).await.unwrap();
    assert_eq!(node.gc(&[]).await.unwrap().removed_blocks, 9);
    assert_eq!(node.repo_stat().await.unwrap().blocks, 0);

    let direct = node.pin(&cid, PinMode::Direct, from_origins(&kubo), |_| {}).await.unwrap();
    assert_eq!(direct.blocks, 1);
    assert_eq!(node.gc(&[]).await.unwrap().removed_blocks, 0);
    assert_eq!(node.repo_stat().await.unwrap().blocks, 1);
    assert!(node.has_block(&cid).await.unwrap());
    node.shutdown().await;
}
