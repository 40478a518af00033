//! A small, independent, strict raw-DEFLATE decoder (RFC 1951) for tests,
//! after Mark Adler's `puff.c`: it enforces a window size on every
//! back-reference and records the largest distance seen, which zlib's own
//! inflate (always a 32 KiB window in zlib-rs) cannot do.

/// Decoder state kept across messages (for context takeover).
pub(crate) struct Puff {
    /// Largest back-reference distance allowed.
    window: usize,
    /// Everything decoded so far (the LZ77 history).
    history: Vec<u8>,
    /// Largest distance seen.
    pub(crate) max_dist: usize,
    /// Number of back-references seen.
    pub(crate) matches: usize,
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    bitbuf: u32,
    bitcnt: u32,
}

impl Bits<'_> {
    fn need(&mut self, n: u32) -> Result<u32, String> {
        let mut val = u64::from(self.bitbuf);
        while self.bitcnt < n {
            let Some(&b) = self.data.get(self.pos) else {
                return Err("out of input".into());
            };
            self.pos += 1;
            val |= u64::from(b) << self.bitcnt;
            self.bitcnt += 8;
        }
        self.bitbuf = (val >> n) as u32;
        self.bitcnt -= n;
        Ok((val & ((1u64 << n) - 1)) as u32)
    }

    fn align(&mut self) {
        self.bitbuf = 0;
        self.bitcnt = 0;
    }

    fn exhausted(&self) -> bool {
        self.pos == self.data.len()
    }
}

/// Canonical Huffman decoding table: counts per length and symbols ordered
/// by code.
struct Huffman {
    count: [u16; 16],
    symbol: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Self, String> {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        // Over-subscription check (incomplete codes are allowed, as in puff).
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left <<= 1;
            left -= i32::from(c);
            if left < 0 {
                return Err("over-subscribed code".into());
            }
        }
        let mut offs = [0u16; 16];
        for len in 1..15 {
            offs[len + 1] = offs[len] + count[len];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (sym, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbol[usize::from(offs[usize::from(l)])] = sym as u16;
                offs[usize::from(l)] += 1;
            }
        }
        Ok(Huffman { count, symbol })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, String> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.need(1)? as i32;
            let count = i32::from(self.count[len]);
            if code - count < first {
                return Ok(self.symbol[(index + (code - first)) as usize]);
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        Err("ran out of codes".into())
    }
}

const LBASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEXT: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DBASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DEXT: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

impl Puff {
    /// A decoder rejecting distances beyond `window` bytes.
    pub(crate) fn new(window: usize) -> Self {
        Puff {
            window,
            history: Vec::new(),
            max_dist: 0,
            matches: 0,
        }
    }

    /// Forgets the history (for no-context-takeover messages).
    pub(crate) fn reset(&mut self) {
        self.history.clear();
    }

    /// Decodes one message payload as RFC 7692 receivers do: `payload`
    /// followed by `00 00 ff ff`. Every block must be complete.
    pub(crate) fn message(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let mut data = payload.to_vec();
        data.extend_from_slice(&[0, 0, 0xff, 0xff]);
        self.blocks(&data)
    }

    /// Decodes complete blocks until the input is used up (or a final block
    /// ends the stream).
    pub(crate) fn blocks(&mut self, data: &[u8]) -> Result<Vec<u8>, String> {
        let start = self.history.len();
        let mut bits = Bits {
            data,
            pos: 0,
            bitbuf: 0,
            bitcnt: 0,
        };
        loop {
            if bits.exhausted() && bits.bitcnt == 0 {
                break;
            }
            let last = bits.need(1)? == 1;
            match bits.need(2)? {
                0 => self.stored(&mut bits)?,
                1 => self.fixed(&mut bits)?,
                2 => self.dynamic(&mut bits)?,
                _ => return Err("invalid block type".into()),
            }
            if last {
                break;
            }
        }
        Ok(self.history[start..].to_vec())
    }

    fn stored(&mut self, bits: &mut Bits<'_>) -> Result<(), String> {
        bits.align();
        let d = bits.data;
        let p = bits.pos;
        if p + 4 > d.len() {
            return Err("truncated stored header".into());
        }
        let len = usize::from(u16::from_le_bytes([d[p], d[p + 1]]));
        let nlen = u16::from_le_bytes([d[p + 2], d[p + 3]]);
        if nlen != !(len as u16) {
            return Err("stored length mismatch".into());
        }
        let body = d.get(p + 4..p + 4 + len).ok_or("truncated stored block")?;
        self.history.extend_from_slice(body);
        bits.pos = p + 4 + len;
        Ok(())
    }

