//! The server side of the opening handshake.
//!
//! [`parse_request`] reads and validates a request head; [`accept`] then lets an application
//! [`Hook`] look at it and builds the `101 Switching Protocols` response (or the error
//! response). Every failure is a [`RequestError`] that knows its HTTP status and a short
//! plain-text reason; [`RequestError::to_response`] renders it.

use super::{
    accept_key, has_token, head_over_limit, is_token, status_reason, Headers, MAX_HEADERS,
};
use crate::deflate::{self, DeflateConfig};
use crate::handshake::client::Negotiated;
use base64::Engine;
use bytes::Bytes;

/// How a client asked for a WebSocket: the two wire forms of the same request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpgradeForm {
    /// HTTP/1.1 `GET` with `Upgrade: websocket` (RFC 6455 §4.1), answered with `101`.
    Http11,
    /// HTTP/2 extended CONNECT with `:protocol` `websocket` (RFC 8441 §4), answered with
    /// `200`; there is no `Sec-WebSocket-Key` or `Sec-WebSocket-Accept`.
    ExtendedConnect,
}

/// A validated WebSocket upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The request target as sent (origin-form: path and query).
    pub target: String,
    /// All header fields (for HTTP/2, a `host` field carries the `:authority`).
    pub headers: Headers,
    key: String,
    protocols: Vec<String>,
    form: UpgradeForm,
}

impl Request {
    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The `Host` header.
    pub fn host(&self) -> &str {
        self.headers.get("host").unwrap_or("")
    }

    /// The `Origin` header, if sent (browsers always send it).
    pub fn origin(&self) -> Option<&str> {
        self.headers.get("origin")
    }

    /// The subprotocols the client offered, in its order.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The `Sec-WebSocket-Key` (empty for HTTP/2, which has none).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How the request came: HTTP/1.1 upgrade or HTTP/2 extended CONNECT.
    pub fn form(&self) -> UpgradeForm {
        self.form
    }

    /// Checks the WebSocket fields of a request whose HTTP form its adapter checked (the
    /// method and version, `Upgrade: websocket` or `:protocol`, `Host` or `:authority`):
    /// the same rules for both forms, except that only HTTP/1.1 has `Connection: upgrade`
    /// and a key.
    pub(crate) fn from_fields(
        form: UpgradeForm,
        target: String,
        headers: Headers,
    ) -> Result<Request, RequestError> {
        if !target.starts_with('/') {
            return Err(RequestError::Target);
        }
        if form == UpgradeForm::Http11
            && !headers
                .get_all("connection")
                .any(|v| has_token(v, "upgrade"))
        {
            return Err(RequestError::Connection);
        }
        if headers.count("sec-websocket-version") != 1
            || headers.get("sec-websocket-version").map(str::trim) != Some("13")
        {
            return Err(RequestError::WebSocketVersion);
        }
        let key = match form {
            UpgradeForm::ExtendedConnect => String::new(),
            UpgradeForm::Http11 => {
                let key = match (
                    headers.count("sec-websocket-key"),
                    headers.get("sec-websocket-key"),
                ) {
                    (1, Some(k)) => k.trim().to_owned(),
                    _ => return Err(RequestError::Key),
                };
                match base64::engine::general_purpose::STANDARD.decode(&key) {
                    Ok(raw) if raw.len() == 16 => key,
                    _ => return Err(RequestError::Key),
                }
            }
        };
        if headers.count("origin") > 1 {
            return Err(RequestError::Origin);
        }
        let mut protocols = Vec::new();
        for value in headers.get_all("sec-websocket-protocol") {
            for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if !is_token(p) {
                    return Err(RequestError::Protocols);
                }
                protocols.push(p.to_owned());
            }
        }
        Ok(Request {
            target,
            headers,
            key,
            protocols,
            form,
        })
    }
}

