//! The weaveDNS server: answers, over UDP and TCP, for the names in the [`Registry`] and for the
//! reverse names of their addresses, and forwards every other question to the upstream name
//! servers (the host's), relaying their answer.
//!
//! It does so only for the host and its containers (see [`super::access`]): anyone else
//! is refused, so that it is no open resolver. Forwarded questions in flight are bounded, and the
//! upstreams never include the server itself.
//!
//! hickory does the wire format and the UDP serving loop; this module decides the answers and
//! serves TCP itself, so that a connection from a refused client is closed as soon as it is
//! accepted.
//! Answers for the domain are authoritative with the configured TTL (1 s by default, as the
//! original: containers come and go, so no resolver should keep a name for long). No SOA goes with
//! negative answers for the same reason: without one they are not cached at all (RFC 2308 §5).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, PTR};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::access::{self, AccessList};
use super::registry::Registry;
use super::resolv;
use crate::metrics::{DnsResult, Metrics};

/// The original's TTL for its answers.
pub const DEFAULT_TTL: u32 = 1;

/// The original's time to wait for an upstream name server.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// How many forwarded questions may wait for the upstreams at once. Beyond it a question gets
/// SERVFAIL at once: queueing would let a flood (or a dead upstream) grow memory and every
/// client's wait without bound, while a stub resolver given SERVFAIL just asks again.
pub const DEFAULT_MAX_FORWARDS: usize = 256;

/// A TCP client that sends no whole question for this long (or does not take its answer) is
/// disconnected, so idle connections do not pile up.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// A failed `accept` (mostly: out of file descriptors) is retried after this long rather than at
/// once, giving connections time to close.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// When `listen` has port 0, how many ports to try before giving up on finding one that is free
/// for both UDP and TCP.
const ANY_PORT_ATTEMPTS: usize = 16;

/// Large enough for any DNS message over UDP.
const UDP_BUFFER: usize = 65_535;

/// What the server needs to know.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where to listen, UDP and TCP; port 0 picks a free port, the same for both.
    pub listen: SocketAddr,
    /// TTL of the answers for the domain.
    pub ttl: u32,
    /// The name servers asked, in order, for everything outside the domain.
    pub upstreams: Vec<SocketAddr>,
    /// How long each upstream gets (per transport) before the next one is asked.
    pub upstream_timeout: Duration,
    /// Who may ask besides the host itself (loopback, its addresses, its Docker bridges'
    /// subnets, found by the server): the weave allocation range.
    pub allowed: Vec<IpNet>,
    /// The gateway addresses Docker names for its bridge networks: the interfaces holding them
    /// are Docker bridges whatever their names (`dockerd --bridge`), so their subnets may ask.
    pub docker_gateways: Vec<IpAddr>,
    /// How many forwarded questions may be in flight at once.
    pub max_forwards: usize,
    /// Where each question is counted, by how it was answered.
    pub metrics: Option<Metrics>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53)),
            ttl: DEFAULT_TTL,
            upstreams: Vec::new(),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            allowed: Vec::new(),
            docker_gateways: Vec::new(),
            max_forwards: DEFAULT_MAX_FORWARDS,
            metrics: None,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen for DNS over {protocol} on {addr}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("DNS server stopped: {0}")]
    Serve(NetError),
}

/// A bound DNS server, ready to [`run`](DnsServer::run).
#[derive(Debug)]
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    local_addr: SocketAddr,
    answerer: Answerer,
}

