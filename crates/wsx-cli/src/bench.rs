//! `wsx bench`: a closed-loop echo load generator.
//!
//! Every connection keeps `in_flight` messages outstanding: it sends, waits for each whole
//! echo, checks it byte for byte, records its round-trip time and sends the next. Without
//! compression it writes prebuilt masked frames and parses the echoes with the sans-I/O
//! frame parser, so the generator itself costs little; with `--deflate` it goes through the
//! `wsx` client (compression needs per-message state).
//!
//! `--fanout` runs the broadcast benchmark of [`crate::fanout`] instead; `--server-pid`
//! adds the server's CPU time and memory ([`crate::server_usage`]) to either report.

use crate::args::{parse_secs, secs};
use crate::fanout::{self, FanoutOptions};
use crate::server_usage::{Sampler, ServerUsage};
use anyhow::{bail, Context as _};
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx::{Bytes, Message};
use wsx_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use wsx_proto::handshake::client::ClientHandshake;
use wsx_proto::mask::apply_mask;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub url: String,
    pub connections: usize,
    pub size: usize,
    pub binary: bool,
    pub in_flight: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub deflate: bool,
    /// Measure this process's CPU time and memory (`--server-pid`).
    pub server_pid: Option<u32>,
}

/// Counters shared by all connections.
#[derive(Default)]
struct Shared {
    messages: AtomicU64,
    errors: AtomicU64,
    mismatches: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct BenchReport {
    pub connections: usize,
    pub size: usize,
    pub seconds: f64,
    pub messages: u64,
    pub errors: u64,
    pub mismatches: u64,
    pub latencies_us: Vec<u32>,
    /// With `--server-pid`.
    pub server: Option<ServerUsage>,
}

/// The `p` quantile (0 to 1) of sorted latencies in microseconds, in milliseconds (0 when
/// there are none).
pub(crate) fn percentile(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i] as f64 / 1000.0
}

impl BenchReport {
    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p)
    }

    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "connections": self.connections,
            "message_size": self.size,
            "seconds": self.seconds,
            "messages": self.messages,
            "messages_per_second": self.rate(),
            "mib_per_second": self.rate() * self.size as f64 / (1024.0 * 1024.0),
            "latency_ms": {
                "p50": self.percentile(0.50),
                "p90": self.percentile(0.90),
                "p99": self.percentile(0.99),
                "max": self.percentile(1.0),
            },
            "errors": self.errors,
            "mismatched_echoes": self.mismatches,
        });
        if let Some(s) = &self.server {
            v["server_cpu_s_per_million"] = s.cpu_s_per_million(self.messages).into();
            v["server_rss_kib"] = s.rss_kib.into();
        }
        v
    }

    /// The report as lines of text.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "{} connections x {} B, {:.1} s: {} messages, {:.0} msg/s, {:.2} MiB/s\n\
             latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}\n\
             errors: {}, mismatched echoes: {}",
            self.connections,
            self.size,
            self.seconds,
            self.messages,
            self.rate(),
            self.rate() * self.size as f64 / (1024.0 * 1024.0),
            self.percentile(0.50),
            self.percentile(0.90),
            self.percentile(0.99),
            self.percentile(1.0),
            self.errors,
            self.mismatches
        );
        if let Some(s) = &self.server {
            t += "\n";
            t += &s.line(self.messages, "messages");
        }
        t
    }
}

/// The message body: text-safe ASCII words, or a fixed byte pattern when binary.
pub(crate) fn payload(size: usize, binary: bool) -> Vec<u8> {
    if binary {
        (0..size).map(|i| (i * 31 % 251) as u8).collect()
    } else {
        let words = b"wsx bench payload ";
        (0..size).map(|i| words[i % words.len()]).collect()
    }
}

