//! Leases: liveness only (MULTIHOST.md §4.1: `alive/<peer>`, TTL 15 s, keepalive 5 s). A key
//! bound to a lease goes when the lease expires; nothing that must survive an outage (a block,
//! a peer) is ever bound to one.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::kv::lease_error;
use crate::{Client, Error, wire};

/// A lease's id, as etcd numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

impl std::fmt::Display for LeaseId {
    /// In hex, as etcdctl prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    /// What etcd granted, which may be more than asked (it has a minimum).
    pub ttl: Duration,
}

#[derive(Debug, Serialize)]
struct Grant {
    #[serde(rename = "TTL")]
    ttl: i64,
}

#[derive(Debug, Serialize)]
struct ById {
    #[serde(rename = "ID")]
    id: i64,
}

impl Client {
    /// Grants a lease of `ttl` (whole seconds, at least one).
    ///
    /// # Errors
    /// [`Error::Unavailable`]; [`Error::Refused`] when etcd grants none.
    pub async fn grant(&self, ttl: Duration) -> Result<Lease, Error> {
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let r: wire::LeaseGrantResponse =
            self.call("/v3/lease/grant", &Grant { ttl: secs }).await?;
        if !r.error.is_empty() || r.id == 0 {
            return Err(Error::Refused {
                endpoint: self.current_endpoint().to_owned(),
                call: "/v3/lease/grant",
                code: 0,
                message: r.error,
            });
        }
        Ok(Lease {
            id: LeaseId(r.id),
            ttl: Duration::from_secs(u64::try_from(r.ttl).unwrap_or(0)),
        })
    }

    /// Renews `lease` once and returns its new time to live. The caller loops, at a third of
    /// the TTL or so, and registers anew on [`Error::LeaseNotFound`].
    ///
    /// The gateway's keepalive is a stream; sent one request, it answers once and ends, which
    /// makes it a plain bounded request here.
    ///
    /// # Errors
    /// [`Error::LeaseNotFound`] when it has expired or was revoked; [`Error::Unavailable`].
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<Duration, Error> {
        let message: wire::StreamMessage<wire::LeaseKeepAliveResponse> = self
            .call("/v3/lease/keepalive", &ById { id: lease.0 })
            .await?;
        let r = match message {
            wire::StreamMessage::Result(r) => r,
            wire::StreamMessage::Error(status) => {
                return Err(lease_error(
                    Error::Refused {
                        endpoint: self.current_endpoint().to_owned(),
                        call: "/v3/lease/keepalive",
                        code: status.code,
                        message: status.message,
                    },
                    Some(lease),
                ));
            }
        };
        // An unknown lease is answered with a TTL of 0 (left out), not an error.
        if r.ttl <= 0 {
            return Err(Error::LeaseNotFound { id: lease.0 });
        }
        Ok(Duration::from_secs(u64::try_from(r.ttl).unwrap_or(0)))
    }

    /// Revokes `lease`: its keys go at once.
    ///
    /// # Errors
    /// [`Error::LeaseNotFound`] when it is already gone; [`Error::Unavailable`].
    pub async fn revoke(&self, lease: LeaseId) -> Result<(), Error> {
        let _: wire::LeaseRevokeResponse = self
            .call("/v3/lease/revoke", &ById { id: lease.0 })
            .await
            .map_err(|err| lease_error(err, Some(lease)))?;
        Ok(())
    }
}

/// A task that keeps a lease alive until it is dropped or the lease is lost.
#[derive(Debug)]
pub struct KeepAlive {
    lease: LeaseId,
    task: JoinHandle<()>,
    lost: Option<oneshot::Receiver<Error>>,
}

impl KeepAlive {
    /// The lease kept.
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Resolves when the lease is gone ([`Error::LeaseNotFound`]): the keys bound to it are
    /// gone with it, and the caller registers anew. Resolves once; later calls wait for ever.
    pub async fn lost(&mut self) -> Error {
        match self.lost.take() {
            Some(rx) => rx
                .await
                .unwrap_or(Error::LeaseNotFound { id: self.lease.0 }),
            None => std::future::pending().await,
        }
    }
}

impl Drop for KeepAlive {
    /// Stops renewing: the lease then expires after its TTL (revoke it to end it at once).
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Renews `lease` every `every` (a third of its TTL is etcd's own habit) in a task, until
    /// the [`KeepAlive`] is dropped or etcd says the lease is gone. While no member answers,
    /// it keeps trying: etcd extends leases when a new leader takes over, so an outage shorter
    /// than the election does not by itself end a lease, and only etcd can say it has.
    pub fn keep_alive_every(&self, lease: LeaseId, every: Duration) -> KeepAlive {
        let (tx, rx) = oneshot::channel();
        let client = self.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match client.keep_alive(lease).await {
                    Ok(_) => {}
                    Err(err @ Error::LeaseNotFound { .. }) => {
                        let _ = tx.send(err);
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(%lease, error = %err, "etcd lease keepalive failed; retrying")
                    }
                }
            }
        });
        KeepAlive {
            lease,
            task,
            lost: Some(rx),
        }
    }
}
