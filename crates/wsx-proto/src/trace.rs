//! Frame-level tracing, like the "Messages" pane of browser devtools: every frame received
//! and sent, with its header bits, lengths, close code and a short payload preview.
//!
//! Tracing is off by default; while off it costs one predictable branch per frame and no
//! allocation. Turn it on with [`Connection::set_frame_trace`](crate::Connection::set_frame_trace)
//! and drain the records with
//! [`Connection::take_frame_traces`](crate::Connection::take_frame_traces):
//!
//! ```
//! use wsx_proto::trace::{Direction, TraceConfig};
//! use wsx_proto::{Config, Connection, Message, Role};
//!
//! let config = Config::default();
//! let mut client = Connection::new(Role::Client, &config, None);
//! client.set_frame_trace(Some(TraceConfig::default()));
//! client.send(Message::text("hello")).unwrap();
//! let traces: Vec<_> = client.take_frame_traces().collect();
//! assert_eq!(traces.len(), 1);
//! assert_eq!(traces[0].direction, Direction::Outgoing);
//! assert!(traces[0].masked());
//! assert_eq!(&traces[0].preview[..], b"hello");
//! ```
//!
//! Records are kept in a bounded queue per direction (see [`TraceConfig::capacity`]): when
//! the application does not drain it, the oldest records are dropped and counted
//! ([`Connection::frame_traces_dropped`](crate::Connection::frame_traces_dropped)).
//!
//! # What is recorded when
//!
//! - A **received** frame is recorded once its whole payload has arrived and was processed
//!   (unmasked, inflated, validated). A frame the core rejects is recorded with
//!   [`FrameTrace::rejected`] set, as soon as the error is found: for an error in the header
//!   (RSV bits, masking, lengths, fragmentation) that is before its payload arrived, and the
//!   preview then holds whatever payload bytes were already buffered (unmasked). A header
//!   that cannot be decoded at all (reserved opcode, 64-bit length overflow) is not recorded:
//!   there is no frame to describe.
//! - A **sent** frame is recorded when it is queued for output (by `send`, a pong or close
//!   reply, ...), not when the transport takes the bytes.
//!
//! # Compressed messages
//!
//! The sender compresses whole messages into one frame, so for a sent compressed frame
//! [`FrameTrace::uncompressed_len`] is the message size before deflate. A received
//! compressed message may be fragmented: each of its frames is inflated as it arrives, and
//! `uncompressed_len` is **per frame**, the number of bytes that frame's payload inflated
//! to (their sum is the message size; for an unfragmented message it is the message size).
//! It is `None` for frames of uncompressed messages, for control frames, and for a
//! compressed frame that was rejected before or while it was inflated.
//!
//! # Preview
//!
//! The preview holds the first [`TraceConfig::preview_len`] bytes of the payload, always
//! **unmasked**. When `uncompressed_len` is `Some`, it holds the first bytes of the
//! *uncompressed* data (what that frame inflated to, or the message before deflate); otherwise
//! the payload bytes as on the wire (after unmasking).

use crate::close::{CloseCode, CloseFrame};
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Which way a traced frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received from the peer.
    Incoming,
    /// Sent to the peer (queued for output).
    Outgoing,
}

/// Settings of the frame trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceConfig {
    /// Payload bytes kept per frame (default 32).
    pub preview_len: usize,
    /// Records kept per direction until drained (default 1024, at least 1); older records are
    /// dropped and counted.
    pub capacity: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            preview_len: 32,
            capacity: 1024,
        }
    }
}

/// One frame as it was received or sent (see the [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameTrace {
    /// Position in the connection's trace, counting both directions from 0; gaps mean dropped
    /// records. Sorting by it gives the order the core saw or produced the frames in.
    pub seq: u64,
    /// When the core parsed (incoming) or queued (outgoing) the frame.
    pub at: Instant,
    /// Received or sent.
    pub direction: Direction,
    /// The header as on the wire: FIN, RSV1-3, opcode, masking key, payload length.
    pub header: FrameHeader,
    /// For frames of compressed messages: the payload size after inflate (incoming, per
    /// frame) or before deflate (outgoing, the whole message). `None` otherwise, or when the
    /// frame was rejected before it could be inflated.
    pub uncompressed_len: Option<u64>,
    /// Close frames: the code and reason, decoded leniently (an invalid code or reason is
    /// still shown, the reason with replacement characters). `None` for other frames and
    /// for a close frame without a payload.
    pub close: Option<CloseFrame>,
    /// The first bytes of the payload, unmasked; the uncompressed bytes when
    /// [`FrameTrace::uncompressed_len`] is `Some`.
    pub preview: Bytes,
    /// Why the core rejected this (incoming) frame; the connection then failed with the
    /// error's close code.
    pub rejected: Option<ProtocolError>,
}

