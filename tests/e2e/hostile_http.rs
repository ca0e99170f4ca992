//! Issue 17: hostile HTTP clients. Heads and bodies trickled a byte at a
//! time are cut however long bytes keep coming, a listener serves no more
//! than `max_connections` at once, request rates are limited per user, per
//! address and per failed authentication with a 429 in each API's shape, and
//! encoded request bodies (a gzip bomb) are refused before they are read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use pincluster_tests::*;
use serde_json::{json, Value};

/// Time between two trickled bytes.
const TRICKLE: Duration = Duration::from_millis(200);

/// `host:port` of an `http://host:port` base.
fn host(base: &str) -> &str {
    base.trim_start_matches("http://")
}

fn connect(base: &str) -> TcpStream {
    let stream = TcpStream::connect(host(base)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_millis(20))).expect("read timeout");
    stream
}

/// What the server said, or `None` while it says nothing; an empty string
/// when it closed the connection.
fn poll_answer(stream: &mut TcpStream) -> Option<String> {
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
        Err(_) => Some(String::new()),
    }
}

/// Sends `bytes` one at a time, [`TRICKLE`] apart, until the server answers
/// or closes; returns what it said and how many bytes were sent by then.
/// Panics if every byte went out without an answer.
fn trickle(stream: &mut TcpStream, bytes: &[u8]) -> (String, usize) {
    for (sent, byte) in bytes.iter().enumerate() {
        if stream.write_all(&[*byte]).is_err() {
            return (String::new(), sent);
        }
        std::thread::sleep(TRICKLE);
        if let Some(answer) = poll_answer(stream) {
            return (answer, sent + 1);
        }
    }
    panic!("the server took all {} trickled bytes without cutting the request", bytes.len());
}

