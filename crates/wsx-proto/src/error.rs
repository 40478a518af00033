//! Errors of the protocol core. Each knows the close code it is answered with.

use crate::close::{CloseCode, ClosePayloadError};
use crate::frame::HeaderError;

/// The peer broke the protocol or a limit; the connection fails with [`ProtocolError::close_code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reserved opcode (0x3-0x7, 0xB-0xF). 1002.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A 64-bit payload length with its top bit set. 1002.
    #[error("64-bit payload length with the most significant bit set")]
    LengthOverflow,
    /// RSV bits set that no negotiated extension defines. 1002.
    #[error("reserved bits set without a negotiated extension that defines them")]
    ReservedBits,
    /// A control frame with more than 125 bytes of payload. 1002.
    #[error("control frame payload longer than 125 bytes")]
    ControlFrameTooLong,
    /// A control frame with FIN=0. 1002.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// An unmasked frame from a client. 1002.
    #[error("frame from client is not masked")]
    UnmaskedFrame,
    /// A masked frame from a server. 1002.
    #[error("frame from server is masked")]
    MaskedFrame,
    /// A continuation frame with no message to continue. 1002.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame before the fragmented message was finished. 1002.
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    /// Invalid UTF-8 in a text message. 1007.
    #[error("invalid UTF-8 in text message")]
    InvalidUtf8,
    /// A close frame with a 1-byte payload. 1002.
    #[error("close frame with a 1-byte payload")]
    TruncatedClose,
    /// A close code that may not appear on the wire. 1002.
    #[error("close code {0} is not allowed on the wire")]
    InvalidCloseCode(u16),
    /// A close reason that is not UTF-8. 1007.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A frame larger than the configured limit. 1009.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The frame's announced payload length.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message (after decompression) larger than the configured limit. 1009.
    #[error("message exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A message that would take the memory budget shared by the server's connections
    /// past its limit ([`crate::budget`]). 1009.
    #[error("server memory budget exhausted: message refused")]
    OverBudget,
    /// A message with more fragments than the configured limit. 1008.
    #[error("message has more than {limit} fragments")]
    TooManyFragments {
        /// The configured limit.
        limit: usize,
    },
    /// Compressed data that does not inflate. 1007.
    #[error("compressed message data is corrupt")]
    CorruptCompressedData,
    /// The decompressor failed for a reason other than the data. 1011.
    #[error("decompression failed internally")]
    InflateInternal,
}

impl ProtocolError {
    /// The close code to send when failing the connection for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8
            | ProtocolError::InvalidCloseReason
            | ProtocolError::CorruptCompressedData => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooLarge { .. }
            | ProtocolError::MessageTooLarge { .. }
            | ProtocolError::OverBudget => CloseCode::MESSAGE_TOO_BIG,
            ProtocolError::InflateInternal => CloseCode::INTERNAL_ERROR,
            ProtocolError::TooManyFragments { .. } => CloseCode::POLICY_VIOLATION,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl From<HeaderError> for ProtocolError {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::ReservedOpcode(op) => ProtocolError::ReservedOpcode(op),
            HeaderError::LengthOverflow => ProtocolError::LengthOverflow,
        }
    }
}

impl From<ClosePayloadError> for ProtocolError {
    fn from(e: ClosePayloadError) -> Self {
        match e {
            ClosePayloadError::Truncated => ProtocolError::TruncatedClose,
            ClosePayloadError::InvalidCode(c) => ProtocolError::InvalidCloseCode(c),
            ClosePayloadError::InvalidReason => ProtocolError::InvalidCloseReason,
        }
    }
}

/// A message the application asked to send cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent (or the connection has failed or closed).
    #[error("the connection is closing or closed")]
    Closed,
    /// A fragmented message is being sent; finish it before sending another data message.
    #[error("a fragmented message is being sent")]
    FragmentInProgress,
    /// A fragment of a different kind than the message being sent.
    #[error("fragment kind does not match the message being sent")]
    FragmentKindMismatch,
    /// Ping and pong payloads are at most 125 bytes.
    #[error("control frame payload longer than 125 bytes")]
    ControlFrameTooLong,
    /// A close code that may not be sent (1005, 1006, 1015, unassigned ranges).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// Text fragments must form valid UTF-8.
    #[error("text fragment is not valid UTF-8")]
    InvalidUtf8,
    /// The compressor failed.
    #[error("compression failed")]
    Compression,
}
