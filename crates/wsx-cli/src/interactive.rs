//! Interactive mode of `wsx connect`: a line editor (rustyline) with persistent history and
//! Ctrl-R search on its own thread, commands (`/ping`, `/binary`, `/close`, `/quit`,
//! `/help`), and received messages printed above the prompt while the user types.
//!
//! The editor thread blocks in `readline` and sends [`Input`]s to the async side through a
//! channel; the async side prints through rustyline's `ExternalPrinter`, which redraws the
//! prompt and the half-typed line below each message.

use crate::console::{fmt_rtt, parse_close_code, parse_close_reason, timestamp, Input};
use base64::Engine as _;
use rustyline::error::ReadlineError;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use wsx::{Bytes, CloseCode, CloseFrame, Message};

/// The `/help` text.
pub const HELP: &str = "\
Type a line to send it as a text message. Commands:
  /ping [data]             send a ping; the pong is shown with the round-trip time
  /binary <hex>            send a binary message: /binary 48 65 6c 6c 6f  or  /binary 48656c6c6f
  /binary base64:<data>    send a binary message given in base64: /binary base64:SGVsbG8=
  /close [code] [reason]   close the connection (default 1000) and exit
  /quit                    close with --close-code (default 1000) and exit; also Ctrl-D, Ctrl-C
  /help                    this help
  //text                   send a text message that starts with '/' (here: \"/text\")
Up/Down walk the history, Ctrl-R searches it.";

/// Bytes of a binary message shown in hex.
const HEX_PREVIEW: usize = 32;

/// What a typed line asks for.
#[derive(Debug)]
pub enum Line {
    /// Something for the connection.
    Input(Input),
    /// Show [`HELP`].
    Help,
}

/// Parses a typed line: a command, or text to send. `Ok(None)` for an empty line.
pub fn parse_line(line: &str) -> Result<Option<Line>, String> {
    if line.is_empty() {
        return Ok(None);
    }
    if let Some(text) = line.strip_prefix("//") {
        return Ok(Some(Line::Input(Input::Send(Message::text(format!(
            "/{text}"
        ))))));
    }
    let Some(cmd) = line.strip_prefix('/') else {
        return Ok(Some(Line::Input(Input::Send(Message::text(line)))));
    };
    let (name, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
    let input = match name {
        "ping" => {
            if rest.len() > 125 {
                return Err("a ping carries at most 125 bytes".into());
            }
            Input::Ping(Bytes::copy_from_slice(rest.as_bytes()))
        }
        "binary" => Input::Send(Message::Binary(parse_binary(rest.trim())?)),
        "close" => {
            let rest = rest.trim_start();
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            if code.is_empty() {
                Input::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
            } else {
                let code = parse_close_code(code)?;
                let reason = parse_close_reason(reason)?;
                Input::Close(Some(CloseFrame::new(CloseCode(code), reason)))
            }
        }
        "quit" | "exit" => Input::Quit,
        "help" | "?" => return Ok(Some(Line::Help)),
        _ => return Err(format!("unknown command /{name} (/help lists them)")),
    };
    Ok(Some(Line::Input(input)))
}

/// `/binary` data: hex digits (spaces allowed between bytes) or `base64:...`.
fn parse_binary(s: &str) -> Result<Bytes, String> {
    const USAGE: &str = "usage: /binary <hex>  or  /binary base64:<data>";
    if let Some(b64) = s.strip_prefix("base64:") {
        return base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Bytes::from)
            .map_err(|e| format!("invalid base64: {e}"));
    }
    if s.is_empty() {
        return Err(USAGE.into());
    }
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({USAGE})"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| {
                    format!(
                        "{:?} is not a hex byte ({USAGE})",
                        String::from_utf8_lossy(pair)
                    )
                })
        })
        .collect::<Result<Vec<u8>, String>>()
        .map(Bytes::from)
}

/// The first bytes in hex, `…` when there are more.
pub fn hex_preview(b: &[u8]) -> String {
    let mut s: Vec<String> = b
        .iter()
        .take(HEX_PREVIEW)
        .map(|x| format!("{x:02x}"))
        .collect();
    if b.len() > HEX_PREVIEW {
        s.push("…".into());
    }
    s.join(" ")
}

/// A ping or pong payload: quoted text, or hex when it is not UTF-8.
fn payload(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("[{}]", hex_preview(b)),
    }
}

/// Where the history lives: `$XDG_STATE_HOME/wsx/history`, else
/// `~/.local/state/wsx/history`.
pub fn history_path() -> Option<PathBuf> {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let state = nonempty("XDG_STATE_HOME")
        .or_else(|| nonempty("HOME").map(|h| h.join(".local").join("state")))?;
    Some(state.join("wsx").join("history"))
}

