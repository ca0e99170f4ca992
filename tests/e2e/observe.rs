//! Issue 15, the operator's view: `/metrics` scraped by a real Prometheus
//! server and linted by `promtool`, request IDs in responses and logs, JSON
//! logs, and traces exported over OTLP to a receiver that records what it gets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pincluster_tests::{add_files, client, eventually, test_config, Daemon};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Debian's Prometheus, installed by scripts/setup-test-deps.sh.
const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run ./scripts/setup-test-deps.sh (make test does) to install Debian's prometheus"
    );
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Prometheus server scraping `target` (host:port) every second, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        require(PROMETHEUS);
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: pincluster\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// The value of the one series `query` selects, once there is one.
    fn value(&self, query: &str) -> Option<f64> {
        let response = client().get(format!("{}/api/v1/query", self.url)).query(&[("query", query)]).send().ok()?;
        let body: Value = response.json().ok()?;
        let result = body["data"]["result"].as_array()?;
        result.first()?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_pin_and_request_series_that_change_after_a_pin() {
    let daemon = Daemon::start(test_config(json!({ "observations": { "reporting_interval": "1s" } })));
    let target = daemon.rest.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(&target);
    let scraped = eventually(Duration::from_secs(60), "Prometheus scrapes the daemon", || {
        prometheus.value("up{job=\"pincluster\"} == 1")
    });
    assert_eq!(scraped, 1.0);
    let pinned = eventually(Duration::from_secs(30), "pin series in Prometheus", || {
        prometheus.value("pincluster_pins{status=\"pinned\"}")
    });
    assert_eq!(pinned, 0.0, "a new peer has no pins");

    let added = add_files(&daemon, "", &[("hello.txt", b"hello from the metrics test\n")]);
    let cid = added.last().unwrap()["cid"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(60), "the pinned gauge reaches 1 in Prometheus", || {
        prometheus.value("pincluster_pins{status=\"pinned\"}").filter(|v| *v == 1.0)
    });
    eventually(Duration::from_secs(30), "the /add request counted in Prometheus", || {
        prometheus.value("sum(pincluster_http_requests_total{api=\"restapi\",route=\"/add\",status=\"200\"})")
    });
    let latency = eventually(Duration::from_secs(30), "a latency histogram in Prometheus", || {
        prometheus.value("sum(pincluster_http_request_duration_seconds_count{api=\"restapi\",route=\"/add\"})")
    });
    assert!(latency >= 1.0);
    // The pinset's group commit and the scrapes themselves are there too.
    assert!(prometheus.value("pincluster_pinset_write_batches_total").is_some_and(|v| v >= 1.0));
    assert!(prometheus.value("pincluster_pinset_fsync_duration_seconds_count").is_some_and(|v| v >= 1.0));
    assert!(prometheus.value("pincluster_raft_is_leader").is_some_and(|v| v == 1.0));

    // A bad password is counted by reason, never with the credential.
    let refused = client().get(format!("{}/pins", daemon.pinsvc)).basic_auth("alice", Some("nope")).send().unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let text = client().get(format!("{}/metrics", daemon.rest)).send().unwrap().text().unwrap();
    assert!(text.contains("pincluster_auth_failures_total{api=\"pinsvcapi\",reason=\"wrong_user_or_password\"} 1"));
    assert!(!text.contains("nope"));
    assert!(text.contains("pincluster_pins{status=\"pinned\"} 1"), "{cid} not counted:\n{text}");

    // The exposition passes promtool's checks, lint included.
    require(PROMTOOL);
    let mut promtool = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");
}

#[test]
fn metrics_need_credentials_off_loopback_and_a_listener_of_their_own_is_open() {
    // The REST API on every address: /metrics is behind its credentials.
    let open_everywhere = json!({ "api": { "restapi": { "http_listen_multiaddress": "/ip4/0.0.0.0/tcp/0" } } });
    let daemon = Daemon::start(test_config(open_everywhere));
    let url = format!("{}/metrics", daemon.rest.replace("0.0.0.0", "127.0.0.1"));
    assert_eq!(client().get(&url).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    let allowed = client().get(&url).basic_auth("alice", Some("alice-pw")).send().unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert!(allowed.text().unwrap().contains("# TYPE pincluster_pins gauge"));
    drop(daemon);

    // A dedicated loopback listener: open, and the REST API has no /metrics.
    let own = json!({ "observations": { "metrics_listen_multiaddress": "/ip4/127.0.0.1/tcp/0" } });
    let daemon = Daemon::start(test_config(own));
    assert!(daemon.metrics.ends_with("/metrics"), "no metrics listener line");
    let response = client().get(&daemon.metrics).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let rest = client().get(format!("{}/metrics", daemon.rest)).basic_auth("alice", Some("alice-pw")).send().unwrap();
    assert_eq!(rest.status(), StatusCode::NOT_FOUND);
}

#[test]
fn a_request_id_is_echoed_and_carried_by_the_log_lines_of_its_request() {
    let daemon = Daemon::start(test_config(json!({})));
    let cid = pincluster_tests::fake_cid(1515);
    let given = client()
        .post(format!("{}/pins", daemon.pinsvc))
        .basic_auth("alice", Some("alice-pw"))
        .header("X-Request-Id", "pin-request-0042")
        .json(&json!({ "cid": cid }))
        .send()
        .unwrap();
    assert_eq!(given.status(), StatusCode::ACCEPTED);
    assert_eq!(given.headers()["x-request-id"], "pin-request-0042");
    eventually(Duration::from_secs(10), "the request's log line", || {
        daemon.log().lines().find(|l| l.contains("pin-request-0042") && l.contains("answered")).map(drop)
    });
    // Without one, or with one unfit for logs, the daemon makes its own.
    let made = client()
        .get(format!("{}/pins", daemon.pinsvc))
        .basic_auth("alice", Some("alice-pw"))
        .header("X-Request-Id", "bad id\twith spaces")
        .send()
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn json_logs_are_one_object_per_line_with_the_request_span() {
    let daemon = Daemon::start(test_config(json!({ "observations": { "log_format": "json" } })));
    let response = client()
        .delete(format!("{}/pins/{}", daemon.pinsvc, pincluster_tests::fake_cid(77)))
        .basic_auth("alice", Some("alice-pw"))
        .header("X-Request-Id", "json-log-7")
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let line = eventually(Duration::from_secs(10), "the request's JSON log line", || {
        daemon.log().lines().find(|l| l.contains("json-log-7")).map(str::to_string)
    });
    let object: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(object["span"]["id"], "json-log-7", "{object}");
    assert_eq!(object["fields"]["status"], 404, "{object}");
    for line in daemon.log().lines() {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "not JSON: {line}");
    }
}

/// One request an OTLP receiver got: path, content type, body.
type Export = (String, String, Vec<u8>);

/// An OTLP/HTTP receiver: records the path, content type and body of every POST.
fn otlp_receiver() -> (String, Arc<Mutex<Vec<Export>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let (mut length, mut content_type) = (0usize, String::new());
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap_or(("", ""));
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = value.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
            store.lock().unwrap().push((path, content_type, body));
            let mut stream = reader.into_inner();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, received)
}

#[test]
fn traces_go_to_the_configured_otlp_endpoint() {
    let (endpoint, received) = otlp_receiver();
    let config = json!({ "observations": { "otlp_endpoint": endpoint, "service_name": "pincluster-otlp-test" } });
    let mut daemon = Daemon::start(test_config(config));
    let response = client()
        .post(format!("{}/pins", daemon.pinsvc))
        .basic_auth("alice", Some("alice-pw"))
        .header("X-Request-Id", "traced-request-9")
        .json(&json!({ "cid": pincluster_tests::fake_cid(99) }))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // A clean stop sends what the batch exporter still holds.
    assert!(daemon.stop().success());
    let exports = received.lock().unwrap().clone();
    assert!(!exports.is_empty(), "nothing exported");
    let contains = |needle: &[u8]| exports.iter().any(|(_, _, body)| body.windows(needle.len()).any(|w| w == needle));
    assert!(exports.iter().all(|(path, kind, _)| path == "/v1/traces" && kind == "application/x-protobuf"));
    assert!(contains(b"pincluster-otlp-test"), "service name not in the export");
    assert!(contains(b"traced-request-9"), "the request's span not in the export");
}
