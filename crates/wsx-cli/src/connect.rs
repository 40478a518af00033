//! `wsx connect`: a client that pipes stdin lines to a server and prints what comes back.

use crate::args::DeflateArgs;
use futures_util::StreamExt;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use wsx::{CloseCode, CloseFrame, Message};

/// Arguments of `wsx connect`.
#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
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
    /// Print every frame to stderr, one line each: time, → sent / ← received, opcode,
    /// flags, lengths, close code or payload preview.
    #[arg(long, short = 'v')]
    show_frames: bool,
}

/// Runs `wsx connect`; the exit code tells a clean close (0), a failed handshake (2) and
/// anything else (1) apart.
pub async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    connect(
        args.url,
        args.insecure,
        args.ca,
        args.deflate.config(),
        args.show_handshake,
        args.show_frames,
    )
    .await
}

async fn connect(
    url: String,
    insecure: bool,
    ca: Option<PathBuf>,
    deflate: Option<wsx::DeflateConfig>,
    show_handshake: bool,
    show_frames: bool,
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
    let mut frames = show_frames.then(|| crate::trace::FramePrinter::enable(&mut ws));
    loop {
        crate::trace::print(&mut frames, &mut ws);
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
                    crate::trace::print(&mut frames, &mut ws);
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
                None => {
                    crate::trace::print(&mut frames, &mut ws);
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
