//! A client that sends a few messages and closes:
//! `cargo run -p wsx --example client [URL]`.

use futures_util::StreamExt;
use std::time::Duration;
use wsx::{ClientBuilder, CloseCode, CloseFrame, Message};

#[tokio::main]
async fn main() -> wsx::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".into());
    let mut ws = ClientBuilder::new(url)
        .header("User-Agent", "wsx-example")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    println!("connected, compression: {}", ws.is_compressed());
    for text in ["hello", "wsx"] {
        ws.send(Message::text(text)).await?;
        if let Some(reply) = ws.next().await {
            println!("got {:?}", reply?);
        }
    }
    let ev = ws
        .close(Some(CloseFrame::new(CloseCode::NORMAL, "done")))
        .await?;
    println!("closed: code {} clean {}", ev.code, ev.was_clean);
    Ok(())
}