type Printer = Box<dyn rustyline::ExternalPrinter + Send>;

/// The terminal side of interactive mode: prints messages above the prompt.
pub struct Screen {
    printer: Option<Printer>,
    /// Lines held back since the session ended (or the peer's close frame came), in
    /// order: a line handed to the editor thread is drawn by that thread later, and is
    /// lost if the program ends first. [`Screen::resume`] hands them on when another
    /// session follows; [`Screen::finish`] prints them itself.
    held: Option<Vec<String>>,
    color: bool,
    timestamps: bool,
    #[cfg(unix)]
    saved: Option<nix::sys::termios::Termios>,
}

/// Starts the line editor on its own thread; typed lines arrive on `tx`.
pub fn start(tx: mpsc::Sender<Input>, timestamps: bool) -> anyhow::Result<Screen> {
    #[cfg(unix)]
    let saved = nix::sys::termios::tcgetattr(std::io::stdin()).ok();
    let color = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let (ptx, prx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("wsx-editor".into())
        .spawn(move || editor_thread(tx, ptx))?;
    let printer = prx.recv().ok().flatten();
    Ok(Screen {
        printer,
        held: None,
        color,
        timestamps,
        #[cfg(unix)]
        saved,
    })
}

fn editor_thread(
    tx: mpsc::Sender<Input>,
    printer_tx: std::sync::mpsc::SyncSender<Option<Printer>>,
) {
    let config = rustyline::Config::builder()
        .auto_add_history(false)
        .history_ignore_space(true)
        .max_history_size(10_000)
        .map(|b| b.build())
        .unwrap_or_default();
    let mut editor = match rustyline::DefaultEditor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            let _ = printer_tx.send(None);
            let _ = tx.blocking_send(Input::Failed(format!("cannot start the line editor: {e}")));
            return;
        }
    };
    let history = history_path();
    match &history {
        Some(path) => {
            if let Some(dir) = path.parent() {
                if let Err(e) = std::fs::create_dir_all(dir) {
                    eprintln!(
                        "warning: cannot create {}: {e} (history is not saved)",
                        dir.display()
                    );
                }
            }
            match editor.load_history(path) {
                Ok(()) => {}
                Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!("warning: cannot read the history {}: {e}", path.display()),
            }
        }
        None => eprintln!("warning: neither XDG_STATE_HOME nor HOME is set: history is not saved"),
    }
    let printer = editor
        .create_external_printer()
        .ok()
        .map(|p| Box::new(p) as Printer);
    let _ = printer_tx.send(printer);
    let mut history_warned = false;
    loop {
        let line = match editor.readline("> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                let _ = tx.blocking_send(Input::Quit);
                return;
            }
            Err(e) => {
                let _ = tx.blocking_send(Input::Failed(format!("reading the terminal: {e}")));
                return;
            }
        };
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
            if let Some(path) = &history {
                if let Err(e) = editor.append_history(path) {
                    if !history_warned {
                        eprintln!("warning: cannot write the history {}: {e}", path.display());
                        history_warned = true;
                    }
                }
            }
        }
        match parse_line(&line) {
            Ok(None) => {}
            Ok(Some(Line::Help)) => println!("{HELP}"),
            Ok(Some(Line::Input(input))) => {
                let last = matches!(input, Input::Quit | Input::Close(_));
                if tx.blocking_send(input).is_err() || last {
                    return;
                }
            }
            Err(e) => println!("! {e}"),
        }
    }
}

