//! Behaviour of the public API of `pincluster-auth`: read `check` first.
#![allow(clippy::unwrap_used)] // Unwrap is fine in tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pincluster_auth::{AuthError, AuthUser, Authenticator, Challenge, TokenOptions, Users, ANONYMOUS_USER};
use serde_json::{json, Value};

const CLUSTER_VECTOR: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ0ZXN0dXNlciJ9.tXRs6ozKKJ6ntzR0iHHeR62wrG5TR8OBrbvRQZ-zwtQ";

fn users(pairs: &[(&str, &str)]) -> Users {
    pairs.iter().map(|(user, password)| (user.to_string(), password.to_string())).collect()
}

fn auth(pairs: &[(&str, &str)]) -> Authenticator {
    Authenticator::new(Some(users(pairs)), TokenOptions::default())
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Authenticates with the given header values; returns the user name or the error.
fn check(auth: &Authenticator, headers: &[&str]) -> Result<String, AuthError> {
    auth.authenticate(headers.iter().copied()).map(|user| user.name().to_owned())
}

fn assert_invalid_token(result: Result<String, AuthError>) {
    match result {
        Err(error @ AuthError::InvalidToken(_)) => assert_eq!(error.challenge(), Challenge::Bearer),
        other => panic!("expected InvalidToken, got {other:?}"),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A token signed with `secret` using `alg`, with any claims.
fn signed(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn b64json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// The claims of a token, read without verification.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn user_of(auth: &Authenticator, user: &str, password: &str) -> AuthUser {
    auth.authenticate([basic(user, password).as_str()]).unwrap()
}

#[test]
fn cluster_token_vector_verifies() {
    let auth = auth(&[("testuser", "testpass"), ("other", "otherpass")]);
    assert_eq!(check(&auth, &[&bearer(CLUSTER_VECTOR)]), Ok("testuser".to_owned()));
    // The vector's signature is HMAC-SHA256 keyed by the raw password bytes.
    let (message, signature) = CLUSTER_VECTOR.rsplit_once('.').unwrap();
    let resigned =
        jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(b"testpass"), Algorithm::HS256)
            .unwrap();
    assert_eq!(resigned, signature);
    assert_eq!(claims_of(CLUSTER_VECTOR), json!({"iss": "testuser"}));
}

#[test]
fn cluster_vector_fails_with_another_password() {
    let auth = auth(&[("testuser", "otherpass")]);
    assert_invalid_token(check(&auth, &[&bearer(CLUSTER_VECTOR)]));
}

#[test]
fn basic_accepts_configured_user() {
    let auth = auth(&[("alice", "pa:ss"), ("bob", "bobpass")]);
    assert_eq!(check(&auth, &[&basic("alice", "pa:ss")]), Ok("alice".to_owned()));
    assert_eq!(check(&auth, &[&basic("bob", "bobpass")]), Ok("bob".to_owned()));
    // Scheme name case-insensitive.
    let lower = basic("bob", "bobpass").replacen("Basic", "bASIC", 1);
    assert_eq!(check(&auth, &[&lower]), Ok("bob".to_owned()));
}

#[test]
fn basic_rejections() {
    let auth = auth(&[("alice", "secret"), ("bob", "bobpass")]);
    let cases = [
        basic("alice", "wrong"),
        basic("alice", "secre"),
        basic("alice", "secret2"),
        basic("carol", "secret"),
        basic("alice", "bobpass"),
        basic("", "secret"),
        basic("alice", ""),
        format!("Basic {}", STANDARD.encode("alicesecret")),
        "Basic not*base64!".to_owned(),
        "Basic YWxpY2U6c2VjcmV0".to_owned() + "=", // extra padding
        format!("Basic {}", "A".repeat(9 * 1024)),
    ];
    for case in &cases {
        let result = check(&auth, &[case]);
        assert_eq!(result, Err(AuthError::BadBasic), "{case:.40}");
    }
    assert_eq!(AuthError::BadBasic.challenge(), Challenge::Basic);
    assert_eq!(AuthError::BadBasic.public_message(), "unauthorized: access denied");
}

#[test]
fn no_credentials() {
    let auth = auth(&[("alice", "secret")]);
    let expected = Err(AuthError::NoCredentials);
    assert_eq!(check(&auth, &[]), expected);
    assert_eq!(check(&auth, &["Digest username=alice"]), expected);
    assert_eq!(check(&auth, &["Bearer"]), expected);
    assert_eq!(AuthError::NoCredentials.challenge(), Challenge::Both);
    assert_eq!(AuthError::NoCredentials.public_message(), "unauthorized: no auth provided");
}

#[test]
fn mint_and_verify_without_ttl() {
    let auth = auth(&[("alice", "secret"), ("bob", "bobpass")]);
    let alice = user_of(&auth, "alice", "secret");
    let before = now();
    let token = auth.mint_token(&alice).unwrap();
    let claims = claims_of(&token);
    assert_eq!(claims["iss"], "alice");
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat >= before && iat <= now());
    assert!(claims.get("exp").is_none());
    assert_eq!(claims.as_object().unwrap().len(), 2);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    assert_eq!(check(&auth, &[&bearer(&token)]), Ok("alice".to_owned()));
    // A token can mint a token (POST /token with Bearer).
    let via_token = auth.authenticate([bearer(&token).as_str()]).unwrap();
    assert!(!via_token.is_anonymous());
    let again = auth.mint_token(&via_token).unwrap();
    assert_eq!(check(&auth, &[&bearer(&again)]), Ok("alice".to_owned()));
}

#[test]
fn mint_and_verify_with_ttl() {
    let auth =
        Authenticator::new(Some(users(&[("alice", "secret")])), TokenOptions { ttl: Some(Duration::from_secs(3600)) });
    let token = auth.mint_token(&user_of(&auth, "alice", "secret")).unwrap();
    let claims = claims_of(&token);
    assert_eq!(claims["exp"].as_u64().unwrap(), claims["iat"].as_u64().unwrap() + 3600);
    assert_eq!(check(&auth, &[&bearer(&token)]), Ok("alice".to_owned()));
}

#[test]
fn minted_token_with_zero_ttl_is_expired() {
    let auth = Authenticator::new(Some(users(&[("alice", "secret")])), TokenOptions { ttl: Some(Duration::ZERO) });
    let token = auth.mint_token(&user_of(&auth, "alice", "secret")).unwrap();
    assert_invalid_token(check(&auth, &[&bearer(&token)]));
}

#[test]
fn bearer_prefix_is_case_insensitive() {
    let auth = auth(&[("testuser", "testpass")]);
    for prefix in ["bearer", "BEARER", "BeArEr"] {
        assert_eq!(check(&auth, &[&format!("{prefix} {CLUSTER_VECTOR}")]), Ok("testuser".to_owned()));
    }
}

#[test]
fn basic_wins_over_bearer() {
    let auth = auth(&[("testuser", "testpass"), ("bob", "bobpass")]);
    // Valid Basic for bob and a valid token for testuser: Basic decides, in either order.
    assert_eq!(check(&auth, &[&bearer(CLUSTER_VECTOR), &basic("bob", "bobpass")]), Ok("bob".to_owned()));
    assert_eq!(check(&auth, &[&basic("bob", "bobpass"), &bearer(CLUSTER_VECTOR)]), Ok("bob".to_owned()));
    // A bad Basic is not rescued by a valid token.
    assert_eq!(check(&auth, &[&basic("bob", "wrong"), &bearer(CLUSTER_VECTOR)]), Err(AuthError::BadBasic));
    // A bad token does not spoil a good Basic.
    assert_eq!(check(&auth, &[&bearer("garbage"), &basic("bob", "bobpass")]), Ok("bob".to_owned()));
}

#[test]
fn token_rejections() {
    let auth = auth(&[("alice", "secret"), ("bob", "bobpass")]);
    let good = signed(Algorithm::HS256, "secret", &json!({"iss": "alice"}));
    assert_eq!(check(&auth, &[&bearer(&good)]), Ok("alice".to_owned()));
    let (header, rest) = good.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;

    let tampered_payload = format!("{header}.{}.{signature}", b64json(&json!({"iss": "bob"})));
    let tampered_signature =
        format!("{header}.{}.{}x", rest.split_once('.').unwrap().0, &signature[..signature.len() - 1]);
    let alg_none = format!("{}.{}.", b64json(&json!({"alg": "none", "typ": "JWT"})), b64json(&json!({"iss": "alice"})));
    let alg_none_signed =
        format!("{}.{}.{signature}", b64json(&json!({"alg": "none", "typ": "JWT"})), b64json(&json!({"iss": "alice"})));
    // An RS256 header over an HMAC signature made with the password (key confusion).
    let rs256_body =
        format!("{}.{}", b64json(&json!({"alg": "RS256", "typ": "JWT"})), b64json(&json!({"iss": "alice"})));
    let rs256_sig =
        jsonwebtoken::crypto::sign(rs256_body.as_bytes(), &EncodingKey::from_secret(b"secret"), Algorithm::HS256)
            .unwrap();
    let rs256 = format!("{rs256_body}.{rs256_sig}");
    let es256 = format!("{}.{}.{rs256_sig}", b64json(&json!({"alg": "ES256"})), b64json(&json!({"iss": "alice"})));

    let cases: Vec<(&str, String)> = vec![
        ("tampered payload", tampered_payload),
        ("tampered signature", tampered_signature),
        ("alg none", alg_none),
        ("alg none with signature", alg_none_signed),
        ("RS256 header", rs256),
        ("ES256 header", es256),
        ("expired", signed(Algorithm::HS256, "secret", &json!({"iss": "alice", "exp": now() - 10}))),
        ("expires now", signed(Algorithm::HS256, "secret", &json!({"iss": "alice", "exp": now()}))),
        ("nbf in future", signed(Algorithm::HS256, "secret", &json!({"iss": "alice", "nbf": now() + 60}))),
        ("exp not a number", signed(Algorithm::HS256, "secret", &json!({"iss": "alice", "exp": "9999999999"}))),
        ("other user's password", signed(Algorithm::HS256, "bobpass", &json!({"iss": "alice"}))),
        ("unknown user", signed(Algorithm::HS256, "secret", &json!({"iss": "carol"}))),
        ("no iss", signed(Algorithm::HS256, "secret", &json!({"sub": "alice"}))),
        ("iss not a string", signed(Algorithm::HS256, "secret", &json!({"iss": 7}))),
        ("two parts", good.rsplit_once('.').unwrap().0.to_owned()),
        ("four parts", format!("{good}.x")),
        ("bad base64", format!("{header}.!!!.{signature}")),
        ("payload not JSON", format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode("nope"))),
        ("empty", String::new()),
        ("too long", format!("{good}{}", "A".repeat(9 * 1024))),
    ];
    for (what, token) in cases {
        match check(&auth, &[&bearer(&token)]) {
            Err(AuthError::InvalidToken(reason)) => {
                assert!(!reason.contains("secret"), "{what}: reason leaks: {reason}");
            }
            other => panic!("{what}: expected InvalidToken, got {other:?}"),
        }
    }
}

