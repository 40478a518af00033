//! The client side of the opening handshake.
//!
//! ```
//! use wsx_proto::handshake::client::ClientHandshake;
//! let (hs, request) = ClientHandshake::builder("ws://example.com:8080/chat?room=1")
//!     .unwrap()
//!     .protocol("chat.v1")
//!     .build()
//!     .unwrap();
//! let request = String::from_utf8(request).unwrap();
//! assert!(request.starts_with("GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\n"));
//! # let _ = hs;
//! ```

use super::headers::is_safe_field;
use super::{accept_key, generate_key, has_token, head_over_limit, is_token, Headers, MAX_HEADERS};
use crate::deflate::{self, DeflateConfig, DeflateParams, NegotiationError};
use std::fmt;
use url::Url;

/// Where to connect, as derived from a `ws://` or `wss://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// True for `wss://`.
    pub tls: bool,
    /// Host name or IP literal, without brackets (what DNS and TLS SNI want).
    pub host: String,
    /// TCP port (80 / 443 by default).
    pub port: u16,
    /// Path and query, as sent in the request line (`/` at least).
    pub resource: String,
    /// Value of the `Host` header (with brackets for IPv6, with the port when non-default).
    pub host_header: String,
}

impl Target {
    /// Parses and checks a WebSocket URL (`ws`, `wss`; `http` and `https` are accepted as
    /// aliases). Fragments are not allowed (RFC 6455 §3).
    pub fn parse(url: &str) -> Result<Target, UrlError> {
        let url = Url::parse(url).map_err(|e| UrlError::Invalid(e.to_string()))?;
        let tls = match url.scheme() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            other => return Err(UrlError::Scheme(other.to_owned())),
        };
        if url.fragment().is_some() {
            return Err(UrlError::Fragment);
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(UrlError::NoHost),
        };
        let default_port = if tls { 443 } else { 80 };
        let port = url.port().unwrap_or(default_port);
        let bracketed = match url.host() {
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            _ => host.clone(),
        };
        let host_header = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        let mut resource = url.path().to_owned();
        if resource.is_empty() {
            resource.push('/');
        }
        if let Some(q) = url.query() {
            resource.push('?');
            resource.push_str(q);
        }
        Ok(Target {
            tls,
            host,
            port,
            resource,
            host_header,
        })
    }
}

/// A URL that cannot be used for a WebSocket connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("invalid URL: {0}")]
    Invalid(String),
    /// A scheme other than ws, wss, http or https.
    #[error("unsupported URL scheme {0:?} (use ws:// or wss://)")]
    Scheme(String),
    /// WebSocket URLs may not have a fragment.
    #[error("WebSocket URLs may not contain a fragment (#...)")]
    Fragment,
    /// No host in the URL.
    #[error("URL has no host")]
    NoHost,
}

/// Builds the client's request; see [`ClientHandshake::builder`].
#[derive(Clone, Debug)]
pub struct ClientHandshakeBuilder {
    target: Target,
    origin: Option<String>,
    protocols: Vec<String>,
    headers: Headers,
    deflate: Option<DeflateConfig>,
    max_head_size: usize,
}

impl ClientHandshakeBuilder {
    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Adds a subprotocol to offer (in order of preference).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Adds an extra header to the request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Offers permessage-deflate with this configuration (`None`: no compression).
    pub fn deflate(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.deflate = deflate;
        self
    }

    /// Largest response head accepted (default 16 KiB).
    pub fn max_head_size(mut self, limit: usize) -> Self {
        self.max_head_size = limit;
        self
    }