/// A request that cannot be upgraded, with the HTTP status it is answered with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The head is larger than the configured limit (431).
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// Too many header lines (431).
    #[error("too many header fields")]
    TooManyHeaders,
    /// Not parseable as HTTP/1.x (400).
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    /// A method other than GET (405).
    #[error("method {0} not allowed, WebSocket upgrades use GET")]
    Method(String),
    /// Not HTTP/1.1 (400).
    #[error("HTTP/1.1 or later required")]
    Version,
    /// A target that is not a path (400).
    #[error("request target must be a path")]
    Target,
    /// `Host` missing or repeated (400).
    #[error("exactly one Host header required")]
    Host,
    /// `Upgrade: websocket` missing (400; 426 would invite a retry with the same request).
    #[error("missing `Upgrade: websocket` header")]
    Upgrade,
    /// `Connection: upgrade` missing (400).
    #[error("missing `Connection: upgrade` header")]
    Connection,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes of base64 (400).
    #[error("Sec-WebSocket-Key must be 16 bytes, base64-encoded")]
    Key,
    /// `Sec-WebSocket-Version` missing or not 13 (426, with `Sec-WebSocket-Version: 13`).
    #[error("unsupported WebSocket version, 13 required")]
    WebSocketVersion,
    /// More than one `Origin` header (400): an origin policy could not tell which applies.
    #[error("more than one Origin header")]
    Origin,
    /// `Sec-WebSocket-Protocol` is not a list of tokens (400).
    #[error("invalid Sec-WebSocket-Protocol header")]
    Protocols,
    /// An HTTP/2 request for a WebSocket that is not an extended CONNECT with `:protocol`
    /// `websocket` (RFC 8441): a `GET`, a CONNECT without `:protocol`, or one for another
    /// protocol (400).
    #[error("WebSockets over HTTP/2 use extended CONNECT with :protocol websocket")]
    ExtendedConnect,
    /// A request body without a `Content-Length` (chunked transfer coding): 411.
    #[error("a request body needs a Content-Length")]
    LengthRequired,
    /// A `Content-Length` that is not one decimal number (400).
    #[error("invalid Content-Length")]
    ContentLength,
    /// A request body larger than the server takes (413).
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The application refused the request.
    #[error("rejected with HTTP {}", .0.status)]
    Rejected(Box<Rejection>),
}

impl RequestError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::HeadTooLarge(_) | RequestError::TooManyHeaders => 431,
            RequestError::Method(_) => 405,
            RequestError::WebSocketVersion => 426,
            RequestError::LengthRequired => 411,
            RequestError::BodyTooLarge(_) => 413,
            RequestError::Rejected(r) => r.status,
            _ => 400,
        }
    }

    /// The complete HTTP response for this error: status line, headers, plain-text body.
    pub fn to_response(&self) -> Vec<u8> {
        self.to_rejection().to_response()
    }

    /// The error as the response it is answered with: the application's [`Rejection`], or
    /// the status and reason, with `Sec-WebSocket-Version: 13` for 426 and `Allow: GET`
    /// for 405.
    pub(crate) fn to_rejection(&self) -> Rejection {
        if let RequestError::Rejected(r) = self {
            return (**r).clone();
        }
        let mut r = Rejection::new(self.status(), format!("{self}\n"));
        match self {
            RequestError::WebSocketVersion => r.headers.append("Sec-WebSocket-Version", "13"),
            RequestError::Method(_) => r.headers.append("Allow", "GET"),
            _ => {}
        }
        r
    }
}

/// An HTTP error response chosen by the application (or by the server for a bad request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Status code (should be 4xx or 5xx).
    pub status: u16,
    /// Extra header fields.
    pub headers: Headers,
    /// The body, sent as `text/plain; charset=utf-8`.
    pub body: String,
}

impl Rejection {
    /// A rejection with `status` and a plain-text `body`.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Rejection {
            status,
            headers: Headers::new(),
            body: body.into(),
        }
    }

    /// Adds a header field to the response.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Renders the response bytes (always with `Connection: close`).
    pub fn to_response(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
                self.status,
                status_reason(self.status),
                self.body.len()
            )
            .as_bytes(),
        );
        self.headers.write_safe_to(&mut out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// Server handshake settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerHandshakeConfig {
    /// Largest request head accepted (default 16 KiB); larger gets `431`.
    pub max_head_size: usize,
    /// Subprotocols we support, in our order of preference. The first one the client also
    /// offered is selected (a [`Hook`] may override).
    pub protocols: Vec<String>,
    /// permessage-deflate settings (`None`: decline compression).
    pub deflate: Option<DeflateConfig>,
    /// Origins allowed to connect (`None`: any). Entries are exact origins
    /// (`https://app.example.com`, compared case-insensitively), wildcard subdomains
    /// (`https://*.example.com`, which does not match `https://example.com` itself) or `*`.
    /// A request whose `Origin` matches none gets `403`. Requests without `Origin` (not from
    /// a browser) are allowed: the check protects browser users from hostile pages.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for ServerHandshakeConfig {
    fn default() -> Self {
        ServerHandshakeConfig {
            max_head_size: 16 * 1024,
            protocols: Vec::new(),
            deflate: None,
            allowed_origins: None,
        }
    }
}

