//! Reaching the router's HTTP API from `weave`: directly, or, when this command runs in a
//! container without the host's network (`docker run weaveworks/weaveexec ...`), relayed through
//! `weave router-request` run inside the router's own container, which is on the host's network.

use api::client::{Answer, HttpTransport, RouterError, Transport};
use api::{Call, RouterClient};
use http::StatusCode;

use crate::docker::Docker;
use crate::spec::{ROUTER, WEAVE_BIN};

/// The router's API as `weave` reaches it.
pub type Router = RouterClient<Relay>;

/// The router for `weave` at `addr`, relayed through Docker when it cannot be reached.
pub fn router(addr: &str, docker: Docker) -> Router {
    RouterClient::over(Relay {
        direct: HttpTransport::new(addr),
        docker,
    })
}

/// Whether this process runs from the weaveexec image (which sets `WEAVE_IN_IMAGE`), where the
/// host's network and processes may be out of sight. `/.dockerenv` would not do: the Docker host
/// may itself be a container.
pub fn in_container() -> bool {
    std::env::var_os("WEAVE_IN_IMAGE").is_some()
}

/// Calls over HTTP, relayed through the router's container when that fails in a container.
#[derive(Debug, Clone)]
pub struct Relay {
    direct: HttpTransport,
    docker: Docker,
}

impl Relay {
    /// The plain HTTP way, without the relay.
    pub fn direct(&self) -> &HttpTransport {
        &self.direct
    }
}

impl Transport for Relay {
    fn addr(&self) -> &str {
        self.direct.addr()
    }

    async fn send(&self, call: &Call) -> Result<Answer, RouterError> {
        match self.direct.send(call).await {
            Err(err @ RouterError::Down { .. }) if in_container() => {
                self.relayed(call).await.ok_or(err)
            }
            other => other,
        }
    }
}

impl Relay {
    /// `call` made by `weave router-request` in the router's container; `None` when that
    /// container does not run or the relay fails.
    async fn relayed(&self, call: &Call) -> Option<Answer> {
        let mut cmd = vec![
            WEAVE_BIN.to_owned(),
            "router-request".to_owned(),
            call.method.to_string(),
            call.path.clone(),
        ];
        cmd.extend(form_urlencoded::parse(call.form.as_bytes()).map(|(k, v)| format!("{k}={v}")));
        let container = self.docker.container(ROUTER).await.ok()??;
        if !crate::docker::is_running(&container) {
            return None;
        }
        let out = self.docker.exec(ROUTER, cmd).await.ok()?;
        parse_relayed(&out.stdout)
    }
}

/// `router-request`'s output: the status on the first line, then the body.
pub fn relay(answer: &Answer) -> String {
    format!("{}\n{}", answer.status.as_u16(), answer.body)
}

fn parse_relayed(out: &str) -> Option<Answer> {
    let (status, body) = out.split_once('\n')?;
    Some(Answer {
        status: status.trim().parse::<StatusCode>().ok()?,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_answer_reads_back_as_it_was() {
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            body: "Unable to claim: x\nmore".to_owned(),
        };
        assert_eq!(parse_relayed(&relay(&answer)), Some(answer));
        assert_eq!(parse_relayed("garbage"), None);
    }
}
