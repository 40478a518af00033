//! Accepting: the server side of the handshake, and a server loop with connection caps and
//! graceful shutdown.

use crate::connections::{Caps, ConnectionTask, Served};
use crate::error::{Error, Result, Timeout, TlsError};
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;
use bytes::BytesMut;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use wsx_proto::handshake::client::Negotiated;
use wsx_proto::handshake::server::{self, ParsedRequest, RequestError, ServerHandshakeConfig};
use wsx_proto::{Config, Connection, MemoryBudget, Role};

pub use wsx_proto::handshake::server::{
    origin_allowed, Accept, FileBody, Hook, HttpFuture, HttpRequest, HttpResponse, NoHook,
    Rejection, Request,
};

/// Server settings: protocol limits, compression, subprotocols, origin policy, caps and
/// timeouts.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Protocol limits, compression, keepalive and the connection's timeouts, write buffer,
    /// and the memory budget all connections share (`config.memory_budget`; by default
    /// [`DEFAULT_MEMORY_BUDGET`] bytes, `None`: no budget). Under the budget's pressure the
    /// connections holding the most stop reading (closed with 1013 after 5 s), messages
    /// that would pass it fail with 1009, and new connections get `503` once 90% of it is
    /// spent; see [`wsx_proto::budget`].
    pub config: Config,
    /// Supported subprotocols, in order of preference.
    pub protocols: Vec<String>,
    /// Origins allowed to connect (`None`: any); others get `403`. See
    /// [`origin_allowed`] for the patterns.
    pub allowed_origins: Option<Vec<String>>,
    /// Time allowed for the TLS handshake and the request head (default 10 s); a client
    /// that is slower gets `408` (when it can still be told) and is disconnected.
    pub handshake_timeout: Duration,
    /// Most connections open at once (`None`: no cap); excess connections get `503`.
    pub max_connections: Option<usize>,
    /// Most connections open at once from one IP address (`None`: no cap); excess get `429`.
    pub max_connections_per_ip: Option<usize>,
    /// Most new connections per second from one IP address, with bursts of as many
    /// (`None`: no limit); excess get `429` with `Retry-After: 1`. A token bucket per
    /// address; the addresses whose bucket is full again are forgotten, so the table
    /// stays as small as the set of addresses that connected in the last few seconds.
    pub max_handshakes_per_ip: Option<u32>,
    /// Graceful shutdown: how long open connections get to finish their close handshake
    /// after being sent 1001 (default 10 s).
    pub shutdown_timeout: Duration,
    /// Keep each upgrade request's target (path and query) for
    /// [`WebSocket::request_target`] (default off: it costs a small allocation per open
    /// connection).
    pub keep_request_target: bool,
    /// The largest body of a plain HTTP `POST` request that is read (default 1 MiB);
    /// a larger one gets `413`. It is read within the handshake timeout.
    pub max_http_body: usize,
}

/// The memory budget of a default [`ServerConfig`]: 1 GiB for messages being received,
/// queued output and compression state across all connections.
pub const DEFAULT_MEMORY_BUDGET: usize = 1 << 30;

impl Default for ServerConfig {
    fn default() -> Self {
        let mut config = Config::default();
        config.memory_budget = Some(MemoryBudget::new(DEFAULT_MEMORY_BUDGET));
        ServerConfig {
            config,
            protocols: Vec::new(),
            allowed_origins: None,
            handshake_timeout: Duration::from_secs(10),
            max_connections: None,
            max_connections_per_ip: None,
            max_handshakes_per_ip: None,
            shutdown_timeout: Duration::from_secs(10),
            keep_request_target: false,
            max_http_body: 1 << 20,
        }
    }
}

impl ServerConfig {
    /// The core's handshake settings. A [`Server`] makes them once, not per connection.
    pub(crate) fn handshake_config(&self) -> ServerHandshakeConfig {
        let mut hs = ServerHandshakeConfig::default();
        hs.max_head_size = self.config.max_head_size;
        hs.protocols = self.protocols.clone();
        hs.deflate = self.config.deflate.clone();
        hs.allowed_origins = self.allowed_origins.clone();
        hs
    }
}

