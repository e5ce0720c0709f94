//! init's look at the cluster registry folder: read it again only when its
//! listing changed (or a minute passed), keep what `status` shows, and log
//! ignored files without letting any member flood every node's log.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::{Cluster, Intent, Record, merge};
use crate::error::Result;
use crate::name::Name;

/// Look again at least this often even when nothing seems to have changed
/// (a record dated slightly in the future becomes valid; a failed add is
/// retried).
const FULL_RESCAN: Duration = Duration::from_secs(60);
/// At most this many ignored files are remembered as logged.
const MAX_LOGGED_IGNORED: usize = 1000;
/// At most this many newly ignored files are logged one by one per
/// `FULL_RESCAN` (a minute); the rest are counted in a summary line, itself
/// logged at most once a minute and only when its count changed. Any
/// cluster member can write junk into the registry: it must not flood
/// every node's log.
pub const MAX_LOGGED_PER_MINUTE: usize = 20;
/// `status` carries at most this many items of any list (ignored files,
/// declarations, tombstones, folders...), beside the full count: its reply
/// must stay far below the control protocol's 1 MiB whatever the registry
/// holds.
pub const STATUS_SAMPLE: usize = 100;

/// At most `STATUS_SAMPLE` of `items`, as JSON.
pub fn sample<T>(items: impl IntoIterator<Item = T>, describe: impl Fn(T) -> Value) -> Value {
    items
        .into_iter()
        .take(STATUS_SAMPLE)
        .map(describe)
        .collect()
}

/// What init keeps between polls of the registry folder: a cheap signature
/// (names, sizes, inode numbers, change times) so that an unchanged folder
/// costs a directory listing and nothing else.
#[derive(Debug)]
pub struct Watch {
    pub cluster: Cluster,
    signature: Option<Vec<FileStamp>>,
    last_full: Option<Instant>,
    /// When the registry was last looked at, and the winners last found.
    pub last_scan: Option<SystemTime>,
    pub winners: Vec<Record>,
    /// How many files the last look ignored, and the first of them.
    pub ignored_count: usize,
    pub ignored_sample: Vec<(String, String)>,
    /// Records under this node's device id it did not write (file names).
    pub forged: Vec<String>,
    /// The members seen in the registry folder at the last look.
    pub devices: BTreeSet<String>,
    ignored_log: IgnoredLog,
}

/// What init has logged about ignored registry files, so that each is
/// logged once and a flood of them costs a few lines.
#[derive(Debug, Default)]
struct IgnoredLog {
    /// Files reported (one by one or in a summary), at most
    /// `MAX_LOGGED_IGNORED`.
    reported: BTreeSet<(String, String)>,
    /// The current minute of logging: when it began, lines left in it.
    window: Option<(Instant, usize)>,
    /// When the last summary was logged, and the total it gave.
    last_summary: Option<(Instant, usize)>,
}

impl IgnoredLog {
    /// The log lines for the files ignored now (sorted). Files no longer
    /// ignored are forgotten (logged again if they come back broken).
    /// Files past the remembered limit or the minute's budget are only
    /// counted in a summary, which is repeated only when the total changed
    /// and a minute has passed: a full rescan never logs them again.
    fn note(&mut self, now: Instant, ignored: &[(String, String)]) -> Vec<String> {
        let current: BTreeSet<&(String, String)> = ignored.iter().collect();
        self.reported.retain(|item| current.contains(item));
        let (window_start, mut left) = match self.window {
            Some((start, left)) if now.duration_since(start) < FULL_RESCAN => (start, left),
            _ => (now, MAX_LOGGED_PER_MINUTE),
        };
        let mut lines = Vec::new();
        let mut not_shown = 0;
        for item in ignored {
            if self.reported.contains(item) {
                continue;
            }
            let room = self.reported.len() < MAX_LOGGED_IGNORED;
            if left > 0 && room {
                lines.push(format!("ignored registry file {:?}: {}", item.0, item.1));
                left -= 1;
            } else {
                not_shown += 1;
            }
            if room {
                self.reported.insert(item.clone());
            }
        }
        self.window = Some((window_start, left));
        let total = ignored.len();
        let summary_due = not_shown > 0
            && self.last_summary.is_none_or(|(at, counted)| {
                counted != total && now.duration_since(at) >= FULL_RESCAN
            });
        if summary_due {
            lines.push(format!(
                "{total} registry files are ignored; not every one is logged \
                 ('status' shows the count and a sample)"
            ));
            self.last_summary = Some((now, total));
        }
        lines
    }
}

impl Watch {
    pub fn new(cluster: Cluster) -> Watch {
        Watch {
            cluster,
            signature: None,
            last_full: None,
            last_scan: None,
            winners: Vec::new(),
            ignored_count: 0,
            ignored_sample: Vec::new(),
            forged: Vec::new(),
            devices: BTreeSet::new(),
            ignored_log: IgnoredLog::default(),
        }
    }

    /// Make the next poll read the registry even if nothing changed.
    pub fn look_again(&mut self) {
        self.signature = None;
    }

