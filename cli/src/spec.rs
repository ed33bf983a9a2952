//! The containers `weave launch` creates, as Docker create requests: the router `weave` and the
//! proxy `weaveproxy`, both from the weaveexec image, on the host's network and PID namespaces,
//! with the capabilities and mounts their work needs and no more; and whether the proxy may serve
//! plain HTTP where it listens. Pure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, RestartPolicy, RestartPolicyNameEnum,
};

use api::DockerAddr;
use api::docker_addr::{Reach, reach};

use crate::addrs::default_listen;
use crate::args::{CommonFlags, ProxyFlags, RouterFlags};
use crate::tlsdetect::DaemonTls;

/// The router's container.
pub const ROUTER: &str = "weave";
/// The proxy's container.
pub const PROXY: &str = "weaveproxy";
/// The label that marks what `weave launch` created, valued `router` or `proxy`.
pub const ROLE_LABEL: &str = "works.weave.role";

/// Where the binaries are in the image.
pub const WEAVE_BIN: &str = "/home/weave/weave";
pub const WEAVER_BIN: &str = "/home/weave/weaver";
pub const PROXY_BIN: &str = "/home/weave/weaveproxy";

/// Host state shared by the router and the proxy (allocations, installed weavewait).
pub const DATA_DIR: &str = "/var/lib/weave";
/// Host directory of the proxy's socket.
pub const RUN_DIR: &str = "/var/run/weave";
/// Where Docker looks for plugin sockets; the router serves its network plugin there, so the
/// host's directory is mounted at the same path.
pub const PLUGIN_DIR: &str = "/run/docker/plugins";
/// The network `weave launch` creates for `docker run --net=weave`, and its network and IPAM
/// driver: the router's plugin.
pub const NETWORK: &str = "weave";
/// The port other hosts' routers ask on (Weave Net's control port).
pub const PEER_PORT: u16 = 6783;
/// The store's container, which a router makes when a peer asks to join and it is alone.
pub const STORE: &str = "weavestore";
pub const PLUGIN: &str = "weave";
/// Where the host's `/` is mounted, read-only, in the router (its iptables and resolv.conf).
pub const HOST_ROOT: &str = "/host";
/// Where TLS files are mounted in the proxy.
const TLS_DIR: &str = "/home/weave/tls";

/// Netlink on the host and in containers (bridge, veth, addresses, routes).
const NET_ADMIN: &str = "NET_ADMIN";
/// The gratuitous ARP's packet socket, and iptables.
const NET_RAW: &str = "NET_RAW";
/// `setns` into a container's network namespace...
const SYS_ADMIN: &str = "SYS_ADMIN";
/// ...which needs its `/proc/<pid>/ns/net` opened across users.
const SYS_PTRACE: &str = "SYS_PTRACE";

/// The image reference: `$DOCKERHUB_USER/weaveexec:$WEAVE_VERSION`, by default
/// `weaveworks/weaveexec:<this version>`.
pub fn image(user: Option<&str>, version: Option<&str>) -> String {
    let user = user.filter(|u| !u.is_empty()).unwrap_or("weaveworks");
    let version = version
        .filter(|v| !v.is_empty())
        .unwrap_or(env!("CARGO_PKG_VERSION"));
    format!("{user}/weaveexec:{version}")
}

/// What both containers need to know about this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub image: String,
    /// The Docker socket on the host, mounted at the same path.
    pub docker_socket: PathBuf,
    /// The router's HTTP API (`WEAVE_HTTP_ADDR`).
    pub router_addr: String,
}

/// Why a launch request is refused before anything is created.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("When launching the proxy, unix sockets must be specified as an absolute path: -H {0}")]
    RelativeSocket(String),
    #[error("{flag} {path}: certificate paths must be absolute paths on the Docker host")]
    RelativeTlsPath { flag: &'static str, path: String },
    #[error("{0} needs --tlscert and --tlskey{1}")]
    IncompleteTls(&'static str, &'static str),
}

