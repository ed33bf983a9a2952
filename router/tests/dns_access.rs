//! weaveDNS is no open resolver: a real `weaver` listening on `0.0.0.0` answers the host
//! (loopback) and a client on the weave range, and refuses a client on any other network, here a
//! network namespace joined to the host by a veth pair, as a machine on the LAN would be.
//!
//! Needs root and `ip` (it creates the namespace and the veth); without them it says so and
//! passes.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use hickory_server::proto::op::{Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};
use nix::sched::CloneFlags;
use weave_tests::Weaver;

/// The weave range of the router under test; the namespace gets an address in it too.
const RANGE: &str = "10.99.0.0/16";

const WAIT: Duration = Duration::from_secs(5);

/// Runs `ip args`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with one end of a veth pair, the other end on the host: deleted (and the
/// pair with it) when dropped, also after a failed assertion.
struct Namespace {
    name: String,
    host_link: String,
}

impl Namespace {
    /// `name` with the veth `host_link` (host) / `ns_link` (inside), `host`/30 on the host end
    /// and `inside`/30 plus `extra`/32 on the other; `extra` is routed to it from the host.
    fn create(name: &str, host: Ipv4Addr, inside: Ipv4Addr, extra: Ipv4Addr) -> Self {
        let host_link = format!("{name}h");
        let ns_link = format!("{name}n");
        ip(&["netns", "add", name]);
        // From here on, a failure still removes what was made.
        let namespace = Self {
            name: name.to_owned(),
            host_link: host_link.clone(),
        };
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link,
        ]);
        ip(&["link", "set", &ns_link, "netns", name]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        let (inside, extra_net) = (format!("{inside}/30"), format!("{extra}/32"));
        ip(&["-n", name, "addr", "add", &inside, "dev", &ns_link]);
        ip(&["-n", name, "addr", "add", &extra_net, "dev", &ns_link]);
        ip(&["-n", name, "link", "set", &ns_link, "up"]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        ip(&["route", "add", &format!("{extra}/32"), "dev", &host_link]);
        namespace
    }

    /// `work` run on a thread that has entered the namespace (sockets it creates are inside).
    fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let netns = File::open(format!("/run/netns/{}", self.name)).unwrap();
                    nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET).unwrap();
                    work()
                })
                .join()
                .unwrap()
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for args in [
            ["netns", "del", &self.name].as_slice(),
            ["link", "del", &self.host_link].as_slice(),
        ] {
            let _ = Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Why this machine cannot run the test, if it cannot.
fn unable() -> Option<&'static str> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root");
    }
    let has_ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    (!has_ip).then_some("no `ip` command")
}

fn question(name: &str) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    message
}

/// The answer over UDP from `from` (port 0: any), `None` when none comes in time.
fn ask_udp(from: Ipv4Addr, server: SocketAddr, asked: &Message) -> Option<Message> {
    let socket = UdpSocket::bind(SocketAddrV4::new(from, 0)).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket.send_to(&asked.to_vec().unwrap(), server).unwrap();
    let mut buffer = vec![0u8; 65_535];
    let (len, _) = socket.recv_from(&mut buffer).ok()?;
    let answer = Message::from_vec(&buffer[..len]).unwrap();
    assert_eq!(answer.metadata.id, asked.metadata.id);
    Some(answer)
}

/// The answer over TCP, `None` when the connection is closed (or silent) instead.
fn ask_tcp(server: SocketAddr, asked: &Message) -> Option<Message> {
    let mut stream = TcpStream::connect_timeout(&server, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let bytes = asked.to_vec().unwrap();
    let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    // A closed connection may fail the write or the read; either way there is no answer.
    stream.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut buffer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buffer).ok()?;
    Some(Message::from_vec(&buffer).unwrap())
}

fn code(answer: Option<&Message>) -> Option<ResponseCode> {
    answer.map(|answer| answer.metadata.response_code)
}

#[test]
fn weavedns_answers_the_host_and_weave_and_refuses_other_networks() {
    if let Some(reason) = unable() {
        weave_tests::skip::skip(reason);
        return;
    }
    let weaver = Weaver::builder()
        .range(RANGE)
        .dns_listen("0.0.0.0:0")
        .start();
    let (status, listen) = weaver.request("GET", "/dns-address-port", "");
    assert_eq!(status, 200, "{listen}");
    let port = listen.trim().parse::<SocketAddr>().unwrap().port();

    // A /30 of the benchmarking range (RFC 2544), and a weave address, unique to this process.
    let pid = std::process::id();
    let [_, _, high, low] = pid.to_be_bytes();
    let base = low & 0xfc;
    let host = Ipv4Addr::new(198, 18, high, base + 1);
    let outsider = Ipv4Addr::new(198, 18, high, base + 2);
    let on_weave = Ipv4Addr::new(10, 99, high, base + 2);
    let namespace = Namespace::create(&format!("wvd{pid:x}"), host, outsider, on_weave);

    // A name in the domain that no one registered: answered NXDOMAIN by anyone we serve, without
    // needing an upstream.
    let asked = question("nobody.weave.local.");
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let via_veth = SocketAddr::from((host, port));

    let answer = ask_udp(Ipv4Addr::LOCALHOST, loopback, &asked);
    assert_eq!(code(answer.as_ref()), Some(ResponseCode::NXDomain));
    let answer = ask_tcp(loopback, &asked);
    assert_eq!(code(answer.as_ref()), Some(ResponseCode::NXDomain));

    let (refused, weave, refused_tcp) = namespace.run(|| {
        (
            ask_udp(outsider, via_veth, &asked),
            ask_udp(on_weave, via_veth, &asked),
            ask_tcp(via_veth, &asked),
        )
    });
    let refused = refused.expect("an answer to the outsider");
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(refused.answers.is_empty());
    assert_eq!(code(weave.as_ref()), Some(ResponseCode::NXDomain));
    assert!(
        refused_tcp.is_none(),
        "the outsider got an answer over TCP: {refused_tcp:?}"
    );

    // The metrics count what happened: three answered from the registry (loopback UDP and
    // TCP, the weave address), one refused (the TCP connection of the outsider is closed
    // before any question is read, so it is not counted).
    let (status, metrics) = weaver.request("GET", "/metrics", "");
    assert_eq!(status, 200, "{metrics}");
    for line in [
        "weave_dns_queries_total{result=\"local\"} 3",
        "weave_dns_queries_total{result=\"refused\"} 1",
        "weave_http_requests_total{route=\"/dns-address-port\",method=\"GET\",status=\"200\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    assert!(
        metrics.contains("weave_ipam_addresses{subnet=\"10.99.0.0/16\",state=\"free\"} 65534"),
        "{metrics}"
    );
}
