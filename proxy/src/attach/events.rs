//! Docker's container events, for containers started without the proxy, and the sweep over the
//! running containers when the proxy starts and after every reconnect to the events stream.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use tracing::{debug, info, warn};

use super::{Attacher, Outcome, Trigger};
use crate::body;
use crate::upstream::Upstream;
use crate::weavecontainer::WEAVEWAIT;

/// `GET /events` for container starts and removals only: `{"type":["container"],"event":["start","destroy"]}`.
const EVENTS_PATH: &str = "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22start%22%2C%22destroy%22%5D%7D";

/// Reconnecting to the events stream: from 1 s, ×1.5, up to 20 s, as the original.
const EVENTS_BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(20),
};
/// Retrying a container the sweep could not attach (usually: the router is not up yet).
const SWEEP_BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(2),
    max: Duration::from_secs(60),
};

/// A container event the proxy acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The container with this id started.
    Start(String),
    /// The container with this id was removed.
    Destroy(String),
}

/// Parses one line of the events stream; other events and other shapes are `None`.
pub fn parse_event(line: &[u8]) -> Option<Event> {
    let event: Value = serde_json::from_slice(line).ok()?;
    if event
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or("container")
        != "container"
    {
        return None;
    }
    // `Action` and `Actor.ID` since API 1.22; `status` and `id` before (and still, alongside).
    let action = event
        .get("Action")
        .or_else(|| event.get("status"))
        .and_then(Value::as_str)?;
    let id = event
        .pointer("/Actor/ID")
        .or_else(|| event.get("id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())?
        .to_owned();
    match action {
        "start" => Some(Event::Start(id)),
        "destroy" => Some(Event::Destroy(id)),
        _ => None,
    }
}

/// A growing delay.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    fn next(self, current: Duration) -> Duration {
        current.mul_f64(1.5).min(self.max)
    }
}

/// Follows Docker's events for as long as the proxy runs, reconnecting with backoff. Every
/// (re)connection is followed by a sweep, so starts missed while disconnected are caught.
pub async fn watch(attacher: Attacher, upstream: Upstream) {
    let sweeper = Sweeper::default();
    let mut delay = EVENTS_BACKOFF.first;
    loop {
        let connected = tokio::time::Instant::now();
        match follow(&attacher, &upstream, &sweeper).await {
            // A stream that ran for a while ended (the daemon restarted): reconnect at once.
            Ok(()) if connected.elapsed() >= EVENTS_BACKOFF.max => {
                info!("Docker events stream ended; reconnecting");
                delay = EVENTS_BACKOFF.first;
            }
            // One that ends as soon as it opens (something that is not quite Docker answers
            // 200 and closes) would otherwise be a busy loop of reconnects and sweeps.
            Ok(()) => {
                info!(retry_in = ?delay, "Docker events stream ended at once");
                tokio::time::sleep(delay).await;
                delay = EVENTS_BACKOFF.next(delay);
            }
            Err(reason) => {
                warn!(%reason, retry_in = ?delay, "Docker events stream unavailable");
                tokio::time::sleep(delay).await;
                delay = EVENTS_BACKOFF.next(delay);
            }
        }
    }
}

async fn follow(attacher: &Attacher, upstream: &Upstream, sweeper: &Sweeper) -> Result<(), String> {
    let request = Request::get(EVENTS_PATH)
        .header(http::header::HOST, "docker")
        .body(body::empty())
        .expect("the events request is valid");
    let response = upstream.send(request).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("GET /events answered {}", response.status()));
    }
    debug!("following Docker events");
    // Subscribed first, swept second: a start between the two is seen twice, never missed.
    tokio::spawn(sweeper.clone().sweep(attacher.clone(), upstream.clone()));
    let mut body = response.into_body();
    let mut pending = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line = pending.split_to(end + 1);
            match parse_event(&line[..end]) {
                Some(Event::Start(id)) => {
                    let attacher = attacher.clone();
                    tokio::spawn(async move { attacher.on_start_event(&id).await });
                }
                Some(Event::Destroy(id)) => attacher.forget(&id),
                None => {}
            }
        }
        if pending.len() > crate::intercept::BODY_LIMIT {
            pending.advance(pending.len());
        }
    }
    Ok(())
}