/// A request head that would take a minute to trickle.
fn long_head(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n", "p".repeat(300)).into_bytes()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[test]
fn trickled_heads_and_bodies_are_cut() {
    let api = json!({
        "read_header_timeout": "1s",
        "read_body_timeout": "1s",
        "min_body_bytes_per_second": 0,
    });
    let daemon = Daemon::start(test_config(json!({ "api": { "pinsvcapi": api.clone(), "restapi": api } })));

    // The first request's head: bytes keep coming, the deadline stays.
    let mut first = connect(&daemon.pinsvc);
    let head = long_head("/health");
    let (answer, sent) = trickle(&mut first, &head);
    assert!(sent < head.len());
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // The second request's head on a kept-alive connection.
    let mut kept = connect(&daemon.rest);
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").expect("first request");
    let served = eventually(Duration::from_secs(10), "the first answer", || poll_answer(&mut kept));
    assert!(served.starts_with("HTTP/1.1 204"), "{served}");
    let (answer, sent) = trickle(&mut kept, &head);
    assert!(sent < head.len());
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A JSON body trickled after its head: 408 in the PSA's shape.
    let body = json!({ "cid": fake_cid(1), "name": "x".repeat(300) }).to_string();
    let mut slow = connect(&daemon.pinsvc);
    let head = format!(
        "POST /pins HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        basic("alice", "alice-pw"),
        body.len()
    );
    slow.write_all(head.as_bytes()).expect("head");
    let (answer, sent) = trickle(&mut slow, body.as_bytes());
    assert!(sent < body.len());
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""reason":"REQUEST_TIMEOUT""#), "{answer}");

    // A multipart /add body trickled: 408 in the Cluster shape.
    let boundary = "hostileboundary";
    let upload = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n{}\r\n--{boundary}--\r\n",
        "a".repeat(300)
    );
    let mut slow = connect(&daemon.rest);
    let head = format!(
        "POST /add HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        basic("alice", "alice-pw"),
        upload.len()
    );
    slow.write_all(head.as_bytes()).expect("head");
    let (answer, sent) = trickle(&mut slow, upload.as_bytes());
    assert!(sent < upload.len());
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":408"#), "{answer}");

    // The daemon still serves everyone else.
    let (status, _) = json_of(client().get(format!("{}/health", daemon.pinsvc)).send().expect("health"));
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[test]
fn a_listener_serves_at_most_max_connections() {
    let api = json!({ "max_connections": 4, "read_header_timeout": "30s" });
    let daemon = Daemon::start(test_config(json!({ "api": { "pinsvcapi": api } })));
    // Four connections, each shown to be held by one answered request.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&daemon.pinsvc);
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let answer = eventually(Duration::from_secs(10), "an answer", || poll_answer(&mut stream));
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
        held.push(stream);
    }
    // A fifth is closed without an answer.
    let mut extra = connect(&daemon.pinsvc);
    let _ = extra.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = eventually(Duration::from_secs(10), "the extra connection closed", || poll_answer(&mut extra));
    assert_eq!(answer, "", "a connection over the limit was served");
    // Once the held ones are gone, a well-behaved client is served again.
    drop(held);
    eventually(Duration::from_secs(10), "a slot", || {
        let response = client().get(format!("{}/health", daemon.pinsvc)).send().ok()?;
        (response.status() == StatusCode::NO_CONTENT).then_some(())
    });
    let metrics = client().get(format!("{}/metrics", daemon.rest)).basic_auth("alice", Some("alice-pw")).send();
    let text = metrics.expect("metrics").text().expect("metrics text");
    assert!(text.contains(r#"pincluster_http_connections_refused_total{api="pinsvcapi"}"#), "{text}");
}

/// Asserts a 429 with a `Retry-After` of whole seconds; returns the body.
fn too_many(response: Response) -> Value {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = response.headers().get("retry-after").expect("Retry-After").to_str().expect("ascii");
    assert!(retry.parse::<u64>().expect("seconds") >= 1, "{retry}");
    json_of(response).1
}

#[test]
fn rates_are_limited_per_user_per_address_and_per_failed_login() {
    let slow = |burst: u32| json!({ "per_second": 0.01, "burst": burst });
    let config = test_config(json!({ "api": {
        "pinsvcapi": { "rate_limit_per_user": slow(3), "rate_limit_auth_failures": slow(2) },
        "restapi": { "rate_limit_per_address": slow(4) },
    }}));
    let daemon = Daemon::start(config);
    let pins = format!("{}/pins", daemon.pinsvc);

    // Per user, in the PSA's shape: alice's fourth request is refused, bob is not.
    for _ in 0..3 {
        let response = client().get(&pins).basic_auth("alice", Some("alice-pw")).send().expect("list");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = client().get(&pins).basic_auth("alice", Some("alice-pw")).send().expect("list");
    let body = too_many(response);
    assert_eq!(body["error"]["reason"], "TOO_MANY_REQUESTS", "{body}");
    let response = client().get(&pins).basic_auth("bob", Some("bob-pw")).send().expect("list");
    assert_eq!(response.status(), StatusCode::OK);

    // Per address, in the Cluster shape, whoever asks.
    let rest = |user: &str, password: &str| {
        client().get(format!("{}/id", daemon.rest)).basic_auth(user, Some(password)).send().expect("id")
    };
    for _ in 0..4 {
        assert_eq!(rest("alice", "alice-pw").status(), StatusCode::OK);
    }
    let body = too_many(rest("bob", "bob-pw"));
    assert_eq!(body["code"], 429, "{body}");
    assert!(body["message"].as_str().expect("message").contains("too many requests"), "{body}");

    // Failed logins per address: after two wrong passwords even the right one waits.
    for _ in 0..2 {
        let response = client().get(&pins).basic_auth("testuser", Some("guess")).send().expect("guess");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = client().get(&pins).basic_auth("testuser", Some("testpass")).send().expect("right");
    let body = too_many(response);
    assert_eq!(body["error"]["reason"], "TOO_MANY_REQUESTS", "{body}");
}

/// 64 MiB of zeros, gzipped (about 64 KiB).
fn gzip_bomb() -> Vec<u8> {
    let mut gzip = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip (Debian's gzip package)");
    let mut stdin = gzip.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            stdin.write_all(&zeros).expect("feed gzip");
        }
    });
    let output = gzip.wait_with_output().expect("gzip output");
    writer.join().expect("writer");
    assert!(output.status.success());
    output.stdout
}

#[test]
fn encoded_request_bodies_are_refused() {
    let daemon = Daemon::start(test_config(json!({})));
    let bomb = gzip_bomb();
    assert!(bomb.len() < 1 << 20, "the bomb is small: {} bytes", bomb.len());

    // JSON on the PSA.
    let response = client()
        .post(format!("{}/pins", daemon.pinsvc))
        .basic_auth("alice", Some("alice-pw"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(bomb.clone())
        .send()
        .expect("post");
    let (status, body) = json_of(response);
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["error"]["reason"], "UNSUPPORTED_MEDIA_TYPE", "{body}");

    // A raw body on the PSA's token route, and a multipart /add on the REST API.
    let response = client()
        .post(format!("{}/token", daemon.pinsvc))
        .basic_auth("alice", Some("alice-pw"))
        .header("Content-Encoding", "deflate, gzip")
        .body(bomb.clone())
        .send()
        .expect("token");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let boundary = "bomb";
    let mut upload =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"z\"\r\n\r\n").into_bytes();
    upload.extend_from_slice(&bomb);
    upload.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = client()
        .post(format!("{}/add", daemon.rest))
        .basic_auth("alice", Some("alice-pw"))
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .header("Content-Encoding", "gzip")
        .body(upload)
        .send()
        .expect("add");
    let (status, body) = json_of(response);
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["code"], 415, "{body}");

    // `identity` is no encoding.
    let response = client()
        .post(format!("{}/pins", daemon.pinsvc))
        .basic_auth("alice", Some("alice-pw"))
        .header("Content-Encoding", "identity")
        .json(&json!({ "cid": fake_cid(7) }))
        .send()
        .expect("post");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[test]
fn a_multipart_header_that_never_ends_is_refused() {
    let daemon = Daemon::start(test_config(json!({})));
    let boundary = "endless";
    let mut upload =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"z\"\r\nX-Long: ")
            .into_bytes();
    upload.extend(std::iter::repeat_n(b'x', 4 << 20));
    let head = format!(
        "POST /add HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        basic("alice", "alice-pw"),
        upload.len()
    );
    let mut stream = TcpStream::connect(host(&daemon.rest)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let mut writer = stream.try_clone().expect("clone");
    // The daemon may answer and close before every byte is sent.
    std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&upload);
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":413"#), "{answer}");
}
