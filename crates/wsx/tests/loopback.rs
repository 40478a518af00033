//! End-to-end tests over real loopback sockets: ws and wss, handshake errors, close
//! handshakes, and raw misbehaving peers. Every test is bounded by a timeout.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsx::{
    ClientBuilder, CloseCode, CloseFrame, Error, Message, Rejection, Request, Server, ServerConfig,
};

const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

/// Starts an echo server on 127.0.0.1 and returns its address.
async fn echo_server(config: ServerConfig, tls: Option<&Certs>) -> SocketAddr {
    let mut server = Server::bind("127.0.0.1:0").await.unwrap().config(config);
    if let Some(c) = tls {
        server = server.tls_pem(&c.cert, &c.key).unwrap();
    }
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(|mut ws, _| async move {
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_data() {
                if let Message::Text(t) = &msg {
                    if t.as_str() == "close-1001" {
                        let _ = ws
                            .close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "bye")))
                            .await;
                        return;
                    }
                }
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        }
    }));
    addr
}

struct Certs {
    cert: PathBuf,
    key: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn self_signed() -> Certs {
    let dir =
        std::env::temp_dir().join(format!("wsx-test-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    Certs {
        cert,
        key,
        _dir: TempDir(dir),
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn round_trips<S>(ws: &mut wsx::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 253) as u8).collect();
    let msgs = vec![
        Message::text("hello"),
        Message::text(""),
        Message::text("κόσμε ".repeat(5000)),
        Message::binary(vec![0u8; 0]),
        Message::binary(big),
    ];
    for m in msgs {
        ws.send(m.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), m);
    }
}

#[tokio::test]
async fn ws_echo_and_clean_close() {
    bounded(async {
        let addr = echo_server(ServerConfig::default(), None).await;
        let mut ws = wsx::connect(&format!("ws://{addr}/any/path?q=1"))
            .await
            .unwrap();
        round_trips(&mut ws).await;
        let ev = ws
            .close(Some(CloseFrame::new(CloseCode::NORMAL, "done")))
            .await
            .unwrap();
        assert!(ev.was_clean);
        assert_eq!(ev.code, CloseCode::NORMAL);
        assert_eq!(ws.state(), wsx::State::Closed);
        assert!(ws.next().await.is_none());
    })
    .await
}

#[tokio::test]
async fn ws_over_ipv6_loopback() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        return; // no IPv6 on this machine
    };
    bounded(async {
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            Server::from_listener(listener).serve(|mut ws, _| async move {
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_data() {
                        let _ = ws.send(m).await;
                    }
                }
            }),
        );
        let mut ws = wsx::connect(&format!("ws://[::1]:{}/", addr.port()))
            .await
            .unwrap();
        ws.send(Message::text("v6")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("v6"));
    })
    .await
}

#[tokio::test]
async fn wss_echo_with_ca_file_and_insecure() {
    bounded(async {
        let certs = self_signed();
        let addr = echo_server(ServerConfig::default(), Some(&certs)).await;
        let url = format!("wss://localhost:{}/", addr.port());
        let mut ws = ClientBuilder::new(url.clone())
            .add_ca_file(&certs.cert)
            .connect()
            .await
            .unwrap();
        assert!(ws.get_ref().is_tls());
        round_trips(&mut ws).await;
        let ev = ws.close(None).await.unwrap();
        assert!(ev.was_clean);

        let mut ws = ClientBuilder::new(format!("wss://127.0.0.1:{}/", addr.port()))
            .danger_accept_invalid_certs(true)
            .connect()
            .await
            .unwrap();
        ws.send(Message::text("x")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("x"));

        // Without trusting the certificate the TLS handshake must fail.
        let err = wsx::connect(&url).await.unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err}");
    })
    .await
}

