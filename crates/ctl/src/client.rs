//! The HTTP side of pincluster-ctl: where the REST API is ([`api_url`]), how
//! requests authenticate, and how answers and errors are read. Read
//! [`Client`] first.

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context as _};
use http_body_util::BodyExt;
use multiaddr::{Multiaddr, Protocol};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// How a request proves who sends it.
#[derive(Clone, Debug)]
pub(crate) enum Auth {
    None,
    Basic { user: String, password: String },
    Bearer(String),
}

/// A REST API client. Requests run on a private single-threaded runtime:
/// reading a stream's `X-Stream-Error` trailer needs the async body.
pub(crate) struct Client {
    base: String,
    auth: Auth,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// For uploads, which may take longer than any one request should.
    upload_http: reqwest::Client,
}

/// How long a connection may take to open, for uploads.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest line of a stream (or one JSON array answer) read.
const MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// The base URL of the API from `--host`: a URL, or a multiaddress such as
/// `/ip4/127.0.0.1/tcp/9094` or `/dns4/example.com/tcp/9094/https`.
pub(crate) fn api_url(host: &str) -> anyhow::Result<String> {
    let host = host.trim();
    if host.starts_with("http://") || host.starts_with("https://") {
        return Ok(host.trim_end_matches('/').to_string());
    }
    let addr: Multiaddr =
        host.parse().with_context(|| format!("--host {host:?} is neither a URL nor a multiaddress"))?;
    let mut name = None;
    let mut port = None;
    let mut scheme = "http";
    for part in addr.iter() {
        match part {
            Protocol::Ip4(ip) => name = Some(ip.to_string()),
            Protocol::Ip6(ip) => name = Some(format!("[{ip}]")),
            Protocol::Dns(n) | Protocol::Dns4(n) | Protocol::Dns6(n) | Protocol::Dnsaddr(n) => {
                name = Some(n.to_string())
            }
            Protocol::Tcp(p) => port = Some(p),
            Protocol::Https | Protocol::Tls => scheme = "https",
            Protocol::Http => {}
            other => bail!("--host {host:?}: unsupported part {other} (use /ip4|/ip6|/dns/HOST/tcp/PORT or a URL)"),
        }
    }
    match (name, port) {
        (Some(name), Some(port)) => Ok(format!("{scheme}://{name}:{port}")),
        _ => bail!("--host {host:?} needs a host and a /tcp/PORT part"),
    }
}

impl Client {
    pub(crate) fn new(base: String, auth: Auth, timeout: Duration) -> anyhow::Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the HTTP runtime")?;
        let http = reqwest::Client::builder().timeout(timeout).build().context("cannot build the HTTP client")?;
        let upload_http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { base, auth, runtime, http, upload_http })
    }

    fn request(&self, method: Method, path: &str, query: &[(String, String)]) -> RequestBuilder {
        self.authorized(self.http.request(method, format!("{}{path}", self.base)), query)
    }

    fn authorized(&self, mut request: RequestBuilder, query: &[(String, String)]) -> RequestBuilder {
        if !query.is_empty() {
            request = request.query(query);
        }
        match &self.auth {
            Auth::None => request,
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        }
    }

    fn run<T>(&self, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        self.runtime.block_on(work)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let mut request = self.request(method, path, query);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.finish(request, path).await
    }

    async fn finish(&self, request: RequestBuilder, path: &str) -> anyhow::Result<Response> {
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() { "timed out" } else { "cannot reach" };
            anyhow::anyhow!("{what} {}{path}: {}", self.base, root_cause(&e))
        })?;
        check(response).await
    }

    /// Posts a multipart `form` without a time limit; `each` sees every
    /// object of the answer (an NDJSON stream or one JSON array).
    pub(crate) fn upload(
        &self,
        path: &str,
        query: &[(String, String)],
        form: reqwest::multipart::Form,
        each: impl FnMut(Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let request = self.authorized(self.upload_http.post(format!("{}{path}", self.base)), query).multipart(form);
        self.run(async { read_objects(self.finish(request, path).await?, each).await })
    }

    /// A request whose answer is one JSON value (`Null` for an empty body).
    pub(crate) fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        self.run(async {
            let response = self.send(method, path, query, body).await?;
            let text = response.text().await.context("cannot read the answer")?;
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(&text).with_context(|| format!("the answer is not JSON: {}", first_line(&text)))
        })
    }

    /// A request whose answer is an NDJSON stream; `each` sees every object as it arrives.
    pub(crate) fn stream(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        each: impl FnMut(Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.run(async { read_objects(self.send(method, path, query, None).await?, each).await })
    }
}

/// Reads an NDJSON stream object by object as it arrives, or a JSON array;
/// fails with the server's message when the stream ends with `X-Stream-Error`.
async fn read_objects(response: Response, mut each: impl FnMut(Value) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut body = http::Response::<reqwest::Body>::from(response).into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow::anyhow!("the stream was cut off by the server: {}", root_cause(&e)))?;
        match frame.into_data() {
            Ok(data) => {
                pending.extend_from_slice(&data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    handle_line(&line, &mut each)?;
                }
                if pending.len() > MAX_LINE_BYTES {
                    bail!("a stream line is longer than {MAX_LINE_BYTES} bytes");
                }
            }
            Err(frame) => {
                // Empty when the stream went well.
                let error = frame.trailers_ref().and_then(|t| t.get("x-stream-error")).filter(|e| !e.is_empty());
                if let Some(error) = error {
                    bail!("the server failed the stream: {}", String::from_utf8_lossy(error.as_bytes()));
                }
            }
        }
    }
    handle_line(&pending, &mut each)
}

/// One NDJSON line (or a whole JSON array answer); blank lines are skipped.
fn handle_line(line: &[u8], each: &mut impl FnMut(Value) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let line = String::from_utf8_lossy(line);
    if line.trim().is_empty() {
        return Ok(());
    }
    let value = serde_json::from_str(&line).with_context(|| format!("bad stream item: {}", first_line(&line)))?;
    match value {
        Value::Array(items) => items.into_iter().try_for_each(each),
        other => each(other),
    }
}

/// Turns an error status into one line: `CODE: message` from the API's error body.
async fn check(response: Response) -> anyhow::Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| first_line(&text).to_string());
    if message.is_empty() {
        bail!("{status}");
    }
    bail!("{}: {message}", status.as_u16())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(api_url("/ip4/127.0.0.1/tcp/9094").unwrap(), "http://127.0.0.1:9094");
        assert_eq!(api_url("/ip6/::1/tcp/80").unwrap(), "http://[::1]:80");
        assert_eq!(api_url("/dns4/example.com/tcp/443/https").unwrap(), "https://example.com:443");
        assert_eq!(api_url("http://localhost:9094/").unwrap(), "http://localhost:9094");
        assert!(api_url("/ip4/127.0.0.1").is_err());
        assert!(api_url("nonsense").is_err());
        assert!(api_url("/ip4/127.0.0.1/udp/9/quic-v1").is_err());
    }
}
