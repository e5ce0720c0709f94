//! Where things live on the data volume, from the environment.
//!
//! ```text
//! $BTSYNC_DATA/NS                      the namespace's folder (synced)
//! $BTSYNC_DATA/.btsync/                everything else, mode 0700, never a namespace
//!              lock                    serialises writers of the registry
//!              namespaces/NS           registry entry: JSON with the key, mode 0600
//!              deleting/NS             a `del` in progress (the entry, moved aside)
//!              cluster/                the cluster registry folder (cluster mode; synced)
//!              cluster-trash/NS@SECS   folders removed by a cluster tombstone
//!              device-id               this node's id in cluster records
//! ```

use std::env;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::name::Name;

pub const DATA_VAR: &str = "BTSYNC_DATA";
pub const HOST_PATH_VAR: &str = "BTSYNC_HOST_PATH";
pub const DEFAULT_DATA: &str = "/data";
pub const STATE_DIR: &str = ".btsync";
/// The name of a namespace's data folder (see [`Layout::data_folder`]).
pub const DATA_FOLDER: &str = "data";

#[derive(Debug, Clone)]
pub struct Layout {
    data: PathBuf,
    host: Option<PathBuf>,
}

impl Layout {
    /// Read `BTSYNC_DATA` and `BTSYNC_HOST_PATH` (an empty variable counts
    /// as unset) and check that the data root is a directory. Every applet
    /// that uses the data root starts here: a volume that was not mounted
    /// must never read as "no namespaces".
    pub fn from_env() -> Result<Layout> {
        let data = absolute_var(DATA_VAR)?.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
        let host = absolute_var(HOST_PATH_VAR)?;
        let layout = Layout { data, host };
        layout.check_data_root()?;
        Ok(layout)
    }

    pub fn new(data: PathBuf, host: Option<PathBuf>) -> Layout {
        Layout { data, host }
    }

    pub fn data_root(&self) -> &Path {
        &self.data
    }

    /// `BTSYNC_HOST_PATH`: where the host sees the data root, if known.
    pub fn host_root(&self) -> Option<&Path> {
        self.host.as_deref()
    }

    /// The data root must already exist as a directory: syncbox never
    /// creates it, since a typo would silently start a new, empty store.
    pub fn check_data_root(&self) -> Result<()> {
        let problem = match std::fs::metadata(&self.data) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => "is not a directory".to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                "does not exist (syncbox never creates it: mount the data volume there \
                 or fix the variable)"
                    .to_owned()
            }
            Err(e) => format!("cannot be inspected: {e}"),
        };
        Err(Error::DataRoot {
            path: self.data.clone(),
            problem,
        })
    }

    pub fn state_dir(&self) -> PathBuf {
        self.data.join(STATE_DIR)
    }

    pub fn lock_file(&self) -> PathBuf {
        self.state_dir().join("lock")
    }

    pub fn namespaces_dir(&self) -> PathBuf {
        self.state_dir().join("namespaces")
    }

    pub fn entry(&self, ns: &Name) -> PathBuf {
        self.namespaces_dir().join(ns.as_str())
    }

    pub fn deleting_dir(&self) -> PathBuf {
        self.state_dir().join("deleting")
    }

    pub fn deleting_entry(&self, ns: &Name) -> PathBuf {
        self.deleting_dir().join(ns.as_str())
    }

    /// The cluster registry folder: declarations and tombstones that every
    /// node's engine syncs (cluster mode only). Never a namespace.
    pub fn cluster_registry_dir(&self) -> PathBuf {
        self.state_dir().join("cluster")
    }

    /// The member folders (cluster mode): one per member, named by its
    /// device id, holding the records that member wrote. Never namespaces.
    pub fn cluster_members_dir(&self) -> PathBuf {
        self.state_dir().join("cluster-members")
    }

    /// Folders removed by a cluster tombstone, kept `BTSYNC_TRASH_DAYS`.
    pub fn cluster_trash_dir(&self) -> PathBuf {
        self.state_dir().join("cluster-trash")
    }

    /// What this node last wrote as its own cluster records (`NS.json`,
    /// `NS.json.next` while a write is under way): never synced, so a
    /// record under this node's device id that differs is known forged.
    pub fn own_records_dir(&self) -> PathBuf {
        self.state_dir().join("cluster-own")
    }

    /// This node's device id (16 hex digits) for cluster records.
    pub fn device_id_file(&self) -> PathBuf {
        self.state_dir().join("device-id")
    }

    /// The namespace's folder as seen inside the container.
    pub fn folder(&self, ns: &Name) -> PathBuf {
        self.data.join(ns.as_str())
    }

    /// The namespace's folder as seen on the host, when the host path is known.
    pub fn host_folder(&self, ns: &Name) -> Option<PathBuf> {
        self.host.as_ref().map(|h| h.join(ns.as_str()))
    }

    /// The namespace's data folder (`path --data`): a subfolder `add`
    /// makes, with no `.sync/` in it, for services that refuse a data
    /// directory that is not empty.
    pub fn data_folder(&self, ns: &Name) -> PathBuf {
        self.folder(ns).join(DATA_FOLDER)
    }
}

fn absolute_var(var: &'static str) -> Result<Option<PathBuf>> {
    let Some(value) = env::var_os(var) else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(Error::Env {
            var,
            problem: format!("{} is not an absolute path", path.display()),
        });
    }
    Ok(Some(path))
}
