//! The tests' one HTTP client: a blocking request over a fresh connection, spoken by hyper, to a
//! `host:port` or a unix socket path.
//!
//! Tests that must see the wire exactly as sent (malformed requests, chunk boundaries, hijacked
//! streams) use [`crate::raw`] instead; everything else goes through here, so that framing,
//! chunked bodies and timeouts are handled once.

use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// How long connecting may take.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
/// How long a whole exchange may take by default.
const EXCHANGE_PATIENCE: Duration = Duration::from_secs(60);

/// A request to build up and [`Request::send`].
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    patience: Duration,
}

/// What came back: the status, the headers and the whole body (chunks joined) as text.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, decoded lossily as UTF-8.
    pub body: String,
}

impl Request {
    /// `method path`, with no body.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            patience: EXCHANGE_PATIENCE,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// `POST path`.
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// One more request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A url-encoded form body, as Weave Net's clients send; nothing when `form` is empty.
    pub fn form(mut self, form: &str) -> Self {
        if !form.is_empty() {
            self = self.header("Content-Type", "application/x-www-form-urlencoded");
            form.as_bytes().clone_into(&mut self.body);
        }
        self
    }

    /// A JSON body, as the Docker API takes it.
    pub fn json(mut self, body: &Value) -> Self {
        self = self.header("Content-Type", "application/json");
        self.body = body.to_string().into_bytes();
        self
    }

    /// How long the whole exchange may take (connecting included).
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Sends the request to `addr` (`host:port`, or a unix socket path starting with `/`) over a
    /// connection of its own and reads the whole answer.
    ///
    /// # Errors
    /// When nothing listens, the exchange fails or it outlasts its patience.
    pub fn send(self, addr: &str) -> io::Result<Reply> {
        let addr = addr.to_owned();
        block_on(async move {
            let patience = self.patience;
            tokio::time::timeout(patience, self.exchange(&addr))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer in {patience:?}"),
                    )
                })?
        })
    }

    /// Sends the request to the unix socket at the absolute path `socket`, as
    /// [`Request::send`] does.
    ///
    /// # Errors
    /// As [`Request::send`].
    pub fn send_unix(self, socket: &Path) -> io::Result<Reply> {
        assert!(socket.is_absolute(), "{} is not absolute", socket.display());
        let socket = socket.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a socket path that is not UTF-8",
            )
        })?;
        self.send(socket)
    }

    async fn exchange(self, addr: &str) -> io::Result<Reply> {
        if addr.starts_with('/') {
            let stream = connect(UnixStream::connect(addr)).await?;
            self.over(stream, "localhost").await
        } else {
            let stream = connect(TcpStream::connect(addr)).await?;
            self.over(stream, addr).await
        }
    }

    async fn over<S>(self, stream: S, host: &str) -> io::Result<Reply>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(self.method.as_str())
            .uri(&self.path)
            .header("Host", host);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        // A POST or PUT says its length even when empty, as curl and Weave Net's clients do.
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT") {
            request = request.header("Content-Length", self.body.len());
        }
        let request = request
            .body(Full::new(Bytes::from(self.body)))
            .map_err(io::Error::other)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(io::Error::other)?;
        let (head, body) = response.into_parts();
        let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
        Ok(Reply {
            status: head.status.as_u16(),
            headers: head.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

impl Reply {
    /// A header's value as text, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; panics, showing the body, when it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// `method path` with a url-encoded `form` (none when empty) to `addr`: status and body.
///
/// # Errors
/// As [`Request::send`].
pub fn request(addr: &str, method: &str, path: &str, form: &str) -> io::Result<(u16, String)> {
    let reply = Request::new(method, path).form(form).send(addr)?;
    Ok((reply.status, reply.body))
}

async fn connect<S>(connecting: impl Future<Output = io::Result<S>>) -> io::Result<S> {
    tokio::time::timeout(CONNECT_PATIENCE, connecting)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Runs `work` to completion on a runtime of its own: on this thread, or on a helper thread
/// when this one already drives a runtime (tokio forbids nesting one in another).
fn block_on<T: Send>(work: impl Future<Output = T> + Send) -> T {
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(work)
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(run).join().expect("the request thread"))
    } else {
        run()
    }
}
