//! The client through proxies: in-test HTTP CONNECT and SOCKS5 proxies on 127.0.0.1 in front
//! of a wsx echo server (ws:// and wss://), and misbehaving proxies. Every test is bounded.

use futures_util::StreamExt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsx::{ClientBuilder, Error, Message, Proxy, ProxyError, Server};

const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

async fn echo_server(tls: Option<&Certs>) -> SocketAddr {
    let mut server = Server::bind("127.0.0.1:0").await.unwrap();
    if let Some(c) = tls {
        server = server.tls_pem(&c.cert, &c.key).unwrap();
    }
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|mut ws, _| async move {
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    }));
    addr
}

struct Certs {
    cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn self_signed() -> Certs {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wsx-proxy-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    Certs { cert, key, dir }
}

async fn echoes<S>(ws: &mut wsx::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for m in [
        Message::text("through the proxy"),
        Message::binary(vec![7u8; 200_000]),
    ] {
        ws.send(m.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), m);
    }
    let ev = ws.close(None).await.unwrap();
    assert!(ev.was_clean);
}

fn proxy_err(e: Error) -> ProxyError {
    match e {
        Error::Proxy { error, .. } => *error,
        other => panic!("expected a proxy error, got {other:?}"),
    }
}

/// What the mock proxies saw.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    /// HTTP CONNECT: request target and Proxy-Authorization value.
    Connect(String, Option<String>),
    /// SOCKS5 with a domain name.
    Name(String, u16),
    /// SOCKS5 with an IP address.
    Ip(IpAddr, u16),
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Reads an HTTP request head (bounded), byte by byte so nothing after it is consumed.
async fn read_request_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return None;
        }
        let mut b = [0u8; 1];
        if s.read(&mut b).await.ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    String::from_utf8(head).ok()
}

/// An HTTP CONNECT proxy; with `auth = Some("user:pass")` it answers 407 unless the request
/// carries those Basic credentials.
async fn http_proxy(auth: Option<&'static str>) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_request_head(&mut client).await else {
                    return;
                };
                let mut lines = head.split("\r\n");
                let target = lines
                    .next()
                    .and_then(|l| l.strip_prefix("CONNECT "))
                    .and_then(|l| l.strip_suffix(" HTTP/1.1"))
                    .unwrap_or_default()
                    .to_owned();
                let credentials = lines
                    .filter_map(|l| l.split_once(": "))
                    .find(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization"))
                    .map(|(_, v)| v.to_owned());
                seen.lock()
                    .unwrap()
                    .push(Seen::Connect(target.clone(), credentials.clone()));
                if let Some(auth) = auth {
                    use base64::Engine;
                    let want = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(auth)
                    );
                    if credentials.as_deref() != Some(want.as_str()) {
                        let _ = client
                            .write_all(
                                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                                  Proxy-Authenticate: Basic realm=\"test\"\r\n\
                                  Content-Length: 0\r\n\r\n",
                            )
                            .await;
                        return;
                    }
                }
                let Ok(mut upstream) = TcpStream::connect(target.as_str()).await else {
                    let _ = client
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (addr, log)
}

/// A SOCKS5 proxy. `auth = Some((user, pass))` requires RFC 1929 credentials; `refuse =
/// Some(code)` answers every CONNECT with that reply code. Names are resolved here, and
/// `::1` is mapped to 127.0.0.1 (the echo servers listen on IPv4).
async fn socks5_proxy(
    auth: Option<(&'static str, &'static str)>,
    refuse: Option<u8>,
) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let _ = socks5_session(&mut client, auth, refuse, &seen).await;
            });
        }
    });
    (addr, log)
}

