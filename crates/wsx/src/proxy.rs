//! Client proxies: HTTP `CONNECT` and SOCKS5 tunnels, and the `*_proxy` environment
//! variables.
//!
//! A [`Proxy`] is parsed from a URL:
//!
//! | URL | protocol |
//! |---|---|
//! | `http://[user:pass@]host[:port]` | HTTP `CONNECT` (RFC 9110 §9.3.6), port 80 by default; credentials are sent as `Proxy-Authorization: Basic` |
//! | `socks5://[user:pass@]host[:port]` | SOCKS5 (RFC 1928), port 1080 by default; the *client* resolves the target's name and sends the proxy its first IP address |
//! | `socks5h://[user:pass@]host[:port]` | SOCKS5; the *proxy* resolves the target's name |
//!
//! A URL without a scheme (`proxy.example:3128`) is taken as `http://`, as curl does. User
//! name and password are percent-decoded (`p%40ss` is `p@ss`); SOCKS5 uses them for
//! user/password authentication (RFC 1929). IPv6 literals go in brackets
//! (`http://[::1]:3128`). `https://` proxies (TLS between the client and the proxy) and
//! SOCKS4 are **not supported**: parsing them fails with [`ProxyError::Unsupported`].
//!
//! The tunnel is set up right after the TCP connection to the proxy and before anything
//! else: for `wss://` the TLS handshake with the target (SNI = the target's host name) runs
//! inside the tunnel, so the proxy sees only the target's host and port. Everything read
//! from the proxy is bounded: the `CONNECT` response head to [`MAX_HEAD_SIZE`] bytes, the
//! body of a refusal to a 1 KiB excerpt, SOCKS5 replies by their format. The client runs the
//! whole exchange under its connect timeout. Bytes the proxy sends after its response are
//! never read ahead: they stay in the socket and belong to the tunnel.
//!
//! [`Proxy::from_env`] picks the proxy from the environment the way curl does; see there.

use base64::Engine;
use bytes::Bytes;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx_proto::handshake::client::Target;

/// Largest `CONNECT` response head accepted from an HTTP proxy (16 KiB).
pub const MAX_HEAD_SIZE: usize = 16 * 1024;

/// Largest part of a refusal's body kept in [`ProxyError::Http`].
pub const MAX_BODY_EXCERPT: usize = 1024;

/// How long the body of a refusal is waited for (it is only an excerpt for the message).
const BODY_WAIT: Duration = Duration::from_millis(500);

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

/// A proxy to tunnel client connections through (see the [module docs](self)).
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
        /// The start of the body, at most [`MAX_BODY_EXCERPT`] bytes.
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
    /// The HTTP proxy's response head is longer than [`MAX_HEAD_SIZE`].
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
pub fn socks5_reply_text(code: u8) -> &'static str {
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

fn printable(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(40)];
    let mut s = shown.escape_ascii().to_string();
    if bytes.len() > shown.len() {
        s.push_str("...");
    }
    s
}

