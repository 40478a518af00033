//! `wsx connect` through proxies: `--proxy`, the `*_proxy` environment variables and
//! `--no-proxy`, against `wsx serve` and small in-test proxies on 127.0.0.1.

mod common;

use common::{run_cmd, serve_with, Served, WSX};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

fn serve() -> Served {
    serve_with(&[], Stdio::null())
}

/// Runs `wsx` with `input` on stdin and only the given proxy variables set; killed after
/// 30 s.
fn run(args: &[&str], env: &[(&str, String)], input: &[u8]) -> (i32, String, String) {
    let mut cmd = Command::new(WSX);
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    run_cmd(cmd.envs(env.iter().map(|(k, v)| (k, v))).args(args), input)
}

/// Copies both ways between two sockets until either side ends.
fn splice(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let (mut a, mut b) = (a, b);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut a, &mut b);
        let _ = b.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut b2, &mut a2);
        let _ = a2.shutdown(Shutdown::Write);
    });
}

type Log = Arc<Mutex<Vec<String>>>;

/// An HTTP CONNECT proxy; `refuse` answers every request with that canned response.
fn http_proxy(refuse: Option<&'static str>) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
                    if client.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("CONNECT "))
                    .and_then(|l| l.strip_suffix(" HTTP/1.1"))
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push(target.clone());
                if let Some(answer) = refuse {
                    let _ = client.write_all(answer.as_bytes());
                    return;
                }
                let Ok(upstream) = TcpStream::connect(target.as_str()) else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                splice(client, upstream);
            });
        }
    });
    (addr, log)
}

/// A SOCKS5 proxy without authentication that takes only domain names, each of which it
/// connects to on 127.0.0.1; it logs "name:port".
fn socks5h_proxy() -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut c) = client else { return };
            let seen = seen.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut hdr = [0u8; 2];
                c.read_exact(&mut hdr)?;
                let mut methods = vec![0u8; hdr[1] as usize];
                c.read_exact(&mut methods)?;
                c.write_all(&[5, 0])?;
                let mut req = [0u8; 5];
                c.read_exact(&mut req)?;
                if req[3] != 3 {
                    c.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0])?;
                    return Ok(());
                }
                let mut name = vec![0u8; req[4] as usize];
                c.read_exact(&mut name)?;
                let mut port = [0u8; 2];
                c.read_exact(&mut port)?;
                let port = u16::from_be_bytes(port);
                seen.lock()
                    .unwrap()
                    .push(format!("{}:{port}", String::from_utf8_lossy(&name)));
                let upstream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
                c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
                splice(c, upstream);
                Ok(())
            });
        }
    });
    (addr, log)
}

#[test]
fn connect_pipes_lines_through_an_http_proxy() {
    let s = serve();
    let (p, log) = http_proxy(None);
    let url = format!("ws://{}/", s.1);
    let input: String = (0..50).map(|i| format!("line {i}\n")).collect();
    let (code, out, err) = run(
        &["connect", "--proxy", &format!("http://{p}"), &url],
        &[],
        input.as_bytes(),
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, input);
    assert_eq!(log.lock().unwrap().as_slice(), [s.1.to_string()]);
}

#[test]
fn connect_takes_the_proxy_from_the_environment_unless_told_not_to() {
    let s = serve();
    let (p, log) = socks5h_proxy();
    // A name only the proxy knows: the connection can only work through it.
    let url = format!("ws://echo.invalid:{}/", s.1.port());
    let env = [("all_proxy", format!("socks5h://{p}"))];
    let (code, out, err) = run(&["connect", &url], &env, b"via env\n");
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "via env\n");
    assert_eq!(
        log.lock().unwrap().as_slice(),
        [format!("echo.invalid:{}", s.1.port())]
    );

    // --no-proxy ignores the variable: the name does not resolve here.
    let (code, out, err) = run(&["connect", "--no-proxy", &url], &env, b"x\n");
    assert_eq!(code, 2, "stderr: {err}");
    assert!(out.is_empty());
    let unresolved =
        |err: &str| err.contains("cannot resolve echo.invalid") || err.contains("timed out");
    assert!(unresolved(&err), "{err}");
    // So does a matching no_proxy entry.
    let env_np = [env[0].clone(), ("no_proxy", ".invalid".to_string())];
    let (code, _, err) = run(&["connect", &url], &env_np, b"x\n");
    assert_eq!(code, 2, "stderr: {err}");
    assert!(unresolved(&err), "{err}");
    assert_eq!(log.lock().unwrap().len(), 1);

    // An explicit --proxy wins over the environment.
    let (hp, hlog) = http_proxy(None);
    let direct = format!("ws://{}/", s.1);
    let (code, out, err) = run(
        &["connect", "--proxy", &format!("http://{hp}"), &direct],
        &env,
        b"explicit\n",
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "explicit\n");
    assert_eq!(hlog.lock().unwrap().len(), 1);
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn connect_names_the_proxy_and_the_cause() {
    let (p, _) = http_proxy(Some(
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 17\r\n\r\nblocked by policy",
    ));
    let (code, out, err) = run(
        &[
            "connect",
            "--proxy",
            &format!("http://user:secret@{p}"),
            "ws://127.0.0.1:9/",
        ],
        &[],
        b"",
    );
    assert_eq!(code, 2, "stderr: {err}");
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("proxy http://user@{p}")), "{err}");
    assert!(
        err.contains("HTTP 403 Forbidden: blocked by policy"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");

    // A bad proxy variable is an error too, naming the variable.
    let (code, _, err) = run(
        &["connect", "ws://example.invalid/"],
        &[("http_proxy", "gopher://x".to_string())],
        b"",
    );
    assert_eq!(code, 2, "stderr: {err}");
    assert!(
        err.contains("$http_proxy") && err.contains("gopher"),
        "{err}"
    );

    // An unsupported --proxy is refused before anything is tried.
    let (code, _, err) = run(
        &[
            "connect",
            "--proxy",
            "https://p:443",
            "ws://example.invalid/",
        ],
        &[],
        b"",
    );
    assert_eq!(code, 2, "stderr: {err}");
    assert!(err.contains("https:// proxies"), "{err}");
}
