//! Who is calling: credentials, the Basic check and JWT mint/verify, shared by both HTTP APIs.
//! Read [`Authenticator`] first.
//!
//! This crate knows nothing of HTTP: the API crates hand it the values of the
//! request's `Authorization` headers and map an [`AuthError`] to their own 401
//! body, using [`AuthError::challenge`] to pick the `WWW-Authenticate` headers.
//!
//! Behaviour follows IPFS Cluster's shared API layer (`api/common`), with two
//! deliberate differences: passwords are compared in constant time, and the
//! credentials can be replaced while running
//! ([`Authenticator::replace_credentials`]), which revokes every token of a
//! user whose password changed or who was removed.
//!
//! Tokens are HS256 JWTs signed with the user's password, with the claims
//! `iss` (the user), `iat` and, when a TTL is configured, `exp`. Tokens minted by
//! IPFS Cluster (only `iss`) verify as well.

mod authenticator;
mod credentials;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod token;

pub use authenticator::{AuthUser, Authenticator, TokenOptions, Users, ANONYMOUS_USER};
pub use error::{AuthError, Challenge};
