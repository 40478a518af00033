//! `FrameHeader::parse` / `encode` on arbitrary bytes, and the masking functions.
//!
//! Input: the bytes to parse. When a header parses, the bytes after it are used as a payload
//! to check that masking in pieces (`apply_mask_at`) equals masking whole (`apply_mask`),
//! with the split point taken from the header's first byte.
//!
//! Invariants:
//! - `Ok(None)` only while fewer than 14 bytes are given, and padding the input to 14 bytes
//!   then never gives `Ok(None)`; no proper prefix of a parsed header parses.
//! - `Ok(Some((h, n)))`: `n` is the size implied by the length form and mask bit; with the
//!   minimal length form `n == h.encoded_len()` and `encode` reproduces the input bytes
//!   exactly; with a non-minimal form `n > h.encoded_len()`. Always: `encode` writes
//!   `encoded_len()` bytes that parse back to `h`.
//! - Errors match the bytes (reserved opcode; 64-bit length with the top bit set).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsx_proto::frame::{FrameHeader, HeaderError, OpCode, MAX_HEADER_LEN};
use wsx_proto::mask::{apply_mask, apply_mask_at};

fuzz_target!(|data: &[u8]| {
    let result = FrameHeader::parse(data);
    // The parser looks at no more than MAX_HEADER_LEN bytes.
    let head = &data[..data.len().min(MAX_HEADER_LEN)];
    assert_eq!(FrameHeader::parse(head), result);

    match result {
        Ok(None) => {
            assert!(data.len() < MAX_HEADER_LEN);
            let mut padded = data.to_vec();
            padded.resize(MAX_HEADER_LEN, 0xAA);
            assert_ne!(FrameHeader::parse(&padded), Ok(None));
        }
        Ok(Some((h, n))) => {
            assert!(n <= data.len() && n <= MAX_HEADER_LEN);
            let form = data[1] & 0x7F;
            let masked = data[1] & 0x80 != 0;
            let expected_n = match form {
                126 => 4,
                127 => 10,
                _ => 2,
            } + if masked { 4 } else { 0 };
            assert_eq!(n, expected_n);
            assert_eq!(h.mask.is_some(), masked);
            assert_eq!(h.fin, data[0] & 0x80 != 0);
            assert_eq!(h.rsv1, data[0] & 0x40 != 0);
            assert_eq!(h.rsv2, data[0] & 0x20 != 0);
            assert_eq!(h.rsv3, data[0] & 0x10 != 0);
            assert_eq!(h.opcode.as_u8(), data[0] & 0x0F);
            assert!(h.payload_len < 1 << 63);
            if h.opcode.is_control() {
                // Not the parser's business, but the opcode mapping must agree.
                assert!(matches!(
                    h.opcode,
                    OpCode::Close | OpCode::Ping | OpCode::Pong
                ));
            }

            let minimal = match form {
                126 => h.payload_len >= 126,
                127 => h.payload_len > 0xFFFF,
                _ => true,
            };
            let mut out = [0u8; MAX_HEADER_LEN];
            let m = h.encode(&mut out);
            assert_eq!(m, h.encoded_len());
            if minimal {
                assert_eq!(n, h.encoded_len());
                assert_eq!(
                    &out[..m],
                    &data[..n],
                    "minimal header re-encodes differently"
                );
            } else {
                assert!(n > h.encoded_len());
            }
            assert_eq!(FrameHeader::parse(&out[..m]), Ok(Some((h, m))));
            for cut in 0..m {
                assert_eq!(
                    FrameHeader::parse(&out[..cut]),
                    Ok(None),
                    "prefix {cut} of {m}"
                );
            }
            for cut in 0..n {
                assert_eq!(
                    FrameHeader::parse(&data[..cut]),
                    Ok(None),
                    "prefix {cut} of {n}"
                );
            }

            // Masking in two pieces equals masking whole, and masking is an involution.
            let payload = &data[n..];
            let key = h.mask.unwrap_or([data[0], data[1], 0x5A, 0xC3]);
            let mut whole = payload.to_vec();
            apply_mask(&mut whole, key);
            let mut naive = payload.to_vec();
            for (i, b) in naive.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
            assert_eq!(whole, naive);
            let split = usize::from(data[0]) % (payload.len() + 1);
            let mut pieces = payload.to_vec();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask_at(a, key, 0);
            apply_mask_at(b, key, split);
            assert_eq!(pieces, whole);
            apply_mask(&mut whole, key);
            assert_eq!(whole, payload);
        }
        Err(HeaderError::ReservedOpcode(op)) => {
            assert!(data.len() >= 2);
            assert_eq!(op, data[0] & 0x0F);
            assert!(OpCode::from_u8(op).is_none());
        }
        Err(HeaderError::LengthOverflow) => {
            assert!(data.len() >= 10);
            assert!(OpCode::from_u8(data[0] & 0x0F).is_some());
            assert_eq!(data[1] & 0x7F, 127);
            assert!(data[2] & 0x80 != 0);
        }
    }
});