/// Whether `origin` matches one of `patterns` (see [`ServerHandshakeConfig::allowed_origins`]).
pub fn origin_allowed(origin: &str, patterns: &[String]) -> bool {
    let origin = origin.trim();
    patterns.iter().any(|p| {
        let p = p.trim();
        if p == "*" || p.eq_ignore_ascii_case(origin) {
            return true;
        }
        let Some((scheme, host)) = p.split_once("://*.") else {
            return false;
        };
        let Some((o_scheme, o_rest)) = origin.split_once("://") else {
            return false;
        };
        // Compare bytes: the origin comes from the client and may hold any UTF-8, so slicing
        // it as a str at a byte offset could split a character.
        let suffix = format!(".{host}");
        let (rest, suffix) = (o_rest.as_bytes(), suffix.as_bytes());
        scheme.eq_ignore_ascii_case(o_scheme)
            && rest.len() > suffix.len()
            && rest[rest.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            && !rest[..rest.len() - suffix.len()]
                .iter()
                .any(|&b| b == b'/' || b == b'@')
    })
}

/// Parses and validates a request head at the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete, then the request and the head length.
/// Everything that is not a valid upgrade request is an error (see [`parse_head`] to let
/// plain HTTP requests through).
pub fn parse_request(
    buf: &[u8],
    max_head_size: usize,
) -> Result<Option<(Request, usize)>, RequestError> {
    match parse_inner(buf, max_head_size, false)? {
        None => Ok(None),
        Some((ParsedRequest::Upgrade(r), n)) => Ok(Some((r, n))),
        Some((ParsedRequest::Http(r), _)) => Err(r.refusal()),
    }
}

/// What a request head turned out to be (see [`parse_head`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedRequest {
    /// A valid WebSocket upgrade request.
    Upgrade(Request),
    /// A valid HTTP/1.1 `GET` or `HEAD` request that does not ask for a WebSocket upgrade
    /// (no `Upgrade: websocket`; every `HEAD` request is one).
    Http(HttpRequest),
}

/// Like [`parse_request`], but a valid HTTP/1.1 `GET` or `HEAD` request without
/// `Upgrade: websocket` is returned as [`ParsedRequest::Http`] instead of failing, so that a
/// server can answer it (static files, health checks) on the same port. A request that does
/// ask for an upgrade is validated exactly as by [`parse_request`].
pub fn parse_head(
    buf: &[u8],
    max_head_size: usize,
) -> Result<Option<(ParsedRequest, usize)>, RequestError> {
    parse_inner(buf, max_head_size, true)
}

fn parse_inner(
    buf: &[u8],
    max_head_size: usize,
    allow_http: bool,
) -> Result<Option<(ParsedRequest, usize)>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(e) => return Err(RequestError::Malformed(e.to_string())),
    };
    if head_over_limit(status, buf, max_head_size) {
        return Err(RequestError::HeadTooLarge(max_head_size));
    }
    let httparse::Status::Complete(n) = status else {
        return Ok(None);
    };
    let method = req.method.unwrap_or("");
    if method != "GET" && !(allow_http && (method == "HEAD" || method == "POST")) {
        return Err(RequestError::Method(method.to_owned()));
    }
    if req.version != Some(1) {
        return Err(RequestError::Version);
    }
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(RequestError::Target);
    }
    let headers = Headers::from_httparse(req.headers);
    if headers.count("host") != 1 || headers.get("host").is_none_or(|h| h.trim().is_empty()) {
        return Err(RequestError::Host);
    }
    if method != "GET"
        || !headers
            .get_all("upgrade")
            .any(|v| has_token(v, "websocket"))
    {
        // Not an upgrade: plain HTTP (parse_request refuses it, with 400 for GET).
        return Ok(Some((
            ParsedRequest::Http(HttpRequest {
                method: method.to_owned(),
                target: target.to_owned(),
                headers,
                body: Bytes::new(),
            }),
            n,
        )));
    }
    let request = Request::from_fields(UpgradeForm::Http11, target.to_owned(), headers)?;
    Ok(Some((ParsedRequest::Upgrade(request), n)))
}

/// A valid HTTP/1.1 `GET`, `HEAD` or `POST` request that is not a WebSocket upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `HEAD` or `POST`.
    pub method: String,
    /// The request target as sent (origin-form: path and query).
    pub target: String,
    /// All header fields.
    pub headers: Headers,
    /// The body: empty as parsed from the head; the I/O layer reads the
    /// [`HttpRequest::body_len`] bytes that follow the head into it before the request is
    /// answered.
    pub body: Bytes,
}

