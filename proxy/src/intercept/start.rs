//! `POST /containers/{id}/start` and `/restart`: forwarded, and a success is answered only once
//! the container is attached.
//!
//! `304 Not Modified` (already running) and the daemon's errors come back at once; an attach that
//! fails leaves the container killed and the client told why.

use http::request::Parts;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::attach::Attacher;
use crate::body::{self, ProxyBody};
use crate::error::ProxyError;
use crate::hop::strip_hop_by_hop;
use crate::upstream::Upstream;

/// Forwards the start of `container` and attaches it when the daemon accepted it.
///
/// # Errors
/// The daemon unreachable, or the attach failed (the container has been killed again).
pub async fn start_container(
    upstream: &Upstream,
    attacher: &Attacher,
    container: &str,
    mut parts: Parts,
    body: Incoming,
) -> Result<Response<ProxyBody>, ProxyError> {
    strip_hop_by_hop(&mut parts.headers);
    // Held until the answer: the `start` event this causes is left to this request.
    let _starting = attacher.begin_start(container).await;
    let mut response = upstream
        .send(Request::from_parts(parts, body::stream(body)))
        .await?;
    strip_hop_by_hop(response.headers_mut());
    if response.status().is_success() {
        attacher
            .on_start_request(container)
            .await
            .map_err(|source| ProxyError::Attach {
                container: container.to_owned(),
                source,
            })?;
    }
    Ok(response.map(body::stream))
}
