//! `wsx connect` end to end over loopback: pipe modes, handshake options, limits, exit
//! statuses, reconnects, pings, and interactive mode in a pseudo-terminal.
//!
//! The servers are `wsx::Server`s run in this process (on their own thread and runtime), so
//! the tests can see what reached them: request headers, messages, close frames.

use base64::Engine as _;
use futures_util::StreamExt;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsx::{CloseCode, CloseFrame, Message};

const WSX: &str = env!("CARGO_BIN_EXE_wsx");
/// Upper bound for any one `wsx connect` run.
const LIMIT: Duration = Duration::from_secs(30);

/// What the test server does with each connection.
#[derive(Clone, Copy)]
enum Behavior {
    /// Echo data messages.
    Echo,
    /// Drop TCP right after the handshake (no close frame).
    Drop,
    /// Drop the first connection when its first message arrives; echo on later ones.
    DropFirstOnMessage,
    /// Close with this code and reason after the delay.
    CloseAfter(Duration, u16, &'static str),
}

struct TestServer {
    addr: SocketAddr,
    /// What happened, one line per event: "request ...", "header name: value",
    /// "text ...", "binary N", "close CODE REASON", "connection N".
    log: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + LIMIT;
        while !self.log().iter().any(|l| l.contains(what)) {
            assert!(
                Instant::now() < deadline,
                "server never saw {what:?}: {:?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn server(behavior: Behavior) -> TestServer {
    server_with(behavior, None)
}

/// A server; `reject` answers every upgrade with this status and body.
fn server_with(behavior: Behavior, reject: Option<(u16, &'static str)>) -> TestServer {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let hook_log = log.clone();
    let handler_log = log.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = wsx::Server::bind("127.0.0.1:0").await.unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            let count = Arc::new(AtomicUsize::new(0));
            let handler = move |mut ws: wsx::WebSocket<wsx::MaybeTlsStream>, _| {
                let log = handler_log.clone();
                let n = count.fetch_add(1, Ordering::SeqCst);
                async move {
                    log.lock().unwrap().push(format!("connection {n}"));
                    match behavior {
                        Behavior::Drop => return,
                        Behavior::CloseAfter(after, code, reason) => {
                            tokio::time::sleep(after).await;
                            let _ = ws
                                .close(Some(CloseFrame::new(CloseCode(code), reason)))
                                .await;
                            return;
                        }
                        _ => {}
                    }
                    while let Some(Ok(msg)) = ws.next().await {
                        let entry = match &msg {
                            Message::Text(t) => format!("text {}", t.as_str()),
                            Message::Binary(b) => format!("binary {}", b.len()),
                            Message::Close(Some(f)) => {
                                format!("close {} {}", f.code.0, f.reason.as_str())
                            }
                            Message::Close(None) => "close none".into(),
                            Message::Ping(_) | Message::Pong(_) => continue,
                        };
                        log.lock().unwrap().push(entry);
                        if matches!(behavior, Behavior::DropFirstOnMessage) && n == 0 {
                            return;
                        }
                        if msg.is_data() && ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                }
            };
            let make_hook = move || {
                let log = hook_log.clone();
                move |req: &wsx::Request, accept: &mut wsx::Accept| -> Result<(), wsx::Rejection> {
                    let mut log = log.lock().unwrap();
                    log.push(format!("request {}", req.target));
                    for (name, value) in req.headers.iter() {
                        log.push(format!(
                            "header {}: {}",
                            name.to_ascii_lowercase(),
                            String::from_utf8_lossy(value)
                        ));
                    }
                    if let Some((status, body)) = reject {
                        return Err(wsx::Rejection::new(status, body));
                    }
                    if req.protocols().iter().any(|p| p == "chat.v1") {
                        accept.protocol = Some("chat.v1".into());
                    }
                    Ok(())
                }
            };
            let _ = server.serve_with_hook(handler, make_hook).await;
        });
    });
    TestServer {
        addr: rx.recv().unwrap(),
        log,
    }
}

/// A running `wsx connect` with stdout and stderr collected by threads.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 65536];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

impl Client {
    fn start(args: &[&str]) -> Client {
        let mut child = Command::new(WSX)
            .arg("connect")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Client {
            stdin: child.stdin.take(),
            child,
            out,
            err,
        }
    }

