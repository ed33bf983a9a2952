//! Persistence of the allocator: one JSON file under `--data-dir`, replaced atomically on every change.
//!
//! The original kept its ring and owned map in BoltDB; a single host needs only the owned map, and a
//! small JSON file is easy to inspect and to repair by hand. Replacing it by write-temp, fsync,
//! rename, fsync-directory means a crash leaves either the old or the new state, never a torn file.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::ipam::{Allocator, IpamError, Space};

/// The file inside the data directory.
pub const FILE_NAME: &str = "ipam.json";

const FORMAT_VERSION: u32 = 1;

/// Why the saved state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid IPAM state file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path} holds allocations for range {saved} but --ipalloc-range is {configured}; \
         start with the old range, or remove the file to forget every allocation"
    )]
    RangeChanged {
        path: PathBuf,
        saved: String,
        configured: Ipv4Net,
    },
}

/// The on-disk shape. Addresses are text so the file reads like the API's own answers.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    range: String,
    owned: Vec<SavedOwner>,
    /// Present once the host is on a network of several: the blocks it owns, which it keeps
    /// through restarts and store outages until `weave rmpeer` or `weave reset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blocks: Option<SavedBlocks>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedBlocks {
    len: u8,
    owned: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedOwner {
    id: String,
    is_container: bool,
    addrs: Vec<String>,
}

/// Where the allocator's state lives on disk.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// A store for `data_dir`; nothing is touched until [`Store::load`] or [`Store::save`].
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(FILE_NAME),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the saved allocations into `fresh` (an empty allocator built from the flags). A missing
    /// file is a first start and leaves `fresh` empty.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file cannot be read, [`StoreError::Corrupt`] when it does not
    /// parse or two ids share an address, [`StoreError::RangeChanged`] when it was written for
    /// another `--ipalloc-range`.
    pub fn load(&self, mut fresh: Allocator) -> Result<Allocator, StoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(fresh),
            Err(source) => return Err(self.io("reading", source)),
        };
        let snapshot: Snapshot =
            serde_json::from_str(&text).map_err(|err| self.corrupt(err.to_string()))?;
        if snapshot.version != FORMAT_VERSION {
            return Err(self.corrupt(format!("unknown format version {}", snapshot.version)));
        }
        if snapshot.range.parse::<Ipv4Net>().ok() != Some(fresh.universe()) {
            return Err(StoreError::RangeChanged {
                path: self.path.clone(),
                saved: snapshot.range,
                configured: fresh.universe(),
            });
        }
        if let Some(blocks) = &snapshot.blocks {
            fresh.use_blocks(blocks.len);
            for block in &blocks.owned {
                let parsed = block.parse().ok().filter(|b| fresh.add_block(*b));
                if parsed.is_none() {
                    return Err(self.corrupt(format!("bad block {block:?}")));
                }
            }
        }
        for owner in snapshot.owned {
            for addr in &owner.addrs {
                let cidr = addr
                    .parse()
                    .map_err(|_| self.corrupt(format!("bad address {addr:?} for {}", owner.id)))?;
                fresh
                    .restore(&owner.id, cidr, owner.is_container)
                    .map_err(|err: IpamError| self.corrupt(err.to_string()))?;
            }
        }
        Ok(fresh)
    }

    /// Replaces the saved state with `alloc`'s, atomically and durably.
    ///
    /// # Errors
    /// [`StoreError::Io`] for any failure to create the directory, write, sync or rename.
    pub fn save(&self, alloc: &Allocator) -> Result<(), StoreError> {
        let snapshot = Snapshot {
            version: FORMAT_VERSION,
            range: alloc.universe().to_string(),
            owned: alloc
                .owners()
                .map(|(id, owner)| SavedOwner {
                    id: id.to_owned(),
                    is_container: owner.is_container,
                    addrs: owner.cidrs.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            blocks: match alloc.space() {
                Space::Whole => None,
                Space::Blocks { len, owned } => Some(SavedBlocks {
                    len: *len,
                    owned: owned.iter().map(ToString::to_string).collect(),
                }),
            },
        };
        let mut bytes = serde_json::to_vec_pretty(&snapshot)
            .unwrap_or_else(|_| unreachable!("strings, bools and numbers always serialise"));
        bytes.push(b'\n');

        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|source| self.io("creating the directory of", source))?;
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        };
        write().map_err(|source| self.io("writing a temporary file for", source))?;
        fs::rename(&tmp, &self.path).map_err(|source| self.io("renaming into", source))?;
        // The rename is durable only once the directory entry itself is on disk.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| self.io("syncing the directory of", source))
    }

    fn io(&self, action: &'static str, source: std::io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn fresh() -> Allocator {
        Allocator::new(net("10.32.0.0/12"), net("10.32.0.0/12")).unwrap()
    }

    #[test]
    fn missing_file_is_an_empty_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("not-yet"));
        assert_eq!(store.load(fresh()).unwrap().owners().count(), 0);
    }

    #[test]
    fn round_trip_keeps_owners_masks_and_container_marks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("nested/dir"));
        let mut a = fresh();
        a.allocate("c1", net("10.32.0.0/12"), true).unwrap();
        a.claim("weave:expose", net("10.2.1.1/24"), false).unwrap();
        a.allocate("c1", net("10.40.0.0/24"), true).unwrap();
        store.save(&a).unwrap();
        assert!(!store.path().with_extension("json.tmp").exists());

        let b = store.load(fresh()).unwrap();
        let owners = |x: &Allocator| {
            x.owners()
                .map(|(id, o)| (id.to_owned(), o.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(owners(&b), owners(&a));
        let mut b = b;
        assert_eq!(
            b.allocate("c2", net("10.32.0.0/12"), true).unwrap(),
            net("10.32.0.2/12")
        );
    }

    #[test]
    fn a_changed_range_or_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.save(&fresh()).unwrap();
        let other = Allocator::new(net("10.2.0.0/16"), net("10.2.0.0/16")).unwrap();
        let err = store.load(other).unwrap_err();
        assert!(matches!(err, StoreError::RangeChanged { .. }), "{err}");

        fs::write(store.path(), b"{ not json").unwrap();
        let err = store.load(fresh()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");

        let shared = r#"{"version":1,"range":"10.32.0.0/12","owned":[
            {"id":"a","is_container":true,"addrs":["10.32.0.1/12"]},
            {"id":"b","is_container":true,"addrs":["10.32.0.1/12"]}]}"#;
        fs::write(store.path(), shared).unwrap();
        let err = store.load(fresh()).unwrap_err();
        assert!(err.to_string().contains("already in use by a"), "{err}");
    }

    #[test]
    fn owned_blocks_survive_a_restart_and_old_files_load_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut a = fresh();
        a.use_blocks(26);
        a.add_block(net("10.32.0.64/26"));
        a.allocate("c1", net("10.32.0.0/12"), true).unwrap();
        store.save(&a).unwrap();
        // A host that was on a network stays in block mode, even when started without a store.
        let b = store.load(fresh()).unwrap();
        assert!(b.same_allocations(&a));
        assert_eq!(
            b.block_of("10.32.0.70".parse().unwrap()),
            Some(net("10.32.0.64/26"))
        );

        let single = r#"{"version":1,"range":"10.32.0.0/12","owned":[]}"#;
        fs::write(store.path(), single).unwrap();
        assert_eq!(*store.load(fresh()).unwrap().space(), Space::Whole);
        let bad = r#"{"version":1,"range":"10.32.0.0/12","owned":[],"blocks":{"len":26,"owned":["10.1.0.0/26"]}}"#;
        fs::write(store.path(), bad).unwrap();
        let err = store.load(fresh()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
}
