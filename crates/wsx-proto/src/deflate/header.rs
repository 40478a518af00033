//! Parser for `Sec-WebSocket-Extensions` header values (RFC 6455 §9.1).
//!
//! ```text
//! extension-list  = 1#extension
//! extension       = extension-token *( ";" extension-param )
//! extension-token = token
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! A quoted value must, once unescaped, itself be a token (RFC 6455 §9.1).
//! Optional whitespace (spaces and horizontal tabs) is accepted around every
//! separator, and empty list elements (`a, , b`) are skipped as RFC 7230
//! §7 requires of `#rule` lists.
//!
//! Splitting into list elements is done at top-level commas only, i.e. outside
//! quoted strings, so one malformed element never swallows its neighbours:
//! the caller gets one `Result` per element and can decline just that one.

use crate::handshake::is_token;
use std::fmt;

/// One parsed extension: its name and its parameters, in order of
/// appearance, with names lowercased (tokens compare case-insensitively).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Extension {
    /// Lowercased extension name.
    pub(crate) name: String,
    /// Lowercased parameter names with their (unquoted) values, if any.
    pub(crate) params: Vec<(String, Option<String>)>,
}

/// Why a list element is not a well-formed extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// The offending list element, trimmed.
    pub(crate) element: String,
    /// What is wrong with it.
    pub(crate) reason: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in `{}`", self.reason, self.element)
    }
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Splits `s` at every top-level `sep` (outside quoted strings). An
/// unterminated quoted string extends to the end of `s`.
fn split_top_level(s: &str, sep: u8) -> Vec<&str> {
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_quotes {
            if b == b'\\' {
                i += 1; // skip the escaped byte, whatever it is
            } else if b == b'"' {
                in_quotes = false;
            }
        } else if b == b'"' {
            in_quotes = true;
        } else if b == sep {
            // `sep` is ASCII, so slicing here is on a char boundary.
            parts.push(&s[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// Parses a parameter value: a token, or a quoted-string whose unescaped
/// content is a token.
fn parse_value(raw: &str) -> Result<String, &'static str> {
    if raw.is_empty() {
        return Err("parameter has `=` but no value");
    }
    let bytes = raw.as_bytes();
    if bytes[0] != b'"' {
        return if is_token(raw) {
            Ok(raw.to_owned())
        } else {
            Err("parameter value is not a token")
        };
    }
    // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
    let mut value = String::new();
    let mut i = 1;
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err("unterminated quoted string");
        };
        match b {
            b'"' => break,
            b'\\' => {
                let Some(&escaped) = bytes.get(i + 1) else {
                    return Err("unterminated quoted string");
                };
                // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ); only
                // ASCII can survive the token check below anyway.
                if !(escaped == b'\t' || (b' '..=b'~').contains(&escaped)) {
                    return Err("invalid character in quoted string");
                }
                value.push(char::from(escaped));
                i += 2;
            }
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E
            b'\t' | b' '..=b'~' => {
                value.push(char::from(b));
                i += 1;
            }
            _ => return Err("invalid character in quoted string"),
        }
    }
    if i + 1 != bytes.len() {
        return Err("unexpected characters after quoted string");
    }
    if !is_token(&value) {
        return Err("quoted parameter value is not a token");
    }
    Ok(value)
}

/// Parses one list element (already known to be non-empty after trimming).
fn parse_extension(element: &str) -> Result<Extension, &'static str> {
    let mut pieces = split_top_level(element, b';').into_iter();
    let name = trim_ows(pieces.next().unwrap_or_default());
    if name.is_empty() {
        return Err("missing extension name");
    }
    if !is_token(name) {
        return Err("extension name is not a token");
    }
    let mut params = Vec::new();
    for piece in pieces {
        let piece = trim_ows(piece);
        if piece.is_empty() {
            return Err("empty parameter");
        }
        let (pname, value) = match piece.find('=') {
            // Inside a quoted value `=` is fine; a `=` in the name part is
            // caught by the token check of the name.
            Some(eq) if !piece[..eq].contains('"') => {
                let pname = trim_ows(&piece[..eq]);
                let raw = trim_ows(&piece[eq + 1..]);
                (pname, Some(parse_value(raw)?))
            }
            _ => (piece, None),
        };
        if pname.is_empty() {
            return Err("missing parameter name");
        }
        if !is_token(pname) {
            return Err("parameter name is not a token");
        }
        params.push((pname.to_ascii_lowercase(), value));
    }
    Ok(Extension {
        name: name.to_ascii_lowercase(),
        params,
    })
}

/// Parses every header value in turn and returns one result per non-empty
/// list element, in order.
pub(crate) fn parse_extensions<'a, I>(values: I) -> Vec<Result<Extension, SyntaxError>>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut out = Vec::new();
    for value in values {
        for element in split_top_level(value, b',') {
            let element = trim_ows(element);
            if element.is_empty() {
                continue;
            }
            out.push(parse_extension(element).map_err(|reason| SyntaxError {
                element: element.to_owned(),
                reason,
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str, params: &[(&str, Option<&str>)]) -> Extension {
        Extension {
            name: name.to_owned(),
            params: params
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned)))
                .collect(),
        }
    }

    #[test]
    fn parses_lists_params_and_quotes() {
        let got = parse_extensions([
            "permessage-deflate; client_max_window_bits, foo ;a=1; b = \"2\"",
            " , ",
            "Permessage-Deflate;Server_No_Context_Takeover",
        ]);
        assert_eq!(
            got,
            vec![
                Ok(ext(
                    "permessage-deflate",
                    &[("client_max_window_bits", None)]
                )),
                Ok(ext("foo", &[("a", Some("1")), ("b", Some("2"))])),
                Ok(ext(
                    "permessage-deflate",
                    &[("server_no_context_takeover", None)]
                )),
            ]
        );
    }

    #[test]
    fn quoted_comma_does_not_split_the_list() {
        let got = parse_extensions(["x; a=\"1,2\", permessage-deflate"]);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_err(), "`1,2` is not a token");
        assert_eq!(got[1], Ok(ext("permessage-deflate", &[])));
    }

    #[test]
    fn escaped_quote_inside_quoted_string() {
        // `a\"b` unescapes to `a"b`, which is not a token.
        let got = parse_extensions([r#"x; a="a\"b", y; b="\1\0""#]);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok(ext("y", &[("b", Some("10"))])));
    }

    #[test]
    fn malformed_elements() {
        for bad in [
            "; a",
            "x;",
            "x; ;a",
            "x; =1",
            "x; a=",
            "x; a= ",
            "x; a=\"",
            "x; a=\"10",
            "x; a=\"10\"z",
            "x; a=\"\"",
            "x; a=1=2",
            "x; a b",
            "x y",
            "x; a=\"1 0\"",
            "x; a=é",
            "x; é",
            "é",
            "x; a=\"\u{1}\"",
            "\"x\"",
            "x; \"a\"",
            "x; a=\"1\"\"2\"",
        ] {
            let got = parse_extensions([bad]);
            assert_eq!(got.len(), 1, "{bad:?}");
            assert!(got[0].is_err(), "{bad:?} parsed as {:?}", got[0]);
        }
    }

    #[test]
    fn unterminated_quote_swallows_rest_of_value_only() {
        let got = parse_extensions(["x; a=\"1, y", "z"]);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok(ext("z", &[])));
    }

    #[test]
    fn whitespace_and_tabs() {
        let got = parse_extensions(["\tx \t;\ta\t=\t\"5\"\t;b "]);
        assert_eq!(got, vec![Ok(ext("x", &[("a", Some("5")), ("b", None)]))]);
    }
}