impl HttpRequest {
    /// The path part of the target (still percent-encoded).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Whether this is a `HEAD` request (the response carries no body).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// The length of the body that follows the head: its `Content-Length` (0 without
    /// one). A body in the chunked transfer coding is refused with 411, one over `max`
    /// bytes with 413, a `Content-Length` that is not one number with 400.
    pub fn body_len(&self, max: usize) -> Result<usize, RequestError> {
        if self.headers.get("transfer-encoding").is_some() {
            return Err(RequestError::LengthRequired);
        }
        let len = match self.headers.count("content-length") {
            0 => return Ok(0),
            1 => self.headers.get("content-length").unwrap_or("").trim(),
            _ => return Err(RequestError::ContentLength),
        };
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RequestError::ContentLength);
        }
        match len.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(RequestError::BodyTooLarge(max)),
        }
    }

    /// The error a server without an HTTP handler answers this request with: `405` for
    /// `HEAD` and `POST`, `400` (missing `Upgrade: websocket`) for `GET`.
    pub fn refusal(&self) -> RequestError {
        if self.method == "GET" {
            RequestError::Upgrade
        } else {
            RequestError::Method(self.method.clone())
        }
    }
}

/// A plain HTTP response chosen by a [`Hook`] for an [`HttpRequest`]: any status from 200
/// to 599, any headers, a body. The connection is closed after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code (200 to 599; anything else is sent as 500).
    pub status: u16,
    /// Header fields. `Content-Length`, `Connection` and `Transfer-Encoding` are set by
    /// the server and dropped from here, except that a `Content-Length` given for a
    /// response to `HEAD` is kept (the body need not be produced for `HEAD`).
    pub headers: Headers,
    /// The body (not sent in a response to `HEAD`).
    pub body: Bytes,
    /// A body read from a file while it is written, instead of `body` (see
    /// [`HttpResponse::file`]).
    pub file: Option<FileBody>,
}

/// A response body that the I/O layer reads from a file as it writes it, so that a large
/// file is neither held in memory nor read with blocking calls on the connection's thread
/// (`wsx` reads it through tokio's blocking pool, 64 KiB at a time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileBody {
    /// The file.
    pub path: std::path::PathBuf,
    /// The `Content-Length` sent: the file's length when the response was made. At most
    /// this much is sent; a file found shorter when read ends the connection early.
    pub len: u64,
}

impl HttpResponse {
    /// A response with `status` and `body` (add `Content-Type` with
    /// [`HttpResponse::with_header`]).
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        HttpResponse {
            status,
            headers: Headers::new(),
            body: body.into(),
            file: None,
        }
    }

    /// A response with `status` whose body is the first `len` bytes of the file at `path`
    /// (its length, as found by the caller), read while it is sent.
    pub fn file(status: u16, path: impl Into<std::path::PathBuf>, len: u64) -> Self {
        HttpResponse {
            file: Some(FileBody {
                path: path.into(),
                len,
            }),
            ..HttpResponse::new(status, Bytes::new())
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The status line and header fields, for a response to a `HEAD` request when `head`
    /// is true (the body is written after this unless `head`). Always `Connection: close`.
    pub fn head_bytes(&self, head: bool) -> Vec<u8> {
        let status = if (200..=599).contains(&self.status) {
            self.status
        } else {
            500
        };
        let declared = self
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|_| head && self.headers.count("content-length") == 1);
        let length = declared.unwrap_or(match &self.file {
            Some(f) => f.len,
            None => self.body.len() as u64,
        });
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {status} {}\r\nContent-Length: {length}\r\nConnection: close\r\n",
                status_reason(status)
            )
            .as_bytes(),
        );
        let mut rest = Headers::new();
        for (name, value) in self.headers.iter() {
            let framing = ["content-length", "connection", "transfer-encoding"]
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f));
            if !framing {
                rest.append(name, value);
            }
        }
        rest.write_safe_to(&mut out);
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// The parts of the `101` response the application may shape from a [`Hook`].
#[derive(Clone, Debug, Default)]
pub struct Accept {
    /// The subprotocol to select (must be one the client offered).
    pub protocol: Option<String>,
    /// Extra response header fields.
    pub headers: Headers,
}

/// Application logic that sees each upgrade request before it is accepted: it may check the
/// origin, path, query or headers, select a subprotocol, add response headers, or reject with
/// its own status. Implemented for closures `FnOnce(&Request, &mut Accept) -> Result<(), Rejection>`.
pub trait Hook {
    /// Inspects `request`; shape `accept`, or return a rejection.
    fn on_request(self, request: &Request, accept: &mut Accept) -> Result<(), Rejection>;

    /// Answers a valid HTTP/1.1 `GET` or `HEAD` request that is not a WebSocket upgrade
    /// (see [`parse_head`]): return the response to send (the connection is closed after
    /// it), or `None` (the default) to refuse it as before, with `400` for `GET` and `405`
    /// for `HEAD` and `POST` ([`HttpRequest::refusal`]). It runs on the connection's task, so keep it
    /// quick.
    fn on_http(&mut self, request: &HttpRequest) -> Option<HttpResponse> {
        let _ = request;
        None
    }