fn base(host: &Host, role: &str, entrypoint: &str, cmd: Vec<String>) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(host.image.clone()),
        entrypoint: Some(vec![entrypoint.to_owned()]),
        cmd: Some(cmd),
        // For `weave` commands run inside the container (`docker exec`): the same daemon and
        // router, and the permission to work in other containers' namespaces here.
        env: Some(vec![
            format!("DOCKER_HOST=unix://{}", host.docker_socket.display()),
            format!("WEAVE_HTTP_ADDR={}", host.router_addr),
            "WEAVE_LOCAL=1".to_owned(),
        ]),
        labels: Some(HashMap::from([(ROLE_LABEL.to_owned(), role.to_owned())])),
        ..Default::default()
    }
}

fn host_config(common: &CommonFlags, binds: Vec<String>, mounts: Vec<Mount>) -> HostConfig {
    let restart = if common.no_restart {
        RestartPolicyNameEnum::NO
    } else {
        RestartPolicyNameEnum::ALWAYS
    };
    HostConfig {
        network_mode: Some("host".to_owned()),
        pid_mode: Some("host".to_owned()),
        restart_policy: Some(RestartPolicy {
            name: Some(restart),
            maximum_retry_count: None,
        }),
        cap_add: Some(
            [NET_ADMIN, NET_RAW, SYS_ADMIN, SYS_PTRACE]
                .map(str::to_owned)
                .to_vec(),
        ),
        binds: Some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    }
}

fn push_opt(cmd: &mut Vec<String>, flag: &str, value: Option<impl ToString>) {
    if let Some(value) = value {
        cmd.extend([flag.to_owned(), value.to_string()]);
    }
}

/// The router container: `weaver` with the host's root read-only at `/host` (its iptables run
/// there through chroot; resolv.conf is read there), the Docker socket, and the data directory.
pub fn router(host: &Host, common: &CommonFlags, flags: &RouterFlags) -> ContainerCreateBody {
    let socket = host.docker_socket.display().to_string();
    let mut cmd = vec![
        "--host-root".to_owned(),
        HOST_ROOT.to_owned(),
        "--http-addr".to_owned(),
        host.router_addr.clone(),
        "--docker-api".to_owned(),
        format!("unix://{socket}"),
        "--data-dir".to_owned(),
        DATA_DIR.to_owned(),
    ];
    push_opt(&mut cmd, "--ipalloc-range", flags.ipalloc_range.as_ref());
    push_opt(
        &mut cmd,
        "--ipalloc-default-subnet",
        flags.ipalloc_default_subnet.as_ref(),
    );
    if flags.no_dns {
        cmd.push("--no-dns".to_owned());
    }
    push_opt(&mut cmd, "--dns-domain", flags.dns_domain.as_ref());
    push_opt(
        &mut cmd,
        "--dns-listen-address",
        flags.dns_listen_address.as_ref(),
    );
    push_opt(&mut cmd, "--dns-ttl", flags.dns_ttl);
    push_opt(&mut cmd, "--mtu", flags.mtu);
    push_opt(
        &mut cmd,
        "--store-endpoints",
        flags.store_endpoints.as_ref(),
    );
    push_opt(&mut cmd, "--name", flags.name.as_ref());
    push_opt(&mut cmd, "--nickname", flags.nickname.as_ref());
    push_opt(&mut cmd, "--advertise-addr", flags.advertise_addr.as_ref());
    push_opt(&mut cmd, "--vxlan-port", flags.vxlan_port);
    for peer in &flags.peers {
        cmd.extend(["--peer".to_owned(), peer.clone()]);
    }
    // Weave Net's control port: where other hosts' routers ask which store to join.
    cmd.extend([
        "--peer-addr".to_owned(),
        format!("0.0.0.0:{PEER_PORT}"),
        "--store-image".to_owned(),
        host.image.clone(),
    ]);
    push_opt(&mut cmd, "--log-level", common.log_level.as_ref());
    let mut binds = vec![
        format!("/:{HOST_ROOT}:ro"),
        format!("{socket}:{socket}"),
        format!("{DATA_DIR}:{DATA_DIR}"),
    ];
    if flags.no_plugin {
        cmd.push("--no-plugin".to_owned());
    } else {
        // The socket must be where Docker looks: in the host's directory, not the container's.
        binds.push(format!("{PLUGIN_DIR}:{PLUGIN_DIR}"));
    }
    ContainerCreateBody {
        host_config: Some(host_config(common, binds, Vec::new())),
        ..base(host, "router", WEAVER_BIN, cmd)
    }
}

