//! `POST /add`: a multipart upload (files, directories, or one CAR file)
//! imported into the embedded IPFS node as it arrives, then pinned. Read
//! [`add`] first.
//!
//! The body is read part by part and each part chunk by chunk straight into
//! the importer, so memory does not depend on the upload's size. The parts
//! follow Kubo's `/api/v0/add` convention: the path is the part's file name
//! (percent-encoded, `/`-separated), and a part of type
//! `application/x-directory` declares a directory.
//!
//! Output is one AddedOutput per file as it is finished, then the
//! directories, then (wrapped) the root; NDJSON as produced, or one JSON array
//! with `stream-channels=false`. An error before the first output line is an
//! ordinary error response; after it, the stream ends with the
//! `X-Stream-Error` trailer (see `stream.rs`).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};

use actix_multipart::MultipartError;
use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderMap, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::mime;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::{Stream, StreamExt};
use pincluster_httpcommon::Authenticated;
use pincluster_model::{Timestamp, UserName};
use pincluster_tracker::{AddedEntry, Imported, IpfsError, TrackerError};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::options::AddRequest;
use crate::pins::{pin_as, user_name};
use crate::stream;
use crate::wire::AddedOutput;
use crate::Context;

/// The most parts (files and directories) one upload may have.
const MAX_PARTS: usize = 100_000;
/// Raw bytes the multipart parser may hold before it hands out a part or a
/// chunk (part headers, boundaries, what it keeps back while looking for one).
const MAX_FRAMING: u64 = 1024 * 1024;
/// Output lines waiting for the client.
const OUTPUT_QUEUE: usize = 16;
/// The shortest multipart boundary read (clients use 16 to 70 characters).
const MIN_BOUNDARY: usize = 4;
/// With `progress=true`: one progress line per this many bytes of a file.
const PROGRESS_EVERY: u64 = 1024 * 1024;

/// `POST /add`.
pub(crate) async fn add(
    req: HttpRequest,
    user: Authenticated,
    ctx: web::Data<Context>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request = AddRequest::parse(req.query_string(), Timestamp::now())?;
    let caller = user_name(&user)?;
    let multipart = Parts::new(req.headers(), payload)?;
    let stream = request.stream;
    let (tx, mut rx) = mpsc::channel(OUTPUT_QUEUE);
    // The payload is tied to this worker thread: the import runs beside the
    // response on the same thread, reading the body while output is sent.
    actix_web::rt::spawn(async move {
        let mut output = Output { tx: tx.clone(), stream, collected: Vec::new() };
        let result = run(&ctx, &caller, &request, multipart, &mut output).await;
        let last = match result {
            Ok(()) if stream => return,
            Ok(()) => serde_json::to_vec(&output.collected)
                .map(Bytes::from)
                .map_err(|e| ApiError::Internal(format!("cannot encode the output: {e}"))),
            Err(error) => Err(error),
        };
        let _ = tx.send(last).await;
    });
    let first = match rx.recv().await {
        Some(Ok(first)) => first,
        Some(Err(error)) => return Err(error),
        None => Bytes::new(),
    };
    let mut response = HttpResponse::build(StatusCode::OK);
    response.content_type("application/json").insert_header(("Cache-Control", "no-cache"));
    if !stream {
        return Ok(response.body(first));
    }
    response.insert_header(("X-Chunked-Output", "1"));
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item.map_err(|error| error.to_string()), rx))
    });
    Ok(stream::respond(&req, response, first, rest))
}

/// Where output objects go: sent line by line, or kept for one array.
struct Output {
    tx: mpsc::Sender<Result<Bytes, ApiError>>,
    stream: bool,
    collected: Vec<AddedOutput>,
}

