//! The server handshake in the `http` crate's types (feature `http`), for frameworks that
//! parse HTTP themselves (hyper, axum, h2): a [`Request`] from `http::request::Parts`, in
//! either form (HTTP/1.1 upgrade or HTTP/2 extended CONNECT), and the answer as an
//! `http::Response`. Negotiation itself is [`negotiate`](super::server::negotiate), the
//! same for both forms and for the HTTP/1.1 byte parser.

use super::server::{Agreement, Request, RequestError, UpgradeForm};
use super::{has_token, Headers};

impl Request {
    /// A WebSocket request from its `http` form: an HTTP/1.1 `GET` with
    /// `Upgrade: websocket`, or an HTTP/2 extended CONNECT. The `http` crate has no place
    /// for HTTP/2's `:protocol` pseudo-header: pass its value as `connect_protocol` (hyper's
    /// `hyper::ext::Protocol`, h2's `h2::ext::Protocol`).
    ///
    /// The same checks as the HTTP/1.1 byte parser, with the same statuses: 405 for other
    /// methods, 400 for a bad target, `Host`, key, origin or subprotocol list, 426 for a
    /// version other than 13; and [`RequestError::ExtendedConnect`] (400) for an HTTP/2
    /// request that is not a CONNECT for `websocket`.
    pub fn from_http(
        parts: &http::request::Parts,
        connect_protocol: Option<&str>,
    ) -> Result<Request, RequestError> {
        Request::from_http_head(
            &parts.method,
            &parts.uri,
            parts.version,
            &parts.headers,
            connect_protocol,
        )
    }

    /// [`Request::from_http`] for a whole `http::Request` (its body is not looked at).
    pub fn from_http_request<B>(
        request: &http::Request<B>,
        connect_protocol: Option<&str>,
    ) -> Result<Request, RequestError> {
        Request::from_http_head(
            request.method(),
            request.uri(),
            request.version(),
            request.headers(),
            connect_protocol,
        )
    }

    fn from_http_head(
        method: &http::Method,
        uri: &http::Uri,
        version: http::Version,
        fields: &http::HeaderMap,
        connect_protocol: Option<&str>,
    ) -> Result<Request, RequestError> {
        let mut headers = Headers::new();
        for (name, value) in fields {
            headers.append(name.as_str(), value.as_bytes());
        }
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let form = match version {
            http::Version::HTTP_2 => {
                if method != http::Method::CONNECT
                    || !connect_protocol.is_some_and(|p| p.eq_ignore_ascii_case("websocket"))
                {
                    return Err(RequestError::ExtendedConnect);
                }
                // The `:authority` stands for `Host` (RFC 9113 §8.3.1).
                if !headers.contains("host") {
                    match uri.authority() {
                        Some(a) => headers.append("host", a.as_str()),
                        None => return Err(RequestError::Host),
                    }
                }
                UpgradeForm::ExtendedConnect
            }
            http::Version::HTTP_11 => {
                if method != http::Method::GET {
                    return Err(RequestError::Method(method.to_string()));
                }
                if !headers
                    .get_all("upgrade")
                    .any(|v| has_token(v, "websocket"))
                {
                    return Err(RequestError::Upgrade);
                }
                UpgradeForm::Http11
            }
            _ => return Err(RequestError::Version),
        };
        if headers.count("host") != 1 || headers.get("host").is_none_or(|h| h.trim().is_empty()) {
            return Err(RequestError::Host);
        }
        Request::from_fields(form, target, headers)
    }
}

/// Copies the fields that are safe to send into `map` (see [`Headers::write_safe_to`]).
fn copy_headers(from: &Headers, map: &mut http::HeaderMap) {
    for (name, value) in from.iter() {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
}

impl Agreement {
    /// The response as `http` types: `101 Switching Protocols` with `Upgrade` and
    /// `Connection` for HTTP/1.1, `200` for an extended CONNECT (with no `content-length`:
    /// the stream carries the WebSocket), then [`Agreement::headers`].
    pub fn to_http(&self) -> http::Response<()> {
        let mut response = http::Response::new(());
        *response.status_mut() =
            http::StatusCode::from_u16(self.status()).unwrap_or(http::StatusCode::OK);
        let map = response.headers_mut();
        if self.form == UpgradeForm::Http11 {
            map.insert(
                http::header::UPGRADE,
                http::HeaderValue::from_static("websocket"),
            );
            map.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("Upgrade"),
            );
        }
        copy_headers(&self.headers, map);
        response
    }
}

