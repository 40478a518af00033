//! `wsx`: WebSocket client, server and tools.

mod args;
mod bench;
mod connect;
mod serve;
mod trace;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

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
    Serve(Box<serve::ServeArgs>),
    /// Load-test an echo server: N connections, each keeping messages in flight and
    /// checking every echo; reports msg/s, MiB/s and latency percentiles.
    #[command(
        after_help = "Examples:\n  wsx bench ws://127.0.0.1:9001/\n  wsx bench ws://127.0.0.1:9001/ -c 10 -s 16384 --binary -d 5 --json"
    )]
    Bench(bench::BenchArgs),
    /// Connect to a server: each stdin line is sent as a text message, received messages are
    /// printed; end of input closes the connection with 1000.
    #[command(
        after_help = "Examples:\n  wsx connect ws://127.0.0.1:9001/\n  echo hello | wsx connect wss://example.com/socket"
    )]
    Connect(Box<connect::ConnectArgs>),
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
            Command::Serve(args) => serve::run(*args).await.map(|_| ExitCode::SUCCESS),
            Command::Connect(args) => connect::run(*args).await,
            Command::Bench(args) => bench::run_cmd(args).await,
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
