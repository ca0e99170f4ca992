//! The dashboard's static files, built into the binary.

use actix_web::web;

pub(crate) fn configure(_cfg: &mut web::ServiceConfig) {}
