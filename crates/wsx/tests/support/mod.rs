//! Helpers shared by the hyper and axum tests: a time limit, a raw HTTP/1.1 exchange, and
//! WebSockets over an HTTP/2 connection from hyper's client.
// Each test file uses a part of this.
#![allow(dead_code)]

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Fails a test that runs longer than 20 s instead of letting it hang.
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test timed out")
}

/// A valid HTTP/1.1 upgrade request for `/ws`, for tests to spoil.
pub const GOOD_UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Sends `request` on a fresh TCP connection and returns the response head.
pub async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A plain `GET /` on `send`: 200 expected.
pub async fn plain_get(
    send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
) {
    let plain = send
        .send_request(
            http::Request::get(format!("http://{addr}/"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
}

/// An HTTP/2 connection (prior knowledge) from hyper's client, once the server's SETTINGS
/// (with extended CONNECT) have arrived: a plain request's answer comes after them.
pub async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    plain_get(&mut send, addr).await;
    send
}

/// An extended CONNECT for `/ws` with `:protocol` `protocol`, offering the `echo`
/// subprotocol.
pub fn extended_connect(addr: SocketAddr, protocol: &str) -> http::Request<Empty<Bytes>> {
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}/ws"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "echo")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from(protocol));
    req
}

/// The client's WebSocket on the stream of an accepted extended CONNECT (no compression).
pub async fn websocket_on(
    response: http::Response<hyper::body::Incoming>,
    protocol: Option<&str>,
) -> wsx::WebSocket<TokioIo<hyper::upgrade::Upgraded>> {
    assert_eq!(response.status(), 200);
    let stream = hyper::upgrade::on(response).await.unwrap();
    let conn = wsx_proto::Connection::new(wsx::Role::Client, &wsx::Config::default(), None);
    wsx::WebSocket::from_parts(TokioIo::new(stream), conn, protocol.map(Into::into), &[])
}
