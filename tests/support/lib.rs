//! Test support: start the real `pincluster-service` binary on port 0 in a
//! temp folder and talk HTTP to it. Read [`Daemon`] first.

mod disk;
mod kubo;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use disk::SmallDisk;
pub use kubo::{random_file, repo_root, Kubo};
pub use reqwest::blocking::{Client, RequestBuilder, Response};
pub use reqwest::StatusCode;

/// How long a daemon may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of a binary built by `cargo build` next to this test executable.
pub fn binary(name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(format!("{}_BIN", name.to_uppercase().replace('-', "_"))) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile folder");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// Users configured on both APIs by [`Daemon::start`].
pub const USERS: [(&str, &str); 3] = [("alice", "alice-pw"), ("bob", "bob-pw"), ("testuser", "testpass")];

/// A service.json for tests: both APIs on port 0 with [`USERS`], the IPFS
/// node on a loopback port 0 with no DHT bootstrap peers (tests have no
/// network); `extra` is merged over it (objects merge, other values replace).
pub fn test_config(extra: Value) -> Value {
    let users: serde_json::Map<String, Value> = USERS.iter().map(|(u, p)| (u.to_string(), json!(p))).collect();
    // The suite's own bursts (thousands of pins from eight threads) are load,
    // not abuse: request rates are not limited unless a test asks
    // (hostile_http.rs). Failed logins keep their default limit.
    let off = json!({ "per_second": 0, "burst": 1 });
    let api = json!({
        "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/0",
        "basic_auth_credentials": users,
        "rate_limit_per_user": off,
        "rate_limit_per_address": off,
    });
    let mut base = json!({
        "cluster": { "peername": "test-peer", "listen_multiaddress": ["/ip4/127.0.0.1/tcp/0"] },
        "api": { "restapi": api.clone(), "pinsvcapi": api },
        "ipfs": { "listen_multiaddress": ["/ip4/127.0.0.1/tcp/0"], "bootstrap": [] },
    });
    merge(&mut base, extra);
    base
}

/// Merges `extra` into `base`: objects merge key by key, other values replace.
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// A running daemon, killed when dropped.
pub struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub rest: String,
    pub pinsvc: String,
    pub peer_id: String,
    /// The cluster port's address, with `/p2p/<peer id>`: what others bootstrap from.
    pub cluster: String,
    /// `http://HOST:PORT/metrics` when metrics have a listener of their own.
    pub metrics: String,
    /// `http://HOST:PORT` of the trustless gateway when `api.gateway` is set.
    pub gateway: String,
    /// A command the daemon is started through (e.g. [`SmallDisk::wrapper`]); empty: none.
    pub wrapper: Vec<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Initialises a temp config folder with `config` and starts the daemon.
    pub fn start(config: Value) -> Daemon {
        let mut daemon = Daemon::init(config);
        daemon.spawn();
        daemon
    }

    /// Initialises a temp config folder with `config` without starting the
    /// daemon: [`Daemon::spawn`] starts it.
    pub fn init(config: Value) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        init_dir(dir.path(), &config);
        Daemon {
            child: None,
            dir,
            rest: String::new(),
            pinsvc: String::new(),
            peer_id: String::new(),
            cluster: String::new(),
            metrics: String::new(),
            gateway: String::new(),
            wrapper: Vec::new(),
            stderr: Default::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (again) on the same folder and waits for the ready line.
    pub fn spawn(&mut self) {
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary("pincluster-service"));
                command
            }
            None => Command::new(binary("pincluster-service")),
        };
        let mut child = command
            .args(["--config-dir", &self.dir.path().to_string_lossy(), "daemon"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pincluster-service");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = self.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("PINCLUSTER_TEST_LOG").is_some() {
                    eprintln!("daemon: {line}");
                }
                if let Ok(mut log) = log.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("restapi listening on ") {
                        self.rest = url.to_string();
                    } else if let Some(url) = line.strip_prefix("pinsvcapi listening on ") {
                        self.pinsvc = url.to_string();
                    } else if let Some(url) = line.strip_prefix("metrics listening on ") {
                        self.metrics = url.to_string();
                    } else if let Some(url) = line.strip_prefix("gateway listening on ") {
                        self.gateway = url.to_string();
                    } else if let Some(addr) = line.strip_prefix("cluster listening on ") {
                        self.cluster = addr.to_string();
                    } else if let Some(peer) = line.strip_prefix("ready: peer ") {
                        self.peer_id = peer.to_string();
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("daemon did not become ready:\n{}", self.log());
                }
            }
        }
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        self.child = Some(child);
    }

    /// The running daemon's process ID (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// What the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        signal(&child, "TERM");
        wait_with_timeout(&mut child, Duration::from_secs(20))
    }

    /// Sends a signal by name to the running daemon.
    pub fn signal(&self, name: &str) {
        signal(self.child.as_ref().expect("daemon running"), name);
    }

    /// Rewrites service.json (the daemon watches it).
    pub fn write_config(&self, config: &Value) {
        let path = self.dir.path().join("service.json");
        let tmp = self.dir.path().join("service.json.new");
        std::fs::write(&tmp, serde_json::to_string_pretty(config).expect("json")).expect("write config");
        std::fs::rename(tmp, path).expect("replace config");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Writes identity.json with `pincluster-service init` and then `config` as service.json.
pub fn init_dir(dir: &Path, config: &Value) {
    let status = Command::new(binary("pincluster-service"))
        .args(["--config-dir", &dir.to_string_lossy(), "init"])
        .stdout(Stdio::null())
        .status()
        .expect("run init");
    assert!(status.success(), "init failed");
    std::fs::write(dir.join("service.json"), serde_json::to_string_pretty(config).expect("json")).expect("write");
}

/// Sends a signal by name (`TERM`, `HUP`, `KILL`) with kill(1).
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().expect("kill");
    assert!(status.success(), "kill -{name} failed");
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A valid CIDv1 (raw, sha2-256) whose content exists nowhere: it stays
/// queued or pinning until it fails, which is what most API tests need.
pub fn fake_cid(seed: u64) -> String {
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&seed.to_be_bytes());
    digest[8..16].copy_from_slice(&0x5eed_u64.to_be_bytes());
    let hash = cid::multihash::Multihash::<64>::wrap(0x12, &digest).expect("multihash");
    cid::Cid::new_v1(0x55, hash).to_string()
}

