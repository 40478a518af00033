//! wsx's axum extractor (feature `axum`) under `axum::serve`: HTTP/1.1 and HTTP/2, the
//! rejections, and the graceful shutdown helper.
#![cfg(feature = "axum")]

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use wsx::axum::{Shutdown, WebSocketUpgrade};
use wsx::{CloseCode, CloseFrame, DeflateConfig, Message, ServerConfig};

mod support;
use support::{bounded, extended_connect, h2_client, raw, websocket_on, GOOD_UPGRADE};

#[derive(Clone)]
struct App {
    config: Arc<ServerConfig>,
    shutdown: Shutdown,
}

async fn ws(State(app): State<App>, upgrade: WebSocketUpgrade) -> axum::response::Response {
    upgrade
        .protocols(["echo"])
        .config(app.config.clone())
        .shutdown(&app.shutdown)
        .on_upgrade(|mut ws| async move {
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_data() && ws.send(msg).await.is_err() {
                    break;
                }
            }
        })
}

async fn app_server() -> (SocketAddr, Shutdown) {
    let mut config = ServerConfig::default();
    config.config.deflate = Some(DeflateConfig::default());
    let app = App {
        config: Arc::new(config),
        shutdown: Shutdown::new(),
    };
    let shutdown = app.shutdown.clone();
    let router = Router::new()
        .route("/ws", get(ws).connect(ws))
        .route("/", get(|| async { "plain\n" }))
        .with_state(app);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, shutdown)
}

#[tokio::test]
async fn http1_through_axum_with_deflate_and_a_subprotocol() {
    bounded(async {
        let (addr, _) = app_server().await;
        let mut ws = wsx::ClientBuilder::new(format!("ws://{addr}/ws"))
            .protocol("echo")
            .connect()
            .await
            .unwrap();
        assert!(ws.is_compressed());
        assert_eq!(ws.protocol(), Some("echo"));
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        for msg in [Message::text("hello"), Message::binary(big)] {
            ws.send(msg.clone()).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), msg);
        }
        let end = ws
            .close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))
            .await
            .unwrap();
        assert!(end.was_clean);
    })
    .await
}

#[tokio::test]
async fn bad_requests_are_rejected_with_the_servers_statuses() {
    bounded(async {
        let (addr, _) = app_server().await;
        let good = GOOD_UPGRADE;
        assert!(raw(addr, good).await.starts_with("HTTP/1.1 101"));
        for (request, status) in [
            (good.replace("Version: 13", "Version: 8"), "426"),
            (good.replace("Upgrade: websocket\r\n", ""), "400"),
            (good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), "400"),
        ] {
            let head = raw(addr, &request).await;
            assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
        }
    })
    .await
}

#[tokio::test]
async fn http2_extended_connect_through_axum_serve() {
    bounded(async {
        let (addr, _) = app_server().await;
        let mut send = h2_client(addr).await;
        let response = send
            .send_request(extended_connect(addr, "websocket"))
            .await
            .unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], "echo");
        let mut ws = websocket_on(response, Some("echo")).await;
        ws.send(Message::text("over h2")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over h2"));
        assert!(ws.close(None).await.unwrap().was_clean);
    })
    .await
}

#[tokio::test]
async fn shutdown_closes_the_apps_websockets_with_1001() {
    bounded(async {
        let (addr, shutdown) = app_server().await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            let mut ws = wsx::connect(&format!("ws://{addr}/ws")).await.unwrap();
            ws.send(Message::text("hi")).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
            clients.push(ws);
        }
        let readers: Vec<_> = clients
            .into_iter()
            .map(|mut ws| {
                tokio::spawn(async move {
                    while ws.next().await.is_some() {}
                    ws.close_event().map(|e| (e.code, e.was_clean))
                })
            })
            .collect();
        let report = shutdown.close_all(Duration::from_secs(5)).await;
        assert_eq!(report.open, 3);
        assert_eq!(report.closed_cleanly, 3);
        assert_eq!(report.dropped, 0);
        for r in readers {
            assert_eq!(r.await.unwrap(), Some((CloseCode::GOING_AWAY, true)));
        }
        // Upgraded after the shutdown began: closed with 1001 at once.
        let mut late = wsx::connect(&format!("ws://{addr}/ws")).await.unwrap();
        let first = late.next().await.unwrap().unwrap();
        assert!(
            matches!(&first, Message::Close(Some(f)) if f.code == CloseCode::GOING_AWAY),
            "{first:?}"
        );
    })
    .await
}