    /// The target this request is for.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Produces the handshake state and the request bytes to send.
    pub fn build(self) -> Result<(ClientHandshake, Vec<u8>), RequestBuildError> {
        for p in &self.protocols {
            if !is_token(p) {
                return Err(RequestBuildError::InvalidProtocol(p.clone()));
            }
        }
        for (name, value) in self.headers.iter() {
            if !is_safe_field(name, value) {
                return Err(RequestBuildError::InvalidHeader(name.to_owned()));
            }
        }
        if let Some(o) = &self.origin {
            if !is_safe_field("Origin", o.as_bytes()) {
                return Err(RequestBuildError::InvalidHeader("Origin".into()));
            }
        }
        let key = generate_key();
        let mut req = Vec::with_capacity(256);
        req.extend_from_slice(b"GET ");
        req.extend_from_slice(self.target.resource.as_bytes());
        req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        req.extend_from_slice(self.target.host_header.as_bytes());
        req.extend_from_slice(
            b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        );
        req.extend_from_slice(key.as_bytes());
        req.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n");
        if let Some(o) = &self.origin {
            req.extend_from_slice(b"Origin: ");
            req.extend_from_slice(o.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        if !self.protocols.is_empty() {
            req.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            req.extend_from_slice(self.protocols.join(", ").as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        if let Some(d) = &self.deflate {
            req.extend_from_slice(b"Sec-WebSocket-Extensions: ");
            req.extend_from_slice(deflate::client_offer(d).as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        self.headers.write_to(&mut req);
        req.extend_from_slice(b"\r\n");
        Ok((
            ClientHandshake {
                expected_accept: accept_key(key.as_bytes()),
                key,
                protocols: self.protocols,
                deflate: self.deflate,
                max_head_size: self.max_head_size,
            },
            req,
        ))
    }
}

/// The request cannot be built from what was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestBuildError {
    /// A subprotocol name that is not an HTTP token.
    #[error("subprotocol {0:?} is not a valid token")]
    InvalidProtocol(String),
    /// A header name that is not a token, or a value with CR, LF or NUL.
    #[error("header {0:?} has an invalid name or value")]
    InvalidHeader(String),
}

/// The client's handshake in progress (the CONNECTING state): validates the response.
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    key: String,
    expected_accept: String,
    protocols: Vec<String>,
    deflate: Option<DeflateConfig>,
    max_head_size: usize,
}

/// A parsed HTTP response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields.
    pub headers: Headers,
}

impl Response {
    /// The `Content-Length` of the body, when present and valid.
    pub fn content_length(&self) -> Option<usize> {
        self.headers.get("content-length")?.trim().parse().ok()
    }
}

/// What the handshake agreed on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The selected subprotocol, if any.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters, if compression was agreed.
    pub deflate: Option<DeflateParams>,
}

/// A response that completes no handshake. The server's answer is kept for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Bytes that are not an HTTP/1.1 response.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The response head is larger than the configured limit.
    #[error("response head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The server answered with a status other than 101.
    #[error("server answered HTTP {} {}", .0.status, .0.reason)]
    Status(Box<Response>),
    /// `Upgrade: websocket` missing.
    #[error("response lacks `Upgrade: websocket`")]
    Upgrade,
    /// `Connection: upgrade` missing.
    #[error("response lacks `Connection: upgrade`")]
    Connection,
    /// `Sec-WebSocket-Accept` missing or wrong.
    #[error("response has a missing or wrong Sec-WebSocket-Accept")]
    Accept,
    /// A subprotocol we did not offer, or several.
    #[error("server selected subprotocol {0:?}, which was not offered")]
    Protocol(String),
    /// An extension response we cannot accept.
    #[error("invalid extension response: {0}")]
    Extension(#[from] NegotiationError),
}

impl ClientHandshake {
    /// Starts building a handshake for `url`.
    pub fn builder(url: &str) -> Result<ClientHandshakeBuilder, UrlError> {
        Ok(ClientHandshakeBuilder {
            target: Target::parse(url)?,
            origin: None,
            protocols: Vec::new(),
            headers: Headers::new(),
            deflate: None,
            max_head_size: 16 * 1024,
        })
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Parses the response head from `buf`.
    ///
    /// Returns `Ok(None)` until the whole head has arrived, then the response and the head's
    /// length (bytes after it belong to the WebSocket stream, or to the body of an error
    /// response). The response is not validated yet: see [`ClientHandshake::finish`].
    pub fn parse_response(&self, buf: &[u8]) -> Result<Option<(Response, usize)>, ResponseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(status) if head_over_limit(status, buf, self.max_head_size) => {
                Err(ResponseError::HeadTooLarge(self.max_head_size))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Ok(httparse::Status::Complete(n)) => {
                if resp.version != Some(1) {
                    return Err(ResponseError::Malformed("not an HTTP/1.1 response".into()));
                }
                Ok(Some((
                    Response {
                        status: resp.code.unwrap_or(0),
                        reason: resp.reason.unwrap_or("").to_owned(),
                        headers: Headers::from_httparse(resp.headers),
                    },
                    n,
                )))
            }
            Err(e) => Err(ResponseError::Malformed(e.to_string())),
        }
    }

    /// Validates a complete response and returns what was agreed.
    pub fn finish(&self, response: Response) -> Result<Negotiated, ResponseError> {
        if response.status != 101 {
            return Err(ResponseError::Status(Box::new(response)));
        }
        let h = &response.headers;
        if !h.get_all("upgrade").any(|v| has_token(v, "websocket")) {
            return Err(ResponseError::Upgrade);
        }
        if !h.get_all("connection").any(|v| has_token(v, "upgrade")) {
            return Err(ResponseError::Connection);
        }
        if h.count("sec-websocket-accept") != 1
            || h.get("sec-websocket-accept").map(str::trim) != Some(&self.expected_accept)
        {
            return Err(ResponseError::Accept);
        }
        let protocol = match h.count("sec-websocket-protocol") {
            0 => None,
            1 => {
                let p = h.get("sec-websocket-protocol").unwrap_or("").trim();
                if !self.protocols.iter().any(|o| o == p) {
                    return Err(ResponseError::Protocol(p.to_owned()));
                }
                Some(p.to_owned())
            }
            _ => {
                let all: Vec<&str> = h.get_all("sec-websocket-protocol").collect();
                return Err(ResponseError::Protocol(all.join(", ")));
            }
        };
        let ext: Vec<&str> = h.get_all("sec-websocket-extensions").collect();
        let deflate = match &self.deflate {
            Some(cfg) => deflate::client_accept(cfg, &ext)?,
            None if ext.iter().all(|v| v.trim().is_empty()) => None,
            None => return Err(NegotiationError::NotOffered(ext.join(", ")).into()),
        };
        Ok(Negotiated { protocol, deflate })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header, self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("ws://example.com/").unwrap();
        assert_eq!(
            (t.port, t.host_header.as_str(), t.resource.as_str()),
            (80, "example.com", "/")
        );
        let t = Target::parse("wss://example.com").unwrap();
        assert_eq!((t.tls, t.port, t.resource.as_str()), (true, 443, "/"));
        let t = Target::parse("wss://example.com:443/a").unwrap();
        assert_eq!(t.host_header, "example.com");
        let t = Target::parse("ws://example.com:9001/p/q?x=1&y=2").unwrap();
        assert_eq!(t.host_header, "example.com:9001");
        assert_eq!(t.resource, "/p/q?x=1&y=2");
        let t = Target::parse("ws://[::1]:9001/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.host_header.as_str()),
            ("::1", "[::1]:9001")
        );
        let t = Target::parse("ws://[::1]/").unwrap();
        assert_eq!(t.host_header, "[::1]");
        assert_eq!(Target::parse("ws://a/#x"), Err(UrlError::Fragment));
        assert!(matches!(
            Target::parse("ftp://a/"),
            Err(UrlError::Scheme(_))
        ));
        assert!(Target::parse("not a url").is_err());
    }

    fn request_of(b: ClientHandshakeBuilder) -> (ClientHandshake, String) {
        let (hs, req) = b.build().unwrap();
        (hs, String::from_utf8(req).unwrap())
    }

    #[test]
    fn request_lines() {
        let (hs, req) = request_of(
            ClientHandshake::builder("ws://[::1]:9001/chat?x=1")
                .unwrap()
                .origin("http://example.com")
                .protocol("a")
                .protocol("b")
                .header("X-Test", "1"),
        );
        assert!(req.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: [::1]:9001\r\n"));
        assert!(req.contains("\r\nUpgrade: websocket\r\n"));
        assert!(req.contains("\r\nConnection: Upgrade\r\n"));
        assert!(req.contains(&format!("\r\nSec-WebSocket-Key: {}\r\n", hs.key())));
        assert!(req.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(req.contains("\r\nOrigin: http://example.com\r\n"));
        assert!(req.contains("\r\nSec-WebSocket-Protocol: a, b\r\n"));
        assert!(req.contains("\r\nX-Test: 1\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
    }

    #[test]
    fn header_injection_refused() {
        let b = ClientHandshake::builder("ws://a/")
            .unwrap()
            .header("X", "a\r\nEvil: 1");
        assert!(matches!(
            b.build(),
            Err(RequestBuildError::InvalidHeader(_))
        ));
        let b = ClientHandshake::builder("ws://a/").unwrap().protocol("a b");
        assert!(matches!(
            b.build(),
            Err(RequestBuildError::InvalidProtocol(_))
        ));
    }

    fn respond(hs: &ClientHandshake, extra: &str) -> Result<Negotiated, ResponseError> {
        let text = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
            accept_key(hs.key().as_bytes())
        );
        let (resp, n) = hs.parse_response(text.as_bytes())?.unwrap();
        assert_eq!(n, text.len());
        hs.finish(resp)
    }

    #[test]
    fn response_validation() {
        let (hs, _) = ClientHandshake::builder("ws://a/")
            .unwrap()
            .protocol("chat")
            .build()
            .unwrap();
        assert_eq!(respond(&hs, "").unwrap(), Negotiated::default());
        assert_eq!(
            respond(&hs, "Sec-WebSocket-Protocol: chat\r\n")
                .unwrap()
                .protocol
                .as_deref(),
            Some("chat")
        );
        assert!(matches!(
            respond(&hs, "Sec-WebSocket-Protocol: other\r\n"),
            Err(ResponseError::Protocol(_))
        ));
        assert!(matches!(
            respond(&hs, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            Err(ResponseError::Extension(_))
        ));
        // Wrong accept.
        let bad = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
        let (resp, _) = hs.parse_response(bad.as_bytes()).unwrap().unwrap();
        assert_eq!(hs.finish(resp), Err(ResponseError::Accept));
        // Missing upgrade.
        let bad = format!(
            "HTTP/1.1 101 OK\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(hs.key().as_bytes())
        );
        let (resp, _) = hs.parse_response(bad.as_bytes()).unwrap().unwrap();
        assert_eq!(hs.finish(resp), Err(ResponseError::Upgrade));
    }

    #[test]
    fn non_101_keeps_status_and_headers() {
        let (hs, _) = ClientHandshake::builder("ws://a/")
            .unwrap()
            .build()
            .unwrap();
        let text = "HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope";
        let (resp, n) = hs.parse_response(text.as_bytes()).unwrap().unwrap();
        assert_eq!(&text[n..], "nope");
        assert_eq!(resp.content_length(), Some(4));
        match hs.finish(resp) {
            Err(ResponseError::Status(r)) => assert_eq!(r.status, 403),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn partial_and_oversized_heads() {
        let (hs, _) = ClientHandshake::builder("ws://a/")
            .unwrap()
            .max_head_size(64)
            .build()
            .unwrap();
        assert_eq!(hs.parse_response(b"HTTP/1.1 101 Swi"), Ok(None));
        let big = format!("HTTP/1.1 101 OK\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            hs.parse_response(big.as_bytes()),
            Err(ResponseError::HeadTooLarge(64))
        );
        // Leading empty lines do not end the head early (the parser skips them).
        let mut endless = b"\r\n\r\nHTTP/1.1 101 OK\r\nX: ".to_vec();
        endless.resize(64, b'a');
        assert_eq!(hs.parse_response(&endless), Ok(None));
        endless.push(b'a');
        assert_eq!(
            hs.parse_response(&endless),
            Err(ResponseError::HeadTooLarge(64))
        );
        assert!(matches!(
            hs.parse_response(b"garbage\r\n\r\n"),
            Err(ResponseError::Malformed(_))
        ));
    }
}
