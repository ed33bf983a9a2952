//! The Docker events watcher: releases the addresses and names of removed and dead containers.
//!
//! `destroy` frees a container's addresses at once (a run of `docker run --rm` in a small subnet
//! depends on it), `die` marks them dead and they are freed after the grace period unless `start`
//! arrives first (a restart keeps its address). The subscription is retried with backoff; after
//! each (re)connection the marks are re-synced with the containers that run, since events may
//! have been missed meanwhile. The decisions are [`classify`] and [`apply`], pure.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptionsBuilder;
use daemon::Backoff;
use futures_util::StreamExt as _;

use crate::dns::registry::Registry;
use crate::docker;
use crate::http_api::ApiState;
use crate::ipam::{Allocator, Released};

/// The container events the router reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Start,
    Die,
    Destroy,
}

/// The lifecycle event and full container id in `event`, if it is one we react to.
pub fn classify(event: &EventMessage) -> Option<(Lifecycle, &str)> {
    if event.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let what = match event.action.as_deref()? {
        "start" => Lifecycle::Start,
        "die" => Lifecycle::Die,
        "destroy" => Lifecycle::Destroy,
        _ => return None,
    };
    let id = event.actor.as_ref()?.id.as_deref()?;
    (!id.is_empty()).then_some((what, id))
}

/// What an event changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The id holds nothing the event is about.
    Nothing,
    MarkedDead,
    Revived,
    Released(Released),
}

/// Applies one lifecycle event for `id`, seen at `now`, to the allocator.
pub fn apply(alloc: &mut Allocator, what: Lifecycle, id: &str, now: Instant) -> Outcome {
    match what {
        Lifecycle::Die if alloc.dead_since(id).is_none() && alloc.mark_dead(id, now) => {
            Outcome::MarkedDead
        }
        Lifecycle::Start if alloc.revive(id) => Outcome::Revived,
        Lifecycle::Destroy => alloc
            .release_container(id)
            .map_or(Outcome::Nothing, Outcome::Released),
        _ => Outcome::Nothing,
    }
}

/// Delays between attempts to subscribe: 1 s, growing ×1.5 up to 20 s, as the original's.
fn subscribe_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(20))
}

/// How often marks are checked for expiry: every 5 s as the original, more often when the grace
/// period is shorter (tests shorten it), so an expiry is late by at most half the grace period.
pub fn sweep_period(grace: Duration) -> Duration {
    (grace / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Frees the addresses of containers dead for longer than `grace`, forever.
pub async fn sweep(state: ApiState, grace: Duration) {
    let mut tick = tokio::time::interval(sweep_period(grace));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.update(|alloc| alloc.expire_dead(Instant::now(), grace)) {
            Ok(freed) => {
                for released in freed {
                    log_release(&released, "container dead for longer than the grace period");
                }
            }
            Err(err) => tracing::error!(error = %err, "releasing addresses of dead containers"),
        }
    }
}

/// Follows Docker's container events forever, re-subscribing with a backoff when the stream
/// fails or ends (a daemon restart), and re-syncing the dead marks after each subscription.
pub async fn watch(docker: Docker, state: ApiState, names: Option<Registry>) -> ! {
    let mut backoff = subscribe_backoff();
    loop {
        // Subscribing from a moment before the re-sync replays what happens during it, so nothing
        // falls between the list of running containers and the live stream.
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(Duration::from_secs(1));
        match resync(&docker, &state, names.as_ref()).await {
            Ok(()) => backoff.reset(),
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %err, retry_in = ?delay, "cannot re-sync with Docker");
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["start", "die", "destroy"]),
        ]);
        let options = EventsOptionsBuilder::default()
            .since(&format!("{}.{:09}", since.as_secs(), since.subsec_nanos()))
            .filters(&filters)
            .build();
        let mut events = docker.events(Some(options));
        let ended = loop {
            match events.next().await {
                Some(Ok(event)) => {
                    on_event(&state, &event);
                    if let Some(names) = &names {
                        on_name_event(names, &event);
                    }
                }
                Some(Err(err)) => break format!("failed: {err}"),
                None => break "ended".to_owned(),
            }
        };
        let delay = backoff.next_delay();
        tracing::warn!(retry_in = ?delay, "Docker event stream {ended}; re-subscribing");
        tokio::time::sleep(delay).await;
    }
}

/// A container that died or was removed takes its names with it. Only names registered before
/// the event go: a restarted container's attach may register again before this event is read.
fn on_name_event(names: &Registry, event: &EventMessage) {
    let Some((Lifecycle::Die | Lifecycle::Destroy, id)) = classify(event) else {
        return;
    };
    let at = event
        .time_nano
        .and_then(|nanos| u64::try_from(nanos).ok())
        .map_or_else(SystemTime::now, |nanos| {
            UNIX_EPOCH + Duration::from_nanos(nanos)
        });
    let removed = names.remove_registered_before(id, at);
    if removed > 0 {
        tracing::info!(container = %id, removed, "[dns] names of a stopped container removed");
    }
}

