//! A container's process pinned by a pidfd, so that a PID read from `docker inspect` reaches that
//! process or nothing: never another one that was given the same number after it exited.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::readlinkat;
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::NetError;

/// A process held by a pidfd. Cheap to clone: clones share the descriptor.
#[derive(Debug, Clone)]
pub struct Process {
    pid: i32,
    pidfd: Arc<OwnedFd>,
}

impl Process {
    /// Pins `pid`. The caller still has to check that the pinned process is the one it meant
    /// (for a container: that Docker still reports this PID for it, asked after pinning): a PID
    /// can have been reused between reading it and pinning it, never after.
    ///
    /// # Errors
    /// [`NetError::Namespace`] when there is no such process.
    pub fn pin(pid: i32) -> Result<Self, NetError> {
        let err = |source| NetError::Namespace { pid, source };
        // `from_raw` panics on a negative number; refuse those first.
        let raw = Pid::from_raw(pid.max(0)).ok_or_else(|| {
            err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a process id",
            ))
        })?;
        let pidfd = pidfd_open(raw, PidfdFlags::empty()).map_err(|e| err(e.into()))?;
        Ok(Self {
            pid,
            pidfd: Arc::new(pidfd),
        })
    }

    /// The PID as the host sees it.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process has not exited. A pidfd turns readable when its process exits, and
    /// until then its PID cannot be given to another process: so anything opened under
    /// `/proc/<pid>` before a `true` here belongs to this process.
    pub fn is_alive(&self) -> bool {
        let mut fds = [PollFd::new(&*self.pidfd, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(poll(&mut fds, Some(&now)), Ok(0))
    }

    /// Kills the process with `SIGKILL`, through the pidfd: never another process that got
    /// its PID after it exited.
    ///
    /// # Errors
    /// When the process has exited already, or cannot be signalled.
    pub fn kill(&self) -> io::Result<()> {
        Ok(pidfd_send_signal(&*self.pidfd, Signal::KILL)?)
    }

    /// The program the process runs (`/proc/<pid>/exe`), named as the process's own mount
    /// namespace names it: a container's `/w/w`, not where that file is on the host.
    ///
    /// # Errors
    /// When the process has exited.
    pub fn exe(&self) -> Result<PathBuf, NetError> {
        let dir = self.open_proc("")?;
        let target = readlinkat(&dir, "exe", Vec::new()).map_err(|source| NetError::Namespace {
            pid: self.pid,
            source: source.into(),
        })?;
        Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }

    /// The text of `/proc/<pid>/<entry>` (`stat`, `schedstat`: files the kernel writes, at
    /// paths the process cannot change), checked to be still this process's.
    ///
    /// # Errors
    /// [`NetError::Namespace`] when the process has exited or the entry cannot be read.
    pub fn read_proc(&self, entry: &str) -> Result<String, NetError> {
        let mut text = String::new();
        io::Read::read_to_string(&mut self.open_proc(entry)?, &mut text).map_err(|source| {
            NetError::Namespace {
                pid: self.pid,
                source,
            }
        })?;
        Ok(text)
    }

    /// A second descriptor of the pidfd, for a worker thread to own (`setns` with a pidfd enters
    /// the namespaces of the process it names).
    pub(crate) fn pidfd_owned(&self) -> io::Result<OwnedFd> {
        self.pidfd.try_clone()
    }

    /// Opens `/proc/<pid>/<entry>` of this process, checked to be still this process after the
    /// open (see [`Process::is_alive`]).
    pub(crate) fn open_proc(&self, entry: &str) -> Result<File, NetError> {
        let err = |source| NetError::Namespace {
            pid: self.pid,
            source,
        };
        let file = File::open(format!("/proc/{}/{entry}", self.pid)).map_err(err)?;
        if !self.is_alive() {
            return Err(err(io::Error::new(
                io::ErrorKind::NotFound,
                "the process has exited",
            )));
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_child_is_alive_until_it_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let pid = i32::try_from(child.id()).unwrap();
        let pinned = Process::pin(pid).unwrap();
        assert!(pinned.is_alive());
        assert!(pinned.open_proc("ns/net").is_ok());
        assert_eq!(
            pinned.exe().unwrap().file_name().and_then(OsStr::to_str),
            Some("sleep")
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !pinned.is_alive(),
            "an exited (and reaped) child is not alive"
        );
        assert!(pinned.open_proc("ns/net").is_err());
        assert!(pinned.exe().is_err());
    }

    #[test]
    fn nonsense_pids_are_refused() {
        for pid in [0, -1, i32::MAX] {
            assert!(Process::pin(pid).is_err(), "{pid}");
        }
    }
}
