//! The proxy's own errors, and the one place they become HTTP responses.
//!
//! Daemon errors are never wrapped: they pass through with their status and body. Only failures
//! of the proxy itself end up here, and they are answered in Docker's own error shape,
//! `{"message": "..."}`, which the docker CLI, docker-py and bollard all parse.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use thiserror::Error;

use crate::attach::AttachError;
use crate::body::ProxyBody;
use crate::docker::DockerError;
use crate::upstream::UpstreamError;
use api::CidrError;

/// A failure of the proxy, as opposed to an error answer from the daemon.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// The Docker daemon could not be reached, or dropped the connection before answering.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// One of the proxy's own calls to Docker failed (the image inspect before a create).
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Taking over the upstream connection for a raw stream failed.
    #[error("could not hijack the connection to the Docker daemon at {addr}: {reason}")]
    Hijack { addr: String, reason: String },
    /// A `WEAVE_CIDR` that is none of the accepted forms; nothing was created.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// A body the proxy must rewrite is larger than it will hold in memory.
    #[error("request body over {limit} bytes: too large for the weave proxy to rewrite")]
    BodyTooLarge { limit: usize },
    /// The daemon started the container but it could not join the weave network; it has been
    /// stopped again.
    #[error(
        "weave: container {container} could not be attached to the weave network and was stopped: {source}"
    )]
    Attach {
        container: String,
        #[source]
        source: AttachError,
    },
    /// The container's hostname could not be derived (a `--hostname-from-label` label that is
    /// not a string); nothing was created.
    #[error("weave: {0}")]
    Naming(String),
    /// The client's request body could not be read to the end.
    #[error("could not read the request body: {reason}")]
    ClientBody { reason: String },
}

impl ProxyError {
    /// The status Docker would use for this kind of failure.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Upstream(_) | Self::Hijack { .. } => StatusCode::BAD_GATEWAY,
            Self::Cidr(_) | Self::Naming(_) | Self::ClientBody { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Attach { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Docker(err) => match err {
                DockerError::NotFound { .. } => StatusCode::NOT_FOUND,
                DockerError::Daemon { status, .. } => {
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                DockerError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                DockerError::Unreachable(_) | DockerError::Unexpected(_) => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// The Docker-shaped response for this error.
    pub fn into_response(self) -> Response<ProxyBody> {
        match &self {
            // The daemon's own error for one of the proxy's calls reaches the client as the
            // daemon said it.
            Self::Docker(
                DockerError::NotFound { message } | DockerError::Daemon { message, .. },
            ) => docker_error(self.status(), message),
            _ => docker_error(self.status(), &self.to_string()),
        }
    }
}

/// A response in the daemon's error shape: `{"message":"..."}` with `application/json`.
pub fn docker_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "message": message }).to_string() + "\n";
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_have_dockers_shape() {
        let err = ProxyError::Upstream(UpstreamError {
            addr: "unix:///var/run/docker.sock".into(),
            reason: "No such file or directory (os error 2)".into(),
        });
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let message = json["message"].as_str().unwrap();
        assert!(message.contains("unix:///var/run/docker.sock"), "{message}");
        assert_eq!(json.as_object().unwrap().len(), 1);
    }
}
