//! The one body type that flows through the proxy in both directions.
//!
//! Request and response bodies are streamed frame by frame, never collected, so build contexts,
//! image loads and archive downloads pass through in constant memory.

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use prometheus_client::metrics::counter::Counter;

/// A streamed body from the client, from the daemon, or made by the proxy.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// A body with nothing in it (the head of an upgrade, for example).
pub fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any hyper body (the client's request or the daemon's response) without copying it.
pub fn stream(body: hyper::body::Incoming) -> ProxyBody {
    body.boxed_unsync()
}

/// [`stream`], adding the length of every data frame to `relayed` as it passes.
pub fn counted(body: hyper::body::Incoming, relayed: Counter) -> ProxyBody {
    holding(body, relayed, ())
}

/// [`counted`], keeping `held` until the body is done with (read to its end, or dropped).
pub fn holding<T: Send + 'static>(
    body: hyper::body::Incoming,
    relayed: Counter,
    held: T,
) -> ProxyBody {
    body.map_frame(move |frame| {
        let _ = &held;
        if let Some(data) = frame.data_ref() {
            relayed.inc_by(data.len() as u64);
        }
        frame
    })
    .boxed_unsync()
}
