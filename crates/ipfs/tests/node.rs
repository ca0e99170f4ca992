//! The node's own surface, without Kubo: identity, addresses, delegates, bad input, an empty
//! store.
#![allow(clippy::unwrap_used)] // Unwrap is fine in tests.

use pincluster_ipfs::{DhtMode, IpfsError, Node, NodeOptions};
use pincluster_model::Multiaddr;

fn options(dir: &std::path::Path, seed: u8) -> NodeOptions {
    let keypair = libp2p_identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap();
    NodeOptions {
        keypair_protobuf: keypair.to_protobuf_encoding().unwrap(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        announce: vec!["/dns4/pin.example.org/tcp/4001".parse().unwrap()],
        bootstrap: Vec::new(),
        dht_mode: DhtMode::Auto,
        swarm_key: None,
        repo_path: dir.to_path_buf(),
    }
}

#[tokio::test]
async fn identity_addresses_and_delegates() {
    let dir = tempfile::tempdir().unwrap();
    let expected = libp2p_identity::Keypair::ed25519_from_bytes([7; 32]).unwrap().public().to_peer_id();
    let node = Node::start(options(dir.path(), 7)).await.unwrap();
    assert_eq!(node.peer_id(), expected.to_string());

    let listen = node.listen_addresses().await;
    assert_eq!(listen.len(), 1, "{listen:?}");
    let text = listen[0].to_string();
    assert!(text.starts_with("/ip4/127.0.0.1/tcp/") && !text.ends_with("/tcp/0"), "{text}");

    // The loopback listen address is left out: a name others can dial is known.
    let delegates: Vec<String> = node.delegates().await.iter().map(ToString::to_string).collect();
    assert_eq!(delegates, vec![format!("/dns4/pin.example.org/tcp/4001/p2p/{expected}")]);

    let stat = node.repo_stat().await.unwrap();
    assert_eq!((stat.blocks, stat.bytes), (0, 0));
    assert_eq!(node.gc(&[]).await.unwrap().removed_blocks, 0);
    node.shutdown().await;
}

#[tokio::test]
async fn bad_key_and_bad_listen_address_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad_key = options(dir.path(), 1);
    bad_key.keypair_protobuf = vec![1, 2, 3];
    assert!(matches!(Node::start(bad_key).await, Err(IpfsError::Identity(_))));

    let mut bad_listen = options(&dir.path().join("other"), 1);
    let unsupported: Multiaddr = "/ip4/127.0.0.1/udp/0/utp".parse().unwrap();
    bad_listen.listen = vec![unsupported.clone()];
    match Node::start(bad_listen).await {
        Err(IpfsError::Listen { addr, .. }) => assert_eq!(addr, unsupported),
        other => panic!("expected a listen error, got {other:?}"),
    }
}

#[tokio::test]
async fn connect_to_a_closed_port_fails_with_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(options(dir.path(), 2)).await.unwrap();
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
    match node.connect(addr.clone()).await {
        Err(IpfsError::Dial { addr: failed, .. }) => assert_eq!(failed, addr),
        other => panic!("expected a dial error, got {other:?}"),
    }
    node.shutdown().await;
}
