//! A minimal echo server: `cargo run -p wsx --example echo_server [ADDR]`.

use futures_util::StreamExt;

#[tokio::main]
async fn main() -> wsx::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let server = wsx::Server::bind(&addr).await?;
    println!("listening on ws://{}", server.local_addr()?);
    server
        .serve(|mut ws, peer| async move {
            while let Some(msg) = ws.next().await {
                match msg {
                    Ok(msg) if msg.is_data() => {
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("{peer}: {e}");
                        break;
                    }
                }
            }
            println!("{peer}: {:?}", ws.close_event());
        })
        .await
}
