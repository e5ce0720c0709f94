//! What a process has open, read from `/proc` (no foreign calls needed),
//! and the names btsync gives a folder's database: the proof init uses
//! that the engine took up or let go of a folder after a config reload.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::Path;

use crate::sys::Pid;

/// The size of a folder id in `.sync/ID`.
pub const FOLDER_ID_LEN: usize = 20;

/// The targets of every descriptor `pid` holds open (`/proc/PID/fd/*`).
/// A descriptor closed while the directory is read is skipped. Kept as
/// bytes, not paths: an engine serving thousands of folders holds
/// thousands of files, and init looks often while a reload is in flight
/// (paths compare component by component, bytes by `memcmp`).
pub fn open_files(pid: Pid) -> io::Result<BTreeSet<OsString>> {
    let mut open = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(entry) = entry else { continue };
        match std::fs::read_link(entry.path()) {
            Ok(target) => {
                // A file unlinked while open still is open.
                let target = match target.to_str().and_then(|t| t.strip_suffix(" (deleted)")) {
                    Some(path) => OsString::from(path),
                    None => target.into_os_string(),
                };
                open.insert(target);
            }
            // Listing the directory may be allowed where reading the
            // links is not (another user's process, no CAP_SYS_PTRACE):
            // an empty set would read as "holds nothing".
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(e),
            Err(_) => {}
        }
    }
    Ok(open)
}

/// What the engine holds, as far as `/proc` lets init see it: the files
/// it has open (`/proc/PID/fd`, readable when init may trace the engine),
/// or else the files it holds a lock on (`/proc/locks`, readable by
/// anyone). An engine running as another user (`BTSYNC_UID`) in a
/// container without CAP_SYS_PTRACE hides its descriptors from init, but
/// btsync 1.4.111 keeps a write lock on every folder database it serves
/// (SQLite's exclusive mode), which `/proc/locks` shows.
pub enum Holds {
    Open(BTreeSet<OsString>),
    /// (device as major:minor, inode) of every file it holds a lock on.
    Locked(BTreeSet<(u32, u32, u64)>),
}

impl Holds {
    /// Read what `pid` holds; `Err` when neither view can be read.
    pub fn of(pid: Pid) -> io::Result<Holds> {
        match open_files(pid) {
            Ok(open) => Ok(Holds::Open(open)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let text = std::fs::read_to_string("/proc/locks")?;
                Ok(Holds::Locked(locks_held_by(&text, pid)))
            }
            Err(e) => Err(e),
        }
    }

    /// Does the engine hold `path` (a canonical path)?
    pub fn holds(&self, path: &Path) -> bool {
        match self {
            Holds::Open(open) => open.contains(path.as_os_str()),
            Holds::Locked(locked) => std::fs::metadata(path).is_ok_and(|meta| {
                use std::os::unix::fs::MetadataExt;
                locked.contains(&(dev_major(meta.dev()), dev_minor(meta.dev()), meta.ino()))
            }),
        }
    }
}

/// The major number of a `st_dev` (glibc's encoding).
fn dev_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}

/// The minor number of a `st_dev` (glibc's encoding).
fn dev_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

/// The files (device, inode) that `pid` holds a granted lock on, from the
/// text of `/proc/locks`: `9: POSIX  ADVISORY  WRITE 2133 fe:00:10010820 0 EOF`.
/// Waiting requests (`9: -> POSIX ...`) are not held.
pub fn locks_held_by(text: &str, pid: Pid) -> BTreeSet<(u32, u32, u64)> {
    let mut held = BTreeSet::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") || fields.len() < 6 {
            continue;
        }
        if fields[4].parse::<Pid>().ok() != Some(pid) {
            continue;
        }
        let mut id = fields[5].split(':');
        let (Some(major), Some(minor), Some(inode), None) =
            (id.next(), id.next(), id.next(), id.next())
        else {
            continue;
        };
        if let (Ok(major), Ok(minor), Ok(inode)) = (
            u32::from_str_radix(major, 16),
            u32::from_str_radix(minor, 16),
            inode.parse::<u64>(),
        ) {
            held.insert((major, minor, inode));
        }
    }
    held
}

