//! Hijacked streams between two plain sockets (unix or TCP, no TLS), moved by splice(2) through a
//! pipe per direction, so that the bytes of an attach or exec never pass through the proxy's
//! memory: each chunk costs two splices instead of a read and a write, and no copy.
//!
//! Half-close is kept as [`tokio::io::copy_bidirectional`] keeps it: the end of one direction
//! shuts down the write side of its destination (a client's end of stdin reaches the
//! container), and the stream is over when both directions are.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::fcntl::{OFlag, SpliceFFlags, splice};
use nix::sys::socket::{Shutdown, shutdown};
use nix::unistd::pipe2;
use prometheus_client::metrics::counter::Counter;
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// The most one splice asks to move: a default pipe's capacity (16 pages), which a socket's
/// buffer fills in one go on a busy stream.
const CHUNK: usize = 64 * 1024;

/// One end of a hijacked stream that splice(2) can move bytes to and from.
#[derive(Debug)]
pub enum Socket {
    /// A unix socket connection.
    Unix(UnixStream),
    /// A TCP connection.
    Tcp(TcpStream),
}

impl Socket {
    /// Runs `f` on the socket once it is ready for `interest`, and again each time `f` says it
    /// would block.
    async fn ready_io<R>(
        &self,
        interest: Interest,
        mut f: impl FnMut(BorrowedFd<'_>) -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            Self::Unix(s) => s.async_io(interest, || f(s.as_fd())).await,
            Self::Tcp(s) => s.async_io(interest, || f(s.as_fd())).await,
        }
    }

    /// Ends what this end sends; the peer reads an end of stream and can still answer.
    fn shutdown_write(&self) -> nix::Result<()> {
        let fd = match self {
            Self::Unix(s) => s.as_raw_fd(),
            Self::Tcp(s) => s.as_raw_fd(),
        };
        shutdown(fd, Shutdown::Write)
    }
}

/// Relays between `client` and `daemon` until both directions have ended, counting each
/// direction's bytes as they go. Returns the bytes moved (client to daemon, daemon to client).
///
/// # Errors
/// Registering a socket with the runtime, making a pipe, or a splice failing (a peer that reset
/// its connection, usually); the stream then ends in both directions, as a copy's would.
pub async fn bidirectional(
    client: &Socket,
    daemon: &Socket,
    to_daemon: &Counter,
    to_client: &Counter,
) -> io::Result<(u64, u64)> {
    tokio::try_join!(
        one_way(client, daemon, to_daemon),
        one_way(daemon, client, to_client)
    )
}

/// Moves everything `from` sends to `to`, then shuts down `to`'s write side.
async fn one_way(from: &Socket, to: &Socket, counter: &Counter) -> io::Result<u64> {
    let (pipe_out, pipe_in) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // Non-blocking on the pipe too: the sockets already are (tokio set them so), and a splice
    // that would wait then says so, and the task waits for readiness instead of the thread.
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut total = 0u64;
    loop {
        let read = from
            .ready_io(Interest::READABLE, |socket| {
                Ok(splice(socket, None, &pipe_in, None, CHUNK, flags)?)
            })
            .await?;
        if read == 0 {
            // Not connected any more (the peer closed both ways) is not an error here: there is
            // no one left to tell that the stream ended.
            match to.shutdown_write() {
                Ok(()) | Err(nix::errno::Errno::ENOTCONN) => return Ok(total),
                Err(err) => return Err(err.into()),
            }
        }
        // The pipe was empty, so it holds exactly `read` bytes: drain it before reading again.
        let mut left = read;
        while left > 0 {
            left -= to
                .ready_io(Interest::WRITABLE, |socket| {
                    Ok(splice(pipe_out.as_fd(), None, socket, None, left, flags)?)
                })
                .await?;
        }
        total += read as u64;
        counter.inc_by(read as u64);
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    use super::*;

    /// A connected pair: one end for the test, the other for the relay.
    fn pair() -> (UnixStream, Socket) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        (ours, Socket::Unix(theirs))
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close_and_counts() {
        let (mut client, client_end) = pair();
        let (mut daemon, daemon_end) = pair();
        let (to_daemon, to_client) = (Counter::default(), Counter::default());
        let relay = {
            let (to_daemon, to_client) = (to_daemon.clone(), to_client.clone());
            tokio::spawn(async move {
                bidirectional(&client_end, &daemon_end, &to_daemon, &to_client).await
            })
        };
        // More than a pipe holds, so the relay must drain and refill it.
        let stdin: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let stdin = stdin.clone();
            tokio::spawn(async move {
                client.write_all(&stdin).await.unwrap();
                // The client's end of stdin...
                client.shutdown().await.unwrap();
                let mut out = Vec::new();
                client.read_to_end(&mut out).await.unwrap();
                out
            })
        };
        let mut got = Vec::new();
        // ...reaches the daemon as an end of its input, while its answer can still go back.
        daemon.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, stdin);
        daemon.write_all(b"done\n").await.unwrap();
        daemon.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"done\n");
        let moved = relay.await.unwrap().unwrap();
        assert_eq!(moved, (stdin.len() as u64, 5));
        assert_eq!((to_daemon.get(), to_client.get()), moved);
    }
}
