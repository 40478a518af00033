//! `wsx bench --fanout`: a closed-loop fan-out (broadcast) load generator.
//!
//! S subscriber connections only read. One more connection, the publisher, sends
//! publications, which the server is expected to deliver to every connection except the
//! sender (`wsx serve --broadcast`, uWebSockets' `publish`). A publication is complete when
//! every subscriber has it; the publisher keeps a window of `in_flight` (W) sequence
//! numbers outstanding, publication n + W going out once n is complete.
//!
//! Publication n's payload is `--size` bytes: n in the first 8, then a fixed filler (the
//! echo mode's). In binary messages n is a u64, big-endian; a text message must be UTF-8, so
//! there the low 48 bits of n are written as 8 base64url digits, most significant first.
//! Every subscriber checks every message: a data frame, unmasked, unfragmented, no reserved
//! bits, of the opcode sent, and its payload byte for byte what its next sequence number
//! (0, 1, 2, ...) must produce. A wrong message is a mismatch; a masked or fragmented
//! frame, a close frame or a broken connection is an error for that subscriber, which stops.
//!
//! Accounting: slot n % W counts the subscribers still lacking publication n. A subscriber
//! credits each data message it receives to its next sequence number (so a mismatch does
//! not stall the loop), and the one whose delivery takes the count to zero tells the
//! publisher, with the time: latency is publish to last delivery. The publisher also reads
//! its own socket all along (so the server never blocks writing to it) and discards what
//! arrives; data there (a server that also delivers to the sender, or echoes) is counted
//! and warned about, not an error.
//!
//! Like the echo mode it writes prebuilt masked frames and parses with the sans-I/O frame
//! parser; only plain `ws://`, without compression.
//!
//! With `--hub CHANNEL` the connections speak Centrifugo's client protocol (JSON) to a hub
//! (`wsx hub`, Centrifugo): each sends `connect` and `subscribe` in one frame and waits for
//! the replies before the run starts; the publisher (subscribed too: hubs let only
//! subscribers publish) sends `{"id":3,"publish":{"channel":..,"data":"<payload>"}}` and
//! discards what comes back; subscribers take the payload out of each `pub` push (`"data":"`
//! up to the closing quote) and check it as above. Pings (`{}`) and other replies are
//! skipped.

use crate::bench::{open_raw, payload, percentile, progress_bar, rand_key, READ_ROOM};
use crate::server_usage::{Sampler, ServerUsage};
use anyhow::{anyhow, bail};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use wsx_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use wsx_proto::handshake::client::Target;
use wsx_proto::mask::apply_mask;

/// What to run.
#[derive(Clone, Debug)]
pub struct FanoutOptions {
    pub url: String,
    pub subscribers: usize,
    pub size: usize,
    pub binary: bool,
    pub in_flight: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub server_pid: Option<u32>,
    /// Speak Centrifugo's client protocol (`wsx hub`, Centrifugo): every connection
    /// connects (anonymously) and subscribes to this channel; the publisher publishes to
    /// it with `publish` commands.
    pub hub: Option<String>,
    /// Where subscribers connect, in turn (empty: `url`).
    pub subscribe_urls: Vec<String>,
}

/// The smallest `--size`: the sequence number's 8 bytes.
pub const MIN_SIZE: usize = 8;

/// Connections opened at once (so a large count does not flood the accept queue).
const CONNECT_BATCH: usize = 256;

/// The pause between the last handshake and the first publication, so that the server has
/// subscribed every connection (a server may do so just after it answers the handshake).
const SETTLE: Duration = Duration::from_millis(200);

/// File descriptors kept free besides one per subscriber (the publisher, stdio, the
/// runtime's own).
const SPARE_FDS: u64 = 10;

/// Failures and mismatches described in full; the rest are only counted.
const LOGGED: u32 = 5;

/// A masked close frame with code 1000 (mask 0).
const CLOSE_FRAME: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8];

/// The digits of a text publication's sequence number (base64url).
const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The publications' contents, as the publisher writes them and subscribers check them.
struct Publications {
    /// The payload with the sequence number's 8 bytes still to write.
    filler: Vec<u8>,
    binary: bool,
    /// With `--hub`: the channel.
    hub: Option<String>,
}

