//! Weave without the proxy: `weave run`, `start`, `attach`, `detach`, `dns-add`, `dns-remove` and
//! `ps`. Argument splitting is pure; the attach itself is netlink in the container's namespace
//! (so it runs on the host as root, or inside the router's container, which has what it needs).

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use api::naming::{self, Names};
use api::route::{EXPOSE_ID, EXTERN_ID};
use api::{CidrToken, RouterError};
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::ListContainersOptionsBuilder;
use ipnet::Ipv4Net;
use weavenet::Process;
use weavenet::sequence;

use crate::args::AttachFlags;
use crate::docker;
use crate::error::Error;
use crate::launch::Context;

/// The bridge `weave launch` creates.
pub const BRIDGE: &str = "weave";

/// The bound on one `weave attach`: a router that accepts and never answers ends it with an error
/// (each of its requests has a bound of its own too).
const ATTACH_LIMIT: Duration = Duration::from_secs(60);

/// Leading arguments that are addresses (`[ip:]CIDR`, `net:CIDR`, `net:default`), and the rest.
pub fn split_addrs(args: &[String]) -> (Vec<CidrToken>, &[String]) {
    let count = args
        .iter()
        .take_while(|a| CidrToken::from_str(a).is_ok())
        .count();
    let tokens = args[..count]
        .iter()
        .filter_map(|a| CidrToken::from_str(a).ok())
        .collect();
    (tokens, &args[count..])
}

/// The `docker run` flags that make a container use weaveDNS, for `weave run`: the name server,
/// and, when the user named the container but gave it no hostname, `<name>.<domain>` as its
/// hostname with `.` as search domain (so that short names still resolve); otherwise the domain
/// is the search domain.
pub fn run_dns_args(docker_args: &[String], domain: &str, server: std::net::IpAddr) -> Vec<String> {
    let value_of = |long: &str, short: Option<&str>| {
        let mut iter = docker_args.iter();
        while let Some(arg) = iter.next() {
            if arg == long || short.is_some_and(|s| arg == s) {
                return iter.next().cloned();
            }
            if let Some(v) = arg.strip_prefix(&format!("{long}=")) {
                return Some(v.to_owned());
            }
        }
        None
    };
    let domain = domain.trim_end_matches('.');
    let mut out = vec![format!("--dns={server}")];
    let hostname = value_of("--hostname", Some("-h"));
    match (hostname, value_of("--name", None)) {
        (None, Some(name)) if name.len() + domain.len() < 64 => {
            out.push(format!("--hostname={name}.{domain}"));
            out.push("--dns-search=.".to_owned());
        }
        _ => out.push(format!("--dns-search={domain}.")),
    }
    out
}

/// A name weaveDNS can hold for a container: only one with a domain (a dot).
pub fn registrable(fqdn: String) -> Option<String> {
    fqdn.contains('.').then_some(fqdn)
}

/// The container's full id, its first process (pinned) and its inspect document; it must be
/// running.
async fn running(
    ctx: &Context,
    name: &str,
) -> Result<(String, Process, ContainerInspectResponse), Error> {
    let inspect = || async {
        let container = ctx
            .docker
            .container(name)
            .await?
            .ok_or_else(|| Error::Refused(format!("Error: No such container: {name}")))?;
        let pid = container.state.as_ref().and_then(|s| s.pid).unwrap_or(0);
        match i32::try_from(pid) {
            Ok(pid) if pid > 0 && docker::is_running(&container) => Ok((pid, container)),
            _ => Err(Error::NotRunning(format!(
                "container {name} is not running"
            ))),
        }
    };
    let (pid, container) = inspect().await?;
    let process = Process::pin(pid)?;
    // A PID can be reused between the inspect that gave it and the pin, never after: so Docker
    // is asked again whether it is still the container's.
    if inspect().await?.0 != pid {
        return Err(Error::NotRunning(format!(
            "container {name} restarted while weave looked at it"
        )));
    }
    let id = container.id.clone().unwrap_or_default();
    Ok((id, process, container))
}

fn names_of(container: &ContainerInspectResponse) -> Option<String> {
    let config = container.config.as_ref()?;
    registrable(naming::fqdn(
        config.hostname.as_deref().unwrap_or(""),
        config.domainname.as_deref().unwrap_or(""),
    ))
}

