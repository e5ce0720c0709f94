//! One error type for the whole core. Every variant carries what the user
//! needs to act on it; none of them ever carries a key.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::keys::KeyError;
use crate::name::NameError;

#[derive(Debug)]
pub enum Error {
    /// A namespace name that breaks the naming rule.
    InvalidName(NameError),
    /// A key that is not any kind btsync accepts.
    InvalidKey(KeyError),
    /// A key file (`add --token-file`, the volume plugin's `token-file`)
    /// that cannot be read or does not hold one key. `what` names the file;
    /// neither field ever holds the file's content.
    KeyFile { what: String, problem: String },
    /// Wrong command-line usage that argh cannot express by itself.
    Usage(String),
    /// An environment variable with a value syncbox cannot use.
    Env { var: &'static str, problem: String },
    /// The namespace is not in the registry.
    NotRegistered(String),
    /// `add` with a key that differs from the registered one.
    KeyConflict(String),
    /// Another namespace on this node has the key (or its read-write or
    /// read-only pair): the engine serves one folder per key.
    KeyInUse {
        ns: String,
        other: String,
        /// The other one is being deleted (its `del` has not finished).
        deleting: bool,
    },
    /// `path --scope=host` without `BTSYNC_HOST_PATH`.
    HostPathUnknown,
    /// `BTSYNC_HOST_PATH` is set, but the data root is not a bind mount of
    /// it (`seen`: the directory of its filesystem the mount shows; `None`:
    /// no mount of its own).
    HostPathMismatch {
        host: PathBuf,
        data: PathBuf,
        seen: Option<PathBuf>,
    },
    /// The data root itself is missing or is not a directory: a setting
    /// (or a mount) is wrong, so it is bad input (exit 2).
    DataRoot { path: PathBuf, problem: String },
    /// `$BTSYNC_DATA/NS` exists but is not a plain directory.
    FolderOccupied {
        path: PathBuf,
        problem: &'static str,
    },
    /// `path --data`: the namespace's data folder is not a folder syncbox made.
    DataFolder {
        ns: String,
        path: PathBuf,
        problem: &'static str,
    },
    /// A registry file that cannot be understood.
    CorruptEntry { path: PathBuf, problem: String },
    /// Something other than a regular file (a directory, say) where a
    /// registry entry belongs. syncbox never wrote it, so it never removes it.
    EntryNotAFile { path: PathBuf },
    /// `add` with a different key while a `del` of the namespace has not
    /// finished: its files would be adopted under the new key.
    DelUnfinished(String),
    /// init (or talking to it) failed; the message says what to do.
    Supervisor(String),
    /// The read-only form of a D key needs the btsync binary, which is
    /// missing or failed.
    ReadOnlyUnavailable { bin: PathBuf, problem: String },
    /// A cluster key is set, but `NS` is registered with another key.
    ClusterKeyConflict(String),
    /// A local `del` of a namespace the cluster declares.
    ClusterDeclared(String),
    /// A system call failed; `doing` says what syncbox was trying to do.
    Io { doing: String, source: io::Error },
    /// The file with the login and password of the engine's interface
    /// cannot be used; `problem` never quotes it.
    EngineCredentials { path: PathBuf, problem: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(doing: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            doing: doing.into(),
            source,
        }
    }

    /// Exit status for this error: 2 for anything the user typed or set
    /// wrongly (nothing was changed), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::InvalidName(_)
            | Error::InvalidKey(_)
            | Error::KeyFile { .. }
            | Error::Usage(_)
            | Error::Env { .. }
            | Error::DataRoot { .. }
            | Error::HostPathMismatch { .. } => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName(e) => write!(f, "{e}"),
            Error::InvalidKey(e) => write!(f, "{e}"),
            Error::KeyFile { what, problem } => write!(f, "{what}: {problem}"),
            Error::Usage(msg) => write!(f, "{msg}"),
            Error::Env { var, problem } => write!(f, "environment variable {var}: {problem}"),
            Error::NotRegistered(ns) => write!(f, "{ns}: no such namespace (see 'list')"),
            Error::KeyConflict(ns) => write!(
                f,
                "{ns}: already registered with a different key; nothing changed \
                 (use the key 'secret {ns}' prints, or 'del {ns}' first)"
            ),
            Error::KeyInUse {
                ns,
                other,
                deleting: false,
            } => write!(
                f,
                "{ns}: its key is the key of namespace {other} on this node, and the engine \
                 syncs one folder per key; nothing changed (use {other}'s folder: 'path \
                 {other}', or give {ns} a key of its own)"
            ),
            Error::KeyInUse {
                ns,
                other,
                deleting: true,
            } => write!(
                f,
                "{ns}: its key is the key of namespace {other}, whose 'del' has not finished \
                 on this node, and the engine syncs one folder per key; nothing changed (run \
                 'del {other}' to finish it first)"
            ),
            Error::HostPathUnknown => write!(
                f,
                "the host path of the data volume is unknown: start the container with \
                 -e BTSYNC_HOST_PATH=/host/dir/mounted/at/data, or use --scope=container"
            ),
            Error::HostPathMismatch { host, data, seen } => {
                let what = match seen {
                    None => "is not a mount of its own (no -v?)".to_owned(),
                    Some(seen) => format!(
                        "shows {} of its filesystem (a docker volume?)",
                        seen.display()
                    ),
                };
                write!(
                    f,
                    "{}={} but {} {what}, so namespaces would not be where services are \
                     sent: start the container with -v {}:{} (a symlinked host path: \
                     give its real path)",
                    crate::layout::HOST_PATH_VAR,
                    host.display(),
                    data.display(),
                    host.display(),
                    data.display()
                )
            }
            Error::DataRoot { path, problem } => write!(
                f,
                "environment variable {}: the data root {} {problem}",
                crate::layout::DATA_VAR,
                path.display()
            ),
            Error::FolderOccupied { path, problem } => {
                write!(f, "{}: {problem}; move it away first", path.display())
            }
            Error::DataFolder { ns, path, problem } => write!(
                f,
                "{ns}: its data folder {} {problem}; move it away ('path --data {ns}' then makes the folder)",
                path.display()
            ),
            Error::CorruptEntry { path, problem } => write!(
                f,
                "registry file {} is damaged ({problem}); restore it or remove it",
                path.display()
            ),
            Error::EntryNotAFile { path } => write!(
                f,
                "registry entry {} is not a regular file; nothing changed. syncbox never \
                 removes what it did not write: move it out of {} by hand, then run the \
                 command again",
                path.display(),
                path.parent().unwrap_or(path).display()
            ),
            Error::DelUnfinished(ns) => write!(
                f,
                "{ns}: a 'del {ns}' has not finished and its files are still here; nothing \
                 changed. Run 'del {ns}' to finish it first, then add it with the new key \
                 (adding it with its old key, or none, undoes the deletion instead)"
            ),
            Error::Supervisor(msg) => write!(f, "{msg}"),
            Error::ReadOnlyUnavailable { bin, problem } => write!(
                f,
                "cannot compute the read-only (E) form of a D key offline, and asking \
                 btsync at {} failed: {problem}; set BTSYNC_BIN to the btsync binary (or \
                 take the E key from btsync itself)",
                bin.display()
            ),
            Error::ClusterKeyConflict(ns) => write!(
                f,
                "{ns}: already registered with a key that is not the one the cluster key \
                 derives, so this node will not sync {ns} with the cluster; nothing changed \
                 (see 'list --json' for where its key came from; 'del {ns}' first to switch \
                 it to the cluster's key)"
            ),
            Error::ClusterDeclared(ns) => write!(
                f,
                "{ns}: declared cluster-wide ('add --cluster'), so this node would add it \
                 back within seconds; nothing changed. Use 'del --cluster {ns}' to remove it \
                 from every node (each moves its copy to the cluster trash)"
            ),
            Error::Io { doing, source } => write!(f, "{doing}: {source}"),
            Error::EngineCredentials { path, problem } => write!(
                f,
                "{}, the login and password of the engine's interface, cannot be used \
                 ({problem}); remove it to have new ones made",
                path.display()
            ),
        }
    }
}

impl Error {
    /// What is wrong with a damaged registry entry, in a few words; `None`
    /// for any other error.
    pub fn damage(&self) -> Option<&str> {
        match self {
            Error::CorruptEntry { problem, .. } => Some(problem),
            Error::EntryNotAFile { .. } => Some("not a regular file"),
            _ => None,
        }
    }
}

impl std::error::Error for Error {}

impl From<NameError> for Error {
    fn from(e: NameError) -> Error {
        Error::InvalidName(e)
    }
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Error {
        Error::InvalidKey(e)
    }
}
