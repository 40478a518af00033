//! The opening handshake (RFC 6455 §4): an HTTP/1.1 Upgrade exchange.
//!
//! - [`client`]: build a request from a `ws://` / `wss://` URL and validate the response.
//! - [`server`]: parse and validate a request, and build the `101` (or error) response.
//!
//! Both sides are sans-I/O: they take bytes that the caller has read, and return bytes for
//! the caller to write.

pub mod client;
mod headers;
#[cfg(feature = "http")]
mod http;
pub mod server;

pub use headers::Headers;

use base64::Engine;
use sha1::{Digest, Sha1};

/// The GUID that RFC 6455 appends to the key before hashing.
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Maximum number of header lines accepted in a request or response head.
pub const MAX_HEADERS: usize = 96;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 bytes from the operating system's random source, base64.
pub fn generate_key() -> String {
    let mut raw = [0u8; 16];
    // OS randomness failing is not recoverable in any meaningful way; fall back to the
    // thread-local CSPRNG (itself seeded from the OS) rather than panic.
    if getrandom::fill(&mut raw).is_err() {
        raw = rand::random();
    }
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub(crate) fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether `s` is an HTTP token (RFC 7230 §3.2.6): what header names, subprotocol names
/// and extension parameters must be.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a head parse went past the configured size limit: the head httparse completed
/// is longer than `limit`, or it is still incomplete although `buf` already holds more than
/// `limit` bytes. Judged from httparse's own answer, not from a search for `\r\n\r\n`:
/// httparse skips empty lines before the start line, so a blank-line search could see a
/// "head" end that httparse does not, and leave the buffer to grow without bound.
pub(crate) fn head_over_limit(parsed: httparse::Status<usize>, buf: &[u8], limit: usize) -> bool {
    match parsed {
        httparse::Status::Complete(n) => n > limit,
        httparse::Status::Partial => buf.len() > limit,
    }
}

/// Name of the HTTP status code, for status lines.
pub fn status_reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn keys_are_fresh_16_bytes() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(raw.len(), 16);
    }

    #[test]
    fn tokens() {
        assert!(has_token("keep-alive, Upgrade", "upgrade"));
        assert!(!has_token("keep-alive, upgraded", "upgrade"));
        assert!(is_token("chat.v2"));
        assert!(!is_token("a b"));
        assert!(!is_token(""));
    }
}
