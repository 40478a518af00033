//! Data-path tests: RFC 7692 examples, round trips, window compliance,
//! interop with flate2, decompression bombs, corrupt input.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use proptest::prelude::*;

use super::puff::Puff;
use crate::deflate::{Compressor, Decompressor, DeflateError, DeflateParams};

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// Deterministic pseudo-random bytes (xorshift), so tests need no `rand`.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Text-like data with plenty of repeats at varying distances.
fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "the ",
        "quick ",
        "brown ",
        "fox ",
        "jumps ",
        "over ",
        "lazy ",
        "dog ",
        "{\"id\":",
        "\"name\":\"",
        "websocket ",
        "frame ",
        "message ",
        "deflate ",
        "\", ",
        "}\n",
    ];
    let r = random_bytes(seed, len);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(WORDS[usize::from(r[i % r.len()] % 16)].as_bytes());
        if r[i % r.len()].is_multiple_of(7) {
            out.extend_from_slice(format!("{}", r[(i + 1) % r.len()]).as_bytes());
        }
        i += 1;
    }
    out.truncate(len);
    out
}

/// A random block of `period` bytes repeated: its only repeats are exactly
/// `period` bytes apart.
fn periodic(period: usize, len: usize) -> Vec<u8> {
    let block = random_bytes(77, period);
    block.iter().copied().cycle().take(len).collect()
}

/// Largest distance zlib emits with a given (zlib) window: `w_size` minus
/// `MIN_LOOKAHEAD` (262).
fn zlib_max_dist(bits: u8) -> usize {
    (1usize << bits.max(9)) - 262
}

fn compress(c: &mut Compressor, input: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    c.compress(input, &mut out).expect("compress");
    out
}

