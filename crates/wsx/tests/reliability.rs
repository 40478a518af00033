//! Keepalive, timeouts, backpressure, limits, buffer release, caps, origin policy and
//! graceful shutdown, over real loopback sockets. Timeouts are set short so every test ends
//! in a few seconds.
//!
//! The behaviour tests run on both shapes of a connection: the whole [`wsx::WebSocket`] and
//! its split halves used from two tasks ([`Shape`]). Both are driven by one driver, and
//! these tests keep it so.

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx::{CloseCode, MaybeTlsStream, Message, Server, ServerConfig, WebSocket};

/// How a handler uses its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// The whole `WebSocket`, from one task.
    Whole,
    /// `split()`, the reader in one task and the writer in another.
    Split,
}

const SHAPES: [Shape; 2] = [Shape::Whole, Shape::Split];

/// Echoes data messages until the connection ends.
async fn echo(ws: WebSocket<MaybeTlsStream>, shape: Shape) {
    match shape {
        Shape::Whole => {
            let mut ws = ws;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_data() && ws.send(msg).await.is_err() {
                    break;
                }
            }
        }
        Shape::Split => {
            let (mut reader, mut writer) = ws.split();
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(16);
            let writing = tokio::spawn(async move {
                while let Some(msg) = rx.recv().await {
                    if writer.send(msg).await.is_err() {
                        break;
                    }
                }
            });
            while let Some(Ok(msg)) = reader.next().await {
                if msg.is_data() && tx.send(msg).await.is_err() {
                    break;
                }
            }
            drop(tx);
            let _ = writing.await;
        }
    }
}

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn echo_server(config: ServerConfig, shape: Shape) -> SocketAddr {
    let server = Server::bind("127.0.0.1:0").await.unwrap().config(config);
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(move |ws, _| echo(ws, shape)));
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
async fn read_until_close(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<u16> {
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
    for shape in SHAPES {
        unanswered_pings(shape).await;
    }
}

async fn unanswered_pings(shape: Shape) {
    bounded(async {
        let mut config = ServerConfig::default();
        config.config.ping_interval = Some(ms(200));
        config.config.pong_timeout = ms(300);
        let addr = echo_server(config, shape).await;

        let (mut raw, head) = raw_client(addr, "").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let start = Instant::now();
        assert_eq!(read_until_close(&mut raw).await, Some(1011), "{shape:?}");
        let took = start.elapsed();
        assert!(took >= ms(400) && took < ms(3000), "{shape:?}: {took:?}");

        // A wsx client answers pings by itself; with its own keepalive it measures RTT.
        let opts = {
            let mut c = wsx::Config::default();
            c.ping_interval = Some(ms(100));
            c
        };
        let ws = wsx::ClientBuilder::new(format!("ws://{addr}/"))
            .config(opts)
            .connect()
            .await
            .unwrap();
        let (mut reader, writer) = client_halves(ws, shape);
        let until = Instant::now() + ms(1200);
        while Instant::now() < until {
            tokio::select! {
                m = reader.next() => match m {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("{shape:?}: connection should stay open: {other:?}"),
                },
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
        assert!(reader.rtt().is_some(), "{shape:?}");
        assert!(writer.rtt().is_some(), "{shape:?}");
        assert_eq!(reader.state(), wsx::State::Open);
    })
    .await
}

/// A client connection as a reader and a writer: for `Whole`, both are the one socket
/// (behind a shared lock, used from one task at a time); for `Split`, the two halves.
fn client_halves(ws: WebSocket<MaybeTlsStream>, shape: Shape) -> (Either, Either) {
    match shape {
        Shape::Whole => {
            let ws = std::sync::Arc::new(tokio::sync::Mutex::new(ws));
            (Either::Whole(ws.clone()), Either::Whole(ws))
        }
        Shape::Split => {
            let (r, w) = ws.split();
            (Either::Reader(r), Either::Writer(w))
        }
    }
}

type Shared = std::sync::Arc<tokio::sync::Mutex<WebSocket<MaybeTlsStream>>>;

/// One side of [`client_halves`].
enum Either {
    Whole(Shared),
    Reader(wsx::WsReader<MaybeTlsStream>),
    Writer(wsx::WsWriter<MaybeTlsStream>),
}

impl Either {
    async fn next(&mut self) -> Option<wsx::Result<Message>> {
        match self {
            Either::Whole(ws) => ws.lock().await.next().await,
            Either::Reader(r) => r.next().await,
            Either::Writer(_) => unreachable!("the writer does not read"),
        }
    }

    async fn send(&mut self, msg: Message) -> wsx::Result<()> {
        match self {
            Either::Whole(ws) => ws.lock().await.send(msg).await,
            Either::Writer(w) => w.send(msg).await,
            Either::Reader(_) => unreachable!("the reader does not write"),
        }
    }

    fn try_send(&mut self, msg: Message) -> Result<(), wsx::TrySendError> {
        match self {
            Either::Whole(ws) => ws.try_lock().unwrap().try_send(msg),
            Either::Writer(w) => w.try_send(msg),
            Either::Reader(_) => unreachable!("the reader does not write"),
        }
    }

    fn rtt(&self) -> Option<Duration> {
        match self {
            Either::Whole(ws) => ws.try_lock().unwrap().rtt(),
            Either::Reader(r) => r.rtt(),
            Either::Writer(w) => w.rtt(),
        }
    }

    fn state(&self) -> wsx::State {
        match self {
            Either::Whole(ws) => ws.try_lock().unwrap().state(),
            Either::Reader(r) => r.state(),
            Either::Writer(w) => w.state(),
        }
    }

    fn buffered_amount(&self) -> usize {
        match self {
            Either::Whole(ws) => ws.try_lock().unwrap().buffered_amount(),
            Either::Reader(r) => r.buffered_amount(),
            Either::Writer(w) => w.buffered_amount(),
        }
    }
}

#[tokio::test]
async fn idle_timeout_closes_with_1001() {
    for shape in SHAPES {
        bounded(async {
            let mut config = ServerConfig::default();
            config.config.ping_interval = None;
            config.config.idle_timeout = Some(ms(300));
            let addr = echo_server(config, shape).await;
            let mut ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => {
                    assert_eq!(f.code, CloseCode::GOING_AWAY, "{shape:?}")
                }
                other => panic!("{shape:?}: {other:?}"),
            }
            assert!(ws.next().await.is_none());
            assert!(ws.close_event().unwrap().was_clean, "{shape:?}");
        })
        .await
    }
}

/// Our close frame is never answered: the connection ends with 1006 (not clean) after the
/// close timeout, and the transport is closed.
#[tokio::test]
async fn an_unanswered_close_ends_after_the_close_timeout() {
    for shape in SHAPES {
        bounded(async {
            let mut config = ServerConfig::default();
            config.config.close_timeout = ms(300);
            let server = Server::bind("127.0.0.1:0").await.unwrap().config(config);
            let addr = server.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
            tokio::spawn(server.serve(move |ws, _| {
                let tx = tx.clone();
                async move {
                    let start = Instant::now();
                    let end = match shape {
                        Shape::Whole => {
                            let mut ws = ws;
                            ws.close(Some(wsx::CloseFrame::new(CloseCode::NORMAL, "bye")))
                                .await
                                .unwrap()
                        }
                        Shape::Split => {
                            let (mut reader, mut writer) = ws.split();
                            let reading = tokio::spawn(async move {
                                while reader.next().await.is_some() {}
                                reader.close_event().unwrap()
                            });
                            writer
                                .close(Some(wsx::CloseFrame::new(CloseCode::NORMAL, "bye")))
                                .await
                                .unwrap();
                            reading.await.unwrap()
                        }
                    };
                    if let Some(tx) = tx.lock().unwrap().take() {
                        let _ = tx.send((end, start.elapsed()));
                    }
                }
            }));
            let (mut raw, _) = raw_client(addr, "").await;
            // Read the close frame, never answer it; then wait for the server's FIN.
            assert_eq!(read_until_close(&mut raw).await, Some(1000), "{shape:?}");
            let (end, took) = rx.await.unwrap();
            assert_eq!(end.code, CloseCode::ABNORMAL, "{shape:?}: {end:?}");
            assert!(!end.was_clean);
            assert!(took >= ms(300) && took < ms(3000), "{shape:?}: {took:?}");
            let mut rest = Vec::new();
            let n = tokio::time::timeout(ms(2000), raw.read_to_end(&mut rest)).await;
            assert!(
                matches!(n, Ok(Ok(_))),
                "{shape:?}: transport not closed: {n:?}"
            );
        })
        .await
    }
}

/// A message over the limit is refused with 1009, on either shape.
#[tokio::test]
async fn message_limit_is_1009() {
    for shape in SHAPES {
        bounded(async {
            let mut config = ServerConfig::default();
            config.config.max_message_size = 1000;
            let addr = echo_server(config, shape).await;
            let mut ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
            ws.send(Message::binary(vec![1u8; 1000])).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap().len(), 1000);
            ws.send(Message::binary(vec![1u8; 1001])).await.unwrap();
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => {
                    assert_eq!(f.code, CloseCode::MESSAGE_TOO_BIG, "{shape:?}")
                }
                other => panic!("{shape:?}: {other:?}"),
            }
        })
        .await
    }
}

