//! Growing a message buffer towards its limit without passing it, and without leaving a
//! trail of abandoned buffers.
//!
//! `BytesMut` and `Vec` grow by doubling: a buffer limited to 64 MiB could reach a capacity
//! of 128 MiB, and every step leaves the previous buffer behind. Freed, those stay in the
//! process for a while (an allocator keeps freed pages for reuse), so a message that grew
//! to 64 MiB by doubling has cost about 128 MiB of memory at its peak: what one small
//! deflate bomb can make a server spend.
//!
//! [`reserve_within`] doubles only up to [`DOUBLE_UP_TO`]; past it, it goes straight to the
//! limit. The capacity costs address space, not memory, until it is written, so a buffer
//! that fills up to the limit costs the limit plus the few small buffers it came through.
//! [`fit`] gives back the unused part of such a buffer once its message is complete (one
//! copy of what it holds).

use bytes::BytesMut;

/// Buffers grow by doubling up to this capacity; past it, to their limit at once. Small,
/// so that the buffers a message leaves behind on its way up add little to what it costs
/// (many large messages arriving at once under a memory budget: every abandoned buffer is
/// memory the process holds until the allocator gives it back).
pub(crate) const DOUBLE_UP_TO: usize = 64 << 10;

/// The largest limit a buffer goes straight to: address space any 64-bit system grants
/// without a second thought. Above it (and on 32-bit systems) buffers keep doubling,
/// never past their limit.
#[cfg(target_pointer_width = "64")]
const JUMP_UP_TO: usize = 1 << 30;
#[cfg(not(target_pointer_width = "64"))]
const JUMP_UP_TO: usize = 0;

/// Makes room for `additional` more bytes in `buf`, whose length is meant to stay within
/// `limit` (a request past it is honoured exactly, the caller having checked it).
pub(crate) fn reserve_within(buf: &mut BytesMut, additional: usize, limit: usize) {
    let need = buf.len().saturating_add(additional);
    if buf.capacity() >= need {
        return;
    }
    let mut target = buf.capacity().saturating_mul(2).max(need);
    if target > DOUBLE_UP_TO.min(limit / 2) && limit <= JUMP_UP_TO {
        target = limit.max(need);
    }
    let target = target.min(limit.max(need));
    // Exactly `target` (`BytesMut::reserve` would pick its own size).
    let mut grown = BytesMut::with_capacity(target);
    grown.extend_from_slice(buf);
    *buf = grown;
}

/// A complete message's buffer, without the spare capacity [`reserve_within`] may have
/// given it: copied into one of its size when less than half of a large one is used.
pub(crate) fn fit(buf: &mut BytesMut) {
    if buf.capacity() > DOUBLE_UP_TO && buf.len() < buf.capacity() / 2 {
        *buf = BytesMut::from(&buf[..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grows by `step` bytes until `total`, and returns the capacities it went through.
    fn grow(step: usize, total: usize, limit: usize) -> Vec<usize> {
        let mut buf = BytesMut::new();
        let mut caps = vec![];
        while buf.len() < total {
            let n = step.min(total - buf.len());
            reserve_within(&mut buf, n, limit);
            buf.extend_from_slice(&vec![7u8; n]);
            if caps.last() != Some(&buf.capacity()) {
                caps.push(buf.capacity());
            }
        }
        caps
    }

    #[test]
    fn capacity_never_passes_the_limit() {
        for (step, limit) in [(1000, 1 << 20), (4096, 3 << 20), (65_536, (64 << 20) - 1)] {
            let caps = grow(step, limit, limit);
            assert_eq!(caps.last(), Some(&limit), "{caps:?}");
            assert!(caps.iter().all(|&c| c <= limit), "{caps:?}");
        }
    }

    #[test]
    fn large_buffers_go_straight_to_the_limit() {
        let limit = 64 << 20;
        let caps = grow(100_000, limit, limit);
        // What it came through adds up to a few MiB, not to the limit again.
        let abandoned: usize = caps[..caps.len() - 1].iter().sum();
        assert!(abandoned <= 2 * DOUBLE_UP_TO, "{caps:?}");
        assert_eq!(caps.last(), Some(&limit));
        // Small buffers double as usual.
        assert_eq!(grow(1000, 100_000, limit).len(), 8);
    }

    #[test]
    fn without_a_usable_limit_buffers_keep_doubling() {
        let caps = grow(100_000, 10 << 20, usize::MAX);
        assert!(caps.windows(2).all(|w| w[1] == 2 * w[0]), "{caps:?}");
    }

    #[test]
    fn a_request_past_the_limit_is_honoured_exactly() {
        let mut buf = BytesMut::from(&b"abc"[..]);
        reserve_within(&mut buf, 100, 10);
        assert_eq!(buf.capacity(), 103);
        assert_eq!(&buf[..], b"abc");
    }

    #[test]
    fn contents_survive_a_buffer_split_from_another() {
        let mut whole = BytesMut::from(&b"hello world"[..]);
        let mut tail = whole.split_off(6);
        reserve_within(&mut tail, 1 << 16, 1 << 20);
        tail.extend_from_slice(b"!");
        assert_eq!(&tail[..], b"world!");
        assert_eq!(&whole[..], b"hello ");
    }

    #[test]
    fn fit_gives_back_the_spare_capacity_of_large_buffers_only() {
        let mut big = BytesMut::with_capacity(64 << 20);
        big.extend_from_slice(&[1u8; 3 << 20]);
        fit(&mut big);
        assert_eq!((big.len(), big.capacity()), (3 << 20, 3 << 20));
        assert!(big.iter().all(|&b| b == 1));
        let mut small = BytesMut::with_capacity(DOUBLE_UP_TO);
        small.extend_from_slice(b"x");
        fit(&mut small);
        assert_eq!(small.capacity(), DOUBLE_UP_TO);
    }
}
