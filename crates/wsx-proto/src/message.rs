//! Messages: what an application sends and receives.

use crate::close::CloseFrame;
use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

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

/// A WebSocket message.
///
/// `Text` and `Binary` are data messages (possibly reassembled from fragments). `Ping`,
/// `Pong` and `Close` are control frames; receiving them is informational, because the
/// connection answers pings and completes the close handshake by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (validated UTF-8).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping (at most 125 bytes of payload).
    Ping(Bytes),
    /// A pong (at most 125 bytes of payload).
    Pong(Bytes),
    /// A close frame; `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Message::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Message::Binary(b.into())
    }

    /// True for `Text` and `Binary`.
    pub fn is_data(&self) -> bool {
        matches!(self, Message::Text(_) | Message::Binary(_))
    }

    /// Payload length in bytes (for `Close`, the encoded code and reason).
    pub fn len(&self) -> usize {
        match self {
            Message::Text(t) => t.len(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
            Message::Close(f) => f.as_ref().map_or(0, CloseFrame::encoded_len),
        }
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(v: Vec<u8>) -> Self {
        Message::Binary(v.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
