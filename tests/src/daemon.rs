//! Which Docker daemon the suite runs against.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The environment variable naming the daemon under test (`unix:///path/to/docker.sock`).
pub const TARGET_ENV: &str = "WEAVE_TEST_DOCKER";

/// The daemon every test uses: `WEAVE_TEST_DOCKER`, or the machine's own socket.
pub fn target_daemon() -> String {
    std::env::var(TARGET_ENV).unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}

/// The unix socket path of the target daemon.
pub fn target_socket() -> PathBuf {
    let target = target_daemon();
    PathBuf::from(
        target
            .strip_prefix("unix://")
            .unwrap_or_else(|| panic!("{TARGET_ENV}={target}: only unix:// daemons are supported")),
    )
}

/// The docker-compose programs to test with: Debian's v1 (`docker-compose` on PATH) and, when
/// `WEAVE_TEST_COMPOSE_V2` names it, Compose v2.
pub fn compose_programs() -> Vec<String> {
    let mut programs = vec!["docker-compose".to_owned()];
    if let Some(v2) = std::env::var("WEAVE_TEST_COMPOSE_V2")
        .ok()
        .filter(|v| !v.is_empty())
    {
        programs.push(v2);
    }
    programs
}

/// Why the target daemon cannot be put through mass container churn, if it cannot. Docker before
/// 20.10.27 can deadlock in libnetwork when one container joins or leaves a network while
/// another's endpoint is deleted (moby/moby#46661, fixed by moby/libnetwork#2679); after that
/// every call to the daemon hangs, and so would the rest of the suite. The load tests that start
/// and remove thousands of containers run against a fixed daemon only.
pub fn churn_deadlock() -> Option<String> {
    let version = crate::Docker::daemon()
        .run(&["version", "--format", "{{.Server.Version}}"])
        .ok()
        .stdout;
    let version = version.trim();
    deadlocks_under_churn(version).then(|| {
        format!(
            "not run against Docker {version}: its libnetwork deadlocks under mass container \
             churn (moby/moby#46661, fixed in 20.10.27); scripts/test.sh runs it against Docker 26"
        )
    })
}

/// Whether a daemon of this version (`20.10.24+dfsg1`, `26.1.5`) has that deadlock.
fn deadlocks_under_churn(version: &str) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) => (major, minor, patch) < (20, 10, 27),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::deadlocks_under_churn;

    #[test]
    fn versions_with_the_libnetwork_deadlock() {
        for (version, affected) in [
            ("20.10.24+dfsg1", true),
            ("20.10.26", true),
            ("19.03.15", true),
            ("20.10.27", false),
            ("26.1.5+dfsg1", false),
            ("28.2.2", false),
            ("", false),
            ("dev", false),
        ] {
            assert_eq!(deadlocks_under_churn(version), affected, "{version}");
        }
    }
}

/// A TCP front for the target daemon's unix socket that a test can cut, as if the daemon went
/// away: a client of `tcp://<addr>` then sees its connections end and new ones refused.
#[derive(Debug)]
pub struct DockerRelay {
    addr: String,
    shared: Arc<RelayShared>,
}

#[derive(Debug, Default)]
struct RelayShared {
    down: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
}

impl DockerRelay {
    /// Relays to the target daemon (which must be a unix socket).
    pub fn start() -> Self {
        let socket = target_socket();
        let listener = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
        let addr = listener.local_addr().expect("bound").to_string();
        let shared = Arc::new(RelayShared::default());
        let state = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if state.down.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is reset
                }
                let Ok(daemon) = UnixStream::connect(&socket) else {
                    continue;
                };
                let (Ok(c_read), Ok(d_read), Ok(tracked)) =
                    (client.try_clone(), daemon.try_clone(), client.try_clone())
                else {
                    continue;
                };
                state.open.lock().expect("not poisoned").push(tracked);
                relay_half(c_read, daemon, |d| d.shutdown(Shutdown::Write));
                relay_half(d_read, client, |c| c.shutdown(Shutdown::Both));
            }
        });
        Self { addr, shared }
    }

    /// `tcp://<addr>`.
    pub fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Ends every open connection and refuses new ones until [`DockerRelay::up`].
    pub fn down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        for stream in self.shared.open.lock().expect("not poisoned").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Relays again.
    pub fn up(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` into `to` on a thread of its own, then shuts `to` down with `close`.
fn relay_half<R, W>(mut from: R, mut to: W, close: fn(&W) -> std::io::Result<()>)
where
    R: std::io::Read + Send + 'static,
    W: std::io::Write + Send + 'static,
{
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = close(&to);
    });
}
