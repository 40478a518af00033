//! Per-message compression and decompression (RFC 7692 §7.2).

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::DeflateError;

/// The empty stored block that ends a sync flush (RFC 7692 §7.2.1), removed
/// by the sender and appended again by the receiver.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What a compressed empty message is (RFC 7692 §7.2.3.6): the first byte of
/// an empty stored block, the rest of which is [`SYNC_TAIL`].
const EMPTY_MESSAGE: u8 = 0x00;

/// zlib-rs's fixed hash table: 65 536 two-byte entries, whatever the window.
const DEFLATE_HASH_BYTES: usize = 65_536 * 2;
/// zlib-rs's symbol and pending buffers at the default `memLevel` 8
/// (`7 << (8 + 6)` bytes); flate2 does not expose `memLevel`.
const DEFLATE_BUFFER_BYTES: usize = 7 << 14;
/// zlib-rs's internal deflate state struct (trees, heap, bookkeeping) plus
/// alignment slack, as measured on x86-64 with zlib-rs 0.6.
const DEFLATE_STATE_BYTES: usize = 3200;
/// zlib-rs's single inflate allocation, as measured on x86-64 with zlib-rs
/// 0.6: a state struct of ~14 KiB (decoding tables) plus a fixed 32 KiB + 64
/// window, whatever `window_bits` is.
const INFLATE_BYTES: usize = 47_552;

/// Bounds of the output chunks zero-filled ahead of each zlib call.
const MIN_CHUNK: usize = 1024;
const MAX_CHUNK: usize = 256 * 1024;

/// Clamps a window-bits value to the range RFC 7692 allows.
fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(8, 15)
}

/// The window zlib is actually given. zlib(-rs) does not support a raw
/// 256-byte window (and flate2 refuses it), so 8 becomes 9; that is still correct for a peer with a
/// 256-byte window because zlib never emits a distance above
/// `w_size - MIN_LOOKAHEAD` = 512 - 262 = 250 (see the module documentation).
fn zlib_window_bits(window_bits: u8) -> u8 {
    window_bits.max(9)
}

fn to_usize(n: u64) -> Result<usize, DeflateError> {
    usize::try_from(n).map_err(|_| DeflateError::Internal("byte count overflow"))
}

/// Compresses whole messages for one direction of one connection.
///
/// Created from the negotiated parameters with
/// [`DeflateParams::compressor`](super::DeflateParams::compressor), or
/// directly with [`Compressor::new`]. The zlib state is allocated lazily on
/// the first non-empty message.
pub struct Compressor {
    deflate: Option<Compress>,
    window_bits: u8,
    level: u8,
    no_context_takeover: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("window_bits", &self.window_bits)
            .field("level", &self.level)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("allocated", &self.deflate.is_some())
            .finish()
    }
}

impl Compressor {
    /// Creates a compressor whose LZ77 back-references never reach further
    /// than `1 << window_bits` bytes.
    ///
    /// `window_bits` is clamped to `8..=15` and `level` to `0..=9`. With
    /// `no_context_takeover` every message is compressed independently
    /// (the state is reset after each one).
    pub fn new(window_bits: u8, no_context_takeover: bool, level: u32) -> Self {
        Compressor {
            deflate: None,
            window_bits: clamp_bits(window_bits),
            // `min` makes the value fit a u8; the fallback is unreachable.
            level: u8::try_from(level.min(9)).unwrap_or(9),
            no_context_takeover,
        }
    }

    /// The window bits this compressor honours (after clamping).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// The compression level (`0..=9`).
    pub fn level(&self) -> u8 {
        self.level
    }