fn decompress(d: &mut Decompressor, input: &[u8]) -> Result<BytesMut, DeflateError> {
    let mut out = BytesMut::new();
    d.decompress(input, true, &mut out, usize::MAX)?;
    Ok(out)
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

// ------------------------------------------------------------ RFC examples

#[test]
fn rfc7692_7_2_3_1_compress_hello() {
    for level in 1..=9 {
        let mut c = Compressor::new(15, false, level);
        assert_eq!(
            &compress(&mut c, b"Hello")[..],
            hex("f2 48 cd c9 c9 07 00"),
            "level {level}"
        );
    }
}

#[test]
fn rfc7692_7_2_3_2_shared_context() {
    // Level 1 (zlib-rs "quick") does not search the window of a previous
    // flush; levels 2+ do, giving the RFC's bytes exactly.
    for level in 2..=9 {
        let mut c = Compressor::new(15, false, level);
        assert_eq!(&compress(&mut c, b"Hello")[..], hex("f2 48 cd c9 c9 07 00"));
        assert_eq!(
            &compress(&mut c, b"Hello")[..],
            hex("f2 00 11 00 00"),
            "level {level}"
        );
    }
    let mut d = Decompressor::new(15, false);
    assert_eq!(
        &decompress(&mut d, &hex("f2 48 cd c9 c9 07 00")).unwrap()[..],
        b"Hello"
    );
    assert_eq!(
        &decompress(&mut d, &hex("f2 00 11 00 00")).unwrap()[..],
        b"Hello"
    );
    // Without context the back-reference is invalid.
    let mut d = Decompressor::new(15, true);
    assert_eq!(
        &decompress(&mut d, &hex("f2 48 cd c9 c9 07 00")).unwrap()[..],
        b"Hello"
    );
    assert!(matches!(
        decompress(&mut d, &hex("f2 00 11 00 00")),
        Err(DeflateError::Corrupt(_))
    ));
}

#[test]
fn rfc7692_decompression_examples() {
    let cases: [(&str, &[&str]); 8] = [
        // §7.2.3.1
        ("single fixed block", &["f2 48 cd c9 c9 07 00"]),
        // §7.2.3.3 (stored block, no compression)
        ("stored block", &["00 05 00 fa ff 48 65 6c 6c 6f 00"]),
        // §7.2.3.4 (BFINAL=1 block followed by an empty stored block)
        ("bfinal", &["f3 48 cd c9 c9 07 00 00"]),
        // §7.2.3.5 (two DEFLATE blocks in one message)
        ("two blocks", &["f2 48 05 00 00 00 ff ff ca c9 c9 07 00"]),
        // §7.2.3.1 fragmented into two frames (RFC 7692 §7.2.3.1 example 2)
        ("fragmented", &["f2 48 cd", "c9 c9 07 00"]),
        // Byte-by-byte fragments.
        ("bytewise", &["f2", "48", "cd", "c9", "c9", "07", "00"]),
        // Empty frames around the data.
        ("empty last frame", &["f2 48 cd c9 c9 07 00", ""]),
        ("empty first frame", &["", "f2 48 cd c9 c9 07 00"]),
    ];
    for (name, frames) in cases {
        for nct in [false, true] {
            let mut d = Decompressor::new(15, nct);
            for _ in 0..3 {
                let mut out = BytesMut::new();
                for (i, f) in frames.iter().enumerate() {
                    d.decompress(&hex(f), i + 1 == frames.len(), &mut out, 1000)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                assert_eq!(&out[..], b"Hello", "{name}");
                assert!(!d.in_message());
            }
        }
    }
}

#[test]
fn bfinal_then_next_message_starts_a_new_stream() {
    let mut d = Decompressor::new(15, false);
    assert_eq!(
        &decompress(&mut d, &hex("f3 48 cd c9 c9 07 00 00")).unwrap()[..],
        b"Hello"
    );
    // Trailing data after the final block within the message is ignored,
    // in the same frame or in later ones.
    let mut out = BytesMut::new();
    d.decompress(&hex("f3 48 cd c9 c9 07 00 ff ff"), false, &mut out, 100)
        .unwrap();
    d.decompress(&hex("de ad be ef"), true, &mut out, 100)
        .unwrap();
    assert_eq!(&out[..], b"Hello");
    assert_eq!(
        &decompress(&mut d, &hex("f2 48 cd c9 c9 07 00")).unwrap()[..],
        b"Hello"
    );
}

#[test]
fn empty_messages() {
    for bits in 8..=15 {
        for nct in [false, true] {
            let mut c = Compressor::new(bits, nct, 1);
            let mut d = Decompressor::new(bits, nct);
            let mut puff = Puff::new(1 << bits);
            for msg in [&b""[..], b"Hello", b"", b"", b"Hello Hello", b""] {
                let z = compress(&mut c, msg);
                if msg.is_empty() {
                    assert_eq!(&z[..], [0x00], "RFC 7692 §7.2.3.6");
                }
                assert_eq!(&decompress(&mut d, &z).unwrap()[..], msg);
                if nct {
                    puff.reset();
                }
                assert_eq!(puff.message(&z).unwrap(), msg);
            }
            // An entirely empty payload (some peers send it) is an empty
            // message and leaves the context intact.
            assert_eq!(&decompress(&mut d, &[]).unwrap()[..], b"");
            let mut out = BytesMut::new();
            d.decompress(&[], false, &mut out, 10).unwrap();
            d.decompress(&[], true, &mut out, 10).unwrap();
            assert!(out.is_empty());
            let z = compress(&mut c, b"Hello again");
            assert_eq!(&decompress(&mut d, &z).unwrap()[..], b"Hello again");
        }
    }
}

// --------------------------------------------------------------- round trips

/// Compresses `msgs` in order, checks each against our decompressor (fed in
/// `frags` fragments) and against the strict test decoder with a window of
/// exactly `1 << bits`; returns the compressed sizes.
fn roundtrip(bits: u8, nct: bool, level: u32, msgs: &[Vec<u8>], frags: usize) -> Vec<usize> {
    let mut c = Compressor::new(bits, nct, level);
    let mut d = Decompressor::new(bits, nct);
    let mut puff = Puff::new(1 << bits);
    let mut sizes = Vec::new();
    for (i, msg) in msgs.iter().enumerate() {
        let z = compress(&mut c, msg);
        sizes.push(z.len());
        let ctx = format!("bits {bits} nct {nct} level {level} msg {i}");
        // Our decompressor, fragment by fragment.
        let mut out = BytesMut::new();
        let step = z.len().div_ceil(frags).max(1);
        let chunks: Vec<&[u8]> = z.chunks(step).collect();
        for (j, chunk) in chunks.iter().enumerate() {
            d.decompress(chunk, j + 1 == chunks.len(), &mut out, msg.len())
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        }
        assert!(out[..] == msg[..], "{ctx}: mismatch");
        // The strict decoder.
        if nct {
            puff.reset();
        }
        let got = puff
            .message(&z)
            .unwrap_or_else(|e| panic!("{ctx}: puff: {e}"));
        assert!(got == *msg, "{ctx}: puff mismatch");
    }
    assert!(
        puff.max_dist <= zlib_max_dist(bits),
        "bits {bits} level {level}: distance {}",
        puff.max_dist
    );
    sizes
}

#[test]
fn roundtrip_all_window_bits_levels_and_modes() {
    let msgs: Vec<Vec<u8>> = vec![
        text(1, 5000),
        random_bytes(2, 3000),
        text(1, 5000),
        periodic(300, 20_000),
        vec![b'a'; 70_000],
        Vec::new(),
        text(3, 100_000),
        random_bytes(4, 70_000),
        b"x".to_vec(),
    ];
    for bits in 8..=15 {
        for nct in [false, true] {
            for level in [0, 1, 2, 6, 9] {
                roundtrip(bits, nct, level, &msgs, 3);
            }
        }
    }
}

#[test]
fn context_takeover_reuses_context() {
    let msg = text(9, 2000);
    for bits in 8..=15 {
        for level in [1, 6] {
            let taken = roundtrip(bits, false, level, &[msg.clone(), msg.clone()], 1);
            let fresh = roundtrip(bits, true, level, &[msg.clone(), msg.clone()], 1);
            assert_eq!(fresh[0], fresh[1], "bits {bits}: no takeover, same size");
            assert_eq!(taken[0], fresh[0]);
            if msg.len() <= zlib_max_dist(bits) {
                // The whole previous message is within reach: the second one
                // is a handful of back-references.
                assert!(
                    taken[1] * 5 < taken[0],
                    "bits {bits} level {level}: {taken:?}"
                );
            } else {
                assert!(taken[1] <= taken[0], "bits {bits} level {level}: {taken:?}");
            }
        }
    }
}

#[test]
fn bits8_stream_fits_a_256_byte_window() {
    // Repeats 200 bytes apart are within a 256-byte window: found with bits 8.
    // Repeats 300 apart are not: bits 8 must not use them. Repeats 400 apart
    // are found with bits 10, and the strict 256-byte decoder rejects that.
    let near = periodic(200, 30_000);
    let far = periodic(300, 30_000);
    let farther = periodic(400, 30_000);
    let mut c10 = Compressor::new(10, false, 9);
    let z10 = compress(&mut c10, &farther);
    assert!(z10.len() < 2000, "{}", z10.len());
    assert!(Puff::new(256).message(&z10).unwrap_err().contains("window"));

    for level in 0..=9 {
        for nct in [false, true] {
            let mut c8 = Compressor::new(8, nct, level);
            let mut strict = Puff::new(256);
            for round in 0..3 {
                for (name, data) in [
                    ("near", &near),
                    ("far", &far),
                    ("text", &text(round, 20_000)),
                ] {
                    let z = compress(&mut c8, data);
                    if nct {
                        strict.reset();
                    }
                    let got = strict
                        .message(&z)
                        .unwrap_or_else(|e| panic!("level {level} {name}: {e}"));
                    assert!(got == *data, "level {level} {name}");
                    if level > 0 && name == "near" {
                        assert!(z.len() < data.len() / 2, "level {level}: {}", z.len());
                    }
                    if name == "far" {
                        assert!(z.len() > 25_000, "level {level}: {}", z.len());
                    }
                }
            }
            assert!(strict.max_dist <= 250, "{}", strict.max_dist);
            if level > 0 {
                assert!(strict.max_dist > 200, "{}", strict.max_dist);
            }
        }
    }
}

#[test]
fn incompressible_data_does_not_grow_much() {
    let data = random_bytes(5, 100_000);
    for bits in 8..=15 {
        for level in 0..=9 {
            let mut c = Compressor::new(bits, false, level);
            let z = compress(&mut c, &data);
            // Level 1 (zlib-rs "quick") only uses the fixed Huffman code:
            // 8 or 9 bits per random byte. Otherwise stored blocks or
            // near-flat dynamic Huffman codes cost well under 1 %.
            let max = if level == 1 {
                data.len() + data.len() / 16
            } else {
                data.len() + data.len() / 200 + 64
            };
            assert!(z.len() <= max, "bits {bits} level {level}: {}", z.len());
        }
    }
}

#[test]
fn params_build_matching_compressor_and_decompressor() {
    let p = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: false,
        server_max_window_bits: 9,
        client_max_window_bits: 12,
    };
    let server_tx = p.compressor(true, 6);
    assert_eq!(
        (server_tx.window_bits(), server_tx.no_context_takeover()),
        (9, true)
    );
    let client_rx = p.decompressor(false);
    assert_eq!(
        (client_rx.window_bits(), client_rx.no_context_takeover()),
        (9, true)
    );
    let client_tx = p.compressor(false, 6);
    assert_eq!(
        (client_tx.window_bits(), client_tx.no_context_takeover()),
        (12, false)
    );
    let server_rx = p.decompressor(true);
    assert_eq!(
        (server_rx.window_bits(), server_rx.no_context_takeover()),
        (12, false)
    );

    // Both directions round-trip.
    for is_server in [true, false] {
        let mut tx = p.compressor(is_server, 6);
        let mut rx = p.decompressor(!is_server);
        for i in 0..5 {
            let msg = text(i, 3000);
            let z = compress(&mut tx, &msg);
            assert_eq!(&decompress(&mut rx, &z).unwrap()[..], &msg[..]);
        }
    }
}

#[test]
fn out_of_range_arguments_are_clamped() {
    for bits in [0, 7, 16, 255] {
        let mut c = Compressor::new(bits, false, 99);
        let mut d = Decompressor::new(bits, false);
        assert!((8..=15).contains(&c.window_bits()));
        let msg = text(1, 1000);
        let z = compress(&mut c, &msg);
        assert_eq!(&decompress(&mut d, &z).unwrap()[..], &msg[..]);
    }
}

// ------------------------------------------------------------------ interop

#[test]
fn interop_with_flate2() {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    let msgs: Vec<Vec<u8>> = (0..6).map(|i| text(i, 4000 + 1000 * i as usize)).collect();
    for bits in 9..=15u8 {
        for nct in [false, true] {
            // flate2 -> us
            let mut fc = Compress::new_with_window_bits(Compression::new(6), false, bits);
            let mut d = Decompressor::new(bits, nct);
            for msg in &msgs {
                let mut z = Vec::with_capacity(msg.len() + 100);
                fc.compress_vec(msg, &mut z, FlushCompress::Sync).unwrap();
                assert!(z.ends_with(&TAIL));
                z.truncate(z.len() - 4);
                assert_eq!(&decompress(&mut d, &z).unwrap()[..], &msg[..]);
                if nct {
                    fc.reset();
                }
            }
            // us -> flate2
            let mut c = Compressor::new(bits, nct, 1);
            let mut fd = Decompress::new_with_window_bits(false, bits);
            for msg in &msgs {
                let mut z = compress(&mut c, msg).to_vec();
                z.extend_from_slice(&TAIL);
                let mut out = Vec::with_capacity(msg.len() + 10);
                fd.decompress_vec(&z, &mut out, FlushDecompress::Sync)
                    .unwrap();
                assert_eq!(out, *msg);
                if nct {
                    fd.reset(false);
                }
            }
        }
    }
}

// ---------------------------------------------------------- bombs and limits

/// A message of `mib` MiB of zeros, compressed: built from two compressed
/// MiB segments (the second one repeated), ~1 KiB per MiB.
fn zero_bomb(mib: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut c = Compressor::new(8, false, 9);
    let first = compress(&mut c, &zeros);
    let next = compress(&mut c, &zeros);
    let mut bomb = first.to_vec();
    for _ in 1..mib {
        bomb.extend_from_slice(&TAIL);
        bomb.extend_from_slice(&next);
    }
    bomb
}

#[test]
fn bomb_is_valid_and_tiny() {
    let bomb = zero_bomb(4);
    assert!(bomb.len() < 4 * 1100, "{}", bomb.len());
    let mut d = Decompressor::new(15, false);
    let out = decompress(&mut d, &bomb).unwrap();
    assert_eq!(out.len(), 4 << 20);
    assert!(out.iter().all(|&b| b == 0));
}

#[test]
fn decompression_bomb_fails_fast_with_bounded_memory() {
    // ~1 KiB inflating to 1 MiB (DEFLATE's ratio is at most ~1032:1).
    let small = zero_bomb(1);
    assert!(small.len() <= 1100, "{}", small.len());
    let limit = 64 * 1024;
    let mut d = Decompressor::new(15, false);
    let mut out = BytesMut::new();
    assert_eq!(
        d.decompress(&small, true, &mut out, limit),
        Err(DeflateError::TooLarge)
    );
    assert!(out.len() <= limit);
    // Grown towards the limit, never past it.
    assert!(out.capacity() <= limit, "{}", out.capacity());

    // ~300 KiB inflating to 300 MiB, limits of 1 MiB and of an odd size, in one frame and
    // fragmented.
    let big = zero_bomb(300);
    for (limit, frag) in [
        (1 << 20, big.len()),
        (1 << 20, 1024),
        ((3 << 20) + 12_345, 4096),
    ] {
        let mut d = Decompressor::new(15, false);
        let mut out = BytesMut::new();
        let start = Instant::now();
        let mut result = Ok(());
        let chunks: Vec<&[u8]> = big.chunks(frag).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            result = d.decompress(chunk, i + 1 == chunks.len(), &mut out, limit);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(DeflateError::TooLarge));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(out.len() <= limit);
        assert!(out.capacity() <= limit, "{}", out.capacity());
        assert!(!d.in_message(), "state discarded after the error");
        // The decompressor is usable again (fresh state) afterwards.
        assert_eq!(
            &decompress(&mut d, &hex("f2 48 cd c9 c9 07 00")).unwrap()[..],
            b"Hello"
        );
    }
}

