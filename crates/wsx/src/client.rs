//! Connecting: `ws://` and `wss://` clients.

use crate::driver::Handshake;
use crate::error::{Error, Result, Timeout, TlsError};
use crate::proxy::Proxy;
use crate::stream::MaybeTlsStream;
use crate::tls::ClientTlsOptions;
use crate::websocket::WebSocket;
use bytes::{Bytes, BytesMut};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx_proto::handshake::client::{
    ClientHandshake, ClientHandshakeBuilder, Response, Target, UrlError,
};
use wsx_proto::{Config, Connection, Role};

/// Largest error-response body kept for the caller.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Connects to `url` with default settings.
///
/// ```no_run
/// # async fn f() -> wsx::Result<()> {
/// let mut ws = wsx::connect("ws://127.0.0.1:9001/").await?;
/// ws.send(wsx::Message::text("hello")).await?;
/// if let Some(Ok(reply)) = ws.recv().await {
///     println!("{reply:?}");
/// }
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<WebSocket<MaybeTlsStream>> {
    ClientBuilder::new(url).connect().await
}

/// Configures and opens a client connection.
///
/// # Proxies
///
/// By default `connect` reads the proxy environment variables, as curl, browsers and Python
/// `websockets` (since 15) do: `https_proxy` / `HTTPS_PROXY` for `wss://`, `http_proxy`
/// for `ws://`, then `all_proxy` / `ALL_PROXY`, with `no_proxy` / `NO_PROXY` exemptions
/// and loopback targets always direct (details in [`Proxy::from_env`]).
/// [`ClientBuilder::proxy`] sets the proxy explicitly and [`ClientBuilder::no_proxy`]
/// connects directly whatever the environment says. `wsx connect` behaves the same
/// (`--proxy URL`, `--no-proxy`).
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    /// The request being built (the URL's error, if it cannot be used, is reported by
    /// `connect`). Its compression offer and head limit come from `config` at connect time.
    request: std::result::Result<ClientHandshakeBuilder, UrlError>,
    config: Config,
    tls: ClientTlsOptions,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    proxy: ProxyChoice,
}

/// Where [`ClientBuilder::connect`] gets its proxy from.
#[derive(Clone, Debug)]
enum ProxyChoice {
    Env,
    Direct,
    Use(Proxy),
}

