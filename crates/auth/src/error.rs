//! Why a request was not authenticated, and which challenge answers it: read [`AuthError`] first.

/// Why authentication (or minting a token) failed.
///
/// The `Display` text is meant for logs: it never contains a password, a token or
/// a decoded credential. Clients should see [`AuthError::public_message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No Basic credentials and no Bearer token were supplied.
    #[error("no auth provided")]
    NoCredentials,
    /// Basic credentials were supplied but are malformed, too long, or do not
    /// match a configured user and password.
    #[error("access denied")]
    BadBasic,
    /// A Bearer token was supplied but is not valid; the reason is for logs.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A token was asked for while authentication is disabled.
    #[error("authentication is disabled")]
    Disabled,
}

/// Which `WWW-Authenticate` challenge(s) a 401 response should carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// The Basic challenge only.
    Basic,
    /// The Bearer challenge only, with `error="invalid_token"`.
    Bearer,
    /// Both challenges, Bearer first, then Basic (as IPFS Cluster sends them).
    Both,
}

impl AuthError {
    /// The challenge an HTTP adapter should send with its 401 for this error.
    ///
    /// [`AuthError::Disabled`] gets [`Challenge::Both`], like a request with no
    /// credentials: no credentials can succeed, but clients see the usual shape.
    pub fn challenge(&self) -> Challenge {
        match self {
            AuthError::NoCredentials | AuthError::Disabled => Challenge::Both,
            AuthError::BadBasic => Challenge::Basic,
            AuthError::InvalidToken(_) => Challenge::Bearer,
        }
    }

    /// The message IPFS Cluster puts in its 401 body for this error, e.g.
    /// `unauthorized: access denied`. Safe to show to clients.
    pub fn public_message(&self) -> &'static str {
        match self {
            AuthError::NoCredentials => "unauthorized: no auth provided",
            AuthError::BadBasic => "unauthorized: access denied",
            AuthError::InvalidToken(_) => "unauthorized: invalid token",
            AuthError::Disabled => "unauthorized",
        }
    }
}
