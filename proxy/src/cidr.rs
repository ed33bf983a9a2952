//! `WEAVE_CIDR` and network mode: whether a container joins the weave network, and with which
//! addresses. Pure; used at create (to validate and rewrite) and at exec and attach.

use std::fmt;

use api::cidr::{CidrError, CidrToken, WEAVE_CIDR};

/// Why a container is left off the weave network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveAlone {
    /// `--net=host`, `--net=container:…` or a user-defined/plugin network: the proxy is
    /// "automatically disabled" for `--net`, as Weave Net documents.
    NetworkMode(String),
    /// `WEAVE_CIDR=none`.
    CidrNone,
    /// No `WEAVE_CIDR` while the proxy runs with `--no-default-ipalloc`.
    NoDefaultIpalloc,
}

impl fmt::Display for LeaveAlone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NetworkMode(mode) => write!(f, "the container has --net={mode}"),
            Self::CidrNone => f.write_str("WEAVE_CIDR=none"),
            Self::NoDefaultIpalloc => f.write_str(
                "no WEAVE_CIDR and --no-default-ipalloc (set -e WEAVE_CIDR= to allocate)",
            ),
        }
    }
}

/// The decision for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Join the weave network with these addresses, in order (never empty).
    Attach(Vec<CidrToken>),
    /// Leave the container as Docker would run it.
    LeaveAlone(LeaveAlone),
}

/// Decides from `HostConfig.NetworkMode` and the container's `Env` (`KEY=value` entries).
///
/// When `WEAVE_CIDR` appears more than once the last one wins, as it does for the process in
/// the container. An empty value, like a missing one, means one address from the default
/// subnet — even with `--no-default-ipalloc`, which only applies when the variable is absent.
///
/// # Errors
/// A `WEAVE_CIDR` token that is none of the accepted forms.
pub fn decide<'a>(
    network_mode: &str,
    env: impl IntoIterator<Item = &'a str>,
    no_default_ipalloc: bool,
) -> Result<Decision, CidrError> {
    if !matches!(network_mode, "" | "default" | "bridge" | "none") {
        return Ok(Decision::LeaveAlone(LeaveAlone::NetworkMode(
            network_mode.to_owned(),
        )));
    }
    let value = env
        .into_iter()
        .filter_map(|entry| entry.strip_prefix(WEAVE_CIDR)?.strip_prefix('='))
        .last();
    let Some(value) = value else {
        return Ok(if no_default_ipalloc {
            Decision::LeaveAlone(LeaveAlone::NoDefaultIpalloc)
        } else {
            Decision::Attach(vec![CidrToken::DefaultSubnet])
        });
    };
    if value.trim() == "none" {
        return Ok(Decision::LeaveAlone(LeaveAlone::CidrNone));
    }
    let tokens = value
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<CidrToken>, _>>()?;
    Ok(Decision::Attach(if tokens.is_empty() {
        vec![CidrToken::DefaultSubnet]
    } else {
        tokens
    }))
}

#[cfg(test)]
mod tests {
    use ipnet::Ipv4Net;

    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn decides_from_network_mode_and_env() {
        use Decision::{Attach, LeaveAlone as Leave};
        let default = || Attach(vec![CidrToken::DefaultSubnet]);
        let cases: Vec<(&str, Vec<&str>, bool, Decision)> = vec![
            ("", vec![], false, default()),
            ("default", vec!["A=1"], false, default()),
            ("bridge", vec![], false, default()),
            ("none", vec![], false, default()),
            (
                "host",
                vec![],
                false,
                Leave(LeaveAlone::NetworkMode("host".into())),
            ),
            (
                "container:abc",
                vec!["WEAVE_CIDR=10.2.1.1/24"],
                false,
                Leave(LeaveAlone::NetworkMode("container:abc".into())),
            ),
            (
                "my-net",
                vec![],
                false,
                Leave(LeaveAlone::NetworkMode("my-net".into())),
            ),
            (
                "",
                vec!["WEAVE_CIDR=none"],
                false,
                Leave(LeaveAlone::CidrNone),
            ),
            ("", vec![], true, Leave(LeaveAlone::NoDefaultIpalloc)),
            ("", vec!["WEAVE_CIDR="], true, default()),
            ("", vec!["WEAVE_CIDR=  "], false, default()),
            ("", vec!["WEAVE_CIDRX=none"], false, default()),
            (
                "",
                vec!["WEAVE_CIDR=10.2.1.1/24 net:10.2.2.0/24"],
                false,
                Attach(vec![
                    CidrToken::Address(net("10.2.1.1/24")),
                    CidrToken::Subnet(net("10.2.2.0/24")),
                ]),
            ),
            (
                "",
                vec!["WEAVE_CIDR=none", "WEAVE_CIDR=net:default"],
                false,
                default(),
            ),
        ];
        for (mode, env, no_default, want) in cases {
            assert_eq!(
                decide(mode, env.iter().copied(), no_default),
                Ok(want),
                "mode {mode:?} env {env:?} no_default {no_default}"
            );
        }
    }

    #[test]
    fn a_bad_token_fails_the_decision_but_not_for_other_networks() {
        let err = decide("", ["WEAVE_CIDR=10.2.1.1/24 foo"], false).unwrap_err();
        assert_eq!(err.token, "foo");
        assert!(decide("host", ["WEAVE_CIDR=foo"], false).is_ok());
    }
}
