//! `wsx`: WebSocket client, server and tools.

mod bench;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use wsx::{CloseCode, CloseFrame, Message};

#[derive(Parser)]
#[command(name = "wsx", version, about = "WebSocket client, server and tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an echo server: every text and binary message is sent back as is, on every path.
    #[command(
        after_help = "Examples:\n  wsx serve\n  wsx serve --listen 0.0.0.0:8080\n  wsx serve --tls-cert cert.pem --tls-key key.pem"
    )]
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: SocketAddr,
        /// PEM certificate chain: serve wss:// (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        deflate: DeflateArgs,
        #[command(flatten)]
        limits: Box<ServeLimits>,
    },
    /// Load-test an echo server: N connections, each keeping messages in flight and
    /// checking every echo; reports msg/s, MiB/s and latency percentiles.
    #[command(
        after_help = "Examples:\n  wsx bench ws://127.0.0.1:9001/\n  wsx bench ws://127.0.0.1:9001/ -c 10 -s 16384 --binary -d 5 --json"
    )]
    Bench(BenchArgs),
    /// Connect to a server: each stdin line is sent as a text message, received messages are
    /// printed; end of input closes the connection with 1000.
    #[command(
        after_help = "Examples:\n  wsx connect ws://127.0.0.1:9001/\n  echo hello | wsx connect wss://example.com/socket"
    )]
    Connect {
        /// ws:// or wss:// URL.
        url: String,
        /// Accept any TLS certificate (testing only).
        #[arg(long, short = 'k')]
        insecure: bool,
        /// Trust this CA certificate (PEM) for wss://.
        #[arg(long)]
        ca: Option<PathBuf>,
        #[command(flatten)]
        deflate: DeflateArgs,
        /// Print the handshake request and response headers to stderr.
        #[arg(long)]
        show_handshake: bool,
    },
}

/// Closed-loop echo load.
#[derive(clap::Args, Clone, Debug)]
struct BenchArgs {
    /// ws:// or wss:// URL of an echo server.
    url: String,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: usize,
    /// Message size in bytes.
    #[arg(short = 's', long, default_value_t = 20)]
    size: usize,
    /// Send binary messages (default: text).
    #[arg(long)]
    binary: bool,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Measured seconds.
    #[arg(short = 'd', long, default_value_t = 10.0, value_parser = parse_secs)]
    duration: f64,
    /// Unmeasured seconds before the measurement.
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    warmup: f64,
    /// Negotiate permessage-deflate (uses the full client instead of prebuilt frames).
    #[arg(long)]
    deflate: bool,
    /// Worker threads (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
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

/// Parses a number of seconds: 0 up to about 30 years (no NaN, no negatives).
fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!("{s} is out of range (0 to 1e9 seconds)"));
    }
    Ok(v)
}

/// A timeout or interval from seconds, where 0 means "none".
fn secs(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s).ok().filter(|d| !d.is_zero())
}

/// A limit from seconds, where 0 means "no limit" (about a year, which tokio timers accept).
fn limit(s: f64) -> Duration {
    secs(s).unwrap_or(Duration::from_secs(365 * 86400))
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

/// permessage-deflate settings. For `serve` they are the server's limits and requirements;
/// for `connect` they shape the client's offer.
#[derive(clap::Args, Clone, Debug)]
struct DeflateArgs {
    /// Disable permessage-deflate (compression).
    #[arg(long)]
    no_deflate: bool,
    /// Largest LZ77 window (2^BITS bytes) the server compresses with.
    #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(8..=15))]
    deflate_server_max_window_bits: Option<u8>,
    /// Largest LZ77 window (2^BITS bytes) the client compresses with.
    #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(8..=15))]
    deflate_client_max_window_bits: Option<u8>,
    /// The server resets its compression context after every message.
    #[arg(long)]
    deflate_server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    #[arg(long)]
    deflate_client_no_context_takeover: bool,
    /// Compression level, 0 (store) to 9 (smallest).
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(u32).range(0..=9))]
    deflate_level: Option<u32>,
    /// Messages shorter than this many bytes are sent uncompressed.
    #[arg(long, value_name = "BYTES")]
    deflate_threshold: Option<usize>,
}

