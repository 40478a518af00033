//! Helpers shared by the end-to-end tests of the `wsx` binary: a `wsx serve` on a free
//! loopback port, and a bounded run of a command with stdin fed and output collected.
#![allow(dead_code)] // each test file uses its own subset

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const WSX: &str = env!("CARGO_BIN_EXE_wsx");

/// A running `wsx serve` and its address; killed when dropped.
pub struct Served(pub Child, pub SocketAddr);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts `wsx serve --listen ADDR EXTRA...` (its stderr as given) and waits until it
/// accepts connections (at most 10 s).
pub fn serve_with(extra: &[&str], stderr: Stdio) -> Served {
    let addr = free_port();
    let child = Command::new(WSX)
        .args(["serve", "--listen", &addr.to_string()])
        .args(extra)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "wsx serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Served(child, addr)
}

/// Runs `cmd` with `input` on stdin (fed from a thread while the output is drained, so no
/// pipe fills up); killed after 30 s. Returns the exit code (-1 if killed), stdout, stderr.
pub fn run_cmd(cmd: &mut Command, input: &[u8]) -> (i32, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    drop(watchdog);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