#[test]
fn limit_is_exact() {
    let msg = text(4, 10_000);
    let mut c = Compressor::new(15, true, 6);
    let z = compress(&mut c, &msg);
    for limit in [msg.len(), msg.len() + 1, usize::MAX] {
        let mut d = Decompressor::new(15, true);
        let mut out = BytesMut::new();
        d.decompress(&z, true, &mut out, limit).unwrap();
        assert_eq!(&out[..], &msg[..]);
    }
    let mut d = Decompressor::new(15, true);
    let mut out = BytesMut::new();
    let limit = msg.len() - 1;
    assert_eq!(
        d.decompress(&z, true, &mut out, limit),
        Err(DeflateError::TooLarge)
    );
    assert_eq!(out.len(), limit);
    // The limit counts what `out` already holds.
    let mut d = Decompressor::new(15, true);
    let mut out = BytesMut::from(&b"prefix"[..]);
    assert!(d.decompress(&z, true, &mut out, msg.len() + 5).is_err());
    let mut out = BytesMut::from(&b"prefix"[..]);
    let mut d = Decompressor::new(15, true);
    d.decompress(&z, true, &mut out, msg.len() + 6).unwrap();
    // Already over the limit.
    let mut out = BytesMut::from(&b"prefix"[..]);
    assert!(d.decompress(&z, true, &mut out, 3).is_err());
    // Limit 0 with an empty message is fine.
    let mut out = BytesMut::new();
    let mut d = Decompressor::new(15, true);
    d.decompress(&[0x00], true, &mut out, 0).unwrap();
}