impl Proxy {
    /// Parses a proxy URL (see the [module docs](self) for the accepted forms).
    pub fn parse(url: &str) -> Result<Proxy, ProxyError> {
        let url = url.trim();
        let with_scheme;
        let url = if url.contains("://") {
            url
        } else {
            with_scheme = format!("http://{url}");
            &with_scheme
        };
        let parsed = url::Url::parse(url).map_err(|e| ProxyError::InvalidUrl(e.to_string()))?;
        let kind = match parsed.scheme() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            "https" => {
                return Err(ProxyError::Unsupported(
                    "https:// proxies (TLS to the proxy) are not supported; use an http:// or \
                     socks5:// proxy (wss:// connections stay encrypted end to end through it)"
                        .into(),
                ))
            }
            s @ ("socks4" | "socks4a" | "socks") => {
                return Err(ProxyError::Unsupported(format!(
                    "{s}:// proxies are not supported; use socks5:// or socks5h://"
                )))
            }
            other => {
                return Err(ProxyError::InvalidUrl(format!(
                    "unsupported scheme {other:?} (use http://, socks5:// or socks5h://)"
                )))
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(ProxyError::InvalidUrl("no host".into())),
        };
        if !valid_host(&host) {
            return Err(ProxyError::InvalidUrl(format!(
                "invalid host {:?}",
                printable(host.as_bytes())
            )));
        }
        let port = match parsed.port() {
            Some(0) => return Err(ProxyError::InvalidUrl("port 0".into())),
            Some(p) => p,
            None => kind.default_port(),
        };
        let mut proxy = Proxy {
            kind,
            host,
            port,
            credentials: None,
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| {
                        ProxyError::InvalidUrl(
                            "user name or password is not UTF-8 once percent-decoded".into(),
                        )
                    })
            };
            let user = decode(parsed.username())?;
            let pass = decode(parsed.password().unwrap_or(""))?;
            proxy = proxy.credentials(user, pass);
            proxy.check_credentials()?;
        }
        Ok(proxy)
    }

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

    /// The proxy to use for `target_url` according to the environment, the way curl reads
    /// it; `Ok(None)` means a direct connection.
    ///
    /// - `wss://` URLs use `https_proxy`, then `HTTPS_PROXY`; `ws://` URLs use `http_proxy`
    ///   (lowercase only: like curl, `HTTP_PROXY` is ignored, since CGI programs get it from
    ///   a request's `Proxy:` header); then both fall back to `all_proxy`, then `ALL_PROXY`.
    ///   Empty values count as unset.
    /// - `no_proxy` (or `NO_PROXY`) lists hosts to reach directly, separated by commas:
    ///   `*` (everything), host names that also match their subdomains (`example.com` and
    ///   `.example.com` both match `example.com` and `ws.example.com`), IP addresses, CIDR
    ///   blocks (`10.0.0.0/8`, `fd00::/8`), each optionally with `:port` (`[::1]:8080` for
    ///   IPv6). Names are compared without case and without a trailing dot.
    /// - Unlike curl (and like Go's `net/http`), loopback targets — `localhost`,
    ///   `*.localhost`, `127.0.0.0/8`, `::1` — are always reached directly: a proxy could
    ///   not reach them anyway. [`ClientBuilder::proxy`](crate::ClientBuilder::proxy) still
    ///   sends them through an explicit proxy.
    ///
    /// A proxy variable that does not parse is an error ([`crate::Error::Proxy`] naming the
    /// variable), not a silent direct connection; a bad `target_url` is [`crate::Error::Url`].
    pub fn from_env(target_url: &str) -> crate::Result<Option<Proxy>> {
        Proxy::from_env_with(target_url, |name| std::env::var(name).ok())
    }

    /// [`Proxy::from_env`] with the variables read through `lookup` (for tests, or for
    /// settings that come from elsewhere).
    ///
    /// ```
    /// let env = |name: &str| match name {
    ///     "https_proxy" => Some("http://proxy.corp:3128".to_string()),
    ///     "no_proxy" => Some("internal.corp,10.0.0.0/8".to_string()),
    ///     _ => None,
    /// };
    /// let p = wsx::Proxy::from_env_with("wss://example.com/", env).unwrap().unwrap();
    /// assert_eq!(p.to_string(), "http://proxy.corp:3128");
    /// assert!(wsx::Proxy::from_env_with("wss://ws.internal.corp/", env).unwrap().is_none());
    /// assert!(wsx::Proxy::from_env_with("ws://example.com/", env).unwrap().is_none());
    /// ```
    pub fn from_env_with(
        target_url: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> crate::Result<Option<Proxy>> {
        let target = Target::parse(target_url)?;
        proxy_for_target(&target, &lookup)
    }

    /// Connects to the proxy and asks it for a tunnel to `host:port` (an IPv6 literal with
    /// or without brackets). On success the stream is the tunnel: what is written goes to
    /// the target, nothing of it has been read yet.
    ///
    /// There is no timeout here: wrap the call in `tokio::time::timeout` (the client does,
    /// with its connect timeout), or a proxy that never answers keeps it waiting.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
        let host = strip_brackets(host);
        if !valid_host(host) {
            return Err(ProxyError::Unsupported(format!(
                "invalid target host {:?}",
                printable(host.as_bytes())
            )));
        }
        self.check_credentials()?;
        let mut tcp = self.connect_to_proxy().await?;
        let _ = tcp.set_nodelay(true);
        match self.kind {
            ProxyKind::Http => {
                http_connect(&mut tcp, host, port, self.credentials.as_ref()).await?
            }
            ProxyKind::Socks5 | ProxyKind::Socks5h => {
                let addr = match host.parse::<IpAddr>() {
                    Ok(ip) => SocksAddr::Ip(ip),
                    Err(_) if self.kind == ProxyKind::Socks5h => SocksAddr::Domain(host.into()),
                    Err(_) => SocksAddr::Ip(resolve_target(host, port).await?),
                };
                socks5_connect(&mut tcp, &addr, port, self.credentials.as_ref()).await?
            }
        }
        Ok(tcp)
    }

    /// [`Proxy::connect`] bounded by `timeout`, with errors as [`crate::Error::Proxy`].
    pub(crate) async fn tunnel(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> crate::Result<TcpStream> {
        tracing::debug!(proxy = %self, %host, port, "connecting through proxy");
        let error = match tokio::time::timeout(timeout, self.connect(host, port)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => e,
            Err(_) => ProxyError::Timeout(timeout),
        };
        Err(crate::Error::Proxy {
            proxy: self.to_string(),
            error: Box::new(error),
        })
    }

    async fn connect_to_proxy(&self) -> Result<TcpStream, ProxyError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(ProxyError::Resolve)?
            .collect();
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(ProxyError::Unreachable(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "no addresses found")
        })))
    }
}

