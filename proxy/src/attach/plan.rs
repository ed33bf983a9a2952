//! Whether and how a started container joins the weave network, read from its inspect document.
//! Pure: the same decision serves the start interceptor, the events watcher and the start-up sweep.

use std::fmt;
use std::path::Path;

use api::naming::Names;
use api::{CidrError, CidrToken};
use bollard::models::ContainerInspectResponse;

use crate::cidr::{Decision, LeaveAlone};
use crate::compose;
use crate::weavecontainer::{mounts_weavewait_from, owner_of, weave_decision};

/// What to do with a container that has (re)started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Give it `ethwe` with these addresses.
    Attach {
        /// The full container id: the router knows containers by it.
        id: String,
        /// The host PID of its first process, whose netns gets `ethwe`.
        pid: i32,
        /// What `WEAVE_CIDR` asks for, in order.
        tokens: Vec<CidrToken>,
        /// How it is known by name.
        names: Names,
    },
    /// Nothing to do.
    Skip(Skip),
}

/// Why a container is not attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Its entrypoint is not `/w/w`: it was not created through the proxy for weave.
    NotWeave,
    /// Its `/w` comes from another proxy's weavewait (another weave on the same daemon, such
    /// as a second router and bridge): that proxy attaches it.
    NotOurs,
    /// Another proxy on the same daemon created it (its [`crate::weavecontainer::OWNER_LABEL`]): that one attaches it.
    OtherProxy(String),
    /// It is not running (any more), or Docker is restarting it.
    NotRunning,
    /// `WEAVE_CIDR=none`, another network mode, or `--no-default-ipalloc`.
    LeftAlone(LeaveAlone),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotWeave => f.write_str("not created for weave (entrypoint is not /w/w)"),
            Self::NotOurs => f.write_str("its /w is another weave proxy's"),
            Self::OtherProxy(owner) => write!(f, "created through the proxy at {owner}"),
            Self::NotRunning => f.write_str("not running"),
            Self::LeftAlone(reason) => reason.fmt(f),
        }
    }
}

