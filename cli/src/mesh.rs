//! `weave`'s commands for a network of several hosts: `status peers`, the per-peer `status
//! ipam`, `rmpeer`, `connect` and `forget`. The router composes the text; a router that is
//! alone answers 404 to the status and rmpeer requests.

use api::{Call, route};

use crate::error::Error;
use crate::launch::Context;

/// What the router said to a mesh-only request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// The text to print.
    Text(String),
    /// The router is alone.
    Alone,
}

/// `GET /status/peers` or `/status/ipam`, framed by blank lines as `weave status` prints.
///
/// # Errors
/// When the router does not answer, or refuses.
pub async fn status(ctx: &Context, path: &str) -> Result<Answered, Error> {
    let answer = ctx.router.call(&Call::get(path)).await?;
    match answer.status.as_u16() {
        200 => Ok(Answered::Text(format!("\n{}\n", answer.body.trim_end()))),
        404 => Ok(Answered::Alone),
        _ => Err(Error::Failed(format!(
            "weave router answered {path} with {}: {}",
            answer.status,
            answer.body.trim_end()
        ))),
    }
}

/// `weave status peers`.
///
/// # Errors
/// When the router is alone, does not answer, or refuses.
pub async fn peers(ctx: &Context) -> Result<String, Error> {
    only_with_peers(status(ctx, route::STATUS_PEERS).await?)
}

/// `weave status connections`.
///
/// # Errors
/// When the router is alone, does not answer, or refuses.
pub async fn connections(ctx: &Context) -> Result<String, Error> {
    only_with_peers(status(ctx, route::STATUS_CONNECTIONS).await?)
}

fn only_with_peers(answered: Answered) -> Result<String, Error> {
    match answered {
        Answered::Text(text) => Ok(text),
        Answered::Alone => Err(alone()),
    }
}

fn alone() -> Error {
    Error::Refused(
        "this weave router has no peers: launch it with --store-endpoints to join a network of \
         several hosts"
            .to_owned(),
    )
}

/// `weave rmpeer PEER [--force]`: what the router took over.
///
/// # Errors
/// When the peer is unknown, alive (without `force`), this one, or the store is away.
pub async fn rmpeer(ctx: &Context, peer: &str, force: bool) -> Result<String, Error> {
    let answer = ctx.router.call(&Call::remove_peer(peer, force)).await?;
    let body = answer.body.trim_end().to_owned();
    match answer.status.as_u16() {
        200 => Ok(body),
        404 if body.is_empty() => Err(alone()),
        _ => Err(Error::Refused(body)),
    }
}

/// `weave connect HOST` / `weave forget HOST`: what the router changed.
///
/// # Errors
/// When the router does not answer, or refuses (HOST unreachable, the store fixed by
/// `--store-endpoints`, the last store forgotten).
pub async fn store_change(ctx: &Context, call: &Call) -> Result<String, Error> {
    let answer = ctx.router.call(call).await?;
    if answer.is_success() {
        return Ok(answer.body);
    }
    Err(Error::Refused(answer.message().trim_end().to_owned()))
}