    /// Like [`Hook::on_http`], for an answer that has to wait for something (a message
    /// broker, a database): returns the future of the response, which the I/O layer runs
    /// on the connection's task within the handshake timeout, or `None` (the default) to
    /// let [`Hook::on_http`] answer. Asked first. The core never polls the future.
    fn on_http_async(&mut self, request: &HttpRequest) -> Option<HttpFuture> {
        let _ = request;
        None
    }
}

/// A response being produced (see [`Hook::on_http_async`]).
pub type HttpFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse> + Send + 'static>>;

impl<F> Hook for F
where
    F: FnOnce(&Request, &mut Accept) -> Result<(), Rejection>,
{
    fn on_request(self, request: &Request, accept: &mut Accept) -> Result<(), Rejection> {
        self(request, accept)
    }
}

/// A hook that accepts every request unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHook;

impl Hook for NoHook {
    fn on_request(self, _: &Request, _: &mut Accept) -> Result<(), Rejection> {
        Ok(())
    }
}

/// What a server agreed to for one request, apart from how it is written on the wire:
/// [`Agreement::to_http11`] renders the `101` of HTTP/1.1, and with the `http` feature
/// `Agreement::to_http` gives an `http::Response` (`101`, or `200` for HTTP/2's extended
/// CONNECT) for hyper, axum and h2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// The subprotocol and permessage-deflate parameters the connection runs with.
    pub negotiated: Negotiated,
    /// The response's header fields: `Sec-WebSocket-Accept` (HTTP/1.1 only),
    /// `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions`, then the hook's.
    pub headers: Headers,
    /// How the request came, and so how it is answered.
    pub form: UpgradeForm,
}

impl Agreement {
    /// The response status: `101` for HTTP/1.1, `200` for extended CONNECT.
    pub fn status(&self) -> u16 {
        match self.form {
            UpgradeForm::Http11 => 101,
            UpgradeForm::ExtendedConnect => 200,
        }
    }

