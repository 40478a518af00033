//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! The targets read their input with [`Cursor`], a deliberately simple byte reader (rather
//! than `arbitrary`), so that the input formats documented at the top of each target can be
//! written by hand: the seeds under `fuzz/seeds/<target>/` are made by `fuzz/make_seeds.py`.

/// Reads an input front to back. Reads past the end yield zeros / empty slices, so every
/// input is valid.
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes left.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// The next byte (0 at the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian (missing bytes count as 0).
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// The next `n` bytes, or fewer at the end.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Asserts that an HTTP head is well-formed as far as line endings go: it ends with an empty
/// line, and every CR is followed by LF and every LF preceded by CR (so no header value can
/// smuggle in a line break or a bare CR), and there is no NUL.
pub fn assert_clean_http_head(head: &[u8]) {
    assert!(
        head.ends_with(b"\r\n\r\n"),
        "head does not end with CRLF CRLF: {:?}",
        String::from_utf8_lossy(head)
    );
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(
                head.get(i + 1),
                Some(&b'\n'),
                "bare CR at {i} in {:?}",
                String::from_utf8_lossy(head)
            ),
            b'\n' => assert!(
                i > 0 && head[i - 1] == b'\r',
                "bare LF at {i} in {:?}",
                String::from_utf8_lossy(head)
            ),
            0 => panic!("NUL at {i} in {:?}", String::from_utf8_lossy(head)),
            _ => {}
        }
    }
    // Exactly one empty line: the end of the head.
    let end = head.windows(4).position(|w| w == b"\r\n\r\n");
    assert_eq!(
        end,
        Some(head.len() - 4),
        "empty line inside the head: {:?}",
        String::from_utf8_lossy(head)
    );
}

/// Parses a complete HTTP response (head and, with `Content-Length`, body) and returns the
/// status and the head length; panics if it is not well-formed.
pub fn parse_http_response(resp: &[u8]) -> (u16, usize) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(resp) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "response does not parse: {other:?}: {:?}",
            String::from_utf8_lossy(resp)
        ),
    };
    assert_eq!(r.version, Some(1));
    let status = r.code.expect("status");
    assert_clean_http_head(&resp[..n]);
    let content_length = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .unwrap()
                .trim()
                .parse::<usize>()
                .unwrap()
        });
    match content_length {
        Some(len) => assert_eq!(resp.len() - n, len, "Content-Length mismatch"),
        None => assert_eq!(resp.len(), n, "body without Content-Length"),
    }
    (status, n)
}
