//! The interceptors: the endpoints the proxy rewrites, one module each ([`create`], [`start`],
//! [`exec`], and [`present`] for the list and inspect answers), each a pure core and the one
//! function that does its I/O. What they share is here: their settings and sending a body the
//! proxy holds.
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
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::body::{self, ProxyBody};
use crate::dnscache::DnsCache;
use crate::error::ProxyError;
use crate::hop::strip_hop_by_hop;
use crate::naming::HostnameRule;
use crate::upstream::Upstream;

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
    /// Asked where weaveDNS is (at most once a second), so containers use it whenever it runs.
    pub router: DnsCache,
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
