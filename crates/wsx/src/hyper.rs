//! WebSockets inside a hyper 1 server (feature `hyper`): HTTP/1.1 upgrades and HTTP/2
//! extended CONNECT (RFC 8441), with the same negotiation (subprotocols, permessage-deflate,
//! origins, a [`Hook`]) and the same rejections as [`crate::Server`].
//!
//! hyper parses the request; wsx checks it ([`Request::from_http`](wsx_proto::handshake::server::Request::from_http)),
//! negotiates, and gives back the response for hyper to send and a future of the
//! [`WebSocket`] that runs over hyper's upgraded connection once the response is out.
//! For HTTP/2, the server must offer extended CONNECT
//! (`hyper::server::conn::http2::Builder::enable_connect_protocol`).
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//!
//! async fn route(mut req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
//!     if !wsx::hyper::is_upgrade_request(&req) {
//!         return http::Response::new(Full::from("not a WebSocket request\n"));
//!     }
//!     match wsx::hyper::upgrade(&mut req, &wsx::ServerConfig::default()) {
//!         Ok((response, websocket)) => {
//!             tokio::spawn(async move {
//!                 let Ok(mut ws) = websocket.await else { return };
//!                 while let Some(Ok(msg)) = ws.next().await {
//!                     if msg.is_data() && ws.send(msg).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!             response
//!         }
//!         Err(rejection) => rejection,
//!     }
//! }
//! ```

use crate::error::{Error, Result};
use crate::server::{Hook, NoHook, ServerConfig};
use crate::websocket::WebSocket;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use wsx_proto::handshake::server::{
    negotiate, Request, RequestError, ServerHandshakeConfig, UpgradeForm,
};
use wsx_proto::{Connection, Role};

/// The transport of a WebSocket that came through hyper.
pub type HyperIo = TokioIo<Upgraded>;

/// Whether `request` asks for a WebSocket: an HTTP/1.1 request with `Upgrade: websocket`,
/// or an HTTP/2 CONNECT with `:protocol` `websocket`. Only a quick look: [`upgrade`]
/// checks the rest.
pub fn is_upgrade_request<B>(request: &http::Request<B>) -> bool {
    if request.method() == http::Method::CONNECT {
        return connect_protocol(request).is_some_and(|p| p.eq_ignore_ascii_case("websocket"));
    }
    request
        .headers()
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
}

/// The `:protocol` pseudo-header of an HTTP/2 extended CONNECT, as hyper keeps it.
fn connect_protocol<B>(request: &http::Request<B>) -> Option<&str> {
    request
        .extensions()
        .get::<hyper::ext::Protocol>()
        .map(hyper::ext::Protocol::as_str)
}

/// Accepts the WebSocket `request` asks for: the response to send (`101`, or `200` for
/// HTTP/2), and the future of the [`WebSocket`], ready once hyper has sent the response
/// and handed the connection (or the HTTP/2 stream) over. A request that cannot be
/// accepted gets its error response instead (400, 403, 405 or 426, with the reason as the
/// body), as from [`crate::Server`].
///
/// `B` is the response body type (`http_body_util::Full<Bytes>`, `String`, ...): empty
/// for the `101`/`200`, the reason for an error.
#[allow(clippy::result_large_err)]
pub fn upgrade<Req, B>(
    request: &mut http::Request<Req>,
    config: &ServerConfig,
) -> std::result::Result<(http::Response<B>, UpgradeFuture), http::Response<B>>
where
    B: Default + From<String>,
{
    upgrade_with(request, config, NoHook)
}

/// [`upgrade`] with a [`Hook`] that sees the request first: it may check the origin, path,
/// query or headers, select the subprotocol, add response headers, or reject.
#[allow(clippy::result_large_err)]
pub fn upgrade_with<Req, B>(
    request: &mut http::Request<Req>,
    config: &ServerConfig,
    hook: impl Hook,
) -> std::result::Result<(http::Response<B>, UpgradeFuture), http::Response<B>>
where
    B: Default + From<String>,
{
    let refused = |e: RequestError| e.to_http().map(B::from);
    let parsed = Request::from_http_request(request, connect_protocol(request)).map_err(refused)?;
    let on_upgrade = hyper::upgrade::on(request);
    let (response, future) = accept(
        &parsed,
        on_upgrade,
        config,
        &config.handshake_config(),
        hook,
    )
    .map_err(refused)?;
    Ok((response.map(|()| B::default()), future))
}

/// Negotiates a checked request with `hs` (the handshake settings of `config`, perhaps
/// with other subprotocols): the response, and the WebSocket that `on_upgrade` will carry,
/// run with `config`'s settings. For the hyper functions and the axum extractor alike.
pub(crate) fn accept(
    request: &Request,
    on_upgrade: OnUpgrade,
    config: &ServerConfig,
    hs: &ServerHandshakeConfig,
    hook: impl Hook,
) -> std::result::Result<(http::Response<()>, UpgradeFuture), RequestError> {
    let agreement = negotiate(request, hs, hook)?;
    let conn = Connection::new(Role::Server, &config.config, agreement.negotiated.deflate);
    let future = UpgradeFuture {
        on_upgrade,
        state: Some(Box::new(Pending {
            conn,
            protocol: agreement.negotiated.protocol.clone(),
            target: config.keep_request_target.then(|| request.target.clone()),
            form: request.form(),
        })),
    };
    Ok((agreement.to_http(), future))
}

/// What the WebSocket is made of once hyper hands the connection over.
struct Pending {
    conn: Connection,
    protocol: Option<String>,
    target: Option<String>,
    form: UpgradeForm,
}

/// The [`WebSocket`] of an accepted request, ready once hyper has sent the response and
/// handed the connection over (see [`upgrade`]). Fails with [`Error::Io`] when hyper
/// does not (the client went away, or the response was not the one [`upgrade`] gave).
#[must_use = "futures do nothing unless polled"]
pub struct UpgradeFuture {
    on_upgrade: OnUpgrade,
    state: Option<Box<Pending>>,
}

impl std::fmt::Debug for UpgradeFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeFuture").finish_non_exhaustive()
    }
}

impl UpgradeFuture {
    /// How the request came: HTTP/1.1 upgrade or HTTP/2 extended CONNECT (`None` once the
    /// future has completed).
    pub fn form(&self) -> Option<UpgradeForm> {
        self.state.as_ref().map(|p| p.form)
    }
}

impl Future for UpgradeFuture {
    type Output = Result<WebSocket<HyperIo>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let upgraded = std::task::ready!(Pin::new(&mut self.on_upgrade).poll(cx));
        let Some(pending) = self.state.take() else {
            return Poll::Ready(Err(Error::Io(std::io::Error::other(
                "UpgradeFuture polled after completion",
            ))));
        };
        let upgraded = upgraded.map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let Pending {
            conn,
            protocol,
            target,
            form: _,
        } = *pending;
        let ws = WebSocket::from_parts(TokioIo::new(upgraded), conn, protocol, &[]);
        Poll::Ready(Ok(match target {
            Some(target) => ws.with_request_target(target),
            None => ws,
        }))
    }
}
