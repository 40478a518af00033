//! `wsx serve`: an echo, broadcast or exec server (optionally with static files) with TLS,
//! deflate, limits and graceful shutdown.

use crate::args::{limit, parse_secs, parse_size, secs, DeflateArgs};
use crate::broadcast::Hub;
use crate::exec::ExecConfig;
use crate::metrics::Metrics;
use crate::static_files::StaticFiles;
use anyhow::Context as _;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use wsx::{Accept, Hook, HttpRequest, HttpResponse, MaybeTlsStream, Rejection, Request, WebSocket};

/// Arguments of `wsx serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// PEM certificate chain: serve wss:// (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Threads serving connections, each with a single-threaded runtime; a new connection
    /// goes to the thread with the fewest (default: one per CPU).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    #[command(flatten)]
    mode: ServeMode,
    #[command(flatten)]
    mode_options: ModeOptions,
    /// Also serve the files in DIR over plain HTTP GET/HEAD on the same port (index.html
    /// for directories; files of any size, streamed; no path leaves DIR: `..` and
    /// symlinks out of it get 403). WebSocket upgrades still work on every path.
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Answer plain HTTP GET /metrics with the server's counters in Prometheus' text
    /// format (the memory budget: limit, bytes held, refused messages and connections,
    /// paused reads, overload closes).
    #[arg(long)]
    metrics: bool,
    /// Subprotocol to support (repeatable, in order of preference): the first of these that
    /// the client offered is selected; a client that offers none of them (or none at all)
    /// still connects, without a subprotocol.
    #[arg(long = "subprotocol", value_name = "NAME", value_parser = parse_token)]
    subprotocols: Vec<String>,
    #[command(flatten)]
    deflate: DeflateArgs,
    #[command(flatten)]
    limits: ServeLimits,
}

/// What the server does with messages (one of these; --echo is the default).
#[derive(clap::Args, Clone, Debug)]
#[group(multiple = false)]
struct ServeMode {
    /// Send every text and binary message back to its sender (the default).
    #[arg(long)]
    echo: bool,
    /// Send every text and binary message to every other connected client. A client whose
    /// outgoing queue overflows (more than --write-buffer bytes unsent, or more than
    /// --broadcast-backlog messages behind) is closed with 1008 "too slow".
    #[arg(long)]
    broadcast: bool,
    /// Bridge each connection to its own `sh -c CMD`: text messages go to its stdin with a
    /// newline (binary ones raw), each stdout line comes back as a text message, stderr goes
    /// to the server's stderr; WSX_PEER and WSX_PATH are set. The connection closes with
    /// 1000 when CMD exits 0, 1011 otherwise; when the client leaves, CMD's stdin is closed
    /// and it gets SIGTERM after --exec-grace (SIGKILL after another).
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
}

/// Settings of --broadcast and --exec.
#[derive(clap::Args, Clone, Debug)]
struct ModeOptions {
    /// With --broadcast: messages the relay of a client's worker thread may fall behind the
    /// publishers before the clients it has not caught up are closed with 1008.
    #[arg(long, value_name = "N", default_value_t = crate::broadcast::DEFAULT_BACKLOG,
          requires = "broadcast", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    broadcast_backlog: u32,
    /// With --exec: send the command's stdout as binary messages, in chunks as read, rather
    /// than as text lines.
    #[arg(long, requires = "exec")]
    exec_binary: bool,
    /// With --exec: seconds the command gets to exit after the client left (and its stdin
    /// was closed) before its process group gets SIGTERM, and then before SIGKILL.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = parse_secs,
          requires = "exec")]
    exec_grace: f64,
}