impl Output {
    /// Emits one object; an error when the client has gone away.
    async fn emit(&mut self, item: AddedOutput) -> Result<(), ApiError> {
        if !self.stream {
            // One array holds results only: progress is for live streams.
            if !item.is_progress() {
                self.collected.push(item);
            }
            return Ok(());
        }
        let mut line = serde_json::to_vec(&item).map_err(|e| ApiError::Internal(format!("cannot encode: {e}")))?;
        line.push(b'\n');
        self.tx.send(Ok(Bytes::from(line))).await.map_err(|_| ApiError::bad("the client went away"))
    }
}

/// Reads the parts, imports them, emits their entries and pins the roots.
async fn run(
    ctx: &web::Data<Context>,
    caller: &UserName,
    request: &AddRequest,
    mut multipart: Parts,
    output: &mut Output,
) -> Result<(), ApiError> {
    let limit = ctx.options.max_upload_bytes;
    let mut read = 0u64;
    let mut parts = 0usize;
    // Root entries that are not directories (top-level files, a CAR's root):
    // emitted once pinned, with their allocations.
    let mut file_roots: Vec<AddedEntry> = Vec::new();
    let imported = if request.car {
        let mut car = ctx.tracker.car_importer();
        let mut name = None;
        while let Some(field) = multipart.next_field().await {
            let mut field = field.map_err(bad_multipart)?;
            let part = Part::of(&field)?;
            if part.directory {
                continue;
            }
            if name.is_some() {
                return Err(ApiError::bad("format=car takes exactly one file: this upload has several"));
            }
            while let Some(chunk) = multipart.next_chunk(&mut field).await {
                let chunk = chunk.map_err(bad_multipart)?;
                read = counted(read, chunk.len(), limit)?;
                car.write(&chunk).await.map_err(import_error)?;
            }
            name = Some(part.path);
        }
        let Some(name) = name else {
            return Err(ApiError::bad("the upload has no file part"));
        };
        let imported = car.finish().await.map_err(import_error)?;
        let [root] = imported.roots[..] else {
            return Err(ApiError::bad(format!(
                "format=car needs a CAR with exactly one root; this one has {}",
                imported.roots.len()
            )));
        };
        file_roots.push(AddedEntry { name, cid: root, size: 0, bytes: read });
        imported
    } else {
        let mut importer = ctx.tracker.importer(request.import).map_err(import_error)?;
        while let Some(field) = multipart.next_field().await {
            let mut field = field.map_err(bad_multipart)?;
            let part = Part::of(&field)?;
            parts += 1;
            if parts > MAX_PARTS {
                return Err(ApiError::bad(format!("the upload has more than {MAX_PARTS} files and directories")));
            }
            if !request.hidden && part.hidden() {
                // Read through here, so its bytes count as the client's.
                while let Some(chunk) = field.next().await {
                    read = counted(read, chunk.map_err(bad_multipart)?.len(), limit)?;
                }
                continue;
            }
            if part.directory {
                importer.add_directory(&part.path).map_err(import_error)?;
                continue;
            }
            importer.start_file(&part.path).map_err(import_error)?;
            let mut file_bytes = 0u64;
            let mut next_progress = PROGRESS_EVERY;
            while let Some(chunk) = multipart.next_chunk(&mut field).await {
                let chunk = chunk.map_err(bad_multipart)?;
                read = counted(read, chunk.len(), limit)?;
                file_bytes += chunk.len() as u64;
                importer.write(&chunk).await.map_err(import_error)?;
                if request.progress && file_bytes >= next_progress {
                    next_progress = file_bytes + PROGRESS_EVERY;
                    output.emit(AddedOutput::progress(&part.path, file_bytes)).await?;
                }
            }
            let entry = importer.finish_file().await.map_err(import_error)?;
            if !request.import.wrap_with_directory && !part.path.contains('/') {
                file_roots.push(entry);
            } else {
                output.emit(AddedOutput::entry(&entry, &[])).await?;
            }
        }
        if parts == 0 {
            return Err(ApiError::bad("the upload has no file part"));
        }
        let imported = importer.finish().await.map_err(import_error)?;
        for entry in &imported.entries {
            if !imported.roots.contains(&entry.cid) {
                output.emit(AddedOutput::entry(entry, &[])).await?;
            }
        }
        imported
    };
    pin_roots(ctx, caller, request, &imported, &file_roots, output).await
}

