//! `wsx`: WebSocket client, server and tools.

mod args;
mod bench;
mod broadcast;
mod connect;
mod console;
mod exec;
mod fanout;
mod heap;
mod hub;
mod interactive;
mod metrics;
mod pipe;
mod serve;
mod server_usage;
mod static_files;
mod trace;

use clap::{CommandFactory, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Parser)]
#[command(name = "wsx", version, about = "WebSocket client, server and tools")]
struct Cli {
    /// Log format on stderr: text (colored on a terminal unless NO_COLOR is set) or json
    /// (one JSON object per line). RUST_LOG sets the level (default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Set when `--log-format json` is in force: then stderr carries JSON lines only.
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Whether logs are JSON lines (so plain-text stderr messages must go through tracing).
pub fn json_logs() -> bool {
    JSON_LOGS.load(Ordering::Relaxed)
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server on every path: echo (default), broadcast to the other clients, or bridge
    /// each connection to a command; optionally also serve static files over HTTP.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(Box<serve::ServeArgs>),
    /// Load-test an echo server: N connections, each keeping messages in flight and
    /// checking every echo; reports msg/s, MiB/s and latency percentiles. With --fanout,
    /// a broadcast server: one publisher, N subscribers checking every message; reports
    /// deliveries/s and publish-to-last-delivery latency.
    #[command(
        after_help = "Examples:\n  wsx bench ws://127.0.0.1:9001/\n  wsx bench ws://127.0.0.1:9001/ -c 10 -s 16384 --binary -d 5 --json\n  wsx bench --fanout ws://127.0.0.1:9001/ -c 1000 -s 100 --in-flight 4 --server-pid 1234"
    )]
    Bench(bench::BenchArgs),
    /// Connect to a server: an interactive prompt on a terminal, or stdin piped as messages
    /// (one text message per line by default) with received messages on stdout.
    #[command(after_help = connect::AFTER_HELP)]
    Connect(Box<connect::ConnectArgs>),
    /// Run a real-time hub: channels, presence, history and recovery for Centrifugo's
    /// client SDKs, and its server API.
    #[command(after_help = hub::AFTER_HELP)]
    Hub(Box<hub::HubArgs>),
    /// Print a shell completion script for wsx.
    #[command(
        after_help = "Examples:\n  wsx completions bash > ~/.local/share/bash-completion/completions/wsx\n  wsx completions zsh > ~/.zfunc/_wsx\n  wsx completions fish > ~/.config/fish/completions/wsx.fish\n  wsx completions powershell >> $PROFILE"
    )]
    Completions {
        /// The shell: bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
}

const SERVE_EXAMPLES: &str = "\
Examples:
  wsx serve                                     # echo on ws://127.0.0.1:9001
  wsx serve --listen 0.0.0.0:8080 --tls-cert cert.pem --tls-key key.pem
  wsx serve --broadcast --static ./public       # chat: page and socket on one port
  wsx serve --exec 'tr a-z A-Z'                 # each connection gets its own process
  wsx serve --exec 'cat file.bin' --exec-binary
  wsx serve --subprotocol chat.v2 --subprotocol chat.v1
  wsx --log-format json serve

Close codes: a broadcast client that falls behind (outgoing queue over --write-buffer
bytes or --broadcast-backlog messages) gets 1008 \"too slow\"; an --exec connection
closes with 1000 when the command exits 0, 1011 with \"exit status N\" otherwise, 1008
when the command takes none of its input for --write-timeout.";

/// jemalloc rather than the system allocator (feature `jemalloc`, on by default, unix
/// only): glibc's malloc leaves unusable fragments around the 128-byte-aligned blocks tokio
/// allocates for each connection (task cell, socket state), a fifth or more of an idle
/// connection's memory (BENCHMARKS.md, "Memory per idle connection").
#[cfg(all(unix, feature = "jemalloc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once when it starts: freed memory goes back to the system
/// within about 200 ms, from jemalloc's own background thread, even while the server is
/// idle. By default jemalloc keeps freed pages for 10 s and purges only while the process
/// allocates, so a server left idle after a peak kept it (18 MiB after 1000 vanished peers
/// in the fault suite, which allows 16; with a 1 s decay still 19 MiB half a second
/// later). `muzzy_decay_ms:0` skips `MADV_FREE`, whose pages still count in the RSS until
/// the kernel wants them. `tcache_max:512`: blocks over 512 bytes (a connection's task,
/// the handshake's state and buffers) are not kept in a per-thread cache, which a thread
/// that has gone idle never empties; after a burst of handshakes the worker thread's cache
/// held about 50 bytes per idle connection. Throughput with and without it, paired runs:
/// within 2% either way.
///
/// jemalloc (as `tikv-jemalloc-sys` builds it, with the `_rjem_` prefix) reads this symbol
/// as `const char *_rjem_malloc_conf`: a `&'static [u8; N]` is a thin pointer to the bytes,
/// and they end with a NUL. The `wsx_serve_runs_jemallocs_background_purging` test checks
/// that jemalloc took the options (its background thread runs).
#[cfg(all(unix, feature = "jemalloc"))]
#[allow(unsafe_code, non_upper_case_globals)]
// SAFETY: exporting the symbol jemalloc looks up; its type matches `const char *` (above),
// it is immutable and 'static, and nothing else in the process defines it.
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 74] =
    b"background_thread:true,dirty_decay_ms:200,muzzy_decay_ms:0,tcache_max:512\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        // Into memory first: clap_complete panics on a failed write (e.g. a closed pipe).
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "wsx", &mut script);
        let mut out = std::io::stdout().lock();
        return match out.write_all(&script).and_then(|()| out.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write the completion script: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => {
            JSON_LOGS.store(true, Ordering::Relaxed);
            logs.json().with_ansi(false).init()
        }
    }
    let mut builder = match &cli.command {
        // One thread: a current-thread runtime, whose run queue is strictly FIFO. (The
        // multi-thread scheduler's local queue holds 256 tasks; with more connections ready
        // at once the rest wait in its global queue, polled far less often, which shows up
        // as a latency tail that is the generator's, not the server's.)
        Command::Bench(b) if b.threads <= 1 => tokio::runtime::Builder::new_current_thread(),
        Command::Bench(b) => {
            let mut m = tokio::runtime::Builder::new_multi_thread();
            m.worker_threads(b.threads);
            m
        }
        // Connections run on the server's own worker threads; this one only accepts.
        Command::Serve(_) | Command::Hub(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
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
            Command::Hub(args) => hub::run(*args).await.map(|_| ExitCode::SUCCESS),
            Command::Bench(args) => bench::run_cmd(args).await,
            Command::Completions { .. } => Ok(ExitCode::SUCCESS),
        }
    });
    // A blocking stdin read (wsx connect) would otherwise hold up the runtime's shutdown
    // until the user presses Enter.
    rt.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) if json_logs() => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