/// Accepts a WebSocket connection on `stream` with default settings.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<WebSocket<S>> {
    accept_with(stream, &ServerConfig::default(), NoHook).await
}

/// Accepts a WebSocket connection on `stream`: reads and validates the request, lets `hook`
/// inspect it (origin, path, subprotocol, extra headers, or rejection), and answers. A bad
/// request gets its HTTP error response (400, 403, 405, 426, 431, or the hook's status) and
/// [`Error::Upgrade`]; a request head that does not arrive within the handshake timeout gets
/// `408` and [`Error::Timeout`]. A plain HTTP `GET` or `HEAD` request (not an upgrade) that
/// the hook answers with [`Hook::on_http`] gets that response (written within the write
/// timeout), then the stream is closed and [`Error::HttpAnswered`] returned.
pub async fn accept_with<S, H>(stream: S, config: &ServerConfig, hook: H) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Hook,
{
    // Boxed with the handshake settings it makes: the caller's task (the connection's
    // whole life) is not sized for either.
    Box::pin(async move {
        let hs = config.handshake_config();
        accept_boxed(stream, config, &hs, hook).await
    })
    .await
}

/// [`accept_with`] with the handshake settings made already.
async fn accept_prepared<S, H>(
    stream: S,
    config: &ServerConfig,
    hs: &ServerHandshakeConfig,
    hook: H,
) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Hook,
{
    // Boxed: the handshake's state (buffers, timer, parsed request) lives on the heap only
    // while it runs, instead of sizing the caller's task (the connection's whole life) for it.
    Box::pin(accept_boxed(stream, config, hs, hook)).await
}

