//! Endpoint configuration shared by the handshake and the connection.

use crate::deflate::DeflateConfig;

/// Limits and options of one endpoint (client or server).
#[derive(Clone, Debug)]
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
        }
    }
}