impl DeflateArgs {
    fn config(&self) -> Option<wsx::DeflateConfig> {
        if self.no_deflate {
            return None;
        }
        let mut c = wsx::DeflateConfig::default();
        if let Some(b) = self.deflate_server_max_window_bits {
            c.server_max_window_bits = b;
        }
        if let Some(b) = self.deflate_client_max_window_bits {
            c.client_max_window_bits = b;
        }
        c.server_no_context_takeover = self.deflate_server_no_context_takeover;
        c.client_no_context_takeover = self.deflate_client_no_context_takeover;
        if let Some(l) = self.deflate_level {
            c.level = l;
        }
        if let Some(t) = self.deflate_threshold {
            c.threshold = t;
        }
        Some(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve {
                listen,
                tls_cert,
                tls_key,
                deflate,
                limits,
            } => serve(listen, tls_cert.zip(tls_key), deflate.config(), *limits)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Connect {
                url,
                insecure,
                ca,
                deflate,
                show_handshake,
            } => connect(url, insecure, ca, deflate.config(), show_handshake).await,
            Command::Bench(b) => bench_cmd(b).await,
        }
    });
    // A blocking stdin read (wsx connect) would otherwise hold up the runtime's shutdown
    // until the user presses Enter.
    rt.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    listen: SocketAddr,
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
        .config(config);
    let scheme = if let Some((cert, key)) = &tls {
        server = server.tls_pem(cert, key)?;
        "wss"
    } else {
        "ws"
    };
    tracing::info!(
        "echo server listening on {scheme}://{}",
        server.local_addr()?
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

async fn bench_cmd(b: BenchArgs) -> anyhow::Result<ExitCode> {
    let report = bench::run(bench::BenchOptions {
        url: b.url,
        connections: b.connections,
        size: b.size,
        binary: b.binary,
        in_flight: b.in_flight,
        duration: secs(b.duration).unwrap_or(Duration::from_secs(1)),
        warmup: secs(b.warmup).unwrap_or_default(),
        deflate: b.deflate,
    })
    .await?;
    if b.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    Ok(if report.errors == 0 && report.mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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

async fn connect(
    url: String,
    insecure: bool,
    ca: Option<PathBuf>,
    deflate: Option<wsx::DeflateConfig>,
    show_handshake: bool,
) -> anyhow::Result<ExitCode> {
    let mut builder = wsx::ClientBuilder::new(url.clone()).danger_accept_invalid_certs(insecure);
    if let Some(ca) = ca {
        builder = builder.add_ca_file(ca);
    }
    builder = builder.config(wsx::Config {
        deflate,
        ..Default::default()
    });
    let mut ws = match builder.connect().await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("error: {url}: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if show_handshake {
        if let Some(hs) = ws.handshake() {
            eprint!("{}", String::from_utf8_lossy(&hs.request));
            eprintln!("HTTP/1.1 {} {}", hs.response.status, hs.response.reason);
            for (name, value) in hs.response.headers.iter() {
                eprintln!("{name}: {}", String::from_utf8_lossy(value));
            }
            eprintln!();
        }
    }
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut input_open = true;
    loop {
        tokio::select! {
            line = stdin.next_line(), if input_open => match line? {
                Some(line) => ws.send(Message::text(line)).await?,
                None => {
                    // Close, but keep printing what arrives until the handshake completes:
                    // echoes of the last lines may still be on their way.
                    input_open = false;
                    ws.send(Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")))).await?;
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    stdout.write_all(t.as_bytes()).await?;
                    stdout.write_all(b"\n").await?;
                    stdout.flush().await?;
                }
                Some(Ok(Message::Binary(b))) => {
                    stdout.write_all(&b).await?;
                    stdout.flush().await?;
                }
                Some(Ok(Message::Close(frame))) if input_open => {
                    match frame {
                        Some(f) => eprintln!("closed by server: {f}"),
                        None => eprintln!("closed by server"),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
                None => {
                    let ev = ws.close_event().cloned();
                    return Ok(ev.map_or(ExitCode::FAILURE, |e| exit_for(&e)));
                }
            }
        }
    }
}

fn exit_for(ev: &wsx::CloseEvent) -> ExitCode {
    if ev.was_clean && matches!(ev.code.0, 1000 | 1001 | 1005) {
        ExitCode::SUCCESS
    } else {
        eprintln!("connection closed: {} {}", ev.code, ev.reason);
        ExitCode::FAILURE
    }
}
