//! The connection pool to the Docker daemon, over a unix socket, TCP, or TLS over TCP.
//!
//! The original proxy dialled the daemon anew for every request, which cost about 230 µs each;
//! here idle connections are kept and reused. A connection that is upgraded for attach or exec
//! never returns to the pool.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use thiserror::Error;
use tokio::net::{TcpStream, UnixStream};

use crate::body::ProxyBody;
use crate::socket::Stream;
use crate::tls::ClientTls;
use api::DockerAddr;

/// The daemon could not be reached, or dropped the connection before its answer was complete.
#[derive(Debug, Clone, Error)]
#[error("Cannot connect to the Docker daemon at {addr}: {reason}. Is the docker daemon running?")]
pub struct UpstreamError {
    /// The daemon's address, as `unix://...` or `tcp://...`.
    pub addr: String,
    /// What happened, innermost cause first (`Connection refused`).
    pub reason: String,
}

/// Connects to the daemon's socket, whatever host the request URI names.
#[derive(Debug, Clone)]
struct Connector {
    addr: Arc<DockerAddr>,
    /// TLS to a TCP daemon (`DOCKER_TLS_VERIFY`); never used on a unix socket.
    tls: Option<Arc<ClientTls>>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (addr, tls) = (Arc::clone(&self.addr), self.tls.clone());
        Box::pin(async move {
            let stream = match addr.as_ref() {
                DockerAddr::Unix(path) => Stream::from(UnixStream::connect(path).await?),
                DockerAddr::Tcp(host_port) => {
                    let tcp = TcpStream::connect(host_port.as_str()).await?;
                    match tls {
                        Some(tls) => {
                            let _ = tcp.set_nodelay(true);
                            Stream::from(tls.connect(tcp).await?)
                        }
                        None => Stream::from(tcp),
                    }
                }
            };
            Ok(TokioIo::new(stream))
        })
    }
}

/// The Docker daemon the proxy forwards to.
#[derive(Debug, Clone)]
pub struct Upstream {
    addr: Arc<DockerAddr>,
    client: Client<Connector, ProxyBody>,
}

impl Upstream {
    /// A pool of connections to the daemon at `addr`; nothing is dialled until the first request.
    pub fn new(addr: DockerAddr) -> Self {
        Self::with_tls(addr, None)
    }

    /// Like [`Upstream::new`], speaking TLS with `tls` when `addr` is TCP (a unix socket ignores
    /// it).
    pub fn with_tls(addr: DockerAddr, tls: Option<ClientTls>) -> Self {
        let addr = Arc::new(addr);
        let tls = tls
            .filter(|_| matches!(addr.as_ref(), DockerAddr::Tcp(_)))
            .map(Arc::new);
        let client = Client::builder(TokioExecutor::new())
            // Docker's API is HTTP/1.1 only; keep the request head exactly as the client wrote it.
            .http1_preserve_header_case(true)
            .http1_title_case_headers(false)
            .build(Connector {
                addr: Arc::clone(&addr),
                tls,
            });
        Self { addr, client }
    }

    /// The daemon's address, as `unix://...` or `tcp://...`.
    pub fn addr(&self) -> &DockerAddr {
        &self.addr
    }

    /// The daemon's unix socket path, if it is reached over one.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match self.addr.as_ref() {
            DockerAddr::Unix(path) => Some(path.clone()),
            DockerAddr::Tcp(_) => None,
        }
    }

    /// Sends a request whose URI is origin-form (`/v1.41/_ping`) to the daemon.
    ///
    /// # Errors
    /// [`UpstreamError`] when the daemon cannot be reached or drops the connection before
    /// it answers. An answer with any status, error or not, is `Ok`.
    pub async fn send(
        &self,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        // The legacy client wants an absolute URI; the connector ignores its authority.
        *request.uri_mut() = Uri::builder()
            .scheme("http")
            .authority("docker")
            .path_and_query(path_and_query)
            .build()
            .expect("a path and query taken from a valid URI is valid");
        self.client
            .request(request)
            .await
            .map_err(|err| self.failed(root_cause(&err)))
    }

    /// The error for this daemon with `reason`: also for an answer cut off after its head.
    pub fn failed(&self, reason: String) -> UpstreamError {
        UpstreamError {
            addr: self.addr.to_string(),
            reason,
        }
    }
}

/// The innermost error message, which is the one that says what happened (`Connection refused`).
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
