//! The entry point the HTTP adapters call for every request: read [`Authenticator`] first.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::credentials::Credentials;
use crate::token;
use crate::AuthError;

/// The configured users: user name → password.
pub type Users = BTreeMap<String, String>;

/// The name of the user every request runs as while authentication is disabled.
pub const ANONYMOUS_USER: &str = "anonymous";

/// The longest `Authorization` header value looked at, in bytes; a longer Basic or
/// Bearer value is rejected before anything is decoded.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// How minted tokens look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenOptions {
    /// When set, minted tokens carry `exp = iat + ttl` (rounded up to whole
    /// seconds); when `None` they never expire (until the password changes).
    pub ttl: Option<Duration>,
}

/// The user a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    name: Arc<str>,
    anonymous: bool,
}

impl AuthUser {
    fn anonymous() -> AuthUser {
        AuthUser { name: Arc::from(ANONYMOUS_USER), anonymous: true }
    }

    /// The user's name as configured ([`ANONYMOUS_USER`] when auth is disabled).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when authentication was disabled and nobody was checked.
    pub fn is_anonymous(&self) -> bool {
        self.anonymous
    }
}

/// Checks Basic credentials and Bearer tokens against the current users, and
/// mints tokens. Cheap to clone; all clones share the credentials, which
/// [`Authenticator::replace_credentials`] swaps atomically while requests run.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    credentials: ArcSwapOption<Credentials>,
    options: TokenOptions,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials themselves.
        let users = self.inner.credentials.load().as_ref().map(|credentials| credentials.len());
        f.debug_struct("Authenticator").field("users", &users).field("options", &self.inner.options).finish()
    }
}

/// An `Authorization` header value split into its scheme and the rest.
enum Scheme<'a> {
    Basic(&'a str),
    Bearer(&'a str),
}

impl<'a> Scheme<'a> {
    /// Recognises `Basic ` and `Bearer ` (scheme names case-insensitive).
    fn parse(value: &'a str) -> Option<Scheme<'a>> {
        let bytes = value.as_bytes();
        if bytes.len() >= 6 && bytes[..6].eq_ignore_ascii_case(b"basic ") {
            // The first 6 bytes are ASCII, so slicing there is on a char boundary.
            return Some(Scheme::Basic(value[6..].trim_matches(' ')));
        }
        if bytes.len() >= 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(Scheme::Bearer(value[7..].trim_matches(' ')));
        }
        None
    }
}

impl Authenticator {
    /// Makes an authenticator; `None` disables authentication (every request runs
    /// as the anonymous user). `Some` of an empty map enables it with nobody able
    /// to pass (the config crate rejects `{}` before it gets here).
    pub fn new(credentials: Option<Users>, options: TokenOptions) -> Authenticator {
        let credentials = credentials.map(|users| Arc::new(Credentials::new(&users)));
        Authenticator { inner: Arc::new(Inner { credentials: ArcSwapOption::new(credentials), options }) }
    }

    /// True when credentials are configured.
    pub fn enabled(&self) -> bool {
        self.inner.credentials.load().is_some()
    }

    /// Replaces the users (hot reload); the next request sees the new set. Tokens
    /// of a removed user, or signed with a password that changed, stop verifying.
    pub fn replace_credentials(&self, credentials: Option<Users>) {
        let credentials = credentials.map(|users| Arc::new(Credentials::new(&users)));
        self.inner.credentials.store(credentials);
    }

    /// Authenticates a request from its `Authorization` header values, in order.
    ///
    /// Basic wins over Bearer when both are present (as in IPFS Cluster); of
    /// several headers of one scheme the first counts. Scheme names are
    /// case-insensitive; other schemes are ignored. With auth disabled this
    /// returns the anonymous user without looking at the headers.
    pub fn authenticate<'a>(&self, headers: impl IntoIterator<Item = &'a str>) -> Result<AuthUser, AuthError> {
        let guard = self.inner.credentials.load();
        let Some(credentials) = guard.as_ref() else {
            return Ok(AuthUser::anonymous());
        };
        let mut basic = None;
        let mut bearer = None;
        for value in headers {
            match Scheme::parse(value) {
                Some(Scheme::Basic(rest)) if basic.is_none() => basic = Some(rest),
                Some(Scheme::Bearer(rest)) if bearer.is_none() => bearer = Some(rest),
                _ => {}
            }
        }
        if let Some(encoded) = basic {
            return check_basic(credentials, encoded);
        }
        if let Some(token) = bearer {
            if token.len() > MAX_HEADER_BYTES {
                return Err(AuthError::InvalidToken("token too long".to_owned()));
            }
            let entry = token::verify(credentials, token, SystemTime::now())?;
            return Ok(AuthUser { name: entry.name.clone(), anonymous: false });
        }
        Err(AuthError::NoCredentials)
    }

    /// Mints a token for `user`, signed with the user's current password.
    ///
    /// Fails with [`AuthError::Disabled`] when auth is off, and with
    /// [`AuthError::InvalidToken`] when the user is no longer configured (the
    /// credentials changed after `user` was authenticated).
    pub fn mint_token(&self, user: &AuthUser) -> Result<String, AuthError> {
        let guard = self.inner.credentials.load();
        let Some(credentials) = guard.as_ref() else {
            return Err(AuthError::Disabled);
        };
        if user.anonymous {
            return Err(AuthError::InvalidToken("anonymous user cannot have a token".to_owned()));
        }
        let Some(entry) = credentials.lookup(user.name.as_bytes()) else {
            return Err(AuthError::InvalidToken("user no longer configured".to_owned()));
        };
        token::mint(entry, SystemTime::now(), self.inner.options.ttl)
    }
}

/// Decodes `user:password` (standard base64) and checks it.
fn check_basic(credentials: &Credentials, encoded: &str) -> Result<AuthUser, AuthError> {
    if encoded.len() > MAX_HEADER_BYTES {
        return Err(AuthError::BadBasic);
    }
    let decoded = STANDARD.decode(encoded).map_err(|_| AuthError::BadBasic)?;
    let Some(colon) = decoded.iter().position(|&byte| byte == b':') else {
        return Err(AuthError::BadBasic);
    };
    let (name, password) = (&decoded[..colon], &decoded[colon + 1..]);
    if name.is_empty() || password.is_empty() {
        return Err(AuthError::BadBasic);
    }
    match credentials.check_basic(name, password) {
        Some(entry) => Ok(AuthUser { name: entry.name.clone(), anonymous: false }),
        None => Err(AuthError::BadBasic),
    }
}