impl Publications {
    fn new(size: usize, binary: bool, hub: Option<String>) -> Self {
        Publications {
            filler: payload(size, binary),
            binary,
            hub,
        }
    }

    /// What the publisher's message holds before and after the payload (with `--hub`, the
    /// `publish` command around it).
    fn envelope(&self) -> (Vec<u8>, Vec<u8>) {
        match &self.hub {
            None => (Vec::new(), Vec::new()),
            Some(channel) => {
                let head = format!(
                    "{{\"id\":3,\"publish\":{{\"channel\":{},\"data\":\"",
                    serde_json::Value::from(channel.as_str())
                );
                (head.into_bytes(), b"\"}}".to_vec())
            }
        }
    }

    /// The payload in a received message: the whole message, or with `--hub` the data of
    /// a `pub` push (`None` for pings, replies and other pushes).
    fn unwrap<'a>(&self, data: &'a [u8]) -> Option<&'a [u8]> {
        if self.hub.is_none() {
            return Some(data);
        }
        const PUB: &[u8] = b"\"pub\":{\"data\":\"";
        let start = data.windows(PUB.len()).position(|w| w == PUB)? + PUB.len();
        // Where a payload of the right size ends (the load generator's own cost matters
        // here: a byte-by-byte scan for the quote would make it the bottleneck).
        let end = start + self.filler.len();
        if data.get(end) == Some(&b'"') {
            return Some(&data[start..end]);
        }
        let len = data[start..].iter().position(|&b| b == b'"')?;
        Some(&data[start..start + len])
    }

    fn opcode(&self) -> OpCode {
        if self.binary {
            OpCode::Binary
        } else {
            OpCode::Text
        }
    }

    /// The first 8 bytes of publication `seq`.
    fn prefix(&self, seq: u64) -> [u8; 8] {
        if self.binary {
            return seq.to_be_bytes();
        }
        let mut out = [0u8; 8];
        for (i, b) in out.iter_mut().enumerate() {
            *b = DIGITS[((seq >> (6 * (7 - i))) & 63) as usize];
        }
        out
    }

    /// The sequence number in a payload's first 8 bytes, if they hold one.
    fn seq_of(&self, data: &[u8]) -> Option<u64> {
        let head: [u8; 8] = data.get(..8)?.try_into().ok()?;
        if self.binary {
            return Some(u64::from_be_bytes(head));
        }
        head.iter().try_fold(0u64, |n, &b| {
            let d = DIGITS.iter().position(|&x| x == b)?;
            Some((n << 6) | d as u64)
        })
    }

    /// Whether `data` is publication `seq`'s payload, byte for byte.
    fn matches(&self, seq: u64, data: &[u8]) -> bool {
        data.len() == self.filler.len()
            && data[..8] == self.prefix(seq)
            && data[8..] == self.filler[8..]
    }
}

/// State shared by the publisher, the subscribers and the clock.
struct Shared {
    /// Per slot (sequence number % in_flight): subscribers still lacking its publication.
    remaining: Box<[AtomicU32]>,
    /// Publications sent so far, which is the next sequence number.
    published: AtomicU64,
    /// Publications completed inside the measured window.
    completed: AtomicU64,
    /// Publications completed at all (warm-up included).
    completed_ever: AtomicU64,
    errors: AtomicU64,
    mismatches: AtomicU64,
    /// Mismatches described in a warning so far.
    mismatches_logged: AtomicU32,
    /// Data messages the publisher received (a broadcast excluding the sender sends none).
    publisher_received: AtomicU64,
    measuring: AtomicBool,
    /// The run is over: a connection closing now is not an error.
    stopping: AtomicBool,
}

/// The outcome of a fan-out run.
#[derive(Debug)]
pub struct FanoutReport {
    pub subscribers: usize,
    pub size: usize,
    pub in_flight: usize,
    pub seconds: f64,
    /// Publications completed (delivered to every subscriber) inside the window.
    pub publications: u64,
    /// Publications completed at all, warm-up included.
    pub publications_ever: u64,
    pub errors: u64,
    pub mismatches: u64,
    /// Data messages the publisher received and discarded.
    pub publisher_received: u64,
    /// Publish to last delivery, per publication completed inside the window, sorted.
    pub latencies_us: Vec<u32>,
    /// With `--server-pid`.
    pub server: Option<ServerUsage>,
}

