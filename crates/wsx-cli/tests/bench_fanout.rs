//! `wsx bench --fanout` end to end over loopback: against `wsx serve --broadcast`, against
//! an echo server (nothing completes: a clear error, no hang), against servers written here
//! that also deliver to the sender (tolerated) or reorder messages (mismatches), and its
//! refusals. Every run is bounded in time.

mod common;

use common::{run_cmd, serve_with, WSX};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use wsx::Message;

/// Runs `wsx bench --fanout URL ARGS...`: exit code, report (JSON), stderr.
fn fanout(addr: SocketAddr, args: &[&str]) -> (i32, serde_json::Value, String) {
    let url = format!("ws://{addr}/");
    let mut all = vec!["bench", "--fanout", &url, "--json"];
    all.extend_from_slice(args);
    let started = Instant::now();
    let (code, out, err) = run_cmd(Command::new(WSX).args(&all), b"");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let report = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {out:?}; stderr: {err}"));
    (code, report, err)
}

#[test]
fn fanout_against_wsx_serve_broadcast_checks_every_delivery() {
    let s = serve_with(&["--broadcast"], Stdio::null());
    let (code, v, err) = fanout(
        s.1,
        &[
            "-c",
            "50",
            "--in-flight",
            "4",
            "-s",
            "100",
            "-d",
            "1",
            "--warmup",
            "0.2",
            "--server-pid",
            &s.0.id().to_string(),
        ],
    );
    assert_eq!(code, 0, "{v}; stderr: {err}");
    let publications = v["publications"].as_u64().unwrap();
    let deliveries = v["deliveries"].as_u64().unwrap();
    assert!(deliveries > 0, "{v}");
    assert_eq!(deliveries, publications * 50, "{v}");
    assert_eq!(v["subscribers"], 50, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["mismatches"], 0, "{v}");
    assert_eq!(
        v["publisher_received"], 0,
        "the server excludes the sender: {v}"
    );
    let p50 = v["latency_ms"]["p50"].as_f64().unwrap();
    assert!(
        p50 > 0.0 && v["latency_ms"]["max"].as_f64().unwrap() >= p50,
        "{v}"
    );
    if cfg!(target_os = "linux") {
        assert!(v["server_cpu_s_per_million"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["server_rss_kib"].as_u64().unwrap() > 0, "{v}");
    }

    // Binary, at the smallest size (the sequence number alone).
    let (code, v, err) = fanout(
        s.1,
        &[
            "-c", "5", "--binary", "-s", "8", "-d", "0.3", "--warmup", "0",
        ],
    );
    assert_eq!(code, 0, "{v}; stderr: {err}");
    assert!(v["deliveries"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["mismatches"], 0, "{v}");
}

#[test]
fn fanout_against_an_echo_server_ends_with_a_clear_error() {
    // The echo goes back to the publisher (read and discarded, not an error); the
    // subscribers get nothing, so nothing completes, and the run says so.
    let s = serve_with(&[], Stdio::null());
    let (code, v, err) = fanout(s.1, &["-c", "3", "-d", "0.5", "--warmup", "0.1"]);
    assert_ne!(code, 0, "{v}");
    assert!(err.contains("no publication completed"), "{err}");
    assert!(err.contains("wsx serve --broadcast"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(v["publications"], 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["publisher_received"].as_u64().unwrap() >= 1, "{v}");
}

/// How the test server relays a message.
#[derive(Clone, Copy)]
enum Relay {
    /// To every connection, the sender included.
    ToAll,
    /// To every other connection, each pair of a sender's messages swapped.
    Swapped,
}

/// A broadcast server on a free loopback port, run on the test's runtime.
async fn relay_server(relay: Relay) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _) = broadcast::channel::<(u64, Message)>(1024);
    tokio::spawn(async move {
        let mut next_id = 0u64;
        while let Ok((tcp, _)) = listener.accept().await {
            let (tx, id) = (tx.clone(), next_id);
            next_id += 1;
            tokio::spawn(async move {
                let mut rx = tx.subscribe();
                let Ok(mut ws) = wsx::accept(tcp).await else {
                    return;
                };
                let mut held = None;
                loop {
                    tokio::select! {
                        m = ws.next() => match m {
                            Some(Ok(m)) if m.is_data() => match relay {
                                Relay::ToAll => {
                                    let _ = tx.send((u64::MAX, m));
                                }
                                Relay::Swapped => match held.take() {
                                    None => held = Some(m),
                                    Some(first) => {
                                        let _ = tx.send((id, m));
                                        let _ = tx.send((id, first));
                                    }
                                },
                            },
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                        m = rx.recv() => match m {
                            Ok((from, _)) if from == id => {}
                            Ok((_, m)) => {
                                if ws.send(m).await.is_err() {
                                    break;
                                }
                            }
                            Err(_) => break,
                        },
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_tolerates_a_server_that_also_delivers_to_the_sender() {
    let addr = relay_server(Relay::ToAll).await;
    let (code, v, err) = tokio::task::spawn_blocking(move || {
        fanout(addr, &["-c", "5", "-d", "0.5", "--warmup", "0.1"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{v}; stderr: {err}");
    assert!(v["deliveries"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["mismatches"], 0, "{v}");
    assert!(v["publisher_received"].as_u64().unwrap() > 0, "{v}");
    assert!(err.contains("does not exclude the sender"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_counts_messages_out_of_order_as_mismatches() {
    let addr = relay_server(Relay::Swapped).await;
    let (code, v, err) = tokio::task::spawn_blocking(move || {
        fanout(
            addr,
            &[
                "-c",
                "3",
                "--in-flight",
                "2",
                "-d",
                "0.5",
                "--warmup",
                "0.1",
            ],
        )
    })
    .await
    .unwrap();
    assert_ne!(code, 0, "{v}");
    assert!(v["publications"].as_u64().unwrap() > 0, "{v}");
    assert!(v["mismatches"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(err.contains("out of order: publication 1"), "{err}");
}

#[test]
fn fanout_refuses_what_it_cannot_check() {
    let run = |args: &[&str]| {
        let mut all = vec!["bench", "--fanout"];
        all.extend_from_slice(args);
        run_cmd(Command::new(WSX).args(&all), b"")
    };
    let (code, _, err) = run(&["ws://127.0.0.1:9/", "-s", "7"]);
    assert_ne!(code, 0);
    assert!(err.contains("at least 8 bytes"), "{err}");
    let (code, _, err) = run(&["wss://127.0.0.1:9/"]);
    assert_ne!(code, 0);
    assert!(err.contains("not wss://"), "{err}");
    let (code, _, err) = run(&["ws://127.0.0.1:9/", "--deflate"]);
    assert_ne!(code, 0);
    assert!(err.contains("does not support --deflate"), "{err}");
    let (code, _, err) = run(&["ws://127.0.0.1:9/", "-c", "100000000"]);
    assert_ne!(code, 0);
    assert!(err.contains("RLIMIT_NOFILE"), "{err}");
}
