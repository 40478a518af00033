//! [`ProxyError`]: why a proxy could not be used.

use bytes::Bytes;
use std::io;
use std::time::Duration;

/// Why a proxy could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL cannot be parsed or has an unknown scheme.
    #[error("invalid proxy URL: {0}")]
    InvalidUrl(String),
    /// A valid setting this implementation does not support (`https://` and SOCKS4
    /// proxies, SOCKS5 names or credentials over 255 bytes).
    #[error("{0}")]
    Unsupported(String),
    /// The proxy's host name cannot be resolved.
    #[error("cannot resolve the proxy's host name: {0}")]
    Resolve(#[source] io::Error),
    /// The TCP connection to the proxy failed.
    #[error("cannot connect to the proxy: {0}")]
    Unreachable(#[source] io::Error),
    /// `socks5://` resolves the target locally, and that failed.
    #[error("cannot resolve {host} (socks5:// resolves names locally, socks5h:// lets the proxy do it): {source}")]
    ResolveTarget {
        /// The target host.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The HTTP proxy answered the `CONNECT` with a status other than 2xx (and other than
    /// 407, see [`ProxyError::AuthRequired`] and [`ProxyError::AuthFailed`]).
    #[error("the proxy refused the tunnel with HTTP {status} {reason}{}", excerpt(.body))]
    Http {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// The start of the body, at most 1 KiB.
        body: Bytes,
    },
    /// The proxy requires authentication and the proxy URL has no credentials (HTTP 407,
    /// or a SOCKS5 proxy that accepts no unauthenticated clients).
    #[error("the proxy requires authentication; give credentials in the proxy URL (scheme://user:password@host:port)")]
    AuthRequired,
    /// The proxy rejected the credentials (HTTP 407 despite them, or a failed RFC 1929
    /// user/password exchange).
    #[error("the proxy rejected the credentials")]
    AuthFailed,
    /// The SOCKS5 proxy accepts none of the authentication methods offered (no
    /// authentication, and user/password when credentials are given).
    #[error("the SOCKS5 proxy accepts none of the offered authentication methods")]
    NoAcceptableAuth,
    /// The SOCKS5 proxy answered the `CONNECT` command with a failure reply code.
    #[error("the SOCKS5 proxy reported: {} (reply code {code})", socks5_reply_text(*.code))]
    Socks {
        /// The reply code (RFC 1928 §6), 1 to 255.
        code: u8,
    },
    /// The proxy's answer does not follow the protocol.
    #[error("the proxy sent a malformed reply: {0}")]
    Malformed(String),
    /// The HTTP proxy's response head is longer than 16 KiB.
    #[error("the proxy's response head exceeds {0} bytes")]
    HeadTooLarge(usize),
    /// The proxy closed the connection before the tunnel was set up.
    #[error("the proxy closed the connection before the tunnel was set up")]
    Closed,
    /// Reading from or writing to the proxy failed.
    #[error("I/O error talking to the proxy: {0}")]
    Io(#[source] io::Error),
    /// The connection to the proxy and the tunnel were not set up within the connect
    /// timeout.
    #[error("no tunnel within {0:?} (the proxy did not answer in time)")]
    Timeout(Duration),
}

/// What a SOCKS5 reply code means (RFC 1928 §6).
pub(crate) fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        0 => "succeeded",
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused by the target",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned reply code",
    }
}

fn excerpt(body: &Bytes) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks5_reply_texts() {
        assert_eq!(socks5_reply_text(1), "general SOCKS server failure");
        assert_eq!(socks5_reply_text(2), "connection not allowed by ruleset");
        assert_eq!(socks5_reply_text(3), "network unreachable");
        assert_eq!(socks5_reply_text(4), "host unreachable");
        assert_eq!(socks5_reply_text(5), "connection refused by the target");
        assert_eq!(socks5_reply_text(6), "TTL expired");
        assert_eq!(socks5_reply_text(7), "command not supported");
        assert_eq!(socks5_reply_text(8), "address type not supported");
        assert_eq!(socks5_reply_text(9), "unassigned reply code");
        let e = ProxyError::Socks { code: 5 }.to_string();
        assert_eq!(
            e,
            "the SOCKS5 proxy reported: connection refused by the target (reply code 5)"
        );
    }
}