impl FanoutReport {
    /// Deliveries inside the window: every completed publication reached every subscriber.
    pub fn deliveries(&self) -> u64 {
        self.publications * self.subscribers as u64
    }

    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.deliveries() as f64 / self.seconds
    }

    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "mode": "fanout",
            "subscribers": self.subscribers,
            "message_size": self.size,
            "in_flight": self.in_flight,
            "seconds": self.seconds,
            "publications": self.publications,
            "publications_per_second": self.publications as f64 / self.seconds,
            "deliveries": self.deliveries(),
            "deliveries_per_second": self.rate(),
            "latency_ms": {
                "p50": self.percentile(0.50),
                "p90": self.percentile(0.90),
                "p99": self.percentile(0.99),
                "max": self.percentile(1.0),
            },
            "errors": self.errors,
            "mismatches": self.mismatches,
            "publisher_received": self.publisher_received,
        });
        if let Some(s) = &self.server {
            v["server_cpu_s_per_million"] = s.cpu_s_per_million(self.deliveries()).into();
            v["server_rss_kib"] = s.rss_kib.into();
        }
        v
    }

    /// The report as lines of text.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "fan-out: {} subscribers x {} B, {} in flight, {:.1} s: {} publications, \
             {} deliveries, {:.0} deliveries/s\n\
             latency ms (publish -> last delivery): p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}\n\
             errors: {}, mismatches: {}",
            self.subscribers,
            self.size,
            self.in_flight,
            self.seconds,
            self.publications,
            self.deliveries(),
            self.rate(),
            self.percentile(0.50),
            self.percentile(0.90),
            self.percentile(0.99),
            self.percentile(1.0),
            self.errors,
            self.mismatches,
        );
        if self.publisher_received > 0 {
            t += &format!(
                ", data messages to the publisher (ignored): {}",
                self.publisher_received
            );
        }
        if let Some(s) = &self.server {
            t += "\n";
            t += &s.line(self.deliveries(), "deliveries");
        }
        t
    }
}

/// Fails when `subscribers` connections (plus [`SPARE_FDS`]) would not fit under the
/// process's open file limit.
fn check_fd_limit(subscribers: usize) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let need = subscribers as u64 + SPARE_FDS;
        if let Some(soft) = limit.current.filter(|&soft| need > soft) {
            let hard = limit
                .maximum
                .map_or("unlimited".to_string(), |h| h.to_string());
            bail!(
                "{subscribers} subscribers need {need} file descriptors (one each, plus \
                 {SPARE_FDS} for the publisher and the rest), but the open file limit \
                 (RLIMIT_NOFILE) is {soft} (hard limit {hard}): raise it (`ulimit -n`) \
                 or use fewer --connections"
            );
        }
    }
    Ok(())
}

