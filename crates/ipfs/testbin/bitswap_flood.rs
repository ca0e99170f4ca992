//! `bitswap-flood`: a hostile Bitswap peer for the end-to-end tests (`tests/e2e/bitswap_flood.rs`);
//! it lives here because this is the only crate allowed the networking stack.
//!
//! Usage: `bitswap-flood <daemon multiaddr ending in /p2p/<peer id>>`. It connects over TCP
//! (noise, yamux, as Kubo does), then runs each phase on a connection of its own and prints one
//! line per phase, `phase=<name> disconnected=<true|false>`:
//! - `wantlists`: many concurrent streams, each sending wantlists of 8000 blocks the daemon does
//!   not have, plus streams of 4 MiB messages of blocks nobody wants, plus idle streams beyond the
//!   daemon's per-peer limit. The replies (`DONT_HAVE`s) are read. All within the protocol: the
//!   daemon should keep the connection.
//! - `oversized`: a length prefix above 4 MiB. `garbage`: bytes that are not a Bitswap message.
//!   `too-many-items`: a wantlist of 10 000 entries. The daemon should close the connection.
//!
//! Messages are built here by hand on purpose: a hostile peer writes whatever bytes it likes.

use std::time::{Duration, Instant};

use cid::Cid;
use futures_util::io::AsyncWriteExt;
use futures_util::StreamExt;
use multihash_codetable::{Code, MultihashDigest};
use rust_ipfs::builder::DefaultIpfsBuilder;
use rust_ipfs::{Ipfs, Multiaddr, PeerId, StreamProtocol};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
/// How long to wait for the daemon to close a connection before saying it did not.
const CLOSE_WAIT: Duration = Duration::from_secs(60);

fn varint(out: &mut Vec<u8>, value: u64) {
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(value, &mut buf));
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A wantlist message for `count` random blocks: WANT_BLOCK with send-dont-have.
fn wantlist(count: usize, seed: u64) -> Vec<u8> {
    let mut list = Vec::new();
    for i in 0..count {
        let digest = Code::Sha2_256.digest(format!("flood {seed} {i}").as_bytes());
        let cid = Cid::new_v1(0x55, digest);
        let mut entry = Vec::new();
        field_bytes(&mut entry, 1, &cid.to_bytes());
        entry.extend_from_slice(&[0x10, 0x01, 0x28, 0x01]); // priority 1, sendDontHave true
        field_bytes(&mut list, 1, &entry);
    }
    let mut message = Vec::new();
    field_bytes(&mut message, 1, &list);
    message
}

/// A message with one raw block of `size` bytes that nobody asked for.
fn junk_block(size: usize) -> Vec<u8> {
    let mut payload = Vec::new();
    field_bytes(&mut payload, 1, &[0x01, 0x55, 0x12, 0x20]);
    field_bytes(&mut payload, 2, &vec![0x5a; size]);
    let mut message = Vec::new();
    field_bytes(&mut message, 3, &payload);
    message
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

async fn send(ipfs: &Ipfs, peer: PeerId, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut stream = ipfs.open_stream(peer, PROTOCOL).await.map_err(std::io::Error::other)?;
    for frame in frames {
        stream.write_all(frame).await?;
    }
    stream.flush().await?;
    stream.close().await
}

async fn connected(ipfs: &Ipfs, peer: PeerId) -> bool {
    ipfs.is_connected(peer).await.unwrap_or(false)
}

/// Waits until the daemon has closed every connection to us (or `CLOSE_WAIT` passed).
async fn closed_by_daemon(ipfs: &Ipfs, peer: PeerId) -> bool {
    let start = Instant::now();
    while start.elapsed() < CLOSE_WAIT {
        if !connected(ipfs, peer).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn dial(ipfs: &Ipfs, addr: &Multiaddr, peer: PeerId) {
    for _ in 0..50 {
        if connected(ipfs, peer).await {
            return;
        }
        let _ = ipfs.connect(addr.clone()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wantlists(ipfs: &Ipfs, peer: PeerId) {
    let mut tasks = Vec::new();
    for s in 0..48u64 {
        let ipfs = ipfs.clone();
        tasks.push(tokio::spawn(async move {
            let frames: Vec<Vec<u8>> = (0..5).map(|m| frame(&wantlist(8000, s * 100 + m))).collect();
            send(&ipfs, peer, &frames).await
        }));
    }
    for _ in 0..8 {
        let ipfs = ipfs.clone();
        tasks.push(tokio::spawn(async move {
            let frames: Vec<Vec<u8>> = (0..20).map(|_| frame(&junk_block(4 * 1024 * 1024 - 64))).collect();
            send(&ipfs, peer, &frames).await
        }));
    }
    // Idle streams, far beyond what the daemon reads at once from one peer.
    let mut idle = Vec::new();
    for _ in 0..300 {
        if let Ok(stream) = ipfs.open_stream(peer, PROTOCOL).await {
            idle.push(stream);
        }
    }
    let mut failed = 0;
    for task in tasks {
        if !matches!(task.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    eprintln!("wantlists: {failed} sending streams failed, {} idle streams opened", idle.len());
    drop(idle);
}

#[tokio::main]
async fn main() {
    let Some(target) = std::env::args().nth(1) else {
        eprintln!("usage: bitswap-flood <multiaddr/p2p/peer>");
        std::process::exit(2);
    };
    let Ok(addr) = target.parse::<Multiaddr>() else {
        eprintln!("not a multiaddr: {target}");
        std::process::exit(2);
    };
    let Some(rust_ipfs::Protocol::P2p(peer)) = addr.iter().last() else {
        eprintln!("the address must end in /p2p/<peer id>");
        std::process::exit(2);
    };
    let ipfs = match DefaultIpfsBuilder::new().with_streams().enable_tcp().start().await {
        Ok(ipfs) => ipfs,
        Err(e) => {
            eprintln!("cannot start: {e:#}");
            std::process::exit(1);
        }
    };

    // Read every reply to its end, as a Bitswap peer does: the wantlist phase stays within the
    // protocol, so the daemon has no reason to disconnect.
    match ipfs.new_stream(PROTOCOL).await {
        Ok(mut incoming) => {
            tokio::spawn(async move {
                while let Some((_, mut stream)) = incoming.next().await {
                    tokio::spawn(async move {
                        let _ = futures_util::io::copy(&mut stream, &mut futures_util::io::sink()).await;
                    });
                }
            });
        }
        Err(e) => {
            eprintln!("cannot accept bitswap streams: {e:#}");
            std::process::exit(1);
        }
    }

    dial(&ipfs, &addr, peer).await;
    wantlists(&ipfs, peer).await;
    // Within the protocol: still connected (checked after the daemon has read it all).
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("phase=wantlists disconnected={}", !connected(&ipfs, peer).await);

    let mut oversized = Vec::new();
    varint(&mut oversized, 4 * 1024 * 1024 + 1);
    oversized.extend_from_slice(&[0u8; 1024]);
    let garbage = [0x0f, 0xff, 0xff, 0x00, 0x12, 0x34].to_vec();
    let too_many = frame(&wantlist(10_000, 7));
    for (name, bytes) in [("oversized", oversized), ("garbage", frame(&garbage)), ("too-many-items", too_many)] {
        dial(&ipfs, &addr, peer).await;
        if !connected(&ipfs, peer).await {
            println!("phase={name} disconnected=false connect-failed=true");
            continue;
        }
        let _ = send(&ipfs, peer, &[bytes]).await;
        println!("phase={name} disconnected={}", closed_by_daemon(&ipfs, peer).await);
    }
    ipfs.exit_daemon().await;
}
