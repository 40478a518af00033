//! The error type of the tokio layer.

use bytes::Bytes;
use wsx_proto::handshake::client::{RequestBuildError, Response, ResponseError, UrlError};
use wsx_proto::handshake::server::RequestError;
use wsx_proto::{CloseCode, ProtocolError, SendError};

/// Everything that can go wrong with a WebSocket connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL cannot be used.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The request cannot be built (bad header or subprotocol).
    #[error(transparent)]
    Request(#[from] RequestBuildError),
    /// Name resolution failed.
    #[error("cannot resolve {host}: {source}")]
    Dns {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address (host:port).
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// Connecting through a proxy failed, or a proxy setting is invalid. `proxy` is the
    /// proxy's URL without the password, or `from $VAR` for a bad environment variable.
    #[error("proxy {proxy}: {error}")]
    Proxy {
        /// Which proxy.
        proxy: String,
        /// What went wrong (boxed: it is large, and rare).
        #[source]
        error: Box<crate::proxy::ProxyError>,
    },
    /// TLS setup or handshake failed (boxed: it is large, and rare).
    #[error("TLS: {0}")]
    Tls(Box<TlsError>),
    /// Reading or writing the transport failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A step did not finish in time.
    #[error("{0} timed out")]
    Timeout(Timeout),
    /// The server answered the upgrade with an HTTP status other than 101.
    #[error("server answered HTTP {} {}{}", .response.status, .response.reason, body_excerpt(.body))]
    Http {
        /// Status line and headers.
        response: Box<Response>,
        /// The body (at most 64 KiB of it).
        body: Bytes,
    },
    /// The server's 101 response is not a valid WebSocket handshake.
    #[error("invalid handshake response: {0}")]
    Handshake(Box<ResponseError>),
    /// The client's upgrade request was refused (server side); the HTTP error response was
    /// sent.
    #[error("upgrade request refused with HTTP {status}: {0}", status = .0.status())]
    Upgrade(#[from] RequestError),
    /// The request was plain HTTP (not an upgrade) and was answered by the hook's
    /// `on_http` with this status (server side); the connection is closed.
    #[error("plain HTTP request answered with HTTP {0}")]
    HttpAnswered(u16),
    /// The peer broke the protocol; the connection was failed with
    /// [`ProtocolError::close_code`].
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A message could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
}

/// What timed out (see [`Error::Timeout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timeout {
    /// The TCP connection (client; `ClientBuilder::connect_timeout`).
    Connect,
    /// The TLS handshake (server; `ServerConfig::handshake_timeout`).
    TlsHandshake,
    /// The opening handshake (`ClientBuilder::handshake_timeout`,
    /// `ServerConfig::handshake_timeout`).
    Handshake,
    /// Writing the answer to a plain HTTP request (server).
    HttpResponse,
    /// Queued output made no progress ([`wsx_proto::Config::write_timeout`]).
    Write,
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Timeout::Connect => "connect",
            Timeout::TlsHandshake => "TLS handshake",
            Timeout::Handshake => "handshake",
            Timeout::HttpResponse => "HTTP response",
            Timeout::Write => "write",
        })
    }
}

/// Why TLS could not be set up (see [`Error::Tls`]). The typed errors of rustls and of the
/// PEM parser are kept as sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused a setting, a certificate or a key.
    #[error("{context}: {source}")]
    Rustls {
        /// What was being set up.
        context: String,
        /// rustls's error.
        source: rustls::Error,
    },
    /// A PEM file could not be read or parsed.
    #[error("{context}: {source}")]
    Pem {
        /// Which file, and what was expected in it.
        context: String,
        /// The parser's error.
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate file held no certificate.
    #[error("no certificate found in {}", .0.display())]
    NoCertificate(std::path::PathBuf),
    /// The host name cannot be used as a TLS server name.
    #[error("invalid server name {name:?}: {source}")]
    ServerName {
        /// The host.
        name: String,
        /// Why not.
        source: rustls_pki_types::InvalidDnsNameError,
    },
    /// The TLS handshake failed. When TLS itself failed (not the transport), the
    /// `io::Error` carries the `rustls::Error` (`get_ref()` and downcast).
    #[error("handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
}

impl TlsError {
    pub(crate) fn rustls(context: impl Into<String>) -> impl FnOnce(rustls::Error) -> Error {
        let context = context.into();
        move |source| TlsError::Rustls { context, source }.into()
    }
}

impl From<TlsError> for Error {
    fn from(e: TlsError) -> Self {
        Error::Tls(Box::new(e))
    }
}

fn body_excerpt(body: &Bytes) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

impl From<ResponseError> for Error {
    fn from(e: ResponseError) -> Self {
        match e {
            ResponseError::Status(response) => Error::Http {
                response,
                body: Bytes::new(),
            },
            other => Error::Handshake(Box::new(other)),
        }
    }
}

impl Error {
    /// The close code this error was (or would be) answered with, where one applies.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol(e) => Some(e.close_code()),
            Error::Io(_) | Error::Timeout(_) => Some(CloseCode::ABNORMAL),
            _ => None,
        }
    }

    /// The HTTP status involved: what the server answered (client side), or what a refused
    /// upgrade request was answered with (server side).
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Http { response, .. } => Some(response.status),
            Error::Upgrade(e) => Some(e.status()),
            Error::HttpAnswered(status) => Some(*status),
            _ => None,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
