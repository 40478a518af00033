//! Choosing a proxy: parsing proxy URLs, and the `*_proxy` / `no_proxy` environment
//! variables.

use super::{printable, strip_brackets, valid_host, Proxy, ProxyError, ProxyKind};
use std::net::IpAddr;
use std::str::FromStr;
use wsx_proto::handshake::client::Target;

impl Proxy {
    /// Parses a proxy URL (see [`Proxy`] for the accepted forms).
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
}

impl FromStr for Proxy {
    type Err = ProxyError;

    fn from_str(s: &str) -> Result<Proxy, ProxyError> {
        Proxy::parse(s)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
}