async fn socks5_session(
    c: &mut TcpStream,
    auth: Option<(&str, &str)>,
    refuse: Option<u8>,
    seen: &Log,
) -> std::io::Result<()> {
    let mut hdr = [0u8; 2];
    c.read_exact(&mut hdr).await?;
    assert_eq!(hdr[0], 5);
    let mut methods = vec![0u8; hdr[1] as usize];
    c.read_exact(&mut methods).await?;
    match auth {
        None => c.write_all(&[5, 0]).await?,
        Some(_) if !methods.contains(&2) => {
            c.write_all(&[5, 0xff]).await?;
            return Ok(());
        }
        Some((user, pass)) => {
            c.write_all(&[5, 2]).await?;
            let mut v = [0u8; 2];
            c.read_exact(&mut v).await?;
            let mut u = vec![0u8; v[1] as usize];
            c.read_exact(&mut u).await?;
            let mut pl = [0u8; 1];
            c.read_exact(&mut pl).await?;
            let mut p = vec![0u8; pl[0] as usize];
            c.read_exact(&mut p).await?;
            let ok = u == user.as_bytes() && p == pass.as_bytes();
            c.write_all(&[1, if ok { 0 } else { 1 }]).await?;
            if !ok {
                return Ok(());
            }
        }
    }
    let mut req = [0u8; 4];
    c.read_exact(&mut req).await?;
    assert_eq!(&req[..3], [5, 1, 0]);
    let target = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a).await?;
            Seen::Ip(IpAddr::from(a), c.read_u16().await?)
        }
        4 => {
            let mut a = [0u8; 16];
            c.read_exact(&mut a).await?;
            Seen::Ip(IpAddr::from(a), c.read_u16().await?)
        }
        3 => {
            let len = c.read_u8().await?;
            let mut name = vec![0u8; len as usize];
            c.read_exact(&mut name).await?;
            Seen::Name(String::from_utf8(name).unwrap(), c.read_u16().await?)
        }
        _ => panic!("bad address type"),
    };
    seen.lock().unwrap().push(target.clone());
    if let Some(code) = refuse {
        c.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(());
    }
    let upstream = match target {
        Seen::Ip(ip, port) if ip.is_loopback() => {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await
        }
        Seen::Ip(ip, port) => TcpStream::connect((ip, port)).await,
        // Any name is this machine's loopback: names need not resolve locally.
        Seen::Name(_, port) => TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await,
        Seen::Connect(..) => unreachable!(),
    };
    let Ok(mut upstream) = upstream else {
        c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(());
    };
    // Bound address as a domain name, to exercise that reply form.
    c.write_all(&[5, 0, 0, 3, 4, b'm', b'o', b'c', b'k', 0x04, 0x38])
        .await?;
    tokio::io::copy_bidirectional(c, &mut upstream).await?;
    Ok(())
}

/// A proxy that runs `script` on each accepted connection.
async fn scripted<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(script(s));
        }
    });
    addr
}

fn proxy(url: String) -> Proxy {
    url.parse().unwrap()
}

#[tokio::test]
async fn ws_through_http_connect_proxy() {
    bounded(async {
        let echo = echo_server(None).await;
        let (p, log) = http_proxy(None).await;
        let mut ws = ClientBuilder::new(format!("ws://{echo}/chat?x=1"))
            .proxy(proxy(format!("http://{p}")))
            .connect()
            .await
            .unwrap();
        echoes(&mut ws).await;
        // The WebSocket request still names the target, not the proxy.
        let hs = ws.handshake().unwrap();
        let req = String::from_utf8_lossy(&hs.request);
        assert!(req.starts_with("GET /chat?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("Host: {echo}\r\n")), "{req}");
        assert_eq!(
            log.lock().unwrap().as_slice(),
            [Seen::Connect(echo.to_string(), None)]
        );
    })
    .await
}

#[tokio::test]
async fn http_connect_proxy_with_basic_auth() {
    bounded(async {
        let echo = echo_server(None).await;
        let (p, log) = http_proxy(Some("alice:p@ss word")).await;
        let url = format!("ws://{echo}/");
        let mut ws = ClientBuilder::new(url.clone())
            .proxy(proxy(format!("http://alice:p%40ss%20word@{p}")))
            .connect()
            .await
            .unwrap();
        echoes(&mut ws).await;
        assert_eq!(
            log.lock().unwrap()[0],
            Seen::Connect(
                echo.to_string(),
                Some("Basic YWxpY2U6cEBzcyB3b3Jk".to_string())
            )
        );

        let err = ClientBuilder::new(url.clone())
            .proxy(proxy(format!("http://{p}")))
            .connect()
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(proxy_err(err), ProxyError::AuthRequired), "{msg}");
        assert!(msg.contains(&format!("proxy http://{p}:")), "{msg}");

        let err = ClientBuilder::new(url)
            .proxy(proxy(format!("http://alice:wrong@{p}")))
            .connect()
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(proxy_err(err), ProxyError::AuthFailed), "{msg}");
        // The password never shows.
        assert!(!msg.contains("wrong"), "{msg}");
        assert!(msg.contains(&format!("http://alice@{p}")), "{msg}");
    })
    .await
}