async fn accept_boxed<S, H>(
    mut stream: S,
    config: &ServerConfig,
    hs: &ServerHandshakeConfig,
    hook: H,
) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Hook,
{
    match tokio::time::timeout(
        config.handshake_timeout,
        upgrade_request(&mut stream, hs, config, hook),
    )
    .await
    {
        Ok(Ok(Outcome::Upgraded(negotiated, leftover, target))) => {
            let conn = Connection::new(Role::Server, &config.config, negotiated.deflate);
            let ws = WebSocket::from_parts(stream, conn, negotiated.protocol, &leftover);
            Ok(if config.keep_request_target {
                ws.with_request_target(target)
            } else {
                ws
            })
        }
        Ok(Ok(Outcome::Http(response, head))) => {
            // Outside the handshake timeout: a large body to a slow reader is bounded by
            // the write timeout instead, and no 408 can follow a response already started.
            let status = response.status;
            write_http(&mut stream, &response, head, config.config.write_timeout).await?;
            Err(Error::HttpAnswered(status))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => {
            let answer = RequestError::Rejected(Box::new(Rejection::new(
                408,
                "request head not received in time\n",
            )));
            let _ =
                tokio::time::timeout(Duration::from_secs(1), reject(&mut stream, &answer)).await;
            Err(Error::Timeout(Timeout::Handshake))
        }
    }
}

/// How a request head was answered.
enum Outcome {
    /// `101` sent: what was agreed, the bytes read after the head, the request target.
    Upgraded(Negotiated, BytesMut, String),
    /// A plain HTTP request the hook answers: the response, and whether it is for `HEAD`.
    Http(HttpResponse, bool),
}

/// Reads the request head, decides, and writes the response (except a plain HTTP one).
async fn upgrade_request<S, H>(
    stream: &mut S,
    hs: &ServerHandshakeConfig,
    config: &ServerConfig,
    mut hook: H,
) -> Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Hook,
{
    let mut buf = BytesMut::with_capacity(1024);
    let parsed = loop {
        match server::parse_head(&buf, hs.max_head_size) {
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
    let decided = match parsed {
        // Plain HTTP (metrics, files) is still answered when memory is short: only
        // WebSockets hold it.
        Ok((ParsedRequest::Upgrade(req), n)) => match config
            .config
            .memory_budget
            .as_ref()
            .and_then(refuse_over_budget)
        {
            Some(refused) => Err(refused),
            None => server::accept(&req, hs, hook).map(|ok| (ok, n, req.target)),
        },
        Ok((ParsedRequest::Http(mut req), n)) => match req.body_len(config.max_http_body) {
            Ok(len) => {
                req.body = read_body(stream, buf.split_off(n), len).await?;
                if let Some(answer) = hook.on_http_async(&req) {
                    return Ok(Outcome::Http(answer.await, req.is_head()));
                }
                match hook.on_http(&req) {
                    Some(response) => return Ok(Outcome::Http(response, req.is_head())),
                    None => Err(req.refusal()),
                }
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match decided {
        Ok(((response, negotiated), head_len, target)) => {
            stream.write_all(&response).await?;
            stream.flush().await?;
            Ok(Outcome::Upgraded(
                negotiated,
                buf.split_off(head_len),
                target,
            ))
        }
        Err(e) => {
            reject(stream, &e).await;
            Err(Error::Upgrade(e))
        }
    }
}

/// Reads a request body of `len` bytes, of which `read` came with the head.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut read: BytesMut,
    len: usize,
) -> Result<bytes::Bytes> {
    while read.len() < len {
        // Grown as the body arrives, not to its announced length up front: a client that
        // announces 1 MiB and sends nothing holds no more than it sent.
        read.reserve((len - read.len()).min(64 * 1024));
        if stream.read_buf(&mut read).await? == 0 {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during a request body",
            )));
        }
    }
    // Whatever follows the body (a pipelined request) is not answered: the connection
    // closes after the response.
    read.truncate(len);
    Ok(read.freeze())
}

/// The `503` for an upgrade while `budget` is nearly spent (counted), if it is.
fn refuse_over_budget(budget: &MemoryBudget) -> Option<RequestError> {
    if budget.admits_connections() {
        return None;
    }
    budget.count_refused_connection();
    Some(RequestError::Rejected(Box::new(
        Rejection::new(503, "server is short of memory, try again later\n")
            .with_header("Retry-After", "5"),
    )))
}

/// Writes a plain HTTP response and shuts the stream down. Each write must make progress
/// within `timeout`: a file body is streamed (read through tokio's blocking pool, 64 KiB at
/// a time), so a large file to a slow reader takes as long as it needs.
async fn write_http<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &HttpResponse,
    head: bool,
    timeout: Option<Duration>,
) -> Result<()> {
    within(timeout, stream.write_all(&response.head_bytes(head))).await?;
    if !head {
        match &response.file {
            Some(file) => send_file(stream, file, timeout).await?,
            None => within(timeout, stream.write_all(&response.body)).await?,
        }
    }
    within(timeout, async {
        stream.flush().await?;
        stream.shutdown().await
    })
    .await
}

/// Streams the first `file.len` bytes of a file; an error if it has fewer.
async fn send_file<S: AsyncWrite + Unpin>(
    stream: &mut S,
    file: &FileBody,
    timeout: Option<Duration>,
) -> Result<()> {
    let mut reader = tokio::fs::File::open(&file.path).await?.take(file.len);
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        within(timeout, stream.write_all(&buf[..n])).await?;
        sent += n as u64;
    }
    if sent < file.len {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{} shrank while being sent", file.path.display()),
        )));
    }
    Ok(())
}

/// Runs a write, failing with [`Timeout::HttpResponse`] when it takes longer than `timeout`.
async fn within(
    timeout: Option<Duration>,
    write: impl Future<Output = std::io::Result<()>>,
) -> Result<()> {
    match timeout {
        Some(t) => tokio::time::timeout(t, write)
            .await
            .map_err(|_| Error::Timeout(Timeout::HttpResponse))??,
        None => write.await?,
    }
    Ok(())
}

