//! Incremental UTF-8 validation that fails at the first invalid byte.
//!
//! Text messages arrive in frames, and frames arrive in TCP segments; a code point may be
//! split anywhere. [`Utf8Validator`] is fed the bytes as they arrive and reports an error as
//! soon as a byte makes the text invalid, even in the middle of a frame (RFC 6455 §8.1: a
//! receiver should fail fast). It carries at most 3 bytes of an unfinished code point between
//! calls; bulk validation is SIMD-accelerated by `simdutf8`.

/// The bytes seen so far are not a prefix of any valid UTF-8 text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

/// A streaming UTF-8 validator (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// Inputs up to this long are first checked for being all ASCII (see [`Utf8Validator::feed`]).
const SHORT: usize = 64;

/// Length of the code point that starts with `lead` (only called for valid lead bytes).
fn width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub const fn new() -> Self {
        Utf8Validator {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Forgets everything, ready for a new text.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }

    /// True when the bytes fed so far end in the middle of a code point.
    pub fn is_incomplete(&self) -> bool {
        self.partial_len != 0
    }

    /// Feeds the next bytes of the text.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = width(self.partial[0]) - have;
            let take = need.min(data.len());
            let mut seq = self.partial;
            seq[have..have + take].copy_from_slice(&data[..take]);
            let seq = &seq[..have + take];
            match simdutf8::compat::from_utf8(seq) {
                Ok(_) => {}
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix, still incomplete: `data` was too short.
                    self.partial[..seq.len()].copy_from_slice(seq);
                    self.partial_len = seq.len() as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
            self.partial_len = 0;
            data = &data[take..];
        }
        // Short ASCII (chat lines, JSON keys, the 20-byte echo) is settled by a word-wise
        // scan for less than simdutf8's setup costs on a short input.
        if data.len() <= SHORT && data.is_ascii() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Declares the end of the text: an unfinished code point is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.is_incomplete();
        self.reset();
        if incomplete {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_split(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &c in cuts {
            let c = c.clamp(start, data.len());
            v.feed(&data[start..c])?;
            start = c;
        }
        v.feed(&data[start..])?;
        v.finish()
    }

    #[test]
    fn fails_at_first_invalid_byte() {
        let mut v = Utf8Validator::new();
        // "κόσμε" then 0xF4 0x90: U+110000 and above is invalid as soon as the 2nd byte shows.
        v.feed("κόσμε".as_bytes()).unwrap();
        v.feed(&[0xF4]).unwrap();
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn incomplete_at_end_fails_on_finish() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xE2, 0x82]).unwrap();
        assert!(v.is_incomplete());
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }

    #[test]
    fn split_code_point_one_byte_at_a_time() {
        assert_eq!(feed_split("€𝄞".as_bytes(), &[1, 2, 3, 4, 5, 6]), Ok(()));
    }

    #[test]
    fn surrogates_and_overlongs_rejected() {
        for bad in [
            &[0xED, 0xA0, 0x80][..],
            &[0xC0, 0x80],
            &[0xE0, 0x80, 0x80],
            &[0xFF],
        ] {
            assert_eq!(feed_split(bad, &[1, 2]), Err(InvalidUtf8), "{bad:x?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_std(data in proptest::collection::vec(any::<u8>(), 0..64),
                           cuts in proptest::collection::vec(0usize..64, 0..6)) {
            let mut cuts = cuts;
            cuts.sort();
            let ours = feed_split(&data, &cuts).is_ok();
            prop_assert_eq!(ours, std::str::from_utf8(&data).is_ok());
        }

        #[test]
        fn valid_text_any_split(s in "\\PC{0,40}", cuts in proptest::collection::vec(0usize..160, 0..6)) {
            let mut cuts = cuts;
            cuts.sort();
            prop_assert_eq!(feed_split(s.as_bytes(), &cuts), Ok(()));
        }
    }
}
