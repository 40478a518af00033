//! Keepalive, timeouts, backpressure, caps, origin policy and graceful shutdown, over real
//! loopback sockets. Timeouts are set short so every test ends in a few seconds.

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx::{CloseCode, Message, Server, ServerConfig};

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn echo_server(config: ServerConfig) -> SocketAddr {
    let server = Server::bind("127.0.0.1:0").await.unwrap().config(config);
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

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A raw client that completes the handshake and then reads frames without answering.
async fn raw_client(addr: SocketAddr, extra_headers: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = UPGRADE.replace("Host: x\r\n", &format!("Host: x\r\n{extra_headers}"));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// Reads server frames until a close frame; returns its code.
async fn read_until_close(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 2 {
            let len = (buf[1] & 0x7F) as usize;
            assert!(len < 126, "test helper handles short frames only");
            if buf.len() < 2 + len {
                break;
            }
            if buf[0] & 0x0F == 0x8 {
                return (len >= 2).then(|| u16::from_be_bytes([buf[2], buf[3]]));
            }
            buf.drain(..2 + len);
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn unanswered_pings_end_in_1011_and_answered_ones_measure_rtt() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.config.ping_interval = Some(ms(200));
        config.config.pong_timeout = ms(300);
        let addr = echo_server(config).await;

        let (mut raw, head) = raw_client(addr, "").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let start = Instant::now();
        assert_eq!(read_until_close(&mut raw).await, Some(1011));
        let took = start.elapsed();
        assert!(took >= ms(400) && took < ms(3000), "{took:?}");

        // A wsx client answers pings by itself; with its own keepalive it measures RTT.
        let opts = wsx::Config {
            ping_interval: Some(ms(100)),
            ..Default::default()
        };
        let mut ws = wsx::ClientBuilder::new(format!("ws://{addr}/"))
            .config(opts)
            .connect()
            .await
            .unwrap();
        let until = Instant::now() + ms(1200);
        while Instant::now() < until {
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("connection should stay open: {other:?}"),
                },
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
        assert!(ws.rtt().is_some());
        assert_eq!(ws.state(), wsx::State::Open);
    })
    .await
}

#[tokio::test]
async fn idle_timeout_closes_with_1001() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.config.ping_interval = None;
        config.config.idle_timeout = Some(ms(300));
        let addr = echo_server(config).await;
        let mut ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GOING_AWAY),
            other => panic!("{other:?}"),
        }
    })
    .await
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_after_the_write_timeout() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.config.write_timeout = Some(ms(500));
        config.config.write_buffer_high_water = 256 * 1024;
        let server = Server::bind("127.0.0.1:0").await.unwrap().config(config);
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
        tokio::spawn(server.serve(move |mut ws, _| {
            let tx = tx.clone();
            async move {
                let big = Message::binary(vec![7u8; 1 << 20]);
                let start = Instant::now();
                let mut sent = 0usize;
                let err = loop {
                    match ws.send(big.clone()).await {
                        Ok(()) => sent += 1,
                        Err(e) => break e,
                    }
                    assert!(sent < 1000, "the peer never reads; sends must stop");
                };
                let held = ws.buffered_amount();
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send((err.to_string(), start.elapsed(), held));
                }
            }
        }));
        let (_raw, head) = raw_client(addr, "").await; // never reads after the head
        assert!(head.starts_with("HTTP/1.1 101"));
        let (err, took, held) = rx.await.unwrap();
        assert!(err.contains("timed out"), "{err}");
        assert!(took < ms(10_000), "{took:?}");
        // Memory held by the stuck connection is bounded by the high-water mark + one message.
        assert!(held <= 256 * 1024 + (1 << 20) + 64, "{held}");
    })
    .await
}

#[tokio::test]
async fn try_send_reports_full() {
    bounded(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ws = wsx::accept(tcp).await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await; // never reads
        });
        let opts = wsx::Config {
            write_buffer_high_water: 64 * 1024,
            ..Default::default()
        };
        let mut ws = wsx::ClientBuilder::new(format!("ws://{addr}/"))
            .config(opts)
            .connect()
            .await
            .unwrap();
        let mut full = None;
        for i in 0..10_000 {
            match ws.try_send(Message::binary(vec![1u8; 64 * 1024])) {
                Ok(()) => {}
                Err(wsx::TrySendError::Full(m)) => {
                    full = Some((i, m));
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        let (_, returned) = full.expect("buffer never filled up");
        assert_eq!(returned.len(), 64 * 1024, "the message is handed back");
        assert!(ws.buffered_amount() > 64 * 1024);
    })
    .await
}