/// Attaches every running weave container, retrying each until it is attached or stops.
#[derive(Debug, Clone, Default)]
struct Sweeper {
    /// Containers with a retry loop running, so reconnects do not start a second one.
    retrying: Arc<Mutex<HashSet<String>>>,
}

impl Sweeper {
    async fn sweep(self, attacher: Attacher, upstream: Upstream) {
        let ids = match running_weave_containers(&upstream).await {
            Ok(ids) => ids,
            Err(reason) => {
                warn!(%reason, "could not list running containers to attach them");
                return;
            }
        };
        debug!(count = ids.len(), "attaching running weave containers");
        for id in ids {
            if !self.claim(&id) {
                continue;
            }
            let (this, attacher) = (self.clone(), attacher.clone());
            tokio::spawn(async move {
                this.retry(&attacher, &id).await;
                this.retrying
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
            });
        }
    }

    fn claim(&self, id: &str) -> bool {
        self.retrying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned())
    }

    async fn retry(&self, attacher: &Attacher, id: &str) {
        let mut delay = SWEEP_BACKOFF.first;
        loop {
            let deadline = tokio::time::Instant::now() + attacher.timeout();
            match attacher.attach(id, Trigger::Observed, deadline).await {
                Ok(Outcome::Attached(addrs)) => {
                    info!(container = %super::short(id), ?addrs, "attached running container");
                    return;
                }
                Ok(Outcome::AlreadyAttached) => return,
                Ok(Outcome::Skipped(reason)) => {
                    debug!(container = %super::short(id), %reason, "not attached");
                    return;
                }
                // The router is down, or slow: the container keeps what it has (an attach undoes
                // only what it did itself) and the sweep tries again.
                Err(failure) => {
                    warn!(
                        container = %super::short(id),
                        error = %failure.error,
                        retry_in = ?delay,
                        "could not attach a running container"
                    );
                    tokio::time::sleep(delay).await;
                    delay = SWEEP_BACKOFF.next(delay);
                }
            }
        }
    }
}

/// Ids of running containers whose command starts with `/w/w`.
async fn running_weave_containers(upstream: &Upstream) -> Result<Vec<String>, String> {
    let (status, body) = upstream
        .get("/containers/json")
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("GET /containers/json answered {status}"));
    }
    let list: Vec<Value> = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(list
        .iter()
        .filter(|c| {
            c.get("Command")
                .and_then(Value::as_str)
                .is_some_and(|cmd| cmd == WEAVEWAIT || cmd.starts_with("/w/w "))
        })
        .filter_map(|c| c.get("Id")?.as_str().map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_events_the_proxy_acts_on() {
        let cases: [(&str, Option<Event>); 6] = [
            (
                r#"{"status":"start","id":"abc","Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{}}}"#,
                Some(Event::Start("abc".into())),
            ),
            (
                r#"{"Type":"container","Action":"destroy","Actor":{"ID":"abc"}}"#,
                Some(Event::Destroy("abc".into())),
            ),
            (
                r#"{"status":"start","id":"old"}"#,
                Some(Event::Start("old".into())),
            ),
            (
                r#"{"Type":"container","Action":"die","Actor":{"ID":"abc"}}"#,
                None,
            ),
            (
                r#"{"Type":"network","Action":"start","Actor":{"ID":"n"}}"#,
                None,
            ),
            ("not json", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_event(line.as_bytes()), want, "{line}");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut delay = EVENTS_BACKOFF.first;
        let mut seen = vec![delay];
        for _ in 0..10 {
            delay = EVENTS_BACKOFF.next(delay);
            seen.push(delay);
        }
        assert_eq!(seen[1], Duration::from_millis(1500));
        assert_eq!(*seen.last().unwrap(), Duration::from_secs(20));
    }
}
