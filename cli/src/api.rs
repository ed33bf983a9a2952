//! Reaching the router's HTTP API: directly, or, when this command runs in a container without
//! the host's network (`docker run weaveworks/weaveexec ...`), through `weave router-request`
//! run inside the router's own container, which is on the host's network.

use http::{Method, StatusCode};
use weaveproxy::weaveapi::{RouterClient, RouterError};

use crate::docker::Docker;
use crate::error::Error;
use crate::spec::{ROUTER, WEAVE_BIN};

/// Whether this process runs from the weaveexec image (which sets `WEAVE_IN_IMAGE`), where the
/// host's network and processes may be out of sight. `/.dockerenv` would not do: the Docker host
/// may itself be a container.
pub fn in_container() -> bool {
    std::env::var_os("WEAVE_IN_IMAGE").is_some()
}

/// The router's API, reached one way or the other.
#[derive(Debug, Clone)]
pub struct Router {
    client: RouterClient,
}

impl Router {
    pub fn new(addr: &str) -> Self {
        Self {
            client: RouterClient::new(addr),
        }
    }

    /// The normalised address.
    pub fn addr(&self) -> &str {
        self.client.addr()
    }

    /// The client, for the calls it has typed helpers for.
    pub fn client(&self) -> &RouterClient {
        &self.client
    }

    /// `method path` with a form body; the status and body.
    ///
    /// # Errors
    /// [`Error::Router`] when the router does not answer either way.
    pub async fn request(
        &self,
        docker: &Docker,
        method: Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(StatusCode, String), Error> {
        let body = encode(form);
        match self
            .client
            .call(method.clone(), path, body.clone().into())
            .await
        {
            Err(err @ RouterError::Down { .. }) if in_container() => {
                let mut cmd = vec![
                    WEAVE_BIN.to_owned(),
                    "router-request".to_owned(),
                    method.to_string(),
                    path.to_owned(),
                ];
                cmd.extend(form.iter().map(|(k, v)| format!("{k}={v}")));
                let Ok(Some(container)) = docker.container(ROUTER).await else {
                    return Err(err.into());
                };
                if !crate::docker::is_running(&container) {
                    return Err(err.into());
                }
                let out = docker.exec(ROUTER, cmd).await?;
                parse_relayed(&out.stdout).ok_or(err.into())
            }
            other => Ok(other?),
        }
    }
}

/// A form body, `application/x-www-form-urlencoded`.
pub fn encode(form: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

/// `router-request`'s output: the status on the first line, then the body.
pub fn relay(status: StatusCode, body: &str) -> String {
    format!("{}\n{body}", status.as_u16())
}

fn parse_relayed(out: &str) -> Option<(StatusCode, String)> {
    let (status, body) = out.split_once('\n')?;
    Some((status.trim().parse().ok()?, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_answer_reads_back_as_it_was() {
        let text = relay(StatusCode::BAD_REQUEST, "Unable to claim: x\nmore");
        assert_eq!(
            parse_relayed(&text),
            Some((
                StatusCode::BAD_REQUEST,
                "Unable to claim: x\nmore".to_owned()
            ))
        );
        assert_eq!(parse_relayed("garbage"), None);
        assert_eq!(
            encode(&[("fqdn", "a b.weave.local."), ("check-alive", "true")]),
            "fqdn=a+b.weave.local.&check-alive=true"
        );
    }
}