/// Runs the fan-out benchmark.
pub async fn run(opts: FanoutOptions) -> anyhow::Result<FanoutReport> {
    if opts.subscribers == 0 || opts.in_flight == 0 {
        bail!("--connections and --in-flight must be at least 1");
    }
    let subscribers = u32::try_from(opts.subscribers)
        .map_err(|_| anyhow!("--connections {} is too many", opts.subscribers))?;
    if opts.size < MIN_SIZE {
        bail!(
            "--fanout needs --size of at least {MIN_SIZE} bytes (a publication starts with \
             its 8-byte sequence number); got {}",
            opts.size
        );
    }
    if opts.hub.is_some() && opts.binary {
        bail!("--hub publishes JSON text: it does not take --binary");
    }
    let target = Target::parse(&opts.url)?;
    let mut sub_targets = Vec::new();
    for url in &opts.subscribe_urls {
        sub_targets.push((url.clone(), Target::parse(url)?));
    }
    if sub_targets.is_empty() {
        sub_targets.push((opts.url.clone(), target.clone()));
    }
    if let Some((url, _)) = std::iter::once((&opts.url, &target))
        .chain(sub_targets.iter().map(|(u, t)| (u, t)))
        .find(|(_, t)| t.tls)
    {
        bail!("--fanout supports only plain ws:// URLs, not wss:// (got {url})");
    }
    check_fd_limit(opts.subscribers)?;
    let mut sampler = opts.server_pid.map(Sampler::new);
    let pubs = Arc::new(Publications::new(opts.size, opts.binary, opts.hub.clone()));
    let shared = Arc::new(Shared {
        remaining: (0..opts.in_flight).map(|_| AtomicU32::new(0)).collect(),
        published: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        completed_ever: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        mismatches: AtomicU64::new(0),
        mismatches_logged: AtomicU32::new(0),
        publisher_received: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
    });

    // Every connection is open (handshake done) before anything is published.
    let mut conns = Vec::with_capacity(opts.subscribers);
    for chunk_start in (0..opts.subscribers).step_by(CONNECT_BATCH) {
        let n = CONNECT_BATCH.min(opts.subscribers - chunk_start);
        let mut batch = Vec::with_capacity(n);
        for i in chunk_start..chunk_start + n {
            let (url, target) = sub_targets[i % sub_targets.len()].clone();
            let hub = opts.hub.clone();
            batch.push(tokio::spawn(async move {
                let (tcp, leftover) = open_raw(&url, &target).await?;
                match hub {
                    Some(channel) => hub_join(tcp, leftover, &channel).await,
                    None => Ok((tcp, leftover)),
                }
            }));
        }
        for b in batch {
            conns.push(b.await??);
        }
    }
    let (publisher_tcp, publisher_leftover) = open_raw(&opts.url, &target).await?;
    let (publisher_tcp, publisher_leftover) = match &opts.hub {
        Some(channel) => hub_join(publisher_tcp, publisher_leftover, channel).await?,
        None => (publisher_tcp, publisher_leftover),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut subs = Vec::with_capacity(opts.subscribers);
    for (index, (tcp, leftover)) in conns.into_iter().enumerate() {
        let sub = Subscriber {
            index,
            pubs: pubs.clone(),
            shared: shared.clone(),
            done: done_tx.clone(),
            in_flight: opts.in_flight as u64,
        };
        let stop = stop_rx.clone();
        subs.push(tokio::spawn(sub.run(tcp, leftover, stop)));
    }
    drop(done_tx);
    tokio::time::sleep(SETTLE).await;

    let progress = progress_bar(opts.duration + opts.warmup);
    let publisher = Publisher {
        pubs: pubs.clone(),
        shared: shared.clone(),
        in_flight: opts.in_flight as u64,
        subscribers,
    };
    let publisher =
        tokio::spawn(publisher.run(publisher_tcp, publisher_leftover, done_rx, stop_rx.clone()));
    let ticker = progress.map(|bar| {
        let shared = shared.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => {
                        bar.finish_and_clear();
                        break;
                    }
                }
                bar.set_position(start.elapsed().as_millis() as u64);
                bar.set_message(format!(
                    "{} publications",
                    shared.completed_ever.load(Ordering::Relaxed)
                ));
            }
        })
    });

    tokio::time::sleep(opts.warmup).await;
    shared.measuring.store(true, Ordering::Relaxed);
    if let Some(s) = &mut sampler {
        s.start();
    }
    // For scripts that measure the server over the same window (RUST_LOG=wsx::fanout=debug).
    tracing::debug!("measured window starts");
    let start = Instant::now();
    tokio::time::sleep(opts.duration).await;
    let seconds = start.elapsed().as_secs_f64();
    let server = sampler.map(|s| s.finish());
    shared.measuring.store(false, Ordering::Relaxed);
    tracing::debug!("measured window ends");
    let publications = shared.completed.load(Ordering::Relaxed);
    shared.stopping.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);

    let grace = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut latencies = Vec::new();
    match join(publisher, grace).await {
        Ok((l, failure)) => {
            latencies = l;
            if let Some(e) = failure {
                tracing::warn!("publisher failed: {e:#}");
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(e) => {
            tracing::warn!("publisher failed: {e:#}");
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut failed = 0usize;
    for (index, sub) in subs.into_iter().enumerate() {
        if let Err(e) = join(sub, grace).await {
            failed += 1;
            if failed <= LOGGED as usize {
                tracing::warn!("subscriber {index} failed: {e:#}");
            }
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    if failed > LOGGED as usize {
        tracing::warn!(
            "{} more subscribers failed ({failed} in all)",
            failed - LOGGED as usize
        );
    }
    if let Some(t) = ticker {
        let _ = t.await;
    }
    let publisher_received = shared.publisher_received.load(Ordering::Relaxed);
    // A hub's publisher is a subscriber too, and gets replies: expected.
    if publisher_received > 0 && opts.hub.is_none() {
        tracing::warn!(
            "the publisher received {publisher_received} data messages (discarded): the \
             server does not exclude the sender (or it echoes)"
        );
    }
    latencies.sort_unstable();
    Ok(FanoutReport {
        subscribers: opts.subscribers,
        size: opts.size,
        in_flight: opts.in_flight,
        seconds,
        publications,
        publications_ever: shared.completed_ever.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        mismatches: shared.mismatches.load(Ordering::Relaxed),
        publisher_received,
        latencies_us: latencies,
        server,
    })
}

/// A task's result by `deadline` (then it is aborted and counts as failed).
async fn join<T>(
    task: tokio::task::JoinHandle<anyhow::Result<T>>,
    deadline: tokio::time::Instant,
) -> anyhow::Result<T> {
    let abort = task.abort_handle();
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(anyhow!("task ended abnormally: {e}")),
        Err(_) => {
            abort.abort();
            Err(anyhow!("still running 5 s after the end (aborted)"))
        }
    }
}

/// The publishing connection.
struct Publisher {
    pubs: Arc<Publications>,
    shared: Arc<Shared>,
    in_flight: u64,
    subscribers: u32,
}

impl Publisher {
    /// Publishes until told to stop. Returns the latencies (microseconds) of the
    /// publications completed inside the window, and why publishing ended early if it did
    /// (the latencies until then still count).
    async fn run(
        self,
        tcp: TcpStream,
        leftover: Vec<u8>,
        done: mpsc::UnboundedReceiver<(u64, Instant)>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<(Vec<u32>, Option<anyhow::Error>)> {
        let mut latencies = Vec::new();
        let failure = self
            .publish(tcp, leftover, done, stop, &mut latencies)
            .await
            .err();
        Ok((latencies, failure))
    }

    async fn publish(
        &self,
        tcp: TcpStream,
        leftover: Vec<u8>,
        mut done: mpsc::UnboundedReceiver<(u64, Instant)>,
        mut stop: watch::Receiver<bool>,
        latencies: &mut Vec<u32>,
    ) -> anyhow::Result<()> {
        let (rd, mut wr) = tcp.into_split();
        let mut reader = tokio::spawn(discard(rd, leftover, self.shared.clone()));

        // One prebuilt masked frame; each publication rewrites its first 8 payload bytes.
        let key = rand_key();
        let (before, after) = self.pubs.envelope();
        let len = before.len() + self.pubs.filler.len() + after.len();
        let header = FrameHeader {
            mask: Some(key),
            ..FrameHeader::new(true, self.pubs.opcode(), len as u64)
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        let mut frame = head[..head_len].to_vec();
        frame.extend_from_slice(&before);
        frame.extend_from_slice(&self.pubs.filler);
        frame.extend_from_slice(&after);
        apply_mask(&mut frame[head_len..], key);
        // Where the sequence number goes, and the mask's phase there.
        let at = head_len + before.len();
        let stamp = |frame: &mut [u8], seq: u64| {
            let prefix = self.pubs.prefix(seq);
            for (i, b) in prefix.iter().enumerate() {
                frame[at + i] = b ^ key[(before.len() + i) % 4];
            }
        };

        let w = self.in_flight;
        // Per slot: when its publication went out, while it is incomplete.
        let mut sent_at: Vec<Option<Instant>> = vec![None; w as usize];
        // The window: publications base..next are out, the complete ones with `None`.
        let (mut base, mut next) = (0u64, 0u64);
        let mut burst = Vec::new();
        let mut subscribers_gone = false;
        loop {
            // Publish what the window allows, in one write.
            let n = (base + w - next) as usize;
            if n > 0 {
                let now = Instant::now();
                burst.clear();
                for _ in 0..n {
                    let slot = (next % w) as usize;
                    self.shared.remaining[slot].store(self.subscribers, Ordering::Relaxed);
                    sent_at[slot] = Some(now);
                    stamp(&mut frame, next);
                    if n > 1 {
                        burst.extend_from_slice(&frame);
                    }
                    next += 1;
                    // Release: a subscriber that sees the publication counted sees its
                    // slot's count.
                    self.shared.published.store(next, Ordering::Release);
                }
                wr.write_all(if n > 1 { &burst } else { &frame }).await?;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                r = &mut reader => {
                    return Err(match r {
                        Ok(Ok(())) => anyhow!("server closed the publisher's connection"),
                        Ok(Err(e)) => e.context("publisher's connection"),
                        Err(e) => anyhow!("publisher's reader ended abnormally: {e}"),
                    });
                }
                first = done.recv(), if !subscribers_gone => {
                    let Some(first) = first else {
                        // Every subscriber has failed: nothing completes any more.
                        subscribers_gone = true;
                        continue;
                    };
                    let mut c = Some(first);
                    while let Some((seq, at)) = c {
                        if (base..next).contains(&seq) {
                            if let Some(t) = sent_at[(seq % w) as usize].take() {
                                self.shared.completed_ever.fetch_add(1, Ordering::Relaxed);
                                if self.shared.measuring.load(Ordering::Relaxed) {
                                    let us = at.saturating_duration_since(t).as_micros();
                                    latencies.push(us.min(u32::MAX as u128) as u32);
                                    self.shared.completed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        c = done.try_recv().ok();
                    }
                    while base < next && sent_at[(base % w) as usize].is_none() {
                        base += 1;
                    }
                }
            }
        }
        let _ = wr.write_all(&CLOSE_FRAME).await;
        // The server's close (or EOF) ends the reader; not waited for long.
        if tokio::time::timeout(Duration::from_secs(1), &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
        Ok(())
    }
}

/// Connects (anonymously) and subscribes to `channel` in Centrifugo's client protocol, and
/// waits for both replies. Returns what was read after them.
async fn hub_join(
    mut tcp: TcpStream,
    mut buf: Vec<u8>,
    channel: &str,
) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let commands = format!(
        "{{\"id\":1,\"connect\":{{}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":{}}}}}",
        serde_json::Value::from(channel)
    );
    let key = rand_key();
    let header = FrameHeader {
        mask: Some(key),
        ..FrameHeader::new(true, OpCode::Text, commands.len() as u64)
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let head_len = header.encode(&mut head);
    let mut frame = head[..head_len].to_vec();
    frame.extend_from_slice(commands.as_bytes());
    apply_mask(&mut frame[head_len..], key);
    tcp.write_all(&frame).await?;
    loop {
        let mut pos = 0;
        while let Some((h, hn)) =
            FrameHeader::parse(&buf[pos..]).map_err(|e| anyhow!("bad frame from server: {e:?}"))?
        {
            let len = h.payload_len as usize;
            if buf.len() - pos < hn + len {
                break;
            }
            let data = &buf[pos + hn..pos + hn + len];
            pos += hn + len;
            if h.opcode == OpCode::Close {
                bail!("the hub closed the connection{}", close_info(data));
            }
            let text = String::from_utf8_lossy(data);
            for line in text.lines() {
                if line.contains("\"error\"") {
                    bail!("the hub refused: {line}");
                }
                if line.starts_with("{\"id\":2,") {
                    buf.drain(..pos);
                    return Ok((tcp, buf));
                }
            }
        }
        buf.drain(..pos);
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            bail!("the hub closed the connection before subscribing it");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The publisher's reading side: discards everything (counting data messages), without
/// buffering more than a read's worth, until the server closes.
async fn discard(
    mut rd: OwnedReadHalf,
    mut buf: Vec<u8>,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    // Payload bytes of the current frame still to skip.
    let mut skip = 0u64;
    loop {
        let mut pos = 0;
        loop {
            if skip > 0 {
                let n = skip.min((buf.len() - pos) as u64);
                pos += n as usize;
                skip -= n;
                if skip > 0 {
                    break;
                }
            }
            let Some((h, hn)) = FrameHeader::parse(&buf[pos..])
                .map_err(|e| anyhow!("bad frame from server: {e:?}"))?
            else {
                break;
            };
            pos += hn;
            skip = h.payload_len;
            match h.opcode {
                OpCode::Text | OpCode::Binary => {
                    shared.publisher_received.fetch_add(1, Ordering::Relaxed);
                }
                OpCode::Close if shared.stopping.load(Ordering::Relaxed) => return Ok(()),
                OpCode::Close => bail!("server closed the connection"),
                _ => {}
            }
        }
        buf.drain(..pos);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_ROOM);
        }
        if rd.read_buf(&mut buf).await? == 0 {
            if shared.stopping.load(Ordering::Relaxed) {
                return Ok(());
            }
            bail!("server closed the connection");
        }
    }
}

/// One subscribing connection.
struct Subscriber {
    index: usize,
    pubs: Arc<Publications>,
    shared: Arc<Shared>,
    done: mpsc::UnboundedSender<(u64, Instant)>,
    in_flight: u64,
}

impl Subscriber {
    /// Reads and checks publications until told to stop.
    async fn run(
        self,
        mut tcp: TcpStream,
        mut buf: Vec<u8>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let size = self.pubs.filler.len();
        // No publication is larger than `size`, no control frame than 125 bytes: a larger
        // frame is refused rather than buffered until it completes.
        let largest = if self.pubs.hub.is_some() {
            // The push around the payload, and replies.
            (size + 4096).max(64 * 1024)
        } else {
            size.max(125)
        };
        // At most `in_flight` publications wait for this connection: room for them all in
        // one read, within 4 KiB to 64 KiB (the buffer grows further for a larger one).
        let room = (self.in_flight as usize)
            .saturating_mul(size + MAX_HEADER_LEN)
            .clamp(4096, READ_ROOM);
        let mut expected = 0u64;
        loop {
            let mut pos = 0;
            let result = loop {
                let (h, hn) = match FrameHeader::parse(&buf[pos..]) {
                    Ok(Some(parsed)) => parsed,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(anyhow!("bad frame from server: {e:?}")),
                };
                if h.mask.is_some() {
                    break Err(anyhow!("server sent a masked frame"));
                }
                if h.rsv1 || h.rsv2 || h.rsv3 {
                    break Err(anyhow!(
                        "server set a reserved bit (RSV) on a frame; no extension was \
                         negotiated"
                    ));
                }
                let len = match usize::try_from(h.payload_len) {
                    Ok(len) if len <= largest => len,
                    _ => {
                        break Err(anyhow!(
                            "server sent a {}-byte frame, larger than any publication \
                             ({largest} bytes)",
                            h.payload_len
                        ))
                    }
                };
                if buf.len() - pos < hn + len {
                    break Ok(());
                }
                let data = &buf[pos + hn..pos + hn + len];
                pos += hn + len;
                match h.opcode {
                    OpCode::Text | OpCode::Binary if h.fin => {
                        if let Some(data) = self.pubs.unwrap(data) {
                            self.deliver(&mut expected, h.opcode, data);
                        }
                    }
                    OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                        break Err(anyhow!("server fragmented a message"));
                    }
                    OpCode::Close => {
                        break Err(anyhow!("server closed the connection{}", close_info(data)))
                    }
                    _ => {} // pings are not answered (as in the echo mode)
                }
            };
            if let Err(e) = result {
                if self.shared.stopping.load(Ordering::Relaxed) {
                    return Ok(());
                }
                return Err(e);
            }
            buf.drain(..pos);
            if buf.capacity() - buf.len() < room {
                buf.reserve(room);
            }
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    let _ = tcp.write_all(&CLOSE_FRAME).await;
                    return Ok(());
                }
                r = tcp.read_buf(&mut buf) => {
                    let closed = match r {
                        Ok(0) => Err(anyhow!("server closed the connection")),
                        Ok(_) => Ok(()),
                        Err(e) => Err(e.into()),
                    };
                    if let Err(e) = closed {
                        if self.shared.stopping.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        return Err(e);
                    }
                }
            }
        }
    }

    /// One data message: checked against publication `expected`, and credited to it.
    fn deliver(&self, expected: &mut u64, opcode: OpCode, data: &[u8]) {
        let seq = *expected;
        let published = self.shared.published.load(Ordering::Acquire);
        if seq >= published {
            // More messages than publications: nothing to credit.
            self.mismatch(seq, opcode, data, "beyond the last publication");
            return;
        }
        if opcode != self.pubs.opcode() || !self.pubs.matches(seq, data) {
            self.mismatch(seq, opcode, data, "");
        }
        *expected += 1;
        let slot = (seq % self.in_flight) as usize;
        if self.shared.remaining[slot].fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last delivery: the publication is complete. (Err: the publisher is gone,
            // which the run reports.)
            let _ = self.done.send((seq, Instant::now()));
        }
    }

    /// Counts a wrong message, and describes the first few.
    fn mismatch(&self, seq: u64, opcode: OpCode, data: &[u8], why: &str) {
        self.shared.mismatches.fetch_add(1, Ordering::Relaxed);
        if self
            .shared
            .mismatches_logged
            .fetch_add(1, Ordering::Relaxed)
            >= LOGGED
        {
            return;
        }
        let what = if !why.is_empty() {
            why.to_string()
        } else if opcode != self.pubs.opcode() {
            format!("wrong opcode {opcode:?}")
        } else if data.len() != self.pubs.filler.len() {
            format!("wrong length {}", data.len())
        } else {
            match self.pubs.seq_of(data) {
                Some(got) if got != seq => format!("out of order: publication {got}"),
                _ => "wrong bytes".to_string(),
            }
        };
        tracing::warn!(
            "subscriber {}: mismatch where publication {seq} was due: {what}",
            self.index
        );
    }
}

/// " (CODE REASON)" from a close frame's payload.
fn close_info(data: &[u8]) -> String {
    match data {
        [a, b, reason @ ..] => format!(
            " ({} {})",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => String::new(),
    }
}

/// Runs `wsx bench --fanout` and prints its report; fails when any subscriber or the
/// publisher failed, any message was wrong, or no publication completed.
pub async fn run_cmd(opts: FanoutOptions, json: bool) -> anyhow::Result<ExitCode> {
    let report = run(opts).await?;
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    if report.publications == 0 {
        if report.publications_ever == 0 {
            bail!(
                "no publication completed: the subscribers received nothing{}. --fanout \
                 needs a server that delivers each message to every other connection \
                 (such as `wsx serve --broadcast`)",
                if report.publisher_received > 0 {
                    " and the publisher got its own messages back (an echo server?)"
                } else {
                    ""
                }
            );
        }
        bail!(
            "no publication completed during the measured window ({} during the warm-up)",
            report.publications_ever
        );
    }
    Ok(if report.errors == 0 && report.mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_round_trip_in_both_encodings() {
        for binary in [false, true] {
            let p = Publications::new(20, binary, None);
            for seq in [0u64, 1, 63, 64, 127, 128, 255, 256, 1 << 40, (1 << 48) - 1] {
                let mut data = p.filler.clone();
                data[..8].copy_from_slice(&p.prefix(seq));
                assert!(p.matches(seq, &data), "{seq} {binary}");
                assert!(!p.matches(seq + 1, &data));
                assert_eq!(p.seq_of(&data), Some(seq));
                if !binary {
                    assert!(data.iter().all(|b| b.is_ascii_graphic() || *b == b' '));
                }
            }
            let mut data = p.filler.clone();
            data[..8].copy_from_slice(&p.prefix(7));
            data[19] ^= 1;
            assert!(!p.matches(7, &data), "the filler is compared too");
            assert!(!p.matches(7, &data[..19]));
        }
        let p = Publications::new(8, true, None);
        let h = Publications::new(8, false, Some("ch".into()));
        let (before, after) = h.envelope();
        assert_eq!(
            String::from_utf8([before, b"AAAAAAAB".to_vec(), after].concat()).unwrap(),
            r#"{"id":3,"publish":{"channel":"ch","data":"AAAAAAAB"}}"#
        );
        let push = br#"{"push":{"channel":"ch","pub":{"data":"AAAAAAAB","offset":9}}}"#;
        assert_eq!(h.unwrap(push), Some(&b"AAAAAAAB"[..]));
        assert_eq!(h.unwrap(b"{}"), None);
        assert_eq!(p.prefix(0x0102030405060708), [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn close_info_shows_code_and_reason() {
        assert_eq!(close_info(&[0x03, 0xF0, b'h', b'i']), " (1008 hi)");
        assert_eq!(close_info(&[]), "");
    }
}
