//! permessage-deflate data path: `Decompressor::decompress` on arbitrary frames, and
//! `Compressor::compress` → `Decompressor::decompress` round trips.
//!
//! Input: a mode byte, then records.
//! - bit 0 of the mode byte: 0 = inflate arbitrary data, 1 = round trip.
//! - bits 1-3: window bits 8 + n; bit 4: no_context_takeover.
//! - bits 5-7 (inflate mode): the limit: 0-3 → 1 MiB, 4 → 0, 5 → 1, 6 → 100, 7 → 4096.
//!
//! Inflate mode: records `ctl [len_hi len_lo] data`: `ctl` bit 0 = FIN (last frame of the
//! message); bit 1 = a 16-bit length follows, else the length is `ctl >> 2` (0-63). A message
//! left open at the end of the input gets a final empty FIN frame.
//!
//! Round-trip mode: a level byte (level = byte % 10), then records `ctl len_hi len_lo data`:
//! the message is `data`, repeated `(ctl >> 3 & 7) + 1` times, compressed by one compressor
//! and inflated by one decompressor (same window and takeover), split into
//! `(ctl & 7) + 1` frames at positions taken from the data; `ctl` bit 6 calls
//! `Compressor::release` afterwards.
//!
//! Invariants: never panics; `out.len() <= limit` after every call, even failing ones;
//! `out.capacity() <= 2 * limit + 64`; `TooLarge` only when the limit is really exceeded;
//! the decompressor is between messages after FIN or an error; its memory estimate stays
//! small; round trips give the input back with `limit` = exactly its length, and one byte
//! less fails with `TooLarge`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wsx_fuzz::Cursor;
use wsx_proto::deflate::{Compressor, Decompressor, DeflateError};

const MIB: usize = 1 << 20;

fn check_out(out: &BytesMut, limit: usize) {
    assert!(
        out.len() <= limit,
        "out.len() {} > limit {limit}",
        out.len()
    );
    assert!(
        out.capacity() <= 2 * limit + 64,
        "out.capacity() {} for limit {limit}",
        out.capacity()
    );
}

fn inflate_mode(mode: u8, mut input: Cursor<'_>) {
    let bits = 8 + ((mode >> 1) & 7);
    let nct = mode & 0x10 != 0;
    let limit = match mode >> 5 {
        4 => 0,
        5 => 1,
        6 => 100,
        7 => 4096,
        _ => MIB,
    };
    let mut d = Decompressor::new(bits, nct);
    assert_eq!(d.window_bits(), bits);
    let mut out = BytesMut::new();
    let mut open = false;
    while !input.is_empty() {
        let ctl = input.u8();
        let fin = ctl & 1 != 0;
        let len = if ctl & 2 != 0 {
            usize::from(input.u16())
        } else {
            usize::from(ctl >> 2)
        };
        let frame = input.bytes(len);
        let before = out.len();
        let r = d.decompress(frame, fin, &mut out, limit);
        check_out(&out, limit);
        assert!(out.len() >= before, "decompress removed output");
        assert!(d.memory_estimate() <= 64 * 1024, "{}", d.memory_estimate());
        match r {
            Ok(()) => {
                open = !fin;
                if fin {
                    assert!(!d.in_message());
                    out.clear();
                }
            }
            Err(e) => {
                if e == DeflateError::TooLarge {
                    // Only when one more byte than the limit would have been produced.
                    assert_eq!(out.len(), limit, "TooLarge before the limit was reached");
                }
                assert!(!matches!(e, DeflateError::Internal(_)), "{e:?}");
                assert!(!d.in_message());
                open = false;
                out.clear();
            }
        }
    }
    if open {
        let _ = d.decompress(&[], true, &mut out, limit);
        check_out(&out, limit);
        assert!(!d.in_message());
    }
}

fn inflate_all(
    d: &mut Decompressor,
    payload: &[u8],
    cuts: &[usize],
    limit: usize,
) -> Result<BytesMut, DeflateError> {
    let mut out = BytesMut::new();
    let mut start = 0;
    for (i, &c) in cuts.iter().enumerate() {
        let end = if i + 1 == cuts.len() {
            payload.len()
        } else {
            c.clamp(start, payload.len())
        };
        let r = d.decompress(&payload[start..end], i + 1 == cuts.len(), &mut out, limit);
        check_out(&out, limit);
        r?;
        start = end;
    }
    assert!(!d.in_message());
    Ok(out)
}

fn round_trip_mode(mode: u8, mut input: Cursor<'_>) {
    let bits = 8 + ((mode >> 1) & 7);
    let nct = mode & 0x10 != 0;
    let level = u32::from(input.u8() % 10);
    let mut c = Compressor::new(bits, nct, level);
    assert_eq!((c.window_bits(), c.no_context_takeover()), (bits, nct));
    let mut d = Decompressor::new(bits, nct);
    let mut first = true;
    while !input.is_empty() {
        let ctl = input.u8();
        let len = usize::from(input.u16());
        let data = input.bytes(len);
        let msg = data.repeat(usize::from((ctl >> 3) & 7) + 1);
        let mut payload = BytesMut::new();
        c.compress(&msg, &mut payload).expect("compress");
        assert!(c.memory_estimate() <= 512 * 1024);
        if msg.is_empty() {
            assert_eq!(&payload[..], &[0u8]);
        }
        let frames = usize::from(ctl & 7) + 1;
        let mut cuts: Vec<usize> = (0..frames)
            .map(|i| {
                let b = usize::from(*data.get(i).unwrap_or(&0));
                b * payload.len() / 255
            })
            .collect();
        cuts.sort_unstable();
        if first && !msg.is_empty() {
            // A fresh decompressor (the first message never depends on earlier ones) with one
            // byte too little room must refuse.
            let mut fresh = Decompressor::new(bits, nct);
            let r = inflate_all(&mut fresh, &payload, &cuts, msg.len() - 1);
            assert_eq!(
                r.err(),
                Some(DeflateError::TooLarge),
                "limit one below the size"
            );
        }
        first = false;
        let out = inflate_all(&mut d, &payload, &cuts, msg.len()).unwrap_or_else(|e| {
            panic!("round trip fails: {e:?} (bits {bits}, nct {nct}, level {level})")
        });
        assert!(
            out[..] == msg[..],
            "round trip changed the data (bits {bits}, nct {nct}, level {level})"
        );
        assert!(d.memory_estimate() <= 64 * 1024);
        if ctl & 0x40 != 0 {
            let released = c.release();
            assert!(
                !released || nct,
                "release() freed a context-takeover compressor"
            );
            if released {
                assert!(c.memory_estimate() < 1024);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let mode = input.u8();
    if mode & 1 == 0 {
        inflate_mode(mode, input);
    } else {
        round_trip_mode(mode, input);
    }
});
