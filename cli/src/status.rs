//! `weave status`, `env`, `config` and `version`: what runs, and how clients reach it. The text is
//! composed by pure functions; the rest asks Docker and the router.

use api::status::line;

use crate::addrs;
use crate::docker;
use crate::error::Error;
use crate::launch::{self, Context};
use crate::spec::{PROXY, ROUTER};

/// The router's status text with a `router` block after its version line and `extra` blocks at
/// the end, blank lines between, as `weave status` prints it.
pub fn compose(router_status: &str, router_block: &str, extra: &[String]) -> String {
    let (head, rest) = router_status
        .split_once("\n\n")
        .unwrap_or((router_status, ""));
    let mut out = format!("\n{}\n\n{router_block}", head.trim_end());
    if !rest.trim().is_empty() {
        out.push('\n');
        out.push_str(rest.trim_end());
        out.push('\n');
    }
    for block in extra {
        out.push('\n');
        out.push_str(block);
    }
    out.push('\n');
    out
}

/// The block of `text` whose `Service:` is `name`, for `weave status ipam|dns|proxy|router`.
pub fn section(text: &str, name: &str) -> Option<String> {
    text.split("\n\n")
        .find(|block| {
            block
                .lines()
                .next()
                .is_some_and(|l| l.trim() == format!("Service: {name}"))
        })
        .map(|block| format!("\n{}\n\n", block.trim_matches('\n')))
}

/// The last non-empty line of a log, to say why something stopped.
fn last_line(logs: &str) -> &str {
    logs.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// Why a container is not running, in one line: its state, exit code and last log line.
async fn stopped_reason(
    ctx: &Context,
    name: &str,
    container: &bollard::models::ContainerInspectResponse,
) -> String {
    let state = docker::state(container);
    let code = container
        .state
        .as_ref()
        .and_then(|s| s.exit_code)
        .map(|c| format!(", exit code {c}"))
        .unwrap_or_default();
    let logs = ctx.docker.logs_tail(name, 5).await;
    let last = last_line(&logs);
    if last.is_empty() {
        format!("{state}{code}")
    } else {
        format!("{state}{code}: {last}")
    }
}

/// `weave status [SECTION]`.
///
/// # Errors
/// When the router is not running (with why), or does not answer.
pub async fn status(ctx: &Context, which: Option<&str>) -> Result<String, Error> {
    let container = ctx.docker.container(ROUTER).await?;
    let answer = ctx.router.status().await;
    let (ready, body) = match (answer, &container) {
        (Ok(answer), _) => answer,
        (Err(_), None) => {
            return Err(Error::NotRunning(format!(
                "{ROUTER} container is not present. Have you launched it?"
            )));
        }
        (Err(err), Some(c)) if docker::is_running(c) => return Err(err.into()),
        (Err(_), Some(c)) => {
            let why = stopped_reason(ctx, ROUTER, c).await;
            return Err(Error::NotRunning(format!(
                "{ROUTER} container is not running ({why}). `docker logs {ROUTER}` shows its log."
            )));
        }
    };
    let mut router_block = line("Service", "router");
    let state = if ready { "ready" } else { "starting" };
    let origin = match &container {
        Some(c) if docker::is_running(c) => format!("{state} (container {ROUTER})"),
        _ => format!("{state} (not from a {ROUTER} container)"),
    };
    router_block.push_str(&line("Status", &origin));
    router_block.push_str(&line("HTTP", ctx.router.addr()));
    let mut extra = Vec::new();
    match ctx.docker.container(PROXY).await? {
        Some(c) if docker::is_running(&c) => {
            let listen = addrs::listen_args(c.args.as_deref().unwrap_or_default());
            extra.push(
                line("Service", "proxy")
                    + &line("Status", "running")
                    + &line("Address", listen.join(", ")),
            );
        }
        Some(c) => {
            let why = stopped_reason(ctx, PROXY, &c).await;
            extra.push(line("Service", "proxy") + &line("Status", format!("not running ({why})")));
        }
        None => {}
    }
    let text = compose(&body, &router_block, &extra);
    match which {
        None => Ok(text),
        Some(name) => section(&text, name).ok_or_else(|| {
            Error::Refused(format!(
                "Invalid 'weave status' sub-command: {name} (one of: router, ipam, dns, proxy, peers, connections)"
            ))
        }),
    }
}

/// `weave env` and `weave config`: the proxy's first address as a client writes it; `None`
/// when the proxy does not run (then nothing is printed, as the original).
///
/// # Errors
/// When Docker fails.
pub async fn proxy_client_addr(ctx: &Context) -> Result<Option<String>, Error> {
    let Some(listen) = launch::proxy_addrs(ctx).await? else {
        eprintln!("weave proxy is not running; start it with `weave launch`");
        return Ok(None);
    };
    // Once `eval $(weave env)` ran, DOCKER_HOST is the proxy: the daemon's host is in the original.
    let daemon = std::env::var("ORIG_DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| ctx.docker_host.clone());
    let host = addrs::proxy_host(daemon.as_deref());
    Ok(listen.first().map(|a| addrs::client_addr(a, &host)))
}

/// `weave version`: this command, the image it launches, and the running router's version.
pub async fn version(ctx: &Context) -> String {
    let mut out = format!("weave {}\nimage {}\n", env!("CARGO_PKG_VERSION"), ctx.image);
    if let Ok((true, body)) = ctx.router.status().await
        && let Some(version) = body
            .lines()
            .find_map(|l| l.trim().strip_prefix("Version: "))
    {
        out.push_str(&format!("router {version}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER_STATUS: &str = "        Version: 0.1.0\n\n        Service: ipam\n         Status: idle\n          Range: 10.32.0.0/12\n  DefaultSubnet: 10.32.0.0/12\n\n        Service: dns\n         Domain: weave.local.\n";

    #[test]
    fn status_puts_the_router_first_and_the_proxy_last() {
        let router = line("Service", "router") + &line("Status", "ready (container weave)");
        let proxy = line("Service", "proxy") + &line("Address", "unix:///var/run/weave/weave.sock");
        let text = compose(ROUTER_STATUS, &router, &[proxy]);
        assert_eq!(
            text,
            "\n        Version: 0.1.0\n\n        Service: router\n         Status: ready (container weave)\n\n        Service: ipam\n         Status: idle\n          Range: 10.32.0.0/12\n  DefaultSubnet: 10.32.0.0/12\n\n        Service: dns\n         Domain: weave.local.\n\n        Service: proxy\n        Address: unix:///var/run/weave/weave.sock\n\n"
        );
        assert_eq!(
            section(&text, "ipam").unwrap(),
            "\n        Service: ipam\n         Status: idle\n          Range: 10.32.0.0/12\n  DefaultSubnet: 10.32.0.0/12\n\n"
        );
        assert!(
            section(&text, "proxy")
                .unwrap()
                .contains("Address: unix://")
        );
        assert_eq!(section(&text, "peers"), None);
        // A router without DNS: no dns block, nothing lost.
        let bare = compose("        Version: 1\n", &router, &[]);
        assert_eq!(bare, format!("\n        Version: 1\n\n{router}\n"));
    }

    #[test]
    fn the_reason_is_the_last_line_logged() {
        assert_eq!(last_line("a\nweaver: bad flag\n\n"), "weaver: bad flag");
        assert_eq!(last_line(""), "");
    }
}
