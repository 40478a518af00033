//! The frame trace of a real client over loopback: a compressed echo, pings both ways and
//! a server-initiated close, every frame recorded in order, replies included.

use futures_util::StreamExt;
use std::time::Duration;
use tokio::net::TcpListener;
use wsx::trace::Direction::{Incoming as In, Outgoing as Out};
use wsx::{Bytes, CloseCode, CloseFrame, FrameTrace, Message, TraceConfig};
use wsx_proto::frame::OpCode;

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn client_trace_records_every_frame_including_replies() {
    tokio::time::timeout(LIMIT, run())
        .await
        .expect("test timed out");
}

async fn run() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Echoes data messages; on "bye" pings the client and closes with 1001.
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = wsx::accept(tcp).await.unwrap();
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Text(t) if t.as_str() == "bye" => {
                    ws.send(Message::Ping(Bytes::from_static(b"srv")))
                        .await
                        .unwrap();
                    let ev = ws
                        .close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "done")))
                        .await
                        .unwrap();
                    assert!(ev.was_clean);
                    return;
                }
                m if m.is_data() => ws.send(m).await.unwrap(),
                _ => {}
            }
        }
    });

    let mut ws = wsx::connect(&format!("ws://{addr}/")).await.unwrap();
    assert!(ws.is_compressed());
    ws.set_frame_trace(Some(TraceConfig::default()));
    let mut traces: Vec<FrameTrace> = Vec::new();

    let text = "a compressible line of text; ".repeat(40);
    ws.send(Message::text(text.as_str())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text(text.as_str())
    );
    traces.extend(ws.take_frame_traces());
    ws.send(Message::Ping(Bytes::from_static(b"cli")))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Pong(Bytes::from_static(b"cli"))
    );
    ws.send(Message::text("bye")).await.unwrap();
    while let Some(msg) = ws.next().await {
        msg.unwrap();
        traces.extend(ws.take_frame_traces());
    }
    traces.extend(ws.take_frame_traces());
    server.await.unwrap();

    let shape: Vec<_> = traces.iter().map(|t| (t.direction, t.opcode())).collect();
    assert_eq!(
        shape,
        [
            (Out, OpCode::Text),
            (In, OpCode::Text),
            (Out, OpCode::Ping),
            (In, OpCode::Pong),
            (Out, OpCode::Text),
            (In, OpCode::Ping),
            (Out, OpCode::Pong), // answered by the connection itself
            (In, OpCode::Close),
            (Out, OpCode::Close), // the close echo
        ]
    );
    assert_eq!(ws.frame_traces_dropped(), 0);
    assert!(traces.windows(2).all(|w| w[0].seq < w[1].seq));
    for t in &traces {
        assert!(t.header.fin);
        assert_eq!(
            t.masked(),
            t.direction == Out,
            "client masks what it sends: {t:?}"
        );
        assert!(t.rejected.is_none());
    }
    // The compressed echo, both ways: RSV1, wire size well below the text, preview inflated.
    for t in &traces[..2] {
        assert!(t.compressed(), "{t:?}");
        assert_eq!(t.uncompressed_len, Some(text.len() as u64));
        assert!(t.header.payload_len < text.len() as u64 / 4, "{t:?}");
        assert_eq!(&t.preview[..], &text.as_bytes()[..32]);
    }
    // "bye" is under the compression threshold.
    assert!(!traces[4].compressed() && traces[4].uncompressed_len.is_none());
    assert_eq!(&traces[4].preview[..], b"bye");
    assert_eq!(&traces[3].preview[..], b"cli");
    assert_eq!(&traces[5].preview[..], b"srv");
    assert_eq!(&traces[6].preview[..], b"srv");
    assert_eq!(
        traces[7].close,
        Some(CloseFrame::new(CloseCode::GOING_AWAY, "done"))
    );
    assert_eq!(
        traces[8].close.as_ref().map(|f| f.code),
        Some(CloseCode::GOING_AWAY)
    );
}
