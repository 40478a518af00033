//! permessage-deflate throughput: our zlib-rs based Compressor/Decompressor against
//! miniz_oxide (flate2's default pure-Rust backend), on the same inputs, same run. Each
//! message is compressed from a fresh context (as with `no_context_takeover`).
//!
//! `cargo bench -p wsx-proto --bench deflate`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use miniz_oxide::deflate::core::{CompressorOxide, TDEFLFlush};
use std::hint::black_box;
use wsx_proto::deflate::{Compressor, Decompressor};
use wsx_proto::BytesMut;

/// JSON-like chat messages: what WebSocket traffic mostly is.
fn json(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 200);
    let mut i = 0u64;
    while out.len() < size {
        out.extend_from_slice(
            format!(
                r#"{{"id":{i},"user":"user{}","room":"general","text":"message number {} with some words","ts":{}}},"#,
                i % 97,
                i * 7919 % 100_003,
                1_700_000_000 + i * 13
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(size);
    out
}

fn miniz_compress(c: &mut CompressorOxide, input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut inp = input;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let (status, used, produced) =
            miniz_oxide::deflate::core::compress(c, inp, &mut buf, TDEFLFlush::Sync);
        out.extend_from_slice(&buf[..produced]);
        inp = &inp[used..];
        if inp.is_empty() && produced < buf.len() {
            assert!(status as i32 >= 0);
            break;
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("compress");
    for size in [256usize, 16 * 1024, 1 << 20] {
        let data = json(size);
        g.throughput(Throughput::Bytes(size as u64));
        for level in [1u32, 6] {
            g.bench_with_input(
                BenchmarkId::new(format!("wsx-zlib-rs-l{level}"), size),
                &data,
                |b, d| {
                    // No context takeover: every iteration compresses the message from scratch
                    // (with takeover, repeating one input would just reference the last copy).
                    let mut comp = Compressor::new(15, true, level);
                    let mut out = BytesMut::new();
                    b.iter(|| {
                        out.clear();
                        comp.compress(black_box(d), &mut out).unwrap();
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new(format!("miniz-oxide-l{level}"), size),
                &data,
                |b, d| {
                    let mut comp = CompressorOxide::new(
                        miniz_oxide::deflate::core::create_comp_flags_from_zip_params(
                            level as i32,
                            -15,
                            0,
                        ),
                    );
                    let mut out = Vec::new();
                    b.iter(|| miniz_compress(&mut comp, black_box(d), &mut out))
                },
            );
        }
    }
    g.finish();

    // The default mode: context takeover over a stream of distinct small messages (a chat).
    let mut g = c.benchmark_group("compress_stream_takeover");
    let stream = json(256 * 512);
    let msgs: Vec<&[u8]> = stream.chunks(256).collect();
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("wsx-zlib-rs-l1/256x512", |b| {
        let mut out = BytesMut::new();
        b.iter(|| {
            let mut comp = Compressor::new(15, false, 1);
            for m in &msgs {
                out.clear();
                comp.compress(black_box(m), &mut out).unwrap();
            }
        })
    });
    g.bench_function("miniz-oxide-l1/256x512", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            let mut comp = CompressorOxide::new(
                miniz_oxide::deflate::core::create_comp_flags_from_zip_params(1, -15, 0),
            );
            for m in &msgs {
                miniz_compress(&mut comp, black_box(m), &mut out);
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("decompress");
    for size in [256usize, 16 * 1024, 1 << 20] {
        let data = json(size);
        let mut comp = Compressor::new(15, true, 6);
        let mut deflated = BytesMut::new();
        comp.compress(&data, &mut deflated).unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("wsx-zlib-rs", size), &deflated, |b, d| {
            let mut dec = Decompressor::new(15, true);
            let mut out = BytesMut::new();
            b.iter(|| {
                out.clear();
                dec.decompress(black_box(d), true, &mut out, usize::MAX)
                    .unwrap();
            })
        });
        let mut with_tail = deflated.to_vec();
        with_tail.extend_from_slice(&[0, 0, 0xff, 0xff]);
        g.bench_with_input(BenchmarkId::new("miniz-oxide", size), &with_tail, |b, d| {
            b.iter(|| miniz_oxide::inflate::decompress_to_vec(black_box(d)).ok())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