/// Server limits, timeouts and policies (see RELIABILITY.md).
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ServeLimits {
    /// Most connections open at once; more get HTTP 503.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most connections open at once from one IP address; more get HTTP 429. Default: 1024,
    /// or no limit when listening on a loopback address; 0: no limit.
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// Most new connections per second from one IP address, in bursts of as many; more get
    /// HTTP 429. Default: 64, or no limit when listening on a loopback address; 0: no limit.
    #[arg(long, value_name = "N")]
    max_handshakes_per_ip: Option<u32>,
    /// Allowed Origin (repeatable): exact (https://app.example.com), wildcard subdomain
    /// (https://*.example.com) or *. Others get HTTP 403; requests without Origin are allowed.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Seconds allowed for the TLS handshake and the request head (slower clients get 408;
    /// 0: no limit). For all the SECS options here, 0 turns the limit or timer off.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_secs)]
    handshake_timeout: f64,
    /// Ping a peer that has been silent this many seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 20.0, value_parser = parse_secs)]
    ping_interval: f64,
    /// Fail the connection with 1011 when a ping is not answered within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 20.0, value_parser = parse_secs)]
    pong_timeout: f64,
    /// Close with 1001 after this many seconds without a message from the peer (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = parse_secs)]
    idle_timeout: f64,
    /// Drop a connection whose output makes no progress for this many seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_secs)]
    write_timeout: f64,
    /// Seconds to wait for the peer's close frame, and for the close handshake to finish.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_secs)]
    close_timeout: f64,
    /// On SIGINT/SIGTERM, seconds open connections get to close after being sent 1001.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_secs)]
    shutdown_timeout: f64,
    /// Largest message accepted, in bytes, after decompression (larger: close 1009).
    #[arg(long, value_name = "BYTES")]
    max_message_size: Option<usize>,
    /// Largest frame accepted, in bytes (larger: close 1009).
    #[arg(long, value_name = "BYTES")]
    max_frame_size: Option<usize>,
    /// Most frames in one message (more: close 1008).
    #[arg(long, value_name = "N")]
    max_fragments: Option<usize>,
    /// Largest request head, in bytes (larger: HTTP 431).
    #[arg(long, value_name = "BYTES")]
    max_head_size: Option<usize>,
    /// Bytes of queued output above which sends wait and reading pauses.
    #[arg(long, value_name = "BYTES")]
    write_buffer: Option<usize>,
    /// Memory all connections together may hold for messages being received, queued output
    /// and compression state (e.g. 512M, 2G; 0: no budget). Past 75% of it the
    /// connections holding the most stop reading (1013 after 5 s); messages that would
    /// pass it get 1009; past 90%, new connections get HTTP 503. Default: 1G.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory_budget: Option<usize>,
}

/// Per-address limits of a server that does not listen on loopback only, unless set.
const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1024;
const DEFAULT_MAX_HANDSHAKES_PER_IP: u32 = 64;

impl ServeLimits {
    pub(crate) fn apply(&self, c: &mut wsx::ServerConfig, listen: SocketAddr) {
        // On loopback every client is this machine's: no per-address limits unless asked.
        let public = !listen.ip().is_loopback();
        c.max_connections = self.max_connections;
        c.max_connections_per_ip = self
            .max_connections_per_ip
            .or(public.then_some(DEFAULT_MAX_CONNECTIONS_PER_IP))
            .filter(|&n| n > 0);
        c.max_handshakes_per_ip = self
            .max_handshakes_per_ip
            .or(public.then_some(DEFAULT_MAX_HANDSHAKES_PER_IP))
            .filter(|&n| n > 0);
        if !self.allow_origins.is_empty() {
            c.allowed_origins = Some(self.allow_origins.clone());
        }
        c.handshake_timeout = limit(self.handshake_timeout);
        c.shutdown_timeout = limit(self.shutdown_timeout);
        c.config.ping_interval = secs(self.ping_interval);
        c.config.pong_timeout = limit(self.pong_timeout);
        c.config.idle_timeout = secs(self.idle_timeout);
        c.config.write_timeout = secs(self.write_timeout);
        c.config.close_timeout = limit(self.close_timeout);
        if let Some(n) = self.write_buffer {
            c.config.write_buffer_high_water = n;
        }
        if let Some(n) = self.max_message_size {
            c.config.max_message_size = n;
        }
        if let Some(n) = self.max_frame_size {
            c.config.max_frame_size = n;
        }
        if let Some(n) = self.max_fragments {
            c.config.max_fragments = n;
        }
        if let Some(n) = self.max_head_size {
            c.config.max_head_size = n;
        }
        if let Some(n) = self.memory_budget {
            c.config.memory_budget = (n > 0).then(|| wsx::MemoryBudget::new(n));
        }
    }
}

