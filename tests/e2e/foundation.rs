//! Issue 2: daemon life cycle, config errors, shared auth on both APIs
//! (tokens, every rejection, hot revocation), CORS and limits.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use pincluster_tests::*;
use serde_json::{json, Value};

/// The token IPFS Cluster mints for testuser/testpass.
const CLUSTER_TOKEN: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ0ZXN0dXNlciJ9.tXRs6ozKKJ6ntzR0iHHeR62wrG5TR8OBrbvRQZ-zwtQ";

fn get_with(url: &str, auth: Option<&str>) -> (StatusCode, Value, Vec<String>) {
    let mut request = client().get(url);
    if let Some(value) = auth {
        request = request.header("Authorization", value);
    }
    let response = request.send().expect("request");
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    let (status, body) = json_of(response);
    (status, body, challenges)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn jwt(claims: Value, alg: Algorithm, key: &[u8]) -> String {
    encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).expect("encode")
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

#[test]
fn init_writes_config_and_identity_and_daemon_initialises_on_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary("pincluster-service"))
        .args(["--config-dir", &dir.path().to_string_lossy(), "init"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let identity: Value = serde_json::from_slice(&std::fs::read(dir.path().join("identity.json")).unwrap()).unwrap();
    assert!(identity["id"].as_str().unwrap().starts_with("12D3KooW"));
    assert!(identity["private_key"].as_str().unwrap().starts_with("CAESQ"));
    let config: Value = serde_json::from_slice(&std::fs::read(dir.path().join("service.json")).unwrap()).unwrap();
    for section in ["cluster", "api", "ipfs", "pin_tracker", "state"] {
        assert!(config.get(section).is_some(), "missing section {section}");
    }
    // A second init refuses; --force rewrites service.json and keeps the identity.
    let again = Command::new(binary("pincluster-service"))
        .args(["--config-dir", &dir.path().to_string_lossy(), "init"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let forced = Command::new(binary("pincluster-service"))
        .args(["--config-dir", &dir.path().to_string_lossy(), "init", "--force"])
        .output()
        .unwrap();
    assert!(forced.status.success());
    let kept: Value = serde_json::from_slice(&std::fs::read(dir.path().join("identity.json")).unwrap()).unwrap();
    assert_eq!(kept, identity);

    // The daemon initialises an empty folder by itself (PINCLUSTER_PATH), listening on loopback.
    let fresh = tempfile::tempdir().unwrap();
    let home = fresh.path().join("home");
    let mut child = Command::new(binary("pincluster-service"))
        .args(["daemon", "--restapi-listen", "/ip4/127.0.0.1/tcp/0", "--pinsvcapi-listen", "/ip4/127.0.0.1/tcp/0"])
        .env("PINCLUSTER_PATH", &home)
        .env("PINCLUSTER_IPFS__LISTEN_MULTIADDRESS", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(30), "config folder", || home.join("service.json").exists().then_some(()));
    signal(&child, "TERM");
    wait_with_timeout(&mut child, Duration::from_secs(20));
    assert!(home.join("identity.json").exists());
}

#[test]
fn second_daemon_on_the_same_folder_exits_and_sigterm_stops_cleanly() {
    let mut daemon = Daemon::start(test_config(json!({})));
    let out = Command::new(binary("pincluster-service"))
        .args(["--config-dir", &daemon.dir().to_string_lossy(), "daemon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another pincluster-service is running"), "{stderr}");
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
}

/// Runs the daemon on the config folder `dir`, which must fail to start;
/// returns the last line of its stderr, and the whole of it.
fn failed_start(dir: &std::path::Path) -> (String, String) {
    let out = Command::new(binary("pincluster-service"))
        .args(["--config-dir", &dir.to_string_lossy(), "daemon"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the daemon started: {stderr}");
    (stderr.lines().last().unwrap_or_default().to_string(), stderr)
}

#[test]
fn config_errors_exit_with_one_line_naming_file_and_key() {
    let cases = [
        ("{\"cluster\": ", "service.json"),
        ("{\"bogus\": 1}", "bogus"),
        ("{\"api\": {\"restapi\": {\"idle_timeout\": 5}}}", "api.restapi.idle_timeout"),
        (
            "{\"api\": {\"restapi\": {\"http_listen_multiaddress\": \"/ip4/nope/tcp/1\"}}}",
            "api.restapi.http_listen_multiaddress",
        ),
        ("{\"api\": {\"pinsvcapi\": {\"basic_auth_credentials\": {}}}}", "api.pinsvcapi.basic_auth_credentials"),
    ];
    for (text, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        init_dir(dir.path(), &json!({}));
        std::fs::write(dir.path().join("service.json"), text).unwrap();
        let (last, stderr) = failed_start(dir.path());
        assert!(last.contains("service.json") && last.contains(key), "{text}: {stderr}");
    }
}

#[test]
fn tokens_are_minted_and_accepted_on_both_apis() {
    let daemon = Daemon::start(test_config(json!({})));
    for base in [&daemon.rest, &daemon.pinsvc] {
        let token = token(base, "alice", "alice-pw");
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iss"], "alice");
        assert!(claims["iat"].as_u64().is_some());
        assert!(claims.get("exp").is_none());
        // A token works on the other API too (same user and password), and mints further tokens.
        for url in [format!("{}/id", daemon.rest), format!("{}/pins", daemon.pinsvc)] {
            let (status, _, _) = get_with(&url, Some(&format!("Bearer {token}")));
            assert_ne!(status, StatusCode::UNAUTHORIZED);
        }
        let lower = format!("bearer {token}");
        let (status, _) =
            json_of(client().post(format!("{base}/token")).header("Authorization", lower).send().unwrap());
        assert_eq!(status, StatusCode::OK);
    }
    // The token minted by IPFS Cluster for testuser/testpass is accepted.
    let (status, body, _) = get_with(&format!("{}/id", daemon.rest), Some(&format!("Bearer {CLUSTER_TOKEN}")));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], daemon.peer_id.as_str());
}

#[test]
fn token_ttl_sets_exp_and_expired_tokens_are_refused() {
    let daemon = Daemon::start(test_config(json!({ "api": { "pinsvcapi": { "token_ttl": "1h" } } })));
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp > now() + 3500 && exp <= now() + 3601);
}

#[test]
fn every_rejection_is_a_401_in_each_api_shape() {
    let daemon = Daemon::start(test_config(json!({})));
    let t = now();
    let forged = [
        ("wrong password", basic("alice", "nope")),
        ("unknown user", basic("mallory", "alice-pw")),
        ("malformed basic", "Basic !!!".to_string()),
        ("garbage bearer", "Bearer not-a-jwt".to_string()),
        ("other user's password", format!("Bearer {}", jwt(json!({"iss": "alice"}), Algorithm::HS256, b"bob-pw"))),
        ("unknown issuer", format!("Bearer {}", jwt(json!({"iss": "mallory"}), Algorithm::HS256, b"x"))),
        ("expired", format!("Bearer {}", jwt(json!({"iss": "alice", "exp": t - 120}), Algorithm::HS256, b"alice-pw"))),
        (
            "not yet valid",
            format!("Bearer {}", jwt(json!({"iss": "alice", "nbf": t + 3600}), Algorithm::HS256, b"alice-pw")),
        ),
        ("alg none", {
            let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!("Bearer {}.{}.", enc(json!({"alg": "none", "typ": "JWT"})), enc(json!({"iss": "alice"})))
        }),
        ("RS256 header", {
            let good = jwt(json!({"iss": "alice"}), Algorithm::HS256, b"alice-pw");
            let parts: Vec<&str> = good.split('.').collect();
            let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
            format!("Bearer {header}.{}.{}", parts[1], parts[2])
        }),
        ("tampered payload", {
            let good = jwt(json!({"iss": "alice"}), Algorithm::HS256, b"alice-pw");
            let parts: Vec<&str> = good.split('.').collect();
            let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"iss":"bob"}"#);
            format!("Bearer {}.{payload}.{}", parts[0], parts[2])
        }),
    ];
    for base in [&daemon.rest, &daemon.pinsvc] {
        let psa = base == &daemon.pinsvc;
        let url = if psa { format!("{base}/pins") } else { format!("{base}/id") };
        let (status, body, challenges) = get_with(&url, None);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenges.len(), 2, "{challenges:?}");
        check_error_shape(psa, &body, "no auth provided");
        for (what, header) in &forged {
            let (status, body, challenges) = get_with(&url, Some(header));
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
            assert_eq!(challenges.len(), 1, "{what}: {challenges:?}");
            check_error_shape(psa, &body, "unauthorized");
        }
        // A valid HS384/HS512 token is fine: HMAC family only.
        let hs512 = jwt(json!({"iss": "alice"}), Algorithm::HS512, b"alice-pw");
        let (status, _, _) = get_with(&url, Some(&format!("Bearer {hs512}")));
        assert_eq!(status, StatusCode::OK);
        // Minting needs valid credentials too.
        let (status, _) =
            json_of(client().post(format!("{base}/token")).basic_auth("alice", Some("x")).send().unwrap());
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

fn check_error_shape(psa: bool, body: &Value, text: &str) {
    if psa {
        assert_eq!(body["error"]["reason"], "UNAUTHORIZED", "{body}");
        assert!(body["error"]["details"].as_str().unwrap().contains(text), "{body}");
        assert_eq!(body.as_object().unwrap().len(), 1);
    } else {
        assert_eq!(body["code"], 401, "{body}");
        assert!(body["message"].as_str().unwrap().contains(text), "{body}");
    }
}

#[test]
fn basic_wins_over_bearer_like_cluster() {
    let daemon = Daemon::start(test_config(json!({})));
    let good = token(&daemon.pinsvc, "alice", "alice-pw");
    let url = format!("{}/pins", daemon.pinsvc);
    let both = |basic_value: String, bearer: String| {
        client().get(&url).header("Authorization", basic_value).header("Authorization", bearer).send().unwrap().status()
    };
    assert_eq!(both(basic("alice", "alice-pw"), "Bearer junk".into()), StatusCode::OK);
    assert_eq!(both(basic("alice", "wrong"), format!("Bearer {good}")), StatusCode::UNAUTHORIZED);
}

/// The test config with exactly `users` on the PSA (merging would keep the others).
fn with_pinsvc_users(users: Value) -> Value {
    let mut config = test_config(json!({}));
    config["api"]["pinsvcapi"]["basic_auth_credentials"] = users;
    config
}

#[test]
fn changing_a_password_revokes_tokens_without_restart() {
    let daemon = Daemon::start(test_config(json!({})));
    let alice = token(&daemon.pinsvc, "alice", "alice-pw");
    let bob = token(&daemon.pinsvc, "bob", "bob-pw");
    let url = format!("{}/pins", daemon.pinsvc);
    let status_with = |t: &str| client().get(&url).bearer_auth(t).send().unwrap().status();
    assert_eq!(status_with(&alice), StatusCode::OK);

    // A bad edit keeps the old credentials.
    std::fs::write(daemon.dir().join("service.json"), "{ not json").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(status_with(&alice), StatusCode::OK);

    // Alice's password changes: her old token dies within a second, Bob's lives.
    daemon.write_config(&with_pinsvc_users(json!({ "alice": "new-alice-pw", "bob": "bob-pw" })));
    eventually(Duration::from_secs(1), "old token refused", || {
        (status_with(&alice) == StatusCode::UNAUTHORIZED).then_some(())
    });
    assert_eq!(status_with(&bob), StatusCode::OK);
    let fresh = token(&daemon.pinsvc, "alice", "new-alice-pw");
    assert_eq!(status_with(&fresh), StatusCode::OK);

    // SIGHUP reloads too: removing Bob revokes his token.
    daemon.write_config(&with_pinsvc_users(json!({ "alice": "new-alice-pw" })));
    daemon.signal("HUP");
    eventually(Duration::from_secs(1), "bob refused", || (status_with(&bob) == StatusCode::UNAUTHORIZED).then_some(()));
}

#[test]
fn health_and_preflight_need_no_auth_and_cors_allows_authorization() {
    let daemon = Daemon::start(test_config(json!({})));
    for base in [&daemon.rest, &daemon.pinsvc] {
        let response = client().get(format!("{base}/health")).send().unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let preflight = client()
            .request(reqwest::Method::OPTIONS, format!("{base}/pins"))
            .header("Origin", "https://app.example")
            .header("Access-Control-Request-Method", "DELETE")
            .header("Access-Control-Request-Headers", "authorization,content-type")
            .send()
            .unwrap();
        assert!(preflight.status().is_success(), "{}", preflight.status());
        let allowed = preflight.headers().get("access-control-allow-headers").unwrap().to_str().unwrap().to_lowercase();
        assert!(allowed.contains("authorization"), "{allowed}");
        let methods = preflight.headers().get("access-control-allow-methods").unwrap().to_str().unwrap().to_string();
        assert!(methods.contains("DELETE") && methods.contains("POST"), "{methods}");
    }
}

#[test]
fn oversized_headers_and_bodies_get_431_and_413_and_the_server_keeps_serving() {
    let daemon = Daemon::start(test_config(json!({ "api": { "pinsvcapi": { "max_body_bytes": 4096 } } })));
    let token = token(&daemon.pinsvc, "alice", "alice-pw");
    let big = "x".repeat(20_000);
    for (base, psa) in [(&daemon.rest, false), (&daemon.pinsvc, true)] {
        let (status, body) =
            json_of(client().get(format!("{base}/pins")).bearer_auth(&token).header("X-Big", &big).send().unwrap());
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{body}");
        if psa {
            assert_eq!(body["error"]["reason"], "REQUEST_HEADER_FIELDS_TOO_LARGE");
        } else {
            assert_eq!(body["code"], 431);
        }
    }
    let body = json!({ "cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "name": "x".repeat(8000) });
    let (status, reply) =
        json_of(client().post(format!("{}/pins", daemon.pinsvc)).bearer_auth(&token).json(&body).send().unwrap());
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    assert_eq!(reply["error"]["reason"], "PAYLOAD_TOO_LARGE");
    let (status, _) = json_of(client().get(format!("{}/pins", daemon.pinsvc)).bearer_auth(&token).send().unwrap());
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn id_and_version_describe_this_peer() {
    let daemon = Daemon::start(test_config(json!({})));
    let (status, id) =
        json_of(client().get(format!("{}/id", daemon.rest)).basic_auth("bob", Some("bob-pw")).send().unwrap());
    assert_eq!(status, StatusCode::OK);
    assert_eq!(id["id"], daemon.peer_id.as_str());
    assert_eq!(id["peername"], "test-peer");
    assert_eq!(id["error"], "");
    for addr in id["addresses"].as_array().unwrap() {
        assert!(addr.as_str().unwrap().ends_with(&format!("/p2p/{}", daemon.peer_id)));
    }
    let (status, version) =
        json_of(client().get(format!("{}/version", daemon.rest)).basic_auth("bob", Some("bob-pw")).send().unwrap());
    assert_eq!(status, StatusCode::OK);
    assert!(version["version"].as_str().is_some());
}

#[test]
fn a_port_in_use_exits_with_one_line_naming_the_key_to_change() {
    // A port another program holds (as Kubo holds 4001), for each listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let addr = format!("/ip4/127.0.0.1/tcp/{port}");
    let cases = [
        (json!({ "ipfs": { "listen_multiaddress": [addr] } }), "ipfs.listen_multiaddress"),
        (json!({ "cluster": { "listen_multiaddress": [addr] } }), "cluster.listen_multiaddress"),
        (json!({ "api": { "restapi": { "http_listen_multiaddress": addr } } }), "api.restapi.http_listen_multiaddress"),
    ];
    for (overrides, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        init_dir(dir.path(), &test_config(overrides));
        let (last, stderr) = failed_start(dir.path());
        assert!(last.contains(key) && last.contains(&port) && last.contains("in use"), "{key}: {stderr}");
    }
}
