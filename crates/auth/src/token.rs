//! JWT minting and verification: read [`verify`] first.
//!
//! Verification parses the token once: the header for the algorithm, the payload
//! for `iss` (which selects the key) and the time claims, then checks the HMAC
//! with that user's password through `jsonwebtoken::crypto::verify`. Going
//! through `jsonwebtoken::decode` instead would need the payload decoded before
//! the call (to find the key) and then twice more inside it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::credentials::{Credentials, Entry};
use crate::AuthError;

/// The longest token accepted, in bytes; checked before anything is decoded.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The claims of a token we mint.
#[derive(Serialize)]
struct MintClaims<'a> {
    iss: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

/// The header fields verification looks at; others are ignored.
#[derive(Deserialize)]
struct ReceivedHeader {
    alg: String,
}

/// The claims verification looks at; others (`aud`, `sub`, `jti`…) are ignored,
/// as IPFS Cluster does. Time claims must be JSON numbers when present.
#[derive(Deserialize)]
struct ReceivedClaims {
    iss: Option<String>,
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    #[allow(dead_code)] // Only its type is checked.
    iat: Option<serde_json::Number>,
}

fn invalid(reason: &str) -> AuthError {
    AuthError::InvalidToken(reason.to_owned())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_seconds(now: SystemTime) -> Duration {
    now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

/// Mints an HS256 token for `entry`: `iss`, `iat`, and `exp = iat + ttl` (the TTL
/// rounded up to whole seconds) when a TTL is given.
pub(crate) fn mint(entry: &Entry, now: SystemTime, ttl: Option<Duration>) -> Result<String, AuthError> {
    let iat = unix_seconds(now).as_secs();
    let exp = ttl.map(|ttl| {
        let seconds = ttl.as_secs().saturating_add(u64::from(ttl.subsec_nanos() > 0));
        iat.saturating_add(seconds)
    });
    let claims = MintClaims { iss: &entry.name, iat, exp };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &entry.encoding)
        .map_err(|error| AuthError::InvalidToken(format!("could not sign a token: {error}")))
}

/// Verifies `token` against `credentials` at time `now` and returns its user.
///
/// Rejects anything but HS256/HS384/HS512, a missing or unknown `iss`, a bad
/// signature, `exp` at or before `now` and `nbf` after `now` (no leeway).
pub(crate) fn verify<'c>(credentials: &'c Credentials, token: &str, now: SystemTime) -> Result<&'c Entry, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not three dot-separated parts"));
    };
    let header: ReceivedHeader = decode_part(header_b64, "header")?;
    let algorithm = match header.alg.as_str() {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        _ => return Err(invalid("algorithm not allowed (only HS256, HS384, HS512)")),
    };
    let claims: ReceivedClaims = decode_part(payload_b64, "payload")?;
    let Some(issuer) = claims.iss else {
        return Err(invalid("no iss claim"));
    };

    // An unknown issuer is checked against a dummy key so it costs the same.
    let entry = credentials.lookup(issuer.as_bytes());
    let key = entry.map_or(credentials.dummy_decoding(), |entry| &entry.decoding);
    let message = &token[..header_b64.len() + 1 + payload_b64.len()];
    let signature_ok = jsonwebtoken::crypto::verify(signature_b64, message.as_bytes(), key, algorithm)
        .map_err(|_| invalid("signature could not be checked"))?;
    let Some(entry) = entry else {
        return Err(invalid("unknown issuer"));
    };
    if !signature_ok {
        return Err(invalid("bad signature"));
    }

    let now = unix_seconds(now).as_secs_f64();
    if let Some(exp) = claims.exp {
        let exp = exp.as_f64().ok_or_else(|| invalid("exp is not a number"))?;
        if now >= exp {
            return Err(invalid("expired"));
        }
    }
    if let Some(nbf) = claims.nbf {
        let nbf = nbf.as_f64().ok_or_else(|| invalid("nbf is not a number"))?;
        if now < nbf {
            return Err(invalid("not valid yet (nbf)"));
        }
    }
    Ok(entry)
}

/// Decodes one base64url (unpadded) JSON part of a token.
fn decode_part<T: DeserializeOwned>(part: &str, what: &str) -> Result<T, AuthError> {
    let bytes =
        URL_SAFE_NO_PAD.decode(part).map_err(|_| AuthError::InvalidToken(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::InvalidToken(format!("{what} is not the expected JSON")))
}
