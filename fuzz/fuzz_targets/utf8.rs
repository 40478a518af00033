//! `Utf8Validator` fed arbitrary splits of arbitrary bytes agrees with `std::str::from_utf8`.
//!
//! Input: `k` (number of cuts = `k % 8`), then `k % 8` chunk lengths (one byte each), then
//! the text. The text is fed in chunks of those lengths, the rest in a last chunk.
//!
//! Invariants, after every chunk: `feed` fails exactly when the bytes fed so far are no
//! longer a prefix of valid UTF-8 (fail fast, at the first impossible byte), and
//! `is_incomplete` is true exactly when they end inside a code point. `finish` succeeds
//! exactly when the whole text is valid. A validator is reusable after `finish` / `reset`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsx_fuzz::Cursor;
use wsx_proto::utf8::Utf8Validator;

/// Whether `b` is a prefix of some valid UTF-8 text, and whether it ends inside a code point.
fn std_prefix(b: &[u8]) -> (bool, bool) {
    match std::str::from_utf8(b) {
        Ok(_) => (true, false),
        Err(e) if e.error_len().is_none() => (true, true),
        Err(_) => (false, false),
    }
}

fn run(v: &mut Utf8Validator, text: &[u8], chunks: &[usize]) -> bool {
    let mut start = 0usize;
    let mut lens = chunks.to_vec();
    lens.push(usize::MAX);
    for len in lens {
        let end = start.saturating_add(len).min(text.len());
        let r = v.feed(&text[start..end]);
        let (prefix_ok, incomplete) = std_prefix(&text[..end]);
        assert_eq!(
            r.is_ok(),
            prefix_ok,
            "feed({:x?}) after {:x?}",
            &text[start..end],
            &text[..start]
        );
        if r.is_err() {
            return false;
        }
        assert_eq!(
            v.is_incomplete(),
            incomplete,
            "is_incomplete after {:x?}",
            &text[..end]
        );
        start = end;
        if start == text.len() {
            break;
        }
    }
    let done = v.finish();
    assert_eq!(
        done.is_ok(),
        std::str::from_utf8(text).is_ok(),
        "finish for {text:x?}"
    );
    assert!(!v.is_incomplete());
    true
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let k = usize::from(input.u8() % 8);
    let chunks: Vec<usize> = (0..k).map(|_| usize::from(input.u8())).collect();
    let text = input.rest();

    let mut v = Utf8Validator::new();
    let completed = run(&mut v, text, &chunks);
    // Reuse: after a failure the state is undefined until reset.
    if !completed {
        v.reset();
    }
    assert!(!v.is_incomplete());
    // Same again with the reused validator, then whole in one call.
    run(&mut v, text, &chunks);
    v.reset();
    run(&mut v, text, &[]);
    // Byte by byte (bounded, to keep executions fast).
    if text.len() <= 256 {
        let mut v = Utf8Validator::new();
        run(&mut v, text, &vec![1; text.len()]);
    }
});
