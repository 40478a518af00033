//! [`HubHook`]: the hub's HTTP face on a [`wsx::Server`].

use crate::hub::Hub;
use std::sync::Arc;
use wsx::{Accept, Hook, HttpFuture, HttpRequest, HttpResponse, Rejection, Request};

/// The path of the WebSocket endpoint.
pub const WEBSOCKET_PATH: &str = "/connection/websocket";

/// Answers what a hub serves over HTTP on a [`wsx::Server`] (pass a clone per connection
/// to [`wsx::Server::serve_with_hook`]):
///
/// - WebSocket upgrades on `/connection/websocket` (others get 404);
/// - `POST /api/<method>`: the server API ([`crate::api`]), with the key in `X-API-Key` or
///   `Authorization: apikey <key>` (401 without it; the API is off, 404, when no key is
///   set);
/// - `GET /health`: 200;
/// - `GET /metrics`: Prometheus metrics;
/// - anything else: the fallback (static files, say), or 404.
#[derive(Clone)]
pub struct HubHook {
    hub: Arc<Hub>,
    api_key: Option<Arc<str>>,
    fallback: Option<Arc<Fallback>>,
}

/// What answers the plain HTTP requests the hub does not.
type Fallback = dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync;

impl HubHook {
    /// The hook of `hub`, with the server API off.
    pub fn new(hub: Arc<Hub>) -> Self {
        HubHook {
            hub,
            api_key: None,
            fallback: None,
        }
    }

    /// Turns the server API on, with this key.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(Arc::from(key.into()));
        self
    }

    /// Answers the plain HTTP requests the hub does not (static files, say).
    pub fn fallback(
        mut self,
        f: impl Fn(&HttpRequest) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        self.fallback = Some(Arc::new(f));
        self
    }

    fn authorized(&self, key: &str, req: &HttpRequest) -> bool {
        let given = req.headers.get("x-api-key").map(str::trim).or_else(|| {
            let auth = req.headers.get("authorization")?.trim();
            let (scheme, value) = auth.split_once(' ')?;
            scheme.eq_ignore_ascii_case("apikey").then(|| value.trim())
        });
        // Compared without an early exit, so the time taken tells nothing of the key.
        given.is_some_and(|g| {
            g.len() == key.len()
                && g.bytes()
                    .zip(key.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    }
}

fn json(status: u16, body: impl Into<bytes::Bytes>) -> HttpResponse {
    HttpResponse::new(status, body).with_header("Content-Type", "application/json")
}

impl Hook for HubHook {
    fn on_request(self, request: &Request, _: &mut Accept) -> Result<(), Rejection> {
        if request.path() == WEBSOCKET_PATH {
            Ok(())
        } else {
            Err(Rejection::new(404, "no WebSocket endpoint here\n"))
        }
    }

    fn on_http_async(&mut self, request: &HttpRequest) -> Option<HttpFuture> {
        let method = request.path().strip_prefix("/api/")?;
        if request.method != "POST" {
            return Some(Box::pin(std::future::ready(
                json(405, r#"{"error":"use POST"}"#).with_header("Allow", "POST"),
            )));
        }
        let Some(key) = &self.api_key else {
            return Some(Box::pin(std::future::ready(json(
                404,
                r#"{"error":"the server API is off"}"#,
            ))));
        };
        if !self.authorized(key, request) {
            return Some(Box::pin(std::future::ready(json(
                401,
                r#"{"error":"unauthorized"}"#,
            ))));
        }
        let hub = self.hub.clone();
        let method = method.to_owned();
        let body = request.body.clone();
        Some(Box::pin(async move {
            let reply = crate::api::call(&hub, &method, &body).await;
            json(reply.status, reply.body)
        }))
    }

    fn on_http(&mut self, request: &HttpRequest) -> Option<HttpResponse> {
        match request.path() {
            "/health" => Some(json(200, "{}")),
            "/metrics" => Some(
                HttpResponse::new(200, self.hub.metrics_text())
                    .with_header("Content-Type", "text/plain; version=0.0.4"),
            ),
            _ => Some(match &self.fallback {
                Some(f) => f(request),
                None => HttpResponse::new(404, "not found\n"),
            }),
        }
    }
}
