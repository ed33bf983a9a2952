//! rtnetlink wire format: the two requests weavewait sends (one link by name, the IPv4 route dump)
//! and the reading of their replies. Pure functions over bytes, so they are tested without a kernel.
//!
//! Replies are read leniently: only the fixed headers and the one or two attributes the decision
//! needs are decoded. A full decode of every attribute would make weavewait fail on a kernel that
//! reports a link attribute in a shape the crate does not know yet.

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{
    DefaultNla, DoneBuffer, Emitable, ErrorBuffer, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_ALIGNTO,
    NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader, NlasIterator, parse_string,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{LinkFlags, LinkHeader, LinkMessageBuffer};
use netlink_packet_route::route::{RouteHeader, RouteMessageBuffer};

use crate::{LinkState, Route4};

/// `RTM_GETLINK` for the link called `name` (answered with one `RTM_NEWLINK`, or `ENODEV`).
pub(crate) fn link_request(name: &str, sequence: u32) -> Vec<u8> {
    let mut name = name.as_bytes().to_vec();
    name.push(0);
    let attribute = DefaultNla::new(libc::IFLA_IFNAME, name);
    let mut body = vec![0; LinkHeader::default().buffer_len() + attribute.buffer_len()];
    LinkHeader::default().emit(&mut body);
    attribute.emit(&mut body[size_of::<LinkMessageBuffer>()..]);
    request(libc::RTM_GETLINK, NLM_F_REQUEST, sequence, &body)
}

/// `RTM_GETROUTE` dump of the IPv4 routes of every table (answered with `RTM_NEWROUTE`s, then
/// `NLMSG_DONE`).
pub(crate) fn routes_request(sequence: u32) -> Vec<u8> {
    let header = RouteHeader {
        address_family: AddressFamily::Inet,
        ..RouteHeader::default()
    };
    let mut body = vec![0; header.buffer_len()];
    header.emit(&mut body);
    request(
        libc::RTM_GETROUTE,
        NLM_F_REQUEST | NLM_F_DUMP,
        sequence,
        &body,
    )
}

/// A request message: the netlink header, then `body`. The crate's message enum is not used
/// for this: serialising through it links in the emitters of every rtnetlink message type.
fn request(kind: u16, flags: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.message_type = kind;
    header.flags = flags;
    header.sequence_number = sequence;
    header.length =
        u32::try_from(header.buffer_len() + body.len()).expect("a request is a few dozen bytes");
    let mut bytes = vec![0; header.buffer_len()];
    header.emit(&mut bytes);
    bytes.extend_from_slice(body);
    bytes
}

/// One netlink message out of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub(crate) kind: u16,
    pub(crate) sequence: u32,
    pub(crate) payload: &'a [u8],
}

/// The messages packed into one datagram, in order; stops at the first malformed one.
pub(crate) fn messages(datagram: &[u8]) -> impl Iterator<Item = io::Result<Message<'_>>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = NetlinkBuffer::new_checked(rest).map(|buffer| {
            let length = buffer.length() as usize;
            let message = Message {
                kind: buffer.message_type(),
                sequence: buffer.sequence_number(),
                payload: buffer.payload(),
            };
            (message, length)
        });
        match parsed {
            Ok((message, length)) => {
                let aligned = length.next_multiple_of(usize::from(NLMSG_ALIGNTO));
                rest = rest.get(aligned..).unwrap_or_default();
                Some(Ok(message))
            }
            Err(err) => {
                rest = &[];
                Some(Err(invalid(err)))
            }
        }
    })
}

/// Decodes an `RTM_NEWLINK` payload: the `IFF_UP` flag and the name.
pub(crate) fn parse_link(payload: &[u8]) -> io::Result<LinkState> {
    let header = LinkHeader::parse(payload).map_err(invalid)?;
    let attributes = payload
        .get(size_of::<LinkMessageBuffer>()..)
        .unwrap_or_default();
    let mut name = String::new();
    for attribute in NlasIterator::new(attributes) {
        let attribute = attribute.map_err(invalid)?;
        if attribute.kind() == libc::IFLA_IFNAME {
            name = parse_string(attribute.value()).map_err(invalid)?;
        }
    }
    Ok(LinkState {
        name,
        up: header.flags.contains(LinkFlags::Up),
    })
}

