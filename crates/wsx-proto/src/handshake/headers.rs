//! An ordered, case-insensitive list of HTTP header fields.

use std::fmt;

/// HTTP header fields in the order they were received or added. Names compare
/// case-insensitively; a name may appear several times.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Copies the fields parsed by `httparse`.
    pub(crate) fn from_httparse(parsed: &[httparse::Header<'_>]) -> Self {
        Headers {
            fields: parsed
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
        }
    }

    /// Appends a field.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.fields.push((name.into(), value.into()));
    }

    /// The first value of `name` as text (`None` when absent or not valid UTF-8).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every value of `name` that is valid UTF-8, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// How many fields are named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.count(name) > 0
    }

    /// All fields as (name, raw value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Writes the fields that are safe to send (see [`is_safe_field`]) as header lines;
    /// application-supplied fields with CR, LF or NUL are dropped rather than injected.
    pub(crate) fn write_safe_to(&self, out: &mut Vec<u8>) {
        for (n, v) in &self.fields {
            if is_safe_field(n, v) {
                Self::write_field(out, n, v);
            }
        }
    }

    fn write_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }

    /// Writes `Name: value\r\n` lines.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        for (n, v) in &self.fields {
            Self::write_field(out, n, v);
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.fields
                    .iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Whether a header name or value is safe to write (no CR, LF or NUL; names are tokens).
pub(crate) fn is_safe_field(name: &str, value: &[u8]) -> bool {
    super::is_token(name) && !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}
