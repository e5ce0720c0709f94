//! Crash-safe file operations: every change is a rename or an unlink that
//! is made durable by syncing the directory that holds it.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::faults::crash_point;

/// Prefix of temporary files. Namespace names cannot start with '.', so a
/// temporary file is never mistaken for an entry.
pub const TEMP_PREFIX: &str = ".tmp.";

/// Make a directory (if missing) and force its mode, so a directory made by
/// an older version or by hand still ends up private.
pub fn ensure_private_dir(path: &Path) -> Result<()> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("cannot create {}", path.display()), e)),
    }
    let meta = fs::symlink_metadata(path)
        .map_err(|e| Error::io(format!("cannot inspect {}", path.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::FolderOccupied {
            path: path.to_owned(),
            problem: "exists but is not a directory",
        });
    }
    // Private means no access for others and nothing for the group but,
    // at most, traversal: init lets an unprivileged engine's group reach
    // its own files inside `.btsync/` that way (mode 0710).
    if meta.permissions().mode() & 0o7767 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("cannot chmod 0700 {}", path.display()), e))?;
    }
    Ok(())
}

/// fsync a directory so that the renames and unlinks inside it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot sync directory {}", dir.display()), e))
}

/// Replace `path` with `contents` atomically: write a temporary file beside
/// it with `mode`, fsync it, rename it over `path`, fsync the directory.
/// Readers see the old content or the new one, never a mix.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().ok_or_else(|| {
        Error::io(
            format!("{} has no parent", path.display()),
            io::ErrorKind::InvalidInput.into(),
        )
    })?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = dir.join(format!("{TEMP_PREFIX}{file_name}.{}", std::process::id()));
    let written = (|| -> io::Result<()> {
        // Only this process uses this name, so whatever is there is stale
        // (a crashed writer with the same pid) or planted: a symbolic link
        // there would make us write through it. Unlink it, then create the
        // file exclusively (O_EXCL never follows a link).
        match fs::remove_file(&temp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        // The mode given to open() is filtered by the umask; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        crash_point("temporary file created");
        file.write_all(contents)?;
        crash_point("temporary file written");
        file.sync_all()?;
        crash_point("temporary file synced");
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(Error::io(format!("cannot write {}", path.display()), e));
    }
    crash_point("renamed into place");
    sync_dir(dir)
}

/// Remove temporary files that a crashed writer left in `dir`. Only call
/// this while holding the registry lock: then no live writer owns one.
pub fn sweep_temp_files(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("cannot read {}", dir.display()), e)),
    };
    let mut removed = false;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            fs::remove_file(entry.path())
                .map_err(|e| Error::io(format!("cannot remove {}", entry.path().display()), e))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// An exclusive lock on a file, released when dropped (or when the process
/// dies, so a crash never leaves the registry locked).
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("cannot open lock file {}", path.display()), e))?;
        file.lock()
            .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))?;
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_never_writes_through_a_planted_temporary_link() {
        // .btsync/ belongs to the engine's user: a link at the temporary
        // name (predictable: init is pid 1) must not make root write the
        // config, keys and all, into the file it points at.
        let root = std::env::temp_dir().join(format!("syncbox-atomic-link-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("test dir");
        let victim = root.join("victim");
        fs::write(&victim, "untouched").expect("victim");
        let target = root.join("btsync.conf");
        let temp = root.join(format!("{TEMP_PREFIX}btsync.conf.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &temp).expect("plant a link");

        write_atomic(&target, b"secret config", 0o600).expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "untouched");
        let meta = fs::symlink_metadata(&target).expect("target");
        assert!(meta.is_file(), "the target must be a regular file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&target).expect("target"), b"secret config");
        fs::remove_dir_all(&root).expect("clean up");
    }
}
