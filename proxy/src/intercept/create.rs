//! `POST /containers/create`: make the container wait for the weave network before its
//! program runs.
//!
//! The entrypoint becomes `/w/w` followed by exactly what Docker would have run, and the
//! weavewait binaries are bind-mounted read-only at `/w`. Because the entrypoint is then never
//! empty, the daemon no longer merges the image's `Entrypoint` and `Cmd` itself, so the proxy
//! does that merge here, the way the daemon does it. All of it is pure but
//! [`create_container`], the interceptor, which reads the body once, reads the image's config
//! (from [`ImageCache`](crate::images::ImageCache), else by an inspect) and asks the router
//! for weaveDNS (through its [`DnsCache`](super::DnsCache)).

use std::sync::Arc;

use bollard::models::ImageInspect;
use http::Response;
use http::request::Parts;
use hyper::body::Incoming;
use serde_json::{Map, Value};
use tracing::{debug, info, warn};

use api::cidr::{CidrError, CidrToken, WEAVE_CIDR};

use super::{DnsNaming, Settings, read_body, send, send_json};
use crate::body::ProxyBody;
use crate::cidr::{Decision, decide};
use crate::compose;
use crate::docker::{DockerClient, DockerError};
use crate::error::ProxyError;
use crate::json::{self, WrongType};
use crate::naming::{self, Dns};
use crate::upstream::Upstream;
use crate::weavecontainer::{WEAVEWAIT, WEAVEWAIT_MOUNT, label_owner};

/// What to do with a create request, decided from its body alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Forward the original bytes: not for weave, or not a document the proxy understands
    /// (the daemon then answers with its own error).
    Forward(String),
    /// Rewrite it, with what planning read from the body.
    Rewrite(CreateRequest),
}

/// What the proxy reads from a create body: read once, while planning, and carried to the
/// decision and the rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// `HostConfig.NetworkMode`; empty when not set, `bridge` for a Compose project's default
    /// network.
    pub network_mode: String,
    /// `Env` (`KEY=value`).
    pub env: Vec<String>,
    /// `Entrypoint` and `Cmd`.
    pub command: Command,
    /// The image to inspect first, when its command or its `ENV` may count.
    pub image: Option<String>,
    /// The decision the request's own `WEAVE_CIDR` made, which no image can change; `None`
    /// while the image's `ENV` still has a say.
    pub decided: Option<Vec<CidrToken>>,
}

/// A create body's `Entrypoint` and `Cmd`, as Docker reads them (absent differs from `[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
}

impl Command {
    /// Reads `Entrypoint` and `Cmd` from a create body.
    ///
    /// # Errors
    /// When either has a type Docker would refuse.
    pub fn read(body: &Map<String, Value>) -> Result<Self, WrongType> {
        Ok(Self {
            entrypoint: json::string_list(body, "Entrypoint")?,
            cmd: json::string_list(body, "Cmd")?,
        })
    }
}

/// What the container takes from its image: `Entrypoint`, `Cmd` and `Env` of the image's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageCommand {
    /// The image's `ENTRYPOINT`, if any.
    pub entrypoint: Option<Vec<String>>,
    /// The image's `CMD`, if any.
    pub cmd: Option<Vec<String>>,
    /// The image's `ENV` (`KEY=value`), which may set `WEAVE_CIDR`.
    pub env: Vec<String>,
}

impl ImageCommand {
    /// Reads `Config.Entrypoint`, `Config.Cmd` and `Config.Env` from `GET /images/{name}/json`.
    pub fn from_inspect(image: &ImageInspect) -> Self {
        let config = image.config.as_ref();
        Self {
            entrypoint: config.and_then(|c| c.entrypoint.clone()),
            cmd: config.and_then(|c| c.cmd.clone()),
            env: config.and_then(|c| c.env.clone()).unwrap_or_default(),
        }
    }
}

/// What the rewrite did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The body was rewritten; send it.
    Rewritten,
    /// The daemon would refuse this container ("No command specified"): send the original
    /// bytes so that it does, with its own message.
    Forward(String),
}

