//! Giving trees to the user the engine runs as (`BTSYNC_UID`/`BTSYNC_GID`)
//! without ever following a symbolic link, also while the engine changes
//! the tree under the walk.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::settings::Owner;

/// lchown `path` (shown to users as `shown`); gone by now is fine.
pub fn chown_one(path: &Path, shown: &Path, owner: Owner) -> Result<()> {
    match std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!(
                "cannot give {} to {}:{}",
                shown.display(),
                owner.uid,
                owner.gid
            ),
            e,
        )),
    }
}

/// Chown a whole tree, but only when its top belongs to someone else: a
/// folder the engine already owns is left alone, so a restart does not walk
/// every file of every namespace. The top is chowned last, so a walk that
/// was cut short (init killed) is done again at the next start.
pub fn chown_tree_if_foreign(top: &Path, owner: Owner) -> Result<()> {
    let meta = match fs::symlink_metadata(top) {
        Ok(meta) => meta,
        // Deleted since it was listed: nothing to give.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("cannot inspect {}", top.display()), e)),
    };
    if meta.uid() == owner.uid && meta.gid() == owner.gid {
        return Ok(());
    }
    chown_tree(top, owner)
}

/// Give a tree to `owner` without ever following a symbolic link, also
/// while the engine (which may own parts of the tree already) swaps a
/// directory for a link to `/etc` in the middle of the walk: each directory
/// is opened without following links, and everything in it is reached
/// through that open directory (`/proc/self/fd/N/NAME`), never again
/// through a path. Entries that vanish during the walk (the engine or a
/// user deleting files) are skipped, not an error.
fn chown_tree(path: &Path, owner: Owner) -> Result<()> {
    match fsutil::open_dir_nofollow(path) {
        Ok(dir) => chown_dir(&dir, path, owner),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // A file or a link: chown it (the link itself).
        Err(_) => chown_one(path, path, owner),
    }
}

fn chown_dir(dir: &fs::File, shown: &Path, owner: Owner) -> Result<()> {
    use std::os::fd::AsRawFd;
    let here = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let listing = fs::read_dir(&here).map_err(|e| {
        Error::io(
            format!("cannot read {} (is /proc mounted?)", shown.display()),
            e,
        )
    })?;
    for item in listing.flatten() {
        let name = item.file_name();
        let child = here.join(&name);
        match fsutil::open_dir_nofollow(&child) {
            Ok(sub) => chown_dir(&sub, &shown.join(&name), owner)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => chown_one(&child, &shown.join(&name), owner)?,
        }
    }
    std::os::unix::fs::fchown(dir, Some(owner.uid), Some(owner.gid)).map_err(|e| {
        Error::io(
            format!(
                "cannot give {} to {}:{}",
                shown.display(),
                owner.uid,
                owner.gid
            ),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    #[test]
    fn chown_tree_skips_what_vanished_and_never_follows_links() {
        if sys::effective_uid() != 0 {
            eprintln!("chown_tree test: SKIPPED: needs root (CI runs as root)");
            return;
        }
        let root = std::env::temp_dir().join(format!("syncbox-chown-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let top = root.join("top");
        let outside = root.join("outside");
        fs::create_dir_all(top.join("a/b")).expect("tree");
        fs::write(top.join("a/b/file"), "x").expect("file");
        fs::create_dir_all(&outside).expect("outside");
        fs::write(outside.join("victim"), "x").expect("victim");
        std::os::unix::fs::symlink(&outside, top.join("a/link")).expect("link");
        let owner = Owner {
            uid: 4242,
            gid: 4343,
        };
        chown_tree(&top, owner).expect("chown the tree");
        let owned = |p: &Path| {
            let m = fs::symlink_metadata(p).expect("meta");
            (m.uid(), m.gid())
        };
        for p in ["", "a", "a/b", "a/b/file", "a/link"] {
            assert_eq!(owned(&top.join(p)), (4242, 4343), "{p}");
        }
        assert_eq!(owned(&outside), (0, 0), "followed a link");
        assert_eq!(owned(&outside.join("victim")), (0, 0), "followed a link");
        // A folder or file deleted while the engine starts is no error.
        chown_tree(&top.join("gone"), owner).expect("a vanished path");
        chown_tree_if_foreign(&top.join("gone"), owner).expect("a vanished top");
        fs::remove_dir_all(&root).expect("clean up");
    }
}