#[tokio::test]
async fn server_initiated_close_is_seen_and_clean() {
    bounded(async {
        let addr = echo_server(ServerConfig::default(), None).await;
        let mut ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
        ws.send(Message::text("close-1001")).await.unwrap();
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(f.code, CloseCode::GOING_AWAY);
                assert_eq!(f.reason.as_str(), "bye");
            }
            other => panic!("{other:?}"),
        }
        assert!(ws.next().await.is_none());
        let ev = ws.close_event().unwrap();
        assert!(ev.was_clean && ev.code == CloseCode::GOING_AWAY);
    })
    .await
}

#[tokio::test]
async fn subprotocol_and_hook() {
    bounded(async {
        let config = {
            let mut c = ServerConfig::default();
            c.protocols = vec!["v2".into(), "v1".into()];
            c
        };
        let server = Server::bind("127.0.0.1:0").await.unwrap().config(config);
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.serve_with_hook(
            |mut ws, _| async move {
                let p = ws.protocol().unwrap_or("none").to_owned();
                let _ = ws.send(Message::text(p)).await;
                let _ = ws.close(None).await;
            },
            || {
                |req: &Request, acc: &mut wsx::Accept| {
                    if req.origin() == Some("https://evil.example") {
                        return Err(Rejection::new(403, "origin not allowed\n"));
                    }
                    acc.headers.append("X-Path", req.path());
                    Ok(())
                }
            },
        ));
        let mut ws = ClientBuilder::new(format!("ws://{addr}/chat"))
            .protocol("v1")
            .protocol("v2")
            .connect()
            .await
            .unwrap();
        assert_eq!(ws.protocol(), Some("v2"));
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("v2"));

        let err = ClientBuilder::new(format!("ws://{addr}/"))
            .origin("https://evil.example")
            .connect()
            .await
            .unwrap_err();
        match &err {
            Error::Http { response, body } => {
                assert_eq!(response.status, 403);
                assert_eq!(&body[..], b"origin not allowed\n");
            }
            other => panic!("{other}"),
        }
        assert_eq!(err.http_status(), Some(403));
        assert!(err.to_string().contains("403"), "{err}");
    })
    .await
}

/// Sends raw bytes to a fresh connection and returns everything the server answers until
/// it closes the connection.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test]
async fn bad_handshakes_get_http_errors() {
    bounded(async {
        let addr = echo_server(ServerConfig::default(), None).await;
        let cases = [
            (UPGRADE.replace("GET", "POST"), "405"),
            (UPGRADE.replace("Version: 13", "Version: 7"), "426"),
            (UPGRADE.replace("Upgrade: websocket\r\n", ""), "400"),
            (UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"), "400"),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), "400"),
            (
                UPGRADE.replace(
                    "Host: x",
                    &format!("Host: x\r\nX-Big: {}", "a".repeat(20_000)),
                ),
                "431",
            ),
            ("\x16\x03\x01 garbage\r\n\r\n".to_string(), "400"),
        ];
        for (req, status) in cases {
            let resp =
                String::from_utf8_lossy(&raw_exchange(addr, req.as_bytes()).await).to_string();
            assert!(
                resp.starts_with(&format!("HTTP/1.1 {status} ")),
                "{status}: {resp}"
            );
            if status == "426" {
                assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"));
            }
        }
    })
    .await
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [9u8, 8, 7, 6];
    let mut v = vec![first, 0x80 | payload.len() as u8];
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

fn after_head(resp: &[u8]) -> &[u8] {
    let pos = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no head")
        + 4;
    &resp[pos..]
}

#[tokio::test]
async fn raw_peer_ping_violation_and_close() {
    bounded(async {
        let addr = echo_server(ServerConfig::default(), None).await;
        // A ping is answered with the same payload; a close is echoed, then TCP closes.
        let mut bytes = UPGRADE.as_bytes().to_vec();
        bytes.extend(masked(0x89, b"abc"));
        bytes.extend(masked(0x88, &[0x0F, 0xA0])); // 4000
        let resp = raw_exchange(addr, &bytes).await;
        assert_eq!(
            after_head(&resp),
            &[0x8A, 3, b'a', b'b', b'c', 0x88, 2, 0x0F, 0xA0]
        );

        // An unmasked frame fails the connection with 1002.
        let mut bytes = UPGRADE.as_bytes().to_vec();
        bytes.extend([0x81, 0x01, b'x']);
        let resp = raw_exchange(addr, &bytes).await;
        let tail = after_head(&resp);
        assert_eq!(&tail[..1], &[0x88]);
        assert_eq!(&tail[2..4], &1002u16.to_be_bytes());

        // Invalid UTF-8 fails with 1007.
        let mut bytes = UPGRADE.as_bytes().to_vec();
        bytes.extend(masked(0x81, &[0xCE, 0xBA, 0xFF]));
        let resp = raw_exchange(addr, &bytes).await;
        assert_eq!(&after_head(&resp)[2..4], &1007u16.to_be_bytes());
    })
    .await
}

#[tokio::test]
async fn vanished_server_is_abnormal_1006() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = wsx::accept(tcp).await.unwrap();
            drop(ws); // vanish without a close frame
        });
        let mut ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
        assert!(ws.next().await.is_none());
        let ev = ws.close_event().unwrap();
        assert_eq!(ev.code, CloseCode::ABNORMAL);
        assert!(!ev.was_clean);
    })
    .await
}