/// Binds UDP and TCP on `config.listen` now, so that a port already taken is an error at start
/// rather than a server that never answers. Upstreams that are this server itself are dropped,
/// with a warning.
///
/// # Errors
/// [`DnsError::Bind`] naming the protocol and address that could not be bound.
pub async fn bind(config: DnsConfig, registry: Registry) -> Result<DnsServer, DnsError> {
    let read_host = access::read_host_addrs;
    let (udp, tcp) = if config.listen.port() == 0 {
        bind_any_port(config.listen).await?
    } else {
        let udp = bind_udp(config.listen).await?;
        let tcp = bind_tcp(config.listen).await?;
        (udp, tcp)
    };
    let local_addr = udp.local_addr().map_err(|source| DnsError::Bind {
        protocol: "UDP",
        addr: config.listen,
        source,
    })?;
    let mut allowed = config.allowed;
    allowed.extend(access::loopback());
    let access = AccessList::new(allowed, config.docker_gateways, read_host);
    let host: Vec<IpAddr> = if local_addr.ip().is_unspecified() {
        match read_host() {
            Ok(addrs) => addrs.iter().map(|addr| addr.net.addr()).collect(),
            Err(error) => {
                tracing::warn!(%error, "[dns] cannot read the host's addresses to keep weaveDNS from forwarding to itself");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let (upstreams, ourselves) = resolv::without_self(&config.upstreams, local_addr, &host);
    for upstream in ourselves {
        tracing::warn!(%upstream, listen = %local_addr, "[dns] an upstream name server is weaveDNS itself; not forwarding to it");
    }
    Ok(DnsServer {
        udp,
        tcp,
        local_addr,
        answerer: Answerer {
            registry,
            ttl: config.ttl,
            upstreams: upstreams.into(),
            upstream_timeout: config.upstream_timeout,
            access: Arc::new(access),
            forwards: Arc::new(Semaphore::new(config.max_forwards)),
            metrics: config.metrics,
        },
    })
}

impl DnsServer {
    /// The address the server listens on (UDP; TCP is bound on the same).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The upstream name servers it asks, in order (those of the config that are not itself).
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.answerer.upstreams
    }

    /// Serves until the task running it is dropped or aborted (which closes the sockets).
    ///
    /// # Errors
    /// [`DnsError::Serve`] when the UDP socket fails for good.
    pub async fn run(self) -> Result<(), DnsError> {
        let access = self.answerer.access.clone();
        let mut server = Server::new(self.answerer.clone());
        server.register_socket(self.udp);
        tokio::select! {
            done = server.block_until_done() => done.map_err(DnsError::Serve),
            () = serve_tcp(self.tcp, self.answerer) => Ok(()),
            () = access.refresh_periodically() => Ok(()),
        }
    }
}

/// Accepts TCP connections for ever, closing those from refused clients at once and serving the
/// others each in its own task (stopped when this future is dropped).
async fn serve_tcp(listener: TcpListener, answerer: Answerer) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "[dns] cannot accept a TCP connection");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        if !answerer.access.permits(client.ip()) {
            tracing::debug!(%client, "[dns] TCP connection closed: the client is not the host nor on its weave or Docker networks");
            continue;
        }
        connections.spawn(answerer.clone().serve_connection(stream, client));
    }
}

async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, DnsError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| DnsError::Bind {
            protocol: "UDP",
            addr,
            source,
        })
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, DnsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DnsError::Bind {
            protocol: "TCP",
            addr,
            source,
        })
}

/// A port the kernel picks for UDP may be taken for TCP; then another is tried.
async fn bind_any_port(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let mut last = None;
    for _ in 0..ANY_PORT_ATTEMPTS {
        let udp = bind_udp(listen).await?;
        let Ok(picked) = udp.local_addr() else {
            continue;
        };
        match bind_tcp(picked).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or(DnsError::Bind {
        protocol: "UDP",
        addr: listen,
        source: io::Error::other("no local address"),
    }))
}

/// Decides and sends the answer to each request.
#[derive(Debug, Clone)]
struct Answerer {
    registry: Registry,
    ttl: u32,
    upstreams: Arc<[SocketAddr]>,
    upstream_timeout: Duration,
    /// Who may ask.
    access: Arc<AccessList>,
    /// One permit per forwarded question in flight.
    forwards: Arc<Semaphore>,
    metrics: Option<Metrics>,
}

/// Our own answer to a question about a name we are responsible for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Local {
    /// The addresses of a name, in registration order.
    Addresses(Vec<Ipv4Addr>),
    /// The name of an address (PTR).
    Name(String),
    /// The name exists but has no records of the asked type.
    NoData,
    /// The name is in our domain and does not exist.
    NxDomain,
}

/// The answer to `name` (lowercase, with its final dot) of type `qtype`, from the registry alone;
/// `None` when the question is not ours, for the upstreams.
fn local_answer(
    registry: &Registry,
    name: &str,
    qtype: RecordType,
    qclass: DNSClass,
) -> Option<Local> {
    if qclass != DNSClass::IN {
        return None;
    }
    if let Some(addr) = ptr_address(name) {
        // Only our own addresses are answered here; the rest of in-addr.arpa is the upstreams'.
        return match qtype {
            RecordType::PTR => registry.reverse(addr).map(Local::Name),
            _ => None,
        };
    }
    if !registry.owns(name) {
        return None;
    }
    let addrs = registry.lookup(name);
    if matches!(qtype, RecordType::A | RecordType::ANY) && !addrs.is_empty() {
        return Some(Local::Addresses(addrs));
    }
    // The domain itself and the names above registered ones exist without records: answering
    // NXDOMAIN for them would tell resolvers that every name below is gone too (RFC 8020).
    if !addrs.is_empty() || name == registry.domain() || registry.has_names_below(name) {
        Some(Local::NoData)
    } else {
        Some(Local::NxDomain)
    }
}

/// The address of a reverse name `d.c.b.a.in-addr.arpa.` (lowercase), if it names one address.
fn ptr_address(name: &str) -> Option<Ipv4Addr> {
    let labels = name.strip_suffix(".in-addr.arpa.")?;
    let mut octets = [0u8; 4];
    let mut parts = labels.split('.');
    for octet in octets.iter_mut().rev() {
        let label = parts.next()?;
        if label.is_empty() || !label.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = label.parse().ok()?;
    }
    match parts.next() {
        Some(_) => None,
        None => Some(Ipv4Addr::from(octets)),
    }
}

