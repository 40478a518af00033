//! `wsx serve`: an echo server with TLS, deflate, limits and graceful shutdown.

use crate::args::{limit, parse_secs, secs, DeflateArgs};
use anyhow::Context as _;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    deflate: DeflateArgs,
    #[command(flatten)]
    limits: ServeLimits,
}

/// Server limits, timeouts and policies (see RELIABILITY.md).
#[derive(clap::Args, Clone, Debug)]
struct ServeLimits {
    /// Most connections open at once; more get HTTP 503.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most connections open at once from one IP address; more get HTTP 429.
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
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
}

impl ServeLimits {
    fn apply(&self, c: &mut wsx::ServerConfig) {
        c.max_connections = self.max_connections;
        c.max_connections_per_ip = self.max_connections_per_ip;
        if !self.allow_origins.is_empty() {
            c.allowed_origins = Some(self.allow_origins.clone());
        }
        c.handshake_timeout = limit(self.handshake_timeout);
        c.shutdown_timeout = limit(self.shutdown_timeout);
        c.options.ping_interval = secs(self.ping_interval);
        c.options.pong_timeout = limit(self.pong_timeout);
        c.options.idle_timeout = secs(self.idle_timeout);
        c.options.write_timeout = secs(self.write_timeout);
        c.options.close_timeout = limit(self.close_timeout);
        if let Some(n) = self.write_buffer {
            c.options.write_buffer_high_water = n;
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
    }
}

/// Runs `wsx serve` until SIGINT/SIGTERM and the graceful shutdown that follows.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let threads = args.threads.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    serve(
        args.listen,
        threads,
        args.tls_cert.zip(args.tls_key),
        args.deflate.config(),
        args.limits,
    )
    .await
}

async fn serve(
    listen: SocketAddr,
    threads: usize,
    tls: Option<(PathBuf, PathBuf)>,
    deflate: Option<wsx::DeflateConfig>,
    limits: ServeLimits,
) -> anyhow::Result<()> {
    let mut config = wsx::ServerConfig::default();
    config.config.deflate = deflate;
    limits.apply(&mut config);
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
    tracing::info!(
        "echo server listening on {scheme}://{} ({threads} thread{})",
        server.local_addr()?,
        if threads == 1 { "" } else { "s" }
    );
    let report = server
        .serve_until(
            |mut ws, peer| async move {
                while let Some(msg) = ws.next().await {
                    match msg {
                        Ok(msg) if msg.is_data() => {
                            if let Err(e) = ws.send(msg).await {
                                tracing::info!(%peer, "send failed: {e}");
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::info!(%peer, "connection failed: {e}");
                            break;
                        }
                    }
                }
                if let Some(ev) = ws.close_event() {
                    tracing::info!(%peer, code = ev.code.0, reason = %ev.reason, clean = ev.was_clean, "closed");
                }
            },
            || wsx::NoHook,
            shutdown_signal(),
        )
        .await?;
    eprintln!(
        "shutdown: {} of {} connections closed cleanly, {} dropped",
        report.closed_cleanly, report.open, report.dropped
    );
    Ok(())
}

/// Completes on the first Ctrl-C (SIGINT) or SIGTERM; a second one exits at once (130).
async fn shutdown_signal() {
    one_signal().await;
    tracing::info!(
        "shutting down: no new connections, closing open ones with 1001 (signal again to force)"
    );
    tokio::spawn(async {
        one_signal().await;
        eprintln!("shutdown forced");
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