impl ClientBuilder {
    /// A builder for `url` (`ws://` or `wss://`).
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            request: ClientHandshake::builder(&url.into()),
            config: Config::default(),
            tls: ClientTlsOptions::default(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            proxy: ProxyChoice::Env,
        }
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.request = self.request.map(|r| r.origin(origin));
        self
    }

    /// Offers a subprotocol (call several times, in order of preference).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.request = self.request.map(|r| r.protocol(protocol));
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request = self.request.map(|r| r.header(name.into(), value.into()));
        self
    }

    /// Protocol limits, compression, keepalive, the connection's timeouts (close, idle,
    /// write) and its write buffer: everything about the connection once it is open.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Trusts the CA certificates in this PEM file (in addition to the built-in roots).
    pub fn add_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca_files.push(path.into());
        self
    }

    /// Presents this client certificate chain and key (PEM files).
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Accepts any server certificate. **Disables authentication; for testing only.**
    pub fn danger_accept_invalid_certs(mut self, yes: bool) -> Self {
        self.tls.insecure = yes;
        self
    }

    /// Connects through this proxy (HTTP `CONNECT` or SOCKS5), whatever the environment
    /// says, loopback targets included.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = ProxyChoice::Use(proxy);
        self
    }

    /// Connects directly, ignoring the `*_proxy` environment variables.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxyChoice::Direct;
        self
    }

    /// Time allowed for DNS and the TCP connection (default 10 s); through a proxy, for
    /// connecting to the proxy and setting up the tunnel.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Time allowed for the TLS and WebSocket handshakes (default 10 s).
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    fn handshake(&self) -> Result<ClientHandshakeBuilder> {
        Ok(self
            .request
            .clone()?
            .deflate(self.config.deflate.clone())
            .max_head_size(self.config.max_head_size))
    }

    /// Resolves, connects (TCP, through the proxy's tunnel if there is one, then TLS for
    /// `wss://`) and performs the handshake.
    pub async fn connect(self) -> Result<WebSocket<MaybeTlsStream>> {
        let hs = self.handshake()?;
        let target = hs.target().clone();
        let proxy = match &self.proxy {
            ProxyChoice::Env => {
                crate::proxy::proxy_for_target(&target, &|name: &str| std::env::var(name).ok())?
            }
            ProxyChoice::Direct => None,
            ProxyChoice::Use(p) => Some(p.clone()),
        };
        let tcp = match proxy {
            Some(p) => {
                p.tunnel(&target.host, target.port, self.connect_timeout)
                    .await?
            }
            None => tokio::time::timeout(self.connect_timeout, connect_tcp(&target))
                .await
                .map_err(|_| Error::Timeout(Timeout::Connect))??,
        };
        let _ = tcp.set_nodelay(true);
        let fut = async {
            let stream = if target.tls {
                let config: Arc<rustls::ClientConfig> = self.tls.build()?;
                let name = rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(
                    |source| {
                        Error::from(TlsError::ServerName {
                            name: target.host.clone(),
                            source,
                        })
                    },
                )?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Error::from(TlsError::Handshake(e)))?;
                MaybeTlsStream::ClientTls(Box::new(tls))
            } else {
                MaybeTlsStream::Plain(tcp)
            };
            handshake_on(stream, hs, &self.config).await
        };
        tokio::time::timeout(self.handshake_timeout, fut)
            .await
            .map_err(|_| Error::Timeout(Timeout::Handshake))?
    }

    /// Performs the WebSocket handshake over an already connected stream (the URL's host is
    /// used for the `Host` header only).
    pub async fn connect_on<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        stream: S,
    ) -> Result<WebSocket<S>> {
        let hs = self.handshake()?;
        tokio::time::timeout(
            self.handshake_timeout,
            handshake_on(stream, hs, &self.config),
        )
        .await
        .map_err(|_| Error::Timeout(Timeout::Handshake))?
    }
}

async fn connect_tcp(target: &Target) -> Result<TcpStream> {
    use crate::net::ConnectError;
    crate::net::connect_tcp(&target.host, target.port)
        .await
        .map_err(|e| match e {
            ConnectError::Resolve(source) => Error::Dns {
                host: target.host.clone(),
                source,
            },
            ConnectError::Connect(last) => Error::Connect {
                addr: format!("{}:{}", target.host, target.port),
                source: last.unwrap_or_else(|| std::io::Error::other("no addresses found")),
            },
        })
}

async fn handshake_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    builder: wsx_proto::handshake::client::ClientHandshakeBuilder,
    config: &Config,
) -> Result<WebSocket<S>> {
    let (hs, request) = builder.build()?;
    stream.write_all(&request).await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(1024);
    let (response, head_len) = loop {
        if let Some(done) = hs.parse_response(&buf)? {
            break done;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during the handshake",
            )));
        }
    };
    let leftover = buf.split_off(head_len);
    if response.status != 101 {
        let body = read_error_body(&mut stream, &response, leftover).await;
        return Err(Error::Http {
            response: Box::new(response),
            body,
        });
    }
    let negotiated = hs.finish(response.clone())?;
    let conn = Connection::new(Role::Client, config, negotiated.deflate);
    Ok(
        WebSocket::from_parts(stream, conn, negotiated.protocol, &leftover)
            .with_handshake(Handshake { request, response }),
    )
}

/// Reads the body of an error response: up to `Content-Length` (or end of stream), at most
/// 64 KiB, waiting at most 2 s.
async fn read_error_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    response: &Response,
    mut body: BytesMut,
) -> Bytes {
    let want = response
        .content_length()
        .unwrap_or(MAX_ERROR_BODY)
        .min(MAX_ERROR_BODY);
    let read = async {
        while body.len() < want {
            match stream.read_buf(&mut body).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    body.truncate(want);
    body.freeze()
}
