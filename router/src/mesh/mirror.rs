//! Keeping a local copy of part of the store: list, then watch from the list's revision + 1,
//! list again after a compaction, wait and retry while the store is away. Never gives up: the
//! store coming back is the normal end of an outage (MULTIHOST.md §3.5: the prototype's agents
//! exited when their watch broke).

use std::time::Duration;

use daemon::Backoff;
use etcd::{Client, Error, Event, KeyValue, Keys};

/// What the copy learns.
#[derive(Debug)]
pub(crate) enum Change<'a> {
    /// Everything under the prefix now: replace the copy.
    Listed(&'a [KeyValue]),
    /// What changed since, in order.
    Events(&'a [Event]),
    /// The store cannot be read now; the copy is as of the last change.
    Unreachable(&'a Error),
}

/// Mirrors `prefix` into `apply` for ever.
pub(crate) async fn mirror(store: Client, prefix: String, mut apply: impl FnMut(Change<'_>)) {
    let keys = Keys::prefix(&prefix);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let listed = match store.get(&keys).await {
            Ok(listed) => listed,
            Err(err) => {
                tracing::debug!(%prefix, error = %err, "store: listing failed; retrying");
                apply(Change::Unreachable(&err));
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        apply(Change::Listed(&listed.kvs));
        let mut watch = match store.watch(keys.clone(), listed.revision + 1).await {
            Ok(watch) => watch,
            Err(err) => {
                apply(Change::Unreachable(&err));
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff.reset();
        loop {
            match watch.next().await {
                Ok(events) => {
                    backoff.reset();
                    apply(Change::Events(&events));
                }
                Err(Error::Compacted { .. }) => {
                    tracing::info!(%prefix, "store: watch revision compacted; listing again");
                    break;
                }
                Err(err) => {
                    // The watch resumes from its own revision on the next call.
                    apply(Change::Unreachable(&err));
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}
