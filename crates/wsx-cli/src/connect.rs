//! `wsx connect`: a WebSocket client for the terminal and for pipes.
//!
//! - Interactive mode (stdin is a terminal): a line editor with history; see
//!   [`crate::interactive`].
//! - Pipe mode (stdin is not a terminal, or `--no-interactive`): stdin is sent as messages
//!   and received messages are written to stdout; see [`crate::pipe`].
//!
//! One connection at a time runs in [`session`]: the reading half is polled all the time (so
//! the server never waits for us to read while we wait for it to read), and input is only
//! taken when the writing half has room, so large input streams with backpressure.

use crate::args::{parse_secs, secs, DeflateArgs, ProxyArgs};
use crate::console::{fmt_rtt, parse_close_code, parse_close_reason, Input};
use crate::interactive;
use crate::pipe::{self, PipeMode};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::task::{ready, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wsx::{Bytes, CloseCode, CloseFrame, Message};

/// Exit status: normal close.
pub const EXIT_OK: u8 = 0;
/// Exit status: other errors (I/O, protocol error, non-normal close code).
pub const EXIT_ERROR: u8 = 1;
/// Exit status: the opening handshake failed (DNS, TCP, TLS, HTTP status).
pub const EXIT_HANDSHAKE: u8 = 2;
/// Exit status: the connection was lost without a close frame (1006).
pub const EXIT_ABNORMAL: u8 = 3;

/// Examples and exit statuses, shown after `wsx connect --help`.
pub const AFTER_HELP: &str = "\
Interactive mode (stdin is a terminal): type lines to send text; /help lists the commands
(/ping [data], /binary <hex>, /binary base64:<data>, /close [code] [reason], /quit).
History: $XDG_STATE_HOME/wsx/history or ~/.local/state/wsx/history; Ctrl-R searches it.

Examples:
  wsx connect ws://127.0.0.1:9001/
  echo hello | wsx connect wss://example.com/socket
  wsx connect wss://example.com/socket -H 'Authorization: Bearer TOKEN' --origin https://example.com
  wsx connect ws://127.0.0.1:9001/ --subprotocol chat.v2 --subprotocol chat.v1
  wsx connect ws://127.0.0.1:9001/ --binary < image.png > echo.png
  printf 'AAEC\\n' | wsx connect ws://127.0.0.1:9001/ --base64
  find . -print0 | wsx connect ws://127.0.0.1:9001/ --null
  wsx connect ws://127.0.0.1:9001/ --ping-interval 1 --reconnect --max-messages 10

Exit status:
  0  normal close: 1000, 1001 or no status code after a clean close handshake, or the
     close wsx started (end of input, /quit, /close, --max-messages) completed
  1  other errors: I/O, protocol error, a close code other than those above
  2  the handshake failed: DNS, connection refused, TLS, HTTP status (printed with the
     body); also invalid command-line arguments
  3  the connection was lost without a close frame (1006)";

/// Longest backoff between reconnection attempts (unless `--reconnect` asks for more).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Arguments of `wsx connect`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("mode").multiple(false).args(["binary", "null", "base64"])))]
pub struct ConnectArgs {
    /// ws:// or wss:// URL.
    url: String,

    /// Add a request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Send this Origin header.
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
    /// Offer this subprotocol (repeatable, in order of preference); the one the server
    /// chose is printed.
    #[arg(long = "subprotocol", value_name = "NAME", value_parser = parse_token)]
    subprotocols: Vec<String>,
    /// Accept any TLS certificate (testing only).
    #[arg(long, short = 'k')]
    insecure: bool,
    /// Trust this CA certificate (PEM) for wss://.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Present this client certificate chain (PEM) for wss://; needs --client-key.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Time allowed for each of TCP connect and TLS + WebSocket handshake (0: no limit).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    connect_timeout: f64,
    #[command(flatten)]
    deflate: DeflateArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Print the handshake request and response headers to stderr.
    #[arg(long)]
    show_handshake: bool,
    /// Print every frame to stderr, one line each: time, → sent / ← received, opcode,
    /// flags, lengths, close code or payload preview.
    #[arg(long, short = 'v')]
    show_frames: bool,

    /// Pipe mode even when stdin is a terminal.
    #[arg(long)]
    no_interactive: bool,
    /// Pipe mode: send stdin as binary messages (raw chunks of up to 64 KiB); received
    /// messages are written to stdout as they are.
    #[arg(long, short = 'b')]
    binary: bool,
    /// Pipe mode: NUL-terminated records both ways (a record is sent as text, or as binary
    /// when it is not UTF-8; each received message is written followed by NUL).
    #[arg(long, short = '0')]
    null: bool,
    /// Pipe mode: each stdin line is the base64 of a binary message; received binary
    /// messages are printed as base64 lines (text messages as they are).
    #[arg(long)]
    base64: bool,
    /// Prefix received messages with the time (UTC) in interactive and line mode.
    #[arg(long, conflicts_with = "mode")]
    timestamps: bool,

    /// Send a ping every SECS seconds and print each round-trip time to stderr.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    ping_interval: Option<f64>,
    /// Reconnect after the connection is lost or closed abnormally, first after DELAY
    /// seconds (default 1), doubling up to 30 s; not after a normal close or end of input.
    #[arg(long, value_name = "DELAY", num_args = 0..=1, default_missing_value = "1", value_parser = parse_secs)]
    reconnect: Option<f64>,
    /// Close (1000) and exit after receiving N data messages.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    /// Close code sent at end of input and on /quit.
    #[arg(long, value_name = "CODE", default_value = "1000", value_parser = parse_close_code)]
    close_code: u16,
    /// Close reason sent with --close-code (at most 123 bytes).
    #[arg(long, value_name = "TEXT", default_value = "", value_parser = parse_close_reason)]
    close_reason: String,
}

/// Parses `Name: value`: the name an HTTP token, the value without CR, LF or NUL; headers
/// the handshake sets itself (or that have their own option) are refused.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not a header: expected \"Name: value\""))?;
    let name = name.trim();
    let value = value.trim();
    parse_token(name).map_err(|_| format!("{name:?} is not a valid header name"))?;
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(format!("the value of {name} contains CR, LF or NUL"));
    }
    let lower = name.to_ascii_lowercase();
    let hint = match lower.as_str() {
        "origin" => Some("use --origin"),
        "sec-websocket-protocol" => Some("use --subprotocol"),
        "sec-websocket-extensions" => Some("use the --deflate-* options"),
        "host" | "upgrade" | "connection" | "sec-websocket-key" | "sec-websocket-version" => {
            Some("it is set by the handshake")
        }
        _ => None,
    };
    if let Some(hint) = hint {
        return Err(format!("cannot set the {name} header: {hint}"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// An HTTP token (RFC 9110): header names and subprotocols.
fn parse_token(s: &str) -> Result<String, String> {
    if wsx_proto::handshake::is_token(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a valid token"))
    }
}

/// Where the session's output goes: stdout/stderr (pipe mode) or the terminal.
pub enum Ui {
    /// Pipe mode.
    Pipe(pipe::Output),
    /// Interactive mode.
    Terminal(interactive::Screen),
}

impl Ui {
    async fn data(&mut self, msg: &Message) -> std::io::Result<()> {
        match self {
            Ui::Pipe(o) => o.data(msg).await,
            Ui::Terminal(s) => {
                s.data(msg);
                Ok(())
            }
        }
    }

    fn control(&mut self, msg: &Message, rtt: Option<Duration>) {
        match self {
            Ui::Pipe(_) => {
                if let (Message::Pong(_), Some(rtt)) = (msg, rtt) {
                    eprintln!("rtt {}", fmt_rtt(rtt));
                }
            }
            Ui::Terminal(s) => s.control(msg, rtt),
        }
    }

    fn close_frame(&mut self, frame: &Option<CloseFrame>, by_server: bool) {
        match self {
            Ui::Pipe(_) => {
                if by_server {
                    match frame {
                        Some(f) => eprintln!("closed by server: {f}"),
                        None => eprintln!("closed by server (no status code)"),
                    }
                }
            }
            Ui::Terminal(s) => s.close_frame(frame),
        }
    }

    /// A status line (stderr in pipe mode).
    pub fn info(&mut self, text: &str) {
        match self {
            Ui::Pipe(_) => eprintln!("{text}"),
            Ui::Terminal(s) => s.info(text),
        }
    }

    /// Holds the terminal's lines back until [`Ui::resume`] or the end (see
    /// `interactive::Screen::hold`).
    fn hold(&mut self) {
        if let Ui::Terminal(s) = self {
            s.hold();
        }
    }

    /// Prints the held lines and goes on printing live.
    fn resume(&mut self) {
        if let Ui::Terminal(s) = self {
            s.resume();
        }
    }

    /// An error line (stderr in pipe mode).
    pub fn error(&mut self, text: &str) {
        match self {
            Ui::Pipe(_) => eprintln!("error: {text}"),
            Ui::Terminal(s) => s.error(text),
        }
    }
}

/// Input that outlives one connection (for reconnects).
struct Inputs {
    rx: mpsc::Receiver<Input>,
    /// Taken while disconnected; used first on the next connection.
    carried: Option<Input>,
    /// End of input (or /quit, /close) was seen: no more reconnects.
    ended: bool,
}

impl Inputs {
    async fn next(&mut self) -> Input {
        if let Some(i) = self.carried.take() {
            return i;
        }
        self.rx.recv().await.unwrap_or(Input::Quit)
    }
}

/// How one connection ended.
#[derive(Debug)]
enum End {
    /// Normal close: 1000/1001/no status, or the close we started completed.
    Clean,
    /// Anything else: exit 1.
    Error(String),
    /// Connection lost without a close frame: exit 3.
    Lost(String),
}

impl End {
    fn exit_code(&self) -> u8 {
        match self {
            End::Clean => EXIT_OK,
            End::Error(_) => EXIT_ERROR,
            End::Lost(_) => EXIT_ABNORMAL,
        }
    }
}

/// Pings we sent and are waiting for: payload and when it went out (oldest first).
#[derive(Default)]
struct Pings {
    sent: VecDeque<(Bytes, Instant, bool)>,
    counter: u64,
}

impl Pings {
    fn sent(&mut self, payload: Bytes, from_interval: bool) {
        if self.sent.len() >= 32 {
            self.sent.pop_front();
        }
        self.sent
            .push_back((payload, Instant::now(), from_interval));
    }

    /// The RTT of the ping this pong answers, and whether it was an interval ping.
    fn answered(&mut self, payload: &[u8]) -> Option<(Duration, bool)> {
        let i = self.sent.iter().position(|(p, _, _)| p[..] == *payload)?;
        let (_, at, interval) = self.sent.remove(i)?;
        Some((at.elapsed(), interval))
    }
}

/// Settings shared by every connection of a run.
struct Session {
    ping_interval: Option<Duration>,
    max_messages: Option<u64>,
    close: CloseFrame,
    received: u64,
    show_frames: bool,
}

/// Runs `wsx connect`; the exit code tells a normal close (0), other errors (1), a failed
/// handshake (2) and a lost connection (3) apart.
pub async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let builder = builder(&args);
    // Connect before anything else: a server that cannot be reached is one line on stderr
    // and exit status 2, without a prompt shown first.
    let ws = match builder.clone().connect().await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("error: {}", handshake_error(&args.url, &e));
            return Ok(ExitCode::from(EXIT_HANDSHAKE));
        }
    };
    let interactive = !args.no_interactive
        && !args.binary
        && !args.null
        && !args.base64
        && std::io::stdin().is_terminal();
    let (tx, rx) = mpsc::channel(if interactive { 64 } else { 4 });
    let mut ui = if interactive {
        Ui::Terminal(interactive::start(tx, args.timestamps)?)
    } else {
        let mode = if args.binary {
            PipeMode::Binary
        } else if args.null {
            PipeMode::Null
        } else if args.base64 {
            PipeMode::Base64
        } else {
            PipeMode::Lines
        };
        pipe::spawn_reader(mode, tx);
        Ui::Pipe(pipe::Output::new(mode, args.timestamps))
    };
    let mut inputs = Inputs {
        rx,
        carried: None,
        ended: false,
    };
    let mut session = Session {
        ping_interval: args.ping_interval.and_then(secs),
        max_messages: args.max_messages,
        close: CloseFrame::new(CloseCode(args.close_code), args.close_reason.clone()),
        received: 0,
        show_frames: args.show_frames,
    };
    let code = run_loop(&args, builder, ws, &mut ui, &mut inputs, &mut session).await;
    if let Ui::Terminal(s) = &mut ui {
        s.finish();
    }
    Ok(ExitCode::from(code))
}