/// A connection that goes quiet gives its buffers back, on either shape (the halves are
/// put back together to look).
#[tokio::test]
async fn quiet_connections_release_their_buffers() {
    for shape in SHAPES {
        bounded(async {
            let addr = echo_server(ServerConfig::default(), Shape::Whole).await;
            // Without compression: its context (kept from message to message) is not idle
            // buffer memory.
            let ws = wsx::ClientBuilder::new(format!("ws://{addr}/"))
                .config({
                    let mut c = wsx::Config::default();
                    c.deflate = None;
                    c
                })
                .connect()
                .await
                .unwrap();
            let (mut reader, mut writer) = ws.split();
            for _ in 0..3 {
                writer
                    .send(Message::binary(vec![5u8; 100_000]))
                    .await
                    .unwrap();
                reader.next().await.unwrap().unwrap();
            }
            let mut ws = match shape {
                Shape::Split => {
                    // Quiet for longer than a second, while the reader is polled.
                    let _ = tokio::time::timeout(ms(1500), reader.next()).await;
                    reader.reunite(writer).unwrap()
                }
                Shape::Whole => {
                    let mut ws = reader.reunite(writer).unwrap();
                    let busy = ws.connection().memory_usage();
                    assert!(busy > 100_000, "{busy}");
                    let _ = tokio::time::timeout(ms(1500), ws.next()).await;
                    ws
                }
            };
            let quiet = ws.connection().memory_usage();
            assert!(quiet < 4096, "{shape:?}: kept {quiet} bytes when quiet");
            // And it works afterwards.
            ws.send(Message::text("again")).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("again"));
        })
        .await
    }
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_after_the_write_timeout() {
    for shape in SHAPES {
        write_timeout(shape).await;
    }
}

