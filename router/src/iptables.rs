//! The host firewall rules that let containers on the weave bridge talk to each other, and those
//! that keep containers from the ports the hosts of a network use between them.
//!
//! Docker loads `br_netfilter` and sets `FORWARD` to `DROP`, so bridged traffic between two
//! containers on our bridge is dropped unless `-i <br> -o <br> -j ACCEPT` lets it through; and, as
//! the original, traffic from Docker's own bridge into ours is dropped. The rules go into
//! `DOCKER-USER`, which Docker creates and never flushes, or `FORWARD` where it is missing.
//!
//! They are written with the **host's own** `iptables` binary: a rule written with the other
//! backend (nft vs legacy) than the host's is silently ignored. In a container the host's `/` is
//! mounted at `--host-root` and the binary runs chrooted there. The chroot happens in a re-exec of
//! this very binary (the hidden `weaver __host-exec` subcommand), because a FROM-scratch image has
//! no `chroot` program and the standard library's `Command::chroot` is not stable.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::process::Command;

/// Docker's default bridge, whose containers must not reach ours, unless Docker names another
/// (`--bridge`, or its `bridge` network's `com.docker.network.bridge.name`).
pub const DOCKER_BRIDGE: &str = "docker0";
/// The bridges of Docker's user-defined networks, `br-<id>`, as an iptables wildcard.
pub const DOCKER_NETWORK_BRIDGES: &str = "br-+";
/// Where the rules go when it exists: Docker never flushes it.
pub const PREFERRED_CHAIN: &str = "DOCKER-USER";
/// Where they go otherwise.
pub const FALLBACK_CHAIN: &str = "FORWARD";
/// The hidden subcommand that chroots and execs (see the module doc).
pub const HOST_EXEC: &str = "__host-exec";
/// The search path for the host's binaries; the router's own environment (a scratch image) may
/// have none.
pub const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why the rules could not be checked or changed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error(
        "the host's iptables could not be run ({program}): {source}; \
         is --host-root ({host_root}) the host's root filesystem?"
    )]
    Spawn {
        program: String,
        host_root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

impl IptablesError {
    /// Whether the host has no `iptables` at all (nothing to write rules with).
    pub fn is_missing_binary(&self) -> bool {
        matches!(self, Self::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The rule specifications (without the chain) the router keeps for `bridge`, in order: no
/// container of Docker's own networks is forwarded into weave (the host routes there once it
/// has an address on the bridge, as `weave expose` and the plugin's DNS route give it), and
/// weave's own traffic passes whatever Docker's policy.
pub fn rules(bridge: &str, docker_bridge: &str) -> Vec<Vec<String>> {
    let spec = |parts: &[&str]| parts.iter().map(|&p| p.to_owned()).collect();
    vec![
        spec(&["-i", docker_bridge, "-o", bridge, "-j", "DROP"]),
        spec(&["-i", DOCKER_NETWORK_BRIDGES, "-o", bridge, "-j", "DROP"]),
        spec(&["-i", bridge, "-o", bridge, "-j", "ACCEPT"]),
    ]
}

/// The chain of [`input_rules`].
pub const INPUT_CHAIN: &str = "INPUT";

/// The interfaces containers reach the host from: Docker's default bridge, its user-defined
/// networks' bridges (`br-<id>`), and the weave bridge (`weave expose` gives the host an
/// address there).
fn container_interfaces(bridge: &str, docker_bridge: &str) -> [String; 3] {
    [
        docker_bridge.to_owned(),
        DOCKER_NETWORK_BRIDGES.to_owned(),
        bridge.to_owned(),
    ]
}

/// The ports hosts use between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPorts {
    /// The peer port (TCP), where a router alone can be asked to make a store.
    pub peer: u16,
    /// etcd's client and member ports (TCP), which hold the network's peers, blocks and names.
    pub store: (u16, u16),
    /// The VXLAN port (UDP): whatever reaches it is put on the weave bridge as a frame. The
    /// port after it answers the peers' path probes (`weave status connections`).
    pub vxlan: u16,
}

/// The rules (in [`INPUT_CHAIN`]) that keep containers away from the ports between hosts.
/// Other hosts reach them over the underlay; a container on this host has no business there,
/// and a packet it sent to the VXLAN port would put a frame of its making on the weave
/// network, from a container that may not even be on it.
pub fn input_rules(bridge: &str, docker_bridge: &str, ports: HostPorts) -> Vec<Vec<String>> {
    let mut rules = Vec::new();
    for iface in container_interfaces(bridge, docker_bridge) {
        for (proto, port) in [
            ("tcp", ports.peer.to_string()),
            ("tcp", format!("{}:{}", ports.store.0, ports.store.1)),
            (
                "udp",
                format!("{}:{}", ports.vxlan, ports.vxlan.saturating_add(1)),
            ),
        ] {
            rules.push(
                ["-i", &iface, "-p", proto, "--dport", &port, "-j", "DROP"]
                    .map(str::to_owned)
                    .to_vec(),
            );
        }
    }
    rules
}

/// The program and arguments that run `iptables -w <args>` as the host would: directly when the
/// host's root is ours, else through `helper __host-exec <root> iptables ...`.
pub fn command_line(host_root: &Path, helper: &Path, args: &[String]) -> (PathBuf, Vec<OsString>) {
    let iptables = std::iter::once("-w".into()).chain(args.iter().map(OsString::from));
    if host_root == Path::new("/") {
        (PathBuf::from("iptables"), iptables.collect())
    } else {
        let argv = [
            OsString::from(HOST_EXEC),
            host_root.as_os_str().to_owned(),
            OsString::from("iptables"),
        ]
        .into_iter()
        .chain(iptables)
        .collect();
        (helper.to_owned(), argv)
    }
}

/// The host's `iptables`, run as a child process.
#[derive(Debug, Clone)]
pub struct HostIptables {
    host_root: PathBuf,
    /// The `weaver` binary, re-executed for the chroot.
    helper: PathBuf,
    docker_bridge: String,
}

impl HostIptables {
    /// `iptables` of the host whose root filesystem is at `host_root`; `helper` is the `weaver`
    /// binary (for the chroot when `host_root` is not `/`).
    pub fn new(host_root: &Path, helper: &Path) -> Self {
        Self {
            host_root: host_root.to_owned(),
            helper: helper.to_owned(),
            docker_bridge: DOCKER_BRIDGE.to_owned(),
        }
    }

    /// Rules about Docker's default bridge name `name` rather than [`DOCKER_BRIDGE`].
    #[must_use]
    pub fn with_docker_bridge(mut self, name: &str) -> Self {
        name.clone_into(&mut self.docker_bridge);
        self
    }

    /// Docker's default bridge, as the rules name it.
    pub fn docker_bridge(&self) -> &str {
        &self.docker_bridge
    }

    async fn run(&self, args: &[String]) -> Result<Output, IptablesError> {
        let (program, argv) = command_line(&self.host_root, &self.helper, args);
        Command::new(&program)
            .args(&argv)
            .env("PATH", HOST_PATH)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| IptablesError::Spawn {
                program: program.display().to_string(),
                host_root: self.host_root.clone(),
                source,
            })
    }

    /// Runs `args`: `Ok(true)` for exit 0, `Ok(false)` for exit 1 (iptables' "no such rule or
    /// chain"), an error for anything else.
    async fn test(&self, args: &[String]) -> Result<bool, IptablesError> {
        let output = self.run(args).await?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(failed(args, &output)),
        }
    }

    async fn must(&self, args: &[String]) -> Result<(), IptablesError> {
        let output = self.run(args).await?;
        if output.status.success() {
            Ok(())
        } else {
            Err(failed(args, &output))
        }
    }

    async fn chain_exists(&self, chain: &str) -> Result<bool, IptablesError> {
        self.test(&["-S".to_owned(), chain.to_owned()]).await
    }

    /// The chain the rules go into: `DOCKER-USER` when Docker made it, else `FORWARD`.
    ///
    /// # Errors
    /// When iptables cannot be run.
    pub async fn chain(&self) -> Result<&'static str, IptablesError> {
        Ok(if self.chain_exists(PREFERRED_CHAIN).await? {
            PREFERRED_CHAIN
        } else {
            FALLBACK_CHAIN
        })
    }

    /// Adds whichever of [`rules`] is missing at the top of [`HostIptables::chain`]; returns the
    /// rules added, as `-A`-style lines.
    ///
    /// # Errors
    /// When iptables cannot be run or refuses a rule.
    pub async fn ensure(&self, bridge: &str) -> Result<Vec<String>, IptablesError> {
        let chain = self.chain().await?;
        let mut added = Vec::new();
        // Inserting at position 1 in reverse keeps the order of `rules` at the top of the chain.
        for spec in rules(bridge, &self.docker_bridge).into_iter().rev() {
            if self.test(&with_chain("-C", chain, &spec)).await? {
                continue;
            }
            let mut insert = with_chain("-I", chain, &spec);
            insert.insert(2, "1".to_owned());
            self.must(&insert).await?;
            added.push(describe(chain, &spec));
        }
        added.reverse();
        Ok(added)
    }

    /// Adds whichever of `specs` is missing at the top of [`INPUT_CHAIN`]; returns the rules
    /// added, as `-A`-style lines.
    ///
    /// # Errors
    /// When iptables cannot be run or refuses a rule.
    pub async fn ensure_input(&self, specs: &[Vec<String>]) -> Result<Vec<String>, IptablesError> {
        let mut added = Vec::new();
        for spec in specs.iter().rev() {
            if self.test(&with_chain("-C", INPUT_CHAIN, spec)).await? {
                continue;
            }
            let mut insert = with_chain("-I", INPUT_CHAIN, spec);
            insert.insert(2, "1".to_owned());
            self.must(&insert).await?;
            added.push(describe(INPUT_CHAIN, spec));
        }
        added.reverse();
        Ok(added)
    }

    /// Deletes every copy of `specs` from [`INPUT_CHAIN`]; returns what it deleted.
    ///
    /// # Errors
    /// When iptables cannot be run or refuses a deletion.
    pub async fn remove_input(&self, specs: &[Vec<String>]) -> Result<Vec<String>, IptablesError> {
        let mut removed = Vec::new();
        for spec in specs {
            while self.test(&with_chain("-C", INPUT_CHAIN, spec)).await? {
                self.must(&with_chain("-D", INPUT_CHAIN, spec)).await?;
                removed.push(describe(INPUT_CHAIN, spec));
            }
        }
        Ok(removed)
    }

    /// Deletes every copy of [`rules`] from both chains; returns what it deleted.
    ///
    /// # Errors
    /// When iptables cannot be run or refuses a deletion.
    pub async fn remove(&self, bridge: &str) -> Result<Vec<String>, IptablesError> {
        let mut removed = Vec::new();
        for chain in [PREFERRED_CHAIN, FALLBACK_CHAIN] {
            if !self.chain_exists(chain).await? {
                continue;
            }
            for spec in rules(bridge, &self.docker_bridge) {
                while self.test(&with_chain("-C", chain, &spec)).await? {
                    self.must(&with_chain("-D", chain, &spec)).await?;
                    removed.push(describe(chain, &spec));
                }
            }
        }
        Ok(removed)
    }
}

