//! What a process has open, read from `/proc` (no foreign calls needed),
//! and the names btsync gives a folder's database: the proof init uses
//! that the engine took up or let go of a folder after a config reload.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::sys::Pid;

/// The size of a folder id in `.sync/ID`.
pub const FOLDER_ID_LEN: usize = 20;

/// The targets of every descriptor `pid` holds open (`/proc/PID/fd/*`).
/// A descriptor closed while the directory is read is skipped.
pub fn open_files(pid: Pid) -> io::Result<BTreeSet<PathBuf>> {
    let mut open = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(entry) = entry else { continue };
        if let Ok(target) = std::fs::read_link(entry.path()) {
            // A file unlinked while open still is open.
            let target = match target.to_str().and_then(|t| t.strip_suffix(" (deleted)")) {
                Some(path) => PathBuf::from(path),
                None => target,
            };
            open.insert(target);
        }
    }
    Ok(open)
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
        assert!(open_files(pid).expect("fds").contains(&canonical));
        drop(file);
        assert!(!open_files(pid).expect("fds").contains(&canonical));
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