/// Runs the benchmark.
pub async fn run(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    if opts.connections == 0 || opts.in_flight == 0 {
        bail!("--connections and --in-flight must be at least 1");
    }
    let shared = Arc::new(Shared::default());
    let mut sampler = opts.server_pid.map(Sampler::new);
    let body = Arc::new(payload(opts.size, opts.binary));
    let mut tasks = Vec::with_capacity(opts.connections);
    // Open the connections first (in batches, so a large count does not flood the accept
    // queue), then start the clock.
    let mut conns = Vec::with_capacity(opts.connections);
    for chunk_start in (0..opts.connections).step_by(256) {
        let n = 256.min(opts.connections - chunk_start);
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            batch.push(tokio::spawn(open(opts.clone())));
        }
        for b in batch {
            conns.push(b.await??);
        }
    }
    let progress = progress_bar(opts.duration + opts.warmup);
    for conn in conns {
        let shared = shared.clone();
        let body = body.clone();
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            drive(conn, opts, body, shared).await
        }));
    }
    let ticker = progress.map(|bar| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.set_position(start.elapsed().as_millis() as u64);
                bar.set_message(format!(
                    "{} messages",
                    shared.messages.load(Ordering::Relaxed)
                ));
                if shared.stop.load(Ordering::Relaxed) {
                    bar.finish_and_clear();
                    break;
                }
            }
        })
    });
    tokio::time::sleep(opts.warmup).await;
    shared.messages.store(0, Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Relaxed);
    if let Some(s) = &mut sampler {
        s.start();
    }
    let start = Instant::now();
    tokio::time::sleep(opts.duration).await;
    let seconds = start.elapsed().as_secs_f64();
    let server = sampler.map(|s| s.finish());
    let messages = shared.messages.load(Ordering::Relaxed);
    shared.measuring.store(false, Ordering::Relaxed);
    shared.stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let grace = tokio::time::Instant::now() + Duration::from_secs(5);
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(grace, t).await {
            Ok(Ok(Ok(mut l))) => latencies.append(&mut l),
            Ok(Ok(Err(e))) => {
                tracing::warn!("connection failed: {e:#}");
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(_)) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                abort.abort();
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if let Some(t) = ticker {
        let _ = t.await;
    }
    latencies.sort_unstable();
    Ok(BenchReport {
        connections: opts.connections,
        size: opts.size,
        seconds,
        messages,
        errors: shared.errors.load(Ordering::Relaxed),
        mismatches: shared.mismatches.load(Ordering::Relaxed),
        latencies_us: latencies,
        server,
    })
}

/// A progress bar over `total` on stderr, when stderr is a terminal.
pub(crate) fn progress_bar(total: Duration) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

enum Conn {
    Raw(TcpStream, Vec<u8>),
    Ws(Box<wsx::WebSocket<wsx::MaybeTlsStream>>),
}

async fn open(opts: BenchOptions) -> anyhow::Result<Conn> {
    let target = wsx_proto::handshake::client::Target::parse(&opts.url)?;
    if opts.deflate || target.tls {
        let config = {
            let mut c = wsx::Config::default();
            c.deflate = opts.deflate.then(|| {
                let mut c = wsx::DeflateConfig::default();
                c.threshold = 0;
                c
            });
            c
        };
        let ws = wsx::ClientBuilder::new(opts.url.clone())
            .config(config)
            .danger_accept_invalid_certs(true)
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", opts.url))?;
        return Ok(Conn::Ws(Box::new(ws)));
    }
    let (tcp, leftover) = open_raw(&opts.url, &target).await?;
    Ok(Conn::Raw(tcp, leftover))
}

/// A plain-TCP connection to `url` (whose parsed form is `target`) with the handshake done
/// by hand (no extensions): the stream, and whatever arrived after the response.
pub(crate) async fn open_raw(
    url: &str,
    target: &wsx_proto::handshake::client::Target,
) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let mut tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .with_context(|| format!("cannot connect to {}:{}", target.host, target.port))?;
    tcp.set_nodelay(true)?;
    let (hs, request) = ClientHandshake::builder(url)?.build()?;
    tcp.write_all(&request).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((resp, n)) = hs.parse_response(&buf)? {
            hs.finish(resp)?;
            buf.drain(..n);
            return Ok((tcp, buf));
        }
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed during the handshake");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The least free space a read of echoes gets (more when one echo is larger).
pub(crate) const READ_ROOM: usize = 64 * 1024;