impl Screen {
    fn paint(&self, sgr: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{sgr}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    fn print(&mut self, line: String) {
        let line = if self.timestamps {
            format!("{} {line}", self.paint("2", &timestamp()))
        } else {
            line
        };
        match &mut self.held {
            Some(held) => held.push(line),
            None => self.show(line),
        }
    }

    /// Prints through the editor (above its prompt), or straight to stdout without one.
    fn show(&mut self, line: String) {
        // With a newline: rustyline adds one only while the editor is in raw mode.
        let printed = match &mut self.printer {
            Some(p) => p.print(format!("{line}\n")).is_ok(),
            None => false,
        };
        if !printed {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    fn received(&self) -> String {
        self.paint("1;32", "<")
    }

    /// A received data message.
    pub fn data(&mut self, msg: &Message) {
        let line = match msg {
            Message::Text(t) => format!("{} {}", self.received(), t.as_str()),
            Message::Binary(b) => format!(
                "{} {} {}",
                self.received(),
                self.paint("36", &format!("binary {} bytes:", b.len())),
                hex_preview(b)
            ),
            _ => return,
        };
        self.print(line);
    }

    /// A received ping or pong; `rtt` when the pong answers one of our pings.
    pub fn control(&mut self, msg: &Message, rtt: Option<Duration>) {
        let line = match (msg, rtt) {
            (Message::Ping(p), _) => format!("ping {}", payload(p)),
            (Message::Pong(p), Some(rtt)) => format!("pong {} rtt {}", payload(p), fmt_rtt(rtt)),
            (Message::Pong(p), None) => format!("pong {}", payload(p)),
            _ => return,
        };
        let line = format!("{} {}", self.received(), self.paint("35", &line));
        self.print(line);
    }

    /// The server's close frame.
    pub fn close_frame(&mut self, frame: &Option<CloseFrame>) {
        let text = match frame {
            Some(f) if f.reason.is_empty() => format!("close {}", f.code),
            Some(f) => format!("close {} {:?}", f.code, f.reason.as_str()),
            None => "close (no status code)".into(),
        };
        let line = format!("{} {}", self.received(), self.paint("33", &text));
        // Nothing is received after a close frame: the session is ending.
        self.hold();
        self.print(line);
    }

    /// Holds lines back from here on (see [`Screen::held`]).
    pub fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Another session follows: the held lines go to the editor, and lines print live again.
    pub fn resume(&mut self) {
        for line in self.held.take().unwrap_or_default() {
            self.show(line);
        }
    }

    /// A status line.
    pub fn info(&mut self, text: &str) {
        let line = self.paint("2", &format!("* {text}"));
        self.print(line);
    }

    /// An error line.
    pub fn error(&mut self, text: &str) {
        let line = self.paint("31", &format!("! {text}"));
        self.print(line);
    }

    /// Leaves the terminal as it was: the editor thread may still be inside `readline`
    /// (raw mode, bracketed paste) when the connection ends.
    pub fn finish(&mut self) {
        self.printer = None;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\r\x1b[K\x1b[?2004l");
        let _ = out.flush();
        drop(out);
        #[cfg(unix)]
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
        // In the terminal's own mode again, where a newline starts a new line.
        for line in self.held.take().unwrap_or_default() {
            self.show(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(line: &str) -> Input {
        match parse_line(line) {
            Ok(Some(Line::Input(i))) => i,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn lines_and_commands() {
        assert!(matches!(parse_line(""), Ok(None)));
        assert!(matches!(input("hello"), Input::Send(Message::Text(t)) if t.as_str() == "hello"));
        assert!(matches!(input("//x"), Input::Send(Message::Text(t)) if t.as_str() == "/x"));
        assert!(matches!(input("/ping"), Input::Ping(p) if p.is_empty()));
        assert!(matches!(input("/ping a b"), Input::Ping(p) if p[..] == b"a b"[..]));
        assert!(parse_line(&format!("/ping {}", "x".repeat(126))).is_err());
        assert!(matches!(input("/quit"), Input::Quit));
        assert!(matches!(parse_line("/help"), Ok(Some(Line::Help))));
        assert!(parse_line("/nope").unwrap_err().contains("/help"));
    }

    #[test]
    fn binary_command() {
        let bin = |l| match input(l) {
            Input::Send(Message::Binary(b)) => b.to_vec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(bin("/binary 48656c6c6f"), b"Hello");
        assert_eq!(bin("/binary 00 ff 7F"), [0, 255, 127]);
        assert_eq!(bin("/binary base64:SGVsbG8="), b"Hello");
        assert!(parse_line("/binary").is_err());
        assert!(parse_line("/binary abc").is_err());
        assert!(parse_line("/binary zz").is_err());
        assert!(parse_line("/binary base64:!!").is_err());
    }

    #[test]
    fn close_command() {
        let close = |l| match input(l) {
            Input::Close(Some(f)) => (f.code.0, f.reason.as_str().to_owned()),
            other => panic!("{other:?}"),
        };
        assert_eq!(close("/close"), (1000, String::new()));
        assert_eq!(close("/close 4000"), (4000, String::new()));
        assert_eq!(close("/close 4001 bye now"), (4001, "bye now".into()));
        assert!(parse_line("/close 1006").is_err());
        assert!(parse_line("/close abc").is_err());
    }

    #[test]
    fn previews() {
        assert_eq!(hex_preview(&[0, 1, 255]), "00 01 ff");
        assert!(hex_preview(&[0; 40]).ends_with('…'));
        assert_eq!(payload(b"hi"), "\"hi\"");
        assert_eq!(payload(&[0xff]), "[ff]");
    }
}
