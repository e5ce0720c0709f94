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

/// Read a small regular file in a directory a less trusted party can write
/// (with `BTSYNC_UID`, the engine's user owns the cluster registry and
/// more): the last component is never followed if it is a symbolic link,
/// the open never waits (a FIFO would block the caller, PID 1, until a
/// writer came), and type and size are checked on the open file, so a swap
/// after any earlier check changes nothing. At most `max` bytes are read.
/// A missing file is `NotFound`; anything else refused is `InvalidData`.
pub fn read_untrusted(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use crate::sys::open_flags::{ELOOP, O_NOFOLLOW, O_NONBLOCK};
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(ELOOP) => refused("is a symbolic link"),
            _ => e,
        })?;
    read_small_regular(file, max)
}

/// Read a small regular file whose path a user gave (a key file). Unlike
/// [`read_untrusted`], symbolic links are followed: Kubernetes mounts every
/// key of a Secret as one. The rest is the same: the open never waits (a
/// FIFO would hang the caller, which may be init), anything but a regular
/// file (a directory, /dev/zero) is refused, and at most `max` bytes are
/// read. A missing file is `NotFound`; anything else refused is `InvalidData`.
pub fn read_named(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use crate::sys::open_flags::O_NONBLOCK;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)?;
    read_small_regular(file, max)
}

fn refused(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Type and size are checked on the open file, so a swap after any check
/// on the name changes nothing; the read is bounded too, as a file can
/// grow after the check.
fn read_small_regular(file: File, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused("not a regular file"));
    }
    if meta.len() > max {
        return Err(refused("too big"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(refused("too big"));
    }
    Ok(bytes)
}

/// Open a directory for reading its entries, failing (ELOOP, ENOTDIR)
/// instead of following a symbolic link or opening anything else.
pub fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    use crate::sys::open_flags::{O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK};
    OpenOptions::new()
        .read(true)
        .custom_flags(O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK)
        .open(path)
}

/// fsync a directory so that the renames and unlinks inside it survive a crash.
/// Opened so that whatever was swapped in meanwhile (a FIFO) cannot block.
pub fn sync_dir(dir: &Path) -> Result<()> {
    use crate::sys::open_flags::{O_DIRECTORY, O_NONBLOCK};
    OpenOptions::new()
        .read(true)
        .custom_flags(O_DIRECTORY | O_NONBLOCK)
        .open(dir)
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
        let file = open_lock_file(path)
            .map_err(|e| Error::io(format!("cannot open lock file {}", path.display()), e))?;
        file.lock()
            .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))?;
        Ok(FileLock { _file: file })
    }

    /// Is the lock held by someone right now? Probed without waiting and
    /// released at once; a lock file that cannot be opened is not held.
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = open_lock_file(path) else {
            return false;
        };
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }
}

/// Open (or create) a lock file without following a link planted in its
/// place and without waiting on a FIFO planted there.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    use crate::sys::open_flags::{O_NOFOLLOW, O_NONBLOCK};
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_planted_in_place_of_files_are_refused_without_blocking() {
        // Run on a thread so that a regression fails instead of hanging.
        let (sender, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let root = std::env::temp_dir().join(format!("syncbox-fifo-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).expect("test dir");
            let fifo = root.join("planted");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            assert!(made.is_ok_and(|s| s.success()), "mkfifo");
            let read = read_untrusted(&fifo, 100).map_err(|e| e.kind());
            let synced = sync_dir(&fifo).is_err();
            let _ = sender.send((read, synced));
            let _ = fs::remove_dir_all(&root);
        });
        let (read, sync_refused) = answer
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("an open blocked on a FIFO");
        assert_eq!(read, Err(io::ErrorKind::InvalidData));
        assert!(sync_refused);
    }

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