#[tokio::test]
async fn handshake_failures_are_clear() {
    bounded(async {
        // Nothing listening.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let err = wsx::connect(&format!("ws://{addr}/")).await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        // Plain HTTP server answering 404.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno route\n")
                .await;
        });
        let err = wsx::connect(&format!("ws://{addr}/")).await.unwrap_err();
        assert_eq!(err.http_status(), Some(404));
        assert!(err.to_string().contains("no route"), "{err}");
        assert!(matches!(
            wsx::connect("ftp://x/").await.unwrap_err(),
            Error::Url(_)
        ));
    })
    .await
}

#[tokio::test]
async fn sink_and_stream_traits() {
    bounded(async {
        let addr = echo_server(ServerConfig::default(), None).await;
        let mut ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
        for i in 0..100 {
            ws.feed(Message::text(format!("m{i}"))).await.unwrap();
        }
        ws.flush().await.unwrap();
        for i in 0..100 {
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                Message::text(format!("m{i}"))
            );
        }
        SinkExt::close(&mut ws).await.unwrap();
        assert!(matches!(ws.next().await, Some(Ok(Message::Close(Some(_))))));
        assert!(ws.next().await.is_none());
    })
    .await
}

#[tokio::test]
async fn split_halves_from_two_tasks_answer_pings_without_the_writer() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The server pings, expects the pong, then sends 50 messages and closes.
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = wsx::accept(tcp).await.unwrap();
            ws.send(Message::Ping(wsx::Bytes::from_static(b"are you there")))
                .await
                .unwrap();
            match ws.next().await {
                Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"are you there"),
                other => panic!("{other:?}"),
            }
            let mut got = 0;
            while got < 50 {
                match ws.next().await {
                    Some(Ok(m)) if m.is_data() => {
                        got += 1;
                        ws.send(m).await.unwrap();
                    }
                    other => panic!("{other:?}"),
                }
            }
            ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "enough")))
                .await
                .unwrap()
        });
        let ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
        let (mut reader, mut writer) = ws.split();
        // Read until the ping has been seen: the reader alone answers it.
        match reader.next().await {
            Some(Ok(Message::Ping(_))) => {}
            other => panic!("{other:?}"),
        }
        let writer_task = tokio::spawn(async move {
            for i in 0..50 {
                writer.send(Message::text(format!("{i}"))).await.unwrap();
            }
            writer
        });
        let mut echoed = 0;
        let mut close = None;
        while let Some(m) = reader.next().await {
            match m.unwrap() {
                Message::Text(_) => echoed += 1,
                Message::Close(f) => close = f,
                _ => {}
            }
        }
        assert_eq!(echoed, 50);
        assert_eq!(close.unwrap().code, CloseCode::NORMAL);
        let ev = reader.close_event().unwrap();
        assert!(ev.was_clean, "{ev:?}");
        let server_ev = server.await.unwrap();
        assert!(server_ev.was_clean, "{server_ev:?}");
        let mut writer = writer_task.await.unwrap();
        assert!(writer.send(Message::text("late")).await.is_err());
    })
    .await
}

