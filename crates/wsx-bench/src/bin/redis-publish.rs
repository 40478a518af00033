//! Publications per second through one Redis (or cluster) with `wsx_hub::RedisBroker`, and
//! Redis' CPU per publication: P publishers on one node, each publishing 100-byte
//! publications one after another to its own channel (history 100, 300 s: the Lua script
//! that numbers, keeps and publishes), while the same node is subscribed to every channel
//! and checks that each publication comes back, in order.
//!
//! ```text
//! cargo run --release -p wsx-bench --bin redis-publish -- redis://127.0.0.1:6379 [PUBLISHERS] [SECONDS]
//! ```
//!
//! Prints one JSON line: publications, per second, deliveries back, and Redis' CPU
//! microseconds per publication (from `INFO cpu`, so Redis should run nothing else).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsx_hub::broker::PublishOptions;
use wsx_hub::protocol::{ClientInfo, Publication};
use wsx_hub::{Broker, BrokerEvents, RedisBroker};

#[derive(Default)]
struct Count {
    delivered: AtomicU64,
    out_of_order: AtomicU64,
    last: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl BrokerEvents for Count {
    fn publication(&self, channel: &str, p: &Arc<Publication>) {
        let mut last = self.last.lock().unwrap();
        let prev = last.entry(channel.to_owned()).or_insert(0);
        if p.offset != *prev + 1 && *prev != 0 {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        *prev = p.offset;
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
    fn join(&self, _: &str, _: &ClientInfo) {}
    fn leave(&self, _: &str, _: &ClientInfo) {}
    fn lost(&self, _: &str) {}
    fn control(&self, _: &[u8]) {}
}

/// Redis' used CPU seconds (user + system), from the first server of `url`.
fn redis_cpu(url: &str) -> f64 {
    let first = url
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split(',')
        .next()
        .unwrap_or("");
    let hostport = first
        .rsplit('@')
        .next()
        .unwrap_or(first)
        .trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "6379"));
    let out = std::process::Command::new("redis-cli")
        .args(["-h", host, "-p", port, "INFO", "cpu"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or("redis://127.0.0.1:6379".into());
    let publishers: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let seconds: f64 = args.get(3).map_or(Ok(3.0), |s| s.parse())?;
    let broker = Arc::new(RedisBroker::connect(&url).await?.prefix("bench"));
    let count = Arc::new(Count::default());
    broker.start(count.clone());
    for i in 0..publishers {
        broker.subscribe(&format!("p{i}")).await?;
    }
    let options = PublishOptions {
        history_size: 100,
        history_ttl: Duration::from_secs(300),
        meta_ttl: Duration::from_secs(3600),
    };
    let data = serde_json::value::RawValue::from_string(format!("\"{}\"", "x".repeat(98)))?;
    let published = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let cpu0 = redis_cpu(&url);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..publishers {
        let (broker, published, data) = (broker.clone(), published.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let channel = format!("p{i}");
            while Instant::now() < deadline {
                let p = Publication {
                    data: data.clone(),
                    info: None,
                    offset: 0,
                    tags: None,
                };
                if broker.publish(&channel, p, options).await.is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = redis_cpu(&url) - cpu0;
    let n = published.load(Ordering::Relaxed);
    // Whatever is still on its way back.
    let wait = Instant::now() + Duration::from_secs(5);
    while count.delivered.load(Ordering::Relaxed) < n && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "{}",
        serde_json::json!({
            "publishers": publishers,
            "seconds": elapsed,
            "publications": n,
            "publications_per_second": n as f64 / elapsed,
            "delivered": count.delivered.load(Ordering::Relaxed),
            "out_of_order": count.out_of_order.load(Ordering::Relaxed),
            "redis_cpu_us_per_publication": cpu / n as f64 * 1e6,
        })
    );
    Ok(())
}