    /// Whether the state is reset after every message.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    fn make_deflate(&self) -> Compress {
        // Raw DEFLATE (no zlib header); the window is within 9..=15 and the
        // level within 0..=9, as flate2 requires.
        Compress::new_with_window_bits(
            Compression::new(u32::from(self.level)),
            false,
            zlib_window_bits(self.window_bits),
        )
    }

    /// Compresses one whole message and appends the result to `out`: the
    /// DEFLATE data of a sync flush with its trailing `00 00 ff ff` removed
    /// (RFC 7692 §7.2.1), ready to be sent as the payload of a message with
    /// RSV1 set (and fragmented by the caller if desired).
    ///
    /// An empty `input` yields the single byte `00` (RFC 7692 §7.2.3.6).
    /// The context is reset afterwards when the compressor was created with
    /// `no_context_takeover`.
    ///
    /// On error nothing is appended to `out` and the compression context is
    /// discarded; the peer's decompressor can no longer follow, so the
    /// connection must be failed.
    pub fn compress(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), DeflateError> {
        if input.is_empty() {
            out.extend_from_slice(&[EMPTY_MESSAGE]);
            return Ok(());
        }
        let start = out.len();
        let result = self.compress_inner(input, out, start);
        if result.is_err() {
            out.truncate(start);
            self.deflate = None;
        }
        result
    }

    fn compress_inner(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        start: usize,
    ) -> Result<(), DeflateError> {
        if self.deflate.is_none() {
            self.deflate = Some(self.make_deflate());
        }
        let Some(deflate) = self.deflate.as_mut() else {
            return Err(DeflateError::Internal("compressor state missing"));
        };
        let mut rest = input;
        // Most messages compress to well under half their size; a larger
        // output just takes another round.
        let mut chunk = (rest.len() / 2 + 64).min(MAX_CHUNK);
        loop {
            let pos = out.len();
            out.resize(pos + chunk, 0);
            let (in_before, out_before) = (deflate.total_in(), deflate.total_out());
            let status = deflate.compress(rest, &mut out[pos..], FlushCompress::Sync);
            let consumed = to_usize(deflate.total_in() - in_before)?;
            let produced = to_usize(deflate.total_out() - out_before)?;
            out.truncate(pos + produced.min(chunk));
            status.map_err(|_| DeflateError::Internal("deflate failed"))?;
            rest = rest
                .get(consumed..)
                .ok_or(DeflateError::Internal("deflate consumed too much"))?;
            if rest.is_empty() && produced < chunk {
                break; // all input consumed and the flush is complete
            }
            if consumed == 0 && produced == 0 {
                return Err(DeflateError::Internal("deflate made no progress"));
            }
            chunk = (rest.len() / 2 + 1024).min(MAX_CHUNK);
        }
        let end = out.len();
        if end < start + SYNC_TAIL.len() || out[end - SYNC_TAIL.len()..] != SYNC_TAIL {
            return Err(DeflateError::Internal("sync flush marker missing"));
        }
        out.truncate(end - SYNC_TAIL.len());
        if self.no_context_takeover {
            deflate.reset();
        }
        Ok(())
    }

    /// Frees the zlib state if that loses nothing, i.e. when the compressor
    /// was created with `no_context_takeover` (the state is reset after
    /// every message anyway); it is allocated again by the next
    /// [`compress`](Compressor::compress). Returns whether memory was freed.
    /// Useful for connections that go idle; with context takeover this is a
    /// no-op returning `false`.
    pub fn release(&mut self) -> bool {
        self.no_context_takeover && self.deflate.take().is_some()
    }

    /// Approximate bytes of memory held by this compressor: the zlib state
    /// once allocated (see the table in the module documentation), plus the
    /// struct itself.
    pub fn memory_estimate(&self) -> usize {
        let own = std::mem::size_of::<Self>();
        if self.deflate.is_none() {
            return own;
        }
        let window = 1usize << zlib_window_bits(self.window_bits);
        // window (2x) + prev chain (2 bytes per window slot) + hash heads +
        // pending and symbol buffers.
        own + DEFLATE_STATE_BYTES + 4 * window + DEFLATE_HASH_BYTES + DEFLATE_BUFFER_BYTES
    }
}

/// Decompresses messages for one direction of one connection.
///
/// Created from the negotiated parameters with
/// [`DeflateParams::decompressor`](super::DeflateParams::decompressor), or
/// directly with [`Decompressor::new`]. The zlib state is allocated lazily on
/// the first compressed data, and released at the end of every message when
/// the sender does not take over context (so idle connections hold no
/// inflate memory in that mode).
pub struct Decompressor {
    inflate: Option<Decompress>,
    window_bits: u8,
    no_context_takeover: bool,
    /// Whether any payload byte of the current message has been fed.
    message_started: bool,
    /// Whether the current message contained a final (BFINAL=1) block; the
    /// rest of the message is then ignored (RFC 7692 §7.2.3.4).
    stream_ended: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("allocated", &self.inflate.is_some())
            .field("message_started", &self.message_started)
            .finish()
    }
}

