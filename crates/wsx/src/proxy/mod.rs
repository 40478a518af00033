//! Client proxies: HTTP `CONNECT` and SOCKS5 tunnels, and the `*_proxy` environment
//! variables. The user-facing description is on [`Proxy`]; choosing a proxy is in
//! `select.rs`, tunnelling in `tunnel.rs`.

mod error;
mod select;
mod tunnel;

pub use error::ProxyError;
pub(crate) use select::proxy_for_target;

use std::fmt;

/// Which protocol a [`Proxy`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyKind {
    /// HTTP `CONNECT` (`http://`).
    Http,
    /// SOCKS5 with the target's name resolved by the client (`socks5://`).
    Socks5,
    /// SOCKS5 with the target's name resolved by the proxy (`socks5h://`).
    Socks5h,
}

impl ProxyKind {
    /// The URL scheme: `http`, `socks5` or `socks5h`.
    pub fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }

    /// The port used when the URL has none: 80 for HTTP, 1080 for SOCKS5.
    pub fn default_port(self) -> u16 {
        match self {
            ProxyKind::Http => 80,
            ProxyKind::Socks5 | ProxyKind::Socks5h => 1080,
        }
    }
}

/// A proxy to tunnel client connections through.
///
/// A [`Proxy`] is parsed from a URL:
///
/// | URL | protocol |
/// |---|---|
/// | `http://[user:pass@]host[:port]` | HTTP `CONNECT` (RFC 9110 §9.3.6), port 80 by default; credentials are sent as `Proxy-Authorization: Basic` |
/// | `socks5://[user:pass@]host[:port]` | SOCKS5 (RFC 1928), port 1080 by default; the *client* resolves the target's name and sends the proxy its first IP address |
/// | `socks5h://[user:pass@]host[:port]` | SOCKS5; the *proxy* resolves the target's name |
///
/// A URL without a scheme (`proxy.example:3128`) is taken as `http://`, as curl does. User
/// name and password are percent-decoded (`p%40ss` is `p@ss`); SOCKS5 uses them for
/// user/password authentication (RFC 1929). IPv6 literals go in brackets
/// (`http://[::1]:3128`). `https://` proxies (TLS between the client and the proxy) and
/// SOCKS4 are **not supported**: parsing them fails with [`ProxyError::Unsupported`].
///
/// The tunnel is set up right after the TCP connection to the proxy and before anything
/// else: for `wss://` the TLS handshake with the target (SNI = the target's host name) runs
/// inside the tunnel, so the proxy sees only the target's host and port. Everything read
/// from the proxy is bounded: the `CONNECT` response head to 16 KiB, the
/// body of a refusal to a 1 KiB excerpt, SOCKS5 replies by their format. The client runs the
/// whole exchange under its connect timeout. Bytes the proxy sends after its response are
/// never read ahead: they stay in the socket and belong to the tunnel.
///
/// [`Proxy::from_env`] picks the proxy from the environment the way curl does; see there.
///
/// `Display` shows the URL without the password; `Debug` redacts it too.
///
/// ```
/// let p: wsx::Proxy = "socks5h://alice:s%3Acret@[::1]".parse().unwrap();
/// assert_eq!(p.kind(), wsx::ProxyKind::Socks5h);
/// assert_eq!((p.host(), p.port()), ("::1", 1080));
/// assert_eq!(p.username(), Some("alice"));
/// assert_eq!(p.to_string(), "socks5h://alice@[::1]:1080");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    /// Host name or IP literal, without brackets.
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    pass: String,
}

fn printable(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(40)];
    let mut s = shown.escape_ascii().to_string();
    if bytes.len() > shown.len() {
        s.push_str("...");
    }
    s
}

impl Proxy {
    /// A proxy of this kind at `host:port` (an IPv6 literal may be given with or without
    /// brackets), without credentials.
    pub fn new(kind: ProxyKind, host: impl Into<String>, port: u16) -> Proxy {
        let host = host.into();
        let host = strip_brackets(&host).to_owned();
        Proxy {
            kind,
            host,
            port,
            credentials: None,
        }
    }

    /// Sets the user name and password (HTTP Basic or SOCKS5 user/password authentication).
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Proxy {
        self.credentials = Some(Credentials {
            user: user.into(),
            pass: password.into(),
        });
        self
    }

    /// The protocol.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host name or IP literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name, when credentials are set.
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.user.as_str())
    }

    fn check_credentials(&self) -> Result<(), ProxyError> {
        if let (Some(c), ProxyKind::Socks5 | ProxyKind::Socks5h) = (&self.credentials, self.kind) {
            if c.user.is_empty() || c.user.len() > 255 || c.pass.len() > 255 {
                return Err(ProxyError::Unsupported(
                    "SOCKS5 user names must be 1 to 255 bytes and passwords at most 255 bytes"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.kind.scheme())?;
        if let Some(c) = &self.credentials {
            let user = percent_encoding::utf8_percent_encode(&c.user, USERINFO);
            write!(f, "{user}@")?;
        }
        write!(f, "{}", authority(&self.host, self.port))
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username())
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Characters escaped in the user name when a proxy is displayed.
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'@')
    .add(b':')
    .add(b'/')
    .add(b'%');

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether `host` can go into a request line and a SOCKS5 request as it is.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:%~!$&'()*+,;=".contains(&b))
}

/// `host:port`, with brackets around IPv6 literals.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
