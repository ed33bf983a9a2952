//! `weave status connections`: whether the underlay carries this host's VXLAN traffic to each
//! peer, full-size frames included. Every router answers a UDP echo on the port after the VXLAN
//! port; a probe sends one small datagram and one as large as a full VXLAN packet for the
//! bridge's MTU, with Don't Fragment set, and reports which came back.
//!
//! The kernel's VXLAN socket cannot be asked, so this probes the same path on the next port: a
//! firewall that passes one and not the other would fool it, and a peer whose router is down
//! shows unreachable although the kernel may still carry its containers' traffic.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

/// What a probe starts with; anything else on the port is ignored.
const MAGIC: &[u8; 12] = b"weave-probe1";
/// Magic, nonce: what an answer echoes back.
const HEADER: usize = MAGIC.len() + 8;
/// VXLAN's cost on the underlay: outer IPv4 20, UDP 8, VXLAN 8, the inner Ethernet header 14.
const VXLAN_OVERHEAD: u32 = 50;
/// IPv4 and UDP headers of the probe itself.
const PROBE_HEADERS: u32 = 28;
/// How long a probe waits for its answers.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The probe port for a VXLAN port.
pub fn probe_port(vxlan_port: u16) -> u16 {
    vxlan_port.wrapping_add(1)
}

/// The UDP payload that makes the probe's IPv4 packet as large as a VXLAN packet carrying a
/// frame of `mtu`.
pub fn full_size_payload(mtu: u32) -> usize {
    usize::try_from(mtu + VXLAN_OVERHEAD - PROBE_HEADERS).unwrap_or(usize::MAX)
}

/// What a probe of one peer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The small probe came back after `rtt`; `full_size` says whether the large one did.
    Reachable { rtt: Duration, full_size: bool },
    /// Nothing came back.
    Unreachable,
}

/// Answers probes on `addr` for ever.
///
/// # Errors
/// When the port cannot be bound.
pub async fn serve(addr: SocketAddrV4) -> io::Result<()> {
    let socket = UdpSocket::bind(addr).await?;
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(answer) = answer(&buf[..len]) {
            let _ = socket.send_to(&answer, from).await;
        }
    }
}

/// The answer to a datagram: its header and how long it was; `None` for what is not a probe.
pub fn answer(datagram: &[u8]) -> Option<Vec<u8>> {
    if datagram.len() < HEADER || !datagram.starts_with(MAGIC) {
        return None;
    }
    let mut out = datagram[..HEADER].to_vec();
    out.extend_from_slice(&u32::try_from(datagram.len()).ok()?.to_be_bytes());
    Some(out)
}

/// Probes `peer` from `local` for frames of `mtu`.
pub async fn probe(local: Ipv4Addr, peer: SocketAddrV4, mtu: u32) -> Probe {
    match try_probe(local, peer, mtu).await {
        Ok(probe) => probe,
        Err(err) => {
            tracing::debug!(%peer, error = %err, "probe failed");
            Probe::Unreachable
        }
    }
}

async fn try_probe(local: Ipv4Addr, peer: SocketAddrV4, mtu: u32) -> io::Result<Probe> {
    let socket = UdpSocket::bind(SocketAddrV4::new(local, 0)).await?;
    // Fragments would hide a path that cannot carry full-size VXLAN packets.
    rustix::net::sockopt::set_ip_mtu_discover(
        &socket,
        rustix::net::sockopt::Ipv4PathMtuDiscovery::DO,
    )?;
    socket.connect(peer).await?;
    let nonce = fastrand::u64(..);
    let small = datagram(nonce, HEADER);
    let large = datagram(nonce.wrapping_add(1), full_size_payload(mtu));
    let started = Instant::now();
    socket.send(&small).await?;
    // A local MTU below the probe's size refuses it at once (EMSGSIZE): the path cannot carry it.
    let large_sent = socket.send(&large).await.is_ok();
    let mut rtt = None;
    let mut full_size = false;
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
    while rtt.is_none() || (large_sent && !full_size) {
        let Ok(Ok(len)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await else {
            break;
        };
        match read_answer(&buf[..len]) {
            Some((n, _)) if n == nonce => rtt = Some(started.elapsed()),
            Some((n, size)) if n == nonce.wrapping_add(1) && size == large.len() => {
                full_size = true;
            }
            _ => {}
        }
    }
    Ok(match rtt {
        Some(rtt) => Probe::Reachable { rtt, full_size },
        None => Probe::Unreachable,
    })
}

fn datagram(nonce: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce.to_be_bytes());
    out.resize(len.max(HEADER), 0);
    out
}

/// The nonce and the size an answer reports.
fn read_answer(answer: &[u8]) -> Option<(u64, usize)> {
    if answer.len() != HEADER + 4 || !answer.starts_with(MAGIC) {
        return None;
    }
    let nonce = u64::from_be_bytes(answer[MAGIC.len()..HEADER].try_into().ok()?);
    let size = u32::from_be_bytes(answer[HEADER..].try_into().ok()?);
    Some((nonce, usize::try_from(size).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_size_probe_is_as_large_as_a_vxlan_packet() {
        // 1376 + 14 + 8 + 8 + 20 = 1426 bytes of IPv4 packet; less the probe's own 28.
        assert_eq!(full_size_payload(1376), 1398);
        assert_eq!(probe_port(6789), 6790);
    }

    #[test]
    fn only_probes_are_answered_with_their_header_and_length() {
        let probe = datagram(7, 100);
        let answer = answer(&probe).unwrap();
        assert_eq!(read_answer(&answer), Some((7, 100)));
        assert_eq!(super::answer(b"short"), None);
        assert_eq!(super::answer(&[0u8; 40]), None);
        assert_eq!(read_answer(&probe), None);
    }

    #[tokio::test]
    async fn a_probe_on_loopback_is_answered_full_size_and_a_silent_port_is_unreachable() {
        let lo = Ipv4Addr::LOCALHOST;
        let socket = std::net::UdpSocket::bind((lo, 0)).unwrap();
        let port = socket.local_addr().unwrap().port();
        drop(socket);
        let server = tokio::spawn(serve(SocketAddrV4::new(lo, port)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let found = probe(lo, SocketAddrV4::new(lo, port), 1376).await;
        assert!(
            matches!(
                found,
                Probe::Reachable {
                    full_size: true,
                    ..
                }
            ),
            "{found:?}"
        );
        // Loopback's MTU is 65536: a frame that would need more than that cannot be sent.
        let found = probe(lo, SocketAddrV4::new(lo, port), 70_000).await;
        assert!(
            matches!(
                found,
                Probe::Reachable {
                    full_size: false,
                    ..
                }
            ),
            "{found:?}"
        );
        server.abort();
        let found = probe(lo, SocketAddrV4::new(lo, port), 1376).await;
        assert_eq!(found, Probe::Unreachable);
    }
}
