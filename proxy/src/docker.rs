//! The proxy's own calls to the Docker daemon (inspects, the events stream, the sweep's list, a
//! kill), made with bollard over the proxy's upstream pool and answered with typed errors.
//!
//! Client requests never come here: they go through [`Upstream::send`] byte for byte. These calls
//! share its connections (unix socket, TCP or TLS alike) through a bollard custom transport.
//!
//! API version: bollard 0.21 builds `http://docker/v1.53` and then joins the endpoint's absolute
//! path onto it, which drops the `/vX.Y` prefix, so its requests in fact go unversioned and the
//! daemon answers at its own version, as the proxy's own calls always did. The client version is
//! still set to the daemon's (read from an unversioned `GET /version`, never above it), so that a
//! bollard that does send the prefix never asks Docker 20.10 for 1.53, which it refuses.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerInspectResponse, ContainerSummary, EventMessage, ImageInspect, SystemVersion,
};
use bollard::query_parameters::{EventsOptionsBuilder, KillContainerOptions};
use bollard::{API_DEFAULT_VERSION, BollardRequest, ClientVersion, Docker};
use futures_util::{Stream, TryStreamExt};
use http::{Request, header};
use http_body_util::{BodyExt, Either, Full};
use thiserror::Error;
use tokio::sync::oneshot;

use crate::body::{self, ProxyBody};
use crate::images::{IMAGE_ACTIONS, ImageCache};
use crate::sync::lock;
use crate::upstream::{Upstream, UpstreamError};

/// How long a call waits for the head of the daemon's answer. bollard applies its client timeout
/// to the request future only, which resolves with the head: the body (the endless events stream
/// included) is never cut by it. The daemon answers the head of `/events` at once.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why one of the proxy's own calls to Docker failed.
#[derive(Debug, Error)]
pub enum DockerError {
    /// The daemon answered 404: no such container (or image).
    #[error("{message}")]
    NotFound {
        /// The daemon's message, as it wrote it.
        message: String,
    },
    /// The daemon answered with another error status.
    #[error("Docker answered {status}: {message}")]
    Daemon {
        /// The status code.
        status: u16,
        /// The daemon's message, as it wrote it.
        message: String,
    },
    /// The daemon could not be reached, or dropped the connection.
    #[error(transparent)]
    Unreachable(#[from] UpstreamError),
    /// The daemon did not answer within the time a call is given (two minutes).
    #[error("Docker did not answer within {0:?}")]
    Timeout(Duration),
    /// An answer the proxy could not read (not the documented JSON, cut off, a bad version).
    #[error("unexpected answer from Docker: {0}")]
    Unexpected(String),
}

impl From<BollardError> for DockerError {
    fn from(err: BollardError) -> Self {
        match err {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => Self::NotFound { message },
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => Self::Daemon {
                status: status_code,
                message,
            },
            BollardError::RequestTimeoutError => Self::Timeout(ANSWER_TIMEOUT),
            // The transport's own failure, carried through bollard as an I/O error.
            BollardError::IOError { err } => match err
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<UpstreamError>())
            {
                Some(upstream) => Self::Unreachable(upstream.clone()),
                None => Self::Unexpected(err.to_string()),
            },
            other => Self::Unexpected(other.to_string()),
        }
    }
}

/// The daemon, for the proxy's own calls; cheap to clone.
#[derive(Debug, Clone)]
pub struct DockerClient {
    upstream: Upstream,
    /// The client at the version agreed with the daemon; `None` until a call has reached it, and
    /// again after [`DockerClient::renegotiate`].
    negotiated: Arc<Mutex<Option<Negotiated>>>,
    /// Image configs read for creates, kept current by the events stream this client follows.
    images: ImageCache,
}

#[derive(Debug, Clone)]
struct Negotiated {
    docker: Docker,
    /// The version the proxy speaks: the daemon's, or bollard's newest if that is older.
    version: ClientVersion,
    /// The daemon's own API version, for the start-up log line.
    daemon_version: ClientVersion,
}