impl FrameTrace {
    /// The opcode.
    pub fn opcode(&self) -> OpCode {
        self.header.opcode
    }

    /// Whether the frame was masked.
    pub fn masked(&self) -> bool {
        self.header.mask.is_some()
    }

    /// Whether RSV1 is set, which under permessage-deflate marks the first frame of a
    /// compressed message.
    pub fn compressed(&self) -> bool {
        self.header.rsv1
    }

    /// Bytes on the wire: header plus payload.
    pub fn wire_len(&self) -> u64 {
        self.header.encoded_len() as u64 + self.header.payload_len
    }

    /// Whether the preview holds less than the (uncompressed, when known) payload.
    pub fn preview_truncated(&self) -> bool {
        (self.preview.len() as u64) < self.uncompressed_len.unwrap_or(self.header.payload_len)
    }
}

/// The trace state of one side (receiver or sender) of a connection.
#[derive(Debug)]
pub(crate) struct Tracer {
    config: TraceConfig,
    queue: VecDeque<FrameTrace>,
    dropped: u64,
    /// Shared by both sides of a connection, so records of both can be put in order.
    seq: Arc<AtomicU64>,
}

impl Tracer {
    pub(crate) fn new(config: TraceConfig, seq: Arc<AtomicU64>) -> Self {
        Tracer {
            config: TraceConfig {
                capacity: config.capacity.max(1),
                ..config
            },
            queue: VecDeque::new(),
            dropped: 0,
            seq,
        }
    }

    /// Records a frame (kept out of line: it runs only while tracing). `payload` is unmasked (as much as is known); `plain`, for compressed
    /// frames, the uncompressed bytes.
    #[inline(never)]
    pub(crate) fn record(
        &mut self,
        direction: Direction,
        header: &FrameHeader,
        payload: &[u8],
        plain: Option<&[u8]>,
        rejected: Option<ProtocolError>,
    ) {
        let close = if header.opcode == OpCode::Close {
            lenient_close(payload)
        } else {
            None
        };
        let shown = plain.unwrap_or(payload);
        let preview = Bytes::copy_from_slice(&shown[..shown.len().min(self.config.preview_len)]);
        if self.queue.len() >= self.config.capacity {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(FrameTrace {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at: Instant::now(),
            direction,
            header: *header,
            uncompressed_len: plain.map(|p| p.len() as u64),
            close,
            preview,
            rejected,
        });
    }

    /// Sets the uncompressed size and preview of the latest record.
    pub(crate) fn set_plain_last(&mut self, plain: &[u8]) {
        let n = self.config.preview_len;
        if let Some(t) = self.queue.back_mut() {
            t.uncompressed_len = Some(plain.len() as u64);
            t.preview = Bytes::copy_from_slice(&plain[..plain.len().min(n)]);
        }
    }

    /// Marks the latest record as rejected.
    pub(crate) fn reject_last(&mut self, err: &ProtocolError) {
        if let Some(t) = self.queue.back_mut() {
            t.rejected = Some(err.clone());
        }
    }

    pub(crate) fn preview_len(&self) -> usize {
        self.config.preview_len
    }

    pub(crate) fn peek_seq(&self) -> Option<u64> {
        self.queue.front().map(|t| t.seq)
    }

    pub(crate) fn pop(&mut self) -> Option<FrameTrace> {
        self.queue.pop_front()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    pub(crate) fn memory_usage(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.queue.capacity() * std::mem::size_of::<FrameTrace>()
            + self.queue.len() * self.config.preview_len
    }
}

/// Code and reason of a close payload, without the validation a received close gets.
fn lenient_close(payload: &[u8]) -> Option<CloseFrame> {
    let [hi, lo, reason @ ..] = payload else {
        return None;
    };
    Some(CloseFrame::new(
        CloseCode(u16::from_be_bytes([*hi, *lo])),
        String::from_utf8_lossy(reason).into_owned(),
    ))
}

/// Pops the earliest record of two sides (either may have no trace).
pub(crate) fn pop_earliest(a: Option<&mut Tracer>, b: Option<&mut Tracer>) -> Option<FrameTrace> {
    let sa = a.as_ref().and_then(|t| t.peek_seq());
    let sb = b.as_ref().and_then(|t| t.peek_seq());
    match (sa, sb) {
        (Some(x), Some(y)) if y < x => b?.pop(),
        (Some(_), _) => a?.pop(),
        (None, Some(_)) => b?.pop(),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests;
