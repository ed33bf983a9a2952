//! Files inside a container's own root filesystem, for the `/etc/hosts` weave writes.
//!
//! A container is not trusted: its first process can `chroot`, and its files can be symlinks,
//! device nodes or FIFOs. Going through `/proc/<pid>/root/...` is not safe: that is the root of
//! one process as it sees it (a `chroot` moves it), and an absolute symlink met on the way is
//! resolved against the *writer's* root, the host's. So the file is resolved from inside the
//! container's mount namespace, whose root its processes cannot move (that takes
//! `CAP_SYS_ADMIN`, which a container does not have by default), on a thread of its own that
//! enters only that namespace (`unshare(CLONE_FS)` first: a thread sharing its filesystem
//! context with others may not change mount namespace). There, `openat2` with
//! `RESOLVE_IN_ROOT` keeps `..` and absolute symlinks inside that root and
//! `RESOLVE_NO_MAGICLINKS` refuses `/proc/*/root`-style links out of it (which a `--pid=host`
//! container's `/proc` would have). The file is first opened `O_PATH` (which never blocks and has
//! no side effect, even on a device or FIFO), checked with `fstat` to be a regular file, and only
//! then reopened for reading and writing through our own `/proc/thread-self/fd`.
//!
//! Every step runs on that thread, never on an async runtime's: a hostile file can delay only
//! the attach that asked for it.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, fstat, open, openat, openat2};

use crate::process::Process;

/// A file larger than this is not the small text file weave writes, and is left alone: reading
/// it back for an undo would cost memory a container chooses.
pub const SIZE_LIMIT: u64 = 1 << 20;

/// Why a container's file was not written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It is a symlink, FIFO, device or socket: nothing was opened for writing.
    #[error("{path} is a {kind}, not a regular file; left alone")]
    NotRegular { path: String, kind: &'static str },
    /// It is larger than [`SIZE_LIMIT`].
    #[error("{path} is larger than {SIZE_LIMIT} bytes; left alone")]
    TooLarge { path: String },
    /// A system call failed.
    #[error("{path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl FileError {
    /// The file is on a read-only mount (a `--read-only` container's `/etc/hosts`).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.raw_os_error() == Some(nix::libc::EROFS))
    }
}

/// Replaces the contents of `path` (relative to the container's root, e.g. `etc/hosts`) in the
/// root filesystem of the container `process` belongs to; returns what it held before.
///
/// # Errors
/// See [`FileError`]; nothing is written unless it is a regular file no larger than
/// [`SIZE_LIMIT`].
pub async fn replace_in_container(
    process: &Process,
    path: &str,
    contents: Vec<u8>,
) -> Result<Vec<u8>, FileError> {
    let shown = format!("/{} in the container", path.trim_start_matches('/'));
    let relative = path.trim_start_matches('/').to_owned();
    let io_err = |op, shown: &str| {
        let path = shown.to_owned();
        move |source: io::Error| FileError::Io { path, op, source }
    };
    let pidfd = process
        .pidfd_owned()
        .map_err(io_err("duplicating the pidfd", &shown))?;
    on_thread(move || {
        let proc = open_proc().map_err(io_err("opening /proc", &shown))?;
        // Only this thread's filesystem context changes; the process's stays on the host.
        unshare(CloneFlags::CLONE_FS)
            .map_err(|e| io_err("unsharing the filesystem context", &shown)(e.into()))?;
        setns(pidfd.as_fd(), CloneFlags::CLONE_NEWNS)
            .map_err(|e| io_err("entering the container's mount namespace", &shown)(e.into()))?;
        let root = open(
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("opening the container's root", &shown)(e.into()))?;
        let found = openat2(
            &root,
            relative.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| io_err("resolving", &shown)(e.into()))?;
        rewrite(&proc, found, &shown, &contents)
    })
    .await
}

/// Replaces the contents of the host file `path` (Docker's own copy of a container's file, from
/// `docker inspect`, not from the container) the same careful way; returns what it held before.
///
/// # Errors
/// As [`replace_in_container`].
pub async fn replace_on_host(path: PathBuf, contents: Vec<u8>) -> Result<Vec<u8>, FileError> {
    let shown = path.display().to_string();
    on_thread(move || {
        let io_err = |op| {
            let path = shown.clone();
            move |source: io::Error| FileError::Io { path, op, source }
        };
        let proc = open_proc().map_err(io_err("opening /proc"))?;
        let found = open_path(&path).map_err(io_err("resolving"))?;
        rewrite(&proc, found, &shown, &contents)
    })
    .await
}

