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
        /// Decline permessage-deflate.
        #[arg(long)]
        no_deflate: bool,
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
        /// Do not offer permessage-deflate.
        #[arg(long)]
        no_deflate: bool,
    },
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
                no_deflate,
            } => serve(listen, tls_cert.zip(tls_key), no_deflate)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Connect {
                url,
                insecure,
                ca,
                no_deflate,
            } => connect(url, insecure, ca, no_deflate).await,
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
    no_deflate: bool,
) -> anyhow::Result<()> {
    let mut config = wsx::ServerConfig::default();
    if no_deflate {
        config.config.deflate = None;
    }
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
    no_deflate: bool,
) -> anyhow::Result<ExitCode> {
    let mut builder = wsx::ClientBuilder::new(url.clone()).danger_accept_invalid_certs(insecure);
    if let Some(ca) = ca {
        builder = builder.add_ca_file(ca);
    }
    if no_deflate {
        builder = builder.config(wsx::Config {
            deflate: None,
            ..Default::default()
        });
    }
    let mut ws = match builder.connect().await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("error: cannot connect to {url}: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line? {
                Some(line) => ws.send(Message::text(line)).await?,
                None => {
                    let ev = ws.close(Some(CloseFrame::new(CloseCode::NORMAL, ""))).await?;
                    return Ok(exit_for(&ev));
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
                Some(Ok(Message::Close(frame))) => {
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
