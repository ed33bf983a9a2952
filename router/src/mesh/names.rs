//! weaveDNS across hosts (MULTIHOST.md §4.3): this peer's records written to the store under
//! its own prefix, and every other peer's followed into the local registry, so that lookups
//! never leave the host.

use std::collections::BTreeSet;
use std::time::Duration;

use daemon::Backoff;
use etcd::{EventKind, Keys};

use super::Mesh;
use super::keys::{self, DnsRecord};
use super::mirror::{Change, mirror};
use crate::dns::registry::Registry;

/// Even without a local change, the store is compared with the registry this often: a record
/// lost with the store's data comes back.
const RESYNC_EVERY: Duration = Duration::from_secs(60);

/// What to write and delete so that the store holds exactly `local`.
pub(super) fn diff(
    local: &BTreeSet<DnsRecord>,
    stored: &BTreeSet<DnsRecord>,
) -> (Vec<DnsRecord>, Vec<DnsRecord>) {
    (
        local.difference(stored).cloned().collect(),
        stored.difference(local).cloned().collect(),
    )
}

/// Keeps the store's copy of this peer's records equal to the registry's, after every local
/// change; while the store is away, the changes wait and are written when it is back.
pub(super) async fn publish(mesh: Mesh, registry: Registry) {
    let me = mesh.config().name.clone();
    let store = mesh.store().clone();
    let mut changes = registry.changes();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        changes.mark_unchanged();
        let local: BTreeSet<DnsRecord> = registry.local_records().into_iter().collect();
        let synced = async {
            let listed = store.get(&Keys::prefix(keys::dns_of(&me))).await?;
            let stored: BTreeSet<DnsRecord> = listed
                .kvs
                .iter()
                .filter_map(|kv| keys::parse_dns(&kv.key).map(|(_, record)| record))
                .collect();
            let (put, delete) = diff(&local, &stored);
            for record in &put {
                store
                    .put(keys::dns_record(&me, record), b"{}", None)
                    .await?;
            }
            for record in &delete {
                store
                    .delete(&Keys::key(keys::dns_record(&me, record)))
                    .await?;
            }
            Ok::<_, etcd::Error>((put.len(), delete.len()))
        }
        .await;
        match synced {
            Ok((0, 0)) => backoff.reset(),
            Ok((put, deleted)) => {
                tracing::debug!(put, deleted, "weaveDNS records written to the store");
                backoff.reset();
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot write weaveDNS records to the store; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(RESYNC_EVERY, changes.changed()).await;
    }
}

/// Follows the other peers' records into the registry.
pub(super) async fn follow(mesh: Mesh, registry: Registry) {
    let me = mesh.config().name.clone();
    mirror(
        mesh.store().clone(),
        keys::dns(),
        move |change| match change {
            Change::Listed(kvs) => {
                let records: Vec<(String, DnsRecord)> = kvs
                    .iter()
                    .filter_map(|kv| keys::parse_dns(&kv.key))
                    .filter(|(peer, _)| *peer != me)
                    .collect();
                registry.replace_remote(&records);
            }
            Change::Events(events) => {
                for event in events {
                    let Some((peer, record)) = keys::parse_dns(&event.kv.key) else {
                        continue;
                    };
                    if peer == me {
                        continue;
                    }
                    match event.kind {
                        EventKind::Put => registry.add_remote(&peer, &record),
                        EventKind::Delete => registry.remove_remote(&peer, &record),
                    }
                }
            }
            Change::Unreachable(_) => {}
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(c: &str, a: &str, n: &str) -> DnsRecord {
        DnsRecord {
            container: c.into(),
            addr: a.parse().unwrap(),
            fqdn: n.into(),
        }
    }

    #[test]
    fn the_store_is_brought_to_the_registry() {
        let a = rec("c1", "10.32.0.1", "a.weave.local.");
        let b = rec("c2", "10.32.0.2", "b.weave.local.");
        let c = rec("c3", "10.32.0.3", "c.weave.local.");
        let local: BTreeSet<_> = [a.clone(), b.clone()].into();
        let stored: BTreeSet<_> = [b, c.clone()].into();
        assert_eq!(diff(&local, &stored), (vec![a], vec![c]));
        assert_eq!(diff(&local, &local), (vec![], vec![]));
    }
}