#[test]
fn other_hmac_algorithms_and_time_claims_are_accepted() {
    let auth = auth(&[("alice", "secret")]);
    let later = now() + 600;
    let cases = [
        signed(Algorithm::HS384, "secret", &json!({"iss": "alice"})),
        signed(Algorithm::HS512, "secret", &json!({"iss": "alice"})),
        signed(Algorithm::HS256, "secret", &json!({"iss": "alice", "exp": later, "nbf": now() - 1, "iat": now()})),
        signed(Algorithm::HS256, "secret", &json!({"iss": "alice", "exp": later as f64 + 0.5})),
        signed(Algorithm::HS256, "secret", &json!({"iss": "alice", "aud": "someone", "jti": "x"})),
    ];
    for token in cases {
        assert_eq!(check(&auth, &[&bearer(&token)]), Ok("alice".to_owned()), "{}", claims_of(&token));
    }
}

#[test]
fn replace_credentials_revokes_tokens() {
    let auth = auth(&[("alice", "secret"), ("bob", "bobpass")]);
    let alice_token = auth.mint_token(&user_of(&auth, "alice", "secret")).unwrap();
    let bob_token = auth.mint_token(&user_of(&auth, "bob", "bobpass")).unwrap();
    let clone = auth.clone();

    // Alice's password changes: her old token and old password fail; Bob is untouched.
    auth.replace_credentials(Some(users(&[("alice", "newsecret"), ("bob", "bobpass")])));
    assert_invalid_token(check(&clone, &[&bearer(&alice_token)]));
    assert_eq!(check(&clone, &[&basic("alice", "secret")]), Err(AuthError::BadBasic));
    assert_eq!(check(&clone, &[&basic("alice", "newsecret")]), Ok("alice".to_owned()));
    assert_eq!(check(&clone, &[&bearer(&bob_token)]), Ok("bob".to_owned()));

    // Bob is removed: his token and Basic fail.
    auth.replace_credentials(Some(users(&[("alice", "newsecret")])));
    assert_invalid_token(check(&clone, &[&bearer(&bob_token)]));
    assert_eq!(check(&clone, &[&basic("bob", "bobpass")]), Err(AuthError::BadBasic));
}

