//! TCP connections: resolve a host name, then try its addresses in turn.

use std::io;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Why [`connect_tcp`] did not connect.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The host name could not be resolved.
    Resolve(io::Error),
    /// No address took the connection: the error of the last one tried, `None` when the name
    /// resolved to no address at all.
    Connect(Option<io::Error>),
}

/// Connects to `host:port` (a name or an IP literal): resolves it, then tries each address
/// in turn and returns the first connection. There is no timeout here: callers run it under
/// their connect timeout.
pub(crate) async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(ConnectError::Resolve)?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(ConnectError::Connect(last))
}