/// Pins every root (unless `no-pin`) and emits the root entries, which
/// carry the allocations when pinned. `imported` keeps the blocks safe from
/// garbage collection until each pin is recorded.
async fn pin_roots(
    ctx: &web::Data<Context>,
    caller: &UserName,
    request: &AddRequest,
    imported: &Imported,
    file_roots: &[AddedEntry],
    output: &mut Output,
) -> Result<(), ApiError> {
    let allocations = [ctx.options.peer_id.clone()];
    for root in &imported.roots {
        let entry = imported.entries.iter().chain(file_roots).find(|e| e.cid == *root);
        if !request.no_pin {
            pin_as(ctx, caller, &request.pin, *root, entry.map(|e| e.name.as_str())).await?;
        }
        if let Some(entry) = entry {
            let allocations: &[String] = if request.no_pin { &[] } else { &allocations };
            output.emit(AddedOutput::entry(entry, allocations)).await?;
        }
    }
    Ok(())
}

/// The parts of a multipart body.
///
/// actix-multipart 0.7 can answer `Pending` once the body has ended (when it is cut right after
/// a `\r` or inside a boundary) and then never wakes: the import task would wait forever, with
/// its blocks kept from garbage collection. The body is watched for its end, and a wait after
/// it is the error a truncated body should have been.
///
/// It also bounds what the parser may hold: the body is cut with an overflow error once more
/// than [`MAX_FRAMING`] bytes arrive without a part or a chunk handed out, so a part header or
/// boundary that never ends cannot fill memory.
pub(crate) struct Parts {
    multipart: actix_multipart::Multipart,
    body: Rc<BodyState>,
}

impl Parts {
    /// Reads `body` with the boundary of the `Content-Type` in `headers`. A boundary shorter
    /// than [`MIN_BOUNDARY`] is refused: actix-multipart 0.7 slices lines by the boundary's
    /// length while it skips to the first one, and panics on short lines with a short boundary.
    pub(crate) fn new<S>(headers: &HeaderMap, body: S) -> Result<Parts, ApiError>
    where
        S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
    {
        // Read the way actix-multipart reads it; a type it cannot read is its error to report.
        let boundary = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<mime::Mime>().ok())
            .and_then(|mime| mime.get_param(mime::BOUNDARY).map(|b| b.as_str().len()));
        if boundary.is_some_and(|len| len < MIN_BOUNDARY) {
            return Err(ApiError::bad(format!("the multipart boundary is shorter than {MIN_BOUNDARY} characters")));
        }
        let state = Rc::new(BodyState::default());
        let watched = Watched { body, state: state.clone() };
        Ok(Parts { multipart: actix_multipart::Multipart::new(headers, watched), body: state })
    }

    /// The next part.
    pub(crate) async fn next_field(&mut self) -> Option<Result<actix_multipart::Field, MultipartError>> {
        self.body.handed_out(&mut self.multipart).await
    }

    /// The next chunk of `field`'s content.
    pub(crate) async fn next_chunk(&self, field: &mut actix_multipart::Field) -> Option<Result<Bytes, MultipartError>> {
        self.body.handed_out(field).await
    }
}

/// What is known of the body under the parser: whether it ended, the bytes received, and how
/// many of them had arrived when the parser last handed something out.
#[derive(Default)]
struct BodyState {
    ended: Cell<bool>,
    received: Cell<u64>,
    mark: Cell<u64>,
}

impl BodyState {
    /// The next item of `stream` (the parser's), or [`MultipartError::Incomplete`] when it waits
    /// after the body ended. An item handed out consumes what the parser held.
    async fn handed_out<S, T>(&self, stream: &mut S) -> Option<Result<T, MultipartError>>
    where
        S: Stream<Item = Result<T, MultipartError>> + Unpin,
    {
        let next = std::future::poll_fn(|cx| match stream.poll_next_unpin(cx) {
            Poll::Pending if self.ended.get() => Poll::Ready(Some(Err(MultipartError::Incomplete))),
            other => other,
        })
        .await;
        if let Some(Ok(_)) = next {
            self.mark.set(self.received.get());
        }
        next
    }
}

