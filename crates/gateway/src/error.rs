//! Why a gateway request failed: [`GatewayError`], and its one mapping to an HTTP status.

use actix_web::http::StatusCode;

/// Every way a gateway request can fail. The texts are the short `text/plain` bodies clients get.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The CID in the path does not parse.
    #[error("invalid CID {text:?}: {reason}")]
    InvalidCid { text: String, reason: String },
    /// A query parameter, the `Accept` header or the path is malformed or unsupported.
    #[error("{0}")]
    BadRequest(String),
    /// No response format this gateway serves was acceptable to the client.
    #[error("{0}")]
    NotAcceptable(String),
    /// The CID is not pinned on this peer: nothing is fetched for it.
    #[error("{0} is not pinned on this gateway")]
    NotPinned(cid::Cid),
    /// A path segment does not exist in the DAG (or cannot be resolved in it).
    #[error("path not found: {0}")]
    PathNotFound(String),
    /// A block the response needs is not in the local store.
    #[error("block {0} is not in the local store")]
    MissingBlock(cid::Cid),
    /// A block cannot be decoded as its codec says.
    #[error("block {cid} cannot be decoded: {reason}")]
    Decode { cid: cid::Cid, reason: String },
    /// The `Range` of a deserialized response lies outside the file.
    #[error("range not satisfiable: the file has {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// The client already has as many requests in progress as it may.
    #[error("too many concurrent requests from this client; retry in a moment")]
    ClientLimit,
    /// Too many distinct clients at once to track another.
    #[error("the gateway is busy; retry in a moment")]
    Busy,
    /// The block store or the pinset failed. The cause is logged, not sent to the client.
    #[error("storage error")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The client stopped reading for longer than `write_timeout`.
    #[error("the client took nothing for {0:?}")]
    WriteTimeout(std::time::Duration),
    /// A `car-dups=n` response's set of sent blocks reached its cap.
    #[error("more than {0} distinct blocks: ask with car-dups=y")]
    TooManyBlocks(usize),
    /// The client went away mid-response.
    #[error("the client closed the connection")]
    ClientGone,
    /// A response was cut off after its head (the reason was logged and counted).
    #[error("the response was cut off")]
    Aborted,
}

impl GatewayError {
    /// A failure of the block store or the pinset.
    pub(crate) fn store(error: impl std::error::Error + Send + Sync + 'static) -> GatewayError {
        GatewayError::Store(Box::new(error))
    }

    /// The status of a response that fails before its head is sent.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidCid { .. } | GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            GatewayError::NotPinned(_) | GatewayError::PathNotFound(_) | GatewayError::MissingBlock(_) => {
                StatusCode::NOT_FOUND
            }
            // A pinned block that does not decode: the content, not the server, is at fault, but
            // nothing the client can change fixes it.
            GatewayError::Decode { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            GatewayError::ClientLimit => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::WriteTimeout(_)
            | GatewayError::TooManyBlocks(_)
            | GatewayError::ClientGone
            | GatewayError::Aborted => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The label of an aborted stream's metric.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            GatewayError::MissingBlock(_) => "missing_block",
            GatewayError::WriteTimeout(_) => "write_timeout",
            GatewayError::TooManyBlocks(_) => "too_many_blocks",
            GatewayError::Decode { .. } => "decode",
            _ => "store",
        }
    }
}
