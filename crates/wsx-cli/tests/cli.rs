//! The `wsx` binary driven end to end over loopback: serve, connect (pipe mode), bench.

mod common;

use common::{free_port, run_cmd, serve_with, Served, WSX};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(extra: &[&str]) -> Served {
    serve_with(extra, Stdio::piped())
}

fn run_with_input(args: &[&str], input: &[u8]) -> (i32, String, String) {
    run_cmd(Command::new(WSX).args(args), input)
}

#[test]
fn connect_pipes_lines_through_the_echo_server() {
    let s = serve(&[]);
    let url = format!("ws://{}/", s.1);
    let input: String = (0..200)
        .map(|i| format!("line {i} {}\n", "x".repeat(i * 10)))
        .collect();
    let (code, out, err) = run_with_input(&["connect", &url], input.as_bytes());
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out, input,
        "every echo printed, in order, even those in flight at EOF"
    );
}

#[test]
fn connect_exit_codes_tell_failures_apart() {
    // Nothing listening: handshake failure, exit 2, one clear line.
    let url = format!("ws://{}/", free_port());
    let (code, _, err) = run_with_input(&["connect", &url], b"");
    assert_eq!(code, 2);
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("panicked"));
    // An HTTP error is shown with its status.
    let s = serve(&["--allow-origin", "https://only.example"]);
    let listener_url = format!("ws://{}/", s.1);
    let (code, _, err) = run_with_input(&["connect", &listener_url], b"");
    assert_eq!(code, 0, "no Origin header: allowed ({err})");
    let bad = serve(&["--max-connections", "0"]);
    let (code, _, err) = run_with_input(&["connect", &format!("ws://{}/", bad.1)], b"");
    assert_eq!(code, 2);
    assert!(err.contains("503"), "{err}");
}

#[test]
fn bench_reports_json_and_checks_echoes() {
    let s = serve(&[]);
    let url = format!("ws://{}/", s.1);
    let v = bench_json(&[&url, "-c", "4", "-s", "100"]);
    assert!(v["messages"].as_u64().unwrap() > 100, "{v}");
    assert!(v["latency_ms"]["p99"].as_f64().unwrap() >= v["latency_ms"]["p50"].as_f64().unwrap());
    // Echoes larger than one read, several in flight (sent as one burst), binary.
    let v = bench_json(&[
        &url,
        "-c",
        "2",
        "-s",
        "300000",
        "--binary",
        "--in-flight",
        "3",
    ]);
    assert!(v["messages"].as_u64().unwrap() > 10, "{v}");
}

#[test]
fn bench_refuses_a_frame_larger_than_any_echo() {
    // A server that completes the handshake, then announces a 1 TiB frame: the generator
    // fails the connection at once instead of buffering toward it.
    use wsx_proto::handshake::server;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        let response = loop {
            let n = tcp.read(&mut chunk).unwrap();
            head.extend_from_slice(&chunk[..n]);
            if let Some((req, _)) = server::parse_request(&head, 16 * 1024).unwrap() {
                break server::accept(&req, &Default::default(), server::NoHook)
                    .unwrap()
                    .0;
            }
        };
        tcp.write_all(&response).unwrap();
        // Binary, 64-bit length 2^40, then a little of it.
        tcp.write_all(&[0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0]).unwrap();
        tcp.write_all(&[0u8; 4096]).unwrap();
        std::thread::sleep(Duration::from_secs(2));
    });
    let url = format!("ws://{addr}/");
    let (code, out, err) = run_with_input(
        &[
            "bench", &url, "-c", "1", "-d", "0.3", "--warmup", "0", "--json",
        ],
        b"",
    );
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("larger than any echo"), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["errors"], 1, "{v}");
    peer.join().unwrap();
}

/// Runs `wsx bench ARGS -d 0.5 --warmup 0.1 --json`, checks that it succeeded with no
/// errors and no mismatched echoes, and returns its report.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-d", "0.5", "--warmup", "0.1", "--json"]);
    let (code, out, err) = run_with_input(&all, b"");
    assert_eq!(code, 0, "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["mismatched_echoes"], 0, "{v}");
    v
}

#[test]
fn serve_shuts_down_gracefully_on_sigterm() {
    let mut s = serve(&["--shutdown-timeout", "5"]);
    let mut client = Command::new(WSX)
        .args(["connect", &format!("ws://{}/", s.1)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"hello\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pid = s.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = s.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let mut err = String::new();
    s.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("1 of 1 connections closed cleanly"), "{err}");
    let out = client.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1001"), "client saw: {stderr}");
    drop(stdin);
}

/// The binary's jemalloc took its options (src/main.rs, `malloc_conf`): its background
/// purging thread runs, so memory freed after a peak goes back to the system while the
/// server is idle.
#[cfg(all(target_os = "linux", feature = "jemalloc"))]
#[test]
fn wsx_serve_runs_jemallocs_background_purging() {
    let s = serve(&["--threads", "1"]);
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", s.0.id()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    assert!(
        threads.iter().any(|t| t == "jemalloc_bg_thd"),
        "no jemalloc background thread among {threads:?}"
    );
}
