//! Incremental UTF-8 validation that fails at the first invalid byte.
//!
//! Text messages arrive in frames, and frames arrive in TCP segments; a code point may be
//! split anywhere. [`Utf8Validator`] is fed the bytes as they arrive and reports an error as
//! soon as a byte makes the text invalid, even in the middle of a frame (RFC 6455 §8.1: a
//! receiver should fail fast). It carries at most 3 bytes of an unfinished code point between
//! calls; bulk validation is SIMD-accelerated by `simdutf8`. [`Utf8Bytes`] is text known to be
//! valid: the payload of a text message.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

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

/// Bytes that are known to be valid UTF-8: the payload of a text message.
///
/// Cloning is cheap (reference-counted, like [`Bytes`]).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty text.
    pub const fn new() -> Self {
        Utf8Bytes(Bytes::new())
    }

    /// A text from a static string, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps `bytes` after checking that they are UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Utf8Bytes(bytes))
    }

    /// Wraps bytes that the caller has already validated. Only for use inside this crate,
    /// where every text payload goes through [`crate::utf8::Utf8Validator`] first.
    pub(crate) fn from_bytes_unchecked(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Utf8Bytes(bytes)
    }

    /// The text (no validation here: it was validated when the value was made).
    pub fn as_str(&self) -> &str {
        #[allow(unsafe_code)]
        // SAFETY: the field is private, and every constructor either starts from a `str`
        // (`new`, `from_static`, `From<String>`, `From<&str>`), checks the bytes
        // (`try_from_bytes`) or is crate-internal and called only on bytes that passed
        // `Utf8Validator` (`from_bytes_unchecked`, debug-asserted there; the `connection`
        // fuzz target asserts every received text is UTF-8). No method mutates the bytes.
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Utf8Bytes {
    fn from(s: &String) -> Self {
        Utf8Bytes::from(s.as_str())
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = std::str::Utf8Error;
    fn try_from(b: Bytes) -> Result<Self, Self::Error> {
        Utf8Bytes::try_from_bytes(b)
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

    mod utf8_bytes {
        use super::super::*;
        use bytes::Bytes;

        /// `as_str` trusts the constructors: each one must hand it valid UTF-8, and the text
        /// read back must be exactly what went in.
        #[test]
        fn every_constructor_gives_as_str_its_text() {
            let s = "κόσμε, world";
            let all = [
                Utf8Bytes::from(s),
                Utf8Bytes::from(s.to_string()),
                Utf8Bytes::from(&s.to_string()),
                Utf8Bytes::from_static("κόσμε, world"),
                Utf8Bytes::try_from_bytes(Bytes::from(s)).unwrap(),
                Utf8Bytes::try_from(Bytes::from(s)).unwrap(),
                Utf8Bytes::from_bytes_unchecked(Bytes::from(s)),
            ];
            for t in &all {
                assert_eq!(t.as_str(), s);
                assert_eq!(t.len(), s.len());
                assert!(!t.is_empty());
                assert_eq!(t.to_string(), s);
            }
            assert_eq!(Utf8Bytes::new().as_str(), "");
            assert_eq!(Utf8Bytes::default().as_str(), "");
            assert!(Utf8Bytes::new().is_empty());
        }

        #[test]
        fn invalid_bytes_are_refused() {
            for bad in [&b"\xff"[..], b"\xce", b"ok\xed\xa0\x80", b"\xc0\xaf"] {
                assert!(Utf8Bytes::try_from_bytes(Bytes::copy_from_slice(bad)).is_err());
                assert!(Utf8Bytes::try_from(Bytes::copy_from_slice(bad)).is_err());
            }
        }
    }
}
