//! Plain HTTP requests on the WebSocket port, answered by `Hook::on_http`, while upgrades
//! keep working on every path. Loopback only, every test bounded in time.

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx::{
    Accept, Hook, HttpRequest, HttpResponse, Message, NoHook, Rejection, Request, Server,
    ServerConfig,
};

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test timed out")
}

/// Answers `/hello` with a text body and everything else with 404.
struct Pages;

impl Hook for Pages {
    fn on_request(self, _: &Request, _: &mut Accept) -> Result<(), Rejection> {
        Ok(())
    }

    fn on_http(&mut self, request: &HttpRequest) -> Option<HttpResponse> {
        Some(match request.path() {
            "/hello" => HttpResponse::new(200, "hello, world\n")
                .with_header("Content-Type", "text/plain; charset=utf-8")
                .with_header("X-Query", request.query().unwrap_or("-")),
            _ => HttpResponse::new(404, "not found\n"),
        })
    }
}

/// A server that echoes the request target back as its first message.
async fn server<H, M>(make_hook: M) -> SocketAddr
where
    M: Fn() -> H + Send + Sync + 'static,
    H: Hook + Send + 'static,
{
    let config = {
        let mut c = ServerConfig::default();
        c.keep_request_target = true;
        c
    };
    let server = Server::bind("127.0.0.1:0").await.unwrap().config(config);
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve_with_hook(
        |mut ws, _| async move {
            let target = ws.request_target().unwrap_or("?").to_owned();
            let _ = ws.send(Message::text(target)).await;
            let _ = ws.close(None).await;
        },
        make_hook,
    ));
    addr
}

async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the server closes after a plain HTTP response")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn on_http_answers_plain_requests_and_upgrades_still_work() {
    bounded(async {
        let addr = server(|| Pages).await;
        let resp = raw(addr, "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.contains("Content-Length: 13\r\n"), "{resp}");
        assert!(resp.contains("Connection: close\r\n"), "{resp}");
        assert!(resp.contains("X-Query: x=1\r\n"), "{resp}");
        assert!(resp.ends_with("\r\n\r\nhello, world\n"), "{resp}");

        let resp = raw(addr, "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.contains("Content-Length: 13\r\n"), "{resp}");
        assert!(resp.ends_with("\r\n\r\n"), "HEAD has no body: {resp}");

        let resp = raw(addr, "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 404 Not Found\r\n"), "{resp}");
        // Methods other than GET, HEAD and POST, and bad requests, are still refused
        // before the hook.
        let resp = raw(addr, "PUT /hello HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 405 "), "{resp}");
        let resp = raw(addr, "GET /hello HTTP/1.1\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");

        // The same port upgrades, on any path, and the handler sees the target.
        for path in ["/hello", "/socket?room=2"] {
            let mut ws = wsx::connect(&format!("ws://{addr}{path}")).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(path));
        }
    })
    .await
}

#[tokio::test]
async fn without_on_http_plain_requests_are_refused_as_before() {
    bounded(async {
        let addr = server(|| NoHook).await;
        let resp = raw(addr, "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
        let resp = raw(addr, "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 405 "), "{resp}");
        let mut ws = wsx::connect(&format!("ws://{addr}/x")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("/x"));
    })
    .await
}

/// Answers POST requests later (as a handler that waits on a broker would), with the body
/// echoed back.
struct Later;

impl Hook for Later {
    fn on_request(self, _: &Request, _: &mut Accept) -> Result<(), Rejection> {
        Ok(())
    }

    fn on_http_async(&mut self, request: &HttpRequest) -> Option<wsx::HttpFuture> {
        if request.method != "POST" {
            return None;
        }
        let body = request.body.clone();
        Some(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            HttpResponse::new(200, body)
        }))
    }
}

#[tokio::test]
async fn post_bodies_are_read_and_answered_later() {
    bounded(async {
        let addr = server(|| Later).await;
        let r = raw(
            addr,
            "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nhello world"), "{r}");
        // A body that comes in pieces after the head.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nab")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(b"cdef").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.ends_with("abcdef"), "{out}");
        // Too large, chunked, and GET still answered by on_http (none here: 400).
        let big = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            2 << 20
        );
        assert!(raw(addr, &big).await.starts_with("HTTP/1.1 413 "));
        let chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(raw(addr, chunked).await.starts_with("HTTP/1.1 411 "));
        assert!(raw(addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 400 "));
        // Without a hook for it, POST is refused with 405.
        let plain = server(|| NoHook).await;
        let r = raw(
            plain,
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    })
    .await
}
