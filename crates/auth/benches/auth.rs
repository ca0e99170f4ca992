//! Per-request cost of authentication: Bearer token verification and the Basic check.
//! Read `bench_authenticate` first. Target: at most 5 µs each.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pincluster_auth::{Authenticator, TokenOptions, Users};

const CLUSTER_VECTOR: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ0ZXN0dXNlciJ9.tXRs6ozKKJ6ntzR0iHHeR62wrG5TR8OBrbvRQZ-zwtQ";

/// 100 users, among them `testuser`/`testpass` (the Cluster vector's user).
fn users() -> Users {
    let mut users: Users =
        (0..99).map(|index| (format!("user{index:03}"), format!("password-{index:03}-xyz"))).collect();
    users.insert("testuser".to_owned(), "testpass".to_owned());
    users
}

fn bench_authenticate(c: &mut Criterion) {
    let auth = Authenticator::new(Some(users()), TokenOptions { ttl: Some(Duration::from_secs(86_400)) });
    let basic_ok = format!("Basic {}", STANDARD.encode("user042:password-042-xyz"));
    let basic_wrong = format!("Basic {}", STANDARD.encode("user042:password-042-xyZ"));
    let basic_unknown = format!("Basic {}", STANDARD.encode("nobody42:password-042-xyz"));
    let user = auth.authenticate([basic_ok.as_str()]).expect("basic works");
    let token = auth.mint_token(&user).expect("mint works");
    let bearer_ok = format!("Bearer {token}");
    let bearer_cluster = format!("Bearer {CLUSTER_VECTOR}");
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let bearer_tampered = format!("Bearer {tampered}");

    let mut group = c.benchmark_group("authenticate");
    for (name, header) in [
        ("bearer_minted_token", &bearer_ok),
        ("bearer_cluster_vector", &bearer_cluster),
        ("bearer_bad_signature", &bearer_tampered),
        ("basic_ok", &basic_ok),
        ("basic_wrong_password", &basic_wrong),
        ("basic_unknown_user", &basic_unknown),
    ] {
        group.bench_function(name, |b| b.iter(|| black_box(auth.authenticate([black_box(header.as_str())]))));
    }
    group.bench_function("mint_token", |b| b.iter(|| black_box(auth.mint_token(black_box(&user)))));
    group.finish();

    // For comparison: the library's own decode, as a naive adapter would call it
    // (key known in advance; it decodes the payload twice, and needs a third decode
    // beforehand to find the key from `iss`).
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_aud = false;
    validation.leeway = 0;
    let key = DecodingKey::from_secret(b"password-042-xyz");
    c.bench_function("baseline/jsonwebtoken_decode", |b| {
        b.iter(|| {
            black_box(jsonwebtoken::decode::<BTreeMap<String, serde_json::Value>>(black_box(&token), &key, &validation))
        })
    });
}

criterion_group!(benches, bench_authenticate);
criterion_main!(benches);