fn builder(args: &ConnectArgs) -> wsx::ClientBuilder {
    let mut b = wsx::ClientBuilder::new(args.url.clone())
        .danger_accept_invalid_certs(args.insecure)
        .config({
            let mut c = wsx::Config::default();
            c.deflate = args.deflate.config();
            c
        });
    b = args.proxy.apply(b);
    if let Some(t) = secs(args.connect_timeout) {
        b = b.connect_timeout(t).handshake_timeout(t);
    } else {
        let forever = crate::args::limit(0.0);
        b = b.connect_timeout(forever).handshake_timeout(forever);
    }
    if let Some(ca) = &args.ca {
        b = b.add_ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        b = b.client_cert(cert, key);
    }
    if let Some(o) = &args.origin {
        b = b.origin(o);
    }
    for p in &args.subprotocols {
        b = b.protocol(p);
    }
    for (n, v) in &args.headers {
        b = b.header(n, v);
    }
    b
}

/// One sentence for a failed connection attempt.
fn handshake_error(url: &str, e: &wsx::Error) -> String {
    match e {
        wsx::Error::Timeout(what) => format!("{url}: {what} timed out"),
        _ => format!("{url}: {e}"),
    }
}

async fn run_loop(
    args: &ConnectArgs,
    builder: wsx::ClientBuilder,
    first: wsx::WebSocket<wsx::MaybeTlsStream>,
    ui: &mut Ui,
    inputs: &mut Inputs,
    session: &mut Session,
) -> u8 {
    let mut next = Some(first);
    let mut attempt: u32 = 0;
    let mut last;
    loop {
        let connected = match next.take() {
            Some(ws) => Ok(ws),
            None => builder.clone().connect().await,
        };
        match connected {
            Ok(ws) => {
                attempt = 0;
                announce(args, ui, &ws);
                let end = run_session(ws, ui, inputs, session).await;
                ui.hold();
                match &end {
                    End::Clean => {}
                    End::Error(m) | End::Lost(m) => ui.error(m),
                }
                last = end.exit_code();
                if matches!(end, End::Clean) || inputs.ended || args.reconnect.is_none() {
                    return last;
                }
            }
            Err(e) => {
                ui.error(&handshake_error(&args.url, &e));
                last = EXIT_HANDSHAKE;
            }
        }
        attempt += 1;
        let delay = backoff(args.reconnect.unwrap_or(1.0), attempt);
        ui.resume();
        ui.info(&format!(
            "reconnecting in {:.1} s (attempt {attempt})",
            delay.as_secs_f64()
        ));
        // Wait, but notice the end of input (then there is nothing left to reconnect for).
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                i = inputs.next(), if inputs.carried.is_none() => match i {
                    Input::Quit | Input::Close(_) => return last,
                    Input::Failed(m) => {
                        ui.error(&m);
                        return EXIT_ERROR;
                    }
                    other => inputs.carried = Some(other),
                },
                _ = tokio::signal::ctrl_c() => return last,
            }
        }
    }
}

