//! Client-to-server payload masking (RFC 6455 §5.3).
//!
//! Masking XORs every payload byte with one byte of a 4-byte key, cycling through the key.
//! Unmasking is the same operation. The loop works on blocks of `u64` words, which the
//! compiler turns into SIMD loads and stores: SSE2 on every x86_64 and NEON on every aarch64
//! (both are part of those targets' baseline), and AVX2 where the CPU has it, detected at
//! run time on x86_64 (a second copy of the same loop compiled for AVX2). Other targets get
//! the same loop as plain word operations. It is correct for any alignment and any length,
//! and `offset` lets a caller mask a payload in several pieces (as it arrives) with the same
//! result as masking it whole.

/// Payloads shorter than this are masked by the baseline loop: a wider one gains nothing
/// on a few words.
#[cfg(target_arch = "x86_64")]
const WIDE_FROM: usize = 128;

/// Masks (or unmasks) `buf` in place with `key`, as if `buf` started at payload byte 0.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_at(buf, key, 0);
}

/// Masks (or unmasks) `buf` in place with `key`, where `buf` starts at payload byte `offset`.
///
/// Masking a payload in consecutive pieces with their running offsets gives the same bytes as
/// masking it in one call. Uses AVX2 when the CPU has it (x86_64, detected once).
#[inline]
pub fn apply_mask_at(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= WIDE_FROM && std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: `mask_avx2` is safe code compiled for AVX2; calling it needs only that
        // the CPU supports AVX2, which was just checked.
        unsafe {
            mask_avx2(buf, key)
        };
        return;
    }
    mask_words(buf, key);
}

/// [`apply_mask_at`] without the run-time choice of a wider loop: the baseline loop only
/// (SSE2 on x86_64). For comparisons in benchmarks (feature `bench-internals`) and tests.
#[cfg(any(test, feature = "bench-internals"))]
#[inline]
pub fn apply_mask_at_baseline(buf: &mut [u8], key: [u8; 4], offset: usize) {
    mask_words(buf, rotate(key, offset));
}

/// The key as it applies from payload byte `offset` on.
#[inline]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let r = offset % 4;
    [key[r], key[(r + 1) % 4], key[(r + 2) % 4], key[(r + 3) % 4]]
}

/// [`mask_words`] compiled for AVX2 (32-byte registers). A safe function; calling it is
/// unsafe only from code not compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mask_avx2(buf: &mut [u8], key: [u8; 4]) {
    mask_words(buf, key);
}

/// The masking loop, with `key` already rotated to `buf`'s start: 64-byte blocks of eight
/// `u64` words (vectorized by the compiler to whatever the calling function is compiled
/// for), then words, then bytes.
#[inline(always)]
fn mask_words(buf: &mut [u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        for chunk in block.chunks_exact_mut(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
        }
    }
    let rest = blocks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    // Every block and word above is a multiple of 4 bytes long, so the tail starts at key[0].
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(i + offset) % 4];
        }
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: masked "Hello" with key 37 fa 21 3d.
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(&data, b"Hello");
    }

    #[test]
    fn the_wide_loop_matches_at_every_length_around_its_blocks() {
        // Lengths around the 128-byte switch and the 64-byte blocks, every start alignment.
        let data: Vec<u8> = (0..1200u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in (120..136).chain(250..270).chain([1024, 1031, 1100]) {
            for start in 0..8 {
                for offset in 0..4 {
                    let mut a = data[..start + len].to_vec();
                    let mut b = a.clone();
                    apply_mask_at(&mut a[start..], [0x37, 0xfa, 0x21, 0x3d], offset);
                    naive(&mut b[start..], [0x37, 0xfa, 0x21, 0x3d], offset);
                    assert_eq!(a, b, "len {len} start {start} offset {offset}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn matches_naive_any_alignment(data in proptest::collection::vec(any::<u8>(), 0..700),
                                       key in any::<[u8; 4]>(), start in 0usize..9, offset in 0usize..9) {
            // Both loops: the run-time choice (AVX2 on CPUs that have it, from 128 bytes
            // on) and the baseline one.
            let start = start.min(data.len());
            let mut a = data.clone();
            let mut b = data.clone();
            let mut c = data.clone();
            apply_mask_at(&mut a[start..], key, offset);
            naive(&mut b[start..], key, offset);
            apply_mask_at_baseline(&mut c[start..], key, offset);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(c, b);
        }

        #[test]
        fn pieces_equal_whole(data in proptest::collection::vec(any::<u8>(), 0..300),
                              key in any::<[u8; 4]>(), cut in 0usize..300) {
            let cut = cut.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, key);
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask_at(a, key, 0);
            apply_mask_at(b, key, cut);
            prop_assert_eq!(whole, pieces);
        }
    }
}
