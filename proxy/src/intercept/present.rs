//! Responses that show a container's command: clients see the command they asked for.
//!
//! `GET /containers/json` (`Command`) and `GET /containers/{id}/json` (`Path`, `Args`,
//! `Config.Entrypoint`) are shown without the `/w/w` the proxy put in front, as they would be
//! without the proxy. The original proxy showed `/w/w true`, which broke docker-py's own
//! container-listing test. The daemon itself, and `docker ps` straight to it, still show the
//! truth. Only called for bodies that mention `/w/w`, and for inspects with `--rewrite-inspect`,
//! which also show the weave interface's address ([`show_weave_network`]). The rewrites are pure;
//! [`present`] reads the daemon's answer and, for `--rewrite-inspect`, the container's `ethwe`.

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
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
/// Listings are large and frequent (`docker ps`, compose polling, and each ~45 KiB for 50
/// containers), so nothing is built from them: one pass over the bytes finds each container's
/// `Command` value, and only those strings are decoded and written again. Every other byte is
/// the daemon's.
pub fn hide_in_list(list: &[u8]) -> Option<Vec<u8>> {
    // Validated whole first (without building anything), so that the scan below can trust the
    // brackets and quotes it meets; an answer that is not JSON passes through untouched.
    serde_json::from_slice::<&RawValue>(list).ok()?;
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    // The brackets open at the scan's position: a container's own keys are met inside `[{`.
    let mut open: Vec<u8> = Vec::new();
    let mut at = 0;
    while let Some(&byte) = list.get(at) {
        match byte {
            b'"' => {
                let (start, end) = (at, string_end(list, at)?);
                at = end;
                if open != b"[{" || &list[start..end] != b"\"Command\"" {
                    continue;
                }
                let colon = skip_space(list, end);
                if list.get(colon) != Some(&b':') {
                    continue; // a value that reads "Command", not the key
                }
                let value = skip_space(list, colon + 1);
                if list.get(value) != Some(&b'"') {
                    continue;
                }
                let value_end = string_end(list, value)?;
                if let Some(shown) = shown_command(&list[value..value_end]) {
                    edits.push((value..value_end, shown));
                }
                at = value_end;
            }
            b'[' | b'{' => {
                open.push(byte);
                at += 1;
            }
            b']' | b'}' => {
                open.pop();
                at += 1;
            }
            _ => at += 1,
        }
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(list.len());
    let mut copied = 0;
    for (span, shown) in edits {
        out.extend_from_slice(&list[copied..span.start]);
        out.extend_from_slice(shown.as_bytes());
        copied = span.end;
    }
    out.extend_from_slice(&list[copied..]);
    Some(out)
}

/// The JSON text of a `Command` without the `/w/w ` in front, or `None` when it has none.
fn shown_command(raw: &[u8]) -> Option<String> {
    let command: String = serde_json::from_slice(raw).ok()?;
    let rest = command
        .strip_prefix(WEAVEWAIT)
        .filter(|rest| rest.is_empty() || rest.starts_with(' '))?;
    serde_json::to_string(rest.trim_start_matches(' ')).ok()
}

/// The index just past the JSON string that opens at `list[open]` (a `"`).
fn string_end(list: &[u8], open: usize) -> Option<usize> {
    let mut at = open + 1;
    loop {
        match *list.get(at)? {
            b'\\' => at += 2,
            b'"' => return Some(at + 1),
            _ => at += 1,
        }
    }
}

/// The index of the first byte at or after `at` that is not JSON whitespace.
fn skip_space(list: &[u8], mut at: usize) -> usize {
    while list
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
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
    fn list_rewrites_only_a_containers_own_command() {
        let cases: [(&str, Option<&str>); 9] = [
            // Spaces around the colon, and escapes in and before the command.
            (
                r#"[ { "Names":["/a\"b"] , "Command" : "/w/w echo \"hi\"" } ]"#,
                Some(r#"[ { "Names":["/a\"b"] , "Command" : "echo \"hi\"" } ]"#),
            ),
            // A label named Command, and "Command" as a value, are not the container's.
            (r#"[{"Labels":{"Command":"/w/w x"},"Id":"Command"}]"#, None),
            (
                r#"[{"Labels":{"Command":"/w/w x"},"Command":"/w/w y"}]"#,
                Some(r#"[{"Labels":{"Command":"/w/w x"},"Command":"y"}]"#),
            ),
            // Not a list of containers, or not JSON at all.
            (r#"{"Command":"/w/w x"}"#, None),
            (r#"[["Command","/w/w x"]]"#, None),
            (r#"[{"Command":"/w/w x"}"#, None),
            (r#"[{"Command":null},{"Command":["/w/w"]}]"#, None),
            ("[]", None),
            // A command of non-ASCII text is written back as JSON text.
            (
                r#"[{"Command":"/w/w \u00e9t\u00e9"}]"#,
                Some(r#"[{"Command":"été"}]"#),
            ),
        ];
        for (list, want) in cases {
            let got = hide_in_list(list.as_bytes()).map(|out| String::from_utf8(out).unwrap());
            assert_eq!(got.as_deref(), want, "{list}");
        }
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
