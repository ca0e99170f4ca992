//! Several real peers on loopback, each with its own pinset and the real
//! private transport: replication, writes through a follower, losing the
//! leader, a learner catching up through a snapshot, outsiders refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use pincluster_consensus::{AppliedBatch, Consensus, ConsensusOptions, Member, Role};
use pincluster_model::{Cid, NewPin, PinOptions, StatusSet, Timestamp, UserName};
use pincluster_p2p::{Keypair, NetConfig, PeerNet};
use pincluster_state::{Command, Pinset, StateOptions};
use tokio::sync::mpsc;

const SECRET: [u8; 32] = [7; 32];

struct Peer {
    consensus: Consensus,
    pinset: Pinset,
    member: Member,
    addr: pincluster_p2p::Multiaddr,
    peer_id: pincluster_p2p::PeerId,
    _events: mpsc::Receiver<AppliedBatch>,
    _dir: tempfile::TempDir,
}

fn options() -> ConsensusOptions {
    ConsensusOptions {
        heartbeat: Duration::from_millis(100),
        election_timeout: Duration::from_millis(500),
        snapshot_every: 50,
        keep_behind_snapshot: 10,
        propose_timeout: Duration::from_secs(10),
    }
}

async fn start(name: &str, secret: [u8; 32]) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let pinset = Pinset::open(&StateOptions::new(dir.path().join("pinset"))).unwrap();
    let (net, inbound) = PeerNet::start(NetConfig {
        keypair: Keypair::generate_ed25519(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        secret,
        max_message_bytes: 16 * 1024 * 1024,
        request_timeout: Duration::from_secs(2),
        max_inbound_queue: 1024,
    })
    .await
    .unwrap();
    let addr = net.listen_addrs()[0].clone();
    let peer_id = net.local_peer_id();
    let member = Member { peer_id: peer_id.to_string(), name: name.into(), addrs: vec![addr.to_string()] };
    // Keep events flowing: a full channel would hold back applying.
    let (tx, mut events) = mpsc::channel(16);
    let (keep_tx, keep) = mpsc::channel(1);
    tokio::spawn(async move {
        while events.recv().await.is_some() {}
        drop(keep_tx);
    });
    let consensus = Consensus::start(
        pinset.clone(),
        net,
        inbound,
        member.clone(),
        dir.path().join("snapshots"),
        Some(tx),
        options(),
    )
    .await
    .unwrap();
    Peer { consensus, pinset, member, addr, peer_id, _events: keep, _dir: dir }
}

fn cid(n: u64) -> Cid {
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&n.to_be_bytes());
    bytes.extend_from_slice(&digest);
    Cid::try_from(bytes).unwrap()
}

fn pin(n: u64) -> Command {
    let pin = NewPin {
        cid: cid(n),
        name: Some(format!("pin {n}")),
        meta: BTreeMap::new(),
        origins: Vec::new(),
        options: PinOptions::everywhere(),
    };
    Command::Pin { user: UserName::new("alice").unwrap(), pin, at: Timestamp::now(), update_from: None }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(p: &Peer) -> u64 {
    p.pinset.cluster_count(StatusSet::ALL).unwrap()
}

async fn cluster_of(n: usize) -> Vec<Peer> {
    let mut peers = Vec::new();
    for i in 0..n {
        peers.push(start(&format!("peer{i}"), SECRET).await);
    }
    let members = peers.iter().map(|p| (p.consensus.id(), p.member.clone())).collect();
    peers[0].consensus.initialize(members).await.unwrap();
    wait_for("a leader known to every peer", || peers.iter().all(|p| p.consensus.leader().is_some())).await;
    peers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_voters_replicate_through_a_follower_and_survive_the_leader() {
    let mut peers = cluster_of(3).await;
    let leader = peers[0].consensus.leader().unwrap();
    let follower = peers.iter().position(|p| p.consensus.id() != leader).unwrap();

    // A write through a follower is applied there before it is answered.
    let results = peers[follower].consensus.propose(vec![pin(1)]).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(count(&peers[follower]), 1, "read-your-writes on the follower");
    wait_for("every peer to hold the pin", || peers.iter().all(|p| count(p) == 1)).await;

    // Concurrent writers share log entries; every one is answered with its own result.
    let tasks: Vec<_> = (2..202)
        .map(|n| {
            let c = peers[n as usize % 3].consensus.clone();
            tokio::spawn(async move { c.propose(vec![pin(n)]).await })
        })
        .collect();
    for task in tasks {
        let results = task.await.unwrap().unwrap();
        assert_eq!(results.len(), 1);
        assert!(results[0].is_ok());
    }
    wait_for("every peer to hold 201 pins", || peers.iter().all(|p| count(p) == 201)).await;

    // Every peer agrees on its view of the membership.
    for p in &peers {
        let view = p.consensus.peers();
        assert_eq!(view.len(), 3);
        assert_eq!(view.iter().filter(|v| v.role == Role::Leader).count(), 1);
    }

    // Lose the leader: the others elect a new one and take writes.
    let index = peers.iter().position(|p| p.consensus.id() == leader).unwrap();
    let gone = peers.remove(index);
    gone.consensus.shutdown().await;
    let started = std::time::Instant::now();
    let results = peers[0].consensus.propose(vec![pin(1000)]).await.unwrap();
    assert!(results[0].is_ok());
    eprintln!("first write after losing the leader took {:?}", started.elapsed());
    assert_ne!(peers[0].consensus.leader(), Some(leader));
    wait_for("the survivors to hold 202 pins", || peers.iter().all(|p| count(p) == 202)).await;
    for p in &peers {
        assert!(p.pinset.check_integrity().unwrap().is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_catches_up_through_a_snapshot() {
    let peers = cluster_of(1).await;
    for n in 0..120 {
        peers[0].consensus.propose(vec![pin(n)]).await.unwrap();
    }
    let metrics = peers[0].consensus.metrics();
    wait_for("the leader to purge its log behind a snapshot", || metrics.borrow().purged.is_some()).await;

    let learner = start("learner", SECRET).await;
    learner.consensus.join(peers[0].peer_id, peers[0].addr.clone(), false).await.unwrap();
    wait_for("the learner to hold every pin", || count(&learner) == 120).await;
    // It got them through a snapshot (the log no longer holds the first entries), kept to send on.
    assert!(learner._dir.path().join("snapshots/current.snap").exists());
    assert!(learner.pinset.check_integrity().unwrap().is_ok());
    let view = peers[0].consensus.peers();
    let me = view.iter().find(|v| v.id == learner.consensus.id()).unwrap();
    assert_eq!(me.role, Role::Learner);

    // It keeps following the log after the snapshot.
    peers[0].consensus.propose(vec![pin(500)]).await.unwrap();
    wait_for("the learner to apply new entries", || count(&learner) == 121).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_without_the_secret_is_refused_and_learns_nothing() {
    let peers = cluster_of(1).await;
    peers[0].consensus.propose(vec![pin(1)]).await.unwrap();
    let outsider = start("outsider", [9; 32]).await;
    let joined = outsider.consensus.join(peers[0].peer_id, peers[0].addr.clone(), true).await;
    assert!(joined.is_err(), "joined without the secret");
    assert_eq!(count(&outsider), 0);
    assert_eq!(peers[0].consensus.peers().len(), 1);
}
