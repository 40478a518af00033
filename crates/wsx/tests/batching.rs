//! Write batching: replies to a burst of input go out in one write, `cork` holds writes,
//! and nothing waits that should not (a lone message, a flush, a split writer, a handler
//! that went slow). The server side runs over an in-memory pipe whose writes are counted.

use futures_util::StreamExt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use wsx::{Config, Message, PreparedMessage, Role, WebSocket};
use wsx_proto::Connection;

/// A transport that counts the writes made to it.
struct Counted {
    io: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if r.is_ready() {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // The pipe does not take vectored writes: one write per call all the same.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        let r = Pin::new(&mut self.io).poll_write(cx, first);
        if r.is_ready() {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A server WebSocket whose writes are counted, and a client WebSocket on the other end.
fn pipe() -> (
    WebSocket<Counted>,
    Arc<AtomicUsize>,
    WebSocket<DuplexStream>,
) {
    pipe_of(1 << 20)
}

/// [`pipe`] whose transport holds at most `capacity` unread bytes.
fn pipe_of(
    capacity: usize,
) -> (
    WebSocket<Counted>,
    Arc<AtomicUsize>,
    WebSocket<DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(capacity);
    let writes = Arc::new(AtomicUsize::new(0));
    let config = Config::default();
    let server = WebSocket::from_parts(
        Counted {
            io: a,
            writes: writes.clone(),
        },
        Connection::new(Role::Server, &config, None),
        None,
        &[],
    );
    let client = WebSocket::from_parts(b, Connection::new(Role::Client, &config, None), None, &[]);
    (server, writes, client)
}

/// Sends `n` numbered messages from the client in one write.
fn burst(client: &mut WebSocket<DuplexStream>, n: usize) {
    client.cork(|c| {
        for i in 0..n {
            c.try_send(Message::text(format!("m{i}"))).unwrap();
        }
    });
}

fn text(m: Message) -> String {
    match m {
        Message::Text(t) => t.to_string(),
        other => panic!("not a text message: {other:?}"),
    }
}

async fn recv_text(ws: &mut WebSocket<DuplexStream>) -> String {
    let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a message in time")
        .expect("open")
        .expect("no error");
    text(m)
}

/// Whether the client can read a message within 100 ms (without the server being polled).
async fn arrives(ws: &mut WebSocket<DuplexStream>) -> Option<String> {
    match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
        Ok(Some(Ok(m))) => Some(text(m)),
        _ => None,
    }
}

#[tokio::test]
async fn replies_to_a_burst_go_out_in_one_write() {
    let (mut server, writes, mut client) = pipe();
    burst(&mut client, 16);
    for i in 0..16 {
        let m = server.next().await.unwrap().unwrap();
        assert_eq!(text(m.clone()), format!("m{i}"));
        server.send(m).await.unwrap();
    }
    // The reply to the last one of the burst wrote them all.
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    for i in 0..16 {
        assert_eq!(recv_text(&mut client).await, format!("m{i}"));
    }
}

#[tokio::test]
async fn a_lone_message_is_written_when_sent() {
    let (mut server, writes, mut client) = pipe();
    client.send(Message::text("one")).await.unwrap();
    let m = server.next().await.unwrap().unwrap();
    server.send(m).await.unwrap();
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    // Not polled again, the server has written it.
    assert_eq!(arrives(&mut client).await.as_deref(), Some("one"));
}

#[tokio::test]
async fn held_replies_go_out_when_the_handler_comes_back_late() {
    let (mut server, writes, mut client) = pipe();
    burst(&mut client, 3);
    let m0 = server.next().await.unwrap().unwrap();
    server.send(m0).await.unwrap();
    // Held: more of the burst is waiting to be handed over.
    assert_eq!(writes.load(Ordering::Relaxed), 0);
    // Slow work, longer than the hold window; the next handover writes what was held
    // before it hands the message over.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let m1 = server.next().await.unwrap().unwrap();
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    assert_eq!(arrives(&mut client).await.as_deref(), Some("m0"));
    // A handler that stops reading and goes on sending: the second send, past the window,
    // writes.
    server.send(m1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.send(Message::text("push")).await.unwrap();
    assert_eq!(arrives(&mut client).await.as_deref(), Some("m1"));
    assert_eq!(arrives(&mut client).await.as_deref(), Some("push"));
}

#[tokio::test]
async fn flush_writes_held_replies() {
    let (mut server, writes, mut client) = pipe();
    burst(&mut client, 2);
    let m0 = server.next().await.unwrap().unwrap();
    server.send(m0).await.unwrap();
    assert_eq!(writes.load(Ordering::Relaxed), 0);
    server.flush().await.unwrap();
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    assert_eq!(arrives(&mut client).await.as_deref(), Some("m0"));
}

#[tokio::test]
async fn cork_writes_what_it_queued_once() {
    let (mut server, writes, mut client) = pipe();
    let shared = PreparedMessage::text("to all");
    server.cork(|s| {
        for i in 0..10 {
            s.try_send(Message::text(format!("t{i}"))).unwrap();
            s.try_send_prepared(&shared).unwrap();
        }
    });
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    for i in 0..10 {
        assert_eq!(recv_text(&mut client).await, format!("t{i}"));
        assert_eq!(recv_text(&mut client).await, "to all");
    }
    // Outside `cork`, try_send writes at once.
    server.try_send(Message::text("now")).unwrap();
    assert_eq!(writes.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_split_writer_never_waits_for_the_reader() {
    let (server, writes, mut client) = pipe();
    let (mut reader, mut writer) = server.split();
    burst(&mut client, 4);
    let m0 = reader.next().await.unwrap().unwrap();
    // Input is still buffered, but the writer is another task's: written at once.
    writer.send(m0).await.unwrap();
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    assert_eq!(arrives(&mut client).await.as_deref(), Some("m0"));
}

#[tokio::test]
async fn held_replies_are_written_when_the_socket_is_dropped() {
    let (mut server, writes, mut client) = pipe();
    burst(&mut client, 2);
    let m0 = server.next().await.unwrap().unwrap();
    server.send(m0).await.unwrap();
    assert_eq!(writes.load(Ordering::Relaxed), 0);
    // A handler that answers and returns without reading on or closing.
    drop(server);
    assert_eq!(writes.load(Ordering::Relaxed), 1);
    assert_eq!(arrives(&mut client).await.as_deref(), Some("m0"));
}

#[tokio::test]
async fn corked_connections_of_one_thread_never_mix_their_output() {
    // Each cork encodes into the thread's one warm buffer; a connection whose transport
    // does not take everything keeps that buffer, and the next cork (here: the other
    // connection's) gets another. Transports of 4 KiB, bursts of about 12 KiB.
    let (mut one, _, one_client) = pipe_of(4096);
    let (mut two, _, two_client) = pipe_of(4096);
    let shared = PreparedMessage::text("x".repeat(300));
    let burst = |ws: &mut WebSocket<Counted>, tag: &str, round: usize| {
        ws.cork(|ws| {
            for i in 0..40 {
                ws.try_send(Message::text(format!("{tag}{round}-{i}")))
                    .unwrap();
                ws.try_send_prepared(&shared).unwrap();
            }
        })
    };
    for round in 0..3 {
        burst(&mut one, "one", round);
        burst(&mut two, "two", round);
    }
    assert!(one.buffered_amount() > 0 && two.buffered_amount() > 0);
    let drain = |mut server: WebSocket<Counted>| async move {
        // Writes what the transport did not take, as the peer reads.
        server.flush().await.unwrap();
        server
    };
    let read = |mut client: WebSocket<DuplexStream>, tag: &'static str| async move {
        for round in 0..3 {
            for i in 0..40 {
                assert_eq!(recv_text(&mut client).await, format!("{tag}{round}-{i}"));
                assert_eq!(recv_text(&mut client).await.len(), 300);
            }
        }
        client
    };
    let (one, _) = tokio::join!(drain(one), read(one_client, "one"));
    let (two, _) = tokio::join!(drain(two), read(two_client, "two"));
    assert_eq!(one.buffered_amount() + two.buffered_amount(), 0);
}