impl DockerClient {
    /// Calls through `upstream`'s pool; nothing is sent until the first call.
    pub fn new(upstream: Upstream) -> Self {
        Self {
            upstream,
            negotiated: Arc::new(Mutex::new(None)),
            images: ImageCache::default(),
        }
    }

    /// The image configs creates read, shared by every clone of this client.
    pub fn images(&self) -> &ImageCache {
        &self.images
    }

    /// Forgets the agreed version, so the next call asks the daemon again (after a reconnect,
    /// the daemon may be another version).
    pub fn renegotiate(&self) {
        *lock(&self.negotiated) = None;
    }

    /// The daemon's API version (`1.41`).
    ///
    /// # Errors
    /// When the daemon cannot be asked.
    pub async fn api_version(&self) -> Result<String, DockerError> {
        Ok(self.negotiated().await?.daemon_version.to_string())
    }

    /// `GET /containers/{container}/json`.
    ///
    /// # Errors
    /// [`DockerError::NotFound`] for no such container; any other failure.
    pub async fn inspect_container(
        &self,
        container: &str,
    ) -> Result<ContainerInspectResponse, DockerError> {
        let docker = self.docker().await?;
        Ok(docker.inspect_container(container, None).await?)
    }

    /// `GET /images/{reference}/json`, `reference` percent-encoded as one path run.
    ///
    /// # Errors
    /// [`DockerError::NotFound`] for no such image; any other failure.
    pub async fn inspect_image(&self, reference: &str) -> Result<ImageInspect, DockerError> {
        let docker = self.docker().await?;
        Ok(docker.inspect_image(reference).await?)
    }

    /// `GET /containers/json`: the running containers.
    ///
    /// # Errors
    /// Any failure.
    pub async fn running_containers(&self) -> Result<Vec<ContainerSummary>, DockerError> {
        let docker = self.docker().await?;
        Ok(docker.list_containers(None).await?)
    }

    /// `POST /containers/{container}/kill` with `SIGKILL`.
    ///
    /// # Errors
    /// [`DockerError::Daemon`] with 409 when it is not running; any other failure.
    pub async fn kill_container(&self, container: &str) -> Result<(), DockerError> {
        let docker = self.docker().await?;
        Ok(docker
            .kill_container(container, None::<KillContainerOptions>)
            .await?)
    }