/// `weave attach [ADDR...] CONTAINER`: addresses from the router (`net:default` when none is
/// given), the container's `/etc/hosts` on its first attach, `ethwe`, and its name registered;
/// prints the addresses. The same sequence as the proxy's.
///
/// # Errors
/// When the container does not run, the router refuses, or the attach fails (then what this
/// attach took is given back; what the container had before stays).
pub async fn attach(ctx: &Context, flags: &AttachFlags, args: &[String]) -> Result<String, Error> {
    let (mut tokens, rest) = split_addrs(args);
    let [name] = rest else {
        return Err(Error::Refused(format!(
            "expected addresses ([ip:]CIDR, net:CIDR, net:default) and one container, got {args:?}"
        )));
    };
    if tokens.is_empty() {
        tokens.push(CidrToken::DefaultSubnet);
    }
    let (id, process, container) = running(ctx, name).await?;
    let names = Names::from_inspect(&container);
    let target = sequence::Target {
        id: &id,
        process: &process,
        tokens: &tokens,
        names: &names,
    };
    let options = sequence::Options {
        bridge: BRIDGE.to_owned(),
        multicast_route: !flags.no_multicast_route,
        rewrite_hosts: !flags.no_rewrite_hosts,
        register_names: !flags.without_dns,
    };
    let done = sequence::attach(&ctx.router, target, &options, ATTACH_LIMIT).await?;
    Ok(ips(&done.addrs))
}

/// Gives `id`'s address `ip` and its names back to the router. A refusal is no failure: what
/// the router does not hold (an address it never gave, a name it does not have) is already gone.
async fn give_back(ctx: &Context, id: &str, ip: Ipv4Addr) -> Result<(), Error> {
    let refused = |result: Result<(), RouterError>| match result {
        Err(RouterError::Refused { .. }) => Ok(()),
        other => other,
    };
    refused(ctx.router.deregister_name(id, ip, None).await.map(drop))?;
    refused(ctx.router.release_addr(id, ip).await)?;
    Ok(())
}

/// The addresses of `present` that `tokens` name (an address, or any in a subnet); all of them
/// when there are no tokens.
pub fn select(present: Vec<Ipv4Net>, tokens: &[CidrToken]) -> Vec<Ipv4Net> {
    if tokens.is_empty() {
        return present;
    }
    present
        .into_iter()
        .filter(|p| {
            tokens.iter().any(|t| match t {
                CidrToken::Address(a) => a.addr() == p.addr(),
                CidrToken::Subnet(net) => net.contains(&p.addr()),
                CidrToken::DefaultSubnet => true,
            })
        })
        .collect()
}

/// Every argument as an address token.
fn tokens_of(args: &[String]) -> Result<Vec<CidrToken>, Error> {
    args.iter()
        .map(|a| CidrToken::from_str(a).map_err(|e| Error::Refused(e.to_string())))
        .collect()
}

/// `weave expose [ADDR...] [-h FQDN]`: addresses for the host from the router (kept until
/// `weave hide`: no container's life ends them), put on the bridge, and optionally named in
/// weaveDNS; prints them.
///
/// # Errors
/// When the router refuses or the bridge is not there.
pub async fn expose(ctx: &Context, fqdn: Option<&str>, args: &[String]) -> Result<String, Error> {
    let mut tokens = tokens_of(args)?;
    if tokens.is_empty() {
        tokens.push(CidrToken::DefaultSubnet);
    }
    let mut cidrs = Vec::new();
    for token in &tokens {
        // Not a container: nothing for the router to check is alive.
        let cidr = ctx.router.address_for(EXPOSE_ID, token, false).await?;
        weavenet::expose(BRIDGE, cidr).await?;
        cidrs.push(cidr);
    }
    if let Some(fqdn) = fqdn {
        for cidr in &cidrs {
            ctx.router
                .register_name(EXPOSE_ID, cidr.addr(), fqdn, false)
                .await?;
        }
    }
    Ok(ips(&cidrs))
}

/// `weave hide [ADDR...]`: the host's weave addresses (those named, or all) off the bridge, out of
/// weaveDNS, and back to the router; prints them.
///
/// # Errors
/// When the router refuses.
pub async fn hide(ctx: &Context, args: &[String]) -> Result<String, Error> {
    let tokens = tokens_of(args)?;
    let present = weavenet::host_interface(BRIDGE)
        .await?
        .map(|i| i.addrs)
        .unwrap_or_default();
    let chosen = select(present, &tokens);
    for cidr in &chosen {
        weavenet::hide(BRIDGE, *cidr).await?;
        give_back(ctx, EXPOSE_ID, cidr.addr()).await?;
    }
    Ok(ips(&chosen))
}

