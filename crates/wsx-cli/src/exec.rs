//! `wsx serve --exec CMD`: each connection is bridged to its own `sh -c CMD`.
//!
//! - A text message goes to the child's stdin followed by `\n`; a binary one goes raw.
//! - Each line of the child's stdout becomes a text message (without its `\n`; a line that
//!   is not UTF-8 becomes a binary message; lines longer than [`MAX_LINE`] go out in pieces).
//!   With `--exec-binary`, stdout is sent as it is read, in binary messages.
//! - The child's stderr is the server's stderr. It gets `WSX_PEER` (client address) and
//!   `WSX_PATH` (request target) in its environment, and runs in its own process group.
//! - Client gone (close, error, server shutdown): the child's stdin is closed; if it has not
//!   exited after the grace period its whole process group gets SIGTERM, and if it is still
//!   there after another grace period, SIGKILL.
//! - Child exited: what it still wrote is sent (up to 1 s), then the connection is closed
//!   with 1000 for exit status 0, 1011 otherwise, the reason naming the status.
//!
//! The child is always waited for (no zombies); backpressure runs both ways: a child that
//! does not read its stdin stops the reading of the client's messages after
//! [`STDIN_QUEUE`] of them, a client that does not read stops the reading of stdout.

use bytes::BytesMut;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use wsx::{Bytes, CloseCode, CloseFrame, MaybeTlsStream, Message, Utf8Bytes, WebSocket};

/// Longest stdout line sent as one message in text mode (1 MiB); longer lines are split.
pub const MAX_LINE: usize = 1 << 20;

/// Client messages queued for the child's stdin before the client is no longer read.
pub const STDIN_QUEUE: usize = 16;

/// How long a child's remaining output is still relayed after it exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// How `--exec` runs.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// The shell command (`sh -c CMD`).
    pub command: String,
    /// Send stdout in raw binary chunks rather than text lines.
    pub binary: bool,
    /// After the client is gone, how long the child gets to exit before SIGTERM, and then
    /// before SIGKILL.
    pub grace: Duration,
    /// Close the client with 1008 when the child takes none of its input for this long
    /// while more is waiting (`--write-timeout`; `None`: wait forever).
    pub input_timeout: Option<Duration>,
}

/// What ended the bridge.
enum End {
    /// The client closed or failed (or the server is shutting down).
    ClientGone,
    /// The child took none of the client's input for the input timeout.
    InputStalled,
    /// The child exited with this status.
    ChildExited(ExitStatus),
}

/// The close frame for a child's exit status: 1000 for 0, 1011 otherwise.
pub fn close_frame_for(status: &ExitStatus) -> CloseFrame {
    if status.success() {
        return CloseFrame::new(CloseCode::NORMAL, "exit status 0");
    }
    let reason = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                match status.signal() {
                    Some(sig) => format!("killed by signal {sig}"),
                    None => "exited abnormally".to_string(),
                }
            }
            #[cfg(not(unix))]
            {
                "exited abnormally".to_string()
            }
        }
    };
    CloseFrame::new(CloseCode::INTERNAL_ERROR, reason)
}