/// Accepts an argument that is an HTTP token (what a subprotocol name must be).
fn parse_token(s: &str) -> Result<String, String> {
    if wsx_proto::handshake::is_token(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a valid subprotocol name (an HTTP token)"
        ))
    }
}

/// What each connection runs.
enum Mode {
    Echo,
    Broadcast(Arc<Hub>),
    Exec(ExecConfig),
}

/// The per-connection hook: accepts every upgrade and answers plain HTTP with --metrics
/// (`/metrics`) and --static (everything else).
struct ServeHook {
    files: Option<Arc<StaticFiles>>,
    metrics: Option<Arc<Metrics>>,
}

impl Hook for ServeHook {
    fn on_request(self, _: &Request, _: &mut Accept) -> Result<(), Rejection> {
        Ok(())
    }

    fn on_http(&mut self, request: &HttpRequest) -> Option<HttpResponse> {
        if let Some(metrics) = &self.metrics {
            if request.path() == "/metrics" {
                return Some(metrics.respond());
            }
        }
        self.files.as_ref().map(|files| files.respond(request))
    }
}

/// Runs `wsx serve` until SIGINT/SIGTERM and the graceful shutdown that follows.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let threads = args.threads.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut config = wsx::ServerConfig::default();
    config.config.deflate = args.deflate.config();
    config.protocols = args.subprotocols;
    args.limits.apply(&mut config, args.listen);
    let mode = if args.mode.broadcast {
        Mode::Broadcast(Arc::new(Hub::new(
            args.mode_options.broadcast_backlog as usize,
        )))
    } else if let Some(command) = args.mode.exec {
        // For WSX_PATH.
        config.keep_request_target = true;
        Mode::Exec(ExecConfig {
            command,
            binary: args.mode_options.exec_binary,
            grace: secs(args.mode_options.exec_grace).unwrap_or_default(),
            input_timeout: config.config.write_timeout,
        })
    } else {
        Mode::Echo
    };
    let files = match &args.static_dir {
        Some(dir) => Some(Arc::new(StaticFiles::new(dir)?)),
        None => None,
    };
    serve(
        args.listen,
        threads,
        args.tls_cert.zip(args.tls_key),
        config,
        mode,
        files,
        args.metrics,
    )
    .await
}

async fn serve(
    listen: SocketAddr,
    threads: usize,
    tls: Option<(PathBuf, PathBuf)>,
    config: wsx::ServerConfig,
    mode: Mode,
    files: Option<Arc<StaticFiles>>,
    metrics: bool,
) -> anyhow::Result<()> {
    let protocols = config.protocols.clone();
    let metrics = metrics.then(|| Arc::new(Metrics::new(config.config.memory_budget.clone())));
    if let Some(budget) = &config.config.memory_budget {
        crate::heap::watch(budget.clone());
    }
    let mut server = wsx::Server::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?
        .config(config)
        .worker_threads(threads);
    let scheme = if let Some((cert, key)) = &tls {
        server = server.tls_pem(cert, key)?;
        "wss"
    } else {
        "ws"
    };
    let what = match &mode {
        Mode::Echo => "echo server".to_string(),
        Mode::Broadcast(_) => "broadcast server".to_string(),
        Mode::Exec(e) => format!("exec server (`{}`)", e.command),
    };
    tracing::info!(
        "{what} listening on {scheme}://{} ({threads} thread{})",
        server.local_addr()?,
        if threads == 1 { "" } else { "s" }
    );
    if let Some(files) = &files {
        let http = if scheme == "wss" { "https" } else { "http" };
        tracing::info!(
            "serving {} on {http}://{}/",
            files.root().display(),
            server.local_addr()?
        );
    }
    if !protocols.is_empty() {
        tracing::info!(
            "subprotocols, in order of preference: {}",
            protocols.join(", ")
        );
    }
    let hook = move || ServeHook {
        files: files.clone(),
        metrics: metrics.clone(),
    };
    // A handler per mode, so that each connection's task is sized for its own mode's future
    // (exec's, 2.1 KiB, is boxed).
    let report = match mode {
        Mode::Echo => server.serve_until(echo, hook, shutdown_signal()).await?,
        Mode::Broadcast(hub) => {
            let handler = move |ws, peer| hub.clone().serve(ws, peer);
            server.serve_until(handler, hook, shutdown_signal()).await?
        }
        Mode::Exec(exec) => {
            let exec = Arc::new(exec);
            let handler = move |ws, peer| {
                let exec = exec.clone();
                Box::pin(async move { crate::exec::serve(&exec, ws, peer).await })
            };
            server.serve_until(handler, hook, shutdown_signal()).await?
        }
    };
    // In JSON mode the library's own shutdown log line (a JSON object) says the same.
    if !crate::json_logs() {
        eprintln!(
            "shutdown: {} of {} connections closed cleanly, {} dropped",
            report.closed_cleanly, report.open, report.dropped
        );
    }
    Ok(())
}

