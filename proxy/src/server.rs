//! Accept loops, per-connection tasks, hijacked streams (spliced, or copied over TLS) and
//! graceful shutdown.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, copy_bidirectional_with_sizes};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::forward::{Context, HijackSlot, forward};
use crate::listen::{Accepted, Listener};
use crate::metrics::{Relayed, StreamKind};
use crate::socket::Stream;
use crate::splice;

/// Buffer per direction for hijacked streams over TLS: big enough that a 256 MiB `cat` through attach
/// is not dominated by syscalls, small enough for thousands of idle attaches.
const SPLICE_BUFFER: usize = 64 * 1024;

/// How long a client of a TLS listener has to finish its handshake. Docker has no such limit,
/// but a client that connects and says nothing would otherwise hold a task and a descriptor for
/// ever; every real client finishes in milliseconds.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Docker's own server accepts far more than hyper's default of 100 header lines.
const MAX_HEADERS: usize = 1000;

/// How the proxy serves: what it forwards to and how long it lets work finish on shutdown.
#[derive(Debug, Clone)]
pub struct Server {
    context: Context,
    grace: Duration,
}

impl Server {
    /// A server forwarding with `context` that waits up to `grace` for in-flight work on
    /// shutdown.
    pub fn new(context: Context, grace: Duration) -> Self {
        Self { context, grace }
    }

