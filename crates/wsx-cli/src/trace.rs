//! `--show-frames`: one stderr line per frame sent or received, like the frames pane of
//! browser devtools.
//!
//! ```text
//!   0.004s → text   FIN compressed masked:5f1c09a2  37 B (1160 B uncompressed)  "a compressible line of text; a co"…
//!   0.005s ← text   FIN compressed  35 B (1160 B uncompressed)  "a compressible line of text; a co"…
//!   0.007s ← close  FIN  9 B  1001 (going away) "done"
//! ```
//!
//! Columns: seconds since the trace started, `→` sent / `←` received, opcode, flags (FIN,
//! RSV1 shown as "compressed", RSV2/RSV3, the masking key), payload length on the wire (and
//! uncompressed, for compressed frames), then the close code and reason or an escaped
//! preview of the payload (uncompressed when compressed; `…` when cut). A frame the
//! connection rejected ends with `REJECTED: why`.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use wsx::trace::Direction;
use wsx::{FrameTrace, TraceConfig, WebSocket, WsReader, WsWriter};
use wsx_proto::frame::OpCode;

/// Whether stderr should get ANSI colors: only on a terminal, and not when `NO_COLOR` is set
/// to a non-empty value (<https://no-color.org>).
pub fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Prints the frame trace of one connection to stderr.
pub struct FramePrinter {
    start: Instant,
    color: bool,
    dropped: u64,
}

impl FramePrinter {
    /// Turns the trace on for `ws`; offsets are counted from now.
    pub fn enable<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> Self {
        ws.set_frame_trace(Some(TraceConfig::default()));
        FramePrinter {
            start: Instant::now(),
            color: stderr_color(),
            dropped: 0,
        }
    }
}

impl FramePrinter {
    /// Prints the frames the two halves of a split connection recorded since the last call,
    /// merged back into the order the connection handled them.
    pub fn print_split<S: AsyncRead + AsyncWrite>(
        &mut self,
        reader: &mut WsReader<S>,
        writer: &WsWriter<S>,
    ) {
        let mut out = String::new();
        let dropped = reader.frame_traces_dropped() + writer.frame_traces_dropped();
        if dropped > self.dropped {
            let _ = writeln!(
                out,
                "… {} frames not shown (trace queue full)",
                dropped - self.dropped
            );
            self.dropped = dropped;
        }
        let mut records: Vec<FrameTrace> = std::iter::from_fn(|| reader.pop_frame_trace())
            .chain(std::iter::from_fn(|| writer.pop_frame_trace()))
            .collect();
        records.sort_by_key(|t| t.seq);
        for t in &records {
            out.push_str(&format_frame(t, self.start, self.color));
            out.push('\n');
        }
        if !out.is_empty() {
            let _ = std::io::stderr().lock().write_all(out.as_bytes());
        }
    }
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[1;31m";

/// One line (without newline) describing `t`, with its time counted from `start`.
pub fn format_frame(t: &FrameTrace, start: Instant, color: bool) -> String {
    let paint = |code: &'static str, s: &str| {
        if color {
            format!("{code}{s}{RESET}")
        } else {
            s.to_owned()
        }
    };
    let h = &t.header;
    let secs = t.at.saturating_duration_since(start).as_secs_f64();
    let (arrow, arrow_color) = match t.direction {
        Direction::Outgoing => ("→", CYAN),
        Direction::Incoming => ("←", GREEN),
    };
    let name = match h.opcode {
        OpCode::Continuation => "cont",
        OpCode::Text => "text",
        OpCode::Binary => "binary",
        OpCode::Close => "close",
        OpCode::Ping => "ping",
        OpCode::Pong => "pong",
    };
    let mut flags = Vec::new();
    if h.fin {
        flags.push("FIN".to_owned());
    }
    if h.rsv1 {
        flags.push("compressed".to_owned());
    }
    if h.rsv2 {
        flags.push("RSV2".to_owned());
    }
    if h.rsv3 {
        flags.push("RSV3".to_owned());
    }
    if let Some(k) = h.mask {
        flags.push(format!(
            "masked:{:02x}{:02x}{:02x}{:02x}",
            k[0], k[1], k[2], k[3]
        ));
    }
    let mut line = format!(
        "{} {} {:<6} {}  {} B",
        paint(DIM, &format!("{secs:>8.3}s")),
        paint(arrow_color, arrow),
        name,
        flags.join(" "),
        h.payload_len,
    );
    if let Some(n) = t.uncompressed_len {
        let _ = write!(line, " ({n} B uncompressed)");
    }
    if h.opcode == OpCode::Close {
        match &t.close {
            Some(f) => {
                let mut s = f.code.0.to_string();
                if let Some(name) = f.code.name() {
                    let _ = write!(s, " ({name})");
                }
                if !f.reason.is_empty() {
                    let _ = write!(s, " \"{}\"", f.reason.as_str().escape_debug());
                }
                let _ = write!(line, "  {}", paint(YELLOW, &s));
            }
            None => line.push_str("  (no status code)"),
        }
    } else if h.payload_len > 0 {
        let _ = write!(line, "  \"{}\"", escape(&t.preview));
        if t.preview_truncated() {
            line.push('…');
        }
    }
    if let Some(e) = &t.rejected {
        let _ = write!(line, "  {}", paint(RED, &format!("REJECTED: {e}")));
    }
    line
}

/// The preview as printable text: UTF-8 shown as characters; control characters, quotes and
/// bytes that are not UTF-8 (such as a character cut by the preview bound) escaped.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().chars().flat_map(char::escape_debug));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wsx::{Bytes, CloseCode, CloseFrame, ProtocolError};
    use wsx_proto::frame::FrameHeader;