impl FromStr for Proxy {
    type Err = ProxyError;

    fn from_str(s: &str) -> Result<Proxy, ProxyError> {
        Proxy::parse(s)
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

// ---------------------------------------------------------------------------------------
// Environment

/// The proxy the environment asks for when connecting to `target`.
pub(crate) fn proxy_for_target(
    target: &Target,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> crate::Result<Option<Proxy>> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    if is_loopback(&target.host) {
        return Ok(None);
    }
    if let Some(list) = get("no_proxy").or_else(|| get("NO_PROXY")) {
        if no_proxy_matches(&list, &target.host, target.port) {
            return Ok(None);
        }
    }
    let names: &[&str] = if target.tls {
        &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        &["http_proxy", "all_proxy", "ALL_PROXY"]
    };
    for name in names {
        if let Some(value) = get(name) {
            return Proxy::parse(&value)
                .map(Some)
                .map_err(|error| crate::Error::Proxy {
                    proxy: format!("from ${name}"),
                    error: Box::new(error),
                });
        }
    }
    Ok(None)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    strip_brackets(&host)
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a `no_proxy` list exempts `host` (without brackets) on `port`.
pub(crate) fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = strip_brackets(host)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let host_ip = host.parse::<IpAddr>().ok();
    for entry in list.split(|c: char| c == ',' || c.is_whitespace()) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return true;
        }
        let Some((pattern, entry_port)) = split_entry_port(entry) else {
            continue; // malformed entry: ignored, like curl does
        };
        if entry_port.is_some_and(|p| p != port) {
            continue;
        }
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ip) = host_ip {
            if ip_matches(&pattern, ip) {
                return true;
            }
            continue;
        }
        let suffix = pattern
            .strip_prefix("*.")
            .or_else(|| pattern.strip_prefix('.'))
            .unwrap_or(&pattern);
        if suffix.is_empty() {
            continue;
        }
        if host == suffix
            || (host.len() > suffix.len()
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.')
        {
            return true;
        }
    }
    false
}

/// Splits `host[:port]`, `[v6][:port]`, `v6` (several colons, no port) and CIDR forms.
/// `None` for an entry with an unparsable port.
fn split_entry_port(entry: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let end = rest.find(']')?;
        let (inner, after) = (&rest[..end], &rest[end + 1..]);
        if after.is_empty() {
            return Some((inner, None));
        }
        if after.starts_with('/') {
            // "[fd00::]/8": hand the CIDR on without brackets.
            return Some((&entry[1..], None));
        }
        let port = after.strip_prefix(':')?.parse().ok()?;
        return Some((inner, Some(port)));
    }
    match entry.matches(':').count() {
        1 => {
            let (h, p) = entry.rsplit_once(':')?;
            Some((h, Some(p.parse().ok()?)))
        }
        _ => Some((entry, None)),
    }
}