    /// The HTTP/1.1 response head: `101 Switching Protocols` with `Upgrade` and
    /// `Connection`, then [`Agreement::headers`] (fields that could not be sent safely are
    /// left out).
    pub fn to_http11(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        );
        self.headers.write_safe_to(&mut out);
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Decides the response to a validated request: checks the origin, runs the hook, selects
/// the subprotocol and negotiates permessage-deflate, for either form of request.
pub fn negotiate(
    request: &Request,
    config: &ServerHandshakeConfig,
    hook: impl Hook,
) -> Result<Agreement, RequestError> {
    if let (Some(allowed), Some(origin)) = (&config.allowed_origins, request.origin()) {
        if !origin_allowed(origin, allowed) {
            return Err(RequestError::Rejected(Box::new(Rejection::new(
                403,
                format!("origin {origin} is not allowed\n"),
            ))));
        }
    }
    let mut acc = Accept {
        protocol: config
            .protocols
            .iter()
            .find(|p| request.protocols.contains(p))
            .cloned(),
        headers: Headers::new(),
    };
    hook.on_request(request, &mut acc)
        .map_err(|r| RequestError::Rejected(Box::new(r)))?;
    if let Some(p) = &acc.protocol {
        if !request.protocols.contains(p) {
            return Err(RequestError::Rejected(Box::new(Rejection::new(
                500,
                "server selected a subprotocol the client did not offer\n",
            ))));
        }
    }
    let mut deflate = None;
    let mut headers = Headers::new();
    if request.form == UpgradeForm::Http11 {
        headers.append("Sec-WebSocket-Accept", accept_key(request.key.as_bytes()));
    }
    if let Some(p) = &acc.protocol {
        headers.append("Sec-WebSocket-Protocol", p.as_bytes());
    }
    if let Some(cfg) = &config.deflate {
        let offers: Vec<&str> = request
            .headers
            .get_all("sec-websocket-extensions")
            .collect();
        if let Some((params, header)) = deflate::server_negotiate(cfg, &offers) {
            deflate = Some(params);
            headers.append("Sec-WebSocket-Extensions", header);
        }
    }
    for (name, value) in acc.headers.iter() {
        headers.append(name, value);
    }
    Ok(Agreement {
        negotiated: Negotiated {
            protocol: acc.protocol,
            deflate,
        },
        headers,
        form: request.form,
    })
}

/// [`negotiate`], answered in HTTP/1.1: the `101` response bytes and what was agreed.
pub fn accept(
    request: &Request,
    config: &ServerHandshakeConfig,
    hook: impl Hook,
) -> Result<(Vec<u8>, Negotiated), RequestError> {
    let agreement = negotiate(request, config, hook)?;
    Ok((agreement.to_http11(), agreement.negotiated))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(s: &str) -> Result<Request, RequestError> {
        parse_request(s.as_bytes(), 16 * 1024).map(|r| r.unwrap().0)
    }

    fn without(line: &str) -> String {
        GOOD.replace(line, "")
    }

    #[test]
    fn rfc_example_request() {
        let req = parse(GOOD).unwrap();
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query(), Some("room=1"));
        assert_eq!(req.origin(), Some("http://example.com"));
        assert_eq!(req.protocols(), ["chat", "superchat"]);
        let config = ServerHandshakeConfig {
            protocols: vec!["superchat".into()],
            ..Default::default()
        };
        let (resp, neg) = accept(&req, &config, NoHook).unwrap();
        let resp = String::from_utf8(resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(resp.contains("Sec-WebSocket-Protocol: superchat\r\n"));
        assert_eq!(neg.protocol.as_deref(), Some("superchat"));
    }

    #[test]
    fn bad_requests_and_their_statuses() {
        let cases: Vec<(String, u16)> = vec![
            (GOOD.replace("GET", "POST"), 405),
            (GOOD.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (without("Host: server.example.com\r\n"), 400),
            (
                GOOD.replace("Host: server.example.com\r\n", "Host: a\r\nHost: b\r\n"),
                400,
            ),
            (without("Upgrade: websocket\r\n"), 400),
            (GOOD.replace("Upgrade: websocket", "Upgrade: h2c"), 400),
            (without("Connection: Upgrade\r\n"), 400),
            (
                without("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
                400,
            ),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), 400),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!notbase64!!!"),
                400,
            ),
            (GOOD.replace("Version: 13", "Version: 8"), 426),
            (without("Sec-WebSocket-Version: 13\r\n"), 426),
            (GOOD.replace("chat, superchat", "chat, super chat"), 400),
            (
                GOOD.replace(
                    "Origin: http://example.com\r\n",
                    "Origin: https://a\r\nOrigin: https://b\r\n",
                ),
                400,
            ),
            (GOOD.replace("/chat?room=1", "chat"), 400),
            ("GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_string(), 400),
        ];
        for (req, status) in cases {
            let err = parse(&req).unwrap_err();
            assert_eq!(err.status(), status, "{err} for {req:?}");
            let resp = String::from_utf8(err.to_response()).unwrap();
            assert!(resp.starts_with(&format!("HTTP/1.1 {status} ")), "{resp}");
            if status == 426 {
                assert!(resp.contains("\r\nSec-WebSocket-Version: 13\r\n"));
            }
        }
    }

    #[test]
    fn token_lists_case_insensitive() {
        let req = GOOD
            .replace("Upgrade: websocket", "Upgrade: foo, WebSocket")
            .replace("Connection: Upgrade", "Connection: keep-alive, upgrade");
        assert!(parse(&req).is_ok());
    }

    #[test]
    fn head_limits() {
        let big = GOOD.replace(
            "Origin:",
            &format!("X-Pad: {}\r\nOrigin:", "a".repeat(20_000)),
        );
        assert_eq!(parse(&big).unwrap_err().status(), 431);
        // Incomplete but already over the limit.
        let err = parse_request(&vec![b'a'; 17 * 1024], 16 * 1024).unwrap_err();
        assert_eq!(err.status(), 431);
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", 16 * 1024),
            Ok(None)
        );
        // Empty lines before the request line are skipped by the parser (RFC 9112 §2.2), so
        // they must not make a never-ending head look finished: found by fuzzing, this kept
        // the handshake buffer growing without bound.
        let mut endless = b"\r\n\r\nGET / HTTP/1.1\r\nX-Pad: ".to_vec();
        endless.resize(4 * 1024, b'a');
        assert_eq!(parse_request(&endless, 4 * 1024), Ok(None));
        endless.push(b'a');
        assert_eq!(parse_request(&endless, 4 * 1024).unwrap_err().status(), 431);
        let padded = format!("\r\n\r\n{GOOD}");
        assert!(parse_request(padded.as_bytes(), padded.len())
            .unwrap()
            .is_some());
        assert_eq!(
            parse_request(padded.as_bytes(), padded.len() - 1)
                .unwrap_err()
                .status(),
            431
        );
        let many: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
        let req = GOOD.replace("Origin:", &format!("{many}Origin:"));
        assert_eq!(parse(&req).unwrap_err().status(), 431);
    }

