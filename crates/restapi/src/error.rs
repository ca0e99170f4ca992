//! The REST API's error body, `{"code": N, "message": "…"}`, as IPFS Cluster sends it.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u16,
    message: &'a str,
}

/// Renders any error in the REST API's shape.
pub fn render_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody { code: status.as_u16(), message })
}
