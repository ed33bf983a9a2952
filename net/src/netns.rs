//! Running netlink work inside a container's network namespace.
//!
//! `setns` moves only the calling thread, and a netlink socket belongs to the namespace of the
//! thread that opens it; so each piece of work gets a fresh thread that enters the namespace,
//! builds a current-thread runtime, and ends with the work. No pooled thread ever changes
//! namespace, which keeps the caller's runtime in the host's.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;

use nix::sched::{CloneFlags, setns};

use crate::NetError;
use crate::process::Process;

/// A container's network namespace, held open so it stays the same namespace even if the
/// process exits while an attach is under way.
#[derive(Debug)]
pub(crate) struct Netns {
    pid: i32,
    file: File,
}

impl Netns {
    /// Opens the network namespace of the pinned `process`. A namespace that is the caller's own
    /// is refused: attaching there would put `ethwe` on the host (a `--net=host` container).
    pub(crate) fn open(process: &Process) -> Result<Self, NetError> {
        let pid = process.pid();
        let ns_err = |source| NetError::Namespace { pid, source };
        let file = process.open_proc("ns/net")?;
        let theirs = file.metadata().map_err(ns_err)?;
        // thread-self, not self: /proc/self is the main thread, whose namespace is not
        // necessarily the one this (runtime) thread opens its netlink sockets in.
        let ours = std::fs::metadata("/proc/thread-self/ns/net").map_err(ns_err)?;
        if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
            return Err(ns_err(io::Error::other(
                "it is the host's network namespace",
            )));
        }
        Ok(Netns { pid, file })
    }

    /// The descriptor to hand to the kernel when creating a link in this namespace.
    pub(crate) fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Runs `work` on a new thread inside this namespace and returns its result.
    pub(crate) async fn run<F, Fut, T>(&self, work: F) -> Result<T, NetError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, NetError>>,
        T: Send + 'static,
    {
        let pid = self.pid;
        let ns_err = move |source| NetError::Namespace { pid, source };
        let file = self.file.try_clone().map_err(ns_err)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("netns-{pid}"))
            .spawn(move || {
                let result = setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|errno| ns_err(errno.into()))
                    .and_then(|()| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_io()
                            .build()
                            .map_err(|source| NetError::Io {
                                op: format!("starting a runtime in the netns of process {pid}"),
                                source,
                            })
                    })
                    .and_then(|runtime| runtime.block_on(work()));
                // The receiver is gone only if the caller stopped waiting; nothing to tell.
                let _ = tx.send(result);
            })
            .map_err(|source| NetError::Io {
                op: format!("spawning a thread for the netns of process {pid}"),
                source,
            })?;
        rx.await.unwrap_or_else(|_| {
            Err(NetError::Io {
                op: format!("working in the netns of process {pid}"),
                source: io::Error::other("the worker thread panicked"),
            })
        })
    }
}