    #[test]
    fn origin_policy() {
        let allow = vec![
            "https://app.example.com".to_string(),
            "https://*.example.org".to_string(),
        ];
        assert!(origin_allowed("https://app.example.com", &allow));
        assert!(origin_allowed("HTTPS://APP.EXAMPLE.COM", &allow));
        assert!(origin_allowed("https://a.example.org", &allow));
        assert!(!origin_allowed("https://a.b.example.org:8443", &allow));
        assert!(origin_allowed("https://a.b.example.org", &allow));
        assert!(!origin_allowed("https://example.org", &allow));
        assert!(!origin_allowed("http://a.example.org", &allow));
        assert!(!origin_allowed("https://evil.com/.example.org", &allow));
        assert!(!origin_allowed("https://app.example.com.evil.com", &allow));
        assert!(!origin_allowed("null", &allow));
        assert!(origin_allowed("anything", &["*".to_string()]));
        // Found by fuzzing: a multi-byte character where the suffix would start.
        assert!(!origin_allowed("https://\u{e9}xample.org1", &allow));
        assert!(origin_allowed("https://\u{e9}.example.org", &allow));

        let req = parse(GOOD).unwrap(); // Origin: http://example.com
        let mut config = ServerHandshakeConfig {
            allowed_origins: Some(vec!["https://app.example.com".into()]),
            ..Default::default()
        };
        let err = accept(&req, &config, NoHook).unwrap_err();
        assert_eq!(err.status(), 403);
        config.allowed_origins = Some(vec!["http://example.com".into()]);
        assert!(accept(&req, &config, NoHook).is_ok());
        // No Origin header: not a browser, allowed.
        let req = parse(&without("Origin: http://example.com\r\n")).unwrap();
        config.allowed_origins = Some(vec!["https://app.example.com".into()]);
        assert!(accept(&req, &config, NoHook).is_ok());
    }