/// Echo mode: every text and binary message goes back to its sender.
///
/// Written so that the future holds as little as it can across its awaits, since every
/// connection's task is sized for it: not an `async fn` (a `mut` parameter of one is copied
/// into a second local, and both stay in the future), and the message is taken out of the
/// `match` (a guard's borrow, not the message's own) so that only the send future holds it.
#[allow(clippy::manual_async_fn)]
fn echo(
    mut ws: WebSocket<MaybeTlsStream>,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        loop {
            let msg = match ws.next().await {
                Some(Ok(msg)) if msg.is_data() => msg,
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::info!(%peer, "connection failed: {e}");
                    break;
                }
                None => break,
            };
            if let Err(e) = ws.send(msg).await {
                tracing::info!(%peer, "send failed: {e}");
                break;
            }
        }
        if let Some(ev) = ws.close_event() {
            tracing::info!(%peer, code = ev.code.0, reason = %ev.reason, clean = ev.was_clean, "closed");
        }
    }
}

pub(crate) async fn shutdown_signal() {
    one_signal().await;
    tracing::info!(
        "shutting down: no new connections, closing open ones with 1001 (signal again to force)"
    );
    tokio::spawn(async {
        one_signal().await;
        if crate::json_logs() {
            tracing::warn!("shutdown forced");
        } else {
            eprintln!("shutdown forced");
        }
        std::process::exit(130);
    });
}

async fn one_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Limits {
        #[command(flatten)]
        limits: ServeLimits,
    }

    fn config(args: &[&str], listen: &str) -> wsx::ServerConfig {
        let parsed =
            Limits::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).unwrap();
        let mut c = wsx::ServerConfig::default();
        parsed.limits.apply(&mut c, listen.parse().unwrap());
        c
    }

    #[test]
    fn per_address_limits_default_on_except_on_loopback() {
        for public in ["0.0.0.0:9001", "192.0.2.7:9001", "[::]:9001"] {
            let c = config(&[], public);
            assert_eq!(c.max_connections_per_ip, Some(1024), "{public}");
            assert_eq!(c.max_handshakes_per_ip, Some(64), "{public}");
        }
        for local in ["127.0.0.1:9001", "[::1]:9001"] {
            let c = config(&[], local);
            assert_eq!(
                (c.max_connections_per_ip, c.max_handshakes_per_ip),
                (None, None)
            );
        }
        // Set: on loopback too; 0 turns them off.
        let c = config(
            &[
                "--max-connections-per-ip",
                "5",
                "--max-handshakes-per-ip",
                "7",
            ],
            "127.0.0.1:1",
        );
        assert_eq!(
            (c.max_connections_per_ip, c.max_handshakes_per_ip),
            (Some(5), Some(7))
        );
        let c = config(
            &[
                "--max-connections-per-ip",
                "0",
                "--max-handshakes-per-ip",
                "0",
            ],
            "0.0.0.0:1",
        );
        assert_eq!(
            (c.max_connections_per_ip, c.max_handshakes_per_ip),
            (None, None)
        );
    }
}
