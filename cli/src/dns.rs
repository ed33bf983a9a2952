//! weaveDNS from the command line: `weave dns-args` and `weave dns-lookup`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

use crate::error::Error;
use crate::launch::Context;

/// How long `dns-lookup` waits for weaveDNS, as `dig` does by default per try.
const PATIENCE: Duration = Duration::from_secs(5);

/// What a router without weaveDNS (launched `--no-dns`; it answers 404) makes a DNS command say.
pub(crate) fn not_running() -> Error {
    Error::Refused("weaveDNS is not running (the router was launched with --no-dns)".to_owned())
}

/// weaveDNS's address and domain, from the router (`GET /dns-address`, `GET /domain`).
///
/// # Errors
/// When the router is not running, runs without weaveDNS, or refuses.
async fn server(ctx: &Context) -> Result<(IpAddr, String), Error> {
    let dns = ctx.router.dns().await?.ok_or_else(not_running)?;
    Ok((dns.server, dns.domain))
}

/// The `docker run` flags that make a container use weaveDNS: `--dns=IP --dns-search=DOMAIN`.
pub fn args_line(server: IpAddr, domain: &str) -> String {
    format!("--dns={server} --dns-search={domain}")
}

/// `weave dns-args`: [`args_line`] for the running router.
///
/// # Errors
/// When the router is not running, runs without weaveDNS, or refuses.
pub async fn dns_args(ctx: &Context) -> Result<String, Error> {
    let (address, domain) = server(ctx).await?;
    Ok(args_line(address, &domain))
}

/// `weave dns-lookup NAME`: weaveDNS's A records for `NAME`, one address per line, as
/// `dig +short` prints them; nothing for a name it does not know.
///
/// # Errors
/// When weaveDNS is not running, does not answer, or fails the query.
pub async fn lookup(ctx: &Context, name: &str) -> Result<String, Error> {
    let (address, _) = server(ctx).await?;
    let answers = ask(SocketAddr::new(address, 53), name).await?;
    Ok(answers.iter().map(|a| format!("{a}\n")).collect::<String>())
}

/// One A query for `name` to `server`, and the addresses of its answer.
async fn ask(server: SocketAddr, name: &str) -> Result<Vec<Ipv4Addr>, Error> {
    let failed = |what: String| Error::Failed(format!("weaveDNS at {server}: {what}"));
    let qname = Name::from_ascii(name)
        .map_err(|err| Error::Refused(format!("{name:?} is not a DNS name: {err}")))?;
    let mut query = Message::query();
    query.metadata.id = std::process::id() as u16;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(qname, RecordType::A));
    let wire = query.to_vec().map_err(|err| failed(err.to_string()))?;
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|err| failed(err.to_string()))?;
    socket
        .connect(server)
        .await
        .map_err(|err| failed(err.to_string()))?;
    socket
        .send(&wire)
        .await
        .map_err(|err| failed(err.to_string()))?;
    let mut buf = [0u8; 4096];
    let answer = loop {
        let len = tokio::time::timeout(PATIENCE, socket.recv(&mut buf))
            .await
            .map_err(|_| failed(format!("no answer within {PATIENCE:?}")))?
            .map_err(|err| failed(err.to_string()))?;
        let answer = Message::from_vec(&buf[..len]).map_err(|err| failed(err.to_string()))?;
        if answer.metadata.id == query.metadata.id {
            break answer;
        }
    };
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(addresses(&answer)),
        code => Err(failed(format!("the query failed: {code}"))),
    }
}

/// The A records' addresses in an answer, in its order.
fn addresses(answer: &Message) -> Vec<Ipv4Addr> {
    answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_line_is_what_docker_run_takes() {
        assert_eq!(
            args_line("172.17.0.1".parse().unwrap(), "weave.local."),
            "--dns=172.17.0.1 --dns-search=weave.local."
        );
    }
}