#[test]
fn mint_for_a_user_removed_meanwhile_fails() {
    let auth = auth(&[("alice", "secret")]);
    let alice = user_of(&auth, "alice", "secret");
    auth.replace_credentials(Some(users(&[("bob", "bobpass")])));
    assert!(matches!(auth.mint_token(&alice), Err(AuthError::InvalidToken(_))));
}

#[test]
fn disabled_auth_is_anonymous_and_cannot_mint() {
    let auth = Authenticator::new(None, TokenOptions::default());
    assert!(!auth.enabled());
    for headers in [vec![], vec![basic("x", "y")], vec![bearer("garbage")]] {
        let user = auth.authenticate(headers.iter().map(String::as_str)).unwrap();
        assert!(user.is_anonymous());
        assert_eq!(user.name(), ANONYMOUS_USER);
        assert_eq!(auth.mint_token(&user), Err(AuthError::Disabled));
    }

    // Turning auth on and off again live.
    auth.replace_credentials(Some(users(&[("alice", "secret")])));
    assert!(auth.enabled());
    assert_eq!(check(&auth, &[]), Err(AuthError::NoCredentials));
    let anonymous = Authenticator::new(None, TokenOptions::default()).authenticate([]).unwrap();
    assert!(matches!(auth.mint_token(&anonymous), Err(AuthError::InvalidToken(_))));
    auth.replace_credentials(None);
    assert!(check(&auth, &[]).is_ok());
}

#[test]
fn a_user_named_anonymous_is_not_anonymous() {
    let auth = auth(&[(ANONYMOUS_USER, "secret")]);
    let user = user_of(&auth, ANONYMOUS_USER, "secret");
    assert!(!user.is_anonymous());
    assert!(auth.mint_token(&user).is_ok());
}

#[test]
fn debug_output_has_no_secrets() {
    let auth = auth(&[("alice", "sup3rs3cret")]);
    let text = format!("{auth:?}");
    assert!(!text.contains("sup3rs3cret") && !text.contains("alice"), "{text}");
}

#[test]
fn authenticator_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Authenticator>();
    assert_send_sync::<AuthUser>();
    assert_send_sync::<AuthError>();
}
