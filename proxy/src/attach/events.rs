//! Docker's container events, for containers started without the proxy, and the sweep over the
//! running containers when the proxy starts and after every reconnect to the events stream; and
//! the image events that keep the proxy's [`ImageCache`](crate::images::ImageCache) current.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use daemon::Backoff;

use super::{Attacher, Outcome, Trigger};
use crate::docker::{DockerClient, DockerError};
use crate::images;
use crate::weavecontainer::WEAVEWAIT;

/// Reconnecting to the events stream: from 1 s, ×1.5, up to 20 s, as the original.
fn events_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(20))
}

/// Retrying a container the sweep could not attach (usually: the router is not up yet).
fn sweep_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(2), Duration::from_secs(60))
}

/// A container event the proxy acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The container with this id started.
    Start(String),
    /// The container with this id was removed.
    Destroy(String),
    /// An image name may now mean another image (a tag, an untag, a pull, a commit...).
    ImagesChanged,
}

/// Reads one of Docker's events; other types and other actions are `None`.
pub fn parse_event(event: &EventMessage) -> Option<Event> {
    // A missing type is read as a container's, as before API 1.22.
    let typ = match event.typ {
        None | Some(EventMessageTypeEnum::CONTAINER) => "container",
        Some(EventMessageTypeEnum::IMAGE) => "image",
        Some(_) => return None,
    };
    if images::invalidates_names(typ, event.action.as_deref()?) {
        return Some(Event::ImagesChanged);
    }
    if typ != "container" {
        return None;
    }
    let id = event
        .actor
        .as_ref()?
        .id
        .as_deref()
        .filter(|id| !id.is_empty())?
        .to_owned();
    match event.action.as_deref()? {
        "start" => Some(Event::Start(id)),
        "destroy" => Some(Event::Destroy(id)),
        _ => None,
    }
}

/// Follows Docker's events for as long as the proxy runs, reconnecting with backoff. Every
/// (re)connection is followed by a sweep, so starts missed while disconnected are caught.
pub async fn watch(attacher: Attacher, docker: DockerClient) {
    let sweeper = Sweeper::default();
    let mut backoff = events_backoff();
    loop {
        let connected = tokio::time::Instant::now();
        let followed = follow(&attacher, &docker, &sweeper).await;
        // Events are missed from here until the next subscription.
        docker.images().set_following(false);
        match followed {
            // A stream that ran for a while ended (the daemon restarted): reconnect at once.
            Ok(()) if connected.elapsed() >= backoff.max() => {
                info!("Docker events stream ended; reconnecting");
                backoff.reset();
            }
            // One that ends as soon as it opens (something that is not quite Docker answers
            // 200 and closes) would otherwise be a busy loop of reconnects and sweeps.
            Ok(()) => {
                let delay = backoff.next_delay();
                info!(retry_in = ?delay, "Docker events stream ended at once");
                tokio::time::sleep(delay).await;
            }
            Err(reason) => {
                let delay = backoff.next_delay();
                warn!(%reason, retry_in = ?delay, "Docker events stream unavailable");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn follow(
    attacher: &Attacher,
    docker: &DockerClient,
    sweeper: &Sweeper,
) -> Result<(), DockerError> {
    // A stream that ended may mean a daemon that restarted, perhaps at another version.
    docker.renegotiate();
    let (events, answered) = docker.container_events().await?;
    let mut events = std::pin::pin!(events);
    // bollard sends the request when the stream is first polled, and the stream yields nothing
    // until an event: the daemon's answer to the request is signalled on its own.
    let first = tokio::select! {
        next = events.next() => Some(next),
        Ok(()) = answered => None,
    };
    let mut early = match first {
        Some(Some(Err(err))) => return Err(err),
        other => other,
    };
    debug!("following Docker events");
    // Subscribed: every event that re-points a name from now on is seen.
    docker.images().set_following(true);
    // Subscribed first, swept second: a start between the two is seen twice, never missed.
    tokio::spawn(sweeper.clone().sweep(attacher.clone(), docker.clone()));
    loop {
        let next = match early.take() {
            Some(next) => next,
            None => events.next().await,
        };
        let Some(event) = next else {
            break;
        };
        match parse_event(&event?) {
            Some(Event::Start(id)) => {
                let attacher = attacher.clone();
                tokio::spawn(async move { attacher.on_start_event(&id).await });
            }
            Some(Event::Destroy(id)) => attacher.forget(&id),
            Some(Event::ImagesChanged) => docker.images().invalidate_names(),
            None => {}
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
    async fn sweep(self, attacher: Attacher, docker: DockerClient) {
        let ids = match running_weave_containers(&docker).await {
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
        let mut backoff = sweep_backoff();
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
                    let delay = backoff.next_delay();
                    warn!(
                        container = %super::short(id),
                        error = %failure.error,
                        retry_in = ?delay,
                        "could not attach a running container"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Ids of running containers whose command starts with `/w/w`.
async fn running_weave_containers(docker: &DockerClient) -> Result<Vec<String>, DockerError> {
    Ok(docker
        .running_containers()
        .await?
        .into_iter()
        .filter(|c| {
            c.command
                .as_deref()
                .is_some_and(|cmd| cmd == WEAVEWAIT || cmd.starts_with("/w/w "))
        })
        .filter_map(|c| c.id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_events_the_proxy_acts_on() {
        let cases: [(&str, Option<Event>); 10] = [
            (
                r#"{"Type":"image","Action":"tag","Actor":{"ID":"sha256:ab","Attributes":{"name":"app:v1"}}}"#,
                Some(Event::ImagesChanged),
            ),
            (
                r#"{"Type":"container","Action":"commit","Actor":{"ID":"abc"}}"#,
                Some(Event::ImagesChanged),
            ),
            (
                r#"{"Type":"image","Action":"push","Actor":{"ID":"app:v1"}}"#,
                None,
            ),
            (
                r#"{"status":"start","id":"abc","Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{}}}"#,
                Some(Event::Start("abc".into())),
            ),
            (
                r#"{"Type":"container","Action":"destroy","Actor":{"ID":"abc"}}"#,
                Some(Event::Destroy("abc".into())),
            ),
            (
                r#"{"Action":"start","Actor":{"ID":"untyped"}}"#,
                Some(Event::Start("untyped".into())),
            ),
            (
                r#"{"Type":"container","Action":"die","Actor":{"ID":"abc"}}"#,
                None,
            ),
            (
                r#"{"Type":"network","Action":"start","Actor":{"ID":"n"}}"#,
                None,
            ),
            (
                r#"{"Type":"container","Action":"start","Actor":{"ID":""}}"#,
                None,
            ),
            (r#"{"Type":"container","Action":"start"}"#, None),
        ];
        for (line, want) in cases {
            let event: EventMessage = serde_json::from_str(line).unwrap();
            assert_eq!(parse_event(&event), want, "{line}");
        }
    }
}