async fn reject<S: AsyncWrite + Unpin>(stream: &mut S, e: &RequestError) {
    let _ = stream.write_all(&e.to_response()).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// An accepted socket on its way to the task that serves it.
enum Socket {
    /// Registered with the accepting runtime's reactor (served there).
    Registered(TcpStream),
    /// Deregistered, to be registered with a worker thread's reactor.
    Detached(std::net::TcpStream),
}

/// What a graceful shutdown achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when the shutdown began.
    pub open: usize,
    /// Of those, how many completed the close handshake.
    pub closed_cleanly: usize,
    /// Of those, how many were still running at the end of the shutdown timeout and were
    /// dropped.
    pub dropped: usize,
}

/// A listening WebSocket server: binds, accepts, and runs a handler per connection.
///
/// ```no_run
/// use futures_util::StreamExt;
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
    worker_threads: Option<usize>,
}

impl Server {
    /// Binds a TCP listener (with `SO_REUSEADDR` and a listen backlog of 1024, so a burst
    /// of connections waits in the kernel's queue rather than being retried a second later).
    pub async fn bind(addr: impl ToSocketAddrs) -> Result<Server> {
        let mut last = None;
        for addr in tokio::net::lookup_host(addr).await? {
            match listen(addr) {
                Ok(l) => return Ok(Server::from_listener(l)),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Io(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
        })))
    }

    /// Uses an existing listener.
    pub fn from_listener(listener: TcpListener) -> Server {
        Server {
            listener,
            config: Arc::new(ServerConfig::default()),
            tls: None,
            worker_threads: None,
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

    /// Runs the connections on `n` threads of their own (at least 1), each driving a
    /// current-thread runtime; every new connection goes to the thread with the fewest open
    /// connections, and stays there. Accepting stays on the caller's runtime.
    ///
    /// Without this (the default) connections are spawned on the caller's runtime. Worker
    /// threads keep latency fair under load: tokio's multi-thread scheduler queues at most
    /// 256 ready tasks per worker locally and the rest globally, where they wait many
    /// rounds (1000 busy echo connections on one core: p99 96 ms at p50 1.2 ms; with one
    /// worker thread, p99 within 1.4x of p50). The cost: no work stealing, so a connection
    /// that hogs its thread (say, compressing huge messages) delays its neighbours.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = Some(n.max(1));
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
        self.serve_until(handler, make_hook, std::future::pending())
            .await?;
        Ok(())
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stops accepting, asks
    /// every open connection to close with 1001 (Going Away), waits up to
    /// [`ServerConfig::shutdown_timeout`] for the close handshakes (and handlers) to finish,
    /// and drops the rest: a handler waiting on its `WebSocket` is dropped at once, one
    /// waiting on something else when that wakes it (on the caller's runtime; worker
    /// threads' tasks go with their runtime).
    pub async fn serve_until<F, Fut, M, H>(
        self,
        handler: F,
        make_hook: M,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ShutdownReport>
    where
        F: Fn(WebSocket<MaybeTlsStream>, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        M: Fn() -> H + Send + Sync + 'static,
        H: Hook + Send + 'static,
    {
        let Server {
            listener,
            config,
            tls,
            worker_threads,
        } = self;
        let workers = worker_threads
            .map(crate::workers::Workers::start)
            .transpose()?;
        let handler = Arc::new(handler);
        // Made once: each connection shares it, rather than cloning the subprotocol and
        // origin lists.
        let handshake_config = Arc::new(config.handshake_config());
        let config = Arc::new(config);
        let served = Arc::new(Served::default());
        let caps = Caps {
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            max_handshakes_per_ip: config.max_handshakes_per_ip,
        };
        // Connections still in their handshake when the shutdown starts are dropped at once.
        let stopping = tokio_util::sync::CancellationToken::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let registration = match served.admit(caps, peer) {
                Ok(r) => r,
                Err(rejection) => {
                    tracing::debug!(%peer, status = rejection.status, "connection refused");
                    tokio::spawn(refuse(tcp, rejection));
                    continue;
                }
            };
            let hook = make_hook();
            let config = config.clone();
            let hs = handshake_config.clone();
            let tls = tls.clone();
            let stopping = stopping.clone();
            let (worker, load) = match workers.as_ref().map(|w| w.pick()) {
                Some((worker, load)) => (Some(worker), Some(load)),
                None => (None, None),
            };
            // A socket is driven by the reactor it is registered with: one that moves to a
            // worker thread is re-registered there, or every readiness event would be
            // relayed from this thread to the worker.
            let tcp = match &worker {
                None => Socket::Registered(tcp),
                Some(_) => match tcp.into_std() {
                    Ok(std) => Socket::Detached(std),
                    Err(e) => {
                        tracing::debug!(%peer, "cannot move the connection to a worker: {e}");
                        continue;
                    }
                },
            };
            // The handshake, boxed: its state (a TLS accept among it) and everything only
            // it needs are freed once it is done, instead of sizing the connection's task
            // for its whole life. Biased: a handshake that has already answered 101 is
            // finished, not dropped, when the shutdown starts at the same moment. `None`:
            // the socket could not be registered, or the shutdown began first.
            let handshake = Box::pin(async move {
                let tcp = match tcp {
                    Socket::Registered(tcp) => tcp,
                    Socket::Detached(std) => match TcpStream::from_std(std) {
                        Ok(tcp) => tcp,
                        Err(e) => {
                            tracing::debug!(%peer, "cannot register the connection: {e}");
                            return None;
                        }
                    },
                };
                tokio::select! {
                    biased;
                    r = upgrade(tcp, tls, &config, &hs, hook) => Some(r),
                    _ = stopping.cancelled() => None,
                }
            });
            let task = ConnectionTask::new(handshake, handler.clone(), registration, load);
            // Not kept in a `JoinSet` (64 bytes a connection): the counts in `served` say
            // when all are done, and the signal ends the ones left after the timeout.
            match worker {
                Some(worker) => drop(worker.spawn(task)),
                None => drop(tokio::spawn(task)),
            };
        }
        drop(listener);
        stopping.cancel();
        // Every connection is asked to close, including those whose handshake finishes
        // during the shutdown: they close with 1001 as soon as their handler polls.
        served.request_shutdown();
        let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
        let dropped = served.wait_ended(deadline).await;
        // Tasks still running end when next polled; the signal wakes those waiting on their
        // connection, and a worker thread's runtime drops its own when it stops.
        served.signal.abort();
        drop(workers);
        let report = ShutdownReport {
            open: served.open_at_shutdown(),
            closed_cleanly: served.signal.closed_cleanly(),
            dropped,
        };
        tracing::info!(
            open = report.open,
            dropped = report.dropped,
            "shutdown: {} of {} connections closed cleanly",
            report.closed_cleanly,
            report.open
        );
        Ok(report)
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Answers a connection over a cap: reads the request head briefly (so the client sees the
/// answer rather than a reset), writes the status, closes.
async fn refuse(mut tcp: TcpStream, rejection: Rejection) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await;
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        reject(&mut tcp, &RequestError::Rejected(Box::new(rejection))),
    )
    .await;
}

async fn upgrade<H: Hook>(
    tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: &ServerConfig,
    hs: &ServerHandshakeConfig,
    hook: H,
) -> Result<WebSocket<MaybeTlsStream>> {
    let _ = tcp.set_nodelay(true);
    let stream = match tls {
        Some(acceptor) => MaybeTlsStream::ServerTls(Box::new(
            tokio::time::timeout(config.handshake_timeout, acceptor.accept(tcp))
                .await
                .map_err(|_| Error::Timeout(Timeout::TlsHandshake))?
                .map_err(|e| Error::from(TlsError::Handshake(e)))?,
        )),
        None => MaybeTlsStream::Plain(tcp),
    };
    accept_prepared(stream, config, hs, hook).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that awaits `accept_with` is sized for its largest await for the rest of its
    /// life: the handshake's state and settings must be behind the box, not in the future.
    #[test]
    fn accept_with_holds_its_state_in_a_box() {
        let (io, _peer) = tokio::io::duplex(64);
        let config = ServerConfig::default();
        let fut = accept_with(io, &config, NoHook);
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 64, "accept_with's future is {size} B");
    }
}