/// Serves one connection on 127.0.0.1 with `config`, split: `serve` gets the two halves.
/// Returns the address and the task running `serve`.
async fn split_server<F, Fut>(
    config: ServerConfig,
    serve: F,
) -> (SocketAddr, tokio::task::JoinHandle<Fut::Output>)
where
    F: FnOnce(wsx::WsReader<TcpStream>, wsx::WsWriter<TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = wsx::accept_with(tcp, &config, wsx::NoHook).await.unwrap();
        let (reader, writer) = ws.split();
        serve(reader, writer).await
    });
    (addr, task)
}

/// A raw client connection that has completed the handshake (the `101` head is read).
async fn raw_upgraded(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(UPGRADE.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    tcp
}

/// Reads one unmasked server frame from `tcp`: (opcode, payload length).
async fn read_server_frame(tcp: &mut TcpStream) -> (u8, usize) {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => tcp.read_u16().await.unwrap() as usize,
        127 => tcp.read_u64().await.unwrap() as usize,
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x0f, len)
}

/// The writer half is blocked on a full socket when a ping arrives; the reader's pong cannot
/// be written either. Both wait for the same socket to become writable, and tokio keeps one
/// write waker per socket: the writer task must still be woken when the peer drains.
#[tokio::test]
async fn split_writer_blocked_on_a_full_socket_resumes_after_a_pong() {
    const MESSAGES: usize = 160;
    const SIZE: usize = 64 * 1024;
    bounded(async {
        let (addr, server) = split_server(
            ServerConfig::default(),
            |mut reader, mut writer| async move {
                let writer_task = tokio::spawn(async move {
                    for _ in 0..MESSAGES {
                        writer
                            .send(Message::Binary(vec![7u8; SIZE].into()))
                            .await
                            .unwrap();
                    }
                });
                // The reader answers pings until the peer goes away.
                while let Some(Ok(_)) = reader.next().await {}
                writer_task.await.unwrap();
            },
        )
        .await;
        let mut tcp = raw_upgraded(addr).await;
        // Let the writer fill the socket and block, then ping while it is blocked.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tcp.write_all(&masked(0x89, b"hi")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Now drain: every message and the pong must arrive.
        let (mut data, mut pongs) = (0, 0);
        while data < MESSAGES || pongs == 0 {
            match tokio::time::timeout(Duration::from_secs(5), read_server_frame(&mut tcp)).await {
                Ok((0x2, len)) => {
                    assert_eq!(len, SIZE);
                    data += 1;
                }
                Ok((0xA, _)) => pongs += 1,
                Ok(other) => panic!("unexpected frame {other:?}"),
                Err(_) => panic!("stalled after {data} of {MESSAGES} messages, {pongs} pongs"),
            }
        }
        drop(tcp);
        server.await.unwrap();
    })
    .await
}

/// A server whose connection is split, with fast keepalive timings.
fn fast_keepalive() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.config.ping_interval = Some(Duration::from_millis(100));
    config.config.pong_timeout = Duration::from_millis(200);
    config.config.close_timeout = Duration::from_millis(200);
    config
}

