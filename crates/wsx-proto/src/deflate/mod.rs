//! permessage-deflate (RFC 7692): extension negotiation and per-message
//! compression, sans I/O.
//!
//! # API
//!
//! Handshake, client side:
//! - [`client_offer`]`(&DeflateConfig) -> String`: the `Sec-WebSocket-Extensions`
//!   request value (default: exactly `permessage-deflate; client_max_window_bits`).
//! - [`client_accept`]`(&DeflateConfig, &[&str]) -> Result<Option<DeflateParams>, NegotiationError>`:
//!   validates all `Sec-WebSocket-Extensions` response header values;
//!   `Ok(None)` means no extension was accepted, `Err` means the handshake
//!   must fail.
//!
//! Handshake, server side:
//! - [`server_negotiate`]`(&DeflateConfig, &[&str]) -> Option<(DeflateParams, String)>`:
//!   picks the first acceptable offer from all request header values and
//!   returns the parameters and the exact response header value; `None`
//!   means no compression (send no `Sec-WebSocket-Extensions` for it).
//!
//! Both: [`DeflateConfig`] (with [`DeflateConfig::validate`] and
//! [`DeflateConfig::should_compress`]), [`DeflateParams`] (with
//! [`DeflateParams::to_header_value`], [`DeflateParams::compressor`] and
//! [`DeflateParams::decompressor`]).
//!
//! Data path (one of each per connection):
//! - [`Compressor::compress`]`(&mut self, &[u8], &mut BytesMut) -> Result<(), DeflateError>`
//!   compresses one whole message (tail `00 00 ff ff` stripped).
//! - [`Decompressor::decompress`]`(&mut self, &[u8], fin: bool, &mut BytesMut, limit: usize) -> Result<(), DeflateError>`
//!   inflates one frame of a compressed message, bounded by `limit`.
//! - `memory_estimate()` on both, [`Compressor::release`].
//!
//! Errors: [`NegotiationError`], [`ConfigError`], [`DeflateError`].
//!
//! # Usage
//!
//! ```ignore
//! use bytes::BytesMut;
//! use wsx_proto::deflate::*;
//!
//! let config = DeflateConfig::default();
//! // Client: send `client_offer(&config)` as Sec-WebSocket-Extensions, then
//! // check every Sec-WebSocket-Extensions value of the 101 response:
//! let client = client_accept(&config, &["permessage-deflate; client_max_window_bits=10"])?
//!     .expect("server accepted permessage-deflate");
//! // Server: answer with `header` as Sec-WebSocket-Extensions.
//! let (server, header) =
//!     server_negotiate(&config, &["permessage-deflate; client_max_window_bits"]).unwrap();
//!
//! // Each side, once connected (is_server selects the direction):
//! let mut tx = server.compressor(true, config.level);
//! let mut rx = client.decompressor(false);
//!
//! // Sending: compress whole messages of at least `threshold` bytes, in the
//! // order they go on the wire; set RSV1 on the first frame only.
//! let mut payload = BytesMut::new();
//! tx.compress(b"Hello, Hello, Hello", &mut payload)?;
//!
//! // Receiving a message whose first frame had RSV1: every frame of it, in
//! // order, into the same buffer, `fin` on the last one.
//! let mut message = BytesMut::new();
//! let (first, rest) = payload.split_at(3);
//! rx.decompress(first, false, &mut message, 16 << 20)?;
//! rx.decompress(rest, true, &mut message, 16 << 20)?;
//! assert_eq!(&message[..], b"Hello, Hello, Hello");
//! ```
//! (This example is compiled and run as the `usage_example` unit test.)
//!
//! # Integrating with the connection
//!
//! - **RSV1** (RFC 7692 §6): set it on the first frame of a compressed
//!   message only; continuation frames carry RSV1 = 0. Receiving RSV1 on a
//!   continuation frame, on a control frame, or at all when the extension
//!   was not negotiated is a protocol error (close 1002). Control frames are
//!   never compressed.
//! - **Sending**: call [`Compressor::compress`] once per message with the
//!   whole payload, in wire order (with context takeover each message
//!   depends on the previous compressed ones, so messages must not be
//!   reordered or dropped after compression). The output may be cut into
//!   frames anywhere. Messages sent uncompressed (below
//!   [`DeflateConfig::threshold`], see
//!   [`DeflateConfig::should_compress`]) do not touch the compressor.
//! - **Receiving**: when the first frame of a data message has RSV1, call
//!   [`Decompressor::decompress`] for that frame and every continuation
//!   frame of the message, in order, with `fin` = the frame's FIN bit,
//!   appending to one message buffer with `limit` = the maximum message
//!   size. Control frames interleaved between the fragments are not fed.
//!   Empty frames are fine (an entirely empty compressed message is taken
//!   as an empty message). Validate UTF-8 of text messages on the
//!   *decompressed* bytes (they can be checked incrementally, as each call
//!   appends what its frame produced). Messages without RSV1 bypass the
//!   decompressor.
//! - **Errors**: [`DeflateError::TooLarge`] → close 1009,
//!   [`DeflateError::Corrupt`] → close 1007, [`DeflateError::Internal`] →
//!   close 1011. After any error the (de)compressor has reset itself; the
//!   peer's context is out of step, so fail the connection.
//! - **Roles**: a server's compressor uses `server_max_window_bits` and
//!   `server_no_context_takeover`, its decompressor the `client_*` ones; a
//!   client the opposite. [`DeflateParams::compressor`] and
//!   [`DeflateParams::decompressor`] take `is_server` and do the mapping.
//!   The decompressor frees its state after each message when the peer does
//!   not take over context.
//!
//! # Negotiation policy (RFC 7692 §7.1)
//!
//! Extension and parameter names are tokens and are compared ASCII
//! case-insensitively. Values may be tokens or quoted strings (RFC 6455
//! §9.1: the unescaped content must be a token); window bits must be a
//! decimal integer `8..=15` without leading zeros. Lists may span several
//! header lines; empty list elements are ignored.
//!
//! Server ([`server_negotiate`]): offers are tried in order; other
//! extensions are skipped; an offer with an unknown, duplicate or malformed
//! parameter or an invalid value is declined (not an error). For an offer:
//! - `server_max_window_bits=N` → answered with `min(N, ours)` (always
//!   present in the response when offered, even as 15); when not offered
//!   and ours is below 15, `server_max_window_bits=ours` is added
//!   (allowed by §7.1.2.1).
//! - `client_max_window_bits[=N]` → answered with `min(N or 15, ours)`
//!   when that is below 15. If it is absent and our
//!   `client_max_window_bits` is below 15 the offer is declined (§7.1.2.2
//!   forbids answering it with the parameter).
//! - `server_no_context_takeover` / `client_no_context_takeover` are
//!   answered when offered or configured.
//!
//! Client ([`client_accept`]): the response must name only
//! `permessage-deflate`, once, with known parameters, each at most once,
//! values where (and only where) required. It must be consistent with (one
//! of) our offer(s): `client_max_window_bits` only if offered,
//! `server_max_window_bits` not above the requested value (absent counts as
//! 15), `server_no_context_takeover` echoed if requested. It may add
//! `server_no_context_takeover`, `client_no_context_takeover` and
//! `server_max_window_bits`. The client's own choices are folded into the
//! returned [`DeflateParams`]: `client_max_window_bits` is the minimum of
//! the response, offer and config values, and `client_no_context_takeover`
//! is set when the response, the offer or the config has it.
//!
//! # Window bits 8
//!
//! zlib and zlib-rs cannot deflate with a 256-byte window: both refuse raw
//! `windowBits` -8 (and silently use 9 for zlib-wrapped streams). This module nevertheless negotiates
//! and honours 8, by deflating with a 512-byte window (`windowBits` 9),
//! which is correct because zlib's deflate never emits a back-reference
//! distance greater than `MAX_DIST = w_size - MIN_LOOKAHEAD` =
//! 512 - 262 = **250** bytes: every match finder (`longest_match`, and the
//! quick/fast/medium/slow/RLE strategies) limits candidates to `MAX_DIST`,
//! and zlib-rs even asserts it for every emitted match
//! (`tally_dist: bad match`). So the stream is decodable by a strict
//! 256-byte-window inflater while keeping full LZ77 compression for matches
//! up to 250 bytes back (much better than Huffman-only, which was the
//! alternative; level-0 stored blocks would not compress at all). The tests
//! verify this with an independent strict DEFLATE decoder that rejects any
//! distance above the negotiated window, across all levels, window sizes
//! and both takeover modes (and confirm that with `windowBits` 9 repeats
//! 300 bytes apart are indeed never referenced). Inflating always uses a
//! window of at least 9 bits, which accepts everything a smaller one does.
//! Autobahn 13.3/13.5 exercise this path.
//!
//! # Memory per connection
//!
//! Heap bytes held by the zlib-rs state (x86-64, zlib-rs 0.6), as
//! reported by `memory_estimate` (within a few hundred bytes of the
//! measured allocation):
//!
//! | window bits | compressor | decompressor (while allocated) |
//! |---|---|---|
//! | 8, 9 | 245 KiB | 46 KiB |
//! | 10 | 247 KiB | 46 KiB |
//! | 11 | 251 KiB | 46 KiB |
//! | 12 | 259 KiB | 46 KiB |
//! | 13 | 275 KiB | 46 KiB |
//! | 14 | 307 KiB | 46 KiB |
//! | 15 | 371 KiB | 46 KiB |
//!
//! Whatever the window, zlib-rs's deflate has a 128 KiB hash table and
//! 112 KiB of symbol/pending buffers (`memLevel` 8, which flate2 does not
//! let us lower), and its inflate always allocates a 32 KiB window. The
//! compressor is allocated at the first compressed message and kept (reset
//! after each message when it does not take over context;
//! [`Compressor::release`] frees it then, e.g. on an idle timer). The
//! decompressor is allocated at the first compressed frame and, when the
//! peer does not take over context, freed at the end of each message.
//! Typical idle connection after traffic in both directions (same window
//! bits and takeover mode both ways):
//!
//! | window bits | context takeover | compressor | decompressor | total |
//! |---|---|---|---|---|
//! | 9 | on | 245 KiB | 46 KiB | 291 KiB |
//! | 9 | off | 245 KiB (0 after `release`) | 0 | 245 KiB (0) |
//! | 12 | on | 259 KiB | 46 KiB | 305 KiB |
//! | 12 | off | 259 KiB (0 after `release`) | 0 | 259 KiB (0) |
//! | 15 | on | 371 KiB | 46 KiB | 417 KiB |
//! | 15 | off | 371 KiB (0 after `release`) | 0 | 371 KiB (0) |
//!
//! (Message buffers are the caller's and not included.) Using zlib-rs
//! directly (a `zlib-rs` dependency, to set `memLevel` 4 for windows of
//! 512 bytes) would save up to ~110 KiB per small-window compressor; not
//! done, to keep the dependency set to flate2.
//!
//! # Speed and the default level
//!
//! The default level is 1, zlib-rs's "quick" strategy (static Huffman
//! codes, single hash probe). Measured on this machine (release build,
//! JSON-like messages with context takeover, 32 KiB window):
//!
//! | level | 512 B msgs: ratio, MB/s | 4 KiB msgs: ratio, MB/s | 64 KiB msgs: ratio, MB/s |
//! |---|---|---|---|
//! | 1 | 0.25, 730 | 0.26, 540 | 0.26, 560 |
//! | 2 | 0.22, 110 | 0.19, 260 | 0.19, 330 |
//! | 6 | 0.20, 55 | 0.16, 90 | 0.16, 95 |
//! | 9 | 0.18, 32 | 0.15, 48 | 0.15, 47 |
//!
//! Decompression runs at 0.3–1.1 GB/s. Level 1 is 6–13× faster than 6 for
//! ~25–60 % more output; it has no stored-block fallback, so incompressible
//! data grows by ~5 % (other levels: a few bytes per block). Use level 2–6
//! for bandwidth-bound or binary-heavy traffic. Without context takeover
//! on the sending side each message also pays a 128 KiB hash-table clear
//! (~3 µs): small messages then compress at ~150 MB/s at level 1.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
mod error;
mod header;
mod params;
#[cfg(test)]
mod tests;

pub use codec::{Compressor, Decompressor};
pub use error::{ConfigError, DeflateError, NegotiationError};
pub use params::{
    client_accept, client_offer, server_negotiate, DeflateConfig, DeflateParams, EXTENSION_NAME,
};