/// Runs `tests/js/<script>` with node and `args`; it must exit 0 and print
/// "all operations passed". Fails clearly when the JS clients are not installed.
pub fn run_js_client(script: &str, args: &[&str]) {
    let root = repo_root();
    let modules = root.join("tests/js/node_modules");
    assert!(modules.exists(), "{} is missing: run ./scripts/setup-test-deps.sh (make test does)", modules.display());
    let output = Command::new("node").arg(root.join("tests/js").join(script)).args(args).output().expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all operations passed"), "{stdout}");
}

/// An HTTP client with a timeout, so no test can hang on a request.
pub fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Status and JSON body of a response (`Null` for an empty body).
pub fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().expect("body");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, body)
}

/// A Bearer token for `user` from `POST {base}/token` with Basic auth.
pub fn token(base: &str, user: &str, password: &str) -> String {
    let (status, body) =
        json_of(client().post(format!("{base}/token")).basic_auth(user, Some(password)).send().expect("token"));
    assert_eq!(status, StatusCode::OK, "{body}");
    body["token"].as_str().expect("token string").to_string()
}

/// Posts a multipart upload to the REST API's `/add` as alice with `query`;
/// returns the status and the body text.
pub fn post_add(daemon: &Daemon, query: &str, form: reqwest::blocking::multipart::Form) -> (StatusCode, String) {
    let response = client()
        .post(format!("{}/add?{query}", daemon.rest))
        .basic_auth("alice", Some("alice-pw"))
        .multipart(form)
        .send()
        .expect("POST /add");
    let status = response.status();
    (status, response.text().expect("/add body"))
}

/// Uploads `files` (name, bytes) to the REST API's `/add` as alice with
/// `query`; returns the NDJSON objects it answered (the last one is the root).
pub fn add_files(daemon: &Daemon, query: &str, files: &[(&str, &[u8])]) -> Vec<Value> {
    use reqwest::blocking::multipart::{Form, Part};
    let form = files.iter().fold(Form::new(), |form, (name, bytes)| {
        form.part("file", Part::bytes(bytes.to_vec()).file_name(name.to_string()))
    });
    let (status, body) = post_add(daemon, query, form);
    assert_eq!(status, StatusCode::OK, "/add: {body}");
    body.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}