async fn write_timeout(shape: Shape) {
    bounded(async {
        let mut config = ServerConfig::default();
        config.config.write_timeout = Some(ms(500));
        config.config.write_buffer_high_water = 256 * 1024;
        let server = Server::bind("127.0.0.1:0").await.unwrap().config(config);
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
        tokio::spawn(server.serve(move |ws, _| {
            let tx = tx.clone();
            async move {
                let (mut reader, mut writer) = client_halves(ws, shape);
                // The split reader is polled meanwhile, as it should be; it must see the end.
                let reading = tokio::spawn(async move {
                    if let Either::Reader(r) = &mut reader {
                        let mut last = None;
                        while let Some(item) = r.next().await {
                            last = Some(item.map(|_| ()));
                        }
                        return last.map(|r| r.map_err(|e| e.to_string()));
                    }
                    None
                });
                let big = Message::binary(vec![7u8; 1 << 20]);
                let start = Instant::now();
                let mut sent = 0usize;
                let err = loop {
                    match writer.send(big.clone()).await {
                        Ok(()) => sent += 1,
                        Err(e) => break e,
                    }
                    assert!(sent < 1000, "the peer never reads; sends must stop");
                };
                let took = start.elapsed();
                let held = writer.buffered_amount();
                let reader_end = reading.await.unwrap();
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send((err, took, held, reader_end));
                }
            }
        }));
        let (_raw, head) = raw_client(addr, "").await; // never reads after the head
        assert!(head.starts_with("HTTP/1.1 101"));
        let (err, took, held, reader_end) = rx.await.unwrap();
        assert!(
            matches!(err, wsx::Error::Timeout(wsx::Timeout::Write)),
            "{shape:?}: {err}"
        );
        if shape == Shape::Split {
            assert_eq!(reader_end, Some(Err("write timed out".into())), "{shape:?}");
        }
        assert!(took >= ms(500) && took < ms(10_000), "{shape:?}: {took:?}");
        // Memory held by the stuck connection is bounded by the high-water mark + one message.
        assert!(held <= 256 * 1024 + (1 << 20) + 64, "{held}");
    })
    .await
}

