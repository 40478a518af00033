//! Drives the Autobahn|Testsuite fuzzing server: runs every case (echoing every message)
//! and asks it to write the reports.
//!
//! Usage: `autobahn_client [URL] [AGENT]` (defaults `ws://127.0.0.1:9001` and `wsx`).

use futures_util::StreamExt;
use wsx::{ClientBuilder, Config, Message};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or_else(|| "wsx".into());
    let base = base.trim_end_matches('/');

    let mut ws = wsx::connect(&format!("{base}/getCaseCount")).await?;
    let count: u32 = match ws.next().await {
        Some(Ok(Message::Text(t))) => t.trim().parse()?,
        other => return Err(format!("unexpected getCaseCount answer: {other:?}").into()),
    };
    drop(ws);
    println!("{count} cases");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let mut ws = match ClientBuilder::new(url)
            .config(Config::default())
            .connect()
            .await
        {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!("case {case}: {e}");
                continue;
            }
        };
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(msg) if msg.is_data() => {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if case % 50 == 0 {
            println!("{case}/{count}");
        }
    }

    let mut ws = wsx::connect(&format!("{base}/updateReports?agent={agent}")).await?;
    while ws.next().await.is_some() {}
    println!("reports updated");
    Ok(())
}
