//! `wsx`: WebSocket client, server and tools.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
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
    },
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
            } => serve(listen, tls_cert.zip(tls_key), deflate.config())
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Connect {
                url,
                insecure,
                ca,
                deflate,
                show_handshake,
            } => connect(url, insecure, ca, deflate.config(), show_handshake).await,
        }
    });
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
) -> anyhow::Result<()> {
    let mut config = wsx::ServerConfig::default();
    config.config.deflate = deflate;
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
    server
        .serve(|mut ws, peer| async move {
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
        })
        .await?;
    Ok(())
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