async fn status_of(addr: SocketAddr, extra_headers: &str) -> String {
    let (_, head) = raw_client(addr, extra_headers).await;
    head.lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn connection_caps_and_origin_policy() {
    bounded(async {
        let config = ServerConfig {
            max_connections: Some(3),
            allowed_origins: Some(vec![
                "https://ok.example".into(),
                "https://*.ok.example".into(),
            ]),
            ..Default::default()
        };
        let addr = echo_server(config).await;
        assert!(status_of(addr, "Origin: https://evil.example\r\n")
            .await
            .starts_with("HTTP/1.1 403"));
        assert!(status_of(addr, "Origin: https://a.ok.example\r\n")
            .await
            .starts_with("HTTP/1.1 101"));
        let mut held = Vec::new();
        for _ in 0..3 {
            let (s, head) = raw_client(addr, "Origin: https://ok.example\r\n").await;
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            held.push(s);
        }
        let (_, head) = raw_client(addr, "").await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(head.contains("Retry-After"), "{head}");
        drop(held);
        // Slots free up when connections end.
        let mut ok = false;
        for _ in 0..50 {
            if status_of(addr, "").await.starts_with("HTTP/1.1 101") {
                ok = true;
                break;
            }
            tokio::time::sleep(ms(20)).await;
        }
        assert!(ok, "slots were not released");

        let addr = echo_server(ServerConfig {
            max_connections_per_ip: Some(2),
            ..Default::default()
        })
        .await;
        let _a = raw_client(addr, "").await;
        let _b = raw_client(addr, "").await;
        assert!(status_of(addr, "").await.starts_with("HTTP/1.1 429"));
    })
    .await
}

#[tokio::test]
async fn slow_request_head_gets_408() {
    bounded(async {
        let addr = echo_server(ServerConfig {
            handshake_timeout: ms(300),
            ..Default::default()
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let mut out = Vec::new();
        let start = Instant::now();
        s.read_to_end(&mut out).await.unwrap();
        assert!(start.elapsed() < ms(3000));
        assert!(
            String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"),
            "{out:?}"
        );
    })
    .await
}

#[tokio::test]
async fn graceful_shutdown_closes_everyone_with_1001() {
    graceful_shutdown(None).await
}

#[tokio::test]
async fn graceful_shutdown_with_worker_threads() {
    graceful_shutdown(Some(2)).await
}

/// Five echo connections, then a shutdown: each gets 1001 and closes cleanly. With worker
/// threads, the handlers must have run on them, spread over both.
async fn graceful_shutdown(workers: Option<usize>) {
    bounded(async {
        let mut server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .config(ServerConfig {
                shutdown_timeout: Duration::from_secs(5),
                ..Default::default()
            });
        if let Some(n) = workers {
            server = server.worker_threads(n);
        }
        let threads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = threads.clone();
        let addr = server.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve_until(
            move |mut ws, _| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .push(std::thread::current().name().map(str::to_owned));
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_data() && ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                }
            },
            || wsx::NoHook,
            async {
                let _ = stop_rx.await;
            },
        ));
        let mut clients = Vec::new();
        for _ in 0..5 {
            let mut ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
            ws.send(Message::text("hi")).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
            clients.push(ws);
        }
        let readers: Vec<_> = clients
            .into_iter()
            .map(|mut ws| {
                tokio::spawn(async move {
                    let mut code = None;
                    while let Some(m) = ws.next().await {
                        if let Ok(Message::Close(Some(f))) = m {
                            code = Some(f.code);
                        }
                    }
                    (code, ws.close_event().map(|e| e.was_clean))
                })
            })
            .collect();
        stop_tx.send(()).unwrap();
        let report = serving.await.unwrap().unwrap();
        for r in readers {
            assert_eq!(r.await.unwrap(), (Some(CloseCode::GOING_AWAY), Some(true)));
        }
        assert_eq!(report.open, 5);
        assert_eq!(report.closed_cleanly, 5);
        assert_eq!(report.dropped, 0);
        // No longer accepting.
        assert!(wsx::connect(&format!("ws://{addr}/")).await.is_err());
        let mut names = threads.lock().unwrap().clone();
        names.sort();
        names.dedup();
        match workers {
            Some(_) => assert_eq!(
                names,
                [Some("wsx-worker-0".into()), Some("wsx-worker-1".into())]
            ),
            None => assert!(names
                .iter()
                .all(|n| !n.as_deref().unwrap_or("").starts_with("wsx-worker"))),
        }
    })
    .await
}

#[tokio::test]
async fn try_send_hands_the_message_back_once_closing() {
    bounded(async {
        let addr = echo_server(ServerConfig::default()).await;
        let mut ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
        ws.try_send(Message::text("before")).unwrap();
        ws.send(Message::Close(None)).await.unwrap();
        match ws.try_send(Message::text("after")) {
            Err(wsx::TrySendError::Closed(m)) => assert_eq!(m, Message::text("after")),
            other => panic!("{other:?}"),
        }
    })
    .await
}
