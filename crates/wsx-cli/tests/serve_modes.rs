//! `wsx serve` modes driven end to end over loopback: --broadcast (including a client that
//! never reads), --exec (with `cat`, `tr`, exit statuses, the kill after the grace period
//! and no zombies), --static next to WebSocket upgrades, --subprotocol, --log-format json,
//! and `wsx completions`. Every test is bounded in time.

use futures_util::StreamExt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsx::{ClientBuilder, CloseCode, Config, Message, WebSocket};

const WSX: &str = env!("CARGO_BIN_EXE_wsx");
const LIMIT: Duration = Duration::from_secs(60);

/// A running `wsx serve`, killed on drop; its stderr is collected by a thread.
struct Served {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit (bounded) and everything it wrote to stderr.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader thread sees EOF once the process is gone.
        std::thread::sleep(Duration::from_millis(200));
        self.stderr()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn serve(args: &[&str]) -> Served {
    serve_with(&[], args)
}

/// `wsx GLOBAL... serve --listen ADDR ARGS...`
fn serve_with(global: &[&str], args: &[&str]) -> Served {
    let addr = free_port();
    let addr_s = addr.to_string();
    let mut all: Vec<&str> = global.to_vec();
    all.extend_from_slice(&["serve", "--listen", &addr_s]);
    all.extend_from_slice(args);
    let mut child = Command::new(WSX)
        .args(&all)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = BufReader::new(child.stderr.take().unwrap());
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while pipe.read_line(&mut line).unwrap_or(0) > 0 {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "wsx serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Served {
        child,
        addr,
        stderr,
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

type Ws = WebSocket<wsx::MaybeTlsStream>;

async fn connect(addr: SocketAddr, path: &str) -> Ws {
    // No compression: debug-build deflate would dominate the timing of the bulk tests.
    ClientBuilder::new(format!("ws://{addr}{path}"))
        .config({
            let mut c = Config::default();
            c.deflate = None;
            c
        })
        .connect()
        .await
        .unwrap()
}

/// The next data message, within `wait`.
async fn next_data(ws: &mut Ws, wait: Duration) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(m))) if m.is_data() => return Some(m),
            Ok(Some(Ok(_))) => {}
            _ => return None,
        }
    }
}