/// Plans the rewrite of a create request body. The request's own `WEAVE_CIDR`, when it sets
/// one, is decided here, once.
///
/// # Errors
/// A `WEAVE_CIDR` the user must fix; nothing is created then.
pub fn plan(body: &Value, no_default_ipalloc: bool) -> Result<Plan, CidrError> {
    let shape = |err: WrongType| Ok(Plan::Forward(err.to_string()));
    let Some(object) = body.as_object() else {
        return Ok(Plan::Forward("the body is not a JSON object".into()));
    };
    let network_mode = match json::object(object, "HostConfig")
        .and_then(|hc| hc.map(|hc| json::string(hc, "NetworkMode")).transpose())
    {
        Ok(mode) => mode.flatten().unwrap_or(""),
        Err(err) => return shape(err),
    };
    // A Compose project's default network counts as the bridge (see crate::compose).
    let network_mode = compose::weave_network_mode(
        network_mode,
        compose::body_label(object, compose::PROJECT_LABEL),
    )
    .to_owned();
    let env = match json::string_list(object, "Env") {
        Ok(env) => env.unwrap_or_default(),
        Err(err) => return shape(err),
    };
    // The container's environment is the image's ENV overlaid with the request's, so the image
    // has a say unless the request sets WEAVE_CIDR itself.
    let request_sets_cidr = env
        .iter()
        .any(|e| e.split_once('=').is_some_and(|(key, _)| key == WEAVE_CIDR));
    let decided = if request_sets_cidr {
        match decide(
            &network_mode,
            env.iter().map(String::as_str),
            no_default_ipalloc,
        )? {
            Decision::LeaveAlone(reason) => return Ok(Plan::Forward(reason.to_string())),
            Decision::Attach(tokens) => Some(tokens),
        }
    } else {
        None
    };
    if !matches!(network_mode.as_str(), "" | "default" | "bridge" | "none") {
        return Ok(Plan::Forward(format!(
            "the container has --net={network_mode}"
        )));
    }
    let command = match Command::read(object) {
        Ok(command) => command,
        Err(err) => return shape(err),
    };
    // Only an absent or empty entrypoint lets the image's command in.
    let explicit_entrypoint = command.entrypoint.as_ref().is_some_and(|e| !e.is_empty());
    let image = if explicit_entrypoint && decided.is_some() {
        None
    } else {
        match json::string(object, "Image") {
            Ok(Some(image)) if !image.is_empty() => Some(image.to_owned()),
            Ok(_) => return Ok(Plan::Forward("no image named".into())),
            Err(err) => return shape(err),
        }
    };
    Ok(Plan::Rewrite(CreateRequest {
        network_mode,
        env,
        command,
        image,
        decided,
    }))
}

/// Decides for the container the daemon will create: the request's own decision when it made
/// one, else the image's `ENV` overlaid with the request's `Env`, as the daemon merges them.
///
/// # Errors
/// A bad `WEAVE_CIDR` in the image's `ENV`.
pub fn decide_with_image(
    request: &CreateRequest,
    image: &ImageCommand,
    no_default_ipalloc: bool,
) -> Result<Decision, CidrError> {
    if let Some(tokens) = &request.decided {
        return Ok(Decision::Attach(tokens.clone()));
    }
    // `decide` takes the last WEAVE_CIDR, so the request's entries go after the image's.
    let env = image.env.iter().chain(&request.env).map(String::as_str);
    decide(&request.network_mode, env, no_default_ipalloc)
}

/// What Docker would run: the entrypoint and the command, merged as the daemon merges a
/// container's config with its image's.
///
/// An entrypoint of exactly `[""]` (`docker run --entrypoint ""`) is Docker's explicit "no
/// entrypoint": nothing is taken from the image, not even its `CMD`. An explicit `[]` drops the
/// image's entrypoint but still takes its `CMD` when the request has none.
pub fn docker_command(
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    image: &ImageCommand,
) -> (Vec<String>, Vec<String>) {
    let cmd = cmd.unwrap_or_default();
    match entrypoint {
        Some([only]) if only.is_empty() => (Vec::new(), cmd.to_vec()),
        Some(entrypoint) if !entrypoint.is_empty() => (entrypoint.to_vec(), cmd.to_vec()),
        _ => {
            let cmd = if cmd.is_empty() {
                image.cmd.clone().unwrap_or_default()
            } else {
                cmd.to_vec()
            };
            let entrypoint = match entrypoint {
                None => image.entrypoint.clone().unwrap_or_default(),
                Some(_) => Vec::new(),
            };
            (entrypoint, cmd)
        }
    }
}

