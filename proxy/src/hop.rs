//! Hop-by-hop headers (RFC 9110 §7.6.1): what belongs to one connection and not to the message,
//! for every path to the daemon (plain forwarding and the interceptors alike). Pure.

use http::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and must not be forwarded.
/// `Transfer-Encoding` is left to hyper, which frames each side's body itself.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Whether the client asked to upgrade the connection (`Connection: Upgrade` and `Upgrade: ...`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the hop-by-hop headers and any header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn detects_upgrade_requests() {
        let cases = [
            (vec![("Connection", "Upgrade"), ("Upgrade", "tcp")], true),
            (
                vec![
                    ("Connection", "keep-alive, upgrade"),
                    ("Upgrade", "websocket"),
                ],
                true,
            ),
            (vec![("Upgrade", "tcp")], false),
            (vec![("Connection", "Upgrade")], false),
            (vec![("Connection", "close")], false),
            (vec![], false),
        ];
        for (pairs, want) in cases {
            assert_eq!(wants_upgrade(&headers(&pairs)), want, "{pairs:?}");
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut map = headers(&[
            ("Connection", "close, X-Trace"),
            ("X-Trace", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Content-Type", "application/json"),
            ("Content-Length", "2"),
            ("Transfer-Encoding", "chunked"),
            ("X-Registry-Auth", "e30="),
        ]);
        strip_hop_by_hop(&mut map);
        let mut left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "content-length",
                "content-type",
                "transfer-encoding",
                "x-registry-auth"
            ]
        );
    }
}