impl RequestError {
    /// The error response as `http` types: the status, `Content-Type: text/plain`, the
    /// reason as the body, and `Sec-WebSocket-Version: 13` with 426 or `Allow` with 405;
    /// a [`Rejection`](super::server::Rejection) as the application made it.
    pub fn to_http(&self) -> http::Response<String> {
        let rejection = self.to_rejection();
        let mut response = http::Response::new(rejection.body);
        *response.status_mut() = http::StatusCode::from_u16(rejection.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let map = response.headers_mut();
        map.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        copy_headers(&rejection.headers, map);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::super::server::{
        accept, negotiate, parse_request, NoHook, Rejection, ServerHandshakeConfig,
    };
    use super::*;
    use crate::deflate::DeflateConfig;

    /// A request for `/chat?room=1` with the fields both forms share, then `build`'s.
    fn request(
        form: UpgradeForm,
        build: impl FnOnce(http::request::Builder) -> http::request::Builder,
    ) -> http::request::Parts {
        let b = match form {
            UpgradeForm::Http11 => http::Request::builder()
                .method("GET")
                .uri("/chat?room=1")
                .version(http::Version::HTTP_11)
                .header("host", "server.example.com")
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            UpgradeForm::ExtendedConnect => http::Request::builder()
                .method("CONNECT")
                .uri("https://server.example.com/chat?room=1")
                .version(http::Version::HTTP_2),
        }
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat, superchat")
        .header(
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        );
        build(b).body(()).unwrap().into_parts().0
    }

    fn h1(
        build: impl FnOnce(http::request::Builder) -> http::request::Builder,
    ) -> http::request::Parts {
        request(UpgradeForm::Http11, build)
    }

    fn h2(
        build: impl FnOnce(http::request::Builder) -> http::request::Builder,
    ) -> http::request::Parts {
        request(UpgradeForm::ExtendedConnect, build)
    }

    fn config() -> ServerHandshakeConfig {
        ServerHandshakeConfig {
            protocols: vec!["superchat".into()],
            deflate: Some(DeflateConfig::default()),
            ..Default::default()
        }
    }

    #[test]
    fn both_forms_negotiate_alike() {
        let one = Request::from_http(&h1(|b| b), None).unwrap();
        let two = Request::from_http(&h2(|b| b), Some("websocket")).unwrap();
        assert_eq!(one.form(), UpgradeForm::Http11);
        assert_eq!(two.form(), UpgradeForm::ExtendedConnect);
        assert_eq!((two.path(), two.query()), ("/chat", Some("room=1")));
        assert_eq!(two.host(), "server.example.com");
        assert_eq!(two.key(), "");
        let a1 = negotiate(&one, &config(), NoHook).unwrap();
        let a2 = negotiate(&two, &config(), NoHook).unwrap();
        assert_eq!(a1.negotiated, a2.negotiated);
        assert_eq!(a1.negotiated.protocol.as_deref(), Some("superchat"));
        assert!(a1.negotiated.deflate.is_some());

        let r1 = a1.to_http();
        assert_eq!(r1.status(), 101);
        assert_eq!(r1.headers()["upgrade"], "websocket");
        assert_eq!(
            r1.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let r2 = a2.to_http();
        assert_eq!(r2.status(), 200);
        for absent in [
            "upgrade",
            "connection",
            "sec-websocket-accept",
            "content-length",
        ] {
            assert!(!r2.headers().contains_key(absent), "{absent}");
        }
        assert_eq!(r2.headers()["sec-websocket-protocol"], "superchat");
        assert_eq!(
            r2.headers()["sec-websocket-extensions"],
            r1.headers()["sec-websocket-extensions"]
        );
    }

    #[test]
    fn the_http_adapter_and_the_byte_parser_give_the_same_answer() {
        let bytes = "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
        let parsed = parse_request(bytes.as_bytes(), 16 * 1024)
            .unwrap()
            .unwrap()
            .0;
        let (head, negotiated) = accept(&parsed, &config(), NoHook).unwrap();
        let from_http = Request::from_http(&h1(|b| b), None).unwrap();
        let agreement = negotiate(&from_http, &config(), NoHook).unwrap();
        assert_eq!(agreement.negotiated, negotiated);
        assert_eq!(agreement.to_http11(), head);
    }

    #[test]
    fn bad_requests_get_the_statuses_of_the_byte_parser() {
        let cases: Vec<(http::request::Parts, Option<&str>, u16)> = vec![
            (h1(|b| b.method("POST")), None, 405),
            (h1(|b| b.version(http::Version::HTTP_10)), None, 400),
            (h1(|b| b.header("host", "other")), None, 400),
            (h1(|b| b.header("sec-websocket-version", "8")), None, 426),
            (
                h1(|b| {
                    b.header("origin", "https://a")
                        .header("origin", "https://b")
                }),
                None,
                400,
            ),
            (
                h1(|b| b.header("sec-websocket-protocol", "bad token")),
                None,
                400,
            ),
            // HTTP/2: only an extended CONNECT for websocket.
            (h2(|b| b), None, 400),
            (h2(|b| b), Some("webtransport"), 400),
            (h2(|b| b.method("GET")), Some("websocket"), 400),
            (
                h2(|b| b.header("sec-websocket-version", "8")),
                Some("websocket"),
                426,
            ),
        ];
        for (parts, protocol, status) in cases {
            let err = Request::from_http(&parts, protocol).unwrap_err();
            assert_eq!(err.status(), status, "{err} for {parts:?}");
            let response = err.to_http();
            assert_eq!(response.status(), status);
            if status == 426 {
                assert_eq!(response.headers()["sec-websocket-version"], "13");
            }
            if status == 405 {
                assert_eq!(response.headers()["allow"], "GET");
            }
        }
        let err = Request::from_http(&h2(|b| b), Some("webtransport")).unwrap_err();
        assert_eq!(err, RequestError::ExtendedConnect);
    }

    #[test]
    fn hook_headers_that_cannot_be_sent_are_left_out() {
        let request = Request::from_http(&h2(|b| b), Some("websocket")).unwrap();
        let hook = |_: &Request, a: &mut super::super::server::Accept| {
            a.headers.append("x-fine", "yes");
            a.headers.append("x-bad", "a\r\nb");
            Ok(())
        };
        let response = negotiate(&request, &config(), hook).unwrap().to_http();
        assert_eq!(response.headers()["x-fine"], "yes");
        assert!(!response.headers().contains_key("x-bad"));
        let rejected = RequestError::Rejected(Box::new(
            Rejection::new(401, "who are you?\n").with_header("WWW-Authenticate", "Bearer"),
        ))
        .to_http();
        assert_eq!(rejected.status(), 401);
        assert_eq!(rejected.headers()["www-authenticate"], "Bearer");
        assert_eq!(rejected.body(), "who are you?\n");
    }
}