fn text(m: &Message) -> &str {
    match m {
        Message::Text(t) => t.as_str(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Until the connection ends: the data messages received, and the close code.
async fn rest_and_close(ws: &mut Ws) -> (Vec<Message>, Option<CloseCode>) {
    let mut got = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        if m.is_data() {
            got.push(m);
        }
    }
    (got, ws.close_event().map(|e| e.code))
}

// ---------------------------------------------------------------------------------------
// --broadcast

/// Waits until `from`'s messages reach every one of `to`: then all of them are subscribed.
async fn wait_until_all_subscribed(from: &mut Ws, to: &mut [&mut Ws]) {
    let mut seen = vec![false; to.len()];
    while !seen.iter().all(|s| *s) {
        from.send(Message::text("probe")).await.unwrap();
        for (i, ws) in to.iter_mut().enumerate() {
            if next_data(ws, Duration::from_millis(50)).await.is_some() {
                seen[i] = true;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_other_client_in_order() {
    // Two workers: the clients are spread over both, so messages cross between the
    // workers' relays.
    let s = serve(&["--broadcast", "--threads", "2"]);
    bounded(async {
        let mut a = connect(s.addr, "/").await;
        let mut b = connect(s.addr, "/room").await;
        let mut c = connect(s.addr, "/").await;
        wait_until_all_subscribed(&mut a, &mut [&mut b, &mut c]).await;
        const N: usize = 50;
        for i in 0..N {
            a.send(Message::text(format!("m-a-{i}"))).await.unwrap();
            b.send(Message::text(format!("m-b-{i}"))).await.unwrap();
            c.send(Message::Binary(format!("m-c-{i}").into_bytes().into()))
                .await
                .unwrap();
        }
        for (me, ws) in [("a", &mut a), ("b", &mut b), ("c", &mut c)] {
            let mut next_of = std::collections::HashMap::new();
            let mut count = 0;
            while count < 2 * N {
                let m = next_data(ws, Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|| panic!("{me} got only {count} of {}", 2 * N));
                let body = match &m {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(b) => String::from_utf8(b.to_vec()).unwrap(),
                    _ => unreachable!(),
                };
                if body == "probe" {
                    continue; // in flight from the subscription wait
                }
                let mut parts = body.split('-').skip(1);
                let from = parts.next().unwrap().to_string();
                let i: usize = parts.next().unwrap().parse().unwrap();
                assert_ne!(from, me, "{me} got its own message back");
                assert_eq!(
                    from == "c",
                    matches!(m, Message::Binary(_)),
                    "the kind is kept: {m:?}"
                );
                let expected = next_of.entry(from.clone()).or_insert(0usize);
                assert_eq!(i, *expected, "{me}: messages from {from} out of order");
                *expected += 1;
                count += 1;
            }
            // Nothing more: in particular, not its own messages.
            assert!(next_data(ws, Duration::from_millis(200)).await.is_none());
        }
        for ws in [&mut a, &mut b, &mut c] {
            let ev = ws.close(None).await.unwrap();
            assert!(ev.was_clean);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_closes_a_client_that_never_reads_without_stalling_the_others() {
    // A long close timeout: the slow client reads what was queued before the close frame
    // only at the end of the test. A 4 MiB write buffer gives the steady reader slack when
    // the machine is busy (the slow client still overflows it many times over).
    let s = serve(&[
        "--broadcast",
        "--no-deflate",
        "--close-timeout",
        "30",
        "--write-buffer",
        "4194304",
    ]);
    bounded(async {
        let mut sender = connect(s.addr, "/").await;
        let mut reader = connect(s.addr, "/").await;
        let mut slow = connect(s.addr, "/").await; // never polled until the end
        wait_until_all_subscribed(&mut sender, &mut [&mut reader]).await;
        // The slow client is subscribed too once it has sent something that arrives.
        slow.send(Message::text("probe")).await.unwrap();
        assert!(next_data(&mut reader, Duration::from_secs(5))
            .await
            .is_some());
        while next_data(&mut reader, Duration::from_millis(100))
            .await
            .is_some()
        {}

        // 600 × 64 KiB = 37.5 MiB, paced so that a client reading steadily keeps up; far
        // more than the 4 MiB write buffer plus the kernel's socket buffers of `slow`.
        const N: usize = 600;
        let started = Instant::now();
        let send = async {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            for i in 0..N {
                tick.tick().await;
                let mut payload = vec![(i % 251) as u8; 64 * 1024];
                payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
                sender.send(Message::Binary(payload.into())).await.unwrap();
            }
        };
        let receive = async {
            for i in 0..N {
                let m = next_data(&mut reader, Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|| panic!("the reader stalled at message {i}"));
                let Message::Binary(b) = m else {
                    panic!("{m:?}")
                };
                assert_eq!(b.len(), 64 * 1024);
                assert_eq!(u64::from_be_bytes(b[..8].try_into().unwrap()), i as u64);
            }
        };
        tokio::join!(send, receive);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(30), "others stalled: {took:?}");
        // The server closed the slow client with 1008.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.stderr().contains("closing a slow client") {
            assert!(
                Instant::now() < deadline,
                "no slow client closed:\n{}",
                s.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = s.stderr();
        assert!(log.contains("code=1008"), "{log}");
        // The slow client, reading at last, gets what was queued and then the 1008 close.
        let (got, code) = rest_and_close(&mut slow).await;
        assert!(
            got.len() < N,
            "the slow client's queue was bounded: {}",
            got.len()
        );
        assert_eq!(code, Some(CloseCode::POLICY_VIOLATION), "{log}");
        let reason = slow.close_event().unwrap().reason.clone();
        assert!(reason.starts_with("too slow"), "{reason}");
        eprintln!(
            "reader got {N} messages in {took:?}; the slow client got {} before \"{reason}\"",
            got.len()
        );
        // The reader is still served.
        sender.send(Message::text("after")).await.unwrap();
        let m = next_data(&mut reader, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(text(&m), "after");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_closes_clients_when_their_relay_falls_behind_the_backlog() {
    // One worker, a backlog of 2: a burst of 40 messages read in one go is published
    // before the worker's relay runs, so the ring has dropped most of it by then.
    let s = serve(&[
        "--broadcast",
        "--no-deflate",
        "--threads",
        "1",
        "--broadcast-backlog",
        "2",
    ]);
    bounded(async {
        let mut publisher = connect(s.addr, "/").await;
        let mut sub = connect(s.addr, "/").await;
        wait_until_all_subscribed(&mut publisher, &mut [&mut sub]).await;
        while next_data(&mut sub, Duration::from_millis(100))
            .await
            .is_some()
        {}
        // All 40 frames in one write.
        publisher.cork(|ws| {
            for i in 0..40 {
                ws.try_send(Message::text(format!("burst-{i}"))).unwrap();
            }
        });
        publisher.flush().await.unwrap();
        let (got, code) = rest_and_close(&mut sub).await;
        assert_eq!(code, Some(CloseCode::POLICY_VIOLATION), "{}", s.stderr());
        let reason = sub.close_event().unwrap().reason.clone();
        assert!(reason.contains("messages behind"), "{reason}");
        // Never a gap: what it got (if anything) came in order from the start.
        for (i, m) in got.iter().enumerate() {
            assert_eq!(text(m), format!("burst-{i}"));
        }
        // The server goes on serving new clients.
        let mut a = connect(s.addr, "/").await;
        let mut b = connect(s.addr, "/").await;
        wait_until_all_subscribed(&mut a, &mut [&mut b]).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// --exec

/// Processes whose parent is `pid`, as "pid state command" (Linux /proc).
fn children_of(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.get(1) == Some(&pid.to_string().as_str()) {
            out.push(format!("{name} {} {}", fields[0], &stat[..close + 1]));
        }
    }
    out
}

/// Processes whose command line is exactly `wanted` (arguments joined by spaces).
fn processes_with(wanted: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.trim_end() == wanted {
                out.push(format!("{:?}: {cmdline}", entry.file_name()));
            }
        }
    }
    out
}

/// Waits (bounded) until the server has no child process left, not even a zombie.
async fn assert_no_children(s: &Served) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = children_of(s.pid());
        if children.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "children left: {children:?}\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_cat_bridges_messages_and_leaves_no_process() {
    let s = serve(&["--exec", "cat"]);
    bounded(async {
        let mut ws = connect(s.addr, "/").await;
        for line in ["hello", "wörld", ""] {
            ws.send(Message::text(line)).await.unwrap();
            let m = next_data(&mut ws, Duration::from_secs(10)).await.unwrap();
            assert_eq!(text(&m), line);
        }
        // Binary goes raw: two lines in one message come back as two messages.
        ws.send(Message::Binary(b"raw 1\nraw 2\n".to_vec().into()))
            .await
            .unwrap();
        for want in ["raw 1", "raw 2"] {
            let m = next_data(&mut ws, Duration::from_secs(10)).await.unwrap();
            assert_eq!(text(&m), want);
        }
        // Two connections, two processes.
        let mut other = connect(s.addr, "/").await;
        other.send(Message::text("second")).await.unwrap();
        let m = next_data(&mut other, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(text(&m), "second");
        assert_eq!(children_of(s.pid()).len(), 2, "one `cat` per connection");
        // Client closes: stdin closed, cat exits, and is reaped.
        assert!(ws.close(None).await.unwrap().was_clean);
        assert!(other.close(None).await.unwrap().was_clean);
        assert_no_children(&s).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exit_status_becomes_the_close_code() {
    // tr buffers its output until its input ends, which head ends after two lines.
    let s = serve(&["--exec", "head -n 2 | tr a-z A-Z"]);
    bounded(async {
        let mut ws = connect(s.addr, "/").await;
        ws.send(Message::text("abc")).await.unwrap();
        ws.send(Message::text("Hello, World")).await.unwrap();
        let (got, code) = rest_and_close(&mut ws).await;
        let got: Vec<&str> = got.iter().map(text).collect();
        assert_eq!(got, ["ABC", "HELLO, WORLD"]);
        assert_eq!(code, Some(CloseCode::NORMAL));
        assert_eq!(ws.close_event().unwrap().reason, "exit status 0");
        assert!(ws.close_event().unwrap().was_clean);
        assert_no_children(&s).await;
    })
    .await;

    let s = serve(&["--exec", r#"echo "$WSX_PATH from $WSX_PEER"; exit 3"#]);
    bounded(async {
        let mut ws = connect(s.addr, "/some/path?x=1").await;
        let (got, code) = rest_and_close(&mut ws).await;
        assert_eq!(got.len(), 1);
        let line = text(&got[0]);
        assert!(line.starts_with("/some/path?x=1 from 127.0.0.1:"), "{line}");
        assert_eq!(code, Some(CloseCode::INTERNAL_ERROR));
        assert_eq!(ws.close_event().unwrap().reason, "exit status 3");
        assert_no_children(&s).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_binary_sends_raw_chunks() {
    let s = serve(&["--exec", r"printf 'a\nb\000c'", "--exec-binary"]);
    bounded(async {
        let mut ws = connect(s.addr, "/").await;
        let (got, code) = rest_and_close(&mut ws).await;
        let mut all = Vec::new();
        for m in &got {
            match m {
                Message::Binary(b) => all.extend_from_slice(b),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(all, b"a\nb\0c");
        assert_eq!(code, Some(CloseCode::NORMAL));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_kills_a_command_that_outlives_its_client() {
    // `; :` keeps sh from exec'ing sleep: the sleep is a grandchild, in the process group.
    let marker = format!("{}", 900_000 + std::process::id() % 90_000);
    let cmd = format!("sleep {marker}; :");
    let s = serve(&["--exec", &cmd, "--exec-grace", "0.5"]);
    bounded(async {
        let mut ws = connect(s.addr, "/").await;
        ws.send(Message::text("ignored")).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_with(&format!("sleep {marker}")).is_empty() {
            assert!(Instant::now() < deadline, "the command did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = Instant::now();
        assert!(ws.close(None).await.unwrap().was_clean);
        assert_no_children(&s).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let still = processes_with(&format!("sleep {marker}"));
            if still.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "not killed: {still:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = left.elapsed();
        assert!(
            took >= Duration::from_millis(400),
            "killed before the grace: {took:?}"
        );
        let log = s.stderr();
        assert!(log.contains("terminating it"), "{log}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sends_sigterm_first_and_sigkill_to_a_command_that_ignores_it() {
    // A command that exits on SIGTERM with its own status, and one that ignores SIGTERM
    // (so does its sleep, which inherits that): killed a grace period later.
    let marker = format!("{}", 800_000 + std::process::id() % 90_000);
    for (cmd, killed) in [
        (
            "trap 'exit 7' TERM; while :; do sleep 0.05; done".to_string(),
            false,
        ),
        (format!("trap '' TERM; sleep {marker}; :"), true),
    ] {
        let s = serve(&["--exec", &cmd, "--exec-grace", "0.4"]);
        bounded(async {
            let mut ws = connect(s.addr, "/").await;
            ws.send(Message::text("ignored")).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !s.stderr().contains("started `") {
                assert!(Instant::now() < deadline, "the command did not start");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Let the shell set its trap.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let left = Instant::now();
            assert!(ws.close(None).await.unwrap().was_clean);
            let done = if killed {
                "after SIGTERM: killing it"
            } else {
                "command exited"
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !s.stderr().contains(done) {
                assert!(Instant::now() < deadline, "{}", s.stderr());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let took = left.elapsed();
            let log = s.stderr();
            assert!(log.contains("terminating it"), "{log}");
            if killed {
                assert!(
                    took >= Duration::from_millis(700),
                    "killed too early: {took:?}"
                );
                assert_no_children(&s).await;
                assert!(
                    processes_with(&format!("sleep {marker}")).is_empty(),
                    "{log}"
                );
            } else {
                assert!(log.contains("exit status: 7"), "{log}");
                assert!(!log.contains("killing it"), "{log}");
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_closes_with_1008_when_the_command_takes_no_input() {
    let s = serve(&[
        "--exec",
        "sleep 30",
        "--write-timeout",
        "1",
        "--exec-grace",
        "0.2",
    ]);
    bounded(async {
        let mut ws = connect(s.addr, "/").await;
        // 2.5 MiB: more than the stdin queue and the pipe hold.
        for _ in 0..40 {
            ws.send(Message::Binary(vec![b'x'; 64 * 1024].into()))
                .await
                .unwrap();
        }
        let started = Instant::now();
        let (_, code) = rest_and_close(&mut ws).await;
        assert_eq!(code, Some(CloseCode::POLICY_VIOLATION), "{}", s.stderr());
        assert_eq!(
            ws.close_event().unwrap().reason,
            "command not reading its input"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_no_children(&s).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// --static

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn http(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    let body = out.split_off(end);
    (String::from_utf8(out).unwrap(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_and_websocket_on_one_port() {
    let base = std::env::temp_dir().join(format!("wsx-serve-static-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("public");
    std::fs::create_dir_all(root.join("js")).unwrap();
    std::fs::write(root.join("index.html"), "<!doctype html><p>chat</p>").unwrap();
    std::fs::write(root.join("js/app.js"), "new WebSocket(location.href)").unwrap();
    std::fs::write(base.join("secret.txt"), "do not serve").unwrap();
    // Larger than a read, larger than the old 16 MiB cap: streamed.
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let _cleanup = TempDir(base.clone());
    let root_s = root.to_str().unwrap().to_string();
    let s = serve(&["--static", &root_s]);
    let req = |method: &str, path: &str| format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n");

    let (head, body) = http(s.addr, &req("GET", "/js/app.js"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/javascript; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(head.contains("Content-Length: 28\r\n"), "{head}");
    assert_eq!(body, b"new WebSocket(location.href)");

    let (head, body) = http(s.addr, &req("GET", "/big.bin"));
    assert!(head.contains("Content-Length: 20971520\r\n"), "{head}");
    assert!(body == big, "the 20 MiB file came back intact");

    let (head, body) = http(s.addr, &req("GET", "/"));
    assert!(head.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert_eq!(body, b"<!doctype html><p>chat</p>");

    let (head, body) = http(s.addr, &req("HEAD", "/js/app.js"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 28\r\n"), "{head}");
    assert!(body.is_empty(), "HEAD has no body");

    let (head, _) = http(s.addr, &req("GET", "/nope.html"));
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/js/%2E%2E/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
    ] {
        let (head, body) = http(s.addr, &req("GET", path));
        assert!(head.starts_with("HTTP/1.1 403 "), "{path}: {head}");
        assert!(!String::from_utf8_lossy(&body).contains("do not serve"));
    }
    let (head, _) = http(s.addr, &req("POST", "/js/app.js"));
    assert!(head.starts_with("HTTP/1.1 405 "), "{head}");

    // The same port still upgrades, on any path, including one that is a file.
    bounded(async {
        for path in ["/", "/js/app.js", "/socket"] {
            let mut ws = connect(s.addr, path).await;
            ws.send(Message::text("echo?")).await.unwrap();
            let m = next_data(&mut ws, Duration::from_secs(10)).await.unwrap();
            assert_eq!(text(&m), "echo?");
            ws.close(None).await.unwrap();
        }
    })
    .await;
    let log = s.stop();
    assert!(log.contains("status=403"), "requests are logged: {log}");
}

// ---------------------------------------------------------------------------------------
// --subprotocol

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_is_the_servers_first_choice_among_the_offered() {
    let s = serve(&["--subprotocol", "chat.v2", "--subprotocol", "chat.v1"]);
    bounded(async {
        let cases: [(&[&str], Option<&str>); 5] = [
            (&["chat.v1", "chat.v2"], Some("chat.v2")), // the server's order wins
            (&["chat.v1"], Some("chat.v1")),
            (&["other", "chat.v1"], Some("chat.v1")),
            (&["other"], None), // none in common: connected without a subprotocol
            (&[], None),
        ];
        for (offer, want) in cases {
            let mut b = ClientBuilder::new(format!("ws://{}/", s.addr));
            for p in offer {
                b = b.protocol(*p);
            }
            let mut ws = b.connect().await.unwrap();
            assert_eq!(ws.protocol(), want, "offered {offer:?}");
            ws.send(Message::text("x")).await.unwrap();
            assert!(next_data(&mut ws, Duration::from_secs(10)).await.is_some());
            ws.close(None).await.unwrap();
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// --log-format json, completions, help

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let s = serve_with(&["--log-format", "json"], &["--broadcast"]);
    bounded(async {
        let mut ws = connect(s.addr, "/").await;
        ws.send(Message::text("hi")).await.unwrap();
        ws.close(None).await.unwrap();
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.stop();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 4, "{log}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
    }
    assert!(log.contains("broadcast server listening"), "{log}");
    assert!(log.contains("connection open"), "{log}");
    assert!(log.contains("1 of 1 connections closed cleanly") || log.contains("\"open\":0"));
    assert!(!log.contains("\x1b["), "no colors in JSON");
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(WSX).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn completions_print_a_script_for_each_shell() {
    let (code, out, err) = run(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("_wsx()"), "{out}");
    assert!(out.contains("complete -F _wsx"), "{out}");
    assert!(out.contains("--broadcast") && out.contains("--log-format"));
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("serve") && out.contains("--exec"), "{shell}");
    }
    let (code, _, err) = run(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value"), "{err}");
}

#[test]
fn help_shows_examples_of_every_mode() {
    let (code, out, _) = run(&["serve", "--help"]);
    assert_eq!(code, 0);
    for example in [
        "wsx serve --broadcast",
        "wsx serve --exec",
        "--static",
        "--subprotocol",
        "--log-format json",
        "1008",
    ] {
        assert!(out.contains(example), "{example} missing from:\n{out}");
    }
    for cmd in ["connect", "bench", "completions"] {
        let (code, out, _) = run(&[cmd, "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("Examples:"), "{cmd}: {out}");
    }
    // Modes exclude each other.
    let (code, _, err) = run(&["serve", "--broadcast", "--exec", "cat"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot be used with"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Per-address limits

/// Sends an upgrade request on a new connection and returns the response's status and the
/// connection (kept open by the caller when upgraded).
fn upgrade_status(addr: SocketAddr) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed before a response");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    (head[9..12].parse().unwrap(), s)
}

#[test]
fn handshake_rate_per_ip() {
    let s = serve(&["--max-handshakes-per-ip", "3"]);
    // A burst: 3 are admitted at once, then 429 (the probe that saw the server start took
    // one; a token comes back every 333 ms, so a slow machine may see one more).
    let mut open = Vec::new();
    let mut refused = None;
    for i in 0..40 {
        let (status, conn) = upgrade_status(s.addr);
        match status {
            101 => open.push(conn),
            429 => {
                refused = Some(i);
                break;
            }
            other => panic!("status {other}"),
        }
    }
    let refused = refused.expect("no 429 in 40 connections at once");
    assert!((2..=4).contains(&refused), "refused number {}", refused + 1);
    // Tokens come back: a moment later one more is admitted.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(upgrade_status(s.addr).0, 101);
    // Without the flag, on loopback: no limit.
    let s = serve(&[]);
    for _ in 0..100 {
        assert_eq!(upgrade_status(s.addr).0, 101);
    }
}
