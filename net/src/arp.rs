//! The gratuitous ARP a container sends for each new address, so that neighbours holding a stale
//! MAC for that IP (a container restarted with the same address) update at once.
//!
//! Sent through an `AF_PACKET` socket on `ethwe`, whose link-layer address comes from
//! `getifaddrs` (which nix exposes without `unsafe`). Unlike `arp_notify`, which fires only when
//! the link goes up, this also covers an address added to an `ethwe` that is already up.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use nix::ifaddrs::getifaddrs;
use nix::sys::socket::{AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, sendto, socket};

/// Length of an ARP packet over Ethernet, header included (no padding: the NIC pads).
const FRAME_LEN: usize = 42;
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];

/// An ARP request from `mac` for its own `ip`, broadcast: the "gratuitous" form Linux neighbours
/// accept as an update to an existing entry. Target hardware address zero (RFC 5227 §2.3).
pub(crate) fn gratuitous_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP);
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, oper request
    frame[14..22].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    // 32..38: target MAC stays zero
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

/// Sends one gratuitous ARP per address on `ifname`, in the calling thread's namespace.
pub(crate) fn announce(ifname: &str, ips: &[Ipv4Addr]) -> io::Result<()> {
    if ips.is_empty() {
        return Ok(());
    }
    let link = link_addr(ifname)?;
    let mac = link
        .addr()
        .ok_or_else(|| io::Error::other("no hardware address"))?;
    let sock = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    for ip in ips {
        sendto(
            sock.as_raw_fd(),
            &gratuitous_frame(mac, *ip),
            &link,
            MsgFlags::empty(),
        )?;
    }
    // Closing a packet socket waits for an RCU grace period (the kernel's packet_release calls
    // synchronize_net), 10-20 ms that the attach need not wait for.
    let closer = std::thread::Builder::new().name("arp-close".to_owned());
    if let Err(err) = closer.spawn(move || drop(sock)) {
        tracing::debug!(error = %err, "closing the ARP socket inline");
    }
    Ok(())
}

/// The `AF_PACKET` address (index and MAC) of `ifname`.
fn link_addr(ifname: &str) -> io::Result<LinkAddr> {
    getifaddrs()?
        .filter(|ifa| ifa.interface_name == ifname)
        .find_map(|ifa| ifa.address.and_then(|a| a.as_link_addr().copied()))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no link address for {ifname}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_a_broadcast_request_for_its_own_address() {
        let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        let ip = Ipv4Addr::new(10, 32, 0, 5);
        let f = gratuitous_frame(mac, ip);
        let expected: [u8; FRAME_LEN] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, // source
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // Ethernet/IPv4 request
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 32, 0, 5, // sender
            0, 0, 0, 0, 0, 0, 10, 32, 0, 5, // target: same IP
        ];
        assert_eq!(f, expected);
    }
}