/// One connection's closed loop; returns its latencies in microseconds.
async fn drive(
    conn: Conn,
    opts: BenchOptions,
    body: Arc<Vec<u8>>,
    shared: Arc<Shared>,
) -> anyhow::Result<Vec<u32>> {
    match conn {
        Conn::Raw(tcp, leftover) => drive_raw(tcp, leftover, &opts, &body, &shared).await,
        Conn::Ws(ws) => drive_ws(*ws, &opts, &body, &shared).await,
    }
}

async fn drive_raw(
    mut tcp: TcpStream,
    mut buf: Vec<u8>,
    opts: &BenchOptions,
    body: &[u8],
    shared: &Shared,
) -> anyhow::Result<Vec<u32>> {
    // One prebuilt masked frame, sent again and again.
    let opcode = if opts.binary {
        OpCode::Binary
    } else {
        OpCode::Text
    };
    let key = rand_key();
    let header = FrameHeader {
        mask: Some(key),
        ..FrameHeader::new(true, opcode, body.len() as u64)
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut frame = head[..n].to_vec();
    let start = frame.len();
    frame.extend_from_slice(body);
    apply_mask(&mut frame[start..], key);

    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(opts.in_flight);
    let mut latencies = Vec::new();
    let mut burst = Vec::with_capacity(frame.len() * opts.in_flight);
    for _ in 0..opts.in_flight {
        burst.extend_from_slice(&frame);
        sent_at.push_back(Instant::now());
    }
    tcp.write_all(&burst).await?;
    loop {
        // Parse every complete echo in the buffer.
        let mut pos = 0;
        let mut to_send = 0;
        loop {
            let Some((h, hn)) = FrameHeader::parse(&buf[pos..])
                .map_err(|e| anyhow::anyhow!("bad frame from server: {e:?}"))?
            else {
                break;
            };
            // No echo is larger than what was sent (a control frame at most 125 bytes): a
            // larger frame is refused here rather than buffered until it completes.
            let largest = body.len().max(125);
            let len = match usize::try_from(h.payload_len) {
                Ok(len) if len <= largest => len,
                _ => bail!(
                    "server sent a {}-byte frame, larger than any echo ({largest} bytes)",
                    h.payload_len
                ),
            };
            if buf.len() - pos < hn + len {
                break;
            }
            let data = &buf[pos + hn..pos + hn + len];
            pos += hn + len;
            match h.opcode {
                OpCode::Text | OpCode::Binary => {
                    if data != body || !h.fin {
                        shared.mismatches.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(t) = sent_at.pop_front() {
                        if shared.measuring.load(Ordering::Relaxed) {
                            latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            shared.messages.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    to_send += 1;
                }
                OpCode::Close => bail!("server closed the connection"),
                _ => {} // pings are rare here; a benchmark does not answer them
            }
        }
        buf.drain(..pos);
        if shared.stop.load(Ordering::Relaxed) {
            let _ = tcp.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]).await;
            return Ok(latencies);
        }
        if to_send > 0 {
            // One echo back (the usual case): the prebuilt frame itself, not a copy of it
            // (at 16 KiB the copies made the generator the bottleneck).
            let out = if to_send == 1 {
                &frame
            } else {
                burst.clear();
                for _ in 0..to_send {
                    burst.extend_from_slice(&frame);
                }
                &burst
            };
            for _ in 0..to_send {
                sent_at.push_back(Instant::now());
            }
            tcp.write_all(out).await?;
        }
        // Echoes are always in flight, so a read completes while the server works; a dead
        // server is bounded by the grace period in `run`. Read straight into the parse
        // buffer, with room for a whole echo.
        if buf.capacity() - buf.len() < READ_ROOM.min(frame.len()) {
            buf.reserve(READ_ROOM.max(frame.len()));
        }
        let n = tcp.read_buf(&mut buf).await?;
        if n == 0 {
            bail!("server closed the connection");
        }
    }
}

async fn drive_ws(
    mut ws: wsx::WebSocket<wsx::MaybeTlsStream>,
    opts: &BenchOptions,
    body: &[u8],
    shared: &Shared,
) -> anyhow::Result<Vec<u32>> {
    let msg = if opts.binary {
        Message::Binary(Bytes::copy_from_slice(body))
    } else {
        Message::Text(String::from_utf8_lossy(body).into_owned().into())
    };
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(opts.in_flight);
    let mut latencies = Vec::new();
    for _ in 0..opts.in_flight {
        ws.send(msg.clone()).await?;
        sent_at.push_back(Instant::now());
    }
    loop {
        match ws.next().await {
            Some(Ok(m)) if m.is_data() => {
                if m != msg {
                    shared.mismatches.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(t) = sent_at.pop_front() {
                    if shared.measuring.load(Ordering::Relaxed) {
                        latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        shared.messages.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                ws.send(msg.clone()).await?;
                sent_at.push_back(Instant::now());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("server closed the connection"),
        }
    }
    let _ = ws.close(None).await;
    Ok(latencies)
}

/// A random masking key.
pub(crate) fn rand_key() -> [u8; 4] {
    let k = wsx_proto::handshake::generate_key();
    let b = k.as_bytes();
    [b[0], b[1], b[2], b[3]]
}

/// Closed-loop echo load, or fan-out load with `--fanout`.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// ws:// or wss:// URL of an echo server (with --fanout: ws:// URL of a broadcast
    /// server).
    pub url: String,
    /// Fan-out: one publisher and --connections subscribers; the server must deliver each
    /// message to every connection but its sender (`wsx serve --broadcast`). Every
    /// subscriber checks every message (order and bytes). ws:// only; no --deflate.
    #[arg(long)]
    pub fanout: bool,
    /// With --fanout: the server is a hub speaking Centrifugo's client protocol (`wsx hub
    /// --allow-anonymous --allow-subscribe --allow-publish`, Centrifugo); every connection
    /// subscribes to CHANNEL and the publisher publishes to it.
    #[arg(long, value_name = "CHANNEL", requires = "fanout")]
    pub hub: Option<String>,
    /// With --fanout: subscribers connect here instead of to URL, spread evenly when given
    /// several times (the publisher stays on URL): several hub nodes sharing one Redis.
    #[arg(long, value_name = "URL", requires = "fanout")]
    pub subscribe_url: Vec<String>,
    /// Concurrent connections (with --fanout: subscribers, besides the publisher).
    #[arg(short = 'c', long, default_value_t = 100)]
    pub connections: usize,
    /// Message size in bytes (with --fanout: at least 8).
    #[arg(short = 's', long, default_value_t = 20)]
    pub size: usize,
    /// Send binary messages (default: text).
    #[arg(long)]
    pub binary: bool,
    /// Messages in flight per connection (with --fanout: publications in flight, each
    /// complete once every subscriber has it).
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// Measured seconds.
    #[arg(short = 'd', long, default_value_t = 10.0, value_parser = parse_secs)]
    pub duration: f64,
    /// Unmeasured seconds before the measurement.
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    pub warmup: f64,
    /// Negotiate permessage-deflate (uses the full client instead of prebuilt frames).
    #[arg(long)]
    pub deflate: bool,
    /// Worker threads (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The server's process id: report its CPU seconds per million messages (deliveries
    /// with --fanout) over the measured window, and its resident memory at the end
    /// (Linux, from /proc).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

/// Runs `wsx bench` and prints its report; fails when any echo was wrong or lost.
pub async fn run_cmd(b: BenchArgs) -> anyhow::Result<ExitCode> {
    let duration = secs(b.duration).unwrap_or(Duration::from_secs(1));
    let warmup = secs(b.warmup).unwrap_or_default();
    if b.fanout {
        if b.deflate {
            bail!("--fanout does not support --deflate: it sends prebuilt uncompressed frames");
        }
        let opts = FanoutOptions {
            url: b.url,
            subscribers: b.connections,
            size: b.size,
            binary: b.binary,
            in_flight: b.in_flight,
            duration,
            warmup,
            server_pid: b.server_pid,
            hub: b.hub,
            subscribe_urls: b.subscribe_url,
        };
        return fanout::run_cmd(opts, b.json).await;
    }
    let report = run(BenchOptions {
        url: b.url,
        connections: b.connections,
        size: b.size,
        binary: b.binary,
        in_flight: b.in_flight,
        duration,
        warmup,
        deflate: b.deflate,
        server_pid: b.server_pid,
    })
    .await?;
    if b.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    Ok(if report.errors == 0 && report.mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