// ------------------------------------------------------------------ corrupt

#[test]
fn corrupt_input_is_reported() {
    for bad in [
        "ff ff ff ff",                               // invalid block type 3
        "00 05 00 00 00 48",                         // stored length mismatch
        "f2 00 11 00 00",                            // back-reference without history
        "04 c0 81 08 00 00 00 00 20 7f eb 0b 00 00", // bad dynamic header
    ] {
        let mut d = Decompressor::new(15, false);
        let r = decompress(&mut d, &hex(bad));
        assert!(matches!(r, Err(DeflateError::Corrupt(_))), "{bad}: {r:?}");
        // Usable again after the error.
        assert_eq!(
            &decompress(&mut d, &hex("f2 48 cd c9 c9 07 00")).unwrap()[..],
            b"Hello"
        );
    }
}

#[test]
fn memory_estimates() {
    let mut c = Compressor::new(15, false, 1);
    let idle = c.memory_estimate();
    assert!(idle < 200);
    compress(&mut c, b"hello hello hello");
    assert!(c.memory_estimate() > 370_000);
    assert!(!c.release(), "context takeover: state kept");
    let mut c9 = Compressor::new(9, true, 1);
    compress(&mut c9, b"hello hello hello");
    let m9 = c9.memory_estimate();
    assert!(m9 > 240_000 && m9 < 260_000, "{m9}");
    assert!(c9.release());
    assert!(c9.memory_estimate() < 200);
    compress(&mut c9, b"hello hello hello");
    assert_eq!(c9.memory_estimate(), m9);

    let mut d = Decompressor::new(15, false);
    assert!(d.memory_estimate() < 200);
    let mut out = BytesMut::new();
    d.decompress(&hex("f2 48"), false, &mut out, 100).unwrap();
    assert!(d.memory_estimate() > 40_000);
    d.decompress(&hex("cd c9 c9 07 00"), true, &mut out, 100)
        .unwrap();
    assert!(d.memory_estimate() > 40_000, "takeover: kept");
    let mut d = Decompressor::new(15, true);
    d.decompress(&hex("f2 48"), false, &mut out, 100).unwrap();
    assert!(d.memory_estimate() > 40_000, "kept within a message");
    d.decompress(&hex("cd c9 c9 07 00"), true, &mut out, 100)
        .unwrap();
    assert!(
        d.memory_estimate() < 200,
        "no takeover: freed after the message"
    );
}