#[tokio::test]
async fn try_send_reports_full() {
    for shape in SHAPES {
        try_send_full(shape).await;
    }
}

async fn try_send_full(shape: Shape) {
    bounded(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ws = wsx::accept(tcp).await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await; // never reads
        });
        let opts = {
            let mut c = wsx::Config::default();
            c.write_buffer_high_water = 64 * 1024;
            c
        };
        let ws = wsx::ClientBuilder::new(format!("ws://{addr}/"))
            .config(opts)
            .connect()
            .await
            .unwrap();
        let (_reader, mut ws) = client_halves(ws, shape);
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
        assert!(ws.buffered_amount() > 64 * 1024, "{shape:?}");
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
        let config = {
            let mut c = ServerConfig::default();
            c.max_connections = Some(3);
            c.allowed_origins = Some(vec![
                "https://ok.example".into(),
                "https://*.ok.example".into(),
            ]);
            c
        };
        let addr = echo_server(config, Shape::Whole).await;
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

        let addr = echo_server(
            {
                let mut c = ServerConfig::default();
                c.max_connections_per_ip = Some(2);
                c
            },
            Shape::Whole,
        )
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
        let addr = echo_server(
            {
                let mut c = ServerConfig::default();
                c.handshake_timeout = ms(300);
                c
            },
            Shape::Whole,
        )
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
    for shape in SHAPES {
        graceful_shutdown(None, shape).await
    }
}

#[tokio::test]
async fn graceful_shutdown_with_worker_threads() {
    for shape in SHAPES {
        graceful_shutdown(Some(2), shape).await
    }
}

