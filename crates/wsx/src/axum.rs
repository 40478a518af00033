//! WebSockets in an axum app (feature `axum`, on `axum-core`): the [`WebSocketUpgrade`]
//! extractor, for HTTP/1.1 upgrades and HTTP/2 extended CONNECT alike, with wsx's
//! negotiation (subprotocols, permessage-deflate, origins), limits and keepalive, and a
//! [`Shutdown`] that closes the app's WebSockets with 1001 when it stops.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use futures_util::StreamExt;
//! use wsx::axum::WebSocketUpgrade;
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> axum::response::Response {
//!     upgrade.protocols(["chat"]).on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.next().await {
//!             if msg.is_data() && ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app: Router = Router::new().route("/ws", get(ws));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! axum serves HTTP/2 too: with TLS and ALPN, or cleartext with prior knowledge. Its
//! HTTP/2 connections offer extended CONNECT, so browsers can open WebSockets over them.

use crate::connections::{Caps, Registration, Served};
use crate::error::Error;
use crate::hyper::HyperIo;
use crate::server::{ServerConfig, ShutdownReport};
use crate::websocket::WebSocket;
use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use wsx_proto::handshake::server::{NoHook, Request, RequestError};

/// Extracts a WebSocket request (an HTTP/1.1 upgrade or an HTTP/2 extended CONNECT) from an
/// axum handler's request; [`WebSocketUpgrade::on_upgrade`] answers it.
///
/// A request that is not a valid WebSocket request is rejected with the status
/// [`crate::Server`] would answer (400, 405, 426) and the reason as the body.
pub struct WebSocketUpgrade {
    request: Request,
    on_upgrade: OnUpgrade,
    config: Option<Arc<ServerConfig>>,
    protocols: Vec<String>,
    on_failed: Option<Box<dyn FnOnce(Error) + Send>>,
    shutdown: Option<Shutdown>,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("request", &self.request)
            .field("protocols", &self.protocols)
            .finish_non_exhaustive()
    }
}

/// Why a request could not be extracted as a [`WebSocketUpgrade`]; answered with its
/// status and reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebSocketUpgradeRejection {
    /// Not a valid WebSocket request (its status: 400, 405 or 426).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The connection cannot be taken over (not served by hyper with upgrades, or already
    /// taken): 426 for HTTP/1.1, as axum answers it.
    #[error("the connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        match self {
            WebSocketUpgradeRejection::Request(e) => e.to_http().map(Body::from),
            WebSocketUpgradeRejection::NotUpgradable => (
                http::StatusCode::UPGRADE_REQUIRED,
                "the connection cannot be upgraded\n",
            )
                .into_response(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let protocol = parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .map(|p| p.as_str().to_owned());
        let request = Request::from_http(parts, protocol.as_deref())?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(WebSocketUpgradeRejection::NotUpgradable)?;
        Ok(WebSocketUpgrade {
            request,
            on_upgrade,
            config: None,
            protocols: Vec::new(),
            on_failed: None,
            shutdown: None,
        })
    }
}

impl WebSocketUpgrade {
    /// The request: path, query, headers, origin, offered subprotocols.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The subprotocols this endpoint speaks, in order of preference: the first one the
    /// client offered is selected (none if it offered none of them).
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Settings: limits, permessage-deflate, keepalive and timeouts (`config.config`),
    /// allowed origins. Share one `Arc` across requests. Default: `ServerConfig::default()`
    /// (deflate on). Its subprotocol list is used unless [`WebSocketUpgrade::protocols`]
    /// gives one.
    pub fn config(mut self, config: Arc<ServerConfig>) -> Self {
        self.config = Some(config);
        self
    }

    /// Called instead of the `on_upgrade` callback when hyper does not hand the connection
    /// over after the response (the client went away). Default: logged at debug level.
    pub fn on_failed_upgrade(mut self, f: impl FnOnce(Error) + Send + 'static) -> Self {
        self.on_failed = Some(Box::new(f));
        self
    }