#[tokio::test]
async fn wss_through_http_connect_proxy_verifies_the_target() {
    bounded(async {
        let certs = self_signed();
        let echo = echo_server(Some(&certs)).await;
        let (p, log) = http_proxy(None).await;
        // The certificate is for "localhost": TLS runs end to end with the target's name.
        let url = format!("wss://localhost:{}/", echo.port());
        let mut ws = ClientBuilder::new(url.clone())
            .add_ca_file(&certs.cert)
            .proxy(proxy(format!("http://{p}")))
            .connect()
            .await
            .unwrap();
        assert!(ws.get_ref().is_tls());
        // The TCP connection is the proxy's.
        assert_eq!(ws.get_ref().tcp().peer_addr().unwrap(), p);
        echoes(&mut ws).await;
        assert_eq!(
            log.lock().unwrap()[0],
            Seen::Connect(format!("localhost:{}", echo.port()), None)
        );
        // Without the CA the target's certificate is refused, proxy or not.
        let err = ClientBuilder::new(url)
            .proxy(proxy(format!("http://{p}")))
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err}");
    })
    .await
}

#[tokio::test]
async fn wss_through_socks5h_proxy() {
    bounded(async {
        let certs = self_signed();
        let echo = echo_server(Some(&certs)).await;
        let (p, log) = socks5_proxy(None, None).await;
        let mut ws = ClientBuilder::new(format!("wss://localhost:{}/", echo.port()))
            .add_ca_file(&certs.cert)
            .proxy(proxy(format!("socks5h://{p}")))
            .connect()
            .await
            .unwrap();
        echoes(&mut ws).await;
        assert_eq!(
            log.lock().unwrap().as_slice(),
            [Seen::Name("localhost".into(), echo.port())]
        );
    })
    .await
}

#[tokio::test]
async fn socks5_resolves_locally_and_socks5h_sends_the_name() {
    bounded(async {
        let echo = echo_server(None).await;
        let (p, log) = socks5_proxy(None, None).await;

        // socks5:// resolves "localhost" here and sends an address.
        let mut ws = ClientBuilder::new(format!("ws://localhost:{}/", echo.port()))
            .proxy(proxy(format!("socks5://{p}")))
            .connect()
            .await
            .unwrap();
        echoes(&mut ws).await;
        match log.lock().unwrap().as_slice() {
            [Seen::Ip(ip, port)] => {
                assert!(ip.is_loopback(), "{ip}");
                assert_eq!(*port, echo.port());
            }
            other => panic!("{other:?}"),
        }
        log.lock().unwrap().clear();

        // socks5h:// sends the name, which only the proxy needs to know.
        let mut ws = ClientBuilder::new(format!("ws://echo.invalid:{}/", echo.port()))
            .proxy(proxy(format!("socks5h://{p}")))
            .connect()
            .await
            .unwrap();
        echoes(&mut ws).await;
        assert_eq!(
            log.lock().unwrap().as_slice(),
            [Seen::Name("echo.invalid".into(), echo.port())]
        );
        log.lock().unwrap().clear();

        // An IP literal goes as an address with either scheme.
        let mut ws = ClientBuilder::new(format!("ws://{echo}/"))
            .proxy(proxy(format!("socks5h://{p}")))
            .connect()
            .await
            .unwrap();
        echoes(&mut ws).await;
        assert_eq!(
            log.lock().unwrap().as_slice(),
            [Seen::Ip(echo.ip(), echo.port())]
        );

        // socks5:// cannot reach a name this machine cannot resolve: the error says so.
        let err = ClientBuilder::new(format!("ws://echo.invalid:{}/", echo.port()))
            .proxy(proxy(format!("socks5://{p}")))
            .connect()
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(proxy_err(err), ProxyError::ResolveTarget { .. }),
            "{msg}"
        );
        assert!(msg.contains("socks5h://"), "{msg}");
    })
    .await
}

