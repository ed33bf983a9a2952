//! What can go wrong talking to etcd, in the terms a caller acts on: no member answered (try
//! later), etcd refused (a bug or a bad request), a lease is gone (re-register), a revision is
//! compacted (re-list).

use thiserror::Error;

/// A failed etcd call.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A client needs at least one endpoint.
    #[error("no etcd endpoint given")]
    NoEndpoints,
    /// An endpoint is not `host:port` or `http://host:port`.
    #[error("bad etcd endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    /// Every endpoint was tried and none answered (refused, timed out, or had no quorum);
    /// `tried` says why, per endpoint. The store may be back later: the caller retries.
    #[error("no etcd endpoint answered {call}: {}", tried_list(.tried))]
    Unavailable {
        call: &'static str,
        tried: Vec<(String, String)>,
    },
    /// etcd answered with an error that another member would give too.
    #[error("etcd at {endpoint} refused {call}: {message} (gRPC code {code})")]
    Refused {
        endpoint: String,
        call: &'static str,
        code: i32,
        message: String,
    },
    /// etcd answered with something that is not what the gateway sends.
    #[error("etcd at {endpoint} answered {call} with something unreadable: {reason}")]
    Garbled {
        endpoint: String,
        call: &'static str,
        reason: String,
    },
    /// The lease expired or was revoked: whatever was bound to it is gone.
    #[error("etcd lease {id:x} not found: it expired or was revoked")]
    LeaseNotFound { id: i64 },
    /// The revision asked for was compacted away: the caller lists again and watches from the
    /// list's revision. `compacted` is the oldest revision kept, when etcd says.
    #[error("etcd revision {requested} has been compacted (kept from {compacted:?}): list again")]
    Compacted {
        requested: i64,
        compacted: Option<i64>,
    },
}

fn tried_list(tried: &[(String, String)]) -> String {
    tried
        .iter()
        .map(|(endpoint, reason)| format!("{endpoint}: {reason}"))
        .collect::<Vec<_>>()
        .join("; ")
}