/// A peer that completes the handshake, then neither reads nor writes: the split reader's
/// keepalive notices (1011, not clean), and the writer, stuck on the full socket, is woken
/// and fails instead of waiting forever.
#[tokio::test]
async fn split_keepalive_ends_a_vanished_peer_and_frees_the_writer() {
    bounded(async {
        let (addr, server) = split_server(fast_keepalive(), |mut reader, mut writer| async move {
            let writer_task = tokio::spawn(async move {
                let mut sent = 0usize;
                loop {
                    match writer
                        .send(Message::Binary(vec![1u8; 64 * 1024].into()))
                        .await
                    {
                        Ok(()) => sent += 1,
                        Err(e) => return (sent, e),
                    }
                }
            });
            while let Some(item) = reader.next().await {
                assert!(item.is_ok(), "{item:?}");
            }
            let ev = reader.close_event().unwrap();
            (ev, writer_task.await.unwrap())
        })
        .await;
        let tcp = raw_upgraded(addr).await;
        // Silent from here on, with the socket kept open.
        let started = std::time::Instant::now();
        let (ev, (sent, err)) = server.await.unwrap();
        assert_eq!(ev.code, CloseCode::INTERNAL_ERROR, "{ev:?}");
        assert!(!ev.was_clean, "{ev:?}");
        assert!(matches!(err, Error::Closed), "{err:?}");
        assert!(sent > 0);
        // ping after 100 ms, pong timeout 200 ms later, close timeout 200 ms: well under 5 s.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        drop(tcp);
    })
    .await
}

/// A peer that answers pings keeps a split connection open across many ping intervals.
#[tokio::test]
async fn split_keepalive_keeps_a_live_peer() {
    bounded(async {
        let (addr, server) = split_server(fast_keepalive(), |mut reader, mut writer| async move {
            let reading = tokio::spawn(async move {
                let mut pongs = 0;
                while let Some(item) = reader.next().await {
                    if let Message::Pong(_) = item.unwrap() {
                        pongs += 1;
                    }
                }
                (pongs, reader.rtt(), reader.close_event().unwrap())
            });
            tokio::time::sleep(Duration::from_millis(800)).await;
            writer.send(Message::text("still here")).await.unwrap();
            reading.await.unwrap()
        })
        .await;
        let mut client = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
        let mut pings = 0;
        loop {
            match client.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Text(t))) => {
                    assert_eq!(t, "still here");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        client.close(None).await.unwrap();
        let (pongs, rtt, ev) = server.await.unwrap();
        assert!(pings >= 4, "{pings} pings in 800 ms at a 100 ms interval");
        // The answers are the connection's own (they measure the round trip), not events.
        assert_eq!(pongs, 0);
        assert!(rtt.is_some());
        assert!(ev.was_clean, "{ev:?}");
    })
    .await
}

/// A peer that keeps sending (so no keepalive ping is due) but never reads: the split
/// writer's output stalls, the write timeout ends the connection for both halves.
#[tokio::test]
async fn split_write_timeout_ends_a_peer_that_never_reads() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.config.write_timeout = Some(Duration::from_millis(300));
        let (addr, server) = split_server(config, |mut reader, mut writer| async move {
            let writer_task = tokio::spawn(async move {
                loop {
                    let msg = Message::Binary(vec![1u8; 64 * 1024].into());
                    if let Err(e) = writer.send(msg).await {
                        return e;
                    }
                }
            });
            let mut reader_error = None;
            while let Some(item) = reader.next().await {
                if let Err(e) = item {
                    reader_error = Some(e);
                }
            }
            (reader_error, writer_task.await.unwrap())
        })
        .await;
        let mut tcp = raw_upgraded(addr).await;
        let started = std::time::Instant::now();
        let talker = tokio::spawn(async move {
            // A ping every 50 ms, never a read.
            while tcp.write_all(&masked(0x89, b"x")).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let (reader_error, writer_error) = server.await.unwrap();
        assert!(
            matches!(writer_error, Error::Timeout(wsx::Timeout::Write)),
            "{writer_error:?}"
        );
        assert!(
            matches!(reader_error, Some(Error::Timeout(wsx::Timeout::Write))),
            "{reader_error:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        talker.abort();
    })
    .await
}
