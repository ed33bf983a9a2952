//! Containers Docker Compose creates on its project's default network, which the proxy attaches to
//! weave beside that network. Pure.
//!
//! A Compose file that names no network puts every service on a network Compose makes for the
//! project, `<project>_default` (v1 and v2 alike), and creates each container with that network
//! as its `HostConfig.NetworkMode` and the labels [`PROJECT_LABEL`] and [`SERVICE_LABEL`]. The
//! proxy leaves containers on user-defined networks to the network plugin, but this one the user
//! never chose: it is only Compose's way of giving the services names. So such a container is
//! treated as one on Docker's default bridge: it keeps the project network (Compose's own names
//! and `down` work as ever) and gets `ethwe` too, with weaveDNS knowing it by its service name as
//! well, and searching the weave domain first, so that `ping web` reaches `web` over weave from
//! this host or any other. A network the Compose file names (`networks:`, or `default:` given a
//! `name:` or made `external`) is the user's choice, and stays the plugin's.

use bollard::models::ContainerInspectResponse;
use serde_json::{Map, Value};

use api::naming::fqdn;

use crate::json::{self, WrongType};

/// The label Compose puts on every container with its project's name.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label Compose puts on every container with its service's name.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// The resolver option the proxy gives a Compose container (see [`prefer_weave_names`]).
pub const NDOTS: &str = "ndots:1";

/// The network mode weave decides on: a Compose project's default network counts as Docker's
/// default bridge (`"bridge"`); any other mode is itself.
pub fn weave_network_mode<'a>(network_mode: &'a str, project: Option<&str>) -> &'a str {
    if is_project_default(network_mode, project) {
        "bridge"
    } else {
        network_mode
    }
}

/// Whether `network_mode` is the default network Compose made for `project` (the value of the
/// container's [`PROJECT_LABEL`]).
pub fn is_project_default(network_mode: &str, project: Option<&str>) -> bool {
    project.is_some_and(|project| {
        !project.is_empty()
            && network_mode
                .strip_prefix(project)
                .is_some_and(|rest| rest == "_default")
    })
}

/// Whether a create body is for a container on its Compose project's default network.
pub fn body_on_project_default(body: &Map<String, Value>) -> bool {
    let mode = body
        .get("HostConfig")
        .and_then(|hc| hc.get("NetworkMode"))
        .and_then(Value::as_str)
        .unwrap_or("");
    is_project_default(mode, body_label(body, PROJECT_LABEL))
}

/// The value of the label `key` in a create body's `Labels` (an object); `None` when absent or
/// not a string (Docker refuses such a body itself).
pub fn body_label<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get("Labels")?.as_object()?.get(key)?.as_str()
}

/// The value of the label `key` of a container as Docker reports it.
pub fn inspect_label<'a>(container: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    container
        .config
        .as_ref()?
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The further weaveDNS name of a Compose container: its service name in the container's
/// domain (the weave domain, which the proxy set at create). None for other containers, for one
/// without a domain (created without weaveDNS, or whose name was too long for one), or when the
/// name is the container's own already.
pub fn dns_aliases(container: &ContainerInspectResponse) -> Vec<String> {
    let Some(service) = inspect_label(container, SERVICE_LABEL).filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    if inspect_label(container, PROJECT_LABEL).is_none() {
        return Vec::new();
    }
    let config = container.config.as_ref();
    let domain = config.and_then(|c| c.domainname.as_deref()).unwrap_or("");
    if domain.is_empty() {
        return Vec::new();
    }
    let hostname = config.and_then(|c| c.hostname.as_deref()).unwrap_or("");
    let alias = fqdn(service, domain);
    if alias == fqdn(hostname, domain) {
        return Vec::new();
    }
    vec![alias]
}

