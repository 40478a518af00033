//! An axum app with a wsx WebSocket endpoint: `/ws` echoes (permessage-deflate on, the `chat`
//! subprotocol offered), `/` serves a page that talks to it, and Ctrl-C closes the
//! WebSockets with 1001 before axum stops. HTTP/1.1, or HTTP/2 (axum's serve offers
//! extended CONNECT to clients that speak HTTP/2 with prior knowledge).
//!
//! `cargo run -p wsx --features axum --example axum_app [ADDR]` (default 127.0.0.1:3000).

use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use wsx::axum::{Shutdown, WebSocketUpgrade};

#[derive(Clone)]
struct App {
    config: Arc<wsx::ServerConfig>,
    shutdown: Shutdown,
}

async fn ws(State(app): State<App>, upgrade: WebSocketUpgrade) -> axum::response::Response {
    let path = upgrade.request().path().to_owned();
    upgrade
        .protocols(["chat"])
        .config(app.config.clone())
        .shutdown(&app.shutdown)
        .on_failed_upgrade(|e| eprintln!("upgrade failed: {e}"))
        .on_upgrade(move |mut ws| async move {
            eprintln!("{path}: open (compressed: {})", ws.is_compressed());
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_data() && ws.send(msg).await.is_err() {
                    break;
                }
            }
            eprintln!("{path}: closed ({:?})", ws.close_event().map(|e| e.code));
        })
}

const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>wsx + axum</title>
<pre id="log"></pre><script>
const log = (s) => document.getElementById("log").textContent += s + "\n";
const ws = new WebSocket(`ws://${location.host}/ws`, ["chat"]);
ws.onopen = () => { log(`open, protocol ${ws.protocol}, extensions ${ws.extensions}`); ws.send("hello"); };
ws.onmessage = (e) => log(`echo: ${e.data}`);
ws.onclose = (e) => log(`closed ${e.code} ${e.reason}`);
</script>"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let mut config = wsx::ServerConfig::default();
    config.config.ping_interval = Some(Duration::from_secs(30));
    let app = App {
        config: Arc::new(config),
        shutdown: Shutdown::new(),
    };
    let closing = app.shutdown.clone();
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws", get(ws).connect(ws))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // axum waits for requests, not for WebSockets: close those first.
            let report = closing.close_all(Duration::from_secs(10)).await;
            eprintln!(
                "shutdown: {} of {} WebSockets closed cleanly, {} dropped",
                report.closed_cleanly, report.open, report.dropped
            );
        })
        .await
}
