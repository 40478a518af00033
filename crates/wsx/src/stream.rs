//! A transport that is either plain TCP or TLS over TCP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream, possibly wrapped in TLS (client or server side). The TLS state is boxed so
/// that plain connections stay small.
#[derive(Debug)]
pub enum MaybeTlsStream<S = TcpStream> {
    /// Plain `ws://`.
    Plain(S),
    /// `wss://` as a client.
    ClientTls(Box<tokio_rustls::client::TlsStream<S>>),
    /// `wss://` as a server.
    ServerTls(Box<tokio_rustls::server::TlsStream<S>>),
}

impl<S> MaybeTlsStream<S> {
    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, MaybeTlsStream::Plain(_))
    }
}

impl MaybeTlsStream<TcpStream> {
    /// The underlying TCP stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Plain(s) => s,
            MaybeTlsStream::ClientTls(s) => s.get_ref().0,
            MaybeTlsStream::ServerTls(s) => s.get_ref().0,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTlsStream::ClientTls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            MaybeTlsStream::ServerTls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTlsStream::ClientTls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            MaybeTlsStream::ServerTls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTlsStream::ClientTls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            MaybeTlsStream::ServerTls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            MaybeTlsStream::ClientTls(s) => s.is_write_vectored(),
            MaybeTlsStream::ServerTls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTlsStream::ClientTls(s) => Pin::new(&mut **s).poll_flush(cx),
            MaybeTlsStream::ServerTls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTlsStream::ClientTls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            MaybeTlsStream::ServerTls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