fn with_chain(op: &str, chain: &str, spec: &[String]) -> Vec<String> {
    [op.to_owned(), chain.to_owned()]
        .into_iter()
        .chain(spec.iter().cloned())
        .collect()
}

/// A rule as `iptables -S` prints it.
fn describe(chain: &str, spec: &[String]) -> String {
    format!("-A {chain} {}", spec.join(" "))
}

fn failed(args: &[String], output: &Output) -> IptablesError {
    // iptables-nft warns about legacy tables on stderr with every call; that is not the error.
    let stderr = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| !line.starts_with("# Warning"))
        .collect::<Vec<_>>()
        .join("; ");
    IptablesError::Failed {
        command: format!("iptables -w {}", args.join(" ")),
        status: output.status,
        stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_for_a_bridge() {
        let got: Vec<String> = rules("weave", "dbr")
            .iter()
            .map(|r| describe("FORWARD", r))
            .collect();
        assert_eq!(
            got,
            [
                "-A FORWARD -i dbr -o weave -j DROP",
                "-A FORWARD -i br-+ -o weave -j DROP",
                "-A FORWARD -i weave -o weave -j ACCEPT",
            ]
        );
    }

    #[test]
    fn containers_are_kept_from_the_peer_and_store_ports() {
        let ports = HostPorts {
            peer: 6783,
            store: (2379, 2380),
            vxlan: 6789,
        };
        let got: Vec<String> = input_rules("weave", "docker0", ports)
            .iter()
            .map(|r| describe(INPUT_CHAIN, r))
            .collect();
        assert_eq!(
            got,
            [
                "-A INPUT -i docker0 -p tcp --dport 6783 -j DROP",
                "-A INPUT -i docker0 -p tcp --dport 2379:2380 -j DROP",
                "-A INPUT -i docker0 -p udp --dport 6789:6790 -j DROP",
                "-A INPUT -i br-+ -p tcp --dport 6783 -j DROP",
                "-A INPUT -i br-+ -p tcp --dport 2379:2380 -j DROP",
                "-A INPUT -i br-+ -p udp --dport 6789:6790 -j DROP",
                "-A INPUT -i weave -p tcp --dport 6783 -j DROP",
                "-A INPUT -i weave -p tcp --dport 2379:2380 -j DROP",
                "-A INPUT -i weave -p udp --dport 6789:6790 -j DROP",
            ]
        );
    }

    #[test]
    fn command_lines_run_the_hosts_iptables() {
        let args: Vec<String> = ["-C", "DOCKER-USER", "-i", "b", "-j", "ACCEPT"]
            .map(str::to_owned)
            .into();
        let helper = Path::new("/usr/bin/weaver");
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "/",
                "iptables",
                &["-w", "-C", "DOCKER-USER", "-i", "b", "-j", "ACCEPT"],
            ),
            (
                "/host",
                "/usr/bin/weaver",
                &[
                    "__host-exec",
                    "/host",
                    "iptables",
                    "-w",
                    "-C",
                    "DOCKER-USER",
                    "-i",
                    "b",
                    "-j",
                    "ACCEPT",
                ],
            ),
        ];
        for (root, program, argv) in cases {
            let (got_program, got_argv) = command_line(Path::new(root), helper, &args);
            assert_eq!(got_program, Path::new(program), "{root}");
            let got_argv: Vec<String> = got_argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert_eq!(got_argv, *argv, "{root}");
        }
    }

    #[test]
    fn failures_leave_out_the_legacy_tables_warning() {
        use std::os::unix::process::ExitStatusExt as _;
        let output = Output {
            status: std::process::ExitStatus::from_raw(2 << 8),
            stdout: Vec::new(),
            stderr: b"# Warning: iptables-legacy tables present, use iptables-legacy to see them\niptables: bad thing.\n".to_vec(),
        };
        let err = failed(&["-I".to_owned(), "X".to_owned()], &output);
        assert_eq!(
            err.to_string(),
            "`iptables -w -I X` failed (exit status: 2): iptables: bad thing."
        );
    }
}