    fn trace(direction: Direction, header: FrameHeader, preview: &[u8]) -> (FrameTrace, Instant) {
        let start = Instant::now();
        let t = FrameTrace {
            seq: 0,
            at: start + Duration::from_millis(1234),
            direction,
            header,
            uncompressed_len: None,
            close: None,
            preview: Bytes::copy_from_slice(preview),
            rejected: None,
        };
        (t, start)
    }

    #[test]
    fn sent_masked_text() {
        let h = FrameHeader {
            mask: Some([0xde, 0xad, 0xbe, 0xef]),
            ..FrameHeader::new(true, OpCode::Text, 5)
        };
        let (t, start) = trace(Direction::Outgoing, h, b"hello");
        assert_eq!(
            format_frame(&t, start, false),
            "   1.234s → text   FIN masked:deadbeef  5 B  \"hello\""
        );
    }

    #[test]
    fn received_compressed_fragment_with_cut_preview() {
        let h = FrameHeader {
            rsv1: true,
            ..FrameHeader::new(false, OpCode::Binary, 40)
        };
        let (mut t, start) = trace(Direction::Incoming, h, b"ab\n\"\x00\xff");
        t.uncompressed_len = Some(900);
        assert_eq!(
            format_frame(&t, start, false),
            "   1.234s ← binary compressed  40 B (900 B uncompressed)  \"ab\\n\\\"\\0\\xff\"…"
        );
        let h = FrameHeader::new(true, OpCode::Continuation, 3);
        let (t, start) = trace(Direction::Incoming, h, b"end");
        assert_eq!(
            format_frame(&t, start, false),
            "   1.234s ← cont   FIN  3 B  \"end\""
        );
    }

    #[test]
    fn utf8_is_shown_and_a_cut_character_escaped() {
        // "κό" with the second character cut by the preview bound.
        let (t, start) = trace(
            Direction::Incoming,
            FrameHeader::new(true, OpCode::Text, 10),
            "κό".as_bytes().split_at(3).0,
        );
        assert!(
            format_frame(&t, start, false).ends_with("\"κ\\xcf\"…"),
            "{}",
            format_frame(&t, start, false)
        );
    }

    #[test]
    fn close_shows_code_name_and_reason() {
        let h = FrameHeader::new(true, OpCode::Close, 6);
        let (mut t, start) = trace(Direction::Incoming, h, b"\x03\xe9done");
        t.close = Some(CloseFrame::new(CloseCode::GOING_AWAY, "done"));
        assert_eq!(
            format_frame(&t, start, false),
            "   1.234s ← close  FIN  6 B  1001 (going away) \"done\""
        );
        let (t, start) = trace(
            Direction::Outgoing,
            FrameHeader::new(true, OpCode::Close, 0),
            b"",
        );
        assert_eq!(
            format_frame(&t, start, false),
            "   1.234s → close  FIN  0 B  (no status code)"
        );
    }

    #[test]
    fn rejected_frames_say_why() {
        let h = FrameHeader {
            rsv2: true,
            ..FrameHeader::new(true, OpCode::Ping, 0)
        };
        let (mut t, start) = trace(Direction::Incoming, h, b"");
        t.rejected = Some(ProtocolError::ReservedBits);
        assert_eq!(
            format_frame(&t, start, false),
            "   1.234s ← ping   FIN RSV2  0 B  REJECTED: reserved bits set without a negotiated extension that defines them"
        );
    }

    #[test]
    fn colors_only_when_asked() {
        let (mut t, start) = trace(
            Direction::Incoming,
            FrameHeader::new(true, OpCode::Text, 2),
            b"hi",
        );
        t.rejected = Some(ProtocolError::InvalidUtf8);
        let plain = format_frame(&t, start, false);
        assert!(!plain.contains('\x1b'), "{plain:?}");
        let colored = format_frame(&t, start, true);
        assert!(colored.contains(GREEN) && colored.contains(RED) && colored.contains(RESET));
        let stripped = colored
            .replace(RESET, "")
            .replace(DIM, "")
            .replace(GREEN, "")
            .replace(RED, "");
        assert_eq!(stripped, plain);
    }
}
