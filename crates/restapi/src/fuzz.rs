//! Entry points for the fuzz targets of `crates/fuzz` (feature `fuzzing`, off by default): the
//! query-string options and the multipart body of `/add`, on untrusted bytes. A panic, a hang or
//! an unbounded allocation in here is a bug in the parser.

use actix_web::http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use actix_web::web::Bytes;
use pincluster_model::Timestamp;

use crate::options;

/// A fixed "now" (2024-01-01), so that a crash replays the same way later.
const NOW: Timestamp = Timestamp(1_704_067_200_000);

/// One query string through every options parser of the REST API.
pub fn options(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pin) = options::PinRequest::parse(query, NOW) {
        let _ = options::replication_factors(pin.replication, (-1, -1), 3);
    }
    let _ = options::StatusQuery::parse(query);
    let _ = options::AddRequest::parse(query, NOW);
    let _ = options::check_local_only(query);
    let _ = options::parse_allocation_filter(query);
    let _ = options::parse_go_duration(query);
    let _ = options::parse_peer_id(query);
}

/// The multipart body of `POST /add`, read part by part as the handler reads it. Input: one
/// byte that sets how the body is split into network reads (0: one read), the `Content-Type`
/// header's value up to the first `\n`, then the body.
pub fn multipart(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (content_type, body) = (&rest[..newline], &rest[newline + 1..]);
    let Ok(content_type) = HeaderValue::from_bytes(content_type) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, content_type);
    let chunk = if split == 0 { body.len().max(1) } else { usize::from(split) };
    let reads: Vec<Result<Bytes, actix_web::error::PayloadError>> =
        body.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let Ok(mut parts) = crate::add::Parts::new(&headers, futures_util::stream::iter(reads)) else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    runtime.block_on(async move {
        while let Some(field) = parts.next_field().await {
            let Ok(mut field) = field else {
                return;
            };
            if let Ok(part) = crate::add::Part::of(&field) {
                let _ = part.hidden();
            }
            while let Some(chunk) = parts.next_chunk(&mut field).await {
                if chunk.is_err() {
                    return;
                }
            }
        }
    });
}