/// Why the proxy is told `--tls=false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainTcp {
    /// The user said `--tls=false`.
    Asked,
    /// The default listener is on the network like the daemon's own TCP address, which this
    /// command reached over plain HTTP (it speaks nothing else): the daemon already serves the
    /// API unauthenticated there, so a plain proxy beside it exposes nothing new, and refusing
    /// would only break `weave launch` for a set-up the user chose.
    LikeTheDaemon,
}

/// Where the proxy listens, and whether it may serve plain HTTP to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyListen {
    /// The `-H` addresses, in order; `weave env` points clients at the first.
    pub addrs: Vec<String>,
    /// `Some` when the proxy gets `--tls=false`; without it, the proxy refuses a plain listener
    /// on a non-loopback address.
    pub plain_tcp: Option<PlainTcp>,
}

/// The proxy's listeners: `-H` as given, else [`default_listen`] from the client's
/// `DOCKER_HOST`; and `--tls=false` when the user said so, or when the default listener mirrors
/// a plain daemon on the network (see [`PlainTcp::LikeTheDaemon`]). An explicit non-loopback
/// `-H` without TLS gets nothing added: the proxy then refuses it, naming `--tls=false`.
pub fn proxy_listen(flags: &ProxyFlags, docker_host: &str, tls: Option<&DaemonTls>) -> ProxyListen {
    if !flags.hosts.is_empty() {
        let asked = tls.is_none() && flags.tls == Some(false);
        return ProxyListen {
            addrs: flags.hosts.clone(),
            plain_tcp: asked.then_some(PlainTcp::Asked),
        };
    }
    let addr = default_listen(docker_host);
    let network = DockerAddr::parse(&addr).is_ok_and(|a| reach(&a) == Reach::Network);
    let plain_tcp = match (tls, flags.tls) {
        (Some(_), _) => None,
        (None, Some(false)) => Some(PlainTcp::Asked),
        (None, _) => network.then_some(PlainTcp::LikeTheDaemon),
    };
    ProxyListen {
        addrs: vec![addr],
        plain_tcp,
    }
}

/// The proxy's TLS: its own flags, or the daemon's when none is given.
pub fn proxy_tls(flags: &ProxyFlags, detected: Option<DaemonTls>) -> Option<DaemonTls> {
    if flags.tls == Some(true) || flags.tlsverify {
        // Missing files are reported by `proxy` rather than guessed.
        return Some(DaemonTls {
            verify: flags.tlsverify,
            ca: flags.tlscacert.clone().unwrap_or_default(),
            cert: flags.tlscert.clone().unwrap_or_default(),
            key: flags.tlskey.clone().unwrap_or_default(),
        });
    }
    detected
}

