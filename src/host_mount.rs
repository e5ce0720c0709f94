//! Is the data root the host directory `BTSYNC_HOST_PATH` names? `path`
//! and the volume plugin hand services that host path; if the container
//! was started without the bind mount (a forgotten `-v`, an anonymous or
//! named docker volume instead), nothing syncs there and a service would
//! run on an empty directory docker made for it. The kernel shows, in
//! `/proc/self/mountinfo`, which directory of its filesystem each mount
//! shows: for a bind mount of `/mnt/resource/sync` that is
//! `/mnt/resource/sync` (or its tail, when `/mnt/resource` is a filesystem
//! of its own; or under a subvolume prefix such as btrfs's `/@`), for a
//! docker volume `/var/lib/docker/volumes/ID/_data`.
//!
//! Only evidence refuses: the two paths must end the same way, one being a
//! tail of the other, path component by path component. A mount showing the
//! root of its filesystem matches any host path, since nothing tells.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::Layout;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo: which directory of its filesystem (`root`) is
/// seen at `mount_point`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub root: PathBuf,
    pub mount_point: PathBuf,
}

/// The mounts of a mountinfo text, in its order (a later mount on the same
/// point covers an earlier one). Lines that do not parse are left out.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options ...
            let mut fields = line.split(' ');
            let root = fields.nth(3)?;
            let mount_point = fields.next()?;
            Some(Mount {
                root: PathBuf::from(unescape(root)),
                mount_point: PathBuf::from(unescape(mount_point)),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which directory of its filesystem `path` (absolute, symlinks resolved)
/// is, by the mount that holds it: the mount's root joined with the rest
/// of `path` below its mount point. Also whether that mount is the root
/// mount (`/`): then `path` has no mount of its own.
pub fn seen_as(mounts: &[Mount], path: &Path) -> Option<(PathBuf, bool)> {
    let holder = mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        // The deepest mount point; on the same point, the latest mount.
        .max_by_key(|(index, m)| (m.mount_point.components().count(), *index))
        .map(|(_, m)| m)?;
    let below = path.strip_prefix(&holder.mount_point).ok()?;
    let seen = if below.as_os_str().is_empty() {
        holder.root.clone()
    } else {
        holder.root.join(below)
    };
    Some((seen, holder.mount_point == Path::new("/")))
}

fn names(path: &Path) -> Vec<&std::ffi::OsStr> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect()
}

/// Can `seen` (a directory of some filesystem) be the host's `host`? One
/// must end with the other's components.
pub fn could_be(host: &Path, seen: &Path) -> bool {
    let (host, seen) = (names(host), names(seen));
    host.ends_with(&seen) || seen.ends_with(&host)
}

/// At init's start: with `BTSYNC_HOST_PATH` set, refuse a data root that is
/// not a bind mount of it. Unreadable mountinfo proves nothing: `Ok(Some)`
/// carries a line for the log instead.
pub fn check(layout: &Layout) -> Result<Option<String>> {
    let Some(host) = layout.host_root() else {
        return Ok(None);
    };
    let data = std::fs::canonicalize(layout.data_root()).map_err(|e| {
        Error::io(
            format!("cannot resolve {}", layout.data_root().display()),
            e,
        )
    })?;
    if data == host {
        // init runs where the host path is (no container): nothing to tell.
        return Ok(None);
    }
    let text = match std::fs::read_to_string(MOUNTINFO) {
        Ok(text) => text,
        Err(e) => {
            return Ok(Some(format!(
                "cannot read {MOUNTINFO} ({e}): not checked that {} is a bind mount of {}",
                data.display(),
                host.display()
            )));
        }
    };
    let Some((seen, on_root_mount)) = seen_as(&parse_mountinfo(&text), &data) else {
        return Ok(Some(format!(
            "{MOUNTINFO} shows no mount holding {}: not checked that it is a bind mount of {}",
            data.display(),
            host.display()
        )));
    };
    if !on_root_mount && could_be(host, &seen) {
        return Ok(None);
    }
    Err(Error::HostPathMismatch {
        host: host.to_owned(),
        data,
        seen: (!on_root_mount).then_some(seen),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as a container under docker 28 shows them.
    const CONTAINER: &str = "\
812 700 0:51 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/x
813 812 0:54 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
820 812 254:0 /mnt/resource/sync /data rw,relatime - ext4 /dev/vda rw
821 812 254:0 /var/lib/docker/volumes/3f2a/_data /anon rw,relatime - ext4 /dev/vda rw
822 812 254:1 /sync /disk rw,relatime - ext4 /dev/vdb rw
823 812 0:60 /@/srv/sync /btrfs rw,relatime - btrfs /dev/vdc rw
824 812 254:0 /with\\040space /spaced rw,relatime - ext4 /dev/vda rw
825 812 0:61 / /whole rw,relatime - tmpfs tmpfs rw
826 820 254:0 /elsewhere /data rw,relatime - ext4 /dev/vda rw
";

    fn seen(path: &str) -> (PathBuf, bool) {
        seen_as(&parse_mountinfo(CONTAINER), Path::new(path)).expect("a mount holds it")
    }

    #[test]
    fn the_deepest_latest_mount_tells_what_a_path_is() {
        assert_eq!(
            seen("/anon"),
            ("/var/lib/docker/volumes/3f2a/_data".into(), false)
        );
        assert_eq!(seen("/disk/ns"), ("/sync/ns".into(), false));
        assert_eq!(seen("/spaced"), ("/with space".into(), false));
        // Mounted twice on /data: the later mount covers the first.
        assert_eq!(seen("/data"), ("/elsewhere".into(), false));
        // No mount of its own: the container's root filesystem.
        assert_eq!(seen("/srv/data"), ("/srv/data".into(), true));
        assert!(seen_as(&[], Path::new("/data")).is_none());
    }

    #[test]
    fn a_bind_mount_matches_its_host_path_and_a_volume_does_not() {
        let host = Path::new("/mnt/resource/sync");
        assert!(could_be(host, Path::new("/mnt/resource/sync")));
        assert!(could_be(
            Path::new("/mnt/resource/sync/"),
            Path::new("/mnt/resource/sync")
        ));
        // /mnt/resource is a filesystem of its own.
        assert!(could_be(host, Path::new("/sync")));
        // A subvolume prefix (btrfs /@).
        assert!(could_be(host, Path::new("/@/mnt/resource/sync")));
        // A filesystem's root tells nothing.
        assert!(could_be(host, Path::new("/")));
        assert!(!could_be(
            host,
            Path::new("/var/lib/docker/volumes/3f2a/_data")
        ));
        assert!(!could_be(host, Path::new("/volumes/3f2a/_data")));
        assert!(!could_be(host, Path::new("/mnt/other/sync")));
        assert!(!could_be(
            Path::new("/srv/_data"),
            Path::new("/volumes/x/_data")
        ));
    }
}
