//! Responses that show a container's command: clients see the command they asked for.
//!
//! `GET /containers/json` (`Command`) and `GET /containers/{id}/json` (`Path`, `Args`,
//! `Config.Entrypoint`) are shown without the `/w/w` the proxy put in front, as they would be
//! without the proxy. The original proxy showed `/w/w true`, which broke docker-py's own
//! container-listing test. The daemon itself, and `docker ps` straight to it, still show the
//! truth. Only called for bodies that mention `/w/w`, and for inspects with `--rewrite-inspect`,
//! which also show the weave interface's address ([`show_weave_network`]). The rewrites are pure;
//! [`present`] reads the daemon's answer and, for `--rewrite-inspect`, the container's `ethwe`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use indexmap::IndexMap;
use ipnet::Ipv4Net;
use serde_json::Value;
use serde_json::value::RawValue;
use tracing::debug;

use super::{BODY_LIMIT, full, to_json_bytes};
use crate::attach::Attacher;
use crate::body::{self, ProxyBody};
use crate::error::ProxyError;
use crate::upstream::Upstream;
use crate::weavecontainer::WEAVEWAIT;

/// Strips `/w/w ` from each container's `Command` in a container list (the daemon's JSON
/// bytes). Returns the new bytes, or `None` when nothing changed or the list is not the
/// expected shape.
///
/// Listings are large and frequent (`docker ps`, compose polling), so only the top level of
/// each container is split into fields; every other field's text is written back exactly as
/// the daemon wrote it, without building a tree of it.
pub fn hide_in_list(list: &[u8]) -> Option<Vec<u8>> {
    let mut containers: Vec<IndexMap<String, Box<RawValue>>> = serde_json::from_slice(list).ok()?;
    let mut changed = false;
    for container in &mut containers {
        let Some(raw) = container.get_mut("Command") else {
            continue;
        };
        let Ok(command) = serde_json::from_str::<String>(raw.get()) else {
            continue;
        };
        if let Some(rest) = command
            .strip_prefix(WEAVEWAIT)
            .filter(|rest| rest.is_empty() || rest.starts_with(' '))
        {
            *raw = serde_json::value::to_raw_value(rest.trim_start_matches(' ')).ok()?;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    let mut out = serde_json::to_vec(&containers).ok()?;
    if list.ends_with(b"\n") {
        out.push(b'\n');
    }
    Some(out)
}

/// Shows an inspected container's `Path`, `Args` and `Config.Entrypoint` without `/w/w`.
/// Returns whether anything changed.
pub fn hide_in_inspect(container: &mut Value) -> bool {
    let Some(object) = container.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    let wrapped = object.get("Path").and_then(Value::as_str) == Some(WEAVEWAIT);
    if let (true, Some(Value::Array(args))) = (wrapped, object.get_mut("Args"))
        && let Some(Value::String(_)) = args.first()
    {
        let path = args.remove(0);
        object.insert("Path".into(), path);
        changed = true;
    }
    if let Some(Value::Object(config)) = object.get_mut("Config")
        && let Some(Value::Array(entrypoint)) = config.get_mut("Entrypoint")
        && entrypoint.first().and_then(Value::as_str) == Some(WEAVEWAIT)
    {
        entrypoint.remove(0);
        if entrypoint.is_empty() {
            // Docker shows no entrypoint as null, not as an empty list.
            config.insert("Entrypoint".into(), Value::Null);
        }
        changed = true;
    }
    changed
}

/// `--rewrite-inspect`: the top-level `NetworkSettings` show the weave interface (its MAC, and
/// its first address with prefix length) instead of Docker's `eth0`, as the original did; the
/// per-network `Networks` entries stay Docker's. Returns whether anything changed.
pub fn show_weave_network(container: &mut Value, mac: &str, addr: Ipv4Net) -> bool {
    let Some(settings) = container
        .get_mut("NetworkSettings")
        .and_then(Value::as_object_mut)
    else {
        return false;
    };
    settings.insert("IPAddress".into(), Value::from(addr.addr().to_string()));
    settings.insert("IPPrefixLen".into(), Value::from(addr.prefix_len()));
    settings.insert("MacAddress".into(), Value::from(mac));
    true
}

/// Which presentation rewrite a forwarded response gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// `GET /containers/json`.
    List,
    /// `GET /containers/{id}/json`.
    Inspect,
}

/// Shows the daemon's answer without the `/w/w` prefix; answers that do not mention it, errors
/// and oversized bodies pass through as they came.
///
/// # Errors
/// When the daemon's answer is cut off.
pub async fn present(
    upstream: &Upstream,
    kind: Presentation,
    response: Response<Incoming>,
    weave_network: Option<&Attacher>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if response.status() != StatusCode::OK || declared.is_some_and(|len| len > BODY_LIMIT) {
        return Ok(response.map(body::stream));
    }
    let (mut parts, incoming) = response.into_parts();
    let bytes = Limited::new(incoming, BODY_LIMIT)
        .collect()
        .await
        .map_err(|err| upstream.failed(format!("reading the answer: {err}")))?
        .to_bytes();
    let mentions = bytes
        .windows(WEAVEWAIT.len())
        .any(|w| w == WEAVEWAIT.as_bytes());
    let rewritten = match (kind, weave_network) {
        (Presentation::Inspect, Some(attacher)) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut doc) => {
                let hidden = mentions && hide_in_inspect(&mut doc);
                let shown = show_weave_interface(attacher, &mut doc).await;
                (hidden || shown).then(|| to_json_bytes(&doc, bytes.ends_with(b"\n")))
            }
            Err(_) => None,
        },
        _ if !mentions => None,
        (Presentation::List, _) => hide_in_list(&bytes).map(Bytes::from),
        (Presentation::Inspect, _) => {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|mut doc| {
                    hide_in_inspect(&mut doc).then(|| to_json_bytes(&doc, bytes.ends_with(b"\n")))
                })
        }
    };
    let out = rewritten.unwrap_or(bytes);
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Response::from_parts(parts, full(out)))
}