/// Runs one connection bridged to its own child process.
pub async fn serve(config: &ExecConfig, mut ws: WebSocket<MaybeTlsStream>, peer: SocketAddr) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&config.command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("WSX_PEER", peer.to_string())
        .env("WSX_PATH", ws.request_target().unwrap_or("/"))
        // Should this task be aborted (shutdown timeout), tokio kills and reaps the child.
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%peer, "cannot start `sh -c {}`: {e}", config.command);
            let frame = CloseFrame::new(CloseCode::INTERNAL_ERROR, "cannot start the command");
            let _ = ws.close(Some(frame)).await;
            return;
        }
    };
    let pid = child.id();
    tracing::info!(%peer, pid, "started `{}`", config.command);
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        // Both are piped above; treat their absence like a failed start.
        kill(&mut child, pid).await;
        let _ = ws
            .close(Some(CloseFrame::new(CloseCode::INTERNAL_ERROR, "no pipes")))
            .await;
        return;
    };
    let mut output = Output::new(stdout, config.binary);
    let (in_tx, in_rx) = mpsc::channel::<Bytes>(STDIN_QUEUE);
    let writer = write_stdin(stdin, in_rx);
    tokio::pin!(writer);
    let mut writer_done = false;

    let end = {
        let mut permit = None;
        // The child stopped reading its stdin: client messages are read and dropped.
        let mut stdin_gone = false;
        // Since when a client message waits for room in the stdin queue. The client is not
        // read meanwhile (backpressure), so a client that leaves is noticed only after the
        // child reads on or the input timeout ends the wait.
        let mut parked_since: Option<tokio::time::Instant> = None;
        loop {
            if permit.is_none() && !stdin_gone && parked_since.is_none() {
                match in_tx.try_reserve() {
                    Ok(p) => permit = Some(p),
                    Err(mpsc::error::TrySendError::Full(())) => {
                        parked_since = Some(tokio::time::Instant::now());
                    }
                    Err(mpsc::error::TrySendError::Closed(())) => stdin_gone = true,
                }
            }
            let stalled = async {
                match (parked_since, config.input_timeout) {
                    (Some(since), Some(after)) => tokio::time::sleep_until(since + after).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                p = in_tx.reserve(), if permit.is_none() && !stdin_gone => {
                    parked_since = None;
                    match p {
                        Ok(p) => permit = Some(p),
                        Err(_) => stdin_gone = true,
                    }
                }
                () = stalled => break End::InputStalled,
                incoming = ws.next(), if permit.is_some() || stdin_gone => match incoming {
                    Some(Ok(Message::Text(t))) => {
                        let mut line = BytesMut::with_capacity(t.len() + 1);
                        line.extend_from_slice(t.as_bytes());
                        line.extend_from_slice(b"\n");
                        if let Some(p) = permit.take() {
                            p.send(line.freeze());
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        if let Some(p) = permit.take() {
                            p.send(b);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::info!(%peer, "connection failed: {e}");
                        break End::ClientGone;
                    }
                    None => break End::ClientGone,
                },
                () = &mut writer, if !writer_done => writer_done = true,
                out = output.next(), if !output.finished() => {
                    if let Some(msg) = out {
                        if let Err(e) = ws.send(msg).await {
                            tracing::info!(%peer, "send failed: {e}");
                            break End::ClientGone;
                        }
                    }
                }
                status = child.wait() => match status {
                    Ok(status) => break End::ChildExited(status),
                    Err(e) => {
                        tracing::warn!(%peer, "cannot wait for the child: {e}");
                        break End::ClientGone;
                    }
                },
            }
        }
    };
    // Closes the child's stdin once what is queued is written.
    drop(in_tx);

    if let End::InputStalled = end {
        tracing::info!(%peer, pid, "the command is not reading its input: closing");
        let frame = CloseFrame::new(CloseCode::POLICY_VIOLATION, "command not reading its input");
        let _ = ws.close(Some(frame)).await;
    }
    match end {
        End::ChildExited(status) => {
            tracing::info!(%peer, pid, %status, "command exited");
            // What the child wrote before exiting still goes out (a background process
            // holding stdout open must not hold the connection).
            let deadline = tokio::time::sleep(DRAIN_AFTER_EXIT);
            tokio::pin!(deadline);
            while !output.finished() {
                tokio::select! {
                    out = output.next() => if let Some(msg) = out {
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    },
                    () = &mut deadline => break,
                }
            }
            let _ = ws.close(Some(close_frame_for(&status))).await;
        }
        End::ClientGone | End::InputStalled => {
            // A grace period; then SIGTERM and another; then SIGKILL.
            let mut exited = None;
            for signal in [None, Some(Signal::Term)] {
                if let Some(signal) = signal {
                    tracing::info!(%peer, pid, "command still running after the client left: terminating it");
                    signal_group(&mut child, pid, signal);
                }
                let grace = tokio::time::sleep(config.grace);
                tokio::pin!(grace);
                exited = loop {
                    tokio::select! {
                        () = &mut writer, if !writer_done => writer_done = true,
                        // Keep the pipe moving so the child does not block writing to it.
                        _ = output.next(), if !output.finished() => {}
                        status = child.wait() => break status.ok(),
                        () = &mut grace => break None,
                    }
                };
                if exited.is_some() {
                    break;
                }
            }
            match exited {
                Some(status) => tracing::info!(%peer, pid, %status, "command exited"),
                None => {
                    tracing::info!(%peer, pid, "command still running after SIGTERM: killing it");
                    kill(&mut child, pid).await;
                }
            }
        }
    }
    if let Some(ev) = ws.close_event() {
        tracing::info!(%peer, code = ev.code.0, reason = %ev.reason, clean = ev.was_clean, "closed");
    }
}

/// A signal for the child's process group.
#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// Sends `signal` to the child's process group (SIGKILL also to the child itself, where
/// there are no process groups).
fn signal_group(child: &mut Child, pid: Option<u32>, signal: Signal) {
    // The child has not been waited for, so its pid (= its group id) cannot have been
    // reused: the group is still the one it leads.
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|&p| p > 1) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let signal = match signal {
                Signal::Term => rustix::process::Signal::TERM,
                Signal::Kill => rustix::process::Signal::KILL,
            };
            let _ = rustix::process::kill_process_group(pid, signal);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
    if let Signal::Kill = signal {
        let _ = child.start_kill();
    }
}

/// Kills the child's process group (and the child) and waits for it.
async fn kill(child: &mut Child, pid: Option<u32>) {
    signal_group(child, pid, Signal::Kill);
    let _ = child.wait().await;
}

/// Writes queued client messages to the child's stdin; returns (dropping stdin, which the
/// child sees as end of input) when the queue is closed or the child stops reading.
async fn write_stdin(mut stdin: ChildStdin, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(data) = rx.recv().await {
        if stdin.write_all(&data).await.is_err() {
            return;
        }
    }
}

/// The child's stdout, cut into messages.
struct Output {
    stdout: ChildStdout,
    buf: BytesMut,
    binary: bool,
    eof: bool,
    /// Returned the final partial line already.
    done: bool,
}

impl Output {
    fn new(stdout: ChildStdout, binary: bool) -> Self {
        Output {
            stdout,
            buf: BytesMut::new(),
            binary,
            eof: false,
            done: false,
        }
    }

    /// Whether everything has been returned.
    fn finished(&self) -> bool {
        self.done
    }

    /// The next message; `None` at the end. Cancel-safe (state lives in `self`).
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(msg) = self.cut() {
                return Some(msg);
            }
            if self.eof {
                self.done = true;
                return None;
            }
            self.buf.reserve(64 * 1024);
            match self.stdout.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => self.eof = true,
                Ok(_) => {}
            }
        }
    }

    /// A complete message from the buffer, if there is one.
    fn cut(&mut self) -> Option<Message> {
        if self.buf.is_empty() {
            return None;
        }
        if self.binary {
            return Some(Message::Binary(self.buf.split().freeze()));
        }
        if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line = self.buf.split_to(pos + 1);
            line.truncate(pos);
            return Some(line_message(line.freeze()));
        }
        if self.buf.len() >= MAX_LINE {
            // Cut a long line at a character boundary where possible.
            let cut = match std::str::from_utf8(&self.buf[..MAX_LINE]) {
                Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
                _ => MAX_LINE,
            };
            return Some(line_message(self.buf.split_to(cut).freeze()));
        }
        if self.eof {
            // The last line, without a newline.
            return Some(line_message(self.buf.split().freeze()));
        }
        None
    }
}