/// A response before encoding, and what to log about it.
struct Reply {
    metadata: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    outcome: String,
    /// How the question was answered, for the metrics.
    result: DnsResult,
}

impl Reply {
    /// A response with no records.
    fn empty(metadata: Metadata, code: ResponseCode, outcome: impl Into<String>) -> Self {
        let mut metadata = metadata;
        metadata.response_code = code;
        Self {
            metadata,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            outcome: outcome.into(),
            result: DnsResult::local,
        }
    }

    fn counted_as(mut self, result: DnsResult) -> Self {
        self.result = result;
        self
    }
}

#[async_trait::async_trait]
impl RequestHandler for Answerer {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let reply = self.reply(request).await;
        if let Some(metrics) = &self.metrics {
            metrics.dns(reply.result);
        }
        let metadata = reply.metadata;
        // RFC 6891 §6.1.1: a request with an OPT record gets one back; its payload size is the
        // client's, which is what hickory truncates UDP answers to.
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns.set_dnssec_ok(asked.flags().dnssec_ok);
            edns
        });
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, client = %request.src(), "[dns] cannot send the answer");
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

impl Answerer {
    async fn reply(&self, request: &Request) -> Reply {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        if !self.access.permits(request.src().ip()) {
            // REFUSED, as BIND answers a client outside `allow-query`/`allow-recursion`, rather
            // than silence: it is no bigger than the question (no amplification), and a client
            // that is ours but not yet known (a Docker network created a moment ago) moves on to
            // its next name server at once instead of waiting out its timeout.
            return Reply::empty(
                metadata,
                ResponseCode::Refused,
                "refused: not the host nor a container on its weave or Docker networks",
            )
            .counted_as(DnsResult::refused);
        }
        metadata.recursion_available = true;
        if request.metadata.op_code != OpCode::Query {
            return Reply::empty(metadata, ResponseCode::NotImp, "not a query")
                .counted_as(DnsResult::invalid);
        }
        let Ok(info) = request.request_info() else {
            return Reply::empty(metadata, ResponseCode::FormErr, "not exactly one question")
                .counted_as(DnsResult::invalid);
        };
        let query = info.query;
        let name = query.name().to_ascii();
        let reply = match local_answer(
            &self.registry,
            &name,
            query.query_type(),
            query.query_class(),
        ) {
            Some(local) => self.answer(local, query.original().name(), metadata),
            None => match self.forwards.try_acquire() {
                Ok(_in_flight) => self.forward(request, query.original(), metadata).await,
                Err(_) => Reply::empty(
                    metadata,
                    ResponseCode::ServFail,
                    "too many questions being forwarded",
                )
                .counted_as(DnsResult::failed),
            },
        };
        tracing::debug!(
            %name,
            qtype = %query.query_type(),
            client = %request.src(),
            outcome = %reply.outcome,
            "[dns] query"
        );
        reply
    }

    /// Our own, authoritative answer. The records' owner is the question's name as asked.
    fn answer(&self, local: Local, owner: &Name, metadata: Metadata) -> Reply {
        let mut metadata = metadata;
        metadata.authoritative = true;
        match local {
            Local::Addresses(mut addrs) => {
                // Clients mostly take the first address; shuffling spreads them over all of them.
                fastrand::shuffle(&mut addrs);
                let answers = addrs
                    .iter()
                    .map(|addr| Record::from_rdata(owner.clone(), self.ttl, RData::A(A(*addr))))
                    .collect::<Vec<_>>();
                let outcome = format!("{} address(es)", answers.len());
                Reply {
                    answers,
                    ..Reply::empty(metadata, ResponseCode::NoError, outcome)
                }
            }
            Local::Name(fqdn) => match Name::from_ascii(&fqdn) {
                Ok(target) => {
                    let record =
                        Record::from_rdata(owner.clone(), self.ttl, RData::PTR(PTR(target)));
                    Reply {
                        answers: vec![record],
                        ..Reply::empty(metadata, ResponseCode::NoError, fqdn)
                    }
                }
                // A registered name that is no valid DNS name cannot be put in an answer.
                Err(_) => Reply::empty(metadata, ResponseCode::ServFail, "unencodable name"),
            },
            Local::NoData => Reply::empty(metadata, ResponseCode::NoError, "no data"),
            Local::NxDomain => Reply::empty(metadata, ResponseCode::NXDomain, "no such name"),
        }
    }