/// Decides from `GET /containers/{id}/json`, for the proxy whose weavewait lives under
/// `weavewait_root`; with `owner`, a container labelled as another proxy's is left to it.
///
/// # Errors
/// A `WEAVE_CIDR` that does not parse (possible for a container created straight on the daemon
/// with `/w/w` in its entrypoint): attaching it is an error, as the original's was.
pub fn plan(
    container: &ContainerInspectResponse,
    no_default_ipalloc: bool,
    weavewait_root: &Path,
    owner: Option<&str>,
) -> Result<Plan, CidrError> {
    let tokens = match weave_decision(container, no_default_ipalloc) {
        None => return Ok(Plan::Skip(Skip::NotWeave)),
        Some(Err(err)) => return Err(err),
        Some(Ok(Decision::LeaveAlone(reason))) => return Ok(Plan::Skip(Skip::LeftAlone(reason))),
        Some(Ok(Decision::Attach(tokens))) => tokens,
    };
    if !mounts_weavewait_from(container, weavewait_root) {
        return Ok(Plan::Skip(Skip::NotOurs));
    }
    if let (Some(me), Some(theirs)) = (owner, owner_of(container))
        && me != theirs
    {
        return Ok(Plan::Skip(Skip::OtherProxy(theirs.to_owned())));
    }
    let state = container.state.as_ref();
    let running = state.and_then(|s| s.running) == Some(true)
        && state.and_then(|s| s.restarting) != Some(true);
    let pid = state
        .and_then(|s| s.pid)
        .and_then(|pid| i32::try_from(pid).ok())
        .filter(|&pid| pid > 0);
    match (running, pid, container.id.as_deref()) {
        (true, Some(pid), Some(id)) => Ok(Plan::Attach {
            id: id.to_owned(),
            pid,
            tokens,
            names: Names {
                aliases: compose::dns_aliases(container),
                ..Names::from_inspect(container)
            },
        }),
        _ => Ok(Plan::Skip(Skip::NotRunning)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::weavecontainer::{label_owner, owner_identity};

    /// Docker's inspect document, as JSON (in the shape every API version from 1.41 has), read
    /// the way the proxy reads it.
    fn typed(doc: &Value) -> ContainerInspectResponse {
        serde_json::from_value(doc.clone()).expect("an inspect document")
    }

    fn plan(
        doc: &Value,
        no_default_ipalloc: bool,
        weavewait_root: &Path,
        owner: Option<&str>,
    ) -> Result<Plan, CidrError> {
        super::plan(&typed(doc), no_default_ipalloc, weavewait_root, owner)
    }

    fn container(entrypoint: Value, env: &[&str], mode: &str, running: bool, pid: i64) -> Value {
        json!({
            "Id": "c0ffee",
            "HostsPath": "/var/lib/docker/containers/c0ffee/hosts",
            "State": {"Running": running, "Restarting": false, "Pid": pid},
            "Config": {"Entrypoint": entrypoint, "Env": env, "Hostname": "web", "Domainname": "weave.local"},
            "HostConfig": {"NetworkMode": mode, "ExtraHosts": ["static.name:10.9.9.9"]},
            "Mounts": [{"Type": "bind", "Source": "/var/lib/weave/weavewait/abc/w", "Destination": "/w"}],
        })
    }

    const ROOT: &str = "/var/lib/weave/weavewait";

    #[test]
    fn plans_from_the_inspect_document() {
        let ww = || json!(["/w/w", "sh"]);
        let net = |s: &str| CidrToken::Subnet(s.parse().unwrap());
        let attach = |tokens| Plan::Attach {
            id: "c0ffee".into(),
            pid: 4321,
            tokens,
            names: Names {
                fqdn: "web.weave.local".into(),
                extra_hosts: vec!["static.name:10.9.9.9".into()],
                hosts_path: Some("/var/lib/docker/containers/c0ffee/hosts".into()),
                aliases: Vec::new(),
            },
        };
        let cases = [
            (
                container(ww(), &[], "default", true, 4321),
                false,
                attach(vec![CidrToken::DefaultSubnet]),
            ),
            (
                container(ww(), &["WEAVE_CIDR=net:10.32.2.0/24"], "bridge", true, 4321),
                false,
                attach(vec![net("10.32.2.0/24")]),
            ),
            (
                container(ww(), &["WEAVE_CIDR=net:10.32.2.0/24"], "none", true, 4321),
                true,
                attach(vec![net("10.32.2.0/24")]),
            ),
            (
                container(json!(["sh"]), &[], "default", true, 4321),
                false,
                Plan::Skip(Skip::NotWeave),
            ),
            (
                container(Value::Null, &[], "default", true, 4321),
                false,
                Plan::Skip(Skip::NotWeave),
            ),
            (
                container(ww(), &[], "default", false, 0),
                false,
                Plan::Skip(Skip::NotRunning),
            ),
            (
                container(ww(), &[], "default", true, 0),
                false,
                Plan::Skip(Skip::NotRunning),
            ),
            (
                container(ww(), &["WEAVE_CIDR=none"], "default", true, 4321),
                false,
                Plan::Skip(Skip::LeftAlone(LeaveAlone::CidrNone)),
            ),
            (
                container(ww(), &[], "host", true, 4321),
                false,
                Plan::Skip(Skip::LeftAlone(LeaveAlone::NetworkMode("host".into()))),
            ),
            (
                container(ww(), &[], "default", true, 4321),
                true,
                Plan::Skip(Skip::LeftAlone(LeaveAlone::NoDefaultIpalloc)),
            ),
        ];
        for (doc, no_default, want) in cases {
            assert_eq!(
                plan(&doc, no_default, Path::new(ROOT), None).unwrap(),
                want,
                "{doc}"
            );
        }
    }

    #[test]
    fn a_compose_container_on_its_project_network_is_attached_and_named_by_service() {
        let mut doc = container(json!(["/w/w", "sh"]), &[], "shop_default", true, 4321);
        doc["Config"]["Hostname"] = json!("shop-web-1");
        doc["Config"]["Labels"] = json!({
            "com.docker.compose.project": "shop",
            "com.docker.compose.service": "web",
        });
        let Plan::Attach { names, tokens, .. } = plan(&doc, false, Path::new(ROOT), None).unwrap()
        else {
            panic!("not attached: {doc}");
        };
        assert_eq!(tokens, vec![CidrToken::DefaultSubnet]);
        assert_eq!(names.fqdn, "shop-web-1.weave.local");
        assert_eq!(names.aliases, vec!["web.weave.local".to_owned()]);
        // The same container on a network its Compose file names is the plugin's.
        doc["HostConfig"]["NetworkMode"] = json!("shop_front");
        assert_eq!(
            plan(&doc, false, Path::new(ROOT), None).unwrap(),
            Plan::Skip(Skip::LeftAlone(LeaveAlone::NetworkMode(
                "shop_front".into()
            )))
        );
    }

    #[test]
    fn a_restarting_container_waits_for_its_start() {
        let mut doc = container(json!(["/w/w", "sh"]), &[], "", true, 99);
        doc["State"]["Restarting"] = json!(true);
        assert_eq!(
            plan(&doc, false, Path::new(ROOT), None).unwrap(),
            Plan::Skip(Skip::NotRunning)
        );
    }

    #[test]
    fn a_bad_weave_cidr_is_an_error() {
        let doc = container(json!(["/w/w"]), &["WEAVE_CIDR=bogus"], "", true, 99);
        assert!(plan(&doc, false, Path::new(ROOT), None).is_err());
    }

    #[test]
    fn another_proxys_container_is_left_to_it() {
        let mut doc = container(json!(["/w/w", "sh"]), &[], "", true, 99);
        let ours = Path::new(ROOT);
        assert!(matches!(
            plan(&doc, false, ours, None),
            Ok(Plan::Attach { .. })
        ));
        let other = Path::new("/tmp/other/weavewait");
        assert_eq!(
            plan(&doc, false, other, None).unwrap(),
            Plan::Skip(Skip::NotOurs)
        );
        // A prefix of the name is not the directory.
        let sibling = Path::new("/var/lib/weave/weavewai");
        assert_eq!(
            plan(&doc, false, sibling, None).unwrap(),
            Plan::Skip(Skip::NotOurs)
        );
        doc["Mounts"] = json!([]);
        assert_eq!(
            plan(&doc, false, ours, None).unwrap(),
            Plan::Skip(Skip::NotOurs)
        );
    }

    #[test]
    fn events_attach_only_this_proxys_own_containers() {
        let ours = Path::new(ROOT);
        let me = owner_identity(&["unix:///var/run/weave/weave.sock"]);
        let mut doc = container(json!(["/w/w", "sh"]), &[], "", true, 99);
        // Unlabelled (older, or made on the daemon): anyone's.
        assert!(matches!(
            plan(&doc, false, ours, Some(&me)),
            Ok(Plan::Attach { .. })
        ));
        let mut body = json!({"Labels": null});
        label_owner(&mut body, &me).unwrap();
        doc["Config"]["Labels"] = body["Labels"].clone();
        assert!(matches!(
            plan(&doc, false, ours, Some(&me)),
            Ok(Plan::Attach { .. })
        ));
        let other = owner_identity(&["unix:///tmp/other.sock"]);
        assert_eq!(
            plan(&doc, false, ours, Some(&other)).unwrap(),
            Plan::Skip(Skip::OtherProxy(me.clone()))
        );
        // A client's start through any proxy attaches it.
        assert!(matches!(
            plan(&doc, false, ours, None),
            Ok(Plan::Attach { .. })
        ));
        assert!(label_owner(&mut json!({"Labels": 3}), &me).is_err());
        assert_eq!(
            owner_identity(&["unix:///b", "tcp://127.0.0.1:12375"]),
            "tcp://127.0.0.1:12375,unix:///b"
        );
    }

    /// A whole inspect document from Docker 20.10 (API 1.41, the oldest the proxy serves), read
    /// into the typed model at the version the proxy negotiates with it: mounts, labels, the
    /// PID and the names come out as the plan needs them.
    #[test]
    fn reads_a_docker_20_10_inspect_document() {
        let mut doc: Value =
            serde_json::from_str(include_str!("testdata/inspect-docker-20.10.json")).unwrap();
        // As the proxy would have created it: the fixture ran `sleep` itself.
        doc["Config"]["Entrypoint"] = json!(["/w/w", "sleep"]);
        let id = doc["Id"].as_str().unwrap().to_owned();
        let hosts_path = doc["HostsPath"].as_str().unwrap().to_owned();
        let me = "unix:///var/run/weave/weave.sock";
        assert_eq!(
            plan(&doc, false, Path::new("/tmp"), Some(me)).unwrap(),
            Plan::Attach {
                id,
                pid: 14037,
                tokens: vec![CidrToken::Subnet("10.32.2.0/24".parse().unwrap())],
                names: Names {
                    fqdn: "web.weave.local".into(),
                    extra_hosts: vec!["static.name:10.9.9.9".into()],
                    hosts_path: Some(hosts_path.into()),
                    aliases: Vec::new(),
                },
            }
        );
        assert_eq!(
            plan(&doc, false, Path::new("/tmp"), Some("unix:///other.sock")).unwrap(),
            Plan::Skip(Skip::OtherProxy(me.into()))
        );
        assert_eq!(
            plan(&doc, false, Path::new(ROOT), Some(me)).unwrap(),
            Plan::Skip(Skip::NotOurs)
        );
    }
}
