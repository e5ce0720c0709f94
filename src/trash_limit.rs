//! How much the cluster trash may hold. Every cluster removal moves a full
//! copy of a namespace into `.btsync/cluster-trash/`, kept
//! `BTSYNC_TRASH_DAYS`: a member that declares, fills and removes namespaces
//! in a loop would fill this node's disk. At the limit the node stops
//! applying further cluster removals (they wait, the namespace keeps
//! syncing) rather than deleting anything early: what is in the trash is
//! someone's only way back.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::registry;

/// Copies the cluster trash may hold unless `BTSYNC_TRASH_MAX_COPIES` says
/// otherwise: far more than a cluster retires in a week of normal work
/// (seen in the probe: a flood left 6 copies in 10 minutes).
pub const DEFAULT_MAX_COPIES: usize = 50;
/// The largest count accepted: beyond it the limit means nothing.
const MAX_COPIES: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrashLimit {
    /// Copies (folders) in the trash, counting removals on their way in.
    pub copies: usize,
    /// Bytes on disk of those copies; `None`: no size limit.
    pub bytes: Option<u64>,
}

impl Default for TrashLimit {
    fn default() -> TrashLimit {
        TrashLimit {
            copies: DEFAULT_MAX_COPIES,
            bytes: None,
        }
    }
}

/// What the trash holds, with the removals on their way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrashUse {
    pub copies: usize,
    /// `None` until measured (only measured when a size limit is set).
    pub bytes: Option<u64>,
}

impl TrashLimit {
    /// Why one more removal may not go to the trash now, if it may not.
    /// With a size limit, a use not measured since the last removal
    /// refuses too: two removals must never both fit under one old figure.
    pub fn refuses(&self, used: TrashUse) -> Option<String> {
        if used.copies >= self.copies {
            return Some(format!(
                "the cluster trash holds {} copies, its limit (BTSYNC_TRASH_MAX_COPIES={})",
                used.copies, self.copies
            ));
        }
        let limit = self.bytes?;
        match used.bytes {
            None => Some("the cluster trash is being measured".to_owned()),
            Some(bytes) if bytes >= limit => Some(format!(
                "the cluster trash holds {}, its limit (BTSYNC_TRASH_MAX_SIZE={})",
                size_text(bytes),
                size_text(limit)
            )),
            Some(_) => None,
        }
    }
}

/// The copies syncbox put into the trash (items it did not name do not count).
pub fn count_copies(trash_dir: &Path) -> usize {
    fs::read_dir(trash_dir).map_or(0, |listing| {
        listing
            .flatten()
            .filter(|item| registry::trashed_at(&item.file_name().to_string_lossy()).is_some())
            .count()
    })
}

/// Bytes on disk under `path`, never following a link; what cannot be
/// read counts as nothing.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks().saturating_mul(512);
    if !meta.is_dir() {
        return own;
    }
    let mut total = own;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(listing) = fs::read_dir(&dir) else {
            continue;
        };
        for item in listing.flatten() {
            let Ok(meta) = item.metadata() else {
                continue;
            };
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                pending.push(item.path());
            }
        }
    }
    total
}

/// `BTSYNC_TRASH_MAX_COPIES`: a whole number from 1.
pub fn parse_copies(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_COPIES).contains(&n) => Ok(n),
        _ => Err(format!(
            "{:?} is not a number of copies from 1 to {MAX_COPIES} (e.g. {DEFAULT_MAX_COPIES})",
            shown(text)
        )),
    }
}

/// `BTSYNC_TRASH_MAX_SIZE`: bytes, or a number with K, M, G or T (powers
/// of 1024; `KiB`, `KB` and `K` all mean 1024). `0`: no size limit.
pub fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => Some(0),
        "K" | "KB" | "KIB" => Some(10),
        "M" | "MB" | "MIB" => Some(20),
        "G" | "GB" | "GIB" => Some(30),
        "T" | "TB" | "TIB" => Some(40),
        _ => None,
    };
    let bytes = shift.and_then(|shift| {
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1u64 << shift))
    });
    match bytes {
        Some(0) => Ok(None),
        Some(bytes) => Ok(Some(bytes)),
        None => Err(format!(
            "{:?} is not a size (e.g. 50G, 500M or 1T; 0 = no size limit)",
            shown(text)
        )),
    }
}

/// A size for people: the largest unit it is a whole number of, else MiB.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("T", 40), ("G", 30), ("M", 20), ("K", 10)];
    for (unit, shift) in UNITS {
        let size = 1u64 << shift;
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    if bytes >= 1 << 20 {
        format!("{:.1}M", bytes as f64 / f64::from(1u32 << 20))
    } else {
        format!("{bytes}")
    }
}

/// A long value is not echoed: it may be a key pasted in the wrong place.
fn shown(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.chars().count() <= 16 {
        trimmed.to_owned()
    } else {
        "the value".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_and_zero_means_no_limit() {
        assert_eq!(parse_size("0"), Ok(None));
        assert_eq!(parse_size("4096"), Ok(Some(4096)));
        assert_eq!(parse_size("500M"), Ok(Some(500 << 20)));
        assert_eq!(parse_size(" 50g "), Ok(Some(50 << 30)));
        assert_eq!(parse_size("2TiB"), Ok(Some(2 << 40)));
        assert_eq!(parse_size("1 KB"), Ok(Some(1024)));
        for bad in ["", "G", "-1G", "1.5G", "10X", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(size_text(50 << 30), "50G");
        assert_eq!(size_text(1536 << 20), "1536M");
        assert_eq!(size_text(1000), "1000");
    }

    #[test]
    fn copies_are_a_whole_number_from_one() {
        assert_eq!(parse_copies("7"), Ok(7));
        for bad in ["0", "-3", "x", "1.5", ""] {
            assert!(parse_copies(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_limit_refuses_at_the_count_the_size_or_an_unmeasured_trash() {
        let limit = TrashLimit {
            copies: 3,
            bytes: Some(1000),
        };
        let room = TrashUse {
            copies: 2,
            bytes: Some(999),
        };
        assert_eq!(limit.refuses(room), None);
        let full = limit.refuses(TrashUse { copies: 3, ..room });
        assert!(full.is_some_and(|why| why.contains("3 copies")));
        let big = limit.refuses(TrashUse {
            bytes: Some(1000),
            ..room
        });
        assert!(big.is_some_and(|why| why.contains("BTSYNC_TRASH_MAX_SIZE")));
        let unknown = limit.refuses(TrashUse {
            bytes: None,
            ..room
        });
        assert!(unknown.is_some_and(|why| why.contains("measured")));
        // Without a size limit the size is never needed.
        let count_only = TrashLimit {
            copies: 3,
            bytes: None,
        };
        assert_eq!(
            count_only.refuses(TrashUse {
                bytes: None,
                ..room
            }),
            None
        );
    }
}