fn bind_file(source: &Path, target: &str) -> Mount {
    Mount {
        target: Some(target.to_owned()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The proxy container: `weaveproxy` listening on `listen`, the Docker socket, the directory of
/// each unix listener, the data directory (weavewait is installed there and bound into
/// containers from the same host path), and each TLS file read-only under `/home/weave/tls`
/// (or `--tls=false` when `listen` says plain HTTP is meant).
///
/// # Errors
/// A relative socket or certificate path, or TLS without its certificate and key.
pub fn proxy(
    host: &Host,
    common: &CommonFlags,
    flags: &ProxyFlags,
    listen: &ProxyListen,
    tls: Option<&DaemonTls>,
) -> Result<ContainerCreateBody, SpecError> {
    let socket = host.docker_socket.display().to_string();
    let mut cmd = Vec::new();
    let mut binds = vec![
        format!("{socket}:{socket}"),
        format!("{DATA_DIR}:{DATA_DIR}"),
        format!("{RUN_DIR}:{RUN_DIR}"),
    ];
    for addr in &listen.addrs {
        cmd.extend(["-H".to_owned(), addr.clone()]);
        let path = addr.strip_prefix("unix://").or_else(|| {
            let bare_path = addr.starts_with('/') || !addr.contains(':');
            bare_path.then_some(addr.as_str())
        });
        if let Some(path) = path {
            let dir = Path::new(path)
                .parent()
                .filter(|_| path.starts_with('/'))
                .ok_or_else(|| SpecError::RelativeSocket(addr.clone()))?;
            let bind = format!("{0}:{0}", dir.display());
            if !binds.contains(&bind) && dir != Path::new(RUN_DIR) {
                binds.push(bind);
            }
        }
    }
    cmd.extend([
        "--docker-api".to_owned(),
        format!("unix://{socket}"),
        "--router-addr".to_owned(),
        host.router_addr.clone(),
        "--data-dir".to_owned(),
        DATA_DIR.to_owned(),
    ]);
    let mut mounts = Vec::new();
    if let Some(tls) = tls {
        let flag = if tls.verify { "--tlsverify" } else { "--tls" };
        if tls.cert.as_os_str().is_empty() || tls.key.as_os_str().is_empty() {
            let ca = if tls.verify { " and --tlscacert" } else { "" };
            return Err(SpecError::IncompleteTls(flag, ca));
        }
        cmd.push(flag.to_owned());
        let mut files = vec![
            ("--tlscert", &tls.cert, "cert.pem"),
            ("--tlskey", &tls.key, "key.pem"),
        ];
        if tls.verify {
            if tls.ca.as_os_str().is_empty() {
                return Err(SpecError::IncompleteTls(flag, " and --tlscacert"));
            }
            files.push(("--tlscacert", &tls.ca, "ca.pem"));
        }
        for (flag, path, name) in files {
            if !path.is_absolute() {
                return Err(SpecError::RelativeTlsPath {
                    flag,
                    path: path.display().to_string(),
                });
            }
            let target = format!("{TLS_DIR}/{name}");
            mounts.push(bind_file(path, &target));
            cmd.extend([flag.to_owned(), target]);
        }
    } else if listen.plain_tcp.is_some() {
        cmd.push("--tls=false".to_owned());
    }
    let switches = [
        (flags.no_default_ipalloc, "--no-default-ipalloc"),
        (flags.without_dns, "--without-dns"),
        (flags.no_rewrite_hosts, "--no-rewrite-hosts"),
        (flags.rewrite_inspect, "--rewrite-inspect"),
        (flags.no_multicast_route, "--no-multicast-route"),
    ];
    cmd.extend(
        switches
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, flag)| flag.to_owned()),
    );
    push_opt(
        &mut cmd,
        "--hostname-from-label",
        flags.hostname_from_label.as_ref(),
    );
    push_opt(&mut cmd, "--hostname-match", flags.hostname_match.as_ref());
    push_opt(
        &mut cmd,
        "--hostname-replacement",
        flags.hostname_replacement.as_ref(),
    );
    push_opt(&mut cmd, "--log-level", common.log_level.as_ref());
    Ok(ContainerCreateBody {
        host_config: Some(host_config(common, binds, mounts)),
        ..base(host, "proxy", PROXY_BIN, cmd)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addrs::UNIX_LISTEN;

    fn host() -> Host {
        Host {
            image: image(None, Some("1.0")),
            docker_socket: "/var/run/docker.sock".into(),
            router_addr: "127.0.0.1:6784".to_owned(),
        }
    }

    fn cmd(body: &ContainerCreateBody) -> String {
        body.cmd.as_ref().unwrap().join(" ")
    }

    fn listen_on(addrs: &[&str], plain_tcp: Option<PlainTcp>) -> ProxyListen {
        ProxyListen {
            addrs: addrs.iter().map(|a| (*a).to_owned()).collect(),
            plain_tcp,
        }
    }

    #[test]
    fn plain_http_to_the_network_is_passed_on_only_when_meant() {
        let tls = DaemonTls {
            verify: true,
            ca: "/tls/ca.pem".into(),
            cert: "/tls/cert.pem".into(),
            key: "/tls/key.pem".into(),
        };
        let flags = |hosts: &[&str], tls: Option<bool>| ProxyFlags {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            tls,
            ..Default::default()
        };
        let none: &[&str] = &[];
        let cases = [
            // The default mirrors a plain daemon on the network, so it is told --tls=false...
            (
                flags(none, None),
                "tcp://10.0.0.5:2375",
                None,
                listen_on(&["tcp://10.0.0.5:12375"], Some(PlainTcp::LikeTheDaemon)),
            ),
            // ...but not when the daemon's TLS is copied, or it stays on loopback or a socket.
            (
                flags(none, None),
                "tcp://10.0.0.5:2376",
                Some(&tls),
                listen_on(&["tcp://10.0.0.5:12375"], None),
            ),
            (
                flags(none, None),
                "tcp://localhost:2375",
                None,
                listen_on(&["tcp://127.0.0.1:12375"], None),
            ),
            (
                flags(none, None),
                "unix:///var/run/docker.sock",
                None,
                listen_on(&[UNIX_LISTEN], None),
            ),
            // An explicit -H on the network gets --tls=false only from the user: the proxy
            // refuses it otherwise, naming the flag.
            (
                flags(&["tcp://0.0.0.0:12375"], None),
                "tcp://10.0.0.5:2375",
                None,
                listen_on(&["tcp://0.0.0.0:12375"], None),
            ),
            (
                flags(&["tcp://0.0.0.0:12375"], Some(false)),
                "unix:///var/run/docker.sock",
                None,
                listen_on(&["tcp://0.0.0.0:12375"], Some(PlainTcp::Asked)),
            ),
            (
                flags(none, Some(false)),
                "tcp://127.0.0.1:2375",
                None,
                listen_on(&["tcp://127.0.0.1:12375"], Some(PlainTcp::Asked)),
            ),
        ];
        for (flags, docker_host, detected, want) in cases {
            assert_eq!(
                proxy_listen(&flags, docker_host, detected),
                want,
                "{:?} {:?} {docker_host}",
                flags.hosts,
                flags.tls
            );
        }
    }

    #[test]
    fn the_image_name_follows_the_originals_variables() {
        assert_eq!(image(None, Some("1.0")), "weaveworks/weaveexec:1.0");
        assert_eq!(image(Some("me"), Some("dev")), "me/weaveexec:dev");
        assert_eq!(
            image(Some(""), None),
            format!("weaveworks/weaveexec:{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn the_flags_for_several_hosts_reach_the_router() {
        let flags = RouterFlags {
            store_endpoints: Some("10.0.0.1:2379,10.0.0.2:2379".to_owned()),
            name: Some("aa:bb:cc:dd:ee:ff".to_owned()),
            nickname: Some("host1".to_owned()),
            advertise_addr: Some("10.0.0.1".to_owned()),
            vxlan_port: Some(7000),
            peers: vec!["10.0.0.2".to_owned(), "host3:7783".to_owned()],
            ..Default::default()
        };
        let body = router(&host(), &CommonFlags::default(), &flags);
        assert!(
            cmd(&body).ends_with(
                "--store-endpoints 10.0.0.1:2379,10.0.0.2:2379 --name aa:bb:cc:dd:ee:ff \
                 --nickname host1 --advertise-addr 10.0.0.1 --vxlan-port 7000 --peer 10.0.0.2 \
                 --peer host3:7783 --peer-addr 0.0.0.0:6783 --store-image weaveworks/weaveexec:1.0"
            ),
            "{}",
            cmd(&body)
        );
    }

    #[test]
    fn the_router_runs_on_the_host_with_explicit_capabilities_only() {
        let flags = RouterFlags {
            ipalloc_range: Some("10.40.0.0/16".to_owned()),
            no_dns: true,
            ..Default::default()
        };
        let body = router(&host(), &CommonFlags::default(), &flags);
        assert_eq!(body.entrypoint, Some(vec![WEAVER_BIN.to_owned()]));
        assert_eq!(
            cmd(&body),
            "--host-root /host --http-addr 127.0.0.1:6784 --docker-api unix:///var/run/docker.sock \
             --data-dir /var/lib/weave --ipalloc-range 10.40.0.0/16 --no-dns --peer-addr \
             0.0.0.0:6783 --store-image weaveworks/weaveexec:1.0"
        );
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert_eq!(hc.pid_mode.as_deref(), Some("host"));
        assert_eq!(hc.privileged, None);
        assert_eq!(
            hc.cap_add.unwrap(),
            ["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"]
        );
        assert_eq!(
            hc.binds.unwrap(),
            [
                "/:/host:ro",
                "/var/run/docker.sock:/var/run/docker.sock",
                "/var/lib/weave:/var/lib/weave",
                "/run/docker/plugins:/run/docker/plugins"
            ]
        );
        assert_eq!(
            hc.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::ALWAYS)
        );
        // Without the plugin the router is told so, and the plugin directory stays out.
        let no_plugin = RouterFlags {
            no_plugin: true,
            ..Default::default()
        };
        let body = router(&host(), &CommonFlags::default(), &no_plugin);
        assert!(cmd(&body).ends_with(" --no-plugin"), "{}", cmd(&body));
        let binds = body.host_config.unwrap().binds.unwrap();
        assert!(!binds.iter().any(|b| b.contains(PLUGIN_DIR)), "{binds:?}");
        let no_restart = CommonFlags {
            no_restart: true,
            ..Default::default()
        };
        let body = router(&host(), &no_restart, &RouterFlags::default());
        assert_eq!(
            body.host_config.unwrap().restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
    }

    #[test]
    fn the_proxy_gets_its_listeners_directories_and_flags() {
        let flags = ProxyFlags {
            no_default_ipalloc: true,
            hostname_match: Some("^w-(.*)".to_owned()),
            ..Default::default()
        };
        let listen = listen_on(
            &[
                "unix:///var/run/weave/weave.sock",
                "/tmp/extra/p.sock",
                "tcp://0.0.0.0:12375",
            ],
            Some(PlainTcp::Asked),
        );
        let body = proxy(&host(), &CommonFlags::default(), &flags, &listen, None).unwrap();
        assert_eq!(
            cmd(&body),
            "-H unix:///var/run/weave/weave.sock -H /tmp/extra/p.sock -H tcp://0.0.0.0:12375 \
             --docker-api unix:///var/run/docker.sock --router-addr 127.0.0.1:6784 \
             --data-dir /var/lib/weave --tls=false --no-default-ipalloc --hostname-match ^w-(.*)"
        );
        let hc = body.host_config.unwrap();
        assert_eq!(
            hc.binds.unwrap(),
            [
                "/var/run/docker.sock:/var/run/docker.sock",
                "/var/lib/weave:/var/lib/weave",
                "/var/run/weave:/var/run/weave",
                "/tmp/extra:/tmp/extra"
            ]
        );
        assert_eq!(hc.mounts, None);
        assert_eq!(
            proxy(
                &host(),
                &CommonFlags::default(),
                &flags,
                &listen_on(&["unix://rel.sock"], None),
                None
            )
            .unwrap_err(),
            SpecError::RelativeSocket("unix://rel.sock".to_owned())
        );
    }

    #[test]
    fn tls_files_are_mounted_read_only_and_the_flags_rewritten() {
        let tls = DaemonTls {
            verify: true,
            ca: "/tls/ca.pem".into(),
            cert: "/tls/server-cert.pem".into(),
            key: "/tls/server-key.pem".into(),
        };
        // `--tls=false` is moot once TLS is served.
        let listen = listen_on(&["tcp://0.0.0.0:12375"], Some(PlainTcp::Asked));
        let body = proxy(
            &host(),
            &CommonFlags::default(),
            &ProxyFlags::default(),
            &listen,
            Some(&tls),
        )
        .unwrap();
        assert!(
            cmd(&body).contains(
                "--tlsverify --tlscert /home/weave/tls/cert.pem --tlskey /home/weave/tls/key.pem \
                 --tlscacert /home/weave/tls/ca.pem"
            ),
            "{}",
            cmd(&body)
        );
        assert!(!cmd(&body).contains("--tls=false"), "{}", cmd(&body));
        let mounts = body.host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].source.as_deref(), Some("/tls/server-cert.pem"));
        assert_eq!(mounts[0].read_only, Some(true));

        let relative = DaemonTls {
            cert: "server-cert.pem".into(),
            ..tls.clone()
        };
        assert!(matches!(
            proxy(
                &host(),
                &CommonFlags::default(),
                &ProxyFlags::default(),
                &listen,
                Some(&relative)
            ),
            Err(SpecError::RelativeTlsPath {
                flag: "--tlscert",
                ..
            })
        ));
        let flags = ProxyFlags {
            tls: Some(true),
            ..Default::default()
        };
        let given = proxy_tls(&flags, Some(tls)).unwrap();
        assert!(!given.verify, "the user's --tls wins over detection");
        assert!(matches!(
            proxy(
                &host(),
                &CommonFlags::default(),
                &flags,
                &listen,
                Some(&given)
            ),
            Err(SpecError::IncompleteTls("--tls", ""))
        ));
    }
}