    /// Writes to stdin from a thread (so a full pipe cannot block the test), then closes it
    /// when `close` is set.
    fn feed(&mut self, data: Vec<u8>, close: bool) -> std::thread::JoinHandle<()> {
        let mut stdin = if close {
            self.stdin.take().unwrap()
        } else {
            // Keep our end open: write through a duplicate handle.
            let fd = self.stdin.as_ref().unwrap();
            let dup = std::os::fd::AsFd::as_fd(fd).try_clone_to_owned().unwrap();
            ChildStdin::from(dup)
        };
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    fn stdout(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }

    fn wait_stderr(&self, what: &str) {
        let deadline = Instant::now() + LIMIT;
        while !self.stderr().contains(what) {
            assert!(
                Instant::now() < deadline,
                "stderr never had {what:?}: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit (killing it after the limit) and returns the exit code.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the collector threads drain the pipes.
                std::thread::sleep(Duration::from_millis(100));
                let err = self.stderr();
                assert!(!err.contains("panicked"), "{err}");
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("wsx connect did not exit; stderr: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wsx connect ARGS` with `input` on stdin (closed after it).
fn run(args: &[&str], input: &[u8]) -> (i32, Vec<u8>, String) {
    let mut c = Client::start(args);
    let w = c.feed(input.to_vec(), true);
    let code = c.wait();
    w.join().unwrap();
    (code, c.stdout(), c.stderr())
}

#[test]
fn binary_mode_round_trips_every_byte_value() {
    let s = server(Behavior::Echo);
    let input: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i % 256) as u8 ^ (i / 256) as u8)
        .collect();
    let (code, out, err) = run(&[&s.url(), "--binary"], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), input.len());
    assert!(out == input, "the echo differs");
    assert!(s.log().iter().any(|l| l.starts_with("binary ")));
    assert!(!s.log().iter().any(|l| l.starts_with("text ")));
}

#[test]
fn null_mode_round_trips_records() {
    let s = server(Behavior::Echo);
    let mut input = Vec::new();
    for rec in [
        &b"one"[..],
        b"two\nlines",
        b"",
        "é ü".as_bytes(),
        &[0xff, 0x01, 0x80],
    ] {
        input.extend_from_slice(rec);
        input.push(0);
    }
    let (code, out, err) = run(&[&s.url(), "--null"], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, input);
    let log = s.log();
    assert!(log.contains(&"text two\nlines".to_string()), "{log:?}");
    assert!(
        log.contains(&"binary 3".to_string()),
        "not UTF-8: binary ({log:?})"
    );
}

#[test]
fn base64_mode_round_trips_binary_messages() {
    let s = server(Behavior::Echo);
    let b64 = base64::engine::general_purpose::STANDARD;
    let all: Vec<u8> = (0..=255u8).collect();
    let msgs: Vec<Vec<u8>> = vec![
        all.clone(),
        vec![],
        vec![0],
        all.iter().rev().copied().collect(),
    ];
    let input: String = msgs.iter().map(|m| b64.encode(m) + "\n").collect();
    let (code, out, err) = run(&[&s.url(), "--base64"], input.as_bytes());
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8(out).unwrap(), input);
    assert!(s.log().contains(&"binary 256".to_string()));
    // Bad base64: a clear error and status 1.
    let (code, _, err) = run(&[&s.url(), "--base64"], b"AAE=\n!!!\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 2") && err.contains("base64"), "{err}");
}

#[test]
fn pipe_modes_are_mutually_exclusive() {
    let (code, _, err) = run(&["ws://127.0.0.1:1/", "--binary", "--null"], b"");
    assert_eq!(code, 2, "clap usage error");
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn headers_origin_and_subprotocols_reach_the_server() {
    let s = server(Behavior::Echo);
    let (code, out, err) = run(
        &[
            &s.url(),
            "-H",
            "X-Token: secret value",
            "--header",
            "X-Other:1",
            "--origin",
            "https://app.example",
            "--subprotocol",
            "chat.v2",
            "--subprotocol",
            "chat.v1",
        ],
        b"hi\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, b"hi\n");
    let log = s.log();
    for want in [
        "header x-token: secret value",
        "header x-other: 1",
        "header origin: https://app.example",
        "header sec-websocket-protocol: chat.v2, chat.v1",
    ] {
        assert!(log.iter().any(|l| l == want), "{want:?} not in {log:?}");
    }
    assert!(err.contains("subprotocol: chat.v1"), "{err}");
    // Invalid headers are refused before connecting.
    for bad in ["no-colon", "Bad Name: x", "Host: other"] {
        let (code, _, err) = run(&[&s.url(), "-H", bad], b"");
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("header") || err.contains("Host"), "{err}");
    }
}

#[test]
fn max_messages_closes_after_n_received() {
    let s = server(Behavior::Echo);
    let mut c = Client::start(&[&s.url(), "--max-messages", "3"]);
    // stdin stays open: only --max-messages can end this run.
    let w = c.feed(b"1\n2\n3\n4\n5\n".to_vec(), false);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
    w.join().unwrap();
    let out = String::from_utf8(c.stdout()).unwrap();
    assert!(out.starts_with("1\n2\n3\n"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    s.wait_for("close 1000");
}

#[test]
fn close_code_and_reason_reach_the_server() {
    let s = server(Behavior::Echo);
    let (code, out, err) = run(
        &[
            &s.url(),
            "--close-code",
            "4001",
            "--close-reason",
            "done here",
        ],
        b"x\n",
    );
    assert_eq!(code, 0, "the close we asked for completed: {err}");
    assert_eq!(out, b"x\n");
    s.wait_for("close 4001 done here");
    let (code, _, err) = run(&[&s.url(), "--close-code", "1006"], b"");
    assert_eq!(code, 2, "invalid close code is a usage error: {err}");
}

#[test]
fn exit_0_on_normal_close_by_the_server() {
    let s = server(Behavior::CloseAfter(
        Duration::from_millis(200),
        1000,
        "bye",
    ));
    let mut c = Client::start(&[&s.url()]);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
    assert!(
        c.stderr().contains("1000") && c.stderr().contains("bye"),
        "{}",
        c.stderr()
    );
}

#[test]
fn exit_1_on_a_non_normal_close_code() {
    let s = server(Behavior::CloseAfter(
        Duration::from_millis(200),
        4000,
        "custom",
    ));
    let mut c = Client::start(&[&s.url()]);
    assert_eq!(c.wait(), 1, "{}", c.stderr());
    let err = c.stderr();
    assert!(
        err.contains("closed by server: 4000") && err.contains("custom"),
        "{err}"
    );
}

#[test]
fn exit_1_on_a_protocol_error() {
    // A hand-made server: a valid 101, then a frame with a reserved opcode.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).unwrap() == 0 {
                return;
            }
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = wsx_proto::handshake::accept_key(key.as_bytes());
        let _ = write!(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        let _ = s.write_all(&[0x83, 0x00]);
        std::thread::sleep(Duration::from_secs(2));
    });
    let mut c = Client::start(&[&format!("ws://{addr}/")]);
    assert_eq!(c.wait(), 1, "{}", c.stderr());
    assert!(c.stderr().contains("protocol error"), "{}", c.stderr());
}

#[test]
fn exit_2_on_http_rejection_with_status_and_body() {
    let s = server_with(Behavior::Echo, Some((403, "origin not allowed here")));
    let (code, _, err) = run(&[&s.url()], b"");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("403") && err.contains("origin not allowed here"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one sentence: {err}");
    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, err) = run(&[&format!("ws://{port}/")], b"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused"), "{err}");
    // Name resolution.
    let (code, _, err) = run(&["ws://name.invalid/"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("resolve"), "{err}");
}

#[test]
fn exit_3_when_the_connection_is_lost_without_a_close_frame() {
    let s = server(Behavior::Drop);
    let mut c = Client::start(&[&s.url()]);
    assert_eq!(c.wait(), 3, "{}", c.stderr());
    assert!(
        c.stderr().contains("1006") || c.stderr().contains("lost"),
        "{}",
        c.stderr()
    );
}

#[test]
fn reconnects_after_the_connection_is_lost() {
    let s = server(Behavior::DropFirstOnMessage);
    let mut c = Client::start(&[&s.url(), "--reconnect", "0.1"]);
    let w = c.feed(b"first\n".to_vec(), false);
    w.join().unwrap();
    s.wait_for("connection 1");
    c.wait_stderr("reconnecting");
    let w = c.feed(b"second\n".to_vec(), true);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
    w.join().unwrap();
    assert_eq!(String::from_utf8(c.stdout()).unwrap(), "second\n");
    let err = c.stderr();
    assert!(err.contains("reconnecting in 0.1 s (attempt 1)"), "{err}");
    // No reconnect after a normal close.
    assert_eq!(
        s.log()
            .iter()
            .filter(|l| l.starts_with("connection"))
            .count(),
        2
    );
}

#[test]
fn no_reconnect_after_a_normal_close() {
    let s = server(Behavior::CloseAfter(Duration::from_millis(100), 1000, ""));
    let mut c = Client::start(&[&s.url(), "--reconnect", "0.1"]);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
    assert!(!c.stderr().contains("reconnecting"), "{}", c.stderr());
}

#[test]
fn ping_interval_prints_round_trip_times() {
    let s = server(Behavior::Echo);
    let mut c = Client::start(&[&s.url(), "--ping-interval", "0.1"]);
    let deadline = Instant::now() + LIMIT;
    while c.stderr().matches("rtt ").count() < 3 {
        assert!(Instant::now() < deadline, "{}", c.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(c.stdin.take());
    assert_eq!(c.wait(), 0);
    let err = c.stderr();
    let line = err.lines().find(|l| l.starts_with("rtt ")).unwrap();
    let ms: f64 = line["rtt ".len()..]
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!((0.0..5000.0).contains(&ms), "{line}");
}

/// Interactive mode in a pseudo-terminal: the screen is rendered by a terminal emulator.
mod interactive {
    use super::*;
    use portable_pty::{native_pty_system, CommandBuilder, PtySize};

    struct Term {
        screen: Arc<Mutex<vt100::Parser>>,
        writer: Box<dyn Write + Send>,
        child: Box<dyn portable_pty::Child + Send + Sync>,
        master: Box<dyn portable_pty::MasterPty + Send>,
    }

    impl Term {
        fn start(args: &[&str], state_home: &std::path::Path, env: &[(&str, &str)]) -> Term {
            let pty = native_pty_system()
                .openpty(PtySize {
                    rows: 30,
                    cols: 100,
                    pixel_width: 0,
                    pixel_height: 0,
                })
                .unwrap();
            let mut cmd = CommandBuilder::new(WSX);
            cmd.arg("connect");
            cmd.args(args);
            cmd.env("XDG_STATE_HOME", state_home);
            cmd.env("TERM", "xterm-256color");
            cmd.env_remove("NO_COLOR");
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = pty.slave.spawn_command(cmd).unwrap();
            drop(pty.slave);
            let screen = Arc::new(Mutex::new(vt100::Parser::new(nz(30), nz(100), 0)));
            let mut reader = pty.master.try_clone_reader().unwrap();
            let s = screen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    s.lock().unwrap().process(&buf[..n]);
                }
            });
            let writer = pty.master.take_writer().unwrap();
            Term {
                screen,
                writer,
                child,
                master: pty.master,
            }
        }

        fn contents(&self) -> String {
            self.screen.lock().unwrap().screen().contents()
        }

        fn wait_for(&self, what: &str) {
            let deadline = Instant::now() + LIMIT;
            while !self.contents().contains(what) {
                assert!(
                    Instant::now() < deadline,
                    "screen never showed {what:?}:\n{}",
                    self.contents()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        /// Whether the first cell of the first row starting with `prefix` has a color.
        fn colored(&self, prefix: &str) -> bool {
            let parser = self.screen.lock().unwrap();
            let screen = parser.screen();
            let row = screen
                .rows(0, 100)
                .position(|r| r.starts_with(prefix))
                .unwrap_or_else(|| panic!("no row starts with {prefix:?}"));
            let cell = screen.cell(row as u16, 0).unwrap();
            cell.fgcolor() != vt100::Color::Default
        }

        fn type_str(&mut self, s: &str) {
            self.writer.write_all(s.as_bytes()).unwrap();
            self.writer.flush().unwrap();
        }

        fn wait_exit(&mut self) -> u32 {
            let deadline = Instant::now() + LIMIT;
            loop {
                if let Some(st) = self.child.try_wait().unwrap() {
                    return st.exit_code();
                }
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    panic!("wsx connect did not exit:\n{}", self.contents());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    impl Drop for Term {
        fn drop(&mut self) {
            let _ = self.child.kill();
        }
    }

    fn nz(n: u16) -> std::num::NonZeroU16 {
        std::num::NonZeroU16::new(n).unwrap()
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wsx-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn commands_messages_and_history_in_a_terminal() {
        let s = server(Behavior::Echo);
        let state = temp_dir("interactive");
        let mut t = Term::start(&[&s.url(), "--subprotocol", "chat.v1"], &state, &[]);
        t.wait_for("connected to");
        t.wait_for("subprotocol: chat.v1");
        t.type_str("hello there\r");
        t.wait_for("< hello there");
        assert!(t.colored("< hello there"), "colors on a terminal");
        t.type_str("/ping abc\r");
        t.wait_for("< pong \"abc\" rtt ");
        t.type_str("/binary 00 ff 10\r");
        t.wait_for("< binary 3 bytes: 00 ff 10");
        t.type_str("/binary base64:SGk=\r");
        t.wait_for("< binary 2 bytes: 48 69");
        t.type_str("//slash\r");
        t.wait_for("< /slash");
        t.type_str("/nope\r");
        t.wait_for("unknown command /nope");
        t.type_str("/help\r");
        t.wait_for("/binary base64:<data>");
        t.type_str("/close 4000 all done\r");
        t.wait_for("< close 4000"); // the server answers with the code
        assert_eq!(t.wait_exit(), 0, "{}", t.contents());
        s.wait_for("close 4000 all done");
        let log = s.log();
        assert!(log.contains(&"text hello there".to_string()), "{log:?}");
        assert!(log.contains(&"binary 3".to_string()), "{log:?}");
        assert!(
            !log.iter().any(|l| l.contains("/nope")),
            "commands are not sent: {log:?}"
        );
        let history = std::fs::read_to_string(state.join("wsx").join("history")).unwrap();
        for line in [
            "hello there",
            "/ping abc",
            "/binary 00 ff 10",
            "/close 4000 all done",
        ] {
            assert!(
                history.contains(line),
                "{line:?} not in history:\n{history}"
            );
        }
        let _ = std::fs::remove_dir_all(&state);
    }

    #[test]
    fn history_is_recalled_and_messages_print_above_a_half_typed_line() {
        let s = server(Behavior::Echo);
        let state = temp_dir("recall");
        std::fs::create_dir_all(state.join("wsx")).unwrap();
        std::fs::write(state.join("wsx").join("history"), "#V2\nfrom history\n").unwrap();
        let mut t = Term::start(
            &[&s.url(), "--ping-interval", "0.2", "--timestamps"],
            &state,
            &[],
        );
        t.wait_for("connected to");
        // Up arrow recalls the saved line.
        t.type_str("\x1b[A\r");
        t.wait_for("< from history");
        let screen = t.contents();
        let line = screen
            .lines()
            .find(|l| l.contains("< from history"))
            .unwrap();
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, "< from history");
        assert!(
            time.len() == 12 && time.as_bytes()[2] == b':' && time.as_bytes()[8] == b'.',
            "HH:MM:SS.mmm prefix: {line:?}"
        );
        // Type without Enter; pongs arrive meanwhile and print above the line.
        t.type_str("half typed");
        let before = t.contents().matches("< pong").count();
        let deadline = Instant::now() + LIMIT;
        while t.contents().matches("< pong").count() < before + 2 {
            assert!(Instant::now() < deadline, "{}", t.contents());
            std::thread::sleep(Duration::from_millis(20));
        }
        let screen = t.contents();
        let last = screen.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
        assert_eq!(last.trim_end(), "> half typed", "screen:\n{screen}");
        t.type_str(" now\r");
        t.wait_for("< half typed now");
        t.type_str("\x04"); // Ctrl-D: close with 1000 and exit
        assert_eq!(t.wait_exit(), 0, "{}", t.contents());
        s.wait_for("close 1000");
        let _ = std::fs::remove_dir_all(&state);
    }

    #[test]
    fn terminal_is_restored_when_the_server_closes_during_input() {
        let s = server(Behavior::CloseAfter(
            Duration::from_millis(700),
            1000,
            "bye",
        ));
        let state = temp_dir("restore");
        let mut t = Term::start(&[&s.url()], &state, &[("NO_COLOR", "1")]);
        t.wait_for("connected to");
        // Typed once the line editor shows its prompt: keys typed before it is ready can
        // be taken for the terminal's answer to its cursor-position query.
        t.wait_for("> ");
        t.type_str("unsent");
        t.wait_for("< close 1000 (normal closure) \"bye\"");
        assert!(!t.colored("< close"), "NO_COLOR is honored");
        assert_eq!(t.wait_exit(), 0, "{}", t.contents());
        // The line editor had the terminal in raw mode; it is back to canonical with echo.
        #[cfg(target_os = "linux")]
        if let Some(tio) = t.master.get_termios() {
            let (icanon, echo) = (0o2, 0o10);
            let flags = tio.local_flags.bits();
            assert_eq!(flags & (icanon | echo), icanon | echo, "raw mode left on");
        }
        assert!(!t.screen.lock().unwrap().screen().bracketed_paste());
        let _ = std::fs::remove_dir_all(&state);
    }
}

/// wss:// with a private CA (`--ca`) and a server that requires a client certificate
/// (`--client-cert` / `--client-key`).
#[test]
fn tls_with_ca_and_client_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("wsx-test-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert, key)
    };
    let (server_cert, server_key) = leaf("localhost");
    let (client_cert, client_key) = leaf("client.example");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("client.pem"), client_cert.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
        )
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = wsx::Server::bind("127.0.0.1:0")
                .await
                .unwrap()
                .tls_config(Arc::new(config));
            tx.send(server.local_addr().unwrap()).unwrap();
            let _ = server
                .serve(|mut ws, _| async move {
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_data() && futures_util::SinkExt::send(&mut ws, msg).await.is_err()
                        {
                            break;
                        }
                    }
                })
                .await;
        });
    });
    let port = rx.recv().unwrap().port();
    let url = format!("wss://localhost:{port}/");
    let ca = dir.join("ca.pem");
    let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
    let args = [
        url.as_str(),
        "--ca",
        ca.to_str().unwrap(),
        "--client-cert",
        cert.to_str().unwrap(),
        "--client-key",
        key.to_str().unwrap(),
    ];
    let (code, out, err) = run(&args, b"over tls\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, b"over tls\n");
    // Without the client certificate the server refuses: a handshake failure.
    let (code, _, err) = run(&args[..3], b"x\n");
    assert_eq!(code, 2, "{err}");
    // Without our CA the server certificate is not trusted: a handshake failure.
    let (code, _, err) = run(&[url.as_str()], b"x\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("TLS"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
