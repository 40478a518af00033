//! Tunnelling: HTTP `CONNECT` and SOCKS5 through a [`Proxy`].

use super::{
    authority, printable, strip_brackets, valid_host, Credentials, Proxy, ProxyError, ProxyKind,
};
use crate::net::ConnectError;
use base64::Engine;
use bytes::Bytes;
use std::io;
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest `CONNECT` response head accepted from an HTTP proxy (16 KiB).
pub(crate) const MAX_HEAD_SIZE: usize = 16 * 1024;

/// Largest part of a refusal's body kept in [`ProxyError::Http`].
pub(crate) const MAX_BODY_EXCERPT: usize = 1024;

/// How long the body of a refusal is waited for (it is only an excerpt for the message).
const BODY_WAIT: Duration = Duration::from_millis(500);

impl Proxy {
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
        crate::net::connect_tcp(&self.host, self.port)
            .await
            .map_err(|e| match e {
                ConnectError::Resolve(e) => ProxyError::Resolve(e),
                ConnectError::Connect(last) => ProxyError::Unreachable(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "no addresses found")
                })),
            })
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
    use tokio::net::TcpListener;

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