    /// Read the registry if it (or the local registry in `watched_too`)
    /// changed since the last look, or a minute has passed. Returns the
    /// winners and the lines to log about ignored files: each newly ignored
    /// file once, at most `MAX_LOGGED_PER_MINUTE`, the rest summed up.
    pub fn poll(&mut self, now: Instant, watched_too: &[PathBuf]) -> Result<Option<Found>> {
        let mut signature = listing_signature(self.cluster.dir());
        // A member folder made or removed changes the first listing.
        signature.extend(listing_signature(&self.cluster.members_dir()));
        for device in self.cluster.members() {
            signature.extend(listing_signature(&self.cluster.member_dir(&device)));
        }
        for dir in watched_too {
            signature.extend(listing_signature(dir));
        }
        let due = self
            .last_full
            .is_none_or(|at| now.duration_since(at) >= FULL_RESCAN);
        self.last_scan = Some(SystemTime::now());
        if !due && self.signature.as_ref() == Some(&signature) {
            return Ok(None);
        }
        let found = self.cluster.scan()?;
        self.signature = Some(signature);
        self.last_full = Some(now);
        let mut winners: BTreeMap<Name, Record> = BTreeMap::new();
        winners.extend(
            merge(&found.records)
                .into_iter()
                .map(|(name, record)| (name, record.clone())),
        );
        self.winners = winners.values().cloned().collect();
        let lines = self.ignored_log.note(now, &found.ignored);
        self.ignored_count = found.ignored.len();
        self.forged = found.forged;
        self.devices = found.devices;
        let mut ignored = found.ignored;
        ignored.truncate(STATUS_SAMPLE);
        self.ignored_sample = ignored;
        Ok(Some((winners, lines)))
    }

    /// The registry's state for `status`: declarations, tombstones and
    /// ignored files (names and reasons only; keys never appear).
    pub fn status_json(&self) -> Value {
        let now = SystemTime::now();
        let describe = |r: &Record| {
            json!({
                "name": r.name.as_str(),
                "access": match r.intent {
                    Intent::Declared(access) => Some(access.as_str()),
                    Intent::Removed { .. } => None,
                },
                "purge": matches!(r.intent, Intent::Removed { purge: true }),
                "at_ms": r.at_ms,
                "device": r.device,
                "device_name": r.device_name,
            })
        };
        let declared = || {
            self.winners
                .iter()
                .filter(|r| matches!(r.intent, Intent::Declared(_)))
        };
        let removed = || {
            self.winners
                .iter()
                .filter(|r| matches!(r.intent, Intent::Removed { .. }))
        };
        json!({
            "registry": self.cluster.dir().display().to_string(),
            "members": self.cluster.members(),
            "cluster_id": self.cluster.id(),
            "declared": sample(declared(), describe),
            "declared_count": declared().count(),
            "removed": sample(removed(), describe),
            "removed_count": removed().count(),
            "ignored": sample(&self.ignored_sample, |(file, reason)| {
                json!({"file": file, "reason": reason})
            }),
            "ignored_count": self.ignored_count,
            "forged": sample(&self.forged, |file| json!(file)),
            "forged_count": self.forged.len(),
            "last_scan_seconds_ago": self.last_scan.map(|at| {
                now.duration_since(at).map(|d| d.as_secs()).unwrap_or(0)
            }),
        })
    }
}

/// (name, size, inode, mtime s, mtime ns) of one directory entry.
type FileStamp = (String, u64, u64, i64, i64);

/// What a poll found when something changed: the winning record of every
/// namespace, and the lines to log about ignored files.
pub type Found = (BTreeMap<Name, Record>, Vec<String>);

/// The stamp of every entry of `dir`, sorted.
fn listing_signature(dir: &Path) -> Vec<FileStamp> {
    let mut items: Vec<_> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|item| {
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            let meta = item.metadata().ok()?;
            Some((
                name,
                meta.len(),
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
            ))
        })
        .collect();
    items.sort_unstable();
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_ignored_files_is_logged_in_a_few_lines_and_never_again() {
        let junk = |n: usize| -> Vec<(String, String)> {
            (0..n)
                .map(|i| (format!("junk-{i:05}.json"), "not valid JSON".to_owned()))
                .collect()
        };
        let mut log = IgnoredLog::default();
        let start = Instant::now();
        let first = log.note(start, &junk(5000));
        assert_eq!(first.len(), MAX_LOGGED_PER_MINUTE + 1, "{first:?}");
        assert!(first[MAX_LOGGED_PER_MINUTE].starts_with("5000 registry files are ignored"));
        // Full rescans of the same files, past the remembered 1,000 too.
        for minute in 1..4 {
            let again = log.note(start + FULL_RESCAN * minute, &junk(5000));
            assert!(again.is_empty(), "rescan {minute} logged {again:?}");
        }
        // One more: counted, once.
        let more = log.note(start + FULL_RESCAN * 5, &junk(5001));
        assert_eq!(
            more,
            ["5001 registry files are ignored; not every one is logged \
                           ('status' shows the count and a sample)"]
        );
        // A few new files among few: each logged by name.
        let mut small = IgnoredLog::default();
        assert_eq!(small.note(start, &junk(3)).len(), 3);
        assert!(small.note(start, &junk(3)).is_empty());
    }
}
