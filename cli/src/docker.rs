//! What `weave` asks Docker, through bollard: the state of its containers, creating, starting,
//! stopping and removing them, their logs, and running a command inside one.

use std::path::PathBuf;

use api::DockerAddr;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ExecConfig, Ipam,
    NetworkCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, InspectNetworkOptions,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::error::Error;

/// The socket a daemon reached over TCP is assumed to also serve, for the containers.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The daemon `weave` talks to (`DOCKER_HOST`, else the default socket).
#[derive(Debug, Clone)]
pub struct Docker {
    api: bollard::Docker,
    addr: DockerAddr,
}

impl Docker {
    /// Connects to `host` (a `DOCKER_HOST` value; empty means the default socket).
    ///
    /// # Errors
    /// A bad address, TLS (which this command does not speak: it runs beside the daemon), or a
    /// daemon that does not answer.
    pub async fn connect(host: &str) -> Result<Self, Error> {
        let host = if host.is_empty() {
            format!("unix://{DEFAULT_SOCKET}")
        } else {
            host.to_owned()
        };
        let addr = DockerAddr::parse(&host).map_err(|e| Error::Refused(e.to_string()))?;
        if matches!(addr, DockerAddr::Tcp(_))
            && std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty())
        {
            return Err(Error::Refused(format!(
                "DOCKER_HOST={host} with DOCKER_TLS_VERIFY: weave talks to Docker over its unix \
                 socket; run it on the Docker host with DOCKER_HOST unset"
            )));
        }
        let api = api::docker::connect(&addr)
            .await
            .map_err(|err| Error::DockerUnreachable {
                addr: err.addr,
                source: err.source,
            })?;
        Ok(Self { api, addr })
    }

    /// The daemon's socket on the host, which the launched containers mount. A daemon reached
    /// over TCP is also expected on the default socket, as the original assumed.
    pub fn socket(&self) -> PathBuf {
        match &self.addr {
            DockerAddr::Unix(path) => path.clone(),
            DockerAddr::Tcp(_) => PathBuf::from(DEFAULT_SOCKET),
        }
    }

    /// `DOCKER_HOST` as a client writes it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The container called `name`, if there is one.
    ///
    /// # Errors
    /// When Docker fails.
    pub async fn container(&self, name: &str) -> Result<Option<ContainerInspectResponse>, Error> {
        match self
            .api
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(found) => Ok(Some(found)),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Whether the image is present.
    ///
    /// # Errors
    /// When Docker fails.
    pub async fn has_image(&self, image: &str) -> Result<bool, Error> {
        match self.api.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Creates and starts container `name`; its id.
    ///
    /// # Errors
    /// When Docker refuses; a container created but not started is removed again.
    pub async fn create_and_start(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, Error> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = self.api.create_container(Some(options), body).await?;
        if let Err(err) = self.api.start_container(&created.id, None).await {
            let _ = self.remove(&created.id).await;
            return Err(err.into());
        }
        Ok(created.id)
    }

    /// Stops `name` (SIGTERM, then SIGKILL after `secs`); `false` when it was not running or
    /// there is no such container.
    ///
    /// # Errors
    /// When Docker fails.
    pub async fn stop(&self, name: &str, secs: i32) -> Result<bool, Error> {
        // Docker answers a stop of a stopped container with 304, which bollard reads as success.
        if !self.container(name).await?.is_some_and(|c| is_running(&c)) {
            return Ok(false);
        }
        let options = StopContainerOptionsBuilder::new().t(secs).build();
        match self.api.stop_container(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Removes `name` by force with its anonymous volumes; absent is fine.
    ///
    /// # Errors
    /// When Docker fails.
    pub async fn remove(&self, name: &str) -> Result<(), Error> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.api.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// The network driver of the network called `name`, if there is one.
    ///
    /// # Errors
    /// When Docker fails.
    pub async fn network_driver(&self, name: &str) -> Result<Option<String>, Error> {
        match self
            .api
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(found) => Ok(Some(found.driver.unwrap_or_default())),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The bridge of Docker's default network (`docker0` unless dockerd runs with another
    /// `--bridge`), when Docker names it.
    ///
    /// # Errors
    /// When Docker fails.
    pub async fn default_bridge(&self) -> Result<Option<String>, Error> {
        match self
            .api
            .inspect_network("bridge", None::<InspectNetworkOptions>)
            .await
        {
            Ok(found) => Ok(found
                .options
                .and_then(|mut o| o.remove("com.docker.network.bridge.name"))),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Creates the network `name` whose network and IPAM driver are both `driver`.
    ///
    /// # Errors
    /// When Docker refuses (the driver does not answer, the name is taken).
    pub async fn create_network(&self, name: &str, driver: &str) -> Result<(), Error> {
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some(driver.to_owned()),
            ipam: Some(Ipam {
                driver: Some(driver.to_owned()),
                ..Ipam::default()
            }),
            ..NetworkCreateRequest::default()
        };
        self.api.create_network(request).await?;
        Ok(())
    }

    /// Removes the network `name`; `false` when there was none.
    ///
    /// # Errors
    /// When Docker refuses (containers are still on it, its driver does not answer).
    pub async fn remove_network(&self, name: &str) -> Result<bool, Error> {
        match self.api.remove_network(name).await {
            Ok(()) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// The last `lines` lines of `name`'s output (both streams), for telling why it stopped.
    pub async fn logs_tail(&self, name: &str, lines: usize) -> String {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.api.logs(name, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&chunk.to_string());
        }
        text
    }

    /// Runs `cmd` in the running container `name`: its exit status, stdout and stderr.
    ///
    /// # Errors
    /// When Docker fails.
    pub async fn exec(&self, name: &str, cmd: Vec<String>) -> Result<Exec, Error> {
        let created = self
            .api
            .create_exec(
                name,
                ExecConfig {
                    cmd: Some(cmd),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await?;
        let mut out = Exec::default();
        if let StartExecResults::Attached { mut output, .. } = self
            .api
            .start_exec(&created.id, None::<StartExecOptions>)
            .await?
        {
            while let Some(chunk) = output.next().await {
                match chunk? {
                    bollard::container::LogOutput::StdErr { message } => {
                        out.stderr.push_str(&String::from_utf8_lossy(&message));
                    }
                    other => out.stdout.push_str(&other.to_string()),
                }
            }
        }
        out.code = self
            .api
            .inspect_exec(&created.id)
            .await?
            .exit_code
            .unwrap_or(-1);
        Ok(out)
    }

    /// The bollard client, for the calls only one command makes.
    pub fn api(&self) -> &bollard::Docker {
        &self.api
    }
}

/// What a command run with [`Docker::exec`] did.
#[derive(Debug, Default, Clone)]
pub struct Exec {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Docker's state word for a container: running, restarting, exited, created, paused, dead.
pub fn state(container: &ContainerInspectResponse) -> String {
    container
        .state
        .as_ref()
        .and_then(|s| s.status)
        .map_or_else(|| "unknown".to_owned(), |s| s.to_string())
}

/// Whether the container runs (and is not restarting).
pub fn is_running(container: &ContainerInspectResponse) -> bool {
    container.state.as_ref().is_some_and(|s| {
        s.status == Some(ContainerStateStatusEnum::RUNNING) && s.restarting != Some(true)
    })
}

fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
