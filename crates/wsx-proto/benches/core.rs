//! Micro-benchmarks of the protocol core: masking, frame headers, UTF-8 validation,
//! handshake parsing and whole-message receive.
//!
//! `cargo bench -p wsx-proto --bench core`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use wsx_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use wsx_proto::mask::apply_mask_at;
#[cfg(feature = "bench-internals")]
use wsx_proto::mask::apply_mask_at_baseline;
use wsx_proto::utf8::Utf8Validator;
use wsx_proto::{Config, Connection, Event, Message, Role};

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in [16usize, 1024, 64 * 1024, 1 << 20] {
        let mut buf = vec![0xA5u8; size + 3];
        g.throughput(Throughput::Bytes(size as u64));
        for align in [0usize, 1, 3] {
            g.bench_function(BenchmarkId::new(format!("align{align}"), size), |b| {
                b.iter(|| apply_mask_at(black_box(&mut buf[align..align + size]), [1, 2, 3, 4], 0))
            });
            // The baseline loop alone (SSE2 on x86_64), for the gain of the run-time choice
            // (with `--features bench-internals`).
            #[cfg(feature = "bench-internals")]
            g.bench_function(
                BenchmarkId::new(format!("baseline-align{align}"), size),
                |b| {
                    b.iter(|| {
                        apply_mask_at_baseline(
                            black_box(&mut buf[align..align + size]),
                            [1, 2, 3, 4],
                            0,
                        )
                    })
                },
            );
        }
    }
    g.finish();
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    for len in [20u64, 16 * 1024, 1 << 20] {
        let h = FrameHeader {
            mask: Some([1, 2, 3, 4]),
            ..FrameHeader::new(true, OpCode::Binary, len)
        };
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut out);
        g.bench_function(BenchmarkId::new("parse", len), |b| {
            b.iter(|| FrameHeader::parse(black_box(&out[..n])))
        });
        g.bench_function(BenchmarkId::new("encode", len), |b| {
            let mut o = [0u8; MAX_HEADER_LEN];
            b.iter(|| black_box(&h).encode(&mut o))
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for (name, text) in [
        ("ascii", "hello world ".repeat(5000)),
        ("mixed", "κόσμε hello 𝄞 ".repeat(3000)),
    ] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(BenchmarkId::new("whole", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(text.as_bytes())).unwrap();
                v.finish().unwrap();
            })
        });
        g.bench_function(BenchmarkId::new("chunks_of_1000", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for ch in text.as_bytes().chunks(1000) {
                    v.feed(black_box(ch)).unwrap();
                }
                v.finish().unwrap();
            })
        });
    }
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let req = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\r\n";
    c.bench_function("handshake/parse_request", |b| {
        b.iter(|| wsx_proto::handshake::server::parse_request(black_box(req), 16 * 1024).unwrap())
    });
}

fn receive(c: &mut Criterion) {
    let mut g = c.benchmark_group("receive_message");
    let config = {
        let mut c = Config::default();
        c.deflate = None;
        c
    };
    for size in [20usize, 16 * 1024] {
        // 100 masked messages as a client would send them, fed to a server at once.
        let mut client = Connection::new(Role::Client, &config, None);
        for _ in 0..100 {
            client.send(Message::binary(vec![7u8; size])).unwrap();
        }
        let wire = client.take_output();
        g.throughput(Throughput::Elements(100));
        g.bench_function(BenchmarkId::new("binary_x100", size), |b| {
            b.iter(|| {
                let mut server = Connection::new(Role::Server, &config, None);
                server.receive(black_box(&wire));
                let mut n = 0;
                while let Some(Event::Message(_)) = server.poll_event() {
                    n += 1;
                }
                assert_eq!(n, 100);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, masking, frames, utf8, handshake, receive);
criterion_main!(benches);
