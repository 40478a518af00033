//! # wsx-hub
//!
//! A real-time hub over [`wsx`]: named channels in namespaces, publications with offsets and
//! epochs, history and recovery after a reconnect, presence with join and leave, JWT
//! authentication, speaking Centrifugo's client protocol (v2, JSON) so that its SDKs
//! (`centrifuge` for browsers and Node, `centrifuge-python`, and those for Go, Dart, Swift,
//! Java, .NET) work unchanged, and its server HTTP API (`cent` and other clients).
//!
//! - [`Hub`]: the hub; [`Hub::serve`] runs one client connection.
//! - [`HubHook`]: mounts the hub on a [`wsx::Server`]: the WebSocket endpoint
//!   `/connection/websocket`, the server API under `/api/`, `/health` and `/metrics`.
//! - [`Broker`]: where publications travel, with history and presence;
//!   [`MemoryBroker`] keeps them in this process; `RedisBroker` (feature `redis`) in Redis,
//!   so that several hub nodes act as one.
//!
//! ```no_run
//! use std::sync::Arc;
//! use wsx_hub::{Hub, HubConfig, HubHook, MemoryBroker, TokenKeys};
//! # async fn f() -> anyhow::Result<()> {
//! let mut config = HubConfig::default();
//! config.defaults.allow_subscribe = true;
//! config.defaults.history_size = 100;
//! config.defaults.history_ttl = 300;
//! let hub = Hub::new(config, TokenKeys::new().hmac_secret(b"secret"), Arc::new(MemoryBroker::new()));
//! let hook = HubHook::new(hub.clone()).api_key("api-key");
//! wsx::Server::bind("127.0.0.1:8000")
//!     .await?
//!     .serve_with_hook(
//!         move |ws, peer| hub.clone().serve(ws, peer),
//!         move || hook.clone(),
//!     )
//!     .await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod broker;
mod client;
pub mod codes;
pub mod config;
mod control;
mod flush;
mod http;
mod hub;
mod memory;
mod metrics;
pub mod protocol;
#[cfg(feature = "redis")]
mod redis;
mod session;

pub use auth::{AuthError, TokenKeys};
pub use broker::{Broker, BrokerError, BrokerEvents, BrokerFuture};
pub use client::Outbox;
pub use config::{HubConfig, NamespaceOptions};
pub use http::HubHook;
pub use hub::{Hub, VERSION};
pub use memory::MemoryBroker;
#[cfg(feature = "redis")]
pub use redis::RedisBroker;
