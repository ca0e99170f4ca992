//! End-to-end tests of the cluster transport: real swarms on 127.0.0.1, each test bounded by a
//! timeout so none can hang.

use std::time::Duration;

use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;
use pincluster_p2p::{Inbound, InboundRequest, NetConfig, NetError, PeerNet};
use tokio::{sync::mpsc, task::JoinSet, time::timeout};

const SECRET: [u8; 32] = [7; 32];
const TEST_LIMIT: Duration = Duration::from_secs(30);

fn config(secret: [u8; 32], max_message_bytes: usize) -> NetConfig {
    NetConfig {
        keypair: Keypair::generate_ed25519(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
        secret,
        max_message_bytes,
        request_timeout: Duration::from_secs(3),
        max_inbound_queue: 64,
    }
}

async fn start(config: NetConfig) -> (PeerNet, Inbound) {
    PeerNet::start(config).await.expect("start")
}

fn addr(net: &PeerNet) -> Multiaddr {
    net.listen_addrs().into_iter().next().expect("a listen address")
}

/// Answers every request with `answer(request)`, reporting each request's peer and body.
fn serve(
    mut inbound: Inbound,
    answer: impl Fn(&InboundRequest) -> Option<Vec<u8>> + Send + 'static,
) -> mpsc::UnboundedReceiver<(PeerId, Vec<u8>)> {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(request) = inbound.next().await {
            let _ = seen_tx.send((request.peer, request.body.clone()));
            if let Some(body) = answer(&request) {
                request.respond(body);
            }
        }
    });
    seen
}

fn echo(request: &InboundRequest) -> Option<Vec<u8>> {
    let mut body = b"re:".to_vec();
    body.extend_from_slice(&request.body);
    Some(body)
}

