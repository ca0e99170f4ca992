//! The sample `service.json.example` and `init`'s output must load as they are,
//! and every kind of mistake must name the file and the key.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use pincluster_config::{init, load, Overrides, ServiceConfig};

fn write(dir: &std::path::Path, text: &str) {
    std::fs::write(dir.join("service.json"), text).unwrap();
}

fn load_text(text: &str) -> Result<ServiceConfig, String> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), text);
    load(dir.path(), Vec::new(), &Overrides::default()).map_err(|e| e.to_string())
}

#[test]
fn example_parses() {
    let text = include_str!("../../../service.json.example");
    let config = load_text(text).unwrap();
    assert!(config.api.restapi.is_some() && config.api.pinsvcapi.is_some());
    let gateway = config.api.gateway.expect("the example enables the gateway");
    assert_eq!(gateway.http_listen_multiaddress.to_vec()[0].to_string(), "/ip4/127.0.0.1/tcp/8080");
    assert_eq!(gateway, pincluster_config::GatewayConfig::default(), "the example shows the defaults");
}

#[test]
fn gateway_is_off_by_default_and_its_mistakes_name_the_key() {
    let config = load_text("{}").unwrap();
    assert!(config.api.gateway.is_none());
    let error = load_text(r#"{"api":{"gateway":{"max_concurrent_per_client":0}}}"#).unwrap_err();
    assert!(error.contains("api.gateway.max_concurrent_per_client"), "{error}");
    let error = load_text(r#"{"api":{"gateway":{"http_listen_multiaddress":"/dns4/x/tcp/1"}}}"#).unwrap_err();
    assert!(error.contains("api.gateway.http_listen_multiaddress[0]"), "{error}");
}

#[test]
fn init_output_loads_and_keeps_identity() {
    let dir = tempfile::tempdir().unwrap();
    let first = init(dir.path(), false).unwrap();
    assert!(first.config_written && first.identity_written);
    assert!(first.peer_id.starts_with("12D3KooW"));
    let config = load(dir.path(), Vec::new(), &Overrides::default()).unwrap();
    let users = config.api.restapi.unwrap().basic_auth_credentials.unwrap();
    assert_eq!(users.len(), 1);
    let again = init(dir.path(), true).unwrap();
    assert!(again.config_written && !again.identity_written);
    assert_eq!(again.peer_id, first.peer_id);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("identity.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn precedence_is_file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        r#"{"cluster":{"peername":"file"},"api":{"restapi":{"http_listen_multiaddress":"/ip4/127.0.0.1/tcp/1"}}}"#,
    );
    let env = vec![
        ("PINCLUSTER_CLUSTER__PEERNAME".to_string(), "env".to_string()),
        ("PINCLUSTER_API__RESTAPI__HTTP_LISTEN_MULTIADDRESS".to_string(), "/ip4/127.0.0.1/tcp/2".to_string()),
        ("PINCLUSTER_PATH".to_string(), "/ignored".to_string()),
    ];
    let config = load(dir.path(), env.clone(), &Overrides::default()).unwrap();
    assert_eq!(config.cluster.peername, "env");
    let flags = Overrides(vec![("cluster.peername".into(), "flag".into())]);
    let config = load(dir.path(), env, &flags).unwrap();
    assert_eq!(config.cluster.peername, "flag");
    let rest = config.api.restapi.unwrap();
    assert_eq!(rest.http_listen_multiaddress.to_vec()[0].to_string(), "/ip4/127.0.0.1/tcp/2");
}

#[test]
fn user_names_keep_their_case() {
    let config = load_text(r#"{"api":{"restapi":{"basic_auth_credentials":{"Alice":"Secret"}}}}"#).unwrap();
    let users = config.api.restapi.unwrap().basic_auth_credentials.unwrap();
    assert_eq!(users.get("Alice").map(String::as_str), Some("Secret"));
}

#[test]
fn null_credentials_turn_auth_off() {
    let config = load_text(r#"{"api":{"restapi":{"basic_auth_credentials":null}}}"#).unwrap();
    assert!(config.api.restapi.unwrap().basic_auth_credentials.is_none());
}

#[test]
fn every_error_names_the_key() {
    let cases = [
        (r#"{"cluster": {"peername": "x",}"#, "", "line"),
        (r#"{"clusterx": {}}"#, "", "clusterx"),
        (r#"{"api":{"restapi":{"idle_timeout": "soon"}}}"#, "api.restapi.idle_timeout", "invalid duration"),
        (r#"{"api":{"restapi":{"max_body_bytes": "lots"}}}"#, "api.restapi.max_body_bytes", ""),
        (
            r#"{"api":{"restapi":{"http_listen_multiaddress": "/ip4/1.2.3/tcp/1"}}}"#,
            "api.restapi.http_listen_multiaddress",
            "",
        ),
        (
            r#"{"api":{"restapi":{"http_listen_multiaddress": "/ip4/127.0.0.1/udp/1"}}}"#,
            "api.restapi.http_listen_multiaddress[0]",
            "not of the form",
        ),
        (
            r#"{"api":{"pinsvcapi":{"basic_auth_credentials": {}}}}"#,
            "api.pinsvcapi.basic_auth_credentials",
            "at least one entry",
        ),
        (
            r#"{"api":{"restapi":{"http_listen_multiaddress": "/ip4/0.0.0.0/tcp/9094"}}}"#,
            "api.restapi.http_listen_multiaddress[0]",
            "allow_unauthenticated",
        ),
    ];
    for (text, key, reason) in cases {
        let err = load_text(text).expect_err(text);
        assert!(err.contains("service.json"), "{err}");
        assert!(err.contains(key), "{text}: {err}");
        assert!(err.contains(reason), "{text}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
