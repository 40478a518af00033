//! Error types of the permessage-deflate module.

use thiserror::Error;

/// Why a server's `Sec-WebSocket-Extensions` response cannot be accepted by
/// a client ([`client_accept`](super::client_accept)).
///
/// Every variant means the handshake must fail (RFC 6455 §4.1: "the client
/// MUST _Fail the WebSocket Connection_").
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// A list element of the header is not syntactically valid
    /// (RFC 6455 §9.1 grammar).
    #[error("malformed Sec-WebSocket-Extensions response: {0}")]
    Malformed(String),
    /// The server accepted an extension the client did not offer.
    #[error("server accepted extension `{0}` that was not offered")]
    UnexpectedExtension(String),
    /// `permessage-deflate` appears more than once in the response.
    #[error("server accepted permessage-deflate more than once")]
    DuplicateExtension,
    /// A parameter that RFC 7692 does not define.
    #[error("unknown permessage-deflate parameter `{0}`")]
    UnknownParameter(String),
    /// The same parameter appears twice.
    #[error("duplicate permessage-deflate parameter `{0}`")]
    DuplicateParameter(String),
    /// A parameter that takes no value was given one.
    #[error("permessage-deflate parameter `{0}` must not have a value")]
    UnexpectedValue(String),
    /// A parameter that requires a value was given none.
    #[error("permessage-deflate parameter `{0}` requires a value")]
    MissingValue(String),
    /// A window-bits value that is not a decimal integer in `8..=15` without
    /// leading zeros.
    #[error(
        "invalid value `{value}` for permessage-deflate parameter `{param}` (expected 8..=15)"
    )]
    InvalidValue {
        /// Parameter name.
        param: String,
        /// The value as received (after unquoting).
        value: String,
    },
    /// The response has `client_max_window_bits` but the client did not offer
    /// that parameter (RFC 7692 §7.1.2.2).
    #[error("server sent client_max_window_bits although the client did not offer it")]
    ClientMaxWindowBitsNotOffered,
    /// The response's `server_max_window_bits` exceeds what the client asked
    /// for (RFC 7692 §7.1.2.1).
    #[error("server_max_window_bits={got} exceeds the requested maximum of {requested}")]
    ServerMaxWindowBitsTooLarge {
        /// What the client asked for.
        requested: u8,
        /// What the server answered (15 when it omitted the parameter).
        got: u8,
    },
    /// The client asked for `server_no_context_takeover` and the server did not
    /// confirm it (RFC 7692 §7.1.1.1: acceptance means including it).
    #[error("server did not confirm the requested server_no_context_takeover")]
    ServerNoContextTakeoverNotConfirmed,
    /// The server accepted an extension although the client offered none
    /// (the payload is the response's extension list, or the extension
    /// name).
    #[error("server accepted an extension that was not offered: `{0}`")]
    NotOffered(String),
}

/// Why a [`DeflateConfig`](super::DeflateConfig) is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `level` is not in `0..=9`.
    #[error("compression level {0} is out of range 0..=9")]
    Level(u32),
    /// A window-bits setting is not in `8..=15`.
    #[error("{name}={value} is out of range 8..=15")]
    WindowBits {
        /// Field name.
        name: &'static str,
        /// The offending value.
        value: u8,
    },
    /// A custom client offer is not a well-formed permessage-deflate offer.
    #[error("invalid custom client offer `{0}`")]
    Offer(String),
}

/// Errors of the compression data path.
///
/// After any error the (de)compressor has discarded its state; the
/// connection is expected to be failed (close code 1009 for
/// [`TooLarge`](DeflateError::TooLarge), 1007 for
/// [`Corrupt`](DeflateError::Corrupt), 1011 for
/// [`Internal`](DeflateError::Internal)).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeflateError {
    /// Inflating the message would exceed the caller's size limit.
    #[error("decompressed message exceeds the size limit")]
    TooLarge,
    /// The caller's grant refused more output room ([`Decompressor::decompress_within`]:
    /// a memory budget spent).
    ///
    /// [`Decompressor::decompress_within`]: super::Decompressor::decompress_within
    #[error("no memory granted for more decompressed data")]
    Refused,
    /// The compressed data is not a valid DEFLATE stream.
    #[error("invalid compressed data: {0}")]
    Corrupt(String),
    /// The compression library reported an unexpected failure (for example
    /// memory exhaustion); not caused by the peer's data.
    #[error("compression failure: {0}")]
    Internal(&'static str),
}