#[tokio::test]
async fn request_both_ways_on_one_connection() {
    timeout(TEST_LIMIT, async {
        let (a, a_in) = start(config(SECRET, 1 << 20)).await;
        let (b, b_in) = start(config(SECRET, 1 << 20)).await;
        let b_addr = addr(&b);
        assert!(b_addr.to_string().ends_with(&format!("/p2p/{}", b.local_peer_id())), "{b_addr}");
        assert!(!b_addr.to_string().contains("/tcp/0/"), "{b_addr}");
        let mut a_seen = serve(a_in, echo);
        let mut b_seen = serve(b_in, echo);

        a.add_address(b.local_peer_id(), b_addr).await;
        let answer = a.request(b.local_peer_id(), b"ping".to_vec()).await.expect("A to B");
        assert_eq!(answer, b"re:ping");
        assert_eq!(b_seen.recv().await, Some((a.local_peer_id(), b"ping".to_vec())));
        assert_eq!(a.connected().await, vec![b.local_peer_id()]);
        assert_eq!(b.connected().await, vec![a.local_peer_id()]);

        // B has no address for A: only the open connection can carry this.
        let answer = b.request(a.local_peer_id(), b"pong".to_vec()).await.expect("B to A");
        assert_eq!(answer, b"re:pong");
        assert_eq!(a_seen.recv().await, Some((b.local_peer_id(), b"pong".to_vec())));

        // An empty body is a message too.
        assert_eq!(a.request(b.local_peer_id(), Vec::new()).await.expect("empty"), b"re:");

        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn another_secret_gets_no_answer() {
    timeout(TEST_LIMIT, async {
        let (a, _a_in) = start(config(SECRET, 1 << 20)).await;
        let (b, mut b_in) = start(config([8; 32], 1 << 20)).await;
        a.add_address(b.local_peer_id(), addr(&b)).await;
        match a.request(b.local_peer_id(), b"let me in".to_vec()).await {
            Err(NetError::Unreachable(reason)) => println!("refused as expected: {reason}"),
            other => panic!("expected Unreachable, got {other:?}"),
        }
        assert!(timeout(Duration::from_millis(500), b_in.next()).await.is_err(), "B got a request");
        assert!(a.connected().await.is_empty());
        assert!(b.connected().await.is_empty());
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    timeout(TEST_LIMIT, async {
        let small = 1024;
        let (a, a_in) = start(config(SECRET, small)).await;
        let (b, b_in) = start(config(SECRET, 4 * small)).await;
        let mut a_seen = serve(a_in, echo);
        let mut b_seen =
            serve(b_in, |request| if request.body == b"big answer" { Some(vec![1; 2000]) } else { echo(request) });
        a.add_address(b.local_peer_id(), addr(&b)).await;

        // The sender checks its own limit.
        match a.request(b.local_peer_id(), vec![0; 2000]).await {
            Err(NetError::TooLarge { size: 2000, max }) => assert_eq!(max, small),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(a.request(b.local_peer_id(), b"hi".to_vec()).await.expect("normal"), b"re:hi");
        assert_eq!(b_seen.recv().await.map(|(_, body)| body), Some(b"hi".to_vec()));

        // The receiver checks the announced length of a request...
        let refused = b.request(a.local_peer_id(), vec![0; 2000]).await;
        assert!(refused.is_err(), "{refused:?}");
        println!("oversized request: {refused:?}");
        // ... and of a response.
        match a.request(b.local_peer_id(), b"big answer".to_vec()).await {
            Err(NetError::TooLarge { size: 2000, max }) => assert_eq!(max, small),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(b_seen.recv().await.map(|(_, body)| body), Some(b"big answer".to_vec()));

        // Normal messages still go through, both ways.
        assert_eq!(b.request(a.local_peer_id(), b"after".to_vec()).await.expect("B to A"), b"re:after");
        assert_eq!(a_seen.recv().await.map(|(_, body)| body), Some(b"after".to_vec()), "A never saw the big one");
        // Three bytes under the limit: the echo ("re:" + body) is exactly at A's limit.
        assert_eq!(a.request(b.local_peer_id(), vec![3; small - 3]).await.expect("at the limit").len(), small);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn dropped_request_is_an_error_not_a_hang() {
    timeout(TEST_LIMIT, async {
        let mut cfg = config(SECRET, 1 << 20);
        cfg.request_timeout = Duration::from_secs(10);
        let (a, _a_in) = start(cfg).await;
        let (b, b_in) = start(config(SECRET, 1 << 20)).await;
        let _seen = serve(b_in, |_| None);
        a.add_address(b.local_peer_id(), addr(&b)).await;
        let started = tokio::time::Instant::now();
        match a.request(b.local_peer_id(), b"ignored".to_vec()).await {
            Err(NetError::Remote(reason)) => println!("dropped: {reason}"),
            other => panic!("expected Remote, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn peer_not_listening_is_unreachable() {
    timeout(TEST_LIMIT, async {
        let (a, _a_in) = start(config(SECRET, 1 << 20)).await;
        let port = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listener.local_addr().expect("local addr").port()
        };
        let nobody = Keypair::generate_ed25519().public().to_peer_id();
        a.add_address(nobody, format!("/ip4/127.0.0.1/tcp/{port}/p2p/{nobody}").parse().expect("multiaddr")).await;
        match a.request(nobody, b"anyone?".to_vec()).await {
            Err(NetError::Unreachable(reason)) => println!("unreachable: {reason}"),
            other => panic!("expected Unreachable, got {other:?}"),
        }
        // A peer with no known address at all.
        let unknown = Keypair::generate_ed25519().public().to_peer_id();
        assert!(matches!(a.request(unknown, Vec::new()).await, Err(NetError::Unreachable(_))));
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn wrong_peer_at_the_address_is_unreachable() {
    timeout(TEST_LIMIT, async {
        let (a, _a_in) = start(config(SECRET, 1 << 20)).await;
        let (b, mut b_in) = start(config(SECRET, 1 << 20)).await;
        let impostor_of = Keypair::generate_ed25519().public().to_peer_id();
        // B's address, but claimed for another peer id (without the /p2p suffix).
        let mut b_addr = addr(&b);
        b_addr.pop();
        a.add_address(impostor_of, b_addr).await;
        assert!(matches!(a.request(impostor_of, b"hi".to_vec()).await, Err(NetError::Unreachable(_))));
        assert!(timeout(Duration::from_millis(300), b_in.next()).await.is_err(), "B got a request");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn many_concurrent_requests_get_their_own_answers() {
    timeout(TEST_LIMIT, async {
        let mut cfg = config(SECRET, 1 << 20);
        cfg.max_inbound_queue = 256;
        let (a, _a_in) = start(config(SECRET, 1 << 20)).await;
        let (b, b_in) = start(cfg).await;
        let _seen = serve(b_in, echo);
        a.add_address(b.local_peer_id(), addr(&b)).await;
        let mut requests = JoinSet::new();
        for i in 0..200u32 {
            let a = a.clone();
            let peer = b.local_peer_id();
            requests.spawn(async move { (i, a.request(peer, i.to_be_bytes().to_vec()).await) });
        }
        let mut answered = 0;
        while let Some(joined) = requests.join_next().await {
            let (i, answer) = joined.expect("join");
            let mut expected = b"re:".to_vec();
            expected.extend_from_slice(&i.to_be_bytes());
            assert_eq!(answer.expect("answer"), expected);
            answered += 1;
        }
        assert_eq!(answered, 200);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn full_inbound_queue_refuses() {
    timeout(TEST_LIMIT, async {
        let mut cfg = config(SECRET, 1 << 20);
        cfg.max_inbound_queue = 1;
        let (a, _a_in) = start(config(SECRET, 1 << 20)).await;
        let (b, mut b_in) = start(cfg).await;
        a.add_address(b.local_peer_id(), addr(&b)).await;
        // Nobody reads B's queue: the first request waits in it, the second finds it full.
        let first = tokio::spawn({
            let a = a.clone();
            let peer = b.local_peer_id();
            async move { a.request(peer, b"first".to_vec()).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        match a.request(b.local_peer_id(), b"second".to_vec()).await {
            Err(NetError::Remote(reason)) => println!("refused: {reason}"),
            other => panic!("expected Remote, got {other:?}"),
        }
        let queued = b_in.next().await.expect("the first request");
        assert_eq!(queued.body, b"first");
        queued.respond(b"late but fine".to_vec());
        assert_eq!(first.await.expect("join").expect("first answer"), b"late but fine");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn shutdown_closes_everything() {
    timeout(TEST_LIMIT, async {
        let (a, mut a_in) = start(config(SECRET, 1 << 20)).await;
        let (b, b_in) = start(config(SECRET, 1 << 20)).await;
        let _seen = serve(b_in, echo);
        a.add_address(b.local_peer_id(), addr(&b)).await;
        a.request(b.local_peer_id(), b"hi".to_vec()).await.expect("before shutdown");
        a.shutdown().await;
        assert!(matches!(a.request(b.local_peer_id(), b"hi".to_vec()).await, Err(NetError::Closed)));
        assert!(a_in.next().await.is_none());
        assert!(a.connected().await.is_empty());
        a.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn start_fails_on_an_unbindable_address() {
    timeout(TEST_LIMIT, async {
        let (a, _a_in) = start(config(SECRET, 1 << 20)).await;
        let mut taken = addr(&a);
        taken.pop();
        let mut cfg = config(SECRET, 1 << 20);
        cfg.listen = vec![taken];
        assert!(matches!(PeerNet::start(cfg).await, Err(NetError::Listen(_))));
    })
    .await
    .expect("test timed out");
}