    #[test]
    fn plain_http_requests_are_told_apart() {
        let plain = "GET /index.html?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n";
        let (parsed, n) = parse_head(plain.as_bytes(), 16 * 1024).unwrap().unwrap();
        assert_eq!(n, plain.len());
        let ParsedRequest::Http(req) = parsed else {
            panic!("not plain HTTP: {parsed:?}")
        };
        assert_eq!(req.method, "GET");
        assert_eq!(req.path(), "/index.html");
        assert_eq!(req.query(), Some("x=1"));
        assert!(!req.is_head());
        assert_eq!(req.headers.get("accept"), Some("*/*"));
        // parse_request refuses the same request as before: 400, missing Upgrade.
        assert_eq!(parse(plain).unwrap_err(), RequestError::Upgrade);

        let head = plain.replace("GET", "HEAD");
        let (parsed, _) = parse_head(head.as_bytes(), 16 * 1024).unwrap().unwrap();
        assert!(matches!(&parsed, ParsedRequest::Http(r) if r.is_head()));
        assert_eq!(parse(&head).unwrap_err().status(), 405);
        // HEAD with upgrade headers is still plain HTTP (HEAD cannot upgrade).
        let (parsed, _) = parse_head(GOOD.replace("GET", "HEAD").as_bytes(), 16 * 1024)
            .unwrap()
            .unwrap();
        assert!(matches!(parsed, ParsedRequest::Http(_)));

        // A real upgrade request is validated exactly as by parse_request.
        let (parsed, _) = parse_head(GOOD.as_bytes(), 16 * 1024).unwrap().unwrap();
        assert_eq!(parsed, ParsedRequest::Upgrade(parse(GOOD).unwrap()));
        let bad_upgrade = GOOD.replace("Version: 13", "Version: 8");
        assert_eq!(
            parse_head(bad_upgrade.as_bytes(), 16 * 1024)
                .unwrap_err()
                .status(),
            426
        );
        // A POST is plain HTTP too, with its body's length from the head; a POST that asks
        // for an upgrade is not one (upgrades use GET), and is refused by default with 405.
        let post = plain
            .replace("GET", "POST")
            .replace("Host: a\r\n", "Host: a\r\nContent-Length: 5\r\n");
        let (parsed, n) = parse_head(post.as_bytes(), 16 * 1024).unwrap().unwrap();
        let ParsedRequest::Http(req) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!((req.method.as_str(), n), ("POST", post.len()));
        assert_eq!(req.body_len(5), Ok(5));
        assert_eq!(req.body_len(4).unwrap_err().status(), 413);
        assert_eq!(req.refusal().status(), 405);
        for (header, status) in [
            ("Transfer-Encoding: chunked", 411),
            ("Content-Length: -1", 400),
            ("Content-Length: 1\r\nContent-Length: 1", 400),
            ("Content-Length: 99999999999999999999999", 413),
        ] {
            let head = plain.replace("Host: a\r\n", &format!("Host: a\r\n{header}\r\n"));
            let ParsedRequest::Http(req) =
                parse_head(head.as_bytes(), 16 * 1024).unwrap().unwrap().0
            else {
                panic!()
            };
            assert_eq!(
                req.body_len(1 << 20).unwrap_err().status(),
                status,
                "{header}"
            );
        }
        let (upgrade_by_post, _) = parse_head(GOOD.replace("GET", "POST").as_bytes(), 16 * 1024)
            .unwrap()
            .unwrap();
        match upgrade_by_post {
            ParsedRequest::Http(req) => assert_eq!(req.refusal().status(), 405),
            other => panic!("{other:?}"),
        }
        // Still refused before any handler: other methods, HTTP/1.0, no Host, bad target.
        for (req, status) in [
            (plain.replace("GET", "PUT"), 405),
            (plain.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (plain.replace("Host: a\r\n", ""), 400),
            (plain.replace("/index.html?x=1", "*"), 400),
        ] {
            let err = parse_head(req.as_bytes(), 16 * 1024).unwrap_err();
            assert_eq!(err.status(), status, "{req:?}");
        }
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n", 16 * 1024), Ok(None));
    }

    #[test]
    fn http_response_rendering() {
        let r = HttpResponse::new(200, "hello")
            .with_header("Content-Type", "text/plain")
            .with_header("Content-Length", "999")
            .with_header("Connection", "keep-alive")
            .with_header("Transfer-Encoding", "chunked")
            .with_header("X-Evil", "a\r\nSet-Cookie: x");
        let head = String::from_utf8(r.head_bytes(false)).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Length: 5\r\n"), "{head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Type: text/plain\r\n"), "{head}");
        assert!(
            !head.contains("999") && !head.contains("keep-alive"),
            "{head}"
        );
        assert!(
            !head.contains("chunked") && !head.contains("Evil"),
            "{head}"
        );
        assert!(head.ends_with("\r\n\r\n"));
        assert_eq!(head.matches("Content-Length").count(), 1);
        // HEAD: a declared length is kept, since the body need not be produced.
        let r = HttpResponse::new(200, Bytes::new()).with_header("Content-Length", "1234");
        let head = String::from_utf8(r.head_bytes(true)).unwrap();
        assert!(head.contains("\r\nContent-Length: 1234\r\n"), "{head}");
        assert_eq!(head.matches("Content-Length").count(), 1);
        let r = HttpResponse::new(404, "missing\n");
        let head = String::from_utf8(r.head_bytes(true)).unwrap();
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(head.contains("\r\nContent-Length: 8\r\n"), "{head}");
        // No 1xx from an application: it could fake a protocol switch.
        let head = String::from_utf8(HttpResponse::new(101, "").head_bytes(false)).unwrap();
        assert!(head.starts_with("HTTP/1.1 500 "), "{head}");
    }

    #[test]
    fn hook_on_http_defaults_to_none() {
        let req = HttpRequest {
            method: "GET".into(),
            target: "/".into(),
            headers: Headers::new(),
            body: Bytes::new(),
        };
        assert_eq!(NoHook.on_http(&req), None);
        assert!(NoHook.on_http_async(&req).is_none());
        let mut closure = |_: &Request, _: &mut Accept| Ok(());
        assert_eq!(closure.on_http(&req), None);
        assert_eq!(req.refusal().status(), 400);
    }

    #[test]
    fn hook_can_reject_and_shape() {
        let req = parse(GOOD).unwrap();
        let err = accept(&req, &Default::default(), |r: &Request, _: &mut Accept| {
            if r.origin() == Some("http://example.com") {
                Err(Rejection::new(403, "origin not allowed\n"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err.status(), 403);
        let resp = String::from_utf8(err.to_response()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(resp.ends_with("origin not allowed\n"));

        let (resp, neg) = accept(&req, &Default::default(), |_: &Request, a: &mut Accept| {
            a.protocol = Some("chat".into());
            a.headers.append("X-Served-By", "wsx");
            Ok(())
        })
        .unwrap();
        let resp = String::from_utf8(resp).unwrap();
        assert!(resp.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(resp.contains("X-Served-By: wsx\r\n"));
        assert_eq!(neg.protocol.as_deref(), Some("chat"));

        let err = accept(&req, &Default::default(), |_: &Request, a: &mut Accept| {
            a.protocol = Some("unoffered".into());
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.status(), 500);
    }
}
