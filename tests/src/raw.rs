//! Raw HTTP/1.1 over a unix socket, for tests that must see exactly what is on the wire.
//!
//! An HTTP client library would normalise what these tests check (status lines, header
//! framing, chunk boundaries, hijacked streams), so they speak the protocol by hand.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a read may wait for the peer before the test fails.
pub const READ_PATIENCE: Duration = Duration::from_secs(30);

/// A response head as it came over the wire.
#[derive(Debug)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses the head at the start of `raw` (anything after it is ignored).
    pub fn parse(raw: &[u8]) -> Self {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        let text = String::from_utf8_lossy(&raw[..end]);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        assert!(
            parts.next().unwrap_or_default().starts_with("HTTP/1."),
            "not HTTP: {text:?}"
        );
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {status_line:?}"));
        let reason = parts.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or((l, ""));
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Self {
            status,
            reason,
            headers,
        }
    }
}

/// One client connection with its own read buffer.
#[derive(Debug)]
pub struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to `socket`; reads give up after [`READ_PATIENCE`].
    pub fn open(socket: &Path) -> Self {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        stream.set_read_timeout(Some(READ_PATIENCE)).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("the request is written");
    }

    /// Half-closes: the peer reads EOF, the answer can still be read.
    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).expect("half-close");
    }

    /// Reads more into the buffer; false at EOF.
    pub fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "nothing to read for {READ_PATIENCE:?}; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Takes exactly `n` bytes, or fewer at EOF.
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n && self.fill() {}
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    /// Takes exactly `n` bytes; panics if the connection ends first.
    pub fn take_exact(&mut self, n: usize) -> Vec<u8> {
        let bytes = self.take(n);
        assert_eq!(bytes.len(), n, "the connection ended early");
        bytes
    }

    /// One CRLF-terminated line, without the CRLF.
    pub fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.drain(..end + 2).collect::<Vec<_>>();
                return line[..end].to_vec();
            }
            assert!(self.fill(), "the connection ended inside a line");
        }
    }

    /// The next response head.
    pub fn head(&mut self) -> Head {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Head::parse(&raw[..end]);
            }
            assert!(
                self.fill(),
                "the connection ended before a response head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// The underlying socket, for tests that read or write past the buffer.
    pub fn stream_mut(&mut self) -> &mut UnixStream {
        &mut self.stream
    }

    /// The next whole response to a `method` request: its head and de-chunked body.
    pub fn response(&mut self, method: &str) -> (Head, Vec<u8>) {
        let head = self.head();
        let body = self.body_chunks(&head, method).concat();
        (head, body)
    }

    /// The body's chunks as framed on the wire (one chunk for a `Content-Length` body).
    pub fn body_chunks(&mut self, head: &Head, method: &str) -> Vec<Vec<u8>> {
        if method == "HEAD" || matches!(head.status, 101 | 204 | 304) {
            return Vec::new();
        }
        let chunked = head
            .header("Transfer-Encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
        if chunked {
            let mut chunks = Vec::new();
            loop {
                let size_line = String::from_utf8(self.line()).unwrap();
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
                if size == 0 {
                    while !self.line().is_empty() {}
                    return chunks;
                }
                chunks.push(self.take_exact(size));
                assert!(self.line().is_empty(), "chunk not followed by CRLF");
            }
        }
        match head.header("Content-Length") {
            Some(len) => vec![self.take_exact(len.parse().unwrap())],
            None => vec![self.take(usize::MAX)],
        }
    }

    /// Sends a request with `Host: docker`, and a `Content-Length` when there is a body or
    /// the method is `POST`.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\n");
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes);
    }

    /// Sends a hijacking `POST` (attach or exec start), with or without `Upgrade: tcp`, and
    /// reads the answer's head.
    pub fn hijack(&mut self, path: &str, body: &[u8], upgrade: bool) -> Head {
        let mut headers = vec![("Content-Type", "application/json")];
        if upgrade {
            headers.extend([("Connection", "Upgrade"), ("Upgrade", "tcp")]);
        }
        self.request("POST", path, &headers, body);
        self.head()
    }

    /// Sends a websocket upgrade `GET` and reads the answer's head.
    pub fn websocket(&mut self, path: &str, key: &str) -> Head {
        self.request(
            "GET",
            path,
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Version", "13"),
                ("Origin", "http://localhost"),
            ],
            b"",
        );
        self.head()
    }

    /// One frame of Docker's multiplexed stream: (stream, payload), or `None` at EOF.
    pub fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let header = self.take(8);
        if header.is_empty() {
            return None;
        }
        assert_eq!(header.len(), 8, "a frame header cut short: {header:?}");
        assert!(
            matches!(header[0], 0..=2) && header[1..4] == [0, 0, 0],
            "not a multiplexed frame header: {header:?}"
        );
        let len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
        Some((header[0], self.take_exact(len)))
    }

    /// Reads multiplexed frames until stdout ends with `want`; returns all stdout seen.
    pub fn stdout_until(&mut self, want: &str) -> String {
        let mut stdout = String::new();
        while !stdout.ends_with(want) {
            let (stream, payload) = self.frame().expect("the stream ended before the echo");
            if stream == 1 {
                stdout.push_str(&String::from_utf8_lossy(&payload));
            }
        }
        stdout
    }

    /// Reads multiplexed frames to EOF: (stdout, stderr).
    pub fn frames_to_eof(&mut self) -> (String, String) {
        let (mut stdout, mut stderr) = (String::new(), String::new());
        while let Some((stream, payload)) = self.frame() {
            let text = String::from_utf8_lossy(&payload);
            match stream {
                2 => stderr.push_str(&text),
                _ => stdout.push_str(&text),
            }
        }
        (stdout, stderr)
    }

    /// Reads a raw (TTY) stream until it contains `want`.
    pub fn raw_until(&mut self, want: &str) -> String {
        while !String::from_utf8_lossy(&self.buf).contains(want) {
            assert!(self.fill(), "the stream ended before {want:?}");
        }
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }

    /// One websocket frame from the server (unmasked): (opcode, payload).
    pub fn ws_frame(&mut self) -> (u8, Vec<u8>) {
        let start = self.take_exact(2);
        let len = match start[1] & 0x7f {
            126 => u16::from_be_bytes(self.take_exact(2).try_into().unwrap()) as usize,
            127 => u64::from_be_bytes(self.take_exact(8).try_into().unwrap()) as usize,
            n => usize::from(n),
        };
        assert_eq!(start[1] & 0x80, 0, "server frames are not masked");
        (start[0] & 0x0f, self.take_exact(len))
    }
}

/// A request on a fresh connection: the head and the whole body.
pub fn roundtrip(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Head, Vec<u8>) {
    let mut conn = Conn::open(socket);
    conn.request(method, path, headers, body);
    conn.response(method)
}

/// A request written byte for byte on a fresh connection: the head and the whole body.
pub fn exchange(socket: &Path, request: &[u8]) -> (Head, Vec<u8>) {
    let method = request.split(|&b| b == b' ').next().unwrap_or_default();
    let method = String::from_utf8_lossy(method).into_owned();
    let mut conn = Conn::open(socket);
    conn.send(request);
    conn.response(&method)
}

/// `GET path`, keeping the body's chunks as they were framed.
pub fn chunked_roundtrip(socket: &Path, path: &str) -> (Head, Vec<Vec<u8>>) {
    let mut conn = Conn::open(socket);
    conn.request("GET", path, &[], b"");
    let head = conn.head();
    let chunks = conn.body_chunks(&head, "GET");
    (head, chunks)
}

/// A client-to-server websocket text frame (FIN, masked, RFC 6455 §5.2).
pub fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | u8::try_from(n).unwrap()),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Percent-encodes a query parameter value.
pub fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