/// A text message for a UTF-8 line, a binary one otherwise.
fn line_message(line: Bytes) -> Message {
    match Utf8Bytes::try_from_bytes(line.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn status(cmd: &str) -> ExitStatus {
        std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn exit_status_to_close_frame() {
        let f = close_frame_for(&status("exit 0"));
        assert_eq!(
            (f.code, f.reason.as_str()),
            (CloseCode::NORMAL, "exit status 0")
        );
        let f = close_frame_for(&status("exit 3"));
        assert_eq!(
            (f.code, f.reason.as_str()),
            (CloseCode::INTERNAL_ERROR, "exit status 3")
        );
        let f = close_frame_for(&status("kill -9 $$"));
        assert_eq!(
            (f.code, f.reason.as_str()),
            (CloseCode::INTERNAL_ERROR, "killed by signal 9")
        );
    }

    async fn messages(script: &str, binary: bool) -> Vec<Message> {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = Output::new(child.stdout.take().unwrap(), binary);
        let mut got = Vec::new();
        while let Some(m) = out.next().await {
            got.push(m);
        }
        assert!(out.finished());
        child.wait().await.unwrap();
        got
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn stdout_lines_become_messages() {
        let got = messages(r"printf 'a\nb c\n\n\377\nlast'", false).await;
        assert_eq!(
            got,
            [
                Message::text("a"),
                Message::text("b c"),
                Message::text(""),
                Message::Binary(Bytes::from_static(b"\xff")),
                Message::text("last"),
            ]
        );
        let got = messages("head -c 3000000 /dev/zero | tr '\\0' x", false).await;
        let sizes: Vec<usize> = got
            .iter()
            .map(|m| match m {
                Message::Text(t) => t.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 3_000_000 - 2 * MAX_LINE]);
        let got = messages(r"printf 'raw\nbytes'", true).await;
        let all: Vec<u8> = got
            .iter()
            .flat_map(|m| match m {
                Message::Binary(b) => b.to_vec(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(all, b"raw\nbytes");
    }
}
