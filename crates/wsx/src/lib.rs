//! # wsx
//!
//! A WebSocket client and server for tokio, built on the sans-I/O core [`wsx_proto`]:
//! RFC 6455 with permessage-deflate (RFC 7692), `ws://` and `wss://` (rustls).
//!
//! - [`connect`] / [`ClientBuilder`]: open a client connection, directly or through an
//!   HTTP `CONNECT` or SOCKS5 [`Proxy`] (from the `*_proxy` environment variables by default).
//! - [`accept`] / [`accept_with`]: upgrade an accepted stream; [`Server`]: bind, accept and
//!   run a handler per connection.
//! - [`WebSocket`]: a `Stream` of received [`Message`]s and a `Sink` of messages to send.
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! # async fn f() -> wsx::Result<()> {
//! let mut ws = wsx::connect("ws://127.0.0.1:9001/").await?;
//! ws.send(wsx::Message::text("hello")).await?;
//! while let Some(msg) = ws.next().await {
//!     println!("{:?}", msg?);
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "axum")]
pub mod axum;
mod client;
mod connections;
mod driver;
mod error;
#[cfg(feature = "hyper")]
pub mod hyper;
mod net;
mod proxy;
mod server;
mod shared_timer;
mod shutdown;
mod split;
mod stream;
mod tls;
mod transport;
mod websocket;
mod workers;

pub use client::{connect, ClientBuilder};
pub use driver::{Handshake, TrySendError};
pub use error::{Error, Result, Timeout, TlsError};
pub use proxy::{Proxy, ProxyError, ProxyKind};
pub use server::{
    accept, accept_with, origin_allowed, Accept, FileBody, Hook, HttpFuture, HttpRequest,
    HttpResponse, NoHook, Rejection, Request, Server, ServerConfig, ShutdownReport,
    DEFAULT_MEMORY_BUDGET,
};
pub use split::{WsReader, WsWriter};
pub use stream::MaybeTlsStream;
pub use tls::{server_config as tls_server_config, ClientTlsOptions};
pub use websocket::{SendFuture, WebSocket};
pub use wsx_proto::deflate::DeflateConfig;
pub use wsx_proto::trace::{self, FrameTrace, TraceConfig};
pub use wsx_proto::{
    BudgetStats, Bytes, CloseCode, CloseEvent, CloseFrame, Config, Event, Fragment, MemoryBudget,
    Message, MessageKind, PreparedMessage, ProtocolError, Role, SendError, State, Utf8Bytes,
};