/// Rewrites a create body planned for rewriting, whose `command` planning read: weavewait mount
/// at `/w` (from `source`, a host directory holding `w`), and the entrypoint `/w/w` + what
/// Docker would have run.
///
/// # Errors
/// When a field has an unexpected type (the caller forwards the original bytes).
pub fn rewrite(
    body: &mut Value,
    command: &Command,
    image: &ImageCommand,
    source: &str,
) -> Result<Outcome, WrongType> {
    let object = body.as_object_mut().ok_or(WrongType {
        field: "body",
        expected: "an object",
    })?;
    let Command { entrypoint, cmd } = command;
    let (final_entrypoint, final_cmd) =
        docker_command(entrypoint.as_deref(), cmd.as_deref(), image);
    if final_entrypoint.is_empty() && final_cmd.is_empty() {
        return Ok(Outcome::Forward("no command specified".into()));
    }
    bind_weavewait(json::object_mut(object, "HostConfig")?, source)?;
    // A container of an image committed from a proxied container already starts with /w/w.
    if final_entrypoint.first().map(String::as_str) == Some(WEAVEWAIT) {
        return Ok(Outcome::Rewritten);
    }
    let cmd_from_image = cmd.as_deref().is_none_or(<[String]>::is_empty)
        && entrypoint.as_deref().is_none_or(<[String]>::is_empty);
    let wrapped = std::iter::once(WEAVEWAIT.to_owned()).chain(final_entrypoint);
    object.insert("Entrypoint".into(), json::strings(wrapped));
    if cmd_from_image && !final_cmd.is_empty() {
        object.insert("Cmd".into(), json::strings(final_cmd));
    }
    Ok(Outcome::Rewritten)
}

/// Mounts `source` read-only at `/w`, replacing any bind or mount the request had there.
fn bind_weavewait(host_config: &mut Map<String, Value>, source: &str) -> Result<(), WrongType> {
    let binds = host_config
        .entry("Binds")
        .or_insert_with(|| Value::Array(Vec::new()));
    if binds.is_null() {
        *binds = Value::Array(Vec::new());
    }
    let binds = binds.as_array_mut().ok_or(WrongType {
        field: "HostConfig.Binds",
        expected: "an array of strings",
    })?;
    binds.retain(|bind| bind.as_str().and_then(|b| b.split(':').nth(1)) != Some(WEAVEWAIT_MOUNT));
    binds.push(Value::String(format!("{source}:{WEAVEWAIT_MOUNT}:ro")));
    if let Some(Value::Array(mounts)) = host_config.get_mut("Mounts") {
        mounts.retain(|m| m.get("Target").and_then(Value::as_str) != Some(WEAVEWAIT_MOUNT));
    }
    Ok(())
}

/// `POST /containers/create`: validate `WEAVE_CIDR`, merge the image's command, wrap it in
/// `/w/w` and bind weavewait at `/w`.
///
/// # Errors
/// A bad `WEAVE_CIDR` (400, nothing created), an oversized body, the daemon unreachable, or
/// its error for the image inspect.
pub async fn create_container(
    upstream: &Upstream,
    docker: &DockerClient,
    settings: &Settings,
    parts: Parts,
    body: Incoming,
) -> Result<Response<ProxyBody>, ProxyError> {
    let bytes = read_body(body).await?;
    let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes) else {
        return send(upstream, parts, bytes).await;
    };
    let request = match plan(&doc, settings.no_default_ipalloc)? {
        Plan::Forward(reason) => {
            info!(%reason, "create: leaving the container alone");
            return send(upstream, parts, bytes).await;
        }
        Plan::Rewrite(request) => request,
    };
    let image = match &request.image {
        None => Arc::default(),
        Some(name) => match image_command(docker, name).await {
            Ok(image) => image,
            // A missing image: the daemon's own 404 for the create names it in the words the
            // docker CLI looks for before it pulls and tries again.
            Err(DockerError::NotFound { .. }) => return send(upstream, parts, bytes).await,
            Err(err) => return Err(err.into()),
        },
    };
    if let Decision::LeaveAlone(reason) =
        decide_with_image(&request, &image, settings.no_default_ipalloc)?
    {
        info!(%reason, "create: leaving the container alone");
        return send(upstream, parts, bytes).await;
    }
    if let Some(naming) = &settings.dns {
        name_container(naming, &parts, &mut doc).await?;
    }
    let source = settings.weavewait.display().to_string();
    if let Err(wrong) = label_owner(&mut doc, &settings.owner) {
        debug!(%wrong, "create: forwarding unchanged");
        return send(upstream, parts, bytes).await;
    }
    match rewrite(&mut doc, &request.command, &image, &source) {
        Ok(Outcome::Rewritten) => send_json(upstream, parts, &doc).await,
        Ok(Outcome::Forward(reason)) => {
            debug!(%reason, "create: forwarding unchanged");
            send(upstream, parts, bytes).await
        }
        Err(wrong) => {
            debug!(%wrong, "create: forwarding unchanged");
            send(upstream, parts, bytes).await
        }
    }
}

