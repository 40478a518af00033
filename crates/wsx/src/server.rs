//! Accepting: the server side of the handshake, and a small server loop.

use crate::error::{Error, Result};
use crate::stream::MaybeTlsStream;
use crate::websocket::{WebSocket, WebSocketOptions};
use bytes::BytesMut;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use wsx_proto::handshake::server::{self, Hook, NoHook, RequestError, ServerHandshakeConfig};
use wsx_proto::{Config, Connection, Role};

pub use wsx_proto::handshake::server::{Accept, Rejection, Request};

/// Server settings: protocol limits, compression, subprotocols and timeouts.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Protocol limits and compression.
    pub config: Config,
    /// Supported subprotocols, in order of preference.
    pub protocols: Vec<String>,
    /// Time allowed for the TLS handshake and the request head (default 10 s).
    pub handshake_timeout: Duration,
    /// Options of each accepted connection (close timeout, write buffer).
    pub options: WebSocketOptions,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            config: Config::default(),
            protocols: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            options: WebSocketOptions::default(),
        }
    }
}

/// Accepts a WebSocket connection on `stream` with default settings.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<WebSocket<S>> {
    accept_with(stream, &ServerConfig::default(), NoHook).await
}

/// Accepts a WebSocket connection on `stream`: reads and validates the request, lets `hook`
/// inspect it (origin, path, subprotocol, extra headers, or rejection), and answers. A bad
/// request gets its HTTP error response (400, 405, 426, 431, or the hook's status) and
/// [`Error::Upgrade`].
pub async fn accept_with<S, H>(stream: S, config: &ServerConfig, hook: H) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Hook,
{
    tokio::time::timeout(config.handshake_timeout, accept_inner(stream, config, hook))
        .await
        .map_err(|_| Error::Timeout("handshake"))?
}

async fn accept_inner<S, H>(mut stream: S, config: &ServerConfig, hook: H) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Hook,
{
    let limit = config.config.max_head_size;
    let mut buf = BytesMut::with_capacity(1024);
    let parsed = loop {
        match server::parse_request(&buf, limit) {
            Ok(Some(done)) => break Ok(done),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        // parse_request fails with 431 once the buffer passes the limit, bounding it.
        buf.reserve(1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during the handshake",
            )));
        }
    };
    let hs_config = ServerHandshakeConfig {
        max_head_size: limit,
        protocols: config.protocols.clone(),
        deflate: config.config.deflate.clone(),
    };
    let result =
        parsed.and_then(|(req, n)| server::accept(&req, &hs_config, hook).map(|ok| (ok, n)));
    match result {
        Ok(((response, negotiated), head_len)) => {
            stream.write_all(&response).await?;
            stream.flush().await?;
            let leftover = buf.split_off(head_len);
            let conn = Connection::new(Role::Server, &config.config, negotiated.deflate);
            Ok(WebSocket::from_parts(
                stream,
                conn,
                negotiated.protocol,
                &leftover,
                config.options,
            ))
        }
        Err(e) => {
            reject(&mut stream, &e).await;
            Err(Error::Upgrade(e))
        }
    }
}

async fn reject<S: AsyncWrite + Unpin>(stream: &mut S, e: &RequestError) {
    let _ = stream.write_all(&e.to_response()).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// A listening WebSocket server: binds, accepts, and runs a handler per connection.
///
/// ```no_run
/// use futures_util::{SinkExt, StreamExt};
/// # async fn f() -> wsx::Result<()> {
/// let server = wsx::Server::bind("127.0.0.1:9001").await?;
/// server.serve(|mut ws, _peer| async move {
///     while let Some(Ok(msg)) = ws.next().await {
///         if msg.is_data() && ws.send(msg).await.is_err() {
///             break;
///         }
///     }
/// }).await
/// # }
/// ```
pub struct Server {
    listener: TcpListener,
    config: Arc<ServerConfig>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Binds a TCP listener.
    pub async fn bind(addr: impl ToSocketAddrs) -> Result<Server> {
        Ok(Server {
            listener: TcpListener::bind(addr).await?,
            config: Arc::new(ServerConfig::default()),
            tls: None,
        })
    }

    /// Uses an existing listener.
    pub fn from_listener(listener: TcpListener) -> Server {
        Server {
            listener,
            config: Arc::new(ServerConfig::default()),
            tls: None,
        }
    }

    /// Sets the server configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// Serves `wss://` with this PEM certificate chain and private key.
    pub fn tls_pem(mut self, cert: &Path, key: &Path) -> Result<Self> {
        self.tls = Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
            cert, key,
        )?));
        Ok(self)
    }

    /// Serves `wss://` with a ready rustls configuration.
    pub fn tls_config(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(tokio_rustls::TlsAcceptor::from(config));
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Accepts connections forever, running `handler` on a new task for each completed
    /// handshake. Failed handshakes are answered and logged at debug level.
    pub async fn serve<F, Fut>(self, handler: F) -> Result<()>
    where
        F: Fn(WebSocket<MaybeTlsStream>, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.serve_with_hook(handler, || NoHook).await
    }

    /// Like [`Server::serve`], with a [`Hook`] made per connection by `make_hook` to inspect
    /// each request.
    pub async fn serve_with_hook<F, Fut, M, H>(self, handler: F, make_hook: M) -> Result<()>
    where
        F: Fn(WebSocket<MaybeTlsStream>, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        M: Fn() -> H + Send + Sync + 'static,
        H: Hook + Send + 'static,
    {
        let handler = Arc::new(handler);
        let make_hook = Arc::new(make_hook);
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let handler = handler.clone();
            let make_hook = make_hook.clone();
            let config = self.config.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                match upgrade(tcp, tls, &config, make_hook()).await {
                    Ok(ws) => {
                        tracing::info!(%peer, protocol = ws.protocol(), compressed = ws.is_compressed(), "connection open");
                        handler(ws, peer).await;
                        tracing::info!(%peer, "connection done");
                    }
                    Err(e) => tracing::debug!(%peer, "handshake failed: {e}"),
                }
            });
        }
    }
}

async fn upgrade<H: Hook>(
    tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: &ServerConfig,
    hook: H,
) -> Result<WebSocket<MaybeTlsStream>> {
    let _ = tcp.set_nodelay(true);
    let stream = match tls {
        Some(acceptor) => MaybeTlsStream::ServerTls(
            tokio::time::timeout(config.handshake_timeout, acceptor.accept(tcp))
                .await
                .map_err(|_| Error::Timeout("TLS handshake"))?
                .map_err(|e| Error::Tls(e.to_string()))?,
        ),
        None => MaybeTlsStream::Plain(tcp),
    };
    accept_with(stream, config, hook).await
}