/// `--rewrite-inspect` for a weave container: waits for a start still attaching it, then shows
/// its `ethwe`. A container without one (not attached, not running) is shown as Docker has it.
async fn show_weave_interface(attacher: &Attacher, doc: &mut Value) -> bool {
    let Some(id) = doc.get("Id").and_then(Value::as_str).map(str::to_owned) else {
        return false;
    };
    attacher.wait_for_start(&id).await;
    let Some(pid) = doc
        .pointer("/State/Pid")
        .and_then(Value::as_i64)
        .and_then(|pid| i32::try_from(pid).ok())
        .filter(|&pid| pid > 0)
    else {
        return false;
    };
    // Pinned, so that a PID reused since the inspect shows nothing rather than another's.
    let interface = match weavenet::Process::pin(pid) {
        Ok(process) => weavenet::container_interface(&process).await,
        Err(err) => Err(err),
    };
    match interface {
        Ok(Some(iface)) => match iface.addrs.first() {
            Some(&addr) => show_weave_network(doc, &iface.mac, addr),
            None => false,
        },
        Ok(None) => false,
        Err(err) => {
            debug!(container = %id, %err, "rewrite-inspect: cannot read ethwe");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn list_shows_the_users_command_and_keeps_every_other_byte() {
        let list = concat!(
            r#"[{"Id":"a","Command":"/w/w sleep 300","Labels":{"x":"\u003cy\u003e"},"Size":1e3},"#,
            r#"{"Id":"b","Command":"/w/wx --flag"},{"Id":"c","Command":"sh"},"#,
            r#"{"Id":"d","Command":"/w/w"}]"#,
            "\n"
        );
        let out = String::from_utf8(hide_in_list(list.as_bytes()).unwrap()).unwrap();
        let want = concat!(
            r#"[{"Id":"a","Command":"sleep 300","Labels":{"x":"\u003cy\u003e"},"Size":1e3},"#,
            r#"{"Id":"b","Command":"/w/wx --flag"},{"Id":"c","Command":"sh"},"#,
            r#"{"Id":"d","Command":""}]"#,
            "\n"
        );
        assert_eq!(out, want);
        assert_eq!(hide_in_list(br#"[{"Command":"sh"}]"#), None);
        assert_eq!(hide_in_list(br#"{"message":"x /w/w"}"#), None);
    }

    #[test]
    fn inspect_shows_the_users_entrypoint() {
        let mut c = json!({
            "Path": "/w/w", "Args": ["grep", "-v", "x"],
            "Config": {"Entrypoint": ["/w/w", "grep"], "Cmd": ["-v", "x"]}
        });
        assert!(hide_in_inspect(&mut c));
        assert_eq!(
            c,
            json!({"Path": "grep", "Args": ["-v", "x"],
                   "Config": {"Entrypoint": ["grep"], "Cmd": ["-v", "x"]}})
        );
        let mut only_cmd = json!({
            "Path": "/w/w", "Args": ["echo", "ok"],
            "Config": {"Entrypoint": ["/w/w"], "Cmd": ["echo", "ok"]}
        });
        assert!(hide_in_inspect(&mut only_cmd));
        assert_eq!(only_cmd["Path"], "echo");
        assert_eq!(only_cmd["Config"]["Entrypoint"], Value::Null);
        let mut plain = json!({"Path": "sh", "Args": [], "Config": {"Entrypoint": null}});
        assert!(!hide_in_inspect(&mut plain));
    }

    #[test]
    fn rewrite_inspect_shows_the_weave_interface() {
        let mut c = json!({"NetworkSettings": {
            "IPAddress": "172.17.0.2", "IPPrefixLen": 16, "MacAddress": "02:42:ac:11:00:02",
            "Networks": {"bridge": {"IPAddress": "172.17.0.2"}}
        }});
        let addr: Ipv4Net = "10.32.0.5/12".parse().unwrap();
        assert!(show_weave_network(&mut c, "aa:bb:cc:dd:ee:ff", addr));
        assert_eq!(
            c,
            json!({"NetworkSettings": {
                "IPAddress": "10.32.0.5", "IPPrefixLen": 12, "MacAddress": "aa:bb:cc:dd:ee:ff",
                "Networks": {"bridge": {"IPAddress": "172.17.0.2"}}
            }})
        );
        assert!(!show_weave_network(
            &mut json!({"Id": "x"}),
            "aa:bb:cc:dd:ee:ff",
            addr
        ));
    }
}