/// Whether `pattern` (an IP address or CIDR block; `[v6]/n` has its `[` removed already)
/// covers `ip`.
fn ip_matches(pattern: &str, ip: IpAddr) -> bool {
    let (addr, prefix) = match pattern.split_once('/') {
        Some((a, p)) => match p.parse::<u8>() {
            Ok(p) => (a.trim_end_matches(']'), Some(p)),
            Err(_) => return false,
        },
        None => (pattern, None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (net, ip, prefix) {
        (_, _, None) => net == ip,
        (IpAddr::V4(n), IpAddr::V4(a), Some(p)) if p <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a), Some(p)) if p <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// HTTP CONNECT

/// The `CONNECT` request for `host:port`.
fn connect_request(host: &str, port: u16, credentials: Option<&Credentials>) -> String {
    let authority = authority(host, port);
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(c) = credentials {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.pass));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    req
}

async fn http_connect(
    tcp: &mut TcpStream,
    host: &str,
    port: u16,
    credentials: Option<&Credentials>,
) -> Result<(), ProxyError> {
    let request = connect_request(host, port, credentials);
    tcp.write_all(request.as_bytes())
        .await
        .map_err(ProxyError::Io)?;
    tcp.flush().await.map_err(ProxyError::Io)?;
    let head = read_head(tcp).await?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ProxyError::Malformed("incomplete response head".into()))
        }
        Err(e) => {
            return Err(ProxyError::Malformed(format!(
                "{e} in the response {:?}",
                printable(&head)
            )))
        }
    }
    let status = response.code.unwrap_or(0);
    if (200..300).contains(&status) {
        // Any Content-Length or Transfer-Encoding of a 2xx answer to CONNECT is ignored
        // (RFC 9110 §9.3.6): what follows is the tunnel.
        return Ok(());
    }
    if status == 407 {
        return Err(if credentials.is_some() {
            ProxyError::AuthFailed
        } else {
            ProxyError::AuthRequired
        });
    }
    let reason = response.reason.unwrap_or("").to_owned();
    let content_length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let want = content_length
        .unwrap_or(MAX_BODY_EXCERPT)
        .min(MAX_BODY_EXCERPT);
    let mut body = Vec::with_capacity(want);
    let read = async {
        let mut buf = [0u8; 512];
        while body.len() < want {
            let room = (want - body.len()).min(buf.len());
            match tcp.read(&mut buf[..room]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(BODY_WAIT, read).await;
    Err(ProxyError::Http {
        status,
        reason,
        body: Bytes::from(body),
    })
}

/// Where the response head ends (just after its empty line), accepting bare `\n` line ends
/// as httparse does.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1..) {
                Some([b'\n', ..]) => return Some(i + 2),
                Some([b'\r', b'\n', ..]) => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Reads the response head and nothing after it: the socket is peeked, and only the bytes
/// up to the end of the head are consumed, so whatever follows stays for the tunnel.
async fn read_head(tcp: &mut TcpStream) -> Result<Vec<u8>, ProxyError> {
    let mut head: Vec<u8> = Vec::new();
    let mut peeked = vec![0u8; 4096];
    loop {
        let n = tcp.peek(&mut peeked).await.map_err(ProxyError::Io)?;
        if n == 0 {
            return Err(if head.is_empty() {
                ProxyError::Closed
            } else {
                ProxyError::Malformed(format!(
                    "connection closed in the middle of the response head {:?}",
                    printable(&head)
                ))
            });
        }
        let before = head.len();
        head.extend_from_slice(&peeked[..n]);
        let prefix = &head[..head.len().min(5)];
        if !b"HTTP/".starts_with(prefix) {
            return Err(ProxyError::Malformed(format!(
                "not an HTTP response: {:?}",
                printable(&head)
            )));
        }
        // The end of the head may straddle two reads: search from a little before.
        let from = before.saturating_sub(2);
        let end = head_end(&head[from..]).map(|e| from + e);
        let take = match end {
            Some(end) => end - before,
            None => n,
        };
        tcp.read_exact(&mut peeked[..take])
            .await
            .map_err(ProxyError::Io)?;
        if let Some(end) = end {
            head.truncate(end);
        }
        if head.len() > MAX_HEAD_SIZE {
            return Err(ProxyError::HeadTooLarge(MAX_HEAD_SIZE));
        }
        if end.is_some() {
            return Ok(head);
        }
    }
}

// ---------------------------------------------------------------------------------------
// SOCKS5

/// The address in a SOCKS5 `CONNECT` request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SocksAddr {
    Ip(IpAddr),
    Domain(String),
}

const SOCKS_VERSION: u8 = 5;
const METHOD_NONE: u8 = 0x00;
const METHOD_USERPASS: u8 = 0x02;
const METHOD_NO_ACCEPTABLE: u8 = 0xff;

/// The method-selection message: no authentication, plus user/password with credentials.
fn socks5_greeting(with_credentials: bool) -> Vec<u8> {
    if with_credentials {
        vec![SOCKS_VERSION, 2, METHOD_NONE, METHOD_USERPASS]
    } else {
        vec![SOCKS_VERSION, 1, METHOD_NONE]
    }
}

/// The RFC 1929 user/password request.
fn socks5_auth_request(c: &Credentials) -> Result<Vec<u8>, ProxyError> {
    let (user, pass) = (c.user.as_bytes(), c.pass.as_bytes());
    let (Ok(ulen), Ok(plen)) = (u8::try_from(user.len()), u8::try_from(pass.len())) else {
        return Err(ProxyError::Unsupported(
            "SOCKS5 user names and passwords are limited to 255 bytes".into(),
        ));
    };
    let mut msg = Vec::with_capacity(3 + user.len() + pass.len());
    msg.extend_from_slice(&[1, ulen]);
    msg.extend_from_slice(user);
    msg.push(plen);
    msg.extend_from_slice(pass);
    Ok(msg)
}

/// The `CONNECT` request for `addr:port`.
fn socks5_request(addr: &SocksAddr, port: u16) -> Result<Vec<u8>, ProxyError> {
    let mut msg = vec![SOCKS_VERSION, 1, 0];
    match addr {
        SocksAddr::Ip(IpAddr::V4(a)) => {
            msg.push(1);
            msg.extend_from_slice(&a.octets());
        }
        SocksAddr::Ip(IpAddr::V6(a)) => {
            msg.push(4);
            msg.extend_from_slice(&a.octets());
        }
        SocksAddr::Domain(d) => {
            let len = u8::try_from(d.len()).map_err(|_| {
                ProxyError::Unsupported("SOCKS5 host names are limited to 255 bytes".into())
            })?;
            msg.push(3);
            msg.push(len);
            msg.extend_from_slice(d.as_bytes());
        }
    }
    msg.extend_from_slice(&port.to_be_bytes());
    Ok(msg)
}

async fn resolve_target(host: &str, port: u16) -> Result<IpAddr, ProxyError> {
    let resolve_err = |source| ProxyError::ResolveTarget {
        host: host.to_owned(),
        source,
    };
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(resolve_err)?;
    addrs.next().map(|a| a.ip()).ok_or_else(|| {
        resolve_err(io::Error::new(
            io::ErrorKind::NotFound,
            "no addresses found",
        ))
    })
}

async fn read_exact(tcp: &mut TcpStream, buf: &mut [u8]) -> Result<(), ProxyError> {
    match tcp.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ProxyError::Closed),
        Err(e) => Err(ProxyError::Io(e)),
    }
}

