//! The endpoints the proxy rewrites (create, start, exec, and the list and inspect it presents):
//! pure rewrites in submodules, their I/O here and in [`start`].
//!
//! Only these bodies are buffered (up to [`BODY_LIMIT`]); everything else streams. A body that
//! is not the JSON the proxy expects goes to the daemon byte for byte, so the client gets the
//! daemon's own error for it.

pub mod create;
pub mod exec;
pub mod present;
pub mod start;

use std::path::PathBuf;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::attach::Attacher;
use crate::body::{self, ProxyBody};
use crate::cidr::Decision;
use crate::docker::{DockerClient, DockerError};
use crate::error::ProxyError;
use crate::hop::strip_hop_by_hop;
use crate::naming::{self, Dns, HostnameRule};
use crate::upstream::Upstream;
use crate::weaveapi::RouterClient;
use crate::weavecontainer::{WEAVEWAIT, is_weave_container, label_owner};

/// The largest request or response body the proxy reads whole in order to rewrite it. Docker's
/// create and inspect documents are a few KiB; this leaves room for huge label sets.
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// What the rewrites need to know about this proxy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Host directory bound read-only at `/w` in rewritten containers (holds `w`).
    pub weavewait: PathBuf,
    /// Containers without `WEAVE_CIDR` are left alone (`--no-default-ipalloc`).
    pub no_default_ipalloc: bool,
    /// `docker inspect` shows the weave interface (`--rewrite-inspect`).
    pub rewrite_inspect: bool,
    /// How containers are named and pointed at weaveDNS; `None` with `--without-dns`.
    pub dns: Option<DnsNaming>,
    /// This proxy's identity, put on every container it creates for weave.
    pub owner: String,
}

/// Hostnames and DNS settings for containers on the weave network.
#[derive(Debug, Clone)]
pub struct DnsNaming {
    /// `--hostname-from-label`, `--hostname-match`, `--hostname-replacement`.
    pub hostname: HostnameRule,
    /// Asked at each create where weaveDNS is, so containers use it whenever it runs.
    pub router: RouterClient,
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
    let request = match create::plan(&doc, settings.no_default_ipalloc)? {
        create::Plan::Forward(reason) => {
            info!(%reason, "create: leaving the container alone");
            return send(upstream, parts, bytes).await;
        }
        create::Plan::Rewrite(request) => request,
    };
    let image = match &request.image {
        None => create::ImageCommand::default(),
        Some(name) => match docker.inspect_image(&encode_path(name)).await {
            Ok(image) => create::ImageCommand::from_inspect(&image),
            // A missing image: the daemon's own 404 for the create names it in the words the
            // docker CLI looks for before it pulls and tries again.
            Err(DockerError::NotFound { .. }) => return send(upstream, parts, bytes).await,
            Err(err) => return Err(err.into()),
        },
    };
    if let Decision::LeaveAlone(reason) =
        create::decide_with_image(&request, &image, settings.no_default_ipalloc)?
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
    match create::rewrite(&mut doc, &request.command, &image, &source) {
        Ok(create::Outcome::Rewritten) => send_json(upstream, parts, &doc).await,
        Ok(create::Outcome::Forward(reason)) => {
            debug!(%reason, "create: forwarding unchanged");
            send(upstream, parts, bytes).await
        }
        Err(wrong) => {
            debug!(%wrong, "create: forwarding unchanged");
            send(upstream, parts, bytes).await
        }
    }
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
    Ok(())
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
        && exec::rewrite(&mut doc).unwrap_or(false)
    {
        return send_json(upstream, parts, &doc).await;
    }
    send(upstream, parts, bytes).await
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
                let hidden = mentions && present::hide_in_inspect(&mut doc);
                let shown = show_weave_network(attacher, &mut doc).await;
                (hidden || shown).then(|| to_json_bytes(&doc, bytes.ends_with(b"\n")))
            }
            Err(_) => None,
        },
        _ if !mentions => None,
        (Presentation::List, _) => present::hide_in_list(&bytes).map(Bytes::from),
        (Presentation::Inspect, _) => {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|mut doc| {
                    present::hide_in_inspect(&mut doc)
                        .then(|| to_json_bytes(&doc, bytes.ends_with(b"\n")))
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
async fn show_weave_network(attacher: &Attacher, doc: &mut Value) -> bool {
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
            Some(&addr) => present::show_weave_network(doc, &iface.mac, addr),
            None => false,
        },
        Ok(None) => false,
        Err(err) => {
            debug!(container = %id, %err, "rewrite-inspect: cannot read ethwe");
            false
        }
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, ProxyError> {
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(ProxyError::BodyTooLarge { limit: BODY_LIMIT })
        }
        Err(err) => Err(ProxyError::ClientBody {
            reason: err.to_string(),
        }),
    }
}

/// Sends a request with a body the proxy has in hand, framed by `Content-Length`.
async fn send(
    upstream: &Upstream,
    mut parts: Parts,
    bytes: Bytes,
) -> Result<Response<ProxyBody>, ProxyError> {
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let mut response = upstream
        .send(Request::from_parts(parts, full(bytes)))
        .await?;
    strip_hop_by_hop(response.headers_mut());
    Ok(response.map(body::stream))
}

async fn send_json(
    upstream: &Upstream,
    parts: Parts,
    doc: &Value,
) -> Result<Response<ProxyBody>, ProxyError> {
    send(upstream, parts, to_json_bytes(doc, false)).await
}

fn to_json_bytes(doc: &Value, newline: bool) -> Bytes {
    let mut out = serde_json::to_vec(doc).expect("a JSON value serializes");
    if newline {
        out.push(b'\n');
    }
    Bytes::from(out)
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
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
    use super::*;

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