    /// Serves every listener until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish for up to the grace period, and returns. Unix socket files are removed
    /// when the listeners are dropped on return.
    pub async fn run(self, listeners: Vec<Listener>, shutdown: impl Future<Output = ()>) {
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let server = Arc::new(self);
        let mut accept_loops = Vec::with_capacity(listeners.len());
        for listener in listeners {
            let (server, stop, tracker) = (Arc::clone(&server), stop.clone(), tracker.clone());
            accept_loops.push(tokio::spawn(async move {
                server.accept_loop(&listener, &stop, &tracker).await;
                listener
            }));
        }

        shutdown.await;
        info!("shutting down: no new connections");
        stop.cancel();
        // Closing the listeners at once refuses new clients and removes the socket files,
        // while the connections already accepted finish below.
        for accept_loop in accept_loops {
            drop(accept_loop.await);
        }
        tracker.close();
        if tokio::time::timeout(server.grace, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                connections = tracker.len(),
                grace_secs = server.grace.as_secs_f64(),
                "grace period over: cutting the connections still open"
            );
        }
        info!("shut down");
    }

    async fn accept_loop(
        self: &Arc<Self>,
        listener: &Listener,
        stop: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        let mut backoff = Duration::from_millis(10);
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match stream {
                Ok(accepted) => {
                    backoff = Duration::from_millis(10);
                    let (server, stop) = (Arc::clone(self), stop.clone());
                    tracker.spawn(async move {
                        let Some(stream) = establish(accepted, &stop).await else {
                            return;
                        };
                        server.serve_connection(stream, stop).await;
                    });
                }
                Err(err) => {
                    // Out of file descriptors, usually: wait for some to be freed rather than
                    // spinning or giving up on every future client.
                    warn!(error = %err, retry_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    async fn serve_connection(self: Arc<Self>, stream: Stream, stop: CancellationToken) {
        let hijack = HijackSlot::default();
        let service = {
            let (server, hijack) = (Arc::clone(&self), hijack.clone());
            service_fn(move |request| {
                let (server, hijack) = (Arc::clone(&server), hijack.clone());
                Box::pin(async move {
                    Ok::<_, Infallible>(forward(&server.context, request, &hijack).await)
                }) as Pin<Box<dyn Future<Output = _> + Send>>
            })
        };
        let mut conn = http1::Builder::new()
            .max_headers(MAX_HEADERS)
            // The connection is handed back to us after a 101 or a legacy raw-stream 200,
            // instead of being closed, so that it can be spliced to the daemon.
            .serve_connection(TokioIo::new(stream), service);
        let served = tokio::select! {
            served = poll_fn(|cx| conn.poll_without_shutdown(cx)) => Some(served),
            () = hijack.legacy_ready() => None,
            () = stop.cancelled() => {
                // Finish the request in flight (if any), then close instead of keeping alive.
                Pin::new(&mut conn).graceful_shutdown();
                tokio::select! {
                    served = poll_fn(|cx| conn.poll_without_shutdown(cx)) => Some(served),
                    () = hijack.legacy_ready() => None,
                }
            }
        };
        if let Some(Err(err)) = served {
            // Clients hanging up mid-stream is routine (Ctrl-C on `docker logs -f`).
            debug!(error = %err, "client connection ended");
            return;
        }
        let parts = conn.into_parts();
        let mut client = parts.io.into_inner();
        let Some(hijack) = hijack.take() else {
            let _ = client.shutdown().await;
            return;
        };
        if let Some(head) = hijack.legacy_head
            && client.write_all(&head).await.is_err()
        {
            return;
        }
        let relayed = self.context.metrics.relayed(StreamKind::Hijacked);
        let early = parts.read_buf;
        // The daemon's end is the pool's own socket when hyper lets it go as such: then it can
        // be spliced. What hyper read past the daemon's head goes to the client first.
        let outcome = match hijack.daemon.downcast::<TokioIo<Stream>>() {
            Ok(daemon) => {
                let (mut daemon, late) = (daemon.io.into_inner(), daemon.read_buf);
                if daemon.write_all(&early).await.is_err() || client.write_all(&late).await.is_err()
                {
                    return;
                }
                relayed.to_daemon.inc_by(early.len() as u64);
                relayed.to_client.inc_by(late.len() as u64);
                relay(client, daemon, &relayed).await
            }
            Err(daemon) => {
                let mut daemon = TokioIo::new(daemon);
                if daemon.write_all(&early).await.is_err() {
                    return;
                }
                relayed.to_daemon.inc_by(early.len() as u64);
                copy(&mut client, &mut daemon, &relayed).await
            }
        };
        match outcome {
            Ok((up, down)) => debug!(
                client_to_daemon = up,
                daemon_to_client = down,
                "stream closed"
            ),
            Err(err) => debug!(error = %err, "stream ended"),
        }
    }
}

/// Relays a hijacked stream: spliced when neither end is TLS, copied through the proxy's
/// buffers otherwise (TLS must be decrypted and encrypted again on the way).
async fn relay(client: Stream, daemon: Stream, relayed: &Relayed) -> io::Result<(u64, u64)> {
    if client.is_tls() || daemon.is_tls() {
        let (mut client, mut daemon) = (client, daemon);
        return copy(&mut client, &mut daemon, relayed).await;
    }
    let (Ok(client), Ok(daemon)) = (client.into_socket(), daemon.into_socket()) else {
        unreachable!("neither end is TLS");
    };
    debug!("hijacked stream spliced");
    splice::bidirectional(&client, &daemon, &relayed.to_daemon, &relayed.to_client).await
}

/// Copies a hijacked stream through a buffer per direction; its bytes are counted when it ends.
async fn copy<A, B>(client: &mut A, daemon: &mut B, relayed: &Relayed) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (up, down) =
        copy_bidirectional_with_sizes(client, daemon, SPLICE_BUFFER, SPLICE_BUFFER).await?;
    relayed.to_daemon.inc_by(up);
    relayed.to_client.inc_by(down);
    Ok((up, down))
}

/// The client's stream once its TLS handshake (if any) is done; `None` when the handshake failed,
/// took too long, or the proxy is stopping. A failed handshake ends only this connection: it is
/// a client's problem (no certificate, the wrong CA, plain HTTP), so it is logged at debug.
async fn establish(accepted: Accepted, stop: &CancellationToken) -> Option<Stream> {
    if !accepted.is_tls() {
        return accepted.establish().await.ok();
    }
    let peer = accepted.peer().map(|p| p.to_string()).unwrap_or_default();
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, accepted.establish());
    let outcome = tokio::select! {
        () = stop.cancelled() => return None,
        outcome = handshake => outcome,
    };
    match outcome {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            debug!(peer = %peer, error = %err, "TLS handshake failed; connection closed");
            None
        }
        Err(_) => {
            debug!(
                peer = %peer,
                timeout_secs = HANDSHAKE_TIMEOUT.as_secs(),
                "TLS handshake timed out; connection closed"
            );
            None
        }
    }
}