fn open_proc() -> io::Result<OwnedFd> {
    Ok(open(
        "/proc",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn open_path(path: &Path) -> io::Result<OwnedFd> {
    Ok(openat2(
        rustix::fs::CWD,
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Given `found`, an `O_PATH` descriptor: refuses anything but a regular file of a sane size,
/// then reopens it for reading and writing (through `proc`, this process's `/proc`), reads what
/// it holds and replaces it with `contents`.
fn rewrite(
    proc: &OwnedFd,
    found: OwnedFd,
    shown: &str,
    contents: &[u8],
) -> Result<Vec<u8>, FileError> {
    let io_err = |op| {
        let path = shown.to_owned();
        move |source: io::Error| FileError::Io { path, op, source }
    };
    let stat = fstat(&found).map_err(|e| io_err("fstat")(e.into()))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(FileError::NotRegular {
            path: shown.to_owned(),
            kind: kind_name(kind),
        });
    }
    let reopened = openat(
        proc,
        format!("thread-self/fd/{}", found.as_raw_fd()).as_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("opening for writing")(e.into()))?;
    let again = fstat(&reopened).map_err(|e| io_err("fstat")(e.into()))?;
    if (again.st_dev, again.st_ino) != (stat.st_dev, stat.st_ino) {
        return Err(io_err("reopening")(io::Error::other(
            "the reopened file is not the one checked",
        )));
    }
    let mut file = File::from(reopened);
    let mut previous = Vec::new();
    (&mut file)
        .take(SIZE_LIMIT + 1)
        .read_to_end(&mut previous)
        .map_err(io_err("reading"))?;
    if previous.len() as u64 > SIZE_LIMIT {
        return Err(FileError::TooLarge {
            path: shown.to_owned(),
        });
    }
    file.set_len(0).map_err(io_err("truncating"))?;
    file.write_all_at(contents, 0).map_err(io_err("writing"))?;
    Ok(previous)
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

/// Runs `work` on a thread of its own (it may change its namespaces, and it may be slow) and
/// waits for it without blocking the caller's runtime.
async fn on_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("weave-rootfs".to_owned())
        .spawn(move || {
            // The receiver is gone only if the caller stopped waiting; nothing to tell.
            let _ = tx.send(work());
        })
        .map_err(|source| FileError::Io {
            path: String::new(),
            op: "spawning a thread",
            source,
        })?;
    rx.await.unwrap_or_else(|_| {
        Err(FileError::Io {
            path: String::new(),
            op: "working on a container's file",
            source: io::Error::other("the worker thread panicked"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[tokio::test]
    async fn a_regular_file_is_replaced_and_its_old_contents_returned() {
        let d = dir();
        let file = d.path().join("hosts");
        std::fs::write(&file, "old\n").unwrap();
        let previous = replace_on_host(file.clone(), b"new\n".to_vec())
            .await
            .unwrap();
        assert_eq!(previous, b"old\n");
        assert_eq!(std::fs::read(&file).unwrap(), b"new\n");
    }

    #[tokio::test]
    async fn anything_but_a_regular_file_is_left_alone() {
        let d = dir();
        let target = d.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for (path, kind) in [
            (link, "symlink"),
            (fifo, "FIFO"),
            (d.path().to_owned(), "directory"),
            (PathBuf::from("/dev/null"), "character device"),
        ] {
            match replace_on_host(path.clone(), b"x".to_vec()).await {
                Err(FileError::NotRegular { kind: k, .. }) => assert_eq!(k, kind, "{path:?}"),
                other => panic!("{path:?}: {other:?}"),
            }
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[tokio::test]
    async fn a_huge_file_is_left_alone() {
        let d = dir();
        let file = d.path().join("big");
        std::fs::File::create(&file)
            .unwrap()
            .set_len(SIZE_LIMIT + 1)
            .unwrap();
        assert!(matches!(
            replace_on_host(file.clone(), b"x".to_vec()).await,
            Err(FileError::TooLarge { .. })
        ));
        assert_eq!(std::fs::metadata(&file).unwrap().len(), SIZE_LIMIT + 1);
    }
}
