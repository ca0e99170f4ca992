//! Entry points for the fuzz targets of `crates/fuzz` (feature `fuzzing`, off by default):
//! `Authorization` header values and the claims of tokens that pass the signature check, on
//! untrusted bytes. A panic, a hang or an unbounded allocation in here is a bug.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;

use crate::credentials::Credentials;
use crate::{Authenticator, TokenOptions, Users};

/// The users every input is checked against (the seeds use these passwords).
fn users() -> Users {
    [("alice", "secret"), ("bob", "hunter2")].into_iter().map(|(u, p)| (u.to_owned(), p.to_owned())).collect()
}

/// A fixed "now" (2024-01-01), so that a crash replays the same way later.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_704_067_200)
}

/// `Authorization` header values, one per line, as a request would carry them.
pub fn headers(data: &[u8]) {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let auth = AUTH.get_or_init(|| Authenticator::new(Some(users()), TokenOptions::default()));
    let _ = auth.authenticate(text.split('\n'));
}

/// A token's header and claims (JSON, one line each, then optionally the algorithm's name)
/// signed with alice's password, so that verification gets past the signature to the claims.
pub fn token_claims(data: &[u8]) {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let (Some(header), Some(claims)) = (lines.next(), lines.next()) else {
        return;
    };
    let algorithm = match lines.next() {
        Some("HS384") => Algorithm::HS384,
        Some("HS512") => Algorithm::HS512,
        _ => Algorithm::HS256,
    };
    let credentials = CREDENTIALS.get_or_init(|| Credentials::new(&users()));
    let Some(alice) = credentials.lookup(b"alice") else {
        return;
    };
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let Ok(signature) = jsonwebtoken::crypto::sign(message.as_bytes(), &alice.encoding, algorithm) else {
        return;
    };
    let _ = crate::token::verify(credentials, &format!("{message}.{signature}"), now());
}
