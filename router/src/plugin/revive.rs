//! After a daemon restart: starting again the containers whose restart Docker gave up on because
//! the plugin was not there yet.
//!
//! When dockerd starts it restarts the containers whose restart policy says so, the router among
//! them. A container on a network of the plugin that Docker gets to before the router serves the
//! plugin waits for it a while, then fails with `plugin "weave" not found` and stays exited:
//! Docker does not try again. Once the plugin answers, the router starts those, and only those:
//! a restart policy that wants the container running (`always`, `unless-stopped`) and a last
//! error naming this plugin, so that a container a user stopped stays stopped.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, RestartPolicyNameEnum};
use bollard::query_parameters::ListContainersOptionsBuilder;

/// When to look, after the plugin starts serving: Docker may still be failing starts that were
/// already waiting when it came up.
const LOOKS: [Duration; 4] = [
    Duration::from_secs(0),
    Duration::from_secs(10),
    Duration::from_secs(20),
    Duration::from_secs(30),
];

/// Whether `container` is one Docker meant to run but could not start for want of the plugin
/// `driver`.
pub fn gave_up_for_plugin(container: &ContainerInspectResponse, driver: &str) -> bool {
    let wants_running = container
        .host_config
        .as_ref()
        .and_then(|hc| hc.restart_policy.as_ref())
        .and_then(|policy| policy.name)
        .is_some_and(|name| {
            matches!(
                name,
                RestartPolicyNameEnum::ALWAYS | RestartPolicyNameEnum::UNLESS_STOPPED
            )
        });
    let state = container.state.as_ref();
    let running = state.and_then(|s| s.running).unwrap_or(false);
    let error = state.and_then(|s| s.error.as_deref()).unwrap_or_default();
    wants_running && !running && error.contains(&format!("plugin \"{driver}\" not found"))
}

/// Looks a few times (see [`LOOKS`]) for containers Docker gave up on for want of the plugin
/// `driver`, and starts them.
pub async fn restart_given_up(docker: Docker, driver: String) {
    let mut waited = Duration::ZERO;
    for at in LOOKS {
        tokio::time::sleep(at.saturating_sub(waited)).await;
        waited = at;
        if let Err(err) = look_once(&docker, &driver).await {
            tracing::warn!(error = %err, "[plugin] cannot ask Docker for containers to start again");
        }
    }
}

async fn look_once(docker: &Docker, driver: &str) -> Result<(), bollard::errors::Error> {
    let filters = HashMap::from([("status", vec!["exited", "created"])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    for summary in docker.list_containers(Some(options)).await? {
        let Some(id) = summary.id else { continue };
        let Ok(container) = docker.inspect_container(&id, None).await else {
            continue;
        };
        if !gave_up_for_plugin(&container, driver) {
            continue;
        }
        let name = container.name.unwrap_or_default();
        match docker.start_container(&id, None).await {
            Ok(()) => {
                tracing::info!(container = %name, "[plugin] started a container Docker gave up on while the plugin was away")
            }
            Err(err) => {
                tracing::warn!(container = %name, error = %err, "[plugin] could not start a container Docker gave up on")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerState, HostConfig, RestartPolicy};

    use super::*;

    fn container(
        policy: RestartPolicyNameEnum,
        running: bool,
        error: &str,
    ) -> ContainerInspectResponse {
        ContainerInspectResponse {
            host_config: Some(HostConfig {
                restart_policy: Some(RestartPolicy {
                    name: Some(policy),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            state: Some(ContainerState {
                running: Some(running),
                error: Some(error.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_containers_meant_to_run_that_failed_for_this_plugin_are_started() {
        use RestartPolicyNameEnum::{ALWAYS, NO, ON_FAILURE, UNLESS_STOPPED};
        let missing = "error while mounting: plugin \"weave\" not found";
        let cases = [
            (ALWAYS, false, missing, true),
            (UNLESS_STOPPED, false, missing, true),
            // A user's own choice, or a plugin of another name.
            (NO, false, missing, false),
            (ON_FAILURE, false, missing, false),
            (ALWAYS, false, "", false),
            (ALWAYS, false, "plugin \"other\" not found", false),
            // Already running.
            (ALWAYS, true, missing, false),
        ];
        for (policy, running, error, wanted) in cases {
            assert_eq!(
                gave_up_for_plugin(&container(policy, running, error), "weave"),
                wanted,
                "{policy:?} running {running} error {error:?}"
            );
        }
    }
}
