//! Pipe mode of `wsx connect`: stdin becomes messages, received messages go to stdout.
//!
//! The stdin reader is a task that hands one message at a time to a small bounded channel:
//! when the connection cannot take more (the server reads slowly), the channel fills and
//! the reader stops reading stdin, so no input piles up in memory.

use crate::console::{timestamp, Input};
use base64::Engine as _;
use std::io;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use wsx::{Bytes, Message};

/// Largest binary chunk read from stdin in `--binary` mode.
const CHUNK: usize = 64 * 1024;

/// Longest line or record accepted from stdin: the default message size limit (64 MiB).
const MAX_RECORD: usize = 64 << 20;

/// How stdin and stdout are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeMode {
    /// One text message per line; text printed as lines, binary written raw.
    Lines,
    /// Raw stdin chunks as binary messages; everything received written raw.
    Binary,
    /// NUL-terminated records both ways.
    Null,
    /// Lines of base64, one binary message each, both ways.
    Base64,
}

/// Lenient base64: standard alphabet, padding optional.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Starts the task that reads stdin and sends [`Input`]s, ending with [`Input::Quit`] at
/// end of input or [`Input::Failed`].
pub fn spawn_reader(mode: PipeMode, tx: mpsc::Sender<Input>) {
    tokio::spawn(async move {
        let stdin = BufReader::with_capacity(CHUNK, tokio::io::stdin());
        let last = match read_input(stdin, mode, &tx).await {
            Ok(()) => Input::Quit,
            Err(e) => Input::Failed(e),
        };
        let _ = tx.send(last).await;
    });
}

/// Reads `input` to its end, sending each message (waiting while the channel is full).
async fn read_input<R: AsyncBufRead + AsyncRead + Unpin>(
    mut input: R,
    mode: PipeMode,
    tx: &mpsc::Sender<Input>,
) -> Result<(), String> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let msg = match mode {
            PipeMode::Binary => {
                let len = input
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("reading stdin: {e}"))?;
                if len == 0 {
                    return Ok(());
                }
                Message::Binary(Bytes::copy_from_slice(&chunk[..len]))
            }
            PipeMode::Lines | PipeMode::Base64 | PipeMode::Null => {
                let delim = if mode == PipeMode::Null { 0 } else { b'\n' };
                buf.clear();
                if !read_record(&mut input, delim, &mut buf)
                    .await
                    .map_err(|e| format!("reading stdin: {e}"))?
                {
                    return Ok(());
                }
                n += 1;
                record_to_message(mode, std::mem::take(&mut buf), n)?
            }
        };
        if tx.send(Input::Send(msg)).await.is_err() {
            return Ok(());
        }
    }
}

/// Turns record number `n` (without its terminator) into a message.
fn record_to_message(mode: PipeMode, mut rec: Vec<u8>, n: u64) -> Result<Message, String> {
    if mode != PipeMode::Null && rec.last() == Some(&b'\r') {
        rec.pop();
    }
    match mode {
        PipeMode::Lines => String::from_utf8(rec).map(Message::from).map_err(|_| {
            format!(
                "line {n} of stdin is not valid UTF-8 (use --binary or --base64 for binary data)"
            )
        }),
        PipeMode::Null => Ok(match String::from_utf8(rec) {
            Ok(s) => Message::from(s),
            Err(e) => Message::Binary(Bytes::from(e.into_bytes())),
        }),
        PipeMode::Base64 => {
            let text = String::from_utf8_lossy(&rec);
            B64.decode(text.trim())
                .map(|b| Message::Binary(Bytes::from(b)))
                .map_err(|e| format!("line {n} of stdin is not valid base64: {e}"))
        }
        PipeMode::Binary => Ok(Message::Binary(Bytes::from(rec))),
    }
}

/// Reads up to and without `delim` into `buf`; false at end of input with nothing read. A
/// last record without terminator counts. Records over 64 MiB are an error.
async fn read_record<R: AsyncBufRead + Unpin>(
    input: &mut R,
    delim: u8,
    buf: &mut Vec<u8>,
) -> io::Result<bool> {
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match available.iter().position(|&b| b == delim) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let end = if done { take - 1 } else { take };
        if buf.len() + end > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a line or record is longer than 64 MiB",
            ));
        }
        buf.extend_from_slice(&available[..end]);
        input.consume(take);
        if done {
            return Ok(true);
        }
    }
}

