//! Moving bytes between the core and the transport: reads sized to the traffic, vectored
//! writes of the core's output, and the discard loop used while waiting for the peer's FIN.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use wsx_proto::Connection;

/// Read buffer size of an active connection to begin with (released after a second
/// without traffic); it doubles, up to [`MAX_READ_CHUNK`], each time a read fills it.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// The largest read buffer the adaptive sizing grows to, and the most one read asks for,
/// even into a buffer made for a whole large frame.
///
/// Larger reads are slower, not faster: a read of everything queued drains the socket, the
/// next one waits in epoll for the peer's next segment, and the payload is unmasked after
/// it has left the cache (BENCHMARKS.md, "Large messages").
pub(crate) const MAX_READ_CHUNK: usize = 64 * 1024;

/// The most room made at once for the rest of a frame whose header has arrived (a peer
/// announcing a huge frame does not get it reserved up front; beyond this the buffer grows
/// as the bytes arrive).
const MAX_FRAME_RESERVE: usize = 4 * 1024 * 1024;

/// Size of the stack buffer a connection without a read buffer reads into.
const STACK_READ: usize = 2048;

/// Writes what `conn` has queued: with one vectored write when the output is in several
/// pieces (a frame header and a large payload queued without a copy) and the transport
/// takes vectored writes, else the first piece.
pub(crate) fn write_some<S: AsyncWrite + Unpin>(
    io: &mut S,
    conn: &Connection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let first = conn.output();
    if first.len() < conn.buffered_amount() && io.is_write_vectored() {
        let mut slices = [io::IoSlice::new(&[]); 8];
        let k = conn.output_vectored(&mut slices);
        if k > 1 {
            return Pin::new(io).poll_write_vectored(cx, &slices[..k]);
        }
    }
    Pin::new(io).poll_write(cx, first)
}

/// Reads once into the core. `read_chunk` is the connection's current read size, doubled
/// here (up to [`MAX_READ_CHUNK`]) when a read fills it, and reset when the core has
/// released its buffer.
pub(crate) fn poll_read_into<S: AsyncRead + Unpin>(
    io: &mut S,
    conn: &mut Connection,
    read_chunk: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if conn.read_buf().capacity() == 0 {
        // No buffer (a fresh or idle connection): read into the stack and keep only what
        // arrived, so connections that stay quiet hold no read buffer. Uninitialized:
        // zeroing it on every read cost more than the rest of a small message's handling.
        *read_chunk = READ_CHUNK;
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); STACK_READ];
        let mut rb = tokio::io::ReadBuf::uninit(&mut stack);
        ready!(Pin::new(io).poll_read(cx, &mut rb))?;
        conn.receive(rb.filled());
        return Poll::Ready(Ok(rb.filled().len()));
    }
    // A read that fills the buffer costs a second syscall (tokio learns that the socket is
    // drained only from a short read): so the buffer grows while reads fill it, and
    // small-message connections keep a small one.
    let chunk = *read_chunk;
    // A large frame whose header is in: room for all of it at once (up to
    // MAX_FRAME_RESERVE), rather than regrowing (and copying) step by step.
    let missing = conn.frame_remaining().min(MAX_FRAME_RESERVE);
    let buf = conn.read_buf();
    let free = buf.capacity() - buf.len();
    if missing > free {
        // With room for the next message's start after this frame.
        make_room(buf, missing, chunk);
    } else if free < chunk / 2 {
        make_room(buf, chunk, 0);
    }
    let room = (buf.capacity() - buf.len()).min(MAX_READ_CHUNK);
    let r = tokio_util::io::poll_read_buf(
        Pin::new(io),
        cx,
        &mut bytes::BufMut::limit(conn.read_buf(), room),
    );
    if matches!(r, Poll::Ready(Ok(n)) if n == room) && chunk < MAX_READ_CHUNK {
        *read_chunk = chunk * 2;
    }
    r
}

/// Makes room for `want` more bytes in `buf`: in place when its allocation allows, else in a
/// new buffer holding only the unread bytes, with `slack` bytes more. (`BytesMut::reserve`
/// on a buffer whose front was split off can reallocate the whole allocation, consumed front
/// included: a large copy per message.)
///
/// The slack matters for frames sized to the buffer: a new buffer exactly as large as the
/// frame is empty after it, so the next message starts with no buffer at all, and costs
/// two allocations and an extra copy.
fn make_room(buf: &mut bytes::BytesMut, want: usize, slack: usize) {
    if buf.capacity() - buf.len() >= want || buf.try_reclaim(want) {
        return;
    }
    let mut fresh = bytes::BytesMut::with_capacity(buf.len() + want + slack);
    fresh.extend_from_slice(buf);
    *buf = fresh;
}

/// Reads and throws away what the peer still sends (while waiting for its FIN after the
/// close handshake); `Ready(Ok(0))` at end of stream.
pub(crate) fn poll_discard<R: AsyncRead + Unpin>(
    io: &mut R,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut sink = [0u8; 512];
    let mut buf = tokio::io::ReadBuf::new(&mut sink);
    ready!(Pin::new(io).poll_read(cx, &mut buf))?;
    Poll::Ready(Ok(buf.filled().len()))
}