/// The config of the image `reference` names: cached while provably current (see
/// [`crate::images`]), else inspected.
async fn image_command(
    docker: &DockerClient,
    reference: &str,
) -> Result<Arc<ImageCommand>, DockerError> {
    let ticket = match docker.images().get(reference) {
        Ok(cached) => return Ok(cached),
        Err(ticket) => ticket,
    };
    let inspected = docker.inspect_image(&encode_path(reference)).await?;
    let command = Arc::new(ImageCommand::from_inspect(&inspected));
    if let Some(id) = inspected.id.as_deref() {
        docker
            .images()
            .insert(ticket, reference, id, Arc::clone(&command));
    }
    Ok(command)
}

/// Hostname from the container's name or label, and weaveDNS as its name server, when the
/// router runs DNS. Without a reachable router the container is created without them: it can
/// only start once the router runs, but its DNS settings are fixed now.
async fn name_container(
    naming: &DnsNaming,
    parts: &Parts,
    doc: &mut Value,
) -> Result<(), ProxyError> {
    let name = parts.uri.query().and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "name")
            .map(|(_, value)| value.into_owned())
    });
    let derived = naming
        .hostname
        .derive(name.as_deref(), doc.get("Labels"))
        .map_err(|err| ProxyError::Naming(err.to_string()))?;
    let dns = match naming.router.dns().await {
        Ok(Some(info)) => Dns {
            domain: info.domain,
            server: info.server,
        },
        Ok(None) => {
            debug!("create: the router runs without DNS");
            return Ok(());
        }
        Err(err) => {
            warn!(%err, "create: weaveDNS not reachable; the container gets no DNS settings");
            return Ok(());
        }
    };
    let Some(body) = doc.as_object_mut() else {
        return Ok(());
    };
    match naming::apply_dns(body, &derived, &dns) {
        Ok(Some(warning)) => warn!("create: {warning}"),
        Ok(None) => {}
        Err(wrong) => debug!(%wrong, "create: DNS settings left as they are"),
    }
    if compose::body_on_project_default(body)
        && let Err(wrong) = compose::prefer_weave_names(body)
    {
        debug!(%wrong, "create: DnsOptions left as they are");
    }
    Ok(())
}