fn ips(cidrs: &[Ipv4Net]) -> String {
    cidrs
        .iter()
        .map(|c| c.addr().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `weave detach [ADDR...] CONTAINER`: removes `ethwe` (or only the given addresses' names and
/// allocations), the container's names, and releases its addresses; prints them.
///
/// # Errors
/// When the container does not run or the router refuses.
pub async fn detach(ctx: &Context, args: &[String]) -> Result<String, Error> {
    let (tokens, rest) = split_addrs(args);
    let [name] = rest else {
        return Err(Error::Refused(format!(
            "expected addresses and one container, got {args:?}"
        )));
    };
    let (id, process, _) = running(ctx, name).await?;
    let present = weavenet::container_addrs(&process).await?;
    let chosen = select(present.clone(), &tokens);
    // `ethwe` goes as a whole: releasing only some of its addresses would leave the others in
    // use by nobody but still allocated.
    if chosen.len() != present.len() {
        return Err(Error::Refused(format!(
            "{name} has {}; detach removes its weave interface with all of them: name them all, \
             or none",
            ips(&present)
        )));
    }
    weavenet::detach(&process).await?;
    for cidr in &chosen {
        give_back(ctx, &id, cidr.addr()).await?;
    }
    Ok(ips(&chosen))
}

/// `weave run [ADDR...] DOCKER-RUN-ARGS`: `docker run -d` with `WEAVE_CIDR=none` (so a proxy
/// leaves it alone) and weaveDNS's flags, then [`attach`]; a container that cannot be attached
/// is removed. Prints its id.
///
/// # Errors
/// When `docker run` fails or the attach does.
pub async fn run(ctx: &Context, flags: &AttachFlags, args: &[String]) -> Result<String, Error> {
    let (tokens, docker_args) = split_addrs(args);
    let dns = if flags.without_dns {
        None
    } else {
        ctx.router.dns().await.ok().flatten()
    };
    let mut cmd = vec![
        "run".to_owned(),
        "-d".to_owned(),
        "-e".to_owned(),
        "WEAVE_CIDR=none".to_owned(),
    ];
    if let Some(dns) = &dns {
        cmd.extend(run_dns_args(docker_args, &dns.domain, dns.server));
    }
    cmd.extend(docker_args.iter().cloned());
    let out = tokio::process::Command::new("docker")
        .args(&cmd)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|err| Error::Refused(format!("weave run needs the docker command: {err}")))?;
    if !out.status.success() {
        return Err(Error::Failed(format!("docker run failed ({})", out.status)));
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut attach_args: Vec<String> = args[..args.len() - docker_args.len()].to_vec();
    if tokens.is_empty() {
        attach_args.clear();
    }
    attach_args.push(id.clone());
    if let Err(err) = attach(ctx, flags, &attach_args).await {
        let _ = ctx.docker.remove(&id).await;
        return Err(err);
    }
    Ok(id)
}

/// `weave start [ADDR...] CONTAINER`: `docker start`, then [`attach`]; prints the addresses.
///
/// # Errors
/// When the container cannot start or be attached.
pub async fn start(ctx: &Context, flags: &AttachFlags, args: &[String]) -> Result<String, Error> {
    let name = args.last().cloned().unwrap_or_default();
    ctx.docker.api().start_container(&name, None).await?;
    attach(ctx, flags, args).await
}

/// `weave dns-add` and `dns-remove`: `[IP...] CONTAINER [-h FQDN]` or `IP... -h FQDN`.
///
/// # Errors
/// When the arguments name nothing to register, or the router refuses.
pub async fn dns(
    ctx: &Context,
    add: bool,
    fqdn: Option<&str>,
    args: &[String],
) -> Result<(), Error> {
    let count = args
        .iter()
        .take_while(|a| a.parse::<Ipv4Addr>().is_ok())
        .count();
    let mut ips: Vec<Ipv4Addr> = args[..count]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let (id, name, check_alive) = match &args[count..] {
        [] => (EXTERN_ID.to_owned(), None, false),
        [container] => {
            let (id, process, found) = running(ctx, container).await?;
            if ips.is_empty() {
                ips = weavenet::container_addrs(&process)
                    .await?
                    .iter()
                    .map(Ipv4Net::addr)
                    .collect();
            }
            (id, names_of(&found), true)
        }
        more => {
            return Err(Error::Refused(format!(
                "expected IPs and at most one container, got {more:?}"
            )));
        }
    };
    let Some(fqdn) = fqdn.map(str::to_owned).or(name) else {
        return Err(Error::Refused(
            "no name to register: give -h FQDN, or a container whose hostname has a domain"
                .to_owned(),
        ));
    };
    if ips.is_empty() {
        return Err(Error::Refused(
            "no IP address to register: give one, or a container on the weave network".to_owned(),
        ));
    }
    for ip in ips {
        let served = if add {
            ctx.router
                .register_name(&id, ip, &fqdn, check_alive)
                .await?
        } else {
            ctx.router.deregister_name(&id, ip, Some(&fqdn)).await?
        };
        if !served {
            return Err(crate::dns::not_running());
        }
    }
    Ok(())
}

/// `weave ps [CONTAINER...]`: one line per container on the weave network: the name as given
/// (or the id's first 12 characters), the MAC of `ethwe`, and its addresses.
///
/// # Errors
/// When Docker fails.
pub async fn ps(ctx: &Context, containers: &[String]) -> Result<String, Error> {
    let targets: Vec<(String, String)> = if containers.is_empty() {
        let options = ListContainersOptionsBuilder::new().build();
        ctx.docker
            .api()
            .list_containers(Some(options))
            .await?
            .into_iter()
            .filter_map(|c| c.id)
            .map(|id| (id[..12.min(id.len())].to_owned(), id))
            .collect()
    } else {
        containers.iter().map(|c| (c.clone(), c.clone())).collect()
    };
    let mut out = String::new();
    if containers.is_empty()
        && let Ok(Some(bridge)) = weavenet::host_interface(BRIDGE).await
        && !bridge.addrs.is_empty()
    {
        let cidrs: Vec<String> = bridge.addrs.iter().map(ToString::to_string).collect();
        out.push_str(&format!("{EXPOSE_ID} {} {}\n", bridge.mac, cidrs.join(" ")));
    }
    for (label, name) in targets {
        let Ok((_, process, _)) = running(ctx, &name).await else {
            continue;
        };
        if let Ok(Some(ethwe)) = weavenet::container_interface(&process).await {
            let cidrs: Vec<String> = ethwe.addrs.iter().map(ToString::to_string).collect();
            out.push_str(&format!("{label} {} {}\n", ethwe.mac, cidrs.join(" ")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn leading_addresses_are_split_from_the_rest() {
        let args = strings("10.2.1.1/24 net:10.2.2.0/24 net:default -ti --name web busybox");
        let (tokens, rest) = split_addrs(&args);
        assert_eq!(tokens.len(), 3);
        assert_eq!(rest, &strings("-ti --name web busybox")[..]);
        let args = strings("c1");
        let (tokens, rest) = split_addrs(&args);
        assert!(tokens.is_empty());
        assert_eq!(rest, &["c1".to_owned()][..]);
    }

    #[test]
    fn weave_run_names_the_container_in_weavedns() {
        let server: std::net::IpAddr = "172.17.0.1".parse().unwrap();
        let cases = [
            (
                "-ti busybox",
                vec!["--dns=172.17.0.1", "--dns-search=weave.local."],
            ),
            (
                "--name web busybox",
                vec![
                    "--dns=172.17.0.1",
                    "--hostname=web.weave.local",
                    "--dns-search=.",
                ],
            ),
            (
                "--name=web -h x.example busybox",
                vec!["--dns=172.17.0.1", "--dns-search=weave.local."],
            ),
            (
                "--name web --hostname=x busybox",
                vec!["--dns=172.17.0.1", "--dns-search=weave.local."],
            ),
        ];
        for (args, want) in cases {
            assert_eq!(
                run_dns_args(&strings(args), "weave.local.", server),
                want,
                "{args}"
            );
        }
        let long = format!("--name {} busybox", "n".repeat(60));
        assert!(
            !run_dns_args(&strings(&long), "weave.local.", server)[1].starts_with("--hostname")
        );
    }

    #[test]
    fn only_a_dotted_name_is_registered() {
        let cases = [
            ("web", "weave.local", Some("web.weave.local")),
            ("web.weave.local", "", Some("web.weave.local")),
            ("web", "", None),
            ("", "weave.local", None),
        ];
        for (host, domain, want) in cases {
            assert_eq!(
                registrable(naming::fqdn(host, domain)).as_deref(),
                want,
                "{host} {domain}"
            );
        }
    }
}
