//! Endpoint configuration shared by the handshake and the connection.

use crate::budget::MemoryBudget;
use crate::deflate::DeflateConfig;
use std::time::Duration;

/// Limits and options of one endpoint (client or server).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Largest message accepted, after decompression (default 64 MiB). Larger fails with 1009.
    pub max_message_size: usize,
    /// Largest single frame accepted (default 16 MiB). Larger fails with 1009.
    pub max_frame_size: usize,
    /// Most frames one message may have (default 131072). More fails with 1008. Autobahn
    /// 9.3/9.4 send 4 MiB in up to 65536 fragments, so keep this above that.
    pub max_fragments: usize,
    /// Largest handshake head accepted (default 16 KiB). Larger gets HTTP 431 (server) or an
    /// error (client).
    pub max_head_size: usize,
    /// permessage-deflate: offered (client) or accepted (server) when `Some`.
    pub deflate: Option<DeflateConfig>,
    /// Deliver data frames as [`crate::Event::Fragment`]s as they arrive, instead of whole
    /// messages. The message size limit still applies to the sum of the fragments.
    pub streaming: bool,
    /// Send a keepalive ping when nothing has been received for this long (default 20 s;
    /// `None`: no automatic pings). The pong that answers it is the connection's own: it
    /// sets [`crate::Connection::rtt`] and is not delivered as an event.
    pub ping_interval: Option<Duration>,
    /// Fail the connection with 1011 when a keepalive ping is not answered within this time
    /// (default 20 s).
    pub pong_timeout: Duration,
    /// Close with 1001 when nothing has been received for this long (default: never).
    pub idle_timeout: Option<Duration>,
    /// How long to wait for the peer's close frame after sending ours, and, once CLOSED,
    /// for the transport to wind down (the rest of the output written, the server's FIN
    /// on a client, the shutdown) (default 5 s).
    pub close_timeout: Duration,
    /// End the connection (1006) when output waits this long without any of it being
    /// written: a peer that stops reading cannot hold memory forever (default 30 s;
    /// `None`: wait forever).
    pub write_timeout: Option<Duration>,
    /// The write buffer counts as full while more than this many bytes are queued
    /// ([`crate::Connection::write_buffer_full`]): the `wsx` crate then makes `send` wait,
    /// refuses `try_send` and stops reading (default 1 MiB; at most 4 GiB, larger values
    /// are clamped to that).
    pub write_buffer_high_water: usize,
    /// A memory budget shared with other connections (see [`crate::budget`]): messages that
    /// would take it past its limit fail with 1009 (default: none; `wsx::ServerConfig` sets
    /// one). Clones of this config share the same budget.
    pub memory_budget: Option<MemoryBudget>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
            max_fragments: 1 << 17,
            max_head_size: 16 << 10,
            deflate: Some(DeflateConfig::default()),
            streaming: false,
            ping_interval: Some(Duration::from_secs(20)),
            pong_timeout: Duration::from_secs(20),
            idle_timeout: None,
            close_timeout: Duration::from_secs(5),
            write_timeout: Some(Duration::from_secs(30)),
            write_buffer_high_water: 1 << 20,
            memory_budget: None,
        }
    }
}