/// Makes a Compose container's resolver ask the weave domain first, by adding [`NDOTS`] to its
/// `HostConfig.DnsOptions` unless the user set an `ndots` there.
///
/// On a user-defined network Docker's own resolver answers in the container and gives it
/// `ndots:0`, so a bare `web` is asked as it is first and Docker answers with the address on
/// the project network, which only this host can reach. With `ndots:1` the search list comes
/// first: `web.weave.local` is not Docker's, so it goes on to weaveDNS, which answers with the
/// weave address on every host; a name weaveDNS does not hold still falls back to Docker's.
///
/// # Errors
/// `HostConfig` or its `DnsOptions` of a type Docker would refuse; nothing is changed then.
pub fn prefer_weave_names(body: &mut Map<String, Value>) -> Result<(), WrongType> {
    let host_config = json::object_mut(body, "HostConfig")?;
    let mut options = match host_config.get("DnsOptions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or(WrongType {
                field: "HostConfig.DnsOptions",
                expected: "an array of strings",
            })?,
        Some(_) => {
            return Err(WrongType {
                field: "HostConfig.DnsOptions",
                expected: "an array of strings",
            });
        }
    };
    if options.iter().any(|o| o.starts_with("ndots:")) {
        return Ok(());
    }
    options.push(NDOTS.to_owned());
    host_config.insert("DnsOptions".into(), json::strings(options));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_projects_default_network_counts_as_the_bridge() {
        let cases = [
            ("shop_default", Some("shop"), "bridge"),
            // Another project's network, a network the file names, the plugin's.
            ("other_default", Some("shop"), "other_default"),
            ("shop_front", Some("shop"), "shop_front"),
            ("weave", Some("shop"), "weave"),
            ("shop_default", None, "shop_default"),
            ("_default", Some(""), "_default"),
            ("host", Some("shop"), "host"),
            ("", Some("shop"), ""),
            ("bridge", Some("shop"), "bridge"),
        ];
        for (mode, project, want) in cases {
            assert_eq!(
                weave_network_mode(mode, project),
                want,
                "{mode:?} {project:?}"
            );
        }
    }

    fn inspect(labels: Value, hostname: &str, domain: &str) -> ContainerInspectResponse {
        serde_json::from_value(json!({
            "Config": {"Labels": labels, "Hostname": hostname, "Domainname": domain},
        }))
        .unwrap()
    }

    #[test]
    fn the_service_name_is_a_further_weavedns_name() {
        let compose = json!({PROJECT_LABEL: "shop", SERVICE_LABEL: "web"});
        let cases = [
            (
                inspect(compose.clone(), "shop-web-1", "weave.local"),
                vec!["web.weave.local"],
            ),
            // Named after the service already (--hostname-from-label).
            (inspect(compose.clone(), "web", "weave.local"), vec![]),
            // No weaveDNS domain: no bare name in weaveDNS.
            (inspect(compose, "shop-web-1", ""), vec![]),
            (
                inspect(json!({SERVICE_LABEL: "web"}), "x", "weave.local"),
                vec![],
            ),
            (inspect(json!({}), "x", "weave.local"), vec![]),
        ];
        for (container, want) in cases {
            assert_eq!(dns_aliases(&container), want, "{container:?}");
        }
    }

    #[test]
    fn ndots_is_added_unless_the_user_set_it() {
        let cases = [
            (json!({}), json!(["ndots:1"])),
            (json!({"HostConfig": null}), json!(["ndots:1"])),
            (
                json!({"HostConfig": {"DnsOptions": null}}),
                json!(["ndots:1"]),
            ),
            (
                json!({"HostConfig": {"DnsOptions": ["timeout:2"]}}),
                json!(["timeout:2", "ndots:1"]),
            ),
            (
                json!({"HostConfig": {"DnsOptions": ["ndots:3"]}}),
                json!(["ndots:3"]),
            ),
        ];
        for (body, want) in cases {
            let mut object = body.as_object().unwrap().clone();
            prefer_weave_names(&mut object).unwrap();
            assert_eq!(object["HostConfig"]["DnsOptions"], want, "{body}");
        }
        let mut wrong = json!({"HostConfig": {"DnsOptions": "ndots:1"}})
            .as_object()
            .unwrap()
            .clone();
        let before = wrong.clone();
        assert!(prefer_weave_names(&mut wrong).is_err());
        assert_eq!(wrong, before);
    }

    #[test]
    fn labels_are_read_from_create_bodies() {
        let body = json!({"Labels": {PROJECT_LABEL: "shop", "n": 1}});
        let body = body.as_object().unwrap();
        assert_eq!(body_label(body, PROJECT_LABEL), Some("shop"));
        assert_eq!(body_label(body, "n"), None);
        assert_eq!(body_label(body, "missing"), None);
        assert!(!body_on_project_default(body));
        let on_default = json!({
            "Labels": {PROJECT_LABEL: "shop"},
            "HostConfig": {"NetworkMode": "shop_default"},
        });
        assert!(body_on_project_default(on_default.as_object().unwrap()));
    }
}