    /// The upstreams' answer, with our client's id. An upstream that fails, or answers SERVFAIL
    /// or REFUSED, gives way to the next one; its answer is relayed only when no other does better.
    async fn forward(&self, request: &Request, query: &Query, metadata: Metadata) -> Reply {
        let Some((bytes, id)) = upstream_question(request, query) else {
            return Reply::empty(metadata, ResponseCode::ServFail, "unencodable question")
                .counted_as(DnsResult::failed);
        };
        let mut fallback = None;
        for &upstream in self.upstreams.iter() {
            match self.ask(upstream, &bytes, id, query).await {
                Ok(answer)
                    if matches!(
                        answer.metadata.response_code,
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    fallback.get_or_insert((upstream, answer));
                }
                Ok(answer) => return relay(metadata, upstream, answer),
                Err(error) => {
                    tracing::debug!(%upstream, %error, name = %query.name(), "[dns] upstream failed");
                }
            }
        }
        match fallback {
            Some((upstream, answer)) => relay(metadata, upstream, answer),
            None if self.upstreams.is_empty() => {
                Reply::empty(metadata, ResponseCode::ServFail, "no upstream name server")
                    .counted_as(DnsResult::failed)
            }
            None => Reply::empty(metadata, ResponseCode::ServFail, "no upstream answered")
                .counted_as(DnsResult::failed),
        }
    }

    /// One upstream's answer: over UDP, then over TCP when that was truncated (keeping the
    /// truncated one, marked so, if TCP fails: the client can still retry over TCP itself).
    async fn ask(
        &self,
        upstream: SocketAddr,
        question: &[u8],
        id: u16,
        query: &Query,
    ) -> Result<Message, ExchangeError> {
        let answer = tokio::time::timeout(
            self.upstream_timeout,
            ask_udp(upstream, question, id, query),
        )
        .await
        .map_err(|_| ExchangeError::Timeout)??;
        if !answer.metadata.truncation {
            return Ok(answer);
        }
        match tokio::time::timeout(
            self.upstream_timeout,
            ask_tcp(upstream, question, id, query),
        )
        .await
        .map_err(|_| ExchangeError::Timeout)
        .and_then(|answer| answer)
        {
            Ok(full) => Ok(full),
            Err(error) => {
                tracing::debug!(%upstream, %error, "[dns] truncated answer, and none over TCP");
                Ok(answer)
            }
        }
    }

    /// Answers the questions of one TCP client in turn (RFC 7766 allows that) until it closes,
    /// idles, or sends something that is no question: that closes the connection, which RFC 7766
    /// §6.2.4 leaves to the server.
    async fn serve_connection(self, mut stream: TcpStream, client: SocketAddr) {
        loop {
            let bytes = match tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(_)) | Err(_) => return,
            };
            let Ok(request) = Request::from_bytes(bytes, client, Protocol::Tcp) else {
                return;
            };
            // Never answer an answer: that is how reflection loops start.
            if request.metadata.message_type == MessageType::Response {
                continue;
            }
            let reply = TcpReply::default();
            self.handle_request::<_, TokioTime>(&request, reply.clone())
                .await;
            let Some(answer) = reply.take() else {
                return;
            };
            match tokio::time::timeout(TCP_IDLE, write_framed(&mut stream, &answer)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}

/// One DNS message over TCP: two bytes of length, then the message (RFC 1035 §4.2.2).
async fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut buffer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buffer).await?;
    Ok(buffer)
}

/// Writes one DNS message over TCP, behind its two-byte length.
async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len =
        u16::try_from(message.len()).map_err(|_| io::Error::other("message too long for TCP"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

/// Where the answer to a TCP question is put, encoded, for the connection to write.
#[derive(Debug, Clone, Default)]
struct TcpReply(Arc<Mutex<Option<Vec<u8>>>>);

impl TcpReply {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for TcpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        // Over TCP the whole answer goes, whatever the client's UDP buffer size.
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder)?;
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}

/// The question to send upstream, under a fresh random id (so that answers to it cannot be
/// guessed by a third party, and ours cannot be confused with another client's), with the
/// client's flags and EDNS buffer size. `None` when it cannot be encoded.
fn upstream_question(request: &Request, query: &Query) -> Option<(Vec<u8>, u16)> {
    let mut message = Message::query();
    message.metadata.recursion_desired = request.metadata.recursion_desired;
    message.metadata.checking_disabled = request.metadata.checking_disabled;
    message.add_query(query.clone());
    if let Some(asked) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(asked.max_payload().max(512));
        edns.set_dnssec_ok(asked.flags().dnssec_ok);
        message.set_edns(edns);
    }
    let id = message.metadata.id;
    message.to_vec().ok().map(|bytes| (bytes, id))
}

/// The upstream's answer as ours: its code, records and the flags that describe the data, under
/// our client's id and flags.
fn relay(metadata: Metadata, upstream: SocketAddr, answer: Message) -> Reply {
    let mut metadata = metadata;
    metadata.response_code = answer.metadata.response_code;
    metadata.authoritative = answer.metadata.authoritative;
    metadata.authentic_data = answer.metadata.authentic_data;
    metadata.truncation = answer.metadata.truncation;
    Reply {
        metadata,
        answers: answer.answers,
        authorities: answer.authorities,
        additionals: answer.additionals,
        outcome: format!("forwarded to {upstream}: {}", answer.metadata.response_code),
        result: DnsResult::forwarded,
    }
}

#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("no answer in time")]
    Timeout,
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("undecodable answer: {0}")]
    Decode(String),
    #[error("answer to another question")]
    Mismatch,
}

