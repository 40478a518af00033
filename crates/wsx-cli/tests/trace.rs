//! `wsx connect --show-frames` end to end over loopback: one stderr line per frame.

mod common;

use common::{run_cmd, serve_with, Served, WSX};
use std::process::{Command, Stdio};

fn serve() -> Served {
    serve_with(&[], Stdio::null())
}

/// Runs `wsx` with `input` on stdin; exit code and stderr.
fn run(args: &[&str], input: &str) -> (i32, String) {
    let (code, _, err) = run_cmd(
        Command::new(WSX).args(args).env_remove("NO_COLOR"),
        input.as_bytes(),
    );
    (code, err)
}

/// The frame lines: `   0.012s → text ...` (the time column checked), time cut off.
fn frame_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(" → ") || l.contains(" ← "))
        .map(|l| {
            let (time, rest) = l.trim_start().split_once("s ").unwrap();
            let (secs, millis) = time.split_once('.').unwrap();
            assert!(secs.parse::<u64>().is_ok() && millis.len() == 3, "{l}");
            rest.to_owned()
        })
        .collect()
}

/// Replaces the random masking key with `K`.
fn unkey(line: &str) -> String {
    match line.split_once("masked:") {
        Some((a, b)) => format!("{a}masked:K{}", &b[8..]),
        None => line.to_owned(),
    }
}

#[test]
fn show_frames_prints_one_line_per_frame() {
    let s = serve();
    let url = format!("ws://{}/", s.1);
    let long = "compress me ".repeat(50);
    let input = format!("hello \"you\"\n{long}\n");
    let (code, err) = run(&["connect", "--show-frames", &url], &input);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains('\x1b'), "no colors on a pipe: {err:?}");
    let lines: Vec<String> = frame_lines(&err).iter().map(|l| unkey(l)).collect();
    let n = long.len();
    let preview = &long[..32];
    assert_eq!(lines.len(), 6, "{err}");
    // Echoes may arrive before or after the next line is sent: check each direction's order.
    let sent: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with('→'))
        .map(|l| l.as_str())
        .collect();
    let got: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with('←'))
        .map(|l| l.as_str())
        .collect();
    assert_eq!(sent.len(), 3, "{err}");
    assert_eq!(
        sent[0],
        "→ text   FIN masked:K  11 B  \"hello \\\"you\\\"\""
    );
    assert_eq!(got[0], "← text   FIN  11 B  \"hello \\\"you\\\"\"");
    // The long line is compressed, shown with both sizes (the wire size depends on the
    // compressor) and the start of the uncompressed text.
    for (line, start) in [
        (sent[1], "→ text   FIN compressed masked:K  "),
        (got[1], "← text   FIN compressed  "),
    ] {
        assert!(line.starts_with(start), "{line}");
        assert!(
            line.ends_with(&format!(" B ({n} B uncompressed)  \"{preview}\"…")),
            "{line}"
        );
    }
    assert_eq!(sent[2], "→ close  FIN masked:K  2 B  1000 (normal closure)");
    assert_eq!(got[2], "← close  FIN  2 B  1000 (normal closure)");
    assert_eq!(
        lines[5], got[2],
        "the server's close reply is the last frame"
    );

    // -v is the short form; without it nothing is printed.
    let (code, err) = run(&["connect", "-v", &url], "x\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(frame_lines(&err).len(), 4, "{err}");
    let (code, err) = run(&["connect", &url], "x\n");
    assert_eq!(code, 0, "{err}");
    assert!(frame_lines(&err).is_empty(), "{err}");
}
