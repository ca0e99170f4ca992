//! The REST API's error body, `{"code": N, "message": "…"}`, as IPFS Cluster
//! sends it, and [`ApiError`] with the one exhaustive mapping from domain
//! errors to statuses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use pincluster_state::StateError;
use pincluster_tracker::TrackerError;
use serde::Serialize;

/// The message Cluster (and its clients) use for a CID that is not pinned.
pub(crate) const NOT_IN_PINSET: &str = "pin is not part of the pinset";

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u16,
    message: &'a str,
}

/// Renders any error in the REST API's shape.
pub fn render_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody { code: status.as_u16(), message })
}

/// An error a REST handler answers with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A bad path, query or body.
    #[error("{0}")]
    BadRequest(String),
    /// The named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A cluster operation this single-peer build cannot do yet.
    #[error("{0}")]
    NotImplemented(String),
    /// An upload larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The pinset is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The disk is too full for the write (507); it works again once space is freed.
    #[error("{0}")]
    InsufficientStorage(String),
    /// Anything else: storage failures, a panicked blocking task.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn bad(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(message.into())
    }

    pub(crate) fn not_in_pinset() -> ApiError {
        ApiError::NotFound(NOT_IN_PINSET.into())
    }
}

impl From<TrackerError> for ApiError {
    fn from(error: TrackerError) -> Self {
        match error {
            TrackerError::Invalid(e) => ApiError::BadRequest(e.to_string()),
            TrackerError::NotFound => ApiError::not_in_pinset(),
            TrackerError::State(e) => ApiError::from(e),
            TrackerError::Ipfs(e) if e.is_no_space() => ApiError::InsufficientStorage(e.to_string()),
            TrackerError::Ipfs(e) => {
                tracing::error!(error = %e, "IPFS node error");
                ApiError::Internal(format!("IPFS node error: {e}"))
            }
            TrackerError::Stopped => ApiError::Unavailable("the IPFS node is shutting down".into()),
            TrackerError::Unavailable(text) => {
                ApiError::Unavailable(format!("the cluster cannot take writes now: {text}"))
            }
        }
    }
}

impl From<StateError> for ApiError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::NotFound => ApiError::not_in_pinset(),
            StateError::Invalid(e) => ApiError::BadRequest(e.to_string()),
            StateError::Refused(reason) => ApiError::BadRequest(reason),
            StateError::Closed => ApiError::Unavailable("the service is shutting down".into()),
            e @ StateError::NoSpace(_) => ApiError::InsufficientStorage(e.to_string()),
            e @ StateError::Storage(_) if e.is_no_space() => {
                tracing::error!(error = %e, "the pinset database met a full disk");
                ApiError::InsufficientStorage(e.to_string())
            }
            other @ (StateError::Corrupt { .. }
            | StateError::NewerSchema { .. }
            | StateError::InvalidKey(_)
            | StateError::Encode(_)
            | StateError::Storage(_)) => {
                tracing::error!(error = %other, "pinset error");
                ApiError::Internal(other.to_string())
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        render_error(self.status_code(), &self.to_string())
    }
}