#[tokio::test]
async fn socks5_user_password_auth() {
    bounded(async {
        let echo = echo_server(None).await;
        let (p, log) = socks5_proxy(Some(("bob", "s:cret")), None).await;
        let url = format!("ws://{echo}/");
        let mut ws = ClientBuilder::new(url.clone())
            .proxy(proxy(format!("socks5://bob:s%3Acret@{p}")))
            .connect()
            .await
            .unwrap();
        echoes(&mut ws).await;
        assert_eq!(log.lock().unwrap().len(), 1);

        let err = ClientBuilder::new(url.clone())
            .proxy(proxy(format!("socks5://bob:nope@{p}")))
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(proxy_err(err), ProxyError::AuthFailed));

        let err = ClientBuilder::new(url)
            .proxy(proxy(format!("socks5://{p}")))
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(proxy_err(err), ProxyError::AuthRequired));
    })
    .await
}

#[tokio::test]
async fn socks5_refusals_are_named() {
    bounded(async {
        let texts = [
            (1, "general SOCKS server failure"),
            (2, "connection not allowed by ruleset"),
            (3, "network unreachable"),
            (4, "host unreachable"),
            (5, "connection refused"),
            (6, "TTL expired"),
            (7, "command not supported"),
            (8, "address type not supported"),
        ];
        for (code, text) in texts {
            let (p, _) = socks5_proxy(None, Some(code)).await;
            let err = ClientBuilder::new("ws://127.0.0.1:9/")
                .proxy(proxy(format!("socks5://{p}")))
                .connect()
                .await
                .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(text), "{code}: {msg}");
            assert!(msg.contains(&format!("socks5://{p}")), "{msg}");
            assert!(
                matches!(proxy_err(err), ProxyError::Socks { code: c } if c == code),
                "{msg}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn http_refusal_keeps_status_and_body_excerpt() {
    bounded(async {
        let p = scripted(|mut s| async move {
            let _ = read_request_head(&mut s).await;
            let body = format!("blocked by policy {}", "x".repeat(5000));
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            // Stay open: the excerpt must not wait for the end of the stream.
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let start = Instant::now();
        let err = ClientBuilder::new("ws://127.0.0.1:9/")
            .proxy(proxy(format!("http://{p}")))
            .connect()
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("proxy http://{p}: ")) && msg.contains("HTTP 403 Forbidden"),
            "{msg}"
        );
        assert!(msg.contains("blocked by policy"), "{msg}");
        assert!(msg.len() < 400, "{msg}");
        match proxy_err(err) {
            ProxyError::Http {
                status,
                reason,
                body,
            } => {
                assert_eq!((status, reason.as_str()), (403, "Forbidden"));
                assert!(body.starts_with(b"blocked by policy"));
                assert_eq!(body.len(), 1024);
            }
            other => panic!("{other:?}"),
        }
    })
    .await
}

#[tokio::test]
async fn garbage_replies_are_malformed() {
    bounded(async {
        let p = scripted(|mut s| async move {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1\r\n").await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        for url in [format!("http://{p}"), format!("socks5://{p}")] {
            let err = ClientBuilder::new("ws://127.0.0.1:9/")
                .proxy(proxy(url.clone()))
                .connect_timeout(Duration::from_secs(10))
                .connect()
                .await
                .unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(proxy_err(err), ProxyError::Malformed(_)),
                "{url}: {msg}"
            );
        }

        // A status line httparse refuses.
        let p = scripted(|mut s| async move {
            let _ = read_request_head(&mut s).await;
            let _ = s.write_all(b"HTTP/1.1 2OO OK\r\n\r\n").await;
        })
        .await;
        let err = ClientBuilder::new("ws://127.0.0.1:9/")
            .proxy(proxy(format!("http://{p}")))
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(proxy_err(err), ProxyError::Malformed(_)));

        // A proxy that hangs up.
        let p = scripted(|s| async move { drop(s) }).await;
        let err = ClientBuilder::new("ws://127.0.0.1:9/")
            .proxy(proxy(format!("socks5h://{p}")))
            .connect()
            .await
            .unwrap_err();
        let e = proxy_err(err);
        assert!(matches!(e, ProxyError::Closed | ProxyError::Io(_)), "{e:?}");
    })
    .await
}

#[tokio::test]
async fn silent_proxy_times_out_within_the_connect_timeout() {
    bounded(async {
        let p = scripted(|mut s| async move {
            let mut sink = [0u8; 1024];
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        for url in [format!("http://{p}"), format!("socks5://{p}")] {
            let start = Instant::now();
            let err = ClientBuilder::new("ws://127.0.0.1:9/")
                .proxy(proxy(url.clone()))
                .connect_timeout(Duration::from_millis(300))
                .connect()
                .await
                .unwrap_err();
            let elapsed = start.elapsed();
            assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
            assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
            let msg = err.to_string();
            assert!(msg.contains(&url), "{msg}");
            assert!(
                matches!(proxy_err(err), ProxyError::Timeout(d) if d == Duration::from_millis(300)),
                "{msg}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn huge_response_head_is_bounded() {
    bounded(async {
        let p = scripted(|mut s| async move {
            let _ = read_request_head(&mut s).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
            // Endless headers: the client must stop at its limit, not at the timeout.
            let line = b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            while s.write_all(line).await.is_ok() {}
        })
        .await;
        let start = Instant::now();
        let err = ClientBuilder::new("ws://127.0.0.1:9/")
            .proxy(proxy(format!("http://{p}")))
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        let e = proxy_err(err);
        assert!(
            matches!(e, ProxyError::HeadTooLarge(n) if n == 16 * 1024),
            "{e:?}"
        );
    })
    .await
}

#[tokio::test]
async fn unreachable_proxy_is_named() {
    bounded(async {
        let free = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let err = ClientBuilder::new("ws://127.0.0.1:9/")
            .proxy(proxy(format!("http://{free}")))
            .connect()
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("proxy http://{free}: cannot connect to the proxy")),
            "{msg}"
        );
        assert!(matches!(proxy_err(err), ProxyError::Unreachable(_)));
    })
    .await
}

#[tokio::test]
async fn no_proxy_connects_directly() {
    bounded(async {
        let echo = echo_server(None).await;
        // Whatever the environment of this test process says, no_proxy() goes direct, and a
        // loopback target never takes a proxy from the environment.
        let mut ws = ClientBuilder::new(format!("ws://{echo}/"))
            .no_proxy()
            .connect()
            .await
            .unwrap();
        echoes(&mut ws).await;
        let mut ws = wsx::connect(&format!("ws://{echo}/")).await.unwrap();
        assert_eq!(ws.get_ref().tcp().peer_addr().unwrap(), echo);
        echoes(&mut ws).await;
    })
    .await
}

#[tokio::test]
async fn proxy_connect_is_usable_with_connect_on() {
    bounded(async {
        let echo = echo_server(None).await;
        let (p, _) = http_proxy(None).await;
        let tunnel = proxy(format!("http://{p}"))
            .connect("127.0.0.1", echo.port())
            .await
            .unwrap();
        let mut ws = ClientBuilder::new(format!("ws://{echo}/"))
            .connect_on(tunnel)
            .await
            .unwrap();
        echoes(&mut ws).await;
    })
    .await
}