impl Decompressor {
    /// Creates a decompressor for a peer that compresses with windows of at
    /// most `1 << window_bits` bytes and that resets its context after each
    /// message when `no_context_takeover`.
    ///
    /// `window_bits` is clamped to `8..=15`; zlib inflates with a window of
    /// at least 9 bits, which is always correct since a larger inflate
    /// window accepts everything a smaller one does.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Decompressor {
            inflate: None,
            window_bits: clamp_bits(window_bits),
            no_context_takeover,
            message_started: false,
            stream_ended: false,
        }
    }

    /// The window bits the peer was told to honour (after clamping).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether the context is dropped after every message.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Whether a compressed message is in progress (some frame of it was
    /// fed, the final one not yet).
    pub fn in_message(&self) -> bool {
        self.message_started || self.stream_ended
    }

    /// Inflates the payload of one frame of a compressed message (a message
    /// whose first frame had RSV1 set) and appends the result to `out`.
    ///
    /// Call it once per frame, in order, with `fin` set on the last frame of
    /// the message (for an unfragmented message: one call with `fin`). On
    /// the last frame the `00 00 ff ff` tail is fed as well (RFC 7692
    /// §7.2.2), and the context is dropped if the peer does not take it over.
    ///
    /// `out.len()` never exceeds `limit`: output is produced in bounded
    /// chunks and [`DeflateError::TooLarge`] is returned as soon as one more
    /// byte than `limit` would be produced, so a small input that inflates to
    /// gigabytes fails after about `limit` bytes of work and memory. Pass
    /// the same `out` for every frame of a message to make `limit` a
    /// per-message limit. `out` grows by doubling up to 64 KiB and then straight
    /// to `limit` (see `growth`), so a bomb costs about `limit` of memory, not
    /// the twice as much that doubling all the way leaves behind.
    ///
    /// Invalid DEFLATE data yields [`DeflateError::Corrupt`]. After any
    /// error the state is discarded (the connection should be failed); what
    /// was appended to `out` before the error is left there.
    ///
    /// A message whose payload is empty altogether is treated as an empty
    /// message. Data following a final (BFINAL=1) block in the same message
    /// is ignored, and the next message then starts a new DEFLATE stream.
    pub fn decompress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), DeflateError> {
        self.decompress_within(input, fin, out, limit, &mut |_| true)
    }

    /// [`Decompressor::decompress`], asking `grant` before `out` grows: it is given the
    /// length `out` is about to reach, and returns false to stop (the message then fails
    /// with [`DeflateError::Refused`]). A server charges its memory budget this way, chunk
    /// by chunk, before the bytes are produced.
    pub fn decompress_within(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
        grant: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(), DeflateError> {
        let result = self.decompress_inner(input, fin, out, limit, grant);
        if result.is_err() {
            self.inflate = None;
            self.message_started = false;
            self.stream_ended = false;
        } else if fin {
            if self.no_context_takeover || self.stream_ended {
                // Nothing of this message may be referenced by the next one
                // (or, after a final block, nothing can be): free the state.
                self.inflate = None;
            }
            self.message_started = false;
            self.stream_ended = false;
        }
        result
    }

    fn decompress_inner(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
        grant: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(), DeflateError> {
        if out.len() > limit {
            return Err(DeflateError::TooLarge);
        }
        if self.stream_ended {
            return Ok(());
        }
        if !input.is_empty() {
            self.message_started = true;
            self.feed(input, out, limit, grant)?;
        }
        if fin && self.message_started && !self.stream_ended {
            self.feed(&SYNC_TAIL, out, limit, grant)?;
        }
        Ok(())
    }

    /// Runs `input` through the inflater, appending to `out` while keeping
    /// `out.len() <= limit`.
    fn feed(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        limit: usize,
        grant: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(), DeflateError> {
        let bits = self.window_bits.max(9);
        let inflate = self
            .inflate
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        let mut rest = input;
        // Start with a chunk proportional to the input (most messages fit in
        // one), doubling while the output keeps coming.
        let mut chunk = rest.len().saturating_mul(4).clamp(MIN_CHUNK, MAX_CHUNK);
        loop {
            let room = limit - out.len();
            let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
            let (status, produced, chunk_len) = if room == 0 {
                // At the limit: probe whether even one more byte would come.
                let mut probe = [0u8; 1];
                let status = inflate.decompress(rest, &mut probe, FlushDecompress::None);
                let produced = to_usize(inflate.total_out() - out_before)?;
                if produced > 0 {
                    return Err(DeflateError::TooLarge);
                }
                (status, produced, 1)
            } else {
                let len = chunk.min(room);
                let pos = out.len();
                if !grant(pos + len) {
                    return Err(DeflateError::Refused);
                }
                crate::growth::reserve_within(out, len, limit);
                out.resize(pos + len, 0);
                let status = inflate.decompress(rest, &mut out[pos..], FlushDecompress::None);
                let produced = to_usize(inflate.total_out() - out_before)?;
                out.truncate(pos + produced.min(len));
                (status, produced, len)
            };
            let consumed = to_usize(inflate.total_in() - in_before)?;
            let status = status.map_err(|e| {
                DeflateError::Corrupt(e.message().unwrap_or("invalid deflate data").to_owned())
            })?;
            rest = rest
                .get(consumed..)
                .ok_or(DeflateError::Internal("inflate consumed too much"))?;
            if status == Status::StreamEnd {
                self.stream_ended = true;
                return Ok(());
            }
            if rest.is_empty() && produced < chunk_len {
                return Ok(()); // input used up and no output pending
            }
            if consumed == 0 && produced == 0 {
                // Cannot happen with input and output space available, but
                // never spin.
                return Err(DeflateError::Corrupt("inflate made no progress".to_owned()));
            }
            chunk = chunk.saturating_mul(2).min(MAX_CHUNK);
        }
    }

    /// Approximate bytes of memory held by this decompressor: the zlib state
    /// while allocated (see the table in the module documentation), plus the
    /// struct itself.
    pub fn memory_estimate(&self) -> usize {
        let own = std::mem::size_of::<Self>();
        if self.inflate.is_some() {
            own + INFLATE_BYTES
        } else {
            own
        }
    }
}
