//! Heap bytes per idle wsx connection, counted exactly (not RSS): a counting global
//! allocator around the system one, an echo server on a current-thread runtime exactly as
//! in `echo-servers wsx`, and 1000 loopback clients that complete the handshake and stay
//! quiet. Prints the live bytes and allocations the 1000 connections added, per connection,
//! plus the sizes of the main types. Deterministic for a given build, unlike RSS.
//!
//! `cargo run --release -p wsx-bench --bin idle-heap` (the bare `accept_with` loop), or
//! `... --bin idle-heap server` for the library's `Server` on one worker thread with an
//! echo handler written as `wsx serve`'s (caps, shutdown, logging).
//! `... --bin idle-heap hub` serves `wsx-hub`'s hub the same way, each client connected
//! (anonymous) and subscribed to one channel before it goes quiet: the cost of an idle
//! subscriber. All list the live allocations the connections added, by size.

use futures_util::StreamExt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// The system allocator, counting live bytes and blocks.
struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);
/// Live blocks by size, in 16-byte steps (the last counts everything larger).
static BY_SIZE: [AtomicIsize; 257] = [const { AtomicIsize::new(0) }; 257];

fn bucket(size: usize) -> &'static AtomicIsize {
    &BY_SIZE[size.div_ceil(16).min(256)]
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly System's; the counters are plain atomics. Exercised by
// running this binary (every allocation of the process goes through it).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as isize, Relaxed);
        BLOCKS.fetch_add(1, Relaxed);
        bucket(layout.size()).fetch_add(1, Relaxed);
        // SAFETY: same contract as ours (non-zero size layout from the caller).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        BYTES.fetch_sub(layout.size() as isize, Relaxed);
        BLOCKS.fetch_sub(1, Relaxed);
        bucket(layout.size()).fetch_sub(1, Relaxed);
        // SAFETY: `ptr` was allocated by `System` (via `alloc`/`realloc`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        bucket(layout.size()).fetch_sub(1, Relaxed);
        bucket(new_size).fetch_add(1, Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONNECTIONS: isize = 1000;

async fn echo(tcp: tokio::net::TcpStream, config: Arc<wsx::ServerConfig>) {
    let Ok(mut ws) = wsx::accept_with(tcp, &config, wsx::NoHook).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// `wsx serve`'s echo handler (crates/wsx-cli/src/serve.rs), for the `server` mode.
#[allow(clippy::manual_async_fn)]
fn serve_echo(
    mut ws: wsx::WebSocket<wsx::MaybeTlsStream>,
    peer: std::net::SocketAddr,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        loop {
            let msg = match ws.next().await {
                Some(Ok(msg)) if msg.is_data() => msg,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break,
            };
            if ws.send(msg).await.is_err() {
                break;
            }
        }
        std::hint::black_box((peer, ws.close_event().is_some()));
    }
}

/// The size of the future a `Server` handler returns.
fn handler_future_size<F, Fut>(_: &F) -> usize
where
    F: Fn(wsx::WebSocket<wsx::MaybeTlsStream>, std::net::SocketAddr) -> Fut,
{
    std::mem::size_of::<Fut>()
}

fn snapshot() -> Vec<isize> {
    BY_SIZE.iter().map(|b| b.load(Relaxed)).collect()
}

/// A masked text frame (zero mask key: the payload goes as is) of under 126 bytes.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

fn main() -> anyhow::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let server_mode = mode == "server";
    let hub_mode = mode == "hub";
    println!(
        "sizes: WebSocket<TcpStream> {} B, Connection {} B",
        std::mem::size_of::<wsx::WebSocket<tokio::net::TcpStream>>(),
        std::mem::size_of::<wsx_proto::Connection>()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let probe = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let tcp = tokio::net::TcpStream::connect(l.local_addr()?).await?;
        std::io::Result::Ok(std::mem::size_of_val(&echo(tcp, Arc::default())))
    })?;
    println!("sizes: the echo task's future {probe} B");
    println!(
        "sizes: wsx serve's echo handler's future {} B",
        handler_future_size(&serve_echo)
    );
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let mut config = wsx::ServerConfig::default();
    config.config.deflate = None;
    if hub_mode {
        let mut hub_config = wsx_hub::HubConfig::default();
        hub_config.allow_anonymous = true;
        hub_config.defaults.allow_subscribe = true;
        hub_config.defaults.allow_anonymous = true;
        let hub = rt.block_on(async {
            wsx_hub::Hub::new(
                hub_config,
                wsx_hub::TokenKeys::new(),
                Arc::new(wsx_hub::MemoryBroker::new()),
            )
        });
        let probe = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let tcp = tokio::net::TcpStream::connect(l.local_addr()?).await?;
            let conn = wsx_proto::Connection::new(
                wsx_proto::Role::Server,
                &wsx_proto::Config::default(),
                None,
            );
            let ws = wsx::WebSocket::from_parts(tcp, conn, None, &[]);
            std::io::Result::Ok(std::mem::size_of_val(
                &hub.clone().serve(ws, l.local_addr()?),
            ))
        })?;
        println!("sizes: the hub connection's future {probe} B");
        let hook = wsx_hub::HubHook::new(hub.clone());
        let server = wsx::Server::from_listener(listener)
            .config(config)
            .worker_threads(1);
        rt.spawn(server.serve_with_hook(
            move |ws, peer| hub.clone().serve(ws, peer),
            move || hook.clone(),
        ));
    } else if server_mode {
        let server = wsx::Server::from_listener(listener)
            .config(config)
            .worker_threads(1);
        rt.spawn(server.serve(serve_echo));
    } else {
        let config = Arc::new(config);
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(echo(tcp, config.clone()));
            }
        });
    }
    let request: &[u8] = if hub_mode {
        b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    };
    let subscribe =
        text_frame(b"{\"id\":1,\"connect\":{}}\n{\"id\":2,\"subscribe\":{\"channel\":\"idle\"}}");
    let clients = std::thread::spawn(move || -> std::io::Result<((isize, isize), Vec<isize>)> {
        let open = |n: isize| -> std::io::Result<Vec<std::net::TcpStream>> {
            (0..n)
                .map(|_| {
                    let mut s = std::net::TcpStream::connect(addr)?;
                    s.write_all(request)?;
                    let mut head = [0u8; 512];
                    let _ = s.read(&mut head)?;
                    if hub_mode {
                        // Connect and subscribe, and wait for the replies.
                        s.write_all(&subscribe)?;
                        let mut replies = [0u8; 1024];
                        let _ = s.read(&mut replies)?;
                    }
                    Ok(s)
                })
                .collect()
        };
        // Warm up the runtime's and allocator's one-time structures first.
        let warm = open(20)?;
        std::thread::sleep(Duration::from_millis(300));
        let (bytes, blocks, sizes) = (BYTES.load(Relaxed), BLOCKS.load(Relaxed), snapshot());
        let idle = open(CONNECTIONS)?;
        // Past the connections' idle buffer release (1 s after their last input).
        std::thread::sleep(Duration::from_millis(1500));
        let grown = (BYTES.load(Relaxed) - bytes, BLOCKS.load(Relaxed) - blocks);
        let sizes: Vec<isize> = snapshot().iter().zip(&sizes).map(|(a, b)| a - b).collect();
        drop((warm, idle));
        Ok((grown, sizes))
    });
    rt.block_on(async {
        while !clients.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let ((bytes, blocks), sizes) = clients
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    println!(
        "per idle connection ({}): {} heap bytes live in {:.2} allocations",
        if hub_mode {
            "wsx-hub, connected and subscribed to one channel"
        } else if server_mode {
            "wsx::Server, one worker thread"
        } else {
            "accept_with loop"
        },
        bytes / CONNECTIONS,
        blocks as f64 / CONNECTIONS as f64
    );
    for (i, n) in sizes.iter().enumerate() {
        if *n >= CONNECTIONS / 10 {
            println!(
                "  blocks of {}..{} B: {:.2} per connection",
                (i * 16).saturating_sub(15),
                i * 16,
                *n as f64 / CONNECTIONS as f64
            );
        }
    }
    Ok(())
}