async fn socks5_connect(
    tcp: &mut TcpStream,
    addr: &SocksAddr,
    port: u16,
    credentials: Option<&Credentials>,
) -> Result<(), ProxyError> {
    let request = socks5_request(addr, port)?;
    let io = ProxyError::Io;
    tcp.write_all(&socks5_greeting(credentials.is_some()))
        .await
        .map_err(io)?;
    let mut choice = [0u8; 2];
    read_exact(tcp, &mut choice).await?;
    if choice[0] != SOCKS_VERSION {
        return Err(ProxyError::Malformed(format!(
            "not a SOCKS5 answer: {:?}",
            printable(&choice)
        )));
    }
    match (choice[1], credentials) {
        (METHOD_NONE, _) => {}
        (METHOD_USERPASS, Some(c)) => {
            tcp.write_all(&socks5_auth_request(c)?).await.map_err(io)?;
            let mut status = [0u8; 2];
            read_exact(tcp, &mut status).await?;
            if status[1] != 0 {
                return Err(ProxyError::AuthFailed);
            }
        }
        (METHOD_NO_ACCEPTABLE, None) => return Err(ProxyError::AuthRequired),
        (METHOD_NO_ACCEPTABLE, Some(_)) => return Err(ProxyError::NoAcceptableAuth),
        (m, _) => {
            return Err(ProxyError::Malformed(format!(
                "the proxy chose authentication method {m:#04x}, which was not offered"
            )))
        }
    }
    tcp.write_all(&request).await.map_err(io)?;
    let mut reply = [0u8; 4];
    read_exact(tcp, &mut reply).await?;
    if reply[0] != SOCKS_VERSION {
        return Err(ProxyError::Malformed(format!(
            "not a SOCKS5 reply: {:?}",
            printable(&reply)
        )));
    }
    if reply[1] != 0 {
        return Err(ProxyError::Socks { code: reply[1] });
    }
    // The bound address: read exactly, so nothing of the tunnel is consumed.
    let rest = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            read_exact(tcp, &mut len).await?;
            usize::from(len[0]) + 2
        }
        t => {
            return Err(ProxyError::Malformed(format!(
                "unknown address type {t} in the reply"
            )))
        }
    };
    let mut bound = [0u8; 257];
    read_exact(tcp, &mut bound[..rest]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::net::TcpListener;

    fn p(s: &str) -> Proxy {
        Proxy::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_schemes_ports_and_defaults() {
        let x = p("http://proxy.example:3128");
        assert_eq!(
            (x.kind(), x.host(), x.port()),
            (ProxyKind::Http, "proxy.example", 3128)
        );
        assert_eq!(x.username(), None);
        assert_eq!(p("http://proxy.example").port(), 80);
        assert_eq!(p("http://proxy.example:80/").port(), 80);
        assert_eq!(p("socks5://h").port(), 1080);
        assert_eq!(p("socks5://h").kind(), ProxyKind::Socks5);
        assert_eq!(p("socks5h://h:9050").kind(), ProxyKind::Socks5h);
        assert_eq!(p("socks5h://h:9050").port(), 9050);
        // No scheme: http, as curl does.
        let bare = p("proxy.example:8080");
        assert_eq!((bare.kind(), bare.port()), (ProxyKind::Http, 8080));
        assert_eq!(p("  HTTP://Proxy.Example  ").host(), "proxy.example");
        assert_eq!(p("SOCKS5://Proxy.Example").host(), "proxy.example");
    }

    #[test]
    fn parses_ip_literals() {
        let v6 = p("http://[::1]:3128");
        assert_eq!((v6.host(), v6.port()), ("::1", 3128));
        assert_eq!(v6.to_string(), "http://[::1]:3128");
        let v6 = p("socks5://[2001:db8::1]");
        assert_eq!((v6.host(), v6.port()), ("2001:db8::1", 1080));
        assert_eq!(v6.to_string(), "socks5://[2001:db8::1]:1080");
        assert_eq!(p("socks5://127.0.0.1:1").host(), "127.0.0.1");
        assert_eq!(Proxy::new(ProxyKind::Http, "[::1]", 1).host(), "::1");
    }

    #[test]
    fn parses_and_decodes_credentials_and_redacts_them() {
        let x = p("http://us%20er:p%40ss%3Aword@proxy:3128");
        let c = x.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.pass.as_str()), ("us er", "p@ss:word"));
        assert_eq!(x.to_string(), "http://us%20er@proxy:3128");
        let dbg = format!("{x:?}");
        assert!(!dbg.contains("p@ss") && dbg.contains("<redacted>"), "{dbg}");
        // User without password.
        let x = p("socks5://alice@h");
        let c = x.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.pass.as_str()), ("alice", ""));
        // Invalid UTF-8 after decoding.
        assert!(matches!(
            Proxy::parse("http://%ff:x@h"),
            Err(ProxyError::InvalidUrl(_))
        ));
        // SOCKS5 limits.
        let long = "u".repeat(256);
        assert!(matches!(
            Proxy::parse(&format!("socks5://{long}:x@h")),
            Err(ProxyError::Unsupported(_))
        ));
        assert!(matches!(
            Proxy::parse("socks5://:pw@h"),
            Err(ProxyError::Unsupported(_))
        ));
        // HTTP takes an empty user.
        assert!(Proxy::parse("http://:pw@h").is_ok());
    }

    #[test]
    fn rejects_bad_urls_and_schemes() {
        for bad in [
            "ftp://h:21",
            "ws://h",
            "http://",
            "http://h:99999",
            "http://h:0",
            "",
            "socks5://",
        ] {
            assert!(
                matches!(Proxy::parse(bad), Err(ProxyError::InvalidUrl(_))),
                "{bad}: {:?}",
                Proxy::parse(bad)
            );
        }
        for unsupported in ["https://h:443", "socks4://h", "socks4a://h"] {
            let e = Proxy::parse(unsupported).unwrap_err();
            assert!(
                matches!(e, ProxyError::Unsupported(_)),
                "{unsupported}: {e}"
            );
        }
        let e = Proxy::parse("https://h").unwrap_err().to_string();
        assert!(e.contains("https:// proxies"), "{e}");
    }

    #[test]
    fn no_proxy_matching() {
        let m = no_proxy_matches;
        assert!(m("*", "anything.example", 443));
        assert!(m("example.com", "example.com", 443));
        assert!(m("example.com", "ws.example.com", 443));
        assert!(m(".example.com", "ws.example.com", 443));
        assert!(m(".example.com", "example.com", 443));
        assert!(m("*.example.com", "a.b.example.com", 443));
        assert!(!m("example.com", "badexample.com", 443));
        assert!(!m("ws.example.com", "example.com", 443));
        assert!(m("EXAMPLE.com.", "Ws.Example.COM.", 443));
        assert!(m("foo, bar ,example.com", "example.com", 80));
        assert!(m("foo bar example.com", "example.com", 80));
        assert!(!m("", "example.com", 80));
        assert!(!m(" , ,", "example.com", 80));
        // Ports.
        assert!(m("example.com:8080", "example.com", 8080));
        assert!(!m("example.com:8080", "example.com", 443));
        assert!(!m("example.com:bad", "example.com", 443));
        // IP addresses and blocks.
        assert!(m("192.168.1.10", "192.168.1.10", 80));
        assert!(!m("192.168.1.10", "192.168.1.11", 80));
        assert!(m("10.0.0.0/8", "10.20.30.40", 80));
        assert!(!m("10.0.0.0/8", "11.0.0.1", 80));
        assert!(m("0.0.0.0/0", "8.8.8.8", 80));
        assert!(m("192.168.1.10:9000", "192.168.1.10", 9000));
        assert!(!m("192.168.1.10:9000", "192.168.1.10", 9001));
        assert!(m("2001:db8::1", "2001:db8::1", 80));
        assert!(m("2001:db8::1", "[2001:db8::1]", 80));
        assert!(m("[2001:db8::1]", "2001:db8::1", 80));
        assert!(m("[2001:db8::1]:443", "2001:db8::1", 443));
        assert!(!m("[2001:db8::1]:443", "2001:db8::1", 80));
        assert!(m("2001:db8::/32", "2001:db8:1::5", 80));
        assert!(m("[2001:db8::]/32", "2001:db8:1::5", 80));
        assert!(!m("2001:db8::/32", "2001:db9::5", 80));
        // A name pattern does not match an IP host, nor a v4 block a v6 host.
        assert!(!m("0.0.1", "10.0.0.1", 80));
        assert!(!m("0.0.0.0/0", "::2", 80));
        assert!(!m("10.0.0.0/40", "10.0.0.1", 80));
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn from(url: &str, vars: &[(&str, &str)]) -> Option<String> {
        Proxy::from_env_with(url, env(vars))
            .unwrap()
            .map(|p| p.to_string())
    }

    #[test]
    fn env_precedence() {
        let all = [
            ("https_proxy", "http://lower-https:1"),
            ("HTTPS_PROXY", "http://upper-https:1"),
            ("http_proxy", "http://lower-http:1"),
            ("HTTP_PROXY", "http://upper-http:1"),
            ("all_proxy", "socks5://lower-all:1"),
            ("ALL_PROXY", "socks5://upper-all:1"),
        ];
        let without = |names: &[&str]| -> Vec<(&str, &str)> {
            all.iter()
                .copied()
                .filter(|(k, _)| !names.contains(k))
                .collect()
        };
        let t = "wss://example.com/";
        let ws = "ws://example.com/";
        assert_eq!(from(t, &all).as_deref(), Some("http://lower-https:1"));
        assert_eq!(
            from(t, &without(&["https_proxy"])).as_deref(),
            Some("http://upper-https:1")
        );
        assert_eq!(
            from(t, &without(&["https_proxy", "HTTPS_PROXY"])).as_deref(),
            Some("socks5://lower-all:1")
        );
        assert_eq!(
            from(t, &without(&["https_proxy", "HTTPS_PROXY", "all_proxy"])).as_deref(),
            Some("socks5://upper-all:1")
        );
        assert_eq!(from(ws, &all).as_deref(), Some("http://lower-http:1"));
        // HTTP_PROXY (uppercase) is ignored, as curl does.
        assert_eq!(
            from(ws, &without(&["http_proxy"])).as_deref(),
            Some("socks5://lower-all:1")
        );
        assert_eq!(from(ws, &[("HTTP_PROXY", "http://upper-http:1")]), None);
        // ws:// does not use https_proxy, nor wss:// http_proxy.
        assert_eq!(from(ws, &[("https_proxy", "http://h:1")]), None);
        assert_eq!(from(t, &[("http_proxy", "http://h:1")]), None);
        // Empty values are unset.
        assert_eq!(
            from(t, &[("https_proxy", ""), ("HTTPS_PROXY", "http://h:2")]).as_deref(),
            Some("http://h:2")
        );
        assert_eq!(from(t, &[]), None);
        // http / https targets are aliases of ws / wss.
        assert_eq!(
            from("https://example.com/", &all).as_deref(),
            Some("http://lower-https:1")
        );
    }

    #[test]
    fn env_no_proxy_and_loopback() {
        let vars = [
            ("https_proxy", "http://p:1"),
            ("no_proxy", "internal.example, 10.0.0.0/8"),
            ("NO_PROXY", "*"),
        ];
        // Lowercase no_proxy wins over NO_PROXY.
        assert_eq!(
            from("wss://example.com/", &vars).as_deref(),
            Some("http://p:1")
        );
        assert_eq!(from("wss://ws.internal.example/", &vars), None);
        assert_eq!(from("wss://10.1.2.3:8443/", &vars), None);
        let upper = [
            ("https_proxy", "http://p:1"),
            ("NO_PROXY", "example.com:443"),
        ];
        assert_eq!(from("wss://example.com/", &upper), None);
        assert_eq!(
            from("wss://example.com:8443/", &upper).as_deref(),
            Some("http://p:1")
        );
        // Loopback targets never go through an environment proxy.
        for url in [
            "wss://localhost/",
            "wss://LOCALHOST./",
            "wss://app.localhost:9000/",
            "wss://127.0.0.1/",
            "wss://127.9.9.9/",
            "wss://[::1]:9001/",
        ] {
            assert_eq!(from(url, &vars[..1]), None, "{url}");
        }
    }

    #[test]
    fn env_errors_name_the_variable() {
        let e = Proxy::from_env_with("wss://example.com/", env(&[("https_proxy", "https://p")]))
            .unwrap_err();
        assert!(matches!(
            &e,
            crate::Error::Proxy { error, .. } if matches!(**error, ProxyError::Unsupported(_))
        ));
        assert!(e.to_string().contains("$https_proxy"), "{e}");
        let e = Proxy::from_env_with("wss://example.com/", env(&[("ALL_PROXY", "gopher://x")]))
            .unwrap_err();
        assert!(e.to_string().contains("$ALL_PROXY"), "{e}");
        // A bad target URL is a URL error.
        let e = Proxy::from_env_with("ftp://x/", env(&[])).unwrap_err();
        assert!(matches!(e, crate::Error::Url(_)), "{e}");
    }

    #[test]
    fn connect_request_format() {
        assert_eq!(
            connect_request("example.com", 443, None),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        assert_eq!(
            connect_request("::1", 9001, None),
            "CONNECT [::1]:9001 HTTP/1.1\r\nHost: [::1]:9001\r\n\r\n"
        );
        let c = Credentials {
            user: "Aladdin".into(),
            pass: "open sesame".into(),
        };
        // RFC 7617's example.
        assert_eq!(
            connect_request("h", 80, Some(&c)),
            "CONNECT h:80 HTTP/1.1\r\nHost: h:80\r\n\
             Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
    }

    #[test]
    fn socks5_message_encoding() {
        assert_eq!(socks5_greeting(false), [5, 1, 0]);
        assert_eq!(socks5_greeting(true), [5, 2, 0, 2]);
        let c = Credentials {
            user: "bob".into(),
            pass: "pw".into(),
        };
        assert_eq!(
            socks5_auth_request(&c).unwrap(),
            [1, 3, b'b', b'o', b'b', 2, b'p', b'w']
        );
        let long = Credentials {
            user: "u".repeat(256),
            pass: String::new(),
        };
        assert!(socks5_auth_request(&long).is_err());
        assert_eq!(
            socks5_request(&SocksAddr::Ip("127.0.0.1".parse().unwrap()), 9001).unwrap(),
            [5, 1, 0, 1, 127, 0, 0, 1, 0x23, 0x29]
        );
        let v6 = socks5_request(&SocksAddr::Ip("::1".parse().unwrap()), 443).unwrap();
        assert_eq!(&v6[..4], [5, 1, 0, 4]);
        assert_eq!(&v6[4..20], std::net::Ipv6Addr::LOCALHOST.octets());
        assert_eq!(&v6[20..], [1, 187]);
        assert_eq!(
            socks5_request(&SocksAddr::Domain("ab.c".into()), 80).unwrap(),
            [5, 1, 0, 3, 4, b'a', b'b', b'.', b'c', 0, 80]
        );
        assert!(socks5_request(&SocksAddr::Domain("a".repeat(256)), 80).is_err());
    }

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

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nrest"), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\n\nrest"), Some(17));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    /// A loopback socket pair: the proxy side writes `answer` in pieces.
    async fn head_from(pieces: Vec<Vec<u8>>) -> (Result<Vec<u8>, ProxyError>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for piece in pieces {
                s.write_all(&piece).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Closing lets the client read the rest to the end.
        });
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let head = read_head(&mut tcp).await;
        server.await.unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        (head, rest)
    }

    #[tokio::test]
    async fn head_reader_leaves_the_tunnel_bytes_in_the_socket() {
        let (head, rest) =
            head_from(vec![b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nTUNNEL BYTES".to_vec()]).await;
        assert_eq!(head.unwrap(), b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n");
        assert_eq!(rest, b"TUNNEL BYTES");
        // The empty line split across reads, one byte at a time.
        let msg = b"HTTP/1.1 200 Connection established\r\n\r\nabc";
        let (head, rest) = head_from(msg.iter().map(|b| vec![*b]).collect()).await;
        assert_eq!(head.unwrap(), &msg[..msg.len() - 3]);
        assert_eq!(rest, b"abc");
    }

    #[tokio::test]
    async fn head_reader_bounds_and_rejects() {
        let huge = format!(
            "HTTP/1.1 200 OK\r\n{}",
            "X-Pad: 0123456789\r\n".repeat(2000)
        );
        let (head, _) = head_from(vec![huge.into_bytes()]).await;
        assert!(
            matches!(head, Err(ProxyError::HeadTooLarge(MAX_HEAD_SIZE))),
            "{head:?}"
        );
        let (head, _) = head_from(vec![b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()]).await;
        assert!(matches!(head, Err(ProxyError::Malformed(_))), "{head:?}");
        let (head, _) = head_from(vec![]).await;
        assert!(matches!(head, Err(ProxyError::Closed)), "{head:?}");
        let (head, _) = head_from(vec![b"HTTP/1.1 200 OK\r\n".to_vec()]).await;
        assert!(matches!(head, Err(ProxyError::Malformed(_))), "{head:?}");
    }
}
