//! A connected stream that is a unix socket, TCP or TLS over TCP, on the client or the daemon
//! side.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsStream;

use crate::splice::Socket;

/// One end of a proxied connection.
///
/// An enum rather than a boxed trait object so that every read and write is a direct call: the
/// proxy sits on the path of every byte of `docker cp` and `docker save`.
#[derive(Debug)]
pub enum Stream {
    /// A unix socket connection.
    Unix(UnixStream),
    /// A TCP connection (with Nagle off, since Docker's request/response pairs are small).
    Tcp(TcpStream),
    /// TLS over TCP: a client of a `--tls` listener, or a daemon reached with
    /// `DOCKER_TLS_VERIFY`. Boxed: the TLS state is large, and the plain variants should not
    /// carry its size around.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether TLS is in the way.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// The socket itself when no TLS is in the way: what a hijacked stream is spliced between.
    ///
    /// # Errors
    /// A TLS stream is handed back as it was.
    pub fn into_socket(self) -> Result<Socket, Self> {
        match self {
            Self::Unix(s) => Ok(Socket::Unix(s)),
            Self::Tcp(s) => Ok(Socket::Tcp(s)),
            tls @ Self::Tls(_) => Err(tls),
        }
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for Stream {
    fn from(stream: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        Self::Tls(Box::new(TlsStream::Server(stream)))
    }
}

impl From<tokio_rustls::client::TlsStream<TcpStream>> for Stream {
    fn from(stream: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        Self::Tls(Box::new(TlsStream::Client(stream)))
    }
}

impl From<UnixStream> for Stream {
    fn from(stream: UnixStream) -> Self {
        Self::Unix(stream)
    }
}

impl From<TcpStream> for Stream {
    fn from(stream: TcpStream) -> Self {
        // Best effort: a failure here only costs latency, never correctness.
        let _ = stream.set_nodelay(true);
        Self::Tcp(stream)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => match Pin::new(s.as_mut()).poll_read(cx, buf) {
                // Older docker CLIs, go-dockerclient and Swarm end stdin on a hijacked stream by
                // shutting down the TCP write side with no TLS close_notify, which Go's TLS reads
                // as a plain EOF; so does the proxy, or their `run -i` would lose its output.
                // HTTP framing still catches a message cut short.
                Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Unix(s) => s.is_write_vectored(),
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    /// Half-closes the write side, which is how a client's stdin EOF reaches the container.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}
