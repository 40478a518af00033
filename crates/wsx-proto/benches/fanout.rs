//! Fan-out: one message to many server connections, sent to each (`send`: framed, and with
//! permessage-deflate compressed, once per connection) against framed once
//! (`send_prepared`: copied per connection; compressed once and shared between
//! connections that compress every message alone, `server_no_context_takeover`).
//! Each iteration is one publication to every connection, output drained as a writer would.
//!
//! `cargo bench -p wsx-proto --bench fanout`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use wsx_proto::deflate::{DeflateConfig, DeflateParams};
use wsx_proto::{Config, Connection, Message, PreparedMessage, Role};

/// A JSON-like chat message of about `size` bytes.
fn json(size: usize) -> String {
    let mut out = String::with_capacity(size + 100);
    let mut i = 0u64;
    while out.len() < size {
        out.push_str(&format!(
            r#"{{"id":{i},"user":"user{}","room":"general","text":"message {} with words"}},"#,
            i % 97,
            i * 7919 % 100_003
        ));
        i += 1;
    }
    out.truncate(size);
    out
}

fn connections(n: usize, deflate: Option<DeflateParams>) -> Vec<Connection> {
    let mut config = Config::default();
    config.deflate = Some(DeflateConfig::default());
    (0..n)
        .map(|_| Connection::new(Role::Server, &config, deflate))
        .collect()
}

fn drain(conns: &mut [Connection]) {
    for c in conns {
        let n = c.buffered_amount();
        black_box(c.output());
        c.advance_output(n);
    }
}

fn fanout(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 100;
    let no_takeover = DeflateParams {
        server_no_context_takeover: true,
        ..DeflateParams::default()
    };
    for (name, params) in [
        ("plain", None),
        ("deflate-no-takeover", Some(no_takeover)),
        ("deflate-takeover", Some(DeflateParams::default())),
    ] {
        let mut g = c.benchmark_group(format!("fanout_{SUBSCRIBERS}/{name}"));
        for size in [100usize, 1024, 16 * 1024] {
            let text = json(size);
            g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
            let mut conns = connections(SUBSCRIBERS, params);
            g.bench_function(BenchmarkId::new("send_each", size), |b| {
                b.iter(|| {
                    let msg = Message::text(text.as_str());
                    for c in conns.iter_mut() {
                        c.send(msg.clone()).unwrap();
                    }
                    drain(&mut conns);
                })
            });
            let mut conns = connections(SUBSCRIBERS, params);
            g.bench_function(BenchmarkId::new("send_prepared", size), |b| {
                b.iter(|| {
                    // A new message each time: its framing and compression are in the cost.
                    let msg = PreparedMessage::text(text.as_str());
                    for c in conns.iter_mut() {
                        c.send_prepared(&msg).unwrap();
                    }
                    drain(&mut conns);
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, fanout);
criterion_main!(benches);
