//! The veths of Docker's network plugin: one per Docker endpoint, its host end a port of the
//! bridge and its other end left on the host for Docker to move into the container.
//!
//! Unlike [`crate::attach`], Docker owns the container side: it moves the peer into the sandbox,
//! renames it, sets the addresses and routes the driver reports, and brings it up. The names are
//! derived from the endpoint id alone, so a router that restarted between two calls about one
//! endpoint finds its veth again without any saved state.

use rtnetlink::{Handle, LinkBridgePort, LinkUnspec};
use tracing::{debug, warn};

use crate::link::{self, netlink_err};
use crate::{NetError, bridge, sysctl};

/// Prefix of the host end of an endpoint's veth; the endpoint id's first characters follow.
pub const PLUGIN_HOST_VETH_PREFIX: &str = "vethwpl";
/// Prefix of the end Docker moves into the container.
pub const PLUGIN_PEER_VETH_PREFIX: &str = "vethwpg";

/// How many characters of the endpoint id go into a link name: 7 of prefix plus 8 fill the
/// kernel's 15 bytes. Docker's ids are random hex, so two live endpoints sharing 32 bits is
/// not a practical worry.
const ID_CHARS: usize = 8;

/// The host end and the container end names of the veth of endpoint `endpoint_id`; `None` when
/// the id has fewer than 8 leading letters or digits (Docker's are 64 hex digits).
pub fn endpoint_veth_names(endpoint_id: &str) -> Option<(String, String)> {
    let short = endpoint_id.get(..ID_CHARS)?;
    if !short.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((
        format!("{PLUGIN_HOST_VETH_PREFIX}{short}"),
        format!("{PLUGIN_PEER_VETH_PREFIX}{short}"),
    ))
}

/// Makes the veth `host`/`peer` with `host` a port of `bridge` (MTU of the bridge, hairpin on,
/// up) and `peer` on the host, down, for Docker to move. Returns whether it was created: an
/// existing pair with both ends on the host is kept (a repeated `Join`), while a `host` whose
/// peer is elsewhere is a leftover of an earlier endpoint with the same short id and is
/// replaced.
///
/// # Errors
/// [`NetError::NoBridge`] when the bridge is missing; netlink failures naming the step. On
/// failure a veth this call created is removed again.
pub async fn create_endpoint_veth(bridge: &str, host: &str, peer: &str) -> Result<bool, NetError> {
    let handle = link::connect(&format!("creating veth {host}"))?;
    let found = bridge::lookup(&handle, bridge)
        .await?
        .ok_or_else(|| NetError::NoBridge(bridge.to_owned()))?;
    if let Some(existing) = link::by_name(&handle, host).await? {
        let peer_here = link::by_name(&handle, peer).await?;
        if peer_here.is_some_and(|p| p.peer_index == Some(existing.index))
            && existing.controller == Some(found.index)
        {
            debug!(veth = host, "endpoint veth exists already");
            return Ok(false);
        }
        warn!(
            veth = host,
            "replacing a leftover veth of an earlier endpoint"
        );
        link::delete(&handle, existing.index, host).await?;
    }
    let pair = link::veth_pair(host, peer, found.mtu, found.index, None);
    handle
        .link()
        .add(pair)
        .execute()
        .await
        .map_err(netlink_err(format!("creating veth {host}")))?;
    if let Err(err) = finish_host_end(&handle, host).await {
        if let Ok(Some(made)) = link::by_name(&handle, host).await {
            let _ = link::delete(&handle, made.index, host).await;
        }
        return Err(err);
    }
    Ok(true)
}

/// Hairpin (a container reaches itself through a published address), no router
/// advertisements, and up: as the host end of an attached container's veth.
async fn finish_host_end(handle: &Handle, host: &str) -> Result<(), NetError> {
    let made = link::by_name(handle, host)
        .await?
        .ok_or_else(|| NetError::Io {
            op: format!("finding veth {host}"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("no link {host}")),
        })?;
    handle
        .link()
        .set_port(LinkBridgePort::new(made.index).hairpin(true).build())
        .execute()
        .await
        .map_err(netlink_err(format!("turning hairpin on for {host}")))?;
    sysctl::disable_accept_ra(host);
    handle
        .link()
        .set(LinkUnspec::new_with_index(made.index).up().build())
        .execute()
        .await
        .map_err(netlink_err(format!("bringing {host} up")))
}

/// Deletes the veth whose host end is `host` (both ends go, wherever the other one is);
/// `false` when there was none.
///
/// # Errors
/// Netlink failures other than the link being gone already.
pub async fn delete_endpoint_veth(host: &str) -> Result<bool, NetError> {
    let handle = link::connect(&format!("deleting veth {host}"))?;
    match link::by_name(&handle, host).await? {
        Some(found) => link::delete(&handle, found.index, host).await,
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_from_endpoint_ids() {
        let long = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        for (id, want) in [
            (long, Some(("vethwpl01234567", "vethwpg01234567"))),
            ("abcdefgh", Some(("vethwplabcdefgh", "vethwpgabcdefgh"))),
            ("abcdefg", None),
            ("", None),
            ("ab/defgh123", None),
            ("ab defgh123", None),
            ("éééééééé", None),
        ] {
            let got = endpoint_veth_names(id);
            let want = want.map(|(h, p)| (h.to_owned(), p.to_owned()));
            assert_eq!(got, want, "{id:?}");
            if let Some((host, peer)) = got {
                assert!(host.len() <= 15 && peer.len() <= 15);
            }
        }
    }
}
