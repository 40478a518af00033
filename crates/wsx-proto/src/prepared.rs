//! Messages framed once for many connections: fan-out without per-recipient work.
//!
//! A server that sends the same message to many clients (a broadcast, a channel's
//! publication) would otherwise encode the frame header, copy the payload and, with
//! permessage-deflate, compress it once per recipient. A [`PreparedMessage`] holds the whole
//! frame (header and payload, unmasked) in one shared buffer, made once;
//! [`Connection::send_prepared`](crate::Connection::send_prepared) queues it:
//!
//! - **uncompressed**: small frames are copied into the connection's output buffer (one
//!   copy, the cheapest way to write many small frames together); from
//!   8 KiB on the shared buffer itself is queued (no copy: the I/O layer's vectored write
//!   points at it);
//! - **compressed**, on connections that compress every message alone
//!   (`server_no_context_takeover`): compressed once per window size and level, the first
//!   time such a connection sends it, and shared by all connections with those parameters;
//! - **compressed with context takeover**: compressed by the connection itself, as
//!   [`Connection::send`](crate::Connection::send) does (its compressor's history must
//!   hold everything the peer has seen);
//! - **client connections** mask every frame with a fresh key, so they send it as an
//!   ordinary message.

use crate::connection::MessageKind;
use crate::deflate::Compressor;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::message::Message;
use crate::utf8::Utf8Bytes;
use bytes::{Bytes, BytesMut};
use std::sync::{Arc, OnceLock};

/// Window sizes a compressed frame can be made for: `8..=15` bits.
const WINDOWS: usize = 8;

/// A text or binary message framed once, to be sent to many connections with
/// [`Connection::send_prepared`](crate::Connection::send_prepared) (see the module doc).
///
/// Cloning is cheap (reference-counted).
#[derive(Clone)]
pub struct PreparedMessage {
    inner: Arc<Inner>,
}

struct Inner {
    kind: MessageKind,
    /// The unmasked, uncompressed frame: header, then payload.
    frame: Bytes,
    header_len: u8,
    /// Compressed frames (header and payload), by window bits − 8: the level they were
    /// made with, and the frame (`None`: compression failed; the connection compresses
    /// itself).
    compressed: [OnceLock<(u8, Option<Bytes>)>; WINDOWS],
}

impl std::fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("kind", &self.inner.kind)
            .field("len", &self.len())
            .finish()
    }
}

impl PreparedMessage {
    /// Frames a text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::new(MessageKind::Text, text.into().as_bytes())
    }

    /// Frames a binary message.
    pub fn binary(data: impl AsRef<[u8]>) -> Self {
        Self::new(MessageKind::Binary, data.as_ref())
    }

    /// Frames a data message; `None` for control messages (`Ping`, `Pong`, `Close`), which
    /// are per connection.
    pub fn from_message(msg: &Message) -> Option<Self> {
        match msg {
            Message::Text(t) => Some(Self::new(MessageKind::Text, t.as_bytes())),
            Message::Binary(b) => Some(Self::new(MessageKind::Binary, b)),
            _ => None,
        }
    }

    fn new(kind: MessageKind, payload: &[u8]) -> Self {
        let header = FrameHeader::new(true, opcode(kind), payload.len() as u64);
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        let mut frame = BytesMut::with_capacity(n + payload.len());
        frame.extend_from_slice(&head[..n]);
        frame.extend_from_slice(payload);
        PreparedMessage {
            inner: Arc::new(Inner {
                kind,
                frame: frame.freeze(),
                // n <= MAX_HEADER_LEN.
                header_len: n as u8,
                compressed: Default::default(),
            }),
        }
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.inner.kind
    }

    /// The payload's length.
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.inner.frame[self.inner.header_len as usize..]
    }

    /// The message (sharing the payload, no copy).
    pub fn to_message(&self) -> Message {
        let payload = self.inner.frame.slice(self.inner.header_len as usize..);
        match self.inner.kind {
            // It was made from a `Utf8Bytes`.
            MessageKind::Text => Message::Text(Utf8Bytes::from_bytes_unchecked(payload)),
            MessageKind::Binary => Message::Binary(payload),
        }
    }

    /// The whole uncompressed frame, header first.
    pub(crate) fn frame(&self) -> &Bytes {
        &self.inner.frame
    }

    /// The frame compressed alone with `window_bits` (clamped to `8..=15`) at `level`,
    /// made on first use; `None` when it was made at another level, or compression failed
    /// (the caller compresses itself).
    pub(crate) fn compressed(&self, window_bits: u8, level: u8) -> Option<&Bytes> {
        let bits = window_bits.clamp(8, 15);
        let slot = &self.inner.compressed[usize::from(bits - 8)];
        let (made_at, frame) = slot.get_or_init(|| (level, self.compress(bits, level)));
        frame.as_ref().filter(|_| *made_at == level)
    }

    fn compress(&self, window_bits: u8, level: u8) -> Option<Bytes> {
        let mut codec = Compressor::new(window_bits, true, u32::from(level));
        let mut payload = BytesMut::new();
        codec.compress(self.payload(), &mut payload).ok()?;
        let header = FrameHeader {
            rsv1: true,
            ..FrameHeader::new(true, opcode(self.inner.kind), payload.len() as u64)
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        let mut frame = BytesMut::with_capacity(n + payload.len());
        frame.extend_from_slice(&head[..n]);
        frame.extend_from_slice(&payload);
        Some(frame.freeze())
    }
}

fn opcode(kind: MessageKind) -> OpCode {
    match kind {
        MessageKind::Text => OpCode::Text,
        MessageKind::Binary => OpCode::Binary,
    }
}