/// Five echo connections, then a shutdown: each gets 1001 and closes cleanly, whether the
/// handlers use the whole socket or split it. With worker threads, the handlers must have
/// run on them, spread over both.
async fn graceful_shutdown(workers: Option<usize>, shape: Shape) {
    bounded(async {
        let mut server = Server::bind("127.0.0.1:0").await.unwrap().config({
            let mut c = ServerConfig::default();
            c.shutdown_timeout = Duration::from_secs(5);
            c
        });
        if let Some(n) = workers {
            server = server.worker_threads(n);
        }
        let threads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = threads.clone();
        let addr = server.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve_until(
            move |ws, _| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .push(std::thread::current().name().map(str::to_owned));
                    echo(ws, shape).await
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
            assert_eq!(
                r.await.unwrap(),
                (Some(CloseCode::GOING_AWAY), Some(true)),
                "{shape:?}"
            );
        }
        assert_eq!(report.open, 5, "{shape:?}");
        assert_eq!(report.closed_cleanly, 5, "{shape:?}");
        assert_eq!(report.dropped, 0, "{shape:?}");
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

/// Clients that never answer the server's 1001 (they are not polled): after the shutdown
/// timeout, `serve_until` returns with them counted as dropped, and their handlers, which
/// wait on their sockets, are dropped then, on the caller's runtime as on worker threads
/// (the server keeps no handle per connection: the signal wakes them through their timers).
#[tokio::test]
async fn shutdown_drops_the_connections_left_after_its_timeout() {
    for workers in [None, Some(1)] {
        bounded(async {
            let mut server = Server::bind("127.0.0.1:0").await.unwrap().config({
                let mut c = ServerConfig::default();
                c.shutdown_timeout = ms(300);
                c.config.close_timeout = Duration::from_secs(30);
                c.config.ping_interval = None;
                c
            });
            if let Some(n) = workers {
                server = server.worker_threads(n);
            }
            let addr = server.local_addr().unwrap();
            let live = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            struct Live(std::sync::Arc<std::sync::atomic::AtomicUsize>);
            impl Drop for Live {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let counted = live.clone();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let serving = tokio::spawn(server.serve_until(
                move |ws, _| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let guard = Live(counted.clone());
                    async move {
                        echo(ws, Shape::Whole).await;
                        drop(guard);
                    }
                },
                || wsx::NoHook,
                async {
                    let _ = stop_rx.await;
                },
            ));
            let mut silent = Vec::new();
            for _ in 0..3 {
                let mut ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
                ws.send(Message::text("hi")).await.unwrap();
                assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
                silent.push(ws);
            }
            assert_eq!(live.load(std::sync::atomic::Ordering::SeqCst), 3);
            let started = Instant::now();
            stop_tx.send(()).unwrap();
            let report = serving.await.unwrap().unwrap();
            let took = started.elapsed();
            assert!(took >= ms(300) && took < ms(3000), "{took:?}, {workers:?}");
            assert_eq!(report.open, 3, "{workers:?}");
            assert_eq!(report.closed_cleanly, 0, "{workers:?}");
            assert_eq!(report.dropped, 3, "{workers:?}");
            let deadline = Instant::now() + ms(2000);
            while live.load(std::sync::atomic::Ordering::SeqCst) != 0 {
                assert!(
                    Instant::now() < deadline,
                    "handlers left running: {workers:?}"
                );
                tokio::time::sleep(ms(10)).await;
            }
            // The clients see the server's 1001, then the connection end.
            for mut ws in silent {
                let first = ws.next().await.unwrap().unwrap();
                assert!(
                    matches!(&first, Message::Close(Some(f)) if f.code == CloseCode::GOING_AWAY),
                    "{first:?}"
                );
            }
        })
        .await
    }
}

#[tokio::test]
async fn try_send_hands_the_message_back_once_closing() {
    bounded(async {
        let addr = echo_server(ServerConfig::default(), Shape::Whole).await;
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

/// A masked frame header (client to server) for `len` bytes of payload, mask key zero (so
/// the payload goes as it is).
fn masked_header(first_byte: u8, len: usize) -> Vec<u8> {
    let mut h = vec![first_byte];
    if len < 126 {
        h.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        h.push(0x80 | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(0x80 | 127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// Under a server-wide memory budget, on both shapes: the connection holding most of it
/// stops reading (and is closed with 1013 when that lasts), another connection's large
/// message is refused with 1009 while its small ones are still echoed, new connections get
/// 503, and everything is back once the memory is freed.
#[tokio::test]
async fn memory_budget_pauses_refuses_and_recovers() {
    for shape in SHAPES {
        bounded(memory_budget(shape)).await;
    }
}

async fn memory_budget(shape: Shape) {
    let budget = wsx::MemoryBudget::new(4 << 20);
    let mut config = ServerConfig::default();
    config.config.memory_budget = Some(budget.clone());
    let addr = echo_server(config, shape).await;
    let mut small = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
    // The hog: a fragment announcing 3.8 MiB (95% of the budget), sent in full.
    let (hog, head) = raw_client(addr, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (mut hog_rx, mut hog_tx) = hog.into_split();
    let fragment = 3_800 << 10;
    let writer = tokio::spawn(async move {
        let _ = hog_tx.write_all(&masked_header(0x02, fragment)).await;
        let _ = hog_tx.write_all(&vec![0u8; fragment]).await;
        hog_tx
    });
    let t0 = Instant::now();
    while budget.used() < fragment {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{:?}",
            budget.stats()
        );
        tokio::time::sleep(ms(10)).await;
    }
    // Small messages still go through; a large one is refused.
    small.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        small.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
    small
        .send(Message::binary(vec![1u8; 512 << 10]))
        .await
        .unwrap();
    match small.next().await {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(f.code, CloseCode::MESSAGE_TOO_BIG, "{shape:?}")
        }
        other => panic!("{shape:?}: {other:?}"),
    }
    // New connections are refused; plain requests would still be answered.
    let (_, head) = raw_client(addr, "").await;
    assert!(head.starts_with("HTTP/1.1 503"), "{shape:?}: {head}");
    // The hog is paused; after MAX_PAUSE (5 s) it gets 1013 and its memory is freed.
    assert_eq!(read_until_close(&mut hog_rx).await, Some(1013), "{shape:?}");
    let stats = budget.stats();
    assert!(stats.paused_reads >= 1, "{stats:?}");
    assert_eq!(stats.overload_closes, 1, "{stats:?}");
    assert_eq!(stats.refused_messages, 1, "{stats:?}");
    assert_eq!(stats.refused_connections, 1, "{stats:?}");
    drop(writer.await);
    let t1 = Instant::now();
    while budget.used() > 0 {
        assert!(
            t1.elapsed() < Duration::from_secs(5),
            "{:?}",
            budget.stats()
        );
        tokio::time::sleep(ms(10)).await;
    }
    assert!(status_of(addr, "").await.starts_with("HTTP/1.1 101"));
}
