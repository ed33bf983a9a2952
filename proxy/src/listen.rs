//! Binding the proxy's listening sockets: unix sockets that behave like Docker's own, and TCP,
//! optionally with TLS.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio_rustls::TlsAcceptor;

use crate::socket::Stream;
use api::DockerAddr;

/// Why a listening socket could not be set up.
#[derive(Debug, Error)]
pub enum ListenError {
    /// Another live process accepts connections on this socket; taking it over would cut it off.
    #[error(
        "{path}: another process is already listening on this socket (stop it, or choose another -H)"
    )]
    InUse { path: PathBuf },
    /// Something that is not a socket is in the way.
    #[error("{path}: exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    /// Any other failure, with what was being done.
    #[error("{action} {target}: {error}")]
    Io {
        action: &'static str,
        target: String,
        error: io::Error,
    },
}

/// A bound listening socket.
pub enum Listener {
    /// A unix socket; its file is removed when the listener is dropped.
    Unix {
        /// The bound listener.
        listener: UnixListener,
        /// Removes the socket file when the proxy stops.
        file: SocketFile,
    },
    /// A TCP socket.
    Tcp {
        /// The bound listener.
        listener: TcpListener,
        /// With `--tls` or `--tlsverify`: what every client must shake hands with first.
        tls: Option<TlsAcceptor>,
    },
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix { listener, file } => f
                .debug_struct("Unix")
                .field("listener", listener)
                .field("file", file)
                .finish(),
            Self::Tcp { listener, tls } => f
                .debug_struct("Tcp")
                .field("listener", listener)
                .field("tls", &tls.is_some())
                .finish(),
        }
    }
}

/// A client just accepted, which a TLS listener's client still owes its handshake.
///
/// The handshake is left to [`Accepted::establish`], in the connection's own task: done in the
/// accept loop, one slow or silent client would hold up everyone behind it.
pub enum Accepted {
    /// A unix or plain TCP client, ready to serve.
    Plain(Stream),
    /// A TCP client of a TLS listener.
    Tls {
        /// The connection, before the handshake.
        tcp: TcpStream,
        /// The listener's TLS settings.
        acceptor: TlsAcceptor,
    },
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plain(stream) => f.debug_tuple("Plain").field(stream).finish(),
            Self::Tls { tcp, .. } => f.debug_struct("Tls").field("tcp", tcp).finish(),
        }
    }
}

impl Accepted {
    /// Whether [`Accepted::establish`] has a TLS handshake to do.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls { .. })
    }

    /// The client's address, for logs: `None` on a unix socket.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Plain(Stream::Tcp(tcp)) | Self::Tls { tcp, .. } => tcp.peer_addr().ok(),
            Self::Plain(_) => None,
        }
    }

    /// The stream to serve HTTP on, after the TLS handshake if the listener has TLS.
    ///
    /// # Errors
    /// The handshake's failure: a client without an acceptable certificate under
    /// `--tlsverify`, a client speaking plain HTTP, or one that hung up.
    pub async fn establish(self) -> io::Result<Stream> {
        match self {
            Self::Plain(stream) => Ok(stream),
            Self::Tls { tcp, acceptor } => {
                let _ = tcp.set_nodelay(true);
                Ok(Stream::from(acceptor.accept(tcp).await?))
            }
        }
    }
}

impl Listener {
    /// Binds `addr`. A unix socket's parent directory is created, a stale socket file left by a
    /// dead process is replaced, and the owner, group and mode are copied from `template` (the
    /// Docker socket), so that whoever may use Docker may use the proxy.
    ///
    /// # Errors
    /// [`ListenError::InUse`] when a live process serves the socket path, and the I/O errors of
    /// creating, binding and chowning.
    pub async fn bind(addr: &DockerAddr, template: Option<&Path>) -> Result<Self, ListenError> {
        match addr {
            DockerAddr::Tcp(host_port) => {
                let listener = TcpListener::bind(host_port.as_str())
                    .await
                    .map_err(|error| ListenError::Io {
                        action: "listen on",
                        target: addr.to_string(),
                        error,
                    })?;
                Ok(Self::Tcp {
                    listener,
                    tls: None,
                })
            }
            DockerAddr::Unix(path) => bind_unix(path, template),
        }
    }

    /// Serves TLS with `acceptor` on a TCP listener. A unix socket stays plain whatever is
    /// given, as Docker's own and the original proxy's do: its file permissions are its
    /// access control.
    #[must_use]
    pub fn with_tls(self, acceptor: Option<TlsAcceptor>) -> Self {
        match self {
            Self::Tcp { listener, .. } => Self::Tcp {
                listener,
                tls: acceptor,
            },
            unix @ Self::Unix { .. } => unix,
        }
    }