fn on_event(state: &ApiState, event: &EventMessage) {
    let Some((what, id)) = classify(event) else {
        return;
    };
    match state.update(|alloc| apply(alloc, what, id, Instant::now())) {
        Ok(Outcome::Released(released)) => log_release(&released, "container destroyed"),
        Ok(Outcome::MarkedDead) => tracing::info!(
            container = %id,
            "container died; its addresses are kept until it starts again or the grace period ends"
        ),
        Ok(Outcome::Revived) => {
            tracing::info!(container = %id, "container started again; it keeps its addresses")
        }
        Ok(Outcome::Nothing) => tracing::debug!(container = %id, ?what, "event changes nothing"),
        Err(err) => {
            tracing::error!(container = %id, ?what, error = %err, "applying a Docker event")
        }
    }
}

async fn resync(
    docker: &Docker,
    state: &ApiState,
    names: Option<&Registry>,
) -> Result<(), docker::DockerError> {
    let listed_at = SystemTime::now();
    let running = docker::running_ids(docker).await?;
    // Names of containers that stopped while no events came in. A name registered after the
    // list was taken belongs to a container that has just started, and stays.
    if let Some(names) = names {
        for id in names.containers() {
            if running.contains(&id) {
                continue;
            }
            let removed = names.remove_registered_before(&id, listed_at);
            if removed > 0 {
                tracing::info!(container = %id, removed, "[dns] names of a container that no longer runs removed");
            }
        }
    }
    match state.update(|alloc| alloc.sync_running(&running, Instant::now())) {
        Ok(report) => {
            for id in &report.marked_dead {
                tracing::info!(container = %id, "container no longer runs; its addresses are released after the grace period");
            }
            for id in &report.revived {
                tracing::info!(container = %id, "container runs again; it keeps its addresses");
            }
        }
        Err(err) => tracing::error!(error = %err, "re-syncing with the running containers"),
    }
    Ok(())
}

fn log_release(released: &Released, why: &str) {
    let addrs: Vec<String> = released.cidrs.iter().map(ToString::to_string).collect();
    tracing::info!(container = %released.id, addrs = %addrs.join(" "), "released addresses: {why}");
}

#[cfg(test)]
mod tests {
    use bollard::models::EventActor;

    use super::*;

    fn event(typ: EventMessageTypeEnum, action: &str, id: &str) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.to_owned()),
            actor: Some(EventActor {
                id: Some(id.to_owned()),
                attributes: None,
            }),
            ..EventMessage::default()
        }
    }

    #[test]
    fn classify_picks_container_start_die_destroy() {
        use EventMessageTypeEnum::{CONTAINER, NETWORK};
        let cases = [
            (
                event(CONTAINER, "start", "abc"),
                Some((Lifecycle::Start, "abc")),
            ),
            (
                event(CONTAINER, "die", "abc"),
                Some((Lifecycle::Die, "abc")),
            ),
            (
                event(CONTAINER, "destroy", "abc"),
                Some((Lifecycle::Destroy, "abc")),
            ),
            (event(CONTAINER, "create", "abc"), None),
            (event(CONTAINER, "exec_die", "abc"), None),
            (event(NETWORK, "destroy", "abc"), None),
            (event(CONTAINER, "die", ""), None),
            (EventMessage::default(), None),
        ];
        for (event, want) in cases {
            assert_eq!(classify(&event), want, "{event:?}");
        }
    }

    #[test]
    fn apply_reports_what_changed() {
        let range = "10.32.0.0/12".parse().unwrap();
        let now = Instant::now();
        let mut a = Allocator::new(range, range).unwrap();
        a.allocate("c1", range, true).unwrap();
        let steps = [
            (Lifecycle::Start, "c1", Outcome::Nothing),
            (Lifecycle::Die, "c1", Outcome::MarkedDead),
            (Lifecycle::Die, "c1", Outcome::Nothing),
            (Lifecycle::Start, "c1", Outcome::Revived),
            (Lifecycle::Die, "nobody", Outcome::Nothing),
            (Lifecycle::Destroy, "nobody", Outcome::Nothing),
            (
                Lifecycle::Destroy,
                "c1",
                Outcome::Released(Released {
                    id: "c1".to_owned(),
                    cidrs: vec!["10.32.0.1/12".parse().unwrap()],
                }),
            ),
            (Lifecycle::Destroy, "c1", Outcome::Nothing),
        ];
        for (what, id, want) in steps {
            assert_eq!(apply(&mut a, what, id, now), want, "{what:?} {id}");
        }
    }

    #[test]
    fn sweep_period_is_five_seconds_or_half_a_short_grace() {
        let cases = [(30_000, 5_000), (10_000, 5_000), (2_000, 1_000), (50, 100)];
        for (grace, want) in cases {
            assert_eq!(
                sweep_period(Duration::from_millis(grace)),
                Duration::from_millis(want),
                "grace {grace} ms"
            );
        }
    }
}
