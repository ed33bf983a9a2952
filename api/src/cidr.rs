//! `WEAVE_CIDR`'s tokens: what a container asks the router for (an address from the default
//! subnet, from a subnet, or one given address). Pure; shared by the proxy and `weave attach`.

use std::fmt;
use std::str::FromStr;

use ipnet::Ipv4Net;
use thiserror::Error;

/// The environment variable that selects a container's weave addresses.
pub const WEAVE_CIDR: &str = "WEAVE_CIDR";

/// The accepted forms, shown in every error so the user can fix the value at once.
const FORMS: &str = "accepted forms: net:default, net:<cidr>, ip:<ip>/<len>, <ip>/<len> \
                     (e.g. WEAVE_CIDR=\"net:10.32.2.0/24\" or WEAVE_CIDR=\"10.2.1.1/24 net:default\"), \
                     or WEAVE_CIDR=none";

/// One space-separated token of `WEAVE_CIDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidrToken {
    /// `net:default`: an address from the router's default subnet.
    DefaultSubnet,
    /// `net:<cidr>`: an address from this subnet (host bits dropped).
    Subnet(Ipv4Net),
    /// `ip:<ip>/<len>` or `<ip>/<len>`: exactly this address, with this prefix length.
    Address(Ipv4Net),
}

/// A `WEAVE_CIDR` token that is none of the accepted forms.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("invalid WEAVE_CIDR token {token:?}: {reason}; {FORMS}")]
pub struct CidrError {
    /// The token as written.
    pub token: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for CidrToken {
    type Err = CidrError;

    fn from_str(token: &str) -> Result<Self, CidrError> {
        let bad = |reason: &str| CidrError {
            token: token.to_owned(),
            reason: reason.to_owned(),
        };
        let parse = |cidr: &str| -> Result<Ipv4Net, CidrError> {
            if !cidr.contains('/') {
                return Err(bad("missing /<prefix length>"));
            }
            cidr.parse::<Ipv4Net>()
                .map_err(|_| bad("not an IPv4 address with a prefix length of 0 to 32"))
        };
        if token == "net:default" {
            Ok(Self::DefaultSubnet)
        } else if let Some(net) = token.strip_prefix("net:") {
            Ok(Self::Subnet(parse(net)?.trunc()))
        } else if let Some(ip) = token.strip_prefix("ip:") {
            Ok(Self::Address(parse(ip)?))
        } else if token.contains(':') && !token.contains('.') {
            Err(bad("unknown prefix (weave addresses are IPv4)"))
        } else {
            Ok(Self::Address(parse(token)?))
        }
    }
}

impl fmt::Display for CidrToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultSubnet => f.write_str("net:default"),
            Self::Subnet(net) => write!(f, "net:{net}"),
            Self::Address(ip) => write!(f, "ip:{ip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_token_form() {
        let cases = [
            ("net:default", CidrToken::DefaultSubnet),
            ("net:10.32.2.0/24", CidrToken::Subnet(net("10.32.2.0/24"))),
            ("net:10.32.2.7/24", CidrToken::Subnet(net("10.32.2.0/24"))),
            ("ip:10.2.1.1/24", CidrToken::Address(net("10.2.1.1/24"))),
            ("10.2.1.1/24", CidrToken::Address(net("10.2.1.1/24"))),
            ("10.2.1.1/32", CidrToken::Address(net("10.2.1.1/32"))),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<CidrToken>(), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_tokens_naming_them_and_the_accepted_forms() {
        for input in [
            "ip:10.0.0.1",
            "foo",
            "net:10.0.0.0/33",
            "10.0.0.1",
            "net:",
            "net:defaults",
            "ip:10.0.0.256/24",
            "fe80::1/64",
            "dns:10.0.0.1/24",
        ] {
            let err = input.parse::<CidrToken>().unwrap_err();
            let message = err.to_string();
            assert!(message.contains(&format!("{input:?}")), "{message}");
            assert!(message.contains("net:<cidr>"), "{message}");
        }
    }
}
