//! What both HTTP APIs share, written once: listeners from multiaddrs, limits,
//! CORS, configured headers, and the actix adapter of the auth crate. Read
//! [`ApiServer`] first.
//!
//! Each API crate brings its routes and its own error body ([`RenderError`]);
//! everything that is the same for both lives here.

mod auth;
mod server;

pub use auth::Authenticated;
pub use server::{ApiServer, BoundServer, HttpError, RenderError};
