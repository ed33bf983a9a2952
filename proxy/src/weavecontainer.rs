//! The weave container model: what the proxy makes of a container it rewrites (the `/w/w`
//! entrypoint, the weavewait mount at `/w`, the owner label), and how a container read back from
//! Docker is recognised as one. Pure; create writes this model, and exec, the attach plan, the
//! events watcher and the presentation of lists and inspects read it.

use std::fmt;
use std::path::Path;

use bollard::models::ContainerInspectResponse;
use serde_json::{Map, Value};

use api::CidrError;

use crate::cidr::{Decision, decide};
use crate::compose;
use crate::json;

/// The path of weavewait inside every rewritten container.
pub const WEAVEWAIT: &str = "/w/w";
/// Where the weavewait directory is mounted in rewritten containers.
pub const WEAVEWAIT_MOUNT: &str = "/w";

/// The label the proxy puts on every container it creates for weave: its identity, the
/// addresses it listens on (`unix:///var/run/weave/weave.sock`). Docker's events and the sweep
/// at start-up show a proxy every container; it attaches from them only those labelled with its
/// own identity (or not labelled: made before labels, or created on the daemon with `/w/w`).
/// Two proxies on one daemon cannot listen on the same address, while a relaunched one (same
/// flags) has the same identity and takes its containers back. A start through a proxy is
/// attached by it whatever the label says: the client asked.
pub const OWNER_LABEL: &str = "works.weave.proxy";

/// The identity of a proxy listening on `listen` (as `DOCKER_HOST` URLs), for [`OWNER_LABEL`].
pub fn owner_identity<T: fmt::Display>(listen: &[T]) -> String {
    let mut urls: Vec<String> = listen.iter().map(ToString::to_string).collect();
    urls.sort();
    urls.join(",")
}

/// Labels a create body with its proxy's identity.
///
/// # Errors
/// When `Labels` is there but not an object (the caller forwards the body as it came).
pub fn label_owner(body: &mut Value, owner: &str) -> Result<(), json::WrongType> {
    let object = body.as_object_mut().ok_or(json::WrongType {
        field: "body",
        expected: "an object",
    })?;
    let labels = object
        .entry("Labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if labels.is_null() {
        *labels = Value::Object(Map::new());
    }
    let labels = labels.as_object_mut().ok_or(json::WrongType {
        field: "Labels",
        expected: "an object",
    })?;
    labels.insert(OWNER_LABEL.to_owned(), Value::String(owner.to_owned()));
    Ok(())
}

/// The identity of the proxy that created the container, when it says.
pub fn owner_of(container: &ContainerInspectResponse) -> Option<&str> {
    container
        .config
        .as_ref()?
        .labels
        .as_ref()?
        .get(OWNER_LABEL)
        .map(String::as_str)
}

/// The weave decision for a container created through the proxy (entrypoint `/w/w`), from its
/// network mode (a Compose project's default network counting as the bridge) and environment
/// (which includes the image's); `None` for any other container.
pub fn weave_decision(
    container: &ContainerInspectResponse,
    no_default_ipalloc: bool,
) -> Option<Result<Decision, CidrError>> {
    let config = container.config.as_ref()?;
    let entrypoint = config.entrypoint.as_deref()?;
    if entrypoint.first().map(String::as_str) != Some(WEAVEWAIT) {
        return None;
    }
    let network_mode = container
        .host_config
        .as_ref()
        .and_then(|hc| hc.network_mode.as_deref())
        .unwrap_or("");
    let network_mode = compose::weave_network_mode(
        network_mode,
        compose::inspect_label(container, compose::PROJECT_LABEL),
    );
    let env = config.env.as_deref().unwrap_or_default();
    Some(decide(
        network_mode,
        env.iter().map(String::as_str),
        no_default_ipalloc,
    ))
}

/// Whether the container's `/w` mount comes from under `weavewait_root`, the directory this
/// proxy installs weavewait into: that is what marks a container as this proxy's.
pub fn mounts_weavewait_from(container: &ContainerInspectResponse, weavewait_root: &Path) -> bool {
    container.mounts.iter().flatten().any(|mount| {
        mount.destination.as_deref() == Some(WEAVEWAIT_MOUNT)
            && mount
                .source
                .as_deref()
                .is_some_and(|source| Path::new(source).starts_with(weavewait_root))
    })
}

/// Whether a container (its `GET /containers/{id}/json`) was made to wait by the proxy and is
/// meant for the weave network.
pub fn is_weave_container(container: &ContainerInspectResponse, no_default_ipalloc: bool) -> bool {
    weave_decision(container, no_default_ipalloc)
        .is_some_and(|decision| matches!(decision, Ok(Decision::Attach(_))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn recognises_weave_containers() {
        let weave = |mode: &str, env: Value| json!({"Config": {"Entrypoint": ["/w/w", "sh"], "Env": env}, "HostConfig": {"NetworkMode": mode}});
        let cases = [
            (weave("default", json!(["PATH=/bin"])), false, true),
            (weave("none", json!(null)), false, true),
            (weave("default", json!(["WEAVE_CIDR=none"])), false, false),
            (weave("host", json!([])), false, false),
            (weave("default", json!([])), true, false),
            (weave("default", json!(["WEAVE_CIDR="])), true, true),
            (weave("default", json!(["WEAVE_CIDR=bad"])), false, false),
            (json!({"Config": {"Entrypoint": ["sh"]}}), false, false),
            (json!({"Config": {"Entrypoint": null}}), false, false),
            (json!("nonsense"), false, false),
        ];
        for (container, no_default, want) in cases {
            // What does not read as an inspect document is not a weave container either: the
            // exec interceptor then leaves the exec alone.
            let typed = serde_json::from_value::<ContainerInspectResponse>(container.clone());
            assert_eq!(
                typed.is_ok_and(|c| is_weave_container(&c, no_default)),
                want,
                "{container}"
            );
        }
    }
}
