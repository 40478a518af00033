//! Echo servers for the comparison benchmark (`scripts/bench-compare.sh`): wsx,
//! tokio-tungstenite and fastwebsockets, each on a single-threaded tokio runtime so that
//! pinning the process to one core measures one core's worth of server.
//!
//! `echo-servers wsx|tungstenite|fastwebsockets ADDR`
//!
//! `echo-servers tungstenite-broadcast ADDR` is the fan-out anchor of
//! `scripts/bench_fanout.py`: a tokio-tungstenite hub on a `tokio::sync::broadcast` ring that
//! relays every message to every other client, feeding each client everything queued for it
//! and then flushing once (the straightforward way to batch with tungstenite).
//!
//! Compression is off everywhere (the other two do not implement it). fastwebsockets has
//! no handshake of its own without hyper, so its upgrade is done by the wsx-proto
//! handshake code (the handshake is not what is measured).

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// jemalloc for all three servers alike. With glibc's malloc the 128-byte-aligned blocks
/// tokio allocates per connection (its task cell and the socket's `ScheduledIo`) leave
/// unusable fragments: about 290 bytes per connection, a fifth of a wsx connection's
/// footprint (BENCHMARKS.md, "Memory per idle connection").
#[cfg(unix)]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_default();
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9001".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Built once and shared, as a real server would (not per connection).
    let mut config = wsx::ServerConfig::default();
    config.config.deflate = None;
    let wsx_config = std::sync::Arc::new(config);
    let (ring, _) =
        tokio::sync::broadcast::channel::<(u64, tokio_tungstenite::tungstenite::Message)>(4096);
    let mut next_id = 0u64;
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("{which} echo server on {addr}");
        if which.starts_with("axum-") {
            return axum_echo(&which, listener, wsx_config.clone()).await;
        }
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            match which.as_str() {
                "wsx" => tokio::spawn(wsx_echo(tcp, wsx_config.clone())),
                "wsx-hyper" => tokio::spawn(wsx_hyper_echo(tcp, wsx_config.clone())),
                "tungstenite" => tokio::spawn(tungstenite_echo(tcp)),
                "fastwebsockets" => tokio::spawn(fastwebsockets_echo(tcp)),
                "tungstenite-broadcast" => {
                    next_id += 1;
                    tokio::spawn(tungstenite_broadcast(tcp, ring.clone(), next_id))
                }
                other => {
                    anyhow::bail!("unknown server {other:?}: wsx, wsx-hyper, axum-wsx, axum-ws, tungstenite, fastwebsockets or tungstenite-broadcast")
                }
            };
        }
    })
}

async fn wsx_echo(tcp: TcpStream, config: std::sync::Arc<wsx::ServerConfig>) {
    let Ok(mut ws) = wsx::accept_with(tcp, &config, wsx::NoHook).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// The same echo loop behind a hyper 1 HTTP/1.1 server: hyper reads the request,
/// `wsx::hyper::upgrade` answers it, and the WebSocket runs on hyper's upgraded connection.
async fn wsx_hyper_echo(tcp: TcpStream, config: std::sync::Arc<wsx::ServerConfig>) {
    let service = hyper::service::service_fn(move |mut req| {
        let config = config.clone();
        async move {
            let response = match wsx::hyper::upgrade::<_, String>(&mut req, &config) {
                Ok((response, websocket)) => {
                    tokio::spawn(async move {
                        let Ok(mut ws) = websocket.await else { return };
                        while let Some(Ok(msg)) = ws.next().await {
                            if msg.is_data() && ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                    });
                    response
                }
                Err(rejection) => rejection,
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
        .with_upgrades()
        .await;
}

/// The same echo endpoint in an axum app under `axum::serve`: `axum-wsx` with wsx's
/// extractor (`wsx::axum::WebSocketUpgrade`), `axum-ws` with axum's own
/// (`axum::extract::ws`, on tokio-tungstenite).
async fn axum_echo(
    which: &str,
    listener: TcpListener,
    config: std::sync::Arc<wsx::ServerConfig>,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let router = match which {
        "axum-wsx" => axum::Router::new().route(
            "/",
            get(move |upgrade: wsx::axum::WebSocketUpgrade| {
                let config = config.clone();
                async move {
                    upgrade.config(config).on_upgrade(|mut ws| async move {
                        while let Some(Ok(msg)) = ws.next().await {
                            if msg.is_data() && ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                    })
                }
            }),
        ),
        "axum-ws" => axum::Router::new().route(
            "/",
            get(|upgrade: axum::extract::ws::WebSocketUpgrade| async move {
                upgrade.on_upgrade(|mut ws| async move {
                    while let Some(Ok(msg)) = ws.recv().await {
                        let data = matches!(
                            msg,
                            axum::extract::ws::Message::Text(_)
                                | axum::extract::ws::Message::Binary(_)
                        );
                        if data && ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                })
            }),
        ),
        other => anyhow::bail!("unknown axum server {other:?}: axum-wsx or axum-ws"),
    };
    axum::serve(listener, router).await?;
    Ok(())
}

async fn tungstenite_echo(tcp: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

type Ring = tokio::sync::broadcast::Sender<(u64, tokio_tungstenite::tungstenite::Message)>;

async fn tungstenite_broadcast(tcp: TcpStream, ring: Ring, id: u64) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let mut rx = ring.subscribe();
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(msg)) if msg.is_text() || msg.is_binary() => {
                    let _ = ring.send((id, msg));
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            out = rx.recv() => {
                let mut next = match out {
                    Ok(m) => Ok(m),
                    Err(RecvError::Lagged(_)) => Err(TryRecvError::Lagged(0)),
                    Err(RecvError::Closed) => break,
                };
                // Feed everything queued, then flush once.
                loop {
                    match next {
                        Ok((from, msg)) => {
                            if from != id && sink.feed(msg).await.is_err() {
                                return;
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(_) => return,
                    }
                    next = rx.try_recv();
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
        }
    }
}

async fn fastwebsockets_echo(mut tcp: TcpStream) {
    use wsx_proto::handshake::server;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let response = loop {
        match server::parse_request(&buf, 16 * 1024) {
            Ok(Some((req, _))) => match server::accept(&req, &Default::default(), server::NoHook) {
                Ok((response, _)) => break response,
                Err(_) => return,
            },
            Ok(None) => {}
            Err(_) => return,
        }
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    if tcp.write_all(&response).await.is_err() {
        return;
    }
    let mut ws = fastwebsockets::FragmentCollector::new(
        fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Server),
    );
    loop {
        let frame = match ws.read_frame().await {
            Ok(f) => f,
            Err(_) => break,
        };
        match frame.opcode {
            fastwebsockets::OpCode::Close => break,
            fastwebsockets::OpCode::Text | fastwebsockets::OpCode::Binary => {}
            _ => continue,
        }
        if ws.write_frame(frame).await.is_err() {
            break;
        }
    }
}