    fn codes(&mut self, bits: &mut Bits<'_>, lit: &Huffman, dist: &Huffman) -> Result<(), String> {
        loop {
            let sym = lit.decode(bits)?;
            match sym {
                0..=255 => self.history.push(sym as u8),
                256 => return Ok(()),
                257..=285 => {
                    let i = usize::from(sym - 257);
                    let len = usize::from(LBASE[i]) + bits.need(u32::from(LEXT[i]))? as usize;
                    let ds = usize::from(dist.decode(bits)?);
                    if ds >= 30 {
                        return Err("invalid distance symbol".into());
                    }
                    let d = usize::from(DBASE[ds]) + bits.need(u32::from(DEXT[ds]))? as usize;
                    if d > self.window {
                        return Err(format!("distance {d} beyond window {}", self.window));
                    }
                    if d > self.history.len() {
                        return Err(format!("distance {d} beyond history"));
                    }
                    self.max_dist = self.max_dist.max(d);
                    self.matches += 1;
                    for _ in 0..len {
                        let b = self.history[self.history.len() - d];
                        self.history.push(b);
                    }
                }
                _ => return Err("invalid literal/length symbol".into()),
            }
        }
    }

    fn fixed(&mut self, bits: &mut Bits<'_>) -> Result<(), String> {
        let mut lengths = [0u8; 288];
        for (i, l) in lengths.iter_mut().enumerate() {
            *l = match i {
                0..=143 => 8,
                144..=255 => 9,
                256..=279 => 7,
                _ => 8,
            };
        }
        let lit = Huffman::new(&lengths)?;
        let dist = Huffman::new(&[5u8; 30])?;
        self.codes(bits, &lit, &dist)
    }

    fn dynamic(&mut self, bits: &mut Bits<'_>) -> Result<(), String> {
        const ORDER: [usize; 19] = [
            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
        ];
        let nlen = bits.need(5)? as usize + 257;
        let ndist = bits.need(5)? as usize + 1;
        let ncode = bits.need(4)? as usize + 4;
        if nlen > 286 || ndist > 30 {
            return Err("bad counts".into());
        }
        let mut cl = [0u8; 19];
        for &o in &ORDER[..ncode] {
            cl[o] = bits.need(3)? as u8;
        }
        let clcode = Huffman::new(&cl)?;
        let mut lengths = vec![0u8; nlen + ndist];
        let mut i = 0;
        while i < nlen + ndist {
            let sym = clcode.decode(bits)?;
            if sym < 16 {
                lengths[i] = sym as u8;
                i += 1;
                continue;
            }
            let (val, rep) = match sym {
                16 => {
                    if i == 0 {
                        return Err("repeat with no first length".into());
                    }
                    (lengths[i - 1], 3 + bits.need(2)? as usize)
                }
                17 => (0, 3 + bits.need(3)? as usize),
                _ => (0, 11 + bits.need(7)? as usize),
            };
            if i + rep > nlen + ndist {
                return Err("too many lengths".into());
            }
            lengths[i..i + rep].fill(val);
            i += rep;
        }
        if lengths[256] == 0 {
            return Err("no end-of-block code".into());
        }
        let lit = Huffman::new(&lengths[..nlen])?;
        let dist = Huffman::new(&lengths[nlen..])?;
        self.codes(bits, &lit, &dist)
    }
}

#[test]
fn puff_decodes_rfc_examples_and_flate2_output() {
    let mut p = Puff::new(32768);
    assert_eq!(
        p.message(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
            .unwrap(),
        b"Hello"
    );
    assert_eq!(
        p.message(&[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
        b"Hello"
    );
    assert_eq!(p.max_dist, 5);

    let data: Vec<u8> = (0..50_000u32)
        .map(|i| b"abcdefghij"[(i % 7 + i / 1000 % 3) as usize])
        .collect();
    let mut c = flate2::Compress::new(flate2::Compression::new(6), false);
    let mut out = Vec::with_capacity(100_000);
    c.compress_vec(&data, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert_eq!(&out[out.len() - 4..], &[0, 0, 0xff, 0xff]);
    let mut p = Puff::new(32768);
    assert_eq!(p.blocks(&out).unwrap(), data);
    assert!(p.matches > 0);

    // A too-small window is detected.
    let mut p = Puff::new(4);
    assert!(p
        .message(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        .is_ok());
    assert!(p
        .message(&[0xf2, 0x00, 0x11, 0x00, 0x00])
        .unwrap_err()
        .contains("window"));
}
