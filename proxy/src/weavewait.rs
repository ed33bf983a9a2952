//! Installing the weavewait binaries into a versioned host directory that rewritten containers
//! bind read-only at `/w`.
//!
//! Every container keeps the directory it was created with for its whole life, across restarts
//! of the container and of the proxy. So each set of binaries gets a directory of its own, named
//! by their content: upgrading the proxy adds a directory and never rewrites a file that a
//! running container has mounted. The same path works when the proxy runs in a container, as
//! long as the data directory is mounted there at the same path as on the host.

use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The three builds of weavewait, each a directory holding one binary named `w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Waits for `ethwe` up and the `224.0.0.0/4` route.
    Multicast,
    /// Waits for `ethwe` up only (`--no-multicast-route`).
    NoMulticast,
    /// Does not wait (containers whose network mode changed at start to one weave does not join).
    Noop,
}

impl Variant {
    const ALL: [Self; 3] = [Self::Multicast, Self::NoMulticast, Self::Noop];

    /// The directory name, as in the weaveexec image: `/w`, `/w-nomcast`, `/w-noop`.
    pub fn dir(self) -> &'static str {
        match self {
            Self::Multicast => "w",
            Self::NoMulticast => "w-nomcast",
            Self::Noop => "w-noop",
        }
    }
}

/// Why weavewait could not be installed.
#[derive(Debug, Error)]
pub enum InstallError {
    /// A binary is missing from the source directory.
    #[error(
        "weavewait binary {path} not found: pass --weavewait-dir, a directory holding \
         w/w, w-nomcast/w and w-noop/w (run scripts/build-weavewait.sh)"
    )]
    Missing { path: PathBuf },
    /// Reading or writing failed.
    #[error("{action} {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },
}

/// An installed, versioned set of weavewait binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    root: PathBuf,
}

impl Installed {
    /// The host directory to bind at `/w` for `variant`.
    pub fn dir(&self, variant: Variant) -> PathBuf {
        self.root.join(variant.dir())
    }
}

/// The directory under `data_dir` that holds every installed version.
pub fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("weavewait")
}

/// Copies `source/{w,w-nomcast,w-noop}/w` to `data_dir/weavewait/<content hash>/…`, unless
/// that version is already there.
///
/// # Errors
/// A missing binary, or a failure to read or write.
pub fn install(source: &Path, data_dir: &Path) -> Result<Installed, InstallError> {
    let mut binaries = Vec::with_capacity(Variant::ALL.len());
    // The content hash only names a directory: if another Rust release hashes differently, the
    // cost is one more copy, never a wrong binary.
    let mut hasher = std::hash::DefaultHasher::new();
    for variant in Variant::ALL {
        let path = source.join(variant.dir()).join("w");
        let bytes = std::fs::read(&path).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => InstallError::Missing { path: path.clone() },
            _ => InstallError::Io {
                action: "read",
                path: path.clone(),
                error,
            },
        })?;
        bytes.hash(&mut hasher);
        binaries.push((variant, bytes));
    }
    let versions = root(data_dir);
    let root = versions.join(format!("{:016x}", hasher.finish()));
    let installed = Installed { root: root.clone() };
    if Variant::ALL
        .iter()
        .all(|v| installed.dir(*v).join("w").is_file())
    {
        return Ok(installed);
    }
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |error| InstallError::Io {
            action,
            path,
            error,
        }
    };
    std::fs::create_dir_all(&versions).map_err(io_err("create", &versions))?;
    // Written aside and renamed into place, so a container never binds a half-written binary.
    let staging = versions.join(format!(".staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    for (variant, bytes) in &binaries {
        let dir = staging.join(variant.dir());
        std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let file = dir.join("w");
        std::fs::write(&file, bytes).map_err(io_err("write", &file))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &file))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &dir))?;
    }
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err("chmod", &staging))?;
    if let Err(err) = std::fs::rename(&staging, &root) {
        let _ = std::fs::remove_dir_all(&staging);
        // Another proxy installed the same version first: theirs is identical.
        if !root.is_dir() {
            return Err(io_err("install", &root)(err));
        }
    }
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_with(content: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for variant in Variant::ALL {
            let sub = dir.path().join(variant.dir());
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join("w"), format!("{content}-{}", variant.dir())).unwrap();
        }
        dir
    }

    #[test]
    fn installs_each_version_once_in_its_own_directory() {
        let data = tempfile::tempdir().unwrap();
        let v1 = source_with("one");
        let first = install(v1.path(), data.path()).unwrap();
        let again = install(v1.path(), data.path()).unwrap();
        assert_eq!(first, again);
        let file = first.dir(Variant::NoMulticast).join("w");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "one-w-nomcast");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);

        let v2 = source_with("two");
        let second = install(v2.path(), data.path()).unwrap();
        assert_ne!(first, second);
        // The old version is still there for the containers that bind it.
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "one-w-nomcast");
        let entries = std::fs::read_dir(data.path().join("weavewait"))
            .unwrap()
            .count();
        assert_eq!(entries, 2, "no staging directory left behind");
    }

    #[test]
    fn a_missing_binary_says_which_and_what_to_do() {
        let data = tempfile::tempdir().unwrap();
        let source = source_with("x");
        std::fs::remove_file(source.path().join("w-noop/w")).unwrap();
        let err = install(source.path(), data.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("w-noop/w"), "{message}");
        assert!(message.contains("--weavewait-dir"), "{message}");
    }
}
