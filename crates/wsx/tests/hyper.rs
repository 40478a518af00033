//! wsx inside a hyper 1 server (feature `hyper`): WebSockets over HTTP/1.1 upgrades and
//! over HTTP/2 extended CONNECT (RFC 8441), against wsx's own client and hyper's HTTP/2
//! client, and the rejections both forms get.
#![cfg(feature = "hyper")]

use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use wsx::{CloseCode, CloseFrame, DeflateConfig, Message, ServerConfig};

mod support;
use support::{bounded, extended_connect, h2_client, plain_get, raw, websocket_on, GOOD_UPGRADE};

/// The route: `/ws` is a WebSocket echo (deflate on, subprotocol `echo` offered), anything
/// else a plain 200.
async fn route(
    mut req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/ws" {
        return Ok(http::Response::new(Full::from("plain\n")));
    }
    let mut config = ServerConfig::default();
    config.config.deflate = Some(DeflateConfig::default());
    config.protocols = vec!["echo".into()];
    Ok(match wsx::hyper::upgrade(&mut req, &config) {
        Ok((response, websocket)) => {
            tokio::spawn(async move {
                let Ok(mut ws) = websocket.await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
            response
        }
        Err(rejection) => rejection,
    })
}

/// A hyper server on loopback speaking HTTP/1.1 (with upgrades) or, with `http2`, HTTP/2
/// with prior knowledge and extended CONNECT offered.
async fn hyper_server(http2: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let io = TokioIo::new(tcp);
            let service = hyper::service::service_fn(route);
            tokio::spawn(async move {
                if http2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .enable_connect_protocol()
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .with_upgrades()
                        .await;
                }
            });
        }
    });
    addr
}

async fn echoes<S>(ws: &mut wsx::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for msg in [
        Message::text("hello"),
        Message::binary(big),
        Message::text("é".repeat(10_000)),
    ] {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), msg);
    }
}

#[tokio::test]
async fn http1_upgrade_with_deflate_and_a_subprotocol() {
    bounded(async {
        let addr = hyper_server(false).await;
        let mut ws = wsx::ClientBuilder::new(format!("ws://{addr}/ws"))
            .protocol("echo")
            .connect()
            .await
            .unwrap();
        assert!(ws.is_compressed());
        assert_eq!(ws.protocol(), Some("echo"));
        echoes(&mut ws).await;
        let end = ws
            .close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))
            .await
            .unwrap();
        assert!(end.was_clean);
        assert_eq!(end.code, CloseCode::NORMAL);
    })
    .await
}

#[tokio::test]
async fn http1_bad_requests_get_the_servers_statuses() {
    bounded(async {
        let addr = hyper_server(false).await;
        let good = GOOD_UPGRADE;
        let head = raw(addr, good).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let cases = [
            (
                good.replace("Version: 13", "Version: 8"),
                "426",
                Some("sec-websocket-version: 13"),
            ),
            (
                good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
                "400",
                None,
            ),
            (good.replace("Upgrade: websocket\r\n", ""), "400", None),
            (good.replace("GET", "POST"), "405", Some("allow: GET")),
        ];
        for (request, status, header) in cases {
            let head = raw(addr, &request).await;
            assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
            if let Some(h) = header {
                assert!(
                    head.to_ascii_lowercase().contains(&h.to_ascii_lowercase()),
                    "{head}"
                );
            }
        }
    })
    .await
}

#[tokio::test]
async fn http2_extended_connect_carries_several_websockets_on_one_connection() {
    bounded(async {
        let addr = hyper_server(true).await;
        let mut send = h2_client(addr).await;
        let mut sockets = Vec::new();
        for _ in 0..3 {
            let response = send
                .send_request(extended_connect(addr, "websocket"))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert!(response.headers().get("content-length").is_none());
            assert!(response.headers().get("sec-websocket-accept").is_none());
            assert_eq!(response.headers()["sec-websocket-protocol"], "echo");
            sockets.push(websocket_on(response, Some("echo")).await);
        }
        // All three at once, interleaved on the one connection.
        for (i, ws) in sockets.iter_mut().enumerate() {
            ws.send(Message::text(format!("first on {i}")))
                .await
                .unwrap();
        }
        for (i, ws) in sockets.iter_mut().enumerate() {
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                Message::text(format!("first on {i}"))
            );
        }
        for ws in &mut sockets {
            echoes(ws).await;
        }
        for mut ws in sockets {
            let end = ws
                .close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))
                .await
                .unwrap();
            assert!(end.was_clean);
            assert_eq!(end.code, CloseCode::NORMAL);
        }
        // The connection carries on after its WebSockets ended.
        plain_get(&mut send, addr).await;
    })
    .await
}

#[tokio::test]
async fn http2_requests_that_are_not_an_extended_connect_for_websocket_get_400() {
    bounded(async {
        let addr = hyper_server(true).await;
        let mut send = h2_client(addr).await;
        let other = send
            .send_request(extended_connect(addr, "webtransport"))
            .await
            .unwrap();
        assert_eq!(other.status(), 400);
        let body = other.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("extended CONNECT"));
        let get = send
            .send_request(
                http::Request::get(format!("http://{addr}/ws"))
                    .header("sec-websocket-version", "13")
                    .body(Empty::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(get.status(), 400);
        let mut bad_version = extended_connect(addr, "websocket");
        bad_version
            .headers_mut()
            .insert("sec-websocket-version", http::HeaderValue::from_static("8"));
        let refused = send.send_request(bad_version).await.unwrap();
        assert_eq!(refused.status(), 426);
        assert_eq!(refused.headers()["sec-websocket-version"], "13");
        // Still usable afterwards.
        let ok = send
            .send_request(extended_connect(addr, "websocket"))
            .await
            .unwrap();
        let mut ws = websocket_on(ok, None).await;
        ws.send(Message::text("after the refusals")).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text("after the refusals")
        );
        ws.close(None).await.unwrap();
    })
    .await
}

#[test]
fn upgrade_requests_are_recognised_in_both_forms() {
    let h1 = http::Request::get("/ws")
        .header("upgrade", "h2c, WebSocket")
        .body(())
        .unwrap();
    assert!(wsx::hyper::is_upgrade_request(&h1));
    let plain = http::Request::get("/ws").body(()).unwrap();
    assert!(!wsx::hyper::is_upgrade_request(&plain));
    let mut h2 = http::Request::connect("http://x/ws").body(()).unwrap();
    assert!(
        !wsx::hyper::is_upgrade_request(&h2),
        "CONNECT without :protocol"
    );
    h2.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    assert!(wsx::hyper::is_upgrade_request(&h2));
}
