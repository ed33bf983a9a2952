//! `POST /containers/{id}/exec`: an exec in a weave container waits for the network too.
//!
//! Right after a start, or while a restarted container is being attached again, a program
//! exec'd into it would otherwise run before `ethwe` exists.

use http::Response;
use http::request::Parts;
use hyper::body::Incoming;
use serde_json::Value;

use super::{Settings, read_body, send, send_json};
use crate::body::ProxyBody;
use crate::docker::{DockerClient, DockerError};
use crate::error::ProxyError;
use crate::upstream::Upstream;

use crate::json::{self, WrongType};
use crate::weavecontainer::{WEAVEWAIT, is_weave_container};

/// Puts `/w/w` in front of an exec's `Cmd` (once).
///
/// # Errors
/// When the body is not an object with a string-list `Cmd` (the daemon then answers).
pub fn rewrite(body: &mut Value) -> Result<bool, WrongType> {
    let object = body.as_object_mut().ok_or(WrongType {
        field: "body",
        expected: "an object",
    })?;
    let cmd = json::string_list(object, "Cmd")?.unwrap_or_default();
    if cmd.is_empty() || cmd[0] == WEAVEWAIT {
        return Ok(false);
    }
    let wrapped = std::iter::once(WEAVEWAIT.to_owned()).chain(cmd);
    object.insert("Cmd".into(), json::strings(wrapped));
    Ok(true)
}

/// `POST /containers/{id}/exec`: prefix the command with `/w/w` in weave containers.
///
/// # Errors
/// An oversized body, or the daemon unreachable.
pub async fn create_exec(
    upstream: &Upstream,
    docker: &DockerClient,
    settings: &Settings,
    container: &str,
    parts: Parts,
    body: Incoming,
) -> Result<Response<ProxyBody>, ProxyError> {
    let bytes = read_body(body).await?;
    let weave = match docker.inspect_container(container).await {
        Ok(inspect) => is_weave_container(&inspect, settings.no_default_ipalloc),
        Err(DockerError::Unreachable(err)) => return Err(err.into()),
        // No such container, or one Docker cannot show: the daemon answers the exec itself.
        Err(_) => false,
    };
    if weave
        && let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes)
        && rewrite(&mut doc).unwrap_or(false)
    {
        return send_json(upstream, parts, &doc).await;
    }
    send(upstream, parts, bytes).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prefixes_the_exec_command_once() {
        let mut body = json!({"AttachStdout": true, "Cmd": ["ip", "addr"], "Tty": false});
        assert!(rewrite(&mut body).unwrap());
        assert_eq!(body["Cmd"], json!(["/w/w", "ip", "addr"]));
        assert!(!rewrite(&mut body).unwrap());
        assert_eq!(body["Cmd"], json!(["/w/w", "ip", "addr"]));
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["AttachStdout", "Cmd", "Tty"]);
        let mut string_cmd = json!({"Cmd": "ls"});
        assert!(rewrite(&mut string_cmd).unwrap());
        assert_eq!(string_cmd["Cmd"], json!(["/w/w", "ls"]));
        assert!(rewrite(&mut json!({"Cmd": 3})).is_err());
    }
}