/// Asks over UDP. Datagrams that are not the answer (garbage, stale or forged answers) are
/// ignored and the wait goes on; the caller bounds it.
async fn ask_udp(
    upstream: SocketAddr,
    question: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, ExchangeError> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected, so that the kernel drops datagrams from anyone but the upstream.
    socket.connect(upstream).await?;
    socket.send(question).await?;
    let mut buffer = vec![0u8; UDP_BUFFER];
    loop {
        let len = socket.recv(&mut buffer).await?;
        if let Ok(answer) = Message::from_vec(&buffer[..len])
            && answers(&answer, id, query)
        {
            return Ok(answer);
        }
    }
}

/// Asks over TCP.
async fn ask_tcp(
    upstream: SocketAddr,
    question: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, ExchangeError> {
    let mut stream = TcpStream::connect(upstream).await?;
    write_framed(&mut stream, question).await?;
    let buffer = read_framed(&mut stream).await?;
    let answer =
        Message::from_vec(&buffer).map_err(|error| ExchangeError::Decode(error.to_string()))?;
    if answers(&answer, id, query) {
        Ok(answer)
    } else {
        Err(ExchangeError::Mismatch)
    }
}

/// Whether `message` is the answer to our question `id` about `query`. Some servers leave the
/// question out of error answers, so an absent one is accepted.
fn answers(message: &Message, id: u16, query: &Query) -> bool {
    message.metadata.id == id
        && message.metadata.message_type == MessageType::Response
        && (message.queries.is_empty()
            || message.queries.iter().any(|asked| {
                asked.query_type() == query.query_type()
                    && asked.query_class() == query.query_class()
                    && asked.name().eq_ignore_root(query.name())
            }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use tokio::task::JoinHandle;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    /// A server on a free port of 127.0.0.1, stopped when dropped.
    struct Running {
        addr: SocketAddr,
        registry: Registry,
        task: JoinHandle<Result<(), DnsError>>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start(
        domain: &str,
        upstreams: Vec<SocketAddr>,
        upstream_timeout: Duration,
    ) -> Running {
        let config = DnsConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ttl: DEFAULT_TTL,
            upstreams,
            upstream_timeout,
            ..DnsConfig::default()
        };
        start_with(domain, config, None).await
    }

    /// A server for `config`, allowing `access` instead of the host and loopback when given.
    async fn start_with(domain: &str, config: DnsConfig, access: Option<AccessList>) -> Running {
        let registry = Registry::new(domain);
        let mut server = bind(config, registry.clone()).await.unwrap();
        if let Some(access) = access {
            server.answerer.access = Arc::new(access);
        }
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        Running {
            addr,
            registry,
            task: tokio::spawn(server.run()),
        }
    }

    /// The upstream stub: a second weaveDNS, for `example.test.`, with no upstreams of its own.
    async fn stub() -> Running {
        let stub = start("example.test.", Vec::new(), WAIT).await;
        stub.registry
            .add("s1", ip("192.0.2.7"), "www.example.test.");
        for n in 1..=100u8 {
            stub.registry
                .add("s2", Ipv4Addr::new(198, 51, 100, n), "many.example.test.");
        }
        stub
    }

    async fn weave(upstreams: Vec<SocketAddr>, upstream_timeout: Duration) -> Running {
        let running = start("weave.local.", upstreams, upstream_timeout).await;
        for addr in ["10.32.0.1", "10.32.0.2", "10.32.0.3"] {
            running.registry.add("c1id", ip(addr), "c1.weave.local.");
        }
        running
            .registry
            .add("c2id", ip("10.32.0.9"), "c2.weave.local.");
        running
    }

    fn question(name: &str, qtype: RecordType) -> Message {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message
    }

    async fn udp(server: SocketAddr, question: &Message) -> Message {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        socket.connect(server).await.unwrap();
        socket.send(&question.to_vec().unwrap()).await.unwrap();
        let mut buffer = vec![0u8; UDP_BUFFER];
        let len = tokio::time::timeout(WAIT, socket.recv(&mut buffer))
            .await
            .expect("an answer in time")
            .unwrap();
        let answer = Message::from_vec(&buffer[..len]).unwrap();
        assert_eq!(answer.metadata.id, question.metadata.id);
        answer
    }

    async fn tcp(server: SocketAddr, question: &Message) -> Message {
        let exchange = async {
            let bytes = question.to_vec().unwrap();
            let mut stream = TcpStream::connect(server).await.unwrap();
            let len = u16::try_from(bytes.len()).unwrap();
            stream.write_all(&len.to_be_bytes()).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            let len = stream.read_u16().await.unwrap();
            let mut buffer = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buffer).await.unwrap();
            Message::from_vec(&buffer).unwrap()
        };
        let answer = tokio::time::timeout(WAIT, exchange)
            .await
            .expect("an answer in time");
        assert_eq!(answer.metadata.id, question.metadata.id);
        answer
    }

    fn addresses(answer: &Message) -> Vec<Ipv4Addr> {
        answer
            .answers
            .iter()
            .map(|record| match &record.data {
                RData::A(A(addr)) => *addr,
                other => panic!("not an A record: {other:?}"),
            })
            .collect()
    }

    fn sorted(mut addrs: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
        addrs.sort();
        addrs
    }

    #[test]
    fn reverse_names_give_their_address() {
        let cases = [
            ("1.0.32.10.in-addr.arpa.", Some("10.32.0.1")),
            ("255.255.255.255.in-addr.arpa.", Some("255.255.255.255")),
            ("0.32.10.in-addr.arpa.", None),
            ("5.1.0.32.10.in-addr.arpa.", None),
            ("256.0.32.10.in-addr.arpa.", None),
            ("+1.0.32.10.in-addr.arpa.", None),
            ("a.0.32.10.in-addr.arpa.", None),
            ("1..32.10.in-addr.arpa.", None),
            ("1.0.32.10.in-addr.arpa", None),
            ("1.0.32.10.ip6.arpa.", None),
            ("c1.weave.local.", None),
        ];
        for (name, want) in cases {
            assert_eq!(ptr_address(name), want.map(ip), "name {name:?}");
        }
    }

    #[test]
    fn local_answers_follow_the_registry() {
        use RecordType::{A as QA, AAAA, ANY, MX, PTR as QPTR, SOA};
        let registry = Registry::new("weave.local.");
        registry.add("c1id", ip("10.32.0.1"), "c1.weave.local.");
        registry.add("c1id", ip("10.32.0.2"), "c1.weave.local.");
        registry.add("c3id", ip("10.32.0.3"), "a.sub.weave.local.");
        let two = Some(Local::Addresses(vec![ip("10.32.0.1"), ip("10.32.0.2")]));
        let c1 = Some(Local::Name("c1.weave.local.".to_owned()));
        let (nodata, nx) = (Some(Local::NoData), Some(Local::NxDomain));
        let cases = [
            ("c1.weave.local.", QA, two.clone()),
            ("c1.weave.local.", ANY, two),
            ("c1.weave.local.", AAAA, nodata.clone()),
            ("c1.weave.local.", MX, nodata.clone()),
            ("x.weave.local.", QA, nx.clone()),
            ("x.weave.local.", AAAA, nx),
            ("weave.local.", QA, nodata.clone()),
            ("weave.local.", SOA, nodata.clone()),
            ("sub.weave.local.", QA, nodata),
            ("www.example.test.", QA, None),
            ("local.", QA, None),
            ("1.0.32.10.in-addr.arpa.", QPTR, c1.clone()),
            ("2.0.32.10.in-addr.arpa.", QPTR, c1),
            ("1.0.32.10.in-addr.arpa.", QA, None),
            ("9.0.32.10.in-addr.arpa.", QPTR, None),
            ("32.10.in-addr.arpa.", QPTR, None),
        ];
        for (name, qtype, want) in cases {
            let got = local_answer(&registry, name, qtype, DNSClass::IN);
            assert_eq!(got, want, "{name} {qtype}");
        }
        // Chaosnet and the like are not ours, even for our names.
        assert_eq!(
            local_answer(&registry, "c1.weave.local.", QA, DNSClass::CH),
            None
        );
    }

    #[tokio::test]
    async fn a_registered_name_gives_all_its_addresses_authoritatively() {
        let server = weave(Vec::new(), WAIT).await;
        let answer = udp(server.addr, &question("c1.weave.local.", RecordType::A)).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert!(answer.metadata.recursion_available);
        assert_eq!(
            sorted(addresses(&answer)),
            vec![ip("10.32.0.1"), ip("10.32.0.2"), ip("10.32.0.3")]
        );
        for record in &answer.answers {
            assert_eq!(record.ttl, 1);
            assert_eq!(record.name.to_ascii(), "c1.weave.local.");
        }
    }

    #[tokio::test]
    async fn the_order_of_addresses_varies() {
        let server = weave(Vec::new(), WAIT).await;
        let mut orders = HashSet::new();
        for _ in 0..40 {
            let answer = udp(server.addr, &question("c1.weave.local.", RecordType::A)).await;
            orders.insert(addresses(&answer));
        }
        // Three addresses have six orders; forty draws all alike would be a broken shuffle.
        assert!(orders.len() > 1, "always {orders:?}");
    }

    #[tokio::test]
    async fn names_match_in_any_case_and_the_answer_echoes_the_question() {
        let server = weave(Vec::new(), WAIT).await;
        let answer = udp(server.addr, &question("C2.Weave.LOCAL.", RecordType::A)).await;
        assert_eq!(addresses(&answer), vec![ip("10.32.0.9")]);
        assert_eq!(answer.answers[0].name.to_ascii(), "C2.Weave.LOCAL.");
        assert_eq!(answer.queries[0].name().to_ascii(), "C2.Weave.LOCAL.");
    }

    #[tokio::test]
    async fn an_unknown_name_in_the_domain_does_not_exist() {
        let server = weave(Vec::new(), WAIT).await;
        let answer = udp(server.addr, &question("x.weave.local.", RecordType::A)).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        assert!(answer.metadata.authoritative);
        assert!(answer.answers.is_empty());
    }

    #[tokio::test]
    async fn other_types_of_a_known_name_have_no_data() {
        let server = weave(Vec::new(), WAIT).await;
        for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let answer = udp(server.addr, &question("c1.weave.local.", qtype)).await;
            assert_eq!(
                answer.metadata.response_code,
                ResponseCode::NoError,
                "{qtype}"
            );
            assert!(answer.metadata.authoritative, "{qtype}");
            assert!(answer.answers.is_empty(), "{qtype}");
        }
    }

    #[tokio::test]
    async fn a_registered_address_has_its_name() {
        let server = weave(Vec::new(), WAIT).await;
        let answer = udp(
            server.addr,
            &question("9.0.32.10.in-addr.arpa.", RecordType::PTR),
        )
        .await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].ttl, 1);
        match &answer.answers[0].data {
            RData::PTR(PTR(name)) => assert_eq!(name.to_ascii(), "c2.weave.local."),
            other => panic!("not a PTR record: {other:?}"),
        }
    }

    #[tokio::test]
    async fn tcp_gets_the_same_answers() {
        let server = weave(Vec::new(), WAIT).await;
        let answer = tcp(server.addr, &question("c1.weave.local.", RecordType::A)).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addresses(&answer).len(), 3);
    }

    #[tokio::test]
    async fn other_names_are_forwarded_over_udp_and_tcp() {
        let stub = stub().await;
        let server = weave(vec![stub.addr], WAIT).await;
        let asked = question("www.example.test.", RecordType::A);
        for answer in [
            udp(server.addr, &asked).await,
            tcp(server.addr, &asked).await,
        ] {
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            assert!(answer.metadata.recursion_available);
            assert_eq!(addresses(&answer), vec![ip("192.0.2.7")]);
        }
        let missing = udp(server.addr, &question("nope.example.test.", RecordType::A)).await;
        assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
        // The stub knows this address; we do not, so we ask it.
        let reverse = udp(
            server.addr,
            &question("7.2.0.192.in-addr.arpa.", RecordType::PTR),
        )
        .await;
        match reverse.answers.first().map(|record| &record.data) {
            Some(RData::PTR(PTR(name))) => assert_eq!(name.to_ascii(), "www.example.test."),
            other => panic!("no PTR record: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_truncated_upstream_answer_is_asked_again_over_tcp() {
        let stub = stub().await;
        let server = weave(vec![stub.addr], WAIT).await;
        let asked = question("many.example.test.", RecordType::A);
        // Over TCP the client has room for all; it gets them only if we fetched them over TCP
        // after the stub's UDP answer came truncated.
        let full = tcp(server.addr, &asked).await;
        assert!(!full.metadata.truncation);
        assert_eq!(addresses(&full).len(), 100);
        // Over UDP without EDNS the client gets 512 bytes at most, marked truncated.
        let cut = udp(server.addr, &asked).await;
        assert!(cut.metadata.truncation);
        assert!(addresses(&cut).len() < 100);
    }

    #[tokio::test]
    async fn no_answer_upstream_is_a_server_failure() {
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let timeout = Duration::from_millis(200);
        let server = weave(vec![silent.local_addr().unwrap()], timeout).await;
        let started = Instant::now();
        let answer = udp(server.addr, &question("www.example.test.", RecordType::A)).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert!(answer.metadata.recursion_available);
        assert!(started.elapsed() < WAIT);

        let alone = weave(Vec::new(), timeout).await;
        let answer = udp(alone.addr, &question("www.example.test.", RecordType::A)).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn a_silent_upstream_gives_way_to_the_next() {
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let stub = stub().await;
        let upstreams = vec![silent.local_addr().unwrap(), stub.addr];
        let server = weave(upstreams, Duration::from_millis(200)).await;
        let answer = udp(server.addr, &question("www.example.test.", RecordType::A)).await;
        assert_eq!(addresses(&answer), vec![ip("192.0.2.7")]);
    }

    #[tokio::test]
    async fn a_failing_upstream_gives_way_to_one_that_knows() {
        // The first upstream is a weaveDNS with no upstreams: SERVFAIL for every outside name.
        let failing = start("other.test.", Vec::new(), WAIT).await;
        let stub = stub().await;
        let server = weave(vec![failing.addr, stub.addr], WAIT).await;
        let answer = udp(server.addr, &question("www.example.test.", RecordType::A)).await;
        assert_eq!(addresses(&answer), vec![ip("192.0.2.7")]);

        let only_failing = weave(vec![failing.addr], WAIT).await;
        let answer = udp(
            only_failing.addr,
            &question("www.example.test.", RecordType::A),
        )
        .await;
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn malformed_requests_do_not_stop_the_server() {
        let server = weave(Vec::new(), WAIT).await;
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        socket.connect(server.addr).await.unwrap();
        let header_claiming_five_questions = [0x12, 0x34, 0x01, 0x00, 0, 5, 0, 0, 0, 0, 0, 0];
        let garbage: [&[u8]; 4] = [
            &[],
            &[1, 2, 3],
            &header_claiming_five_questions,
            &[0xff; 300],
        ];
        for bytes in garbage {
            socket.send(bytes).await.unwrap();
        }
        let mut two = question("c1.weave.local.", RecordType::A);
        two.add_query(Query::query(
            Name::from_ascii("c2.weave.local.").unwrap(),
            RecordType::A,
        ));
        let answer = udp(server.addr, &two).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
        let answer = udp(server.addr, &question("c2.weave.local.", RecordType::A)).await;
        assert_eq!(addresses(&answer), vec![ip("10.32.0.9")]);
        assert!(!server.task.is_finished());
    }

    #[tokio::test]
    async fn edns_requests_get_edns_answers() {
        let server = weave(Vec::new(), WAIT).await;
        let mut asked = question("c1.weave.local.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        asked.set_edns(edns);
        let answer = udp(server.addr, &asked).await;
        assert!(answer.edns.is_some());
        assert_eq!(addresses(&answer).len(), 3);
    }

    #[tokio::test]
    async fn a_taken_address_is_an_error_naming_it() {
        let first = weave(Vec::new(), WAIT).await;
        let config = DnsConfig {
            listen: first.addr,
            ..DnsConfig::default()
        };
        let err = bind(config, Registry::new("weave.local."))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DnsError::Bind { addr, .. } if addr == first.addr),
            "{err:?}"
        );
        assert!(err.to_string().contains(&first.addr.to_string()), "{err}");
    }

    #[tokio::test]
    async fn a_client_outside_the_allow_list_is_refused_and_its_tcp_connection_closed() {
        let stub = stub().await;
        let config = DnsConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            upstreams: vec![stub.addr],
            ..DnsConfig::default()
        };
        // Here even loopback is outside: only the weave range and a Docker bridge are allowed.
        let access = AccessList::new(vec!["10.32.0.0/12".parse().unwrap()], Vec::new(), || {
            Ok(vec![access::HostAddr {
                interface: "docker0".to_owned(),
                net: "172.17.0.1/16".parse().unwrap(),
            }])
        });
        let server = start_with("weave.local.", config, Some(access)).await;
        server
            .registry
            .add("c2id", ip("10.32.0.9"), "c2.weave.local.");
        for name in ["c2.weave.local.", "www.example.test."] {
            let answer = udp(server.addr, &question(name, RecordType::A)).await;
            assert_eq!(
                answer.metadata.response_code,
                ResponseCode::Refused,
                "{name}"
            );
            assert!(answer.answers.is_empty(), "{name}");
            assert!(!answer.metadata.recursion_available, "{name}");
        }

        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let bytes = question("c2.weave.local.", RecordType::A).to_vec().unwrap();
        // The connection may be gone before the question is written; either way no answer comes.
        let _ = write_framed(&mut stream, &bytes).await;
        let read = tokio::time::timeout(WAIT, read_framed(&mut stream))
            .await
            .expect("the connection closed in time");
        assert!(read.is_err(), "an answer over TCP: {read:?}");
    }

    #[tokio::test]
    async fn forwarded_questions_over_the_bound_fail_at_once() {
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let config = DnsConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            upstreams: vec![silent.local_addr().unwrap()],
            upstream_timeout: WAIT,
            max_forwards: 1,
            ..DnsConfig::default()
        };
        let server = start_with("weave.local.", config, None).await;
        server
            .registry
            .add("c2id", ip("10.32.0.9"), "c2.weave.local.");

        // The first question takes the only slot until the silent upstream times out.
        let first = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        first.connect(server.addr).await.unwrap();
        let asked = question("one.example.test.", RecordType::A);
        first.send(&asked.to_vec().unwrap()).await.unwrap();
        let mut buffer = vec![0u8; UDP_BUFFER];
        tokio::time::timeout(WAIT, silent.recv_from(&mut buffer))
            .await
            .expect("the first question forwarded")
            .unwrap();

        let started = Instant::now();
        let answer = udp(server.addr, &question("two.example.test.", RecordType::A)).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert!(started.elapsed() < WAIT / 2, "{:?}", started.elapsed());
        // Our own names do not need a slot.
        let answer = udp(server.addr, &question("c2.weave.local.", RecordType::A)).await;
        assert_eq!(addresses(&answer), vec![ip("10.32.0.9")]);
    }

    #[tokio::test]
    async fn an_upstream_that_is_the_server_itself_is_dropped() {
        let stub = stub().await;
        // A port free right now, for the server to listen on and to find among its upstreams.
        let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let config = DnsConfig {
            listen,
            upstreams: vec![listen, stub.addr],
            ..DnsConfig::default()
        };
        let server = bind(config, Registry::new("weave.local.")).await.unwrap();
        assert_eq!(server.upstreams(), [stub.addr]);
    }
}