/// The database btsync keeps for the folder with this id:
/// `storage/<upper-case hex of the id>.db`.
pub fn database_name(id: &[u8]) -> String {
    let mut name: String = id.iter().map(|b| format!("{b:02X}")).collect();
    name.push_str(".db");
    name
}

/// The folder id the engine wrote into `folder/.sync/ID`, if there is one
/// of the right size (a symbolic link or a FIFO there is not read).
pub fn read_folder_id(folder: &Path) -> Option<[u8; FOLDER_ID_LEN]> {
    let bytes =
        crate::fsutil::read_untrusted(&folder.join(".sync").join("ID"), FOLDER_ID_LEN as u64 + 1)
            .ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_upper_hex() {
        let mut id = [0u8; FOLDER_ID_LEN];
        id[0] = 0xab;
        id[19] = 0x0f;
        assert_eq!(
            database_name(&id),
            "AB0000000000000000000000000000000000000F.db"
        );
    }

    #[test]
    fn own_open_files_are_listed() {
        let dir = std::env::temp_dir().join(format!("syncbox-procfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("held");
        let file = std::fs::File::create(&path).expect("create");
        let canonical = std::fs::canonicalize(&path).expect("canonical");
        let pid = std::process::id() as Pid;
        assert!(
            open_files(pid)
                .expect("fds")
                .contains(canonical.as_os_str())
        );
        drop(file);
        assert!(
            !open_files(pid)
                .expect("fds")
                .contains(canonical.as_os_str())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn locks_are_read_per_pid_and_waiters_do_not_hold() {
        let text = "\
9: POSIX  ADVISORY  WRITE 2133 fe:00:10010820 1073741824 1073742335
10: FLOCK  ADVISORY  WRITE 2133 fe:00:10010789 0 EOF
10: -> FLOCK  ADVISORY  WRITE 77 fe:00:10010789 0 EOF
11: OFDLCK ADVISORY  READ  -1 00:2b:6 0 EOF
12: POSIX  ADVISORY  WRITE 21330 103:02:5 0 EOF
";
        let held = locks_held_by(text, 2133);
        assert_eq!(
            held,
            BTreeSet::from([(0xfe, 0, 10010820), (0xfe, 0, 10010789)])
        );
        assert!(locks_held_by(text, 77).is_empty());
        assert_eq!(locks_held_by(text, 21330), BTreeSet::from([(0x103, 2, 5)]));
    }

    /// This process's own flock shows in /proc/locks with its device and inode.
    #[test]
    fn an_own_lock_is_seen_held_through_proc_locks() {
        let dir = std::env::temp_dir().join(format!("syncbox-procfs-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("locked.db");
        let file = std::fs::File::create(&path).expect("create");
        let pid = std::process::id() as Pid;
        let locked = |pid| {
            let text = std::fs::read_to_string("/proc/locks").expect("/proc/locks");
            Holds::Locked(locks_held_by(&text, pid))
        };
        assert!(!locked(pid).holds(&path));
        file.lock().expect("flock");
        assert!(locked(pid).holds(&path));
        assert!(!locked(pid + 1).holds(&path));
        drop(file);
        assert!(!locked(pid).holds(&path));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn folder_ids_of_the_wrong_size_are_ignored() {
        let dir = std::env::temp_dir().join(format!("syncbox-procfs-id-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".sync")).expect("dir");
        assert_eq!(read_folder_id(&dir), None);
        std::fs::write(dir.join(".sync/ID"), [7u8; 19]).expect("write");
        assert_eq!(read_folder_id(&dir), None);
        std::fs::write(dir.join(".sync/ID"), [7u8; 20]).expect("write");
        assert_eq!(read_folder_id(&dir), Some([7u8; 20]));
        std::fs::write(dir.join(".sync/ID"), [7u8; 21]).expect("write");
        assert_eq!(read_folder_id(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