    /// `GET /events` for container starts and removals and for whatever may re-point an image
    /// name (the actions of [`IMAGE_ACTIONS`]), from now on, for as long as the daemon
    /// keeps the stream open; with a signal that fires once the daemon has answered the request
    /// (bollard sends it when the stream is first polled, and yields nothing until an event).
    ///
    /// # Errors
    /// When the daemon cannot be asked; the stream's items fail when it breaks off.
    pub async fn container_events(
        &self,
    ) -> Result<
        (
            impl Stream<Item = Result<EventMessage, DockerError>> + use<>,
            oneshot::Receiver<()>,
        ),
        DockerError,
    > {
        let version = self.negotiated().await?.version;
        let (answered, signal) = oneshot::channel();
        let docker = self.connect(&version, Some(answered))?;
        let actions = ["start", "destroy"]
            .into_iter()
            .chain(IMAGE_ACTIONS)
            .collect();
        let filters = std::collections::HashMap::from([
            ("type", vec!["container", "image"]),
            ("event", actions),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let events = docker.events(Some(options)).map_err(DockerError::from);
        Ok((events, signal))
    }

    async fn docker(&self) -> Result<Docker, DockerError> {
        Ok(self.negotiated().await?.docker)
    }

    async fn negotiated(&self) -> Result<Negotiated, DockerError> {
        if let Some(negotiated) = lock(&self.negotiated).clone() {
            return Ok(negotiated);
        }
        // Two first calls at once both ask; the answers are the same.
        let daemon_version = self.daemon_version().await?;
        let version = if daemon_version < *API_DEFAULT_VERSION {
            daemon_version
        } else {
            *API_DEFAULT_VERSION
        };
        let negotiated = Negotiated {
            docker: self.connect(&version, None)?,
            version,
            daemon_version,
        };
        *lock(&self.negotiated) = Some(negotiated.clone());
        Ok(negotiated)
    }

    /// A bollard client at `version` over the pool; `answered` fires when the daemon has
    /// accepted a request (a success status in the head).
    fn connect(
        &self,
        version: &ClientVersion,
        answered: Option<oneshot::Sender<()>>,
    ) -> Result<Docker, DockerError> {
        let upstream = self.upstream.clone();
        let answered = Arc::new(Mutex::new(answered));
        Ok(Docker::connect_with_custom_transport(
            move |request: BollardRequest| {
                let (upstream, answered) = (upstream.clone(), Arc::clone(&answered));
                async move {
                    let response = send(&upstream, request).await?;
                    if response.status().is_success()
                        && let Some(answered) = lock(&answered).take()
                    {
                        let _ = answered.send(());
                    }
                    Ok(response)
                }
            },
            // Only the path and query reach the daemon; the connector ignores the host.
            Some("http://docker"),
            ANSWER_TIMEOUT.as_secs(),
            version,
        )?)
    }

    /// The daemon's API version, from `GET /version`. The path is unversioned on purpose: a
    /// daemon refuses any versioned path above its own version ("client version 1.53 is too
    /// new"), `/version` included, so bollard's own `negotiate_version`, which starts from its
    /// newest version, fails against Docker 20.10. Unversioned, the daemon answers at its own.
    async fn daemon_version(&self) -> Result<ClientVersion, DockerError> {
        let request = Request::get("/version")
            .header(header::HOST, "docker")
            .body(body::empty())
            .expect("the version request is valid");
        let answer = async {
            let response = self.upstream.send(request).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|err| self.upstream.failed(format!("reading GET /version: {err}")))?
                .to_bytes();
            Ok::<_, DockerError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(ANSWER_TIMEOUT, answer)
            .await
            .map_err(|_| DockerError::Timeout(ANSWER_TIMEOUT))??;
        let version = serde_json::from_slice::<SystemVersion>(&bytes)
            .ok()
            .and_then(|v| v.api_version);
        version
            .as_deref()
            .and_then(parse_api_version)
            .ok_or_else(|| {
                DockerError::Unexpected(format!(
                    "GET /version answered {status} with API version {version:?}"
                ))
            })
    }
}

/// Sends one of bollard's requests through the pool. The proxy's own calls have bodies in hand;
/// a streamed one would be collected first.
async fn send(
    upstream: &Upstream,
    request: BollardRequest,
) -> Result<http::Response<hyper::body::Incoming>, BollardError> {
    let (parts, body) = request.into_parts();
    let body: ProxyBody = match body {
        Either::Left(full) => full.map_err(|never| match never {}).boxed_unsync(),
        Either::Right(stream) => Full::new(stream.collect().await?.to_bytes())
            .map_err(|never| match never {})
            .boxed_unsync(),
    };
    upstream
        .send(Request::from_parts(parts, body))
        .await
        .map_err(|err| BollardError::IOError {
            err: std::io::Error::other(err),
        })
}

/// `1.41` → 1.41; anything else is `None`.
fn parse_api_version(text: &str) -> Option<ClientVersion> {
    let (major, minor) = text.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_api_versions() {
        let cases = [
            ("1.41", Some((1, 41))),
            ("1.45\r", Some((1, 45))),
            ("2.0", Some((2, 0))),
            ("1", None),
            ("1.x", None),
            ("", None),
            ("1.41.2", None),
        ];
        for (text, want) in cases {
            let got = parse_api_version(text).map(|v| (v.major_version, v.minor_version));
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn a_404_is_no_such_container_whatever_it_says() {
        let cases = [
            (404, "No such container: web", true),
            (404, "", true),
            (409, "Container web is not running", false),
            (500, "404 in the message", false),
        ];
        for (status_code, message, want) in cases {
            let err = DockerError::from(BollardError::DockerResponseServerError {
                status_code,
                message: message.to_owned(),
            });
            assert_eq!(
                matches!(err, DockerError::NotFound { .. }),
                want,
                "{status_code} {message}"
            );
        }
    }

    #[test]
    fn the_transports_failure_comes_back_as_unreachable() {
        let upstream = UpstreamError {
            addr: "unix:///var/run/docker.sock".into(),
            reason: "Connection refused (os error 111)".into(),
        };
        let err = DockerError::from(BollardError::IOError {
            err: std::io::Error::other(upstream),
        });
        assert!(matches!(err, DockerError::Unreachable(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("Cannot connect to the Docker daemon")
        );
        let cut = DockerError::from(BollardError::IOError {
            err: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        });
        assert!(matches!(cut, DockerError::Unexpected(_)), "{cut:?}");
    }

    const DOCKER_20_10: ClientVersion = ClientVersion {
        major_version: 1,
        minor_version: 41,
    };

    /// A daemon on a unix socket that answers as Docker 20.10 does (refusing any version above
    /// its own), and notes each request's path and query.
    async fn fake_daemon(dir: &std::path::Path) -> (Upstream, Arc<Mutex<Vec<String>>>) {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;

        let path = dir.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let noted = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let noted = Arc::clone(&noted);
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let target = request.uri().to_string();
                    lock(&noted).push(target);
                    let path = request.uri().path();
                    let too_new = path
                        .strip_prefix("/v")
                        .and_then(|rest| rest.split_once('/'))
                        .and_then(|(version, _)| parse_api_version(version))
                        .is_some_and(|version| version > DOCKER_20_10);
                    let (status, body) = match crate::route::strip_version(path) {
                        _ if too_new => (400, r#"{"message":"client version is too new"}"#),
                        "/version" => (200, r#"{"Version":"20.10.24","ApiVersion":"1.41"}"#),
                        "/containers/gone/json" => {
                            (404, r#"{"message":"No such container: gone"}"#)
                        }
                        "/events" => (
                            200,
                            concat!(
                                r#"{"Type":"container","Action":"start","Actor":{"ID":"abc"}}"#,
                                "\n"
                            ),
                        ),
                        _ => (404, r#"{"message":"page not found"}"#),
                    };
                    let response = http::Response::builder()
                        .status(status)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        let addr = api::DockerAddr::Unix(path);
        (Upstream::new(addr), seen)
    }

    /// The proxy's own calls speak the daemon's version (never bollard's newer default, which
    /// Docker 20.10 refuses), a 404 is `NotFound`, and the events stream is asked for with
    /// typed filters and read line by line.
    #[tokio::test]
    async fn own_calls_speak_the_daemons_version_through_the_pool() {
        use futures_util::StreamExt;

        let dir = tempfile::tempdir().unwrap();
        let (upstream, seen) = fake_daemon(dir.path()).await;
        let docker = DockerClient::new(upstream);
        assert_eq!(docker.api_version().await.unwrap(), "1.41");
        let gone = docker.inspect_container("gone").await.unwrap_err();
        assert!(
            matches!(gone, DockerError::NotFound { ref message } if message == "No such container: gone"),
            "{gone:?}"
        );
        let (events, answered) = docker.container_events().await.unwrap();
        let events: Vec<_> = events.collect().await;
        assert!(answered.await.is_ok(), "the answer is signalled");
        assert_eq!(events.len(), 1);
        let event = events.into_iter().next().unwrap().unwrap();
        assert_eq!(event.actor.and_then(|a| a.id).as_deref(), Some("abc"));

        let seen = lock(&seen).clone();
        let paths: Vec<&str> = seen
            .iter()
            .map(|line| line.split_once('?').map_or(line.as_str(), |(path, _)| path))
            .map(crate::route::strip_version)
            .collect();
        assert_eq!(
            paths,
            ["/version", "/containers/gone/json", "/events"],
            "{seen:?}"
        );
        let (_, query) = seen[2].split_once('?').unwrap();
        let filters: std::collections::HashMap<String, String> =
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        let filters: serde_json::Value = serde_json::from_str(&filters["filters"]).unwrap();
        assert_eq!(
            filters,
            serde_json::json!({
                "type": ["container", "image"],
                "event": ["start", "destroy", "tag", "untag", "delete", "pull", "load", "import",
                          "prune", "create", "commit"],
            })
        );
    }
}