    /// Whether clients must speak TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tcp { tls: Some(_), .. })
    }

    /// The address actually bound (a TCP port 0 becomes the real port).
    pub fn local_addr(&self) -> DockerAddr {
        match self {
            Self::Unix { file, .. } => DockerAddr::Unix(file.path.clone()),
            Self::Tcp { listener, .. } => match listener.local_addr() {
                Ok(addr) => DockerAddr::Tcp(addr.to_string()),
                Err(_) => DockerAddr::Tcp("unknown".into()),
            },
        }
    }

    /// Waits for the next client.
    ///
    /// # Errors
    /// The accept error; the caller decides whether it is worth retrying.
    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Self::Unix { listener, .. } => {
                Ok(Accepted::Plain(Stream::from(listener.accept().await?.0)))
            }
            Self::Tcp { listener, tls } => {
                let tcp = listener.accept().await?.0;
                Ok(match tls {
                    Some(acceptor) => Accepted::Tls {
                        tcp,
                        acceptor: acceptor.clone(),
                    },
                    None => Accepted::Plain(Stream::from(tcp)),
                })
            }
        }
    }
}

/// The socket file of a unix listener, removed on drop if it is still ours.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    inode: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Another proxy may have replaced our file after we were told to stop; leave theirs.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Maps an I/O error on `target` during `action` (for `map_err`).
fn io_err(action: &'static str, target: &Path) -> impl FnOnce(io::Error) -> ListenError {
    let target = target.display().to_string();
    move |error| ListenError::Io {
        action,
        target,
        error,
    }
}

fn bind_unix(path: &Path, template: Option<&Path>) -> Result<Listener, ListenError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    remove_stale_socket(path)?;
    let listener = UnixListener::bind(path).map_err(io_err("listen on", path))?;
    let inode = std::fs::symlink_metadata(path)
        .map_err(io_err("stat", path))?
        .ino();
    let file = SocketFile {
        path: path.to_owned(),
        inode,
    };
    match template.map(std::fs::metadata) {
        Some(Ok(meta)) => copy_access(&meta, path)?,
        // The daemon may not be up yet; its socket's permissions are then unknown, and the
        // proxy's socket keeps the default ones rather than refusing to start.
        Some(Err(err)) => tracing::warn!(
            template = %template.unwrap_or(path).display(),
            error = %err,
            "cannot copy the Docker socket's owner and mode; keeping the defaults"
        ),
        None => {}
    }
    Ok(Listener::Unix { listener, file })
}

/// Removes a socket file nobody listens on any more; refuses to touch a live one.
fn remove_stale_socket(path: &Path) -> Result<(), ListenError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_err("stat", path)(error)),
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ListenError::InUse {
            path: path.to_owned(),
        }),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(io_err("remove stale socket", path))
        }
        Err(error) => Err(io_err("probe existing socket", path)(error)),
    }
}

/// Gives `path` the owner, group and permission bits of the file `meta` describes.
fn copy_access(meta: &std::fs::Metadata, path: &Path) -> Result<(), ListenError> {
    std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()))
        .map_err(io_err("chown", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err("chmod", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_parent_and_removes_file_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/weave.sock");
        let listener = Listener::bind(&DockerAddr::Unix(path.clone()), None)
            .await
            .unwrap();
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        drop(listener);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn replaces_a_stale_socket_but_not_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weave.sock");
        // A socket file whose listener is gone, as after a crash.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = Listener::bind(&DockerAddr::Unix(path.clone()), None)
            .await
            .unwrap();
        let err = Listener::bind(&DockerAddr::Unix(path.clone()), None)
            .await
            .unwrap_err();
        assert!(matches!(err, ListenError::InUse { .. }), "{err}");
        drop(live);
    }

    #[tokio::test]
    async fn refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        std::fs::write(&path, "keep me").unwrap();
        let err = Listener::bind(&DockerAddr::Unix(path.clone()), None)
            .await
            .unwrap_err();
        assert!(matches!(err, ListenError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[tokio::test]
    async fn copies_owner_group_and_mode_from_the_template() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("docker.sock");
        std::fs::write(&template, "").unwrap();
        std::fs::set_permissions(&template, std::fs::Permissions::from_mode(0o640)).unwrap();
        // As root (as the proxy runs), give the template a group of its own, like `docker`,
        // so that copying it is visible; otherwise the file keeps the caller's group.
        let _ = std::os::unix::fs::chown(&template, None, Some(4242));
        let path = dir.path().join("weave.sock");
        let _listener = Listener::bind(&DockerAddr::Unix(path.clone()), Some(&template))
            .await
            .unwrap();
        let (want, got) = (
            std::fs::metadata(&template).unwrap(),
            std::fs::metadata(&path).unwrap(),
        );
        assert_eq!(got.mode() & 0o7777, 0o640);
        assert_eq!((got.uid(), got.gid()), (want.uid(), want.gid()));
    }

    #[tokio::test]
    async fn reports_the_bound_tcp_port() {
        let listener = Listener::bind(&DockerAddr::Tcp("127.0.0.1:0".into()), None)
            .await
            .unwrap();
        let DockerAddr::Tcp(addr) = listener.local_addr() else {
            panic!("not tcp");
        };
        assert!(!addr.ends_with(":0"), "{addr}");
    }
}
