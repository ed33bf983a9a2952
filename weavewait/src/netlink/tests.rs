//! The wire format, checked against bytes written out by hand from the kernel's structs
//! (`nlmsghdr`, `ifinfomsg`, `rtmsg`, `nlattr`), not against the crate that produces them.

use std::net::Ipv4Addr;

use super::*;

const SEQ: u32 = 7;

fn nlmsg(kind: u16, flags: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(16 + payload.len()).unwrap();
    let mut bytes = Vec::new();
    bytes.extend(length.to_ne_bytes());
    bytes.extend(kind.to_ne_bytes());
    bytes.extend(flags.to_ne_bytes());
    bytes.extend(sequence.to_ne_bytes());
    bytes.extend(0u32.to_ne_bytes()); // port id: the kernel
    bytes.extend(payload);
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
    bytes
}

fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend(u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
    bytes.extend(kind.to_ne_bytes());
    bytes.extend(value);
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
    bytes
}

fn ifinfomsg(flags: u32, attributes: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = vec![0u8, 0]; // family, pad
    bytes.extend(1u16.to_ne_bytes()); // ARPHRD_ETHER
    bytes.extend(42u32.to_ne_bytes()); // index
    bytes.extend(flags.to_ne_bytes());
    bytes.extend(0u32.to_ne_bytes()); // change
    bytes.extend(attributes.concat());
    bytes
}

fn rtmsg(family: u8, dst_len: u8, table: u8, attributes: &[Vec<u8>]) -> Vec<u8> {
    // family, dst_len, src_len, tos, table, protocol (boot), scope (link), type (unicast), flags
    let mut bytes = vec![family, dst_len, 0, 0, table, 3, 253, 1];
    bytes.extend(0u32.to_ne_bytes());
    bytes.extend(attributes.concat());
    bytes
}

fn error(sequence: u32, errno: i32) -> Vec<u8> {
    let mut payload = (-errno).to_ne_bytes().to_vec();
    // The request's own header follows the code.
    payload.extend(nlmsg(libc::RTM_GETLINK, 1, sequence, &[]));
    nlmsg(NLMSG_ERROR, 0, sequence, &payload)
}

fn done(sequence: u32, code: i32) -> Vec<u8> {
    nlmsg(NLMSG_DONE, 2, sequence, &code.to_ne_bytes())
}

const IFF_UP: u32 = libc::IFF_UP as u32;
const IFF_BROADCAST: u32 = libc::IFF_BROADCAST as u32;

fn ethwe(flags: u32, sequence: u32) -> Vec<u8> {
    let payload = ifinfomsg(
        flags,
        &[
            nla(libc::IFLA_IFNAME, b"ethwe\0"),
            nla(libc::IFLA_MTU, &1376u32.to_ne_bytes()),
        ],
    );
    nlmsg(libc::RTM_NEWLINK, 0, sequence, &payload)
}

fn route(dst: Option<[u8; 4]>, dst_len: u8, table: u32) -> Vec<u8> {
    let mut attributes = vec![nla(libc::RTA_TABLE, &table.to_ne_bytes())];
    if let Some(dst) = dst {
        attributes.push(nla(libc::RTA_DST, &dst));
    }
    attributes.push(nla(libc::RTA_OIF, &42u32.to_ne_bytes()));
    let compat = u8::try_from(table).unwrap_or(252);
    nlmsg(
        libc::RTM_NEWROUTE,
        2,
        SEQ,
        &rtmsg(2, dst_len, compat, &attributes),
    )
}

#[test]
fn the_link_request_asks_for_one_link_by_name() {
    let mut expected = Vec::new();
    expected.extend(44u32.to_ne_bytes()); // 16 header + 16 ifinfomsg + 12 attribute
    expected.extend(libc::RTM_GETLINK.to_ne_bytes());
    expected.extend(1u16.to_ne_bytes()); // NLM_F_REQUEST, no dump
    expected.extend(SEQ.to_ne_bytes());
    expected.extend(0u32.to_ne_bytes());
    expected.extend([0u8; 16]); // ifinfomsg: any family, index 0 (look up by name)
    expected.extend(10u16.to_ne_bytes());
    expected.extend(libc::IFLA_IFNAME.to_ne_bytes());
    expected.extend(b"ethwe\0\0\0");
    assert_eq!(link_request("ethwe", SEQ), expected);
}

#[test]
fn the_route_request_dumps_ipv4() {
    let mut expected = Vec::new();
    expected.extend(28u32.to_ne_bytes()); // 16 header + 12 rtmsg
    expected.extend(libc::RTM_GETROUTE.to_ne_bytes());
    expected.extend(0x301u16.to_ne_bytes()); // NLM_F_REQUEST | NLM_F_DUMP
    expected.extend(SEQ.to_ne_bytes());
    expected.extend(0u32.to_ne_bytes());
    expected.push(2); // AF_INET
    expected.extend([0u8; 11]);
    assert_eq!(routes_request(SEQ), expected);
}

