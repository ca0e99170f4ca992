//! The spec's `Failure` body, `{"error":{"reason","details"}}`, and the one
//! exhaustive mapping from domain errors to statuses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use pincluster_state::StateError;
use pincluster_tracker::TrackerError;
use serde::Serialize;

#[derive(Serialize)]
struct Failure<'a> {
    error: FailureError<'a>,
}

#[derive(Serialize)]
struct FailureError<'a> {
    reason: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
}

/// The machine reason for a status: stable codes clients can switch on.
fn reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "BAD_REQUEST",
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::FORBIDDEN => "FORBIDDEN",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::REQUEST_TIMEOUT => "REQUEST_TIMEOUT",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::TOO_MANY_REQUESTS => "TOO_MANY_REQUESTS",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "REQUEST_HEADER_FIELDS_TOO_LARGE",
        StatusCode::SERVICE_UNAVAILABLE => "SERVICE_UNAVAILABLE",
        StatusCode::INSUFFICIENT_STORAGE => "INSUFFICIENT_STORAGE",
        s if s.is_server_error() => "INTERNAL_SERVER_ERROR",
        _ => "BAD_REQUEST",
    }
}

/// Renders any error in the PSA's shape; used for our handlers and for the
/// shared layer (auth, limits, unknown routes).
pub fn render_error(status: StatusCode, details: &str) -> HttpResponse {
    HttpResponse::build(status).json(Failure { error: FailureError { reason: reason(status), details } })
}

/// An error a PSA handler answers with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    /// The disk is too full for the write (507); it works again once space is freed.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn bad(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(message.into())
    }

    pub(crate) fn no_pin(requestid: &str) -> ApiError {
        ApiError::NotFound(format!("no pin with request ID {requestid:?}"))
    }

    /// Maps a tracker error of an operation on `requestid`, naming it when absent.
    pub(crate) fn about(requestid: &str) -> impl FnOnce(TrackerError) -> ApiError + '_ {
        move |error| match error {
            TrackerError::NotFound => ApiError::no_pin(requestid),
            other => ApiError::from(other),
        }
    }
}

impl From<TrackerError> for ApiError {
    fn from(error: TrackerError) -> Self {
        match error {
            TrackerError::Invalid(e) => ApiError::BadRequest(e.to_string()),
            TrackerError::NotFound => ApiError::NotFound("pin not found".into()),
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
            StateError::NotFound => ApiError::NotFound("pin not found".into()),
            StateError::Closed => ApiError::Unavailable("the service is shutting down".into()),
            StateError::Invalid(e) => ApiError::BadRequest(e.to_string()),
            StateError::Refused(reason) => ApiError::BadRequest(reason),
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
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        render_error(self.status_code(), &self.to_string())
    }
}