/// Writes received messages to stdout in the pipe mode's framing.
pub struct Output {
    mode: PipeMode,
    timestamps: bool,
    out: tokio::io::Stdout,
    line: Vec<u8>,
}

impl Output {
    /// Output for `mode`; `timestamps` prefixes text lines with the time (line mode).
    pub fn new(mode: PipeMode, timestamps: bool) -> Self {
        Output {
            mode,
            timestamps,
            out: tokio::io::stdout(),
            line: Vec::new(),
        }
    }

    /// Writes one data message and flushes.
    pub async fn data(&mut self, msg: &Message) -> io::Result<()> {
        let (bytes, text): (&[u8], bool) = match msg {
            Message::Text(t) => (t.as_bytes(), true),
            Message::Binary(b) => (b, false),
            _ => return Ok(()),
        };
        self.line.clear();
        match self.mode {
            PipeMode::Lines if text => {
                if self.timestamps {
                    self.line.extend_from_slice(timestamp().as_bytes());
                    self.line.push(b' ');
                }
                self.line.extend_from_slice(bytes);
                self.line.push(b'\n');
            }
            PipeMode::Lines | PipeMode::Binary => self.line.extend_from_slice(bytes),
            PipeMode::Null => {
                self.line.extend_from_slice(bytes);
                self.line.push(0);
            }
            PipeMode::Base64 => {
                if text {
                    self.line.extend_from_slice(bytes);
                } else {
                    self.line
                        .extend_from_slice(B64_OUT.encode(bytes).as_bytes());
                }
                self.line.push(b'\n');
            }
        }
        self.out.write_all(&self.line).await?;
        self.out.flush().await
    }
}

/// Base64 as printed: standard alphabet with padding.
const B64_OUT: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[cfg(test)]
mod tests {
    use super::*;

    async fn messages(mode: PipeMode, input: &[u8]) -> (Vec<Message>, Option<String>) {
        let (tx, mut rx) = mpsc::channel(1000);
        let r = read_input(BufReader::new(input), mode, &tx).await;
        drop(tx);
        let mut out = Vec::new();
        while let Some(Input::Send(m)) = rx.recv().await {
            out.push(m);
        }
        (out, r.err())
    }

    #[tokio::test]
    async fn lines_strip_terminators_and_keep_a_last_partial_line() {
        let (m, e) = messages(PipeMode::Lines, b"a\r\n\nb").await;
        assert_eq!(e, None);
        assert_eq!(
            m,
            vec![Message::text("a"), Message::text(""), Message::text("b")]
        );
        let (m, e) = messages(PipeMode::Lines, b"ok\n\xff\n").await;
        assert_eq!(m, vec![Message::text("ok")]);
        assert!(e.unwrap().contains("line 2"));
    }

    #[tokio::test]
    async fn null_records_are_text_or_binary() {
        let (m, _) = messages(PipeMode::Null, b"a\nb\0\xff\0last").await;
        assert_eq!(
            m,
            vec![
                Message::text("a\nb"),
                Message::binary(vec![0xff]),
                Message::text("last")
            ]
        );
    }

    #[tokio::test]
    async fn base64_lines_decode_with_or_without_padding() {
        let (m, e) = messages(PipeMode::Base64, b"AAE=\nAAE\n\n").await;
        assert_eq!(e, None);
        assert_eq!(
            m,
            vec![
                Message::binary(vec![0, 1]),
                Message::binary(vec![0, 1]),
                Message::binary(Vec::new())
            ]
        );
        let (_, e) = messages(PipeMode::Base64, b"!!\n").await;
        assert!(e.unwrap().contains("base64"));
    }

    #[tokio::test]
    async fn binary_reads_chunks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let (m, _) = messages(PipeMode::Binary, &data).await;
        let joined: Vec<u8> = m
            .iter()
            .flat_map(|m| match m {
                Message::Binary(b) => b.to_vec(),
                _ => panic!("not binary"),
            })
            .collect();
        assert_eq!(joined, data);
        assert!(m.len() >= 4);
    }
}