/// Percent-encodes an image reference for use as one path segment run: `/` (repositories),
/// `:` (tags, registry ports) and `@` (digests) stay, as Docker's own clients send them.
fn encode_path(reference: &str) -> String {
    let mut out = String::with_capacity(reference.len());
    for byte in reference.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SOURCE: &str = "/var/lib/weave/weavewait/abc/w";

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageCommand {
        ImageCommand {
            entrypoint: entrypoint.map(list),
            cmd: cmd.map(list),
            env: Vec::new(),
        }
    }

    /// Request Entrypoint, request Cmd, the image, and what Docker runs (entrypoint, cmd).
    type MergeCase<'a> = (
        Option<&'a [&'a str]>,
        Option<&'a [&'a str]>,
        &'a ImageCommand,
        (&'a [&'a str], &'a [&'a str]),
    );

    /// Every row of the merge table: request Entrypoint/Cmd × image Entrypoint/Cmd.
    #[test]
    fn merges_like_the_daemon() {
        let busybox = image(None, Some(&["sh"]));
        let grep = image(Some(&["grep"]), Some(&["--help"]));
        let falsy = image(Some(&["/bin/false"]), None);
        let cases: Vec<MergeCase<'_>> = vec![
            // nil entrypoint, cmd given: image entrypoint + cmd
            (
                None,
                Some(&["echo", "ok"]),
                &busybox,
                (&[], &["echo", "ok"]),
            ),
            (None, Some(&["-v", "x"]), &grep, (&["grep"], &["-v", "x"])),
            // nil entrypoint, no cmd: image entrypoint + image cmd
            (None, None, &busybox, (&[], &["sh"])),
            (None, Some(&[]), &grep, (&["grep"], &["--help"])),
            // explicit [] entrypoint: no image entrypoint, image cmd only when none given
            (Some(&[]), Some(&["echo"]), &grep, (&[], &["echo"])),
            (Some(&[]), None, &grep, (&[], &["--help"])),
            // `--entrypoint ""` ([""]): nothing from the image at all
            (
                Some(&[""]),
                Some(&["echo", "hi"]),
                &grep,
                (&[], &["echo", "hi"]),
            ),
            (Some(&[""]), None, &busybox, (&[], &[])),
            // explicit entrypoint: image cmd is not merged
            (Some(&["grep"]), Some(&["x"]), &falsy, (&["grep"], &["x"])),
            (Some(&["grep"]), None, &busybox, (&["grep"], &[])),
            (Some(&["echo a b"]), None, &busybox, (&["echo a b"], &[])),
        ];
        for (e, c, img, (want_e, want_c)) in cases {
            let e = e.map(list);
            let c = c.map(list);
            assert_eq!(
                docker_command(e.as_deref(), c.as_deref(), img),
                (list(want_e), list(want_c)),
                "entrypoint {e:?} cmd {c:?} image {img:?}"
            );
        }
    }

    /// What planning reads from a body it rewrites.
    fn planned(body: &Value) -> CreateRequest {
        match plan(body, false).unwrap() {
            Plan::Rewrite(request) => request,
            Plan::Forward(reason) => panic!("{body} forwarded: {reason}"),
        }
    }

    fn rewritten(body: Value, img: &ImageCommand) -> (Outcome, Value) {
        let mut body = body;
        let command = Command::read(body.as_object().unwrap()).unwrap();
        let outcome = rewrite(&mut body, &command, img, SOURCE).unwrap();
        (outcome, body)
    }

    #[test]
    fn wraps_what_docker_would_run_in_weavewait() {
        let busybox = image(None, Some(&["sh"]));
        let grep = image(Some(&["grep"]), None);
        let cases = [
            (
                json!({"Image": "busybox", "Cmd": ["echo", "ok"]}),
                &busybox,
                json!(["/w/w"]),
                json!(["echo", "ok"]),
            ),
            (
                json!({"Image": "busybox"}),
                &busybox,
                json!(["/w/w"]),
                json!(["sh"]),
            ),
            (
                json!({"Image": "g", "Cmd": ["-c", "x"]}),
                &grep,
                json!(["/w/w", "grep"]),
                json!(["-c", "x"]),
            ),
            (
                json!({"Image": "f", "Entrypoint": ["grep"], "Cmd": ["x"]}),
                &image(Some(&["/bin/false"]), None),
                json!(["/w/w", "grep"]),
                json!(["x"]),
            ),
            (
                json!({"Image": "busybox", "Entrypoint": "echo a b", "Cmd": null}),
                &busybox,
                json!(["/w/w", "echo a b"]),
                Value::Null,
            ),
            (
                json!({"Image": "busybox", "Entrypoint": [""], "Cmd": ["echo", "hi"]}),
                &busybox,
                json!(["/w/w"]),
                json!(["echo", "hi"]),
            ),
        ];
        for (body, img, want_entrypoint, want_cmd) in cases {
            let (outcome, out) = rewritten(body.clone(), img);
            assert_eq!(outcome, Outcome::Rewritten, "{body}");
            assert_eq!(out["Entrypoint"], want_entrypoint, "{body}");
            assert_eq!(out["Cmd"], want_cmd, "{body}");
        }
    }

    #[test]
    fn committed_images_get_no_second_weavewait() {
        let committed = image(Some(&["/w/w", "sh"]), Some(&["-c", "true"]));
        let (outcome, out) = rewritten(json!({"Image": "c"}), &committed);
        assert_eq!(outcome, Outcome::Rewritten);
        assert!(out.get("Entrypoint").is_none(), "{out}");
        assert!(out.get("Cmd").is_none(), "{out}");
        assert_eq!(
            out["HostConfig"]["Binds"],
            json!([format!("{SOURCE}:/w:ro")])
        );

        let explicit = json!({"Image": "x", "Entrypoint": ["/w/w", "echo"], "Cmd": ["a"]});
        let (_, out) = rewritten(explicit, &ImageCommand::default());
        assert_eq!(out["Entrypoint"], json!(["/w/w", "echo"]));
    }

    #[test]
    fn no_command_is_left_for_the_daemon_to_refuse() {
        for body in [
            json!({"Image": "scratchy"}),
            json!({"Image": "busybox", "Entrypoint": [""]}),
            json!({"Image": "busybox", "Entrypoint": [], "Cmd": []}),
        ] {
            let img = if body["Image"] == "busybox" {
                image(None, None)
            } else {
                ImageCommand::default()
            };
            let (outcome, out) = rewritten(body.clone(), &img);
            assert!(matches!(outcome, Outcome::Forward(_)), "{body}");
            assert_eq!(out, body, "untouched");
        }
    }

    #[test]
    fn replaces_any_existing_w_mount_and_keeps_the_rest() {
        // Parsed from text, as it arrives: number formats are kept as written.
        let body: Value = serde_json::from_str(
            r#"{"Image": "i", "Entrypoint": ["e"],
                "HostConfig": {
                    "Binds": ["/data:/data", "/old:/w:ro", "/x:/wx"],
                    "Mounts": [{"Type": "bind", "Source": "/s", "Target": "/w"}, {"Target": "/m"}],
                    "Memory": 1073741824, "Huge": 123456789012345678901234567890, "Future": {"a": [1, 2.50]}
                },
                "Zebra": 1, "Alpha": 2}"#,
        )
        .unwrap();
        let (_, out) = rewritten(body, &ImageCommand::default());
        assert_eq!(
            out["HostConfig"]["Binds"],
            json!(["/data:/data", "/x:/wx", format!("{SOURCE}:/w:ro")])
        );
        assert_eq!(out["HostConfig"]["Mounts"], json!([{"Target": "/m"}]));
        // Unknown fields, key order and number formats survive.
        let text = serde_json::to_string(&out).unwrap();
        assert!(text.contains(r#""Memory":1073741824,"Huge":123456789012345678901234567890,"Future":{"a":[1,2.50]}"#), "{text}");
        assert!(
            text.find("Zebra").unwrap() < text.find("Alpha").unwrap(),
            "{text}"
        );
    }

    #[test]
    fn plans_from_network_mode_cidr_and_entrypoint() {
        let cases = [
            (json!({"Image": "b"}), Some(Some("b"))),
            (json!({"Image": "b", "Entrypoint": []}), Some(Some("b"))),
            // The image's ENV may set WEAVE_CIDR: looked up unless the request sets it.
            (json!({"Image": "b", "Entrypoint": [""]}), Some(Some("b"))),
            (json!({"Image": "b", "Entrypoint": "sh"}), Some(Some("b"))),
            (
                json!({"Image": "b", "Entrypoint": "sh", "Env": ["WEAVE_CIDR="]}),
                Some(None),
            ),
            (
                json!({"Image": "b", "Env": ["WEAVE_CIDR=net:default"]}),
                Some(Some("b")),
            ),
            (
                json!({"Image": "b", "HostConfig": {"NetworkMode": "host"}}),
                None,
            ),
            (
                json!({"Image": "b", "HostConfig": {"NetworkMode": "container:x"}}),
                None,
            ),
            (
                json!({"Image": "b", "HostConfig": {"NetworkMode": "mynet"}}),
                None,
            ),
            (
                json!({"Image": "b", "HostConfig": {"NetworkMode": "none"}}),
                Some(Some("b")),
            ),
            // A Compose project's default network is attached beside; its other networks not.
            (
                json!({"Image": "b", "HostConfig": {"NetworkMode": "shop_default"},
                       "Labels": {"com.docker.compose.project": "shop"}}),
                Some(Some("b")),
            ),
            (
                json!({"Image": "b", "HostConfig": {"NetworkMode": "shop_front"},
                       "Labels": {"com.docker.compose.project": "shop"}}),
                None,
            ),
            (
                json!({"Image": "b", "HostConfig": {"NetworkMode": "weave"},
                       "Labels": {"com.docker.compose.project": "shop"}}),
                None,
            ),
            (json!({"Image": "b", "HostConfig": null}), Some(Some("b"))),
            (json!({"Image": "b", "Env": ["WEAVE_CIDR=none"]}), None),
            (json!({"Image": "b", "Env": "WEAVE_CIDR=none"}), None),
            (json!({"Image": "b", "Env": [1]}), None),
            (json!({"Image": "b", "HostConfig": []}), None),
            (json!({"Image": "b", "Cmd": 7}), None),
            (json!({"Image": ""}), None),
            (json!([1, 2]), None),
        ];
        for (body, want) in cases {
            let got = plan(&body, false).unwrap();
            let got = match got {
                Plan::Forward(_) => None,
                Plan::Rewrite(request) => Some(request.image),
            };
            assert_eq!(got, want.map(|i| i.map(str::to_owned)), "{body}");
        }
    }

    #[test]
    fn the_images_env_counts_unless_the_request_overrides_it() {
        let with_env = |env: &[&str]| ImageCommand {
            env: list(env),
            ..ImageCommand::default()
        };
        let attach = |d: Result<Decision, CidrError>| matches!(d, Ok(Decision::Attach(_)));
        let none = with_env(&["PATH=/bin", "WEAVE_CIDR=none"]);
        assert!(!attach(decide_with_image(
            &planned(&json!({"Image": "i"})),
            &none,
            false
        )));
        let overridden = json!({"Image": "i", "Env": ["WEAVE_CIDR=10.2.1.1/24"]});
        assert!(attach(decide_with_image(
            &planned(&overridden),
            &none,
            false
        )));
        let asks = with_env(&["WEAVE_CIDR=10.2.1.1/24"]);
        assert!(attach(decide_with_image(
            &planned(&json!({"Image": "i"})),
            &asks,
            true
        )));
        let bad = with_env(&["WEAVE_CIDR=foo"]);
        let err = decide_with_image(&planned(&json!({"Image": "i"})), &bad, false).unwrap_err();
        assert_eq!(err.token, "foo");
    }

    #[test]
    fn a_bad_cidr_is_an_error_before_anything_is_created() {
        let body = json!({"Image": "b", "Env": ["WEAVE_CIDR=ip:10.0.0.1"]});
        let err = plan(&body, false).unwrap_err();
        assert_eq!(err.token, "ip:10.0.0.1");
        // With --no-default-ipalloc and no WEAVE_CIDR, only the image's ENV can still ask.
        let no_default = json!({"Image": "b"});
        assert!(matches!(
            plan(&no_default, true),
            Ok(Plan::Rewrite(CreateRequest { image: Some(_), .. }))
        ));
        assert!(matches!(
            decide_with_image(&planned(&no_default), &ImageCommand::default(), true),
            Ok(Decision::LeaveAlone(_))
        ));
    }

    /// A whole image inspect document from Docker 20.10 (API 1.41) reads into the typed model.
    #[test]
    fn reads_a_docker_20_10_image_document() {
        let image: ImageInspect =
            serde_json::from_str(include_str!("testdata/image-docker-20.10.json")).unwrap();
        let command = ImageCommand::from_inspect(&image);
        assert_eq!(command.cmd, Some(list(&["sh"])));
        assert_eq!(command.entrypoint, None);
        assert!(
            command.env.iter().any(|e| e.starts_with("PATH=")),
            "{command:?}"
        );
    }

    #[test]
    fn image_references_keep_their_shape_in_paths() {
        let cases = [
            ("busybox", "busybox"),
            ("busybox:1.36", "busybox:1.36"),
            ("localhost:5000/team/app:v2", "localhost:5000/team/app:v2"),
            ("busybox@sha256:0123abcd", "busybox@sha256:0123abcd"),
            ("we ird?#", "we%20ird%3F%23"),
        ];
        for (reference, want) in cases {
            assert_eq!(encode_path(reference), want);
        }
    }
}
