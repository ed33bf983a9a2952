//! Everything `weave` can fail with, and the exit status each gives.

use api::RouterError;

use crate::spec::SpecError;

/// A failed command; its text says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command cannot be done as asked (already running, bad arguments).
    #[error("{0}")]
    Refused(String),
    /// A container the command needs is absent or stopped.
    #[error("{0}")]
    NotRunning(String),
    /// A launched program did not come up.
    #[error("{0}")]
    Failed(String),
    #[error("cannot reach Docker at {addr}: {source}; is dockerd running, and DOCKER_HOST right?")]
    DockerUnreachable {
        addr: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("Docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Net(#[from] weavenet::NetError),
}

impl From<weavenet::sequence::AttachError> for Error {
    fn from(err: weavenet::sequence::AttachError) -> Self {
        use weavenet::sequence::AttachError;
        match err {
            AttachError::Router(err) => Self::Router(err),
            AttachError::Net(err) => Self::Net(err),
            other => Self::Failed(other.to_string()),
        }
    }
}

impl Error {
    /// The exit status: 2 when something is not running (as the original's `check_running`),
    /// 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotRunning(_) => 2,
            _ => 1,
        }
    }
}