/// Exponential backoff: `base * 2^(attempt-1)`, capped at 30 s (or `base` if larger), with
/// up to 10 % jitter so that many clients do not come back in step.
fn backoff(base: f64, attempt: u32) -> Duration {
    let base = base.max(0.0);
    let cap = MAX_BACKOFF.as_secs_f64().max(base);
    let d = (base * 2f64.powi(attempt.saturating_sub(1).min(30) as i32)).min(cap);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = 1.0 + f64::from(nanos % 1000) / 10_000.0;
    Duration::try_from_secs_f64(d * jitter).unwrap_or(MAX_BACKOFF)
}

fn announce(args: &ConnectArgs, ui: &mut Ui, ws: &wsx::WebSocket<wsx::MaybeTlsStream>) {
    if args.show_handshake {
        if let Some(hs) = ws.handshake() {
            let mut text = String::from_utf8_lossy(&hs.request).into_owned();
            text.push_str(&format!(
                "HTTP/1.1 {} {}\r\n",
                hs.response.status, hs.response.reason
            ));
            for (name, value) in hs.response.headers.iter() {
                text.push_str(&format!("{name}: {}\r\n", String::from_utf8_lossy(value)));
            }
            let text = text.replace("\r\n", "\n");
            match ui {
                Ui::Pipe(_) => eprintln!("{text}"),
                Ui::Terminal(s) => s.info(text.trim_end()),
            }
        }
    }
    if let Ui::Terminal(_) = ui {
        ui.info(&format!("connected to {} (/help for commands)", args.url));
    }
    if !args.subprotocols.is_empty() {
        match ws.protocol() {
            Some(p) => ui.info(&format!("subprotocol: {p}")),
            None => ui.info("subprotocol: none (the server chose none of those offered)"),
        }
    }
}