/// A request body that notes its end and what arrives, for [`Parts`].
struct Watched<S> {
    body: S,
    state: Rc<BodyState>,
}

impl<S: Stream<Item = Result<Bytes, PayloadError>> + Unpin> Stream for Watched<S> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let state = self.state.clone();
        if state.ended.get() {
            return Poll::Ready(None);
        }
        let next = self.body.poll_next_unpin(cx);
        match &next {
            Poll::Ready(None) => state.ended.set(true),
            Poll::Ready(Some(Ok(chunk))) => {
                state.received.set(state.received.get() + chunk.len() as u64);
                if state.received.get() - state.mark.get() > MAX_FRAMING {
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
            }
            _ => {}
        }
        next
    }
}

/// What a part's headers say.
pub(crate) struct Part {
    /// `/`-separated, without leading or trailing slashes.
    path: String,
    directory: bool,
}

impl Part {
    pub(crate) fn of(field: &actix_multipart::Field) -> Result<Part, ApiError> {
        let disposition = field.content_disposition();
        let raw = disposition.and_then(|d| d.get_filename()).ok_or_else(|| {
            let name = disposition.and_then(|d| d.get_name()).unwrap_or_default();
            ApiError::bad(format!("part {name:?} is not a file: it has no filename in its Content-Disposition"))
        })?;
        let path: String = percent_decode(raw)?.trim_matches('/').to_string();
        let content_type = field.content_type().map(|m| m.essence_str().to_string()).unwrap_or_default();
        let directory = match content_type.as_str() {
            "application/x-directory" => true,
            "application/symlink" => {
                return Err(ApiError::bad(format!("{path}: symbolic links cannot be added")));
            }
            _ => false,
        };
        if path.is_empty() && !directory {
            return Err(ApiError::bad("a file part has an empty file name"));
        }
        Ok(Part { path, directory })
    }

    /// Below the top level with a name starting with a dot, as `ipfs add` skips without `--hidden`.
    pub(crate) fn hidden(&self) -> bool {
        self.path.split('/').skip(1).any(|name| name.starts_with('.'))
    }
}

/// Decodes `%XX` escapes (Kubo's clients escape file names); a bad escape is a 400.
fn percent_decode(text: &str) -> Result<String, ApiError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let value = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            match value {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return Err(ApiError::bad(format!("file name {text:?} has a bad %-escape"))),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad(format!("file name {text:?} is not UTF-8")))
}

/// Adds `len` to the bytes read so far, refusing to pass `limit`.
fn counted(read: u64, len: usize, limit: u64) -> Result<u64, ApiError> {
    let read = read.saturating_add(len as u64);
    if read > limit {
        return Err(ApiError::TooLarge(format!("the upload is larger than max_upload_bytes ({limit} bytes)")));
    }
    Ok(read)
}

fn bad_multipart(error: actix_multipart::MultipartError) -> ApiError {
    match error {
        actix_multipart::MultipartError::Payload(PayloadError::Overflow) => ApiError::TooLarge(format!(
            "the upload has more than {MAX_FRAMING} bytes of boundaries and part headers in a row"
        )),
        other => ApiError::bad(format!("cannot read the multipart body: {other}")),
    }
}

/// Bad input (a broken CAR, a bad path) is the client's fault; the rest is ours.
fn import_error(error: impl Into<TrackerError>) -> ApiError {
    match error.into() {
        TrackerError::Ipfs(
            e @ (IpfsError::InvalidOptions(_)
            | IpfsError::InvalidPath { .. }
            | IpfsError::Import(_)
            | IpfsError::Car(_)),
        ) => ApiError::bad(e.to_string()),
        other => ApiError::from(other),
    }
}
