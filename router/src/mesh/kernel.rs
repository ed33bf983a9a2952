//! The kernel side of the mesh: the VXLAN port on the bridge whose flood list follows the peers.

use std::net::Ipv4Addr;

use super::DataPlane;
use crate::http_api::BoxFuture;

/// The flood list of the VXLAN link `link`.
#[derive(Debug, Clone)]
pub struct KernelVxlan {
    pub link: String,
}

impl DataPlane for KernelVxlan {
    fn set_flood<'a>(&'a self, vteps: &'a [Ipv4Addr]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let change = weavenet::set_flood_list(&self.link, vteps)
                .await
                .map_err(|err| err.to_string())?;
            for vtep in &change.added {
                tracing::info!(%vtep, "peer added to the flood list");
            }
            // A peer that left: what the kernel learned behind it would still be sent there
            // until it aged out (300 s).
            for &vtep in &change.removed {
                let forgotten = weavenet::forget_vtep(&self.link, vtep)
                    .await
                    .map_err(|err| err.to_string())?;
                tracing::info!(%vtep, learned = forgotten.learned, "peer removed from the flood list");
            }
            Ok(())
        })
    }
}