/// The next tick of the ping timer; never without one.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Writes queued messages: waits for room (backpressure), then queues and flushes.
fn poll_write(
    writer: &mut wsx::WsWriter<wsx::MaybeTlsStream>,
    queue: &mut VecDeque<(Message, bool)>,
    dirty: &mut bool,
    pings: &mut Pings,
    cx: &mut std::task::Context<'_>,
) -> Poll<wsx::Result<()>> {
    while !queue.is_empty() {
        ready!(writer.poll_ready_unpin(cx))?;
        if let Some((msg, interval)) = queue.pop_front() {
            if let Message::Ping(p) = &msg {
                pings.sent(p.clone(), interval);
            }
            writer.start_send_unpin(msg)?;
            *dirty = true;
        }
    }
    if *dirty {
        ready!(writer.poll_flush_unpin(cx))?;
        *dirty = false;
    }
    Poll::Ready(Ok(()))
}

async fn run_session(
    ws: wsx::WebSocket<wsx::MaybeTlsStream>,
    ui: &mut Ui,
    inputs: &mut Inputs,
    session: &mut Session,
) -> End {
    let mut ws = ws;
    let mut frames = session
        .show_frames
        .then(|| crate::trace::FramePrinter::enable(&mut ws));
    let (mut reader, mut writer) = ws.split();
    // Messages to send; the bool marks interval pings. Input is taken only when it is
    // empty, so it holds at most one data message plus a ping or a close.
    let mut queue: VecDeque<(Message, bool)> = VecDeque::new();
    let mut dirty = false;
    let mut write_error: Option<wsx::Error> = None;
    let mut read_error: Option<wsx::Error> = None;
    let mut input_error: Option<String> = None;
    let mut output_error: Option<std::io::Error> = None;
    let mut we_closed = false;
    let mut pings = Pings::default();
    let mut ticker = session.ping_interval.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let max_reached = |s: &Session| s.max_messages.is_some_and(|m| s.received >= m);
    if max_reached(session) {
        queue.push_back((
            Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))),
            false,
        ));
        we_closed = true;
    }
    loop {
        if let Some(f) = &mut frames {
            f.print_split(&mut reader, &writer);
        }
        let writing = (!queue.is_empty() || dirty) && write_error.is_none();
        tokio::select! {
            msg = reader.next() => match msg {
                Some(Ok(msg)) => match &msg {
                    Message::Text(_) | Message::Binary(_) => {
                        session.received += 1;
                        // After the last of --max-messages, echoes still in flight are
                        // dropped.
                        let wanted = session.max_messages.is_none_or(|m| session.received <= m);
                        if output_error.is_none() && wanted {
                            if let Err(e) = ui.data(&msg).await {
                                // stdout is gone (e.g. `| head`): close, report as an error.
                                output_error = Some(e);
                                if !we_closed {
                                    queue.push_back((Message::Close(Some(session.close.clone())), false));
                                    we_closed = true;
                                }
                            }
                        }
                        if max_reached(session) && !we_closed {
                            queue.push_back((Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))), false));
                            we_closed = true;
                            inputs.ended = true;
                        }
                    }
                    Message::Pong(p) => {
                        let answered = pings.answered(p);
                        ui.control(&msg, answered.map(|a| a.0));
                    }
                    Message::Ping(_) => ui.control(&msg, None),
                    Message::Close(frame) => ui.close_frame(frame, !we_closed),
                },
                Some(Err(e)) => read_error = Some(e),
                None => break,
            },
            r = poll_fn(|cx| poll_write(&mut writer, &mut queue, &mut dirty, &mut pings, cx)), if writing => {
                if let Err(e) = r {
                    // The reader sees the end of the connection and ends the loop.
                    queue.clear();
                    write_error = Some(e);
                }
            },
            input = inputs.next(), if queue.is_empty() && !we_closed && !inputs.ended => match input {
                Input::Send(m) => queue.push_back((m, false)),
                Input::Ping(p) => queue.push_back((Message::Ping(p), false)),
                Input::Close(frame) => {
                    queue.push_back((Message::Close(frame), false));
                    we_closed = true;
                    inputs.ended = true;
                }
                Input::Quit => {
                    queue.push_back((Message::Close(Some(session.close.clone())), false));
                    we_closed = true;
                    inputs.ended = true;
                }
                Input::Failed(m) => {
                    input_error = Some(m);
                    queue.push_back((Message::Close(Some(session.close.clone())), false));
                    we_closed = true;
                    inputs.ended = true;
                }
            },
            _ = tick(&mut ticker), if !we_closed => {
                if queue.len() < 2 {
                    pings.counter += 1;
                    let payload = Bytes::from(format!("wsx-{}", pings.counter));
                    queue.push_back((Message::Ping(payload), true));
                }
            },
            _ = tokio::signal::ctrl_c() => {
                if we_closed {
                    return End::Error("interrupted".into());
                }
                queue.push_back((Message::Close(Some(session.close.clone())), false));
                we_closed = true;
                inputs.ended = true;
            },
        }
    }
    if let Some(f) = &mut frames {
        f.print_split(&mut reader, &writer);
    }
    let _ = write_error; // the reader's view of the end is what counts
    if let Some(m) = input_error {
        return End::Error(m);
    }
    if let Some(e) = output_error {
        return End::Error(format!("writing to stdout: {e}"));
    }
    let event = reader.close_event();
    match read_error {
        Some(wsx::Error::Io(e)) => {
            return End::Lost(format!("connection lost: {e}"));
        }
        Some(e) => return End::Error(e.to_string()),
        None => {}
    }
    match event {
        Some(ev) if ev.code == CloseCode::ABNORMAL => End::Lost(if ev.reason.is_empty() {
            "connection lost without a close frame (1006)".into()
        } else {
            format!(
                "connection lost without a close frame (1006): {}",
                ev.reason
            )
        }),
        Some(ev) if ev.was_clean && (we_closed || matches!(ev.code.0, 1000 | 1001 | 1005)) => {
            End::Clean
        }
        Some(ev) if ev.reason.is_empty() => End::Error(format!("connection closed: {}", ev.code)),
        Some(ev) => End::Error(format!("connection closed: {} {:?}", ev.code, ev.reason)),
        None => End::Lost("connection lost without a close frame (1006)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_validated() {
        assert_eq!(
            parse_header("X-Token:  abc ").unwrap(),
            ("X-Token".into(), "abc".into())
        );
        assert_eq!(
            parse_header("Authorization: Bearer a:b").unwrap().1,
            "Bearer a:b"
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
        assert!(parse_header(": x").is_err());
        assert!(parse_header("X: a\rb").is_err());
        assert!(parse_header("Host: x").unwrap_err().contains("handshake"));
        assert!(parse_header("origin: x").unwrap_err().contains("--origin"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let d = |a| backoff(1.0, a).as_secs_f64();
        assert!((1.0..1.11).contains(&d(1)));
        assert!((2.0..2.21).contains(&d(2)));
        assert!((8.0..8.81).contains(&d(4)));
        assert!((30.0..33.1).contains(&d(20)));
        assert!((60.0..66.1).contains(&backoff(60.0, 5).as_secs_f64()));
    }

    #[test]
    fn pongs_are_matched_to_pings() {
        let mut p = Pings::default();
        p.sent(Bytes::from_static(b"a"), false);
        p.sent(Bytes::from_static(b"b"), true);
        assert_eq!(p.answered(b"b").map(|a| a.1), Some(true));
        assert!(p.answered(b"b").is_none());
        assert_eq!(p.answered(b"a").map(|a| a.1), Some(false));
    }
}