    /// Makes the WebSocket answer `shutdown`: [`Shutdown::close_all`] closes it with 1001.
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Answers the request: the response (`101`, or `200` over HTTP/2; an error response
    /// when negotiation refuses it, e.g. a disallowed origin), and, once hyper has sent it,
    /// `callback` runs with the [`WebSocket`] on a task of its own.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket<HyperIo>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let config = self.config.unwrap_or_else(default_config);
        let mut hs = config.handshake_config();
        if !self.protocols.is_empty() {
            hs.protocols = self.protocols;
        }
        let (response, websocket) =
            match crate::hyper::accept(&self.request, self.on_upgrade, &config, &hs, NoHook) {
                Ok(accepted) => accepted,
                Err(e) => return e.to_http().map(Body::from),
            };
        let registration = self.shutdown.as_ref().and_then(Shutdown::register);
        let on_failed = self.on_failed;
        tokio::spawn(async move {
            let ws = match websocket.await {
                Ok(ws) => ws,
                Err(e) => {
                    match on_failed {
                        Some(f) => f(e),
                        None => tracing::debug!("WebSocket upgrade failed: {e}"),
                    }
                    return;
                }
            };
            match registration {
                Some(mut registration) => {
                    let ws = ws.with_shutdown(registration.served().signal.clone());
                    registration.upgraded();
                    let abortable = !registration.served().signal.is_aborted();
                    Tracked {
                        future: callback(ws),
                        registration,
                        abortable,
                    }
                    .await
                }
                None => callback(ws).await,
            }
        });
        response.map(|()| Body::empty())
    }
}

/// `ServerConfig::default()`, made once (its memory budget is shared by the connections
/// that use it, as with a `Server`).
fn default_config() -> Arc<ServerConfig> {
    static DEFAULT: std::sync::OnceLock<Arc<ServerConfig>> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(Arc::default).clone()
}

pin_project_lite::pin_project! {
    /// A WebSocket's callback, counted for its [`Shutdown`] while it runs, and ended when
    /// the shutdown gives up on it (unless it started after that: such a WebSocket closes
    /// with 1001 by itself).
    struct Tracked<F> {
        #[pin]
        future: F,
        registration: Registration,
        abortable: bool,
    }
}

impl<F: Future<Output = ()>> Future for Tracked<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if *this.abortable && this.registration.served().signal.is_aborted() {
            return Poll::Ready(());
        }
        this.future.poll(cx)
    }
}

/// Graceful shutdown for WebSockets served outside [`crate::Server`] (an axum app): give it
/// to each [`WebSocketUpgrade::shutdown`], then call [`Shutdown::close_all`] when the app
/// stops. Cloning shares it.
///
/// ```no_run
/// # async fn run(app: axum::Router, listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let shutdown = wsx::axum::Shutdown::new();
/// // Routes call `upgrade.shutdown(&shutdown).on_upgrade(..)` (the app's state carries it).
/// let closing = shutdown.clone();
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async move {
///         let _ = tokio::signal::ctrl_c().await;
///         // WebSockets are not requests axum waits for: close them first.
///         closing.close_all(std::time::Duration::from_secs(10)).await;
///     })
///     .await
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Shutdown {
    served: Arc<Served>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown").finish_non_exhaustive()
    }
}

impl Shutdown {
    /// A shutdown with no WebSockets yet.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Counts a new WebSocket (none once the shutdown has begun: it is not tracked).
    fn register(&self) -> Option<Registration> {
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        self.served.admit(Caps::default(), unknown).ok()
    }

    /// Closes every WebSocket given this shutdown with 1001 (Going Away), waits up to
    /// `timeout` for their close handshakes and callbacks to finish, and ends the callbacks
    /// still running. WebSockets upgraded afterwards close with 1001 at once.
    pub async fn close_all(&self, timeout: Duration) -> ShutdownReport {
        self.served.request_shutdown();
        let dropped = self
            .served
            .wait_ended(tokio::time::Instant::now() + timeout)
            .await;
        self.served.signal.abort();
        ShutdownReport {
            open: self.served.open_at_shutdown(),
            closed_cleanly: self.served.signal.closed_cleanly(),
            dropped,
        }
    }
}
