//! Writes a container's `/etc/hosts`, in place, through `/proc/<pid>/root`.
//!
//! No helper container as the original used: the file the container sees is Docker's bind mount,
//! reached from the host through the container's root. In a `--read-only` container that mount
//! is read-only too, and the file is written where Docker keeps it (`HostsPath`), the same inode. It is rewritten in place (the mount pins
//! the inode, so it cannot be replaced), before `ethwe` comes up, so the container's program never
//! reads the old one. Docker's own later edits (`docker network connect`, links) add and remove
//! their lines in the same file and leave ours; a restart rebuilds it, and the attach that follows
//! writes it again.

use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

/// Where the container's `/etc/hosts` is seen from the host.
pub fn path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root/etc/hosts"))
}

/// Replaces the contents of the `/etc/hosts` of the container whose first process is `pid`,
/// falling back to Docker's own file at `hosts_path` when the container's view is read-only.
/// Returns the path written.
///
/// # Errors
/// When neither can be written (the process is gone, the container has no `/etc/hosts` file — a
/// symlink there is refused rather than followed on the host's side — or Docker's file is not
/// reachable from where the proxy runs).
pub fn write(pid: i32, hosts_path: Option<&Path>, contents: &str) -> io::Result<PathBuf> {
    let inside = path(pid);
    match write_in_place(&inside, contents) {
        Err(err) if err.raw_os_error() == Some(nix::libc::EROFS) => match hosts_path {
            Some(docker_file) => {
                write_in_place(docker_file, contents)?;
                Ok(docker_file.to_owned())
            }
            None => Err(err),
        },
        Err(err) => Err(err),
        Ok(()) => Ok(inside),
    }
}

fn write_in_place(path: &Path, contents: &str) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)?;
    file.write_all(contents.as_bytes())
}