#[test]
fn codec_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Compressor>();
    check::<Decompressor>();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_input_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        split in 0usize..2048,
        bits in 8u8..=15,
        nct in any::<bool>(),
        limit in prop_oneof![Just(usize::MAX), 0usize..10_000],
    ) {
        let mut d = Decompressor::new(bits, nct);
        let mut out = BytesMut::new();
        let split = split.min(data.len());
        let first = d.decompress(&data[..split], false, &mut out, limit);
        let result = first.and_then(|()| d.decompress(&data[split..], true, &mut out, limit));
        if let Err(e) = &result {
            let expected = matches!(e, DeflateError::Corrupt(_) | DeflateError::TooLarge);
            prop_assert!(expected, "{:?}", e);
        }
        prop_assert!(out.len() <= limit);
        // Whatever happened, a valid message decodes afterwards if the
        // state was reset (error) or the context is irrelevant.
        if result.is_err() || nct {
            let mut out = BytesMut::new();
            d.decompress(&hex("00 05 00 fa ff 48 65 6c 6c 6f 00"), true, &mut out, 100).unwrap();
            prop_assert_eq!(&out[..], b"Hello");
        }
    }

    #[test]
    fn mutated_streams_never_panic(
        seed in any::<u64>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut c = Compressor::new(15, false, 6);
        let mut z = compress(&mut c, &text(seed, 3000)).to_vec();
        for (pos, x) in flips {
            let i = pos % z.len();
            z[i] ^= x;
        }
        let mut d = Decompressor::new(15, false);
        let mut out = BytesMut::new();
        let r = d.decompress(&z, true, &mut out, 1 << 20);
        if let Err(e) = r {
            let expected = matches!(e, DeflateError::Corrupt(_) | DeflateError::TooLarge);
            prop_assert!(expected, "{:?}", e);
        }
    }

    #[test]
    fn roundtrip_random_sequences(
        msgs in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..600),
                (any::<u64>(), 0usize..3000).prop_map(|(s, n)| text(s, n)),
            ],
            1..6,
        ),
        bits in 8u8..=15,
        nct in any::<bool>(),
        level in 0u32..=9,
        frags in 1usize..5,
    ) {
        roundtrip(bits, nct, level, &msgs, frags);
    }
}