/// Decodes an `RTM_NEWROUTE` payload; `None` for a route that is not IPv4.
pub(crate) fn parse_route(payload: &[u8]) -> io::Result<Option<Route4>> {
    let header = RouteHeader::parse(payload).map_err(invalid)?;
    if header.address_family != AddressFamily::Inet {
        return Ok(None);
    }
    let attributes = payload
        .get(size_of::<RouteMessageBuffer>()..)
        .unwrap_or_default();
    let mut route = Route4 {
        destination: Ipv4Addr::UNSPECIFIED,
        prefix_len: header.destination_prefix_length,
        table: u32::from(header.table),
    };
    for attribute in NlasIterator::new(attributes) {
        let attribute = attribute.map_err(invalid)?;
        let value = attribute.value();
        match attribute.kind() {
            libc::RTA_DST => {
                let octets: [u8; 4] = value
                    .try_into()
                    .map_err(|_| invalid(format!("RTA_DST of {} bytes", value.len())))?;
                route.destination = Ipv4Addr::from(octets);
            }
            // Tables above 255 only fit here; rtm_table then says RT_TABLE_COMPAT.
            libc::RTA_TABLE => {
                let bytes: [u8; 4] = value
                    .try_into()
                    .map_err(|_| invalid(format!("RTA_TABLE of {} bytes", value.len())))?;
                route.table = u32::from_ne_bytes(bytes);
            }
            _ => {}
        }
    }
    Ok(Some(route))
}

/// Where reading a reply stands after one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step<T> {
    /// The reply continues in the next datagram.
    More,
    /// The reply is complete.
    Finished(T),
}

/// Reads the reply to [`link_request`]: the link, or `None` when the kernel says `ENODEV`.
/// Messages for other sequence numbers (late replies to earlier requests) are skipped.
pub(crate) fn link_reply(datagram: &[u8], sequence: u32) -> io::Result<Step<Option<LinkState>>> {
    for message in messages(datagram) {
        let message = message?;
        if message.sequence != sequence {
            continue;
        }
        match message.kind {
            libc::RTM_NEWLINK => return Ok(Step::Finished(Some(parse_link(message.payload)?))),
            NLMSG_ERROR => match error_code(message.payload)? {
                Some(libc::ENODEV) => return Ok(Step::Finished(None)),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                None => {}
            },
            _ => {}
        }
    }
    Ok(Step::More)
}

/// Collects the reply to [`routes_request`] across datagrams.
#[derive(Debug, Default)]
pub(crate) struct RouteDump {
    routes: Vec<Route4>,
}

impl RouteDump {
    /// Takes one datagram; `Finished` with every IPv4 route once `NLMSG_DONE` arrives.
    ///
    /// A dump interrupted by a concurrent change (`NLM_F_DUMP_INTR`) is used as it is: the
    /// change that interrupted it also reaches the subscription, which triggers a fresh dump.
    pub(crate) fn feed(&mut self, datagram: &[u8], sequence: u32) -> io::Result<Step<Vec<Route4>>> {
        for message in messages(datagram) {
            let message = message?;
            if message.sequence != sequence {
                continue;
            }
            match message.kind {
                libc::RTM_NEWROUTE => self.routes.extend(parse_route(message.payload)?),
                NLMSG_DONE => {
                    let done = DoneBuffer::new_checked(message.payload).map_err(invalid)?;
                    if done.code() < 0 {
                        return Err(io::Error::from_raw_os_error(-done.code()));
                    }
                    return Ok(Step::Finished(std::mem::take(&mut self.routes)));
                }
                NLMSG_ERROR => {
                    if let Some(errno) = error_code(message.payload)? {
                        return Err(io::Error::from_raw_os_error(errno));
                    }
                }
                _ => {}
            }
        }
        Ok(Step::More)
    }
}

/// The errno of an `NLMSG_ERROR` payload (positive), or `None` for an acknowledgement.
fn error_code(payload: &[u8]) -> io::Result<Option<i32>> {
    let error = ErrorBuffer::new_checked(payload).map_err(invalid)?;
    Ok(error.code().map(|code| code.get().saturating_neg()))
}

fn invalid(err: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink reply: {err}"),
    )
}

#[cfg(test)]
mod tests;
