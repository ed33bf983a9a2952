//! The real [`Host`]: blocked signals read through a `signalfd`, a `NETLINK_ROUTE` subscription
//! for change notifications, a second netlink socket for queries, and `poll` over the first two.
//! Every descriptor is close-on-exec; nothing here touches stdin, stdout or stderr.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    socket,
};

use crate::netlink::{self, RouteDump, Step};
use crate::{Host, LinkState, Links, Mode, Route4, Wake};

/// Large enough for any datagram the kernel sends here (it caps dump datagrams at 32 KiB).
const RECEIVE_BUFFER: usize = 64 * 1024;

/// The synchronous fault signals stay unblocked, as in tini and catatonit: if weavewait itself
/// faults it should die rather than carry on.
const FAULTS: [Signal; 7] = [
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

/// The kernel, as the wait loop sees it.
#[derive(Debug)]
pub struct System {
    signals: SignalFd,
    subscription: Option<OwnedFd>,
    query: Option<Query>,
}

impl System {
    /// Blocks every signal but the faults and opens a `signalfd` for them. Call this before
    /// anything else: until the mask is set, a PID 1 silently drops SIGTERM.
    pub fn new() -> io::Result<Self> {
        let mut mask = SigSet::all();
        for fault in FAULTS {
            mask.remove(fault);
        }
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(Self {
            signals,
            subscription: None,
            query: None,
        })
    }

    fn query(&mut self) -> io::Result<&mut Query> {
        if self.query.is_none() {
            self.query = Some(Query::open()?);
        }
        Ok(self.query.as_mut().expect("just opened"))
    }

    /// Reads every queued notification; true when there was at least one, or when some were
    /// lost (`ENOBUFS`): either way the state has to be read again.
    fn drain_notifications(&mut self) -> io::Result<bool> {
        let Some(fd) = self.subscription.as_ref() else {
            return Ok(false);
        };
        let mut buffer = vec![0; RECEIVE_BUFFER];
        let mut changed = false;
        loop {
            match recv(fd.as_raw_fd(), &mut buffer, MsgFlags::MSG_DONTWAIT) {
                Ok(_) | Err(Errno::ENOBUFS) => changed = true,
                Err(Errno::EAGAIN) => return Ok(changed),
                Err(Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
}

impl Links for System {
    fn link(&mut self, name: &str) -> io::Result<Option<LinkState>> {
        let query = self.query()?;
        let sequence = query.next_sequence();
        query.send(&netlink::link_request(name, sequence))?;
        loop {
            if let Step::Finished(link) = netlink::link_reply(query.receive()?, sequence)? {
                return Ok(link);
            }
        }
    }

    fn ipv4_routes(&mut self) -> io::Result<Vec<Route4>> {
        let query = self.query()?;
        let sequence = query.next_sequence();
        query.send(&netlink::routes_request(sequence))?;
        let mut dump = RouteDump::default();
        loop {
            if let Step::Finished(routes) = dump.feed(query.receive()?, sequence)? {
                return Ok(routes);
            }
        }
    }
}

impl Host for System {
    fn subscribe(&mut self, mode: Mode) -> io::Result<()> {
        let mut groups = libc::RTMGRP_LINK;
        if mode.wants_routes() {
            groups |= libc::RTMGRP_IPV4_ROUTE;
        }
        let fd = netlink_socket(SockFlag::SOCK_NONBLOCK)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups.cast_unsigned()))?;
        self.subscription = Some(fd);
        Ok(())
    }

    fn wait(&mut self) -> io::Result<Wake> {
        loop {
            let (signalled, notified) = {
                let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
                if let Some(subscription) = &self.subscription {
                    fds.push(PollFd::new(subscription.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(err) => return Err(err.into()),
                }
                let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), fds.get(1).is_some_and(ready))
            };
            if signalled && let Some(signo) = self.pending_signal()? {
                return Ok(Wake::Signal(signo));
            }
            if notified && self.drain_notifications()? {
                return Ok(Wake::Changed);
            }
        }
    }

    fn pending_signal(&mut self) -> io::Result<Option<i32>> {
        Ok(self
            .signals
            .read_signal()?
            .map(|info| info.ssi_signo.cast_signed()))
    }
}

/// The socket requests go out on and replies come back on (never subscribed, so replies are
/// not mixed with notifications).
#[derive(Debug)]
struct Query {
    fd: OwnedFd,
    sequence: u32,
    buffer: Vec<u8>,
}

impl Query {
    fn open() -> io::Result<Self> {
        Ok(Self {
            fd: netlink_socket(SockFlag::empty())?,
            sequence: 0,
            buffer: vec![0; RECEIVE_BUFFER],
        })
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        let kernel = NetlinkAddr::new(0, 0);
        let sent = sendto(self.fd.as_raw_fd(), request, &kernel, MsgFlags::empty())?;
        if sent != request.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            ));
        }
        Ok(())
    }

    fn receive(&mut self) -> io::Result<&[u8]> {
        let length = loop {
            match recv(self.fd.as_raw_fd(), &mut self.buffer, MsgFlags::MSG_TRUNC) {
                Ok(length) => break length,
                Err(Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
        };
        self.buffer.get(..length).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("netlink reply of {length} bytes truncated"),
            )
        })
    }
}

fn netlink_socket(flags: SockFlag) -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC | flags,
        SockProtocol::NetlinkRoute,
    )?)
}

#[cfg(test)]
mod tests {
    //! Queries against this process's own network namespace: no privileges needed.

    use super::*;

    /// A `System` that has not touched the signal mask (the test harness is multithreaded).
    fn unsubscribed() -> System {
        System {
            signals: SignalFd::with_flags(&SigSet::empty(), SfdFlags::SFD_CLOEXEC).unwrap(),
            subscription: None,
            query: None,
        }
    }

    #[test]
    fn a_link_is_found_by_name_and_a_missing_one_is_none() {
        let mut host = unsubscribed();
        let lo = host.link("lo").unwrap().expect("every netns has lo");
        assert_eq!(lo.name, "lo");
        assert_eq!(host.link("wvnosuchlink0").unwrap(), None);
        // Several queries on one socket: the sequence numbers keep their replies apart.
        assert_eq!(host.link("lo").unwrap(), Some(lo));
    }

    #[test]
    fn the_route_dump_reads_every_table() {
        let mut host = unsubscribed();
        let routes = host.ipv4_routes().unwrap();
        // The kernel adds 127.0.0.0/8 to the local table (255) when lo comes up.
        let loopback = Route4 {
            destination: std::net::Ipv4Addr::new(127, 0, 0, 0),
            prefix_len: 8,
            table: 255,
        };
        assert!(routes.contains(&loopback), "{routes:?}");
        // A second dump on the same socket works too (other tests' containers may change the
        // tables meanwhile, so only the stable route is compared).
        assert!(host.ipv4_routes().unwrap().contains(&loopback));
    }
}