#[test]
fn link_replies() {
    let up = LinkState {
        name: "ethwe".to_owned(),
        up: true,
    };
    let down = LinkState {
        name: "ethwe".to_owned(),
        up: false,
    };
    let stale = ethwe(IFF_UP, SEQ - 1);
    type Case = (&'static str, Vec<u8>, Step<Option<LinkState>>);
    let cases: Vec<Case> = vec![
        (
            "up",
            ethwe(IFF_UP | IFF_BROADCAST, SEQ),
            Step::Finished(Some(up.clone())),
        ),
        (
            "down",
            ethwe(IFF_BROADCAST, SEQ),
            Step::Finished(Some(down)),
        ),
        ("absent", error(SEQ, libc::ENODEV), Step::Finished(None)),
        (
            "an earlier request's late reply only",
            stale.clone(),
            Step::More,
        ),
        (
            "a late reply, then ours",
            [stale, ethwe(IFF_UP, SEQ)].concat(),
            Step::Finished(Some(up)),
        ),
        // An acknowledgement is not the answer (none is requested, but it would not be one).
        ("an ack", error(SEQ, 0), Step::More),
    ];
    for (what, datagram, expected) in cases {
        assert_eq!(link_reply(&datagram, SEQ).unwrap(), expected, "{what}");
    }
}

#[test]
fn link_reply_errors() {
    let err = link_reply(&error(SEQ, libc::EPERM), SEQ).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));

    let mut truncated = ethwe(IFF_UP, SEQ);
    truncated.truncate(20);
    let err = link_reply(&truncated, SEQ).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");

    // An attribute whose length runs past the message.
    let mut payload = ifinfomsg(IFF_UP, &[]);
    payload.extend(200u16.to_ne_bytes());
    payload.extend(libc::IFLA_IFNAME.to_ne_bytes());
    payload.extend(b"eth\0");
    let err = link_reply(&nlmsg(libc::RTM_NEWLINK, 0, SEQ, &payload), SEQ).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
}

#[test]
fn a_link_without_a_name_attribute_is_nameless() {
    let datagram = nlmsg(libc::RTM_NEWLINK, 0, SEQ, &ifinfomsg(IFF_UP, &[]));
    let link = link_reply(&datagram, SEQ).unwrap();
    assert_eq!(
        link,
        Step::Finished(Some(LinkState {
            name: String::new(),
            up: true
        }))
    );
}

#[test]
fn a_route_dump_spans_datagrams_until_done() {
    let first = [
        route(Some([224, 0, 0, 0]), 4, 254),
        route(None, 0, 254),                   // the default route has no RTA_DST
        route(Some([10, 32, 0, 0]), 12, 1000), // a table number only RTA_TABLE can hold
    ]
    .concat();
    let ipv6 = nlmsg(libc::RTM_NEWROUTE, 2, SEQ, &rtmsg(10, 8, 254, &[]));
    let second = [ipv6, done(SEQ, 0)].concat();

    let mut dump = RouteDump::default();
    assert_eq!(dump.feed(&first, SEQ).unwrap(), Step::More);
    let Step::Finished(routes) = dump.feed(&second, SEQ).unwrap() else {
        panic!("NLMSG_DONE ends the dump");
    };
    assert_eq!(
        routes,
        [
            Route4 {
                destination: Ipv4Addr::new(224, 0, 0, 0),
                prefix_len: 4,
                table: 254
            },
            Route4 {
                destination: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                table: 254
            },
            Route4 {
                destination: Ipv4Addr::new(10, 32, 0, 0),
                prefix_len: 12,
                table: 1000
            },
        ]
    );
}

#[test]
fn the_table_comes_from_the_header_when_the_attribute_is_missing() {
    let payload = rtmsg(2, 4, 254, &[nla(libc::RTA_DST, &[224, 0, 0, 0])]);
    let parsed = parse_route(&payload).unwrap();
    assert_eq!(
        parsed,
        Some(Route4 {
            destination: Ipv4Addr::new(224, 0, 0, 0),
            prefix_len: 4,
            table: 254
        })
    );
}

#[test]
fn route_dump_errors() {
    let mut dump = RouteDump::default();
    let err = dump.feed(&done(SEQ, -libc::EINTR), SEQ).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINTR));

    let mut dump = RouteDump::default();
    let err = dump.feed(&error(SEQ, libc::EACCES), SEQ).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));

    let bad_dst = rtmsg(2, 4, 254, &[nla(libc::RTA_DST, &[224, 0, 0])]);
    let mut dump = RouteDump::default();
    let err = dump
        .feed(&nlmsg(libc::RTM_NEWROUTE, 2, SEQ, &bad_dst), SEQ)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
}

#[test]
fn messages_split_a_datagram_on_aligned_boundaries() {
    // A 5-byte payload is padded to 8: the next message starts on the 4-byte boundary.
    let datagram = [
        nlmsg(1, 0, 1, b"abcde"),
        nlmsg(2, 0, 2, b"xyz"),
        nlmsg(3, 0, 3, &[]),
    ]
    .concat();
    let parsed: Vec<(u16, u32, Vec<u8>)> = messages(&datagram)
        .map(|m| m.map(|m| (m.kind, m.sequence, m.payload.to_vec())))
        .collect::<io::Result<_>>()
        .unwrap();
    assert_eq!(
        parsed,
        [
            (1, 1, b"abcde".to_vec()),
            (2, 2, b"xyz".to_vec()),
            (3, 3, Vec::new())
        ]
    );
    assert_eq!(messages(&[]).count(), 0);
}
