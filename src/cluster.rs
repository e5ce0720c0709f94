//! Cluster-wide declarations: the records that `add --cluster` and
//! `del --cluster` write into the registry folder that every node's engine
//! syncs, and the rule that turns them into local adds and removals.
//!
//! Each node writes only its own files, `NS@DEVICE.json`, so two nodes never
//! edit the same file and the engine never has a write conflict to resolve.
//! For each namespace the newest record across all nodes wins (last writer
//! wins by time). A removal is always an explicit tombstone: a namespace
//! that has no record is simply unknown, never removed.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::keys::Access;
use crate::name::Name;

/// Version of the record format; other versions are ignored, not guessed at.
pub const FORMAT: u64 = 1;
/// Records dated further than this into the future are ignored: one node
/// with a broken clock must not be able to pin a namespace forever.
pub const MAX_CLOCK_SKEW_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Every node should hold the namespace, with this access.
    Declared(Access),
    /// Every node should drop the namespace.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: Name,
    pub intent: Intent,
    /// Milliseconds since the epoch when the record was written.
    pub at_ms: u64,
    /// The writing node's device id (16 lower-case hex digits).
    pub device: String,
    /// The writing node's device name, for people reading `status`.
    pub device_name: String,
}

impl Record {
    /// File name of this record in the registry folder.
    pub fn file_name(&self) -> String {
        format!("{}@{}.json", self.name, self.device)
    }

    pub fn to_json(&self, cluster_id: &str) -> String {
        let (state, access) = match self.intent {
            Intent::Declared(access) => ("declared", Some(access.as_str())),
            Intent::Removed => ("removed", None),
        };
        let mut text = json!({
            "v": FORMAT,
            "cluster": cluster_id,
            "name": self.name.as_str(),
            "state": state,
            "access": access,
            "at": self.at_ms,
            "device": self.device,
            "device_name": self.device_name,
        })
        .to_string();
        text.push('\n');
        text
    }

    /// Parse one record file; `Err` says why it is not acted on.
    pub fn parse(
        file_name: &str,
        text: &str,
        cluster_id: &str,
        now_ms: u64,
    ) -> std::result::Result<Record, String> {
        let value: Value = serde_json::from_str(text).map_err(|_| "not valid JSON".to_owned())?;
        let field = |key: &str| value.get(key).and_then(Value::as_str);
        if value.get("v").and_then(Value::as_u64) != Some(FORMAT) {
            return Err("unknown format version".into());
        }
        if field("cluster") != Some(cluster_id) {
            return Err("written for another cluster (a different cluster key)".into());
        }
        let name = field("name")
            .and_then(|n| Name::parse(n).ok())
            .ok_or("no valid namespace name")?;
        let device = field("device")
            .filter(|d| is_device_id(d))
            .ok_or("no valid device id")?
            .to_owned();
        if file_name != format!("{name}@{device}.json") {
            return Err("its file name does not match its content".into());
        }
        let intent = match (field("state"), field("access")) {
            (Some("declared"), Some("read-write")) => Intent::Declared(Access::ReadWrite),
            (Some("declared"), Some("read-only")) => Intent::Declared(Access::ReadOnly),
            (Some("removed"), _) => Intent::Removed,
            _ => return Err("unknown state or access".into()),
        };
        let at_ms = value.get("at").and_then(Value::as_u64).ok_or("no time")?;
        if at_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err("dated more than a day in the future".into());
        }
        let device_name = field("device_name")
            .unwrap_or("")
            .chars()
            .take(64)
            .collect();
        Ok(Record {
            name,
            intent,
            at_ms,
            device,
            device_name,
        })
    }

    /// The order in which records supersede each other: later time wins;
    /// at the same millisecond a declaration beats a removal (keeping data
    /// is the safer mistake); then the larger device id, so every node
    /// picks the same winner.
    fn precedence(&self) -> (u64, u8, &str) {
        let rank = match self.intent {
            Intent::Declared(_) => 1,
            Intent::Removed => 0,
        };
        (self.at_ms, rank, &self.device)
    }
}

pub fn is_device_id(text: &str) -> bool {
    text.len() == 16
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a scan of the registry folder found.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Record>,
    /// Files that were ignored, with the reason (for the log and `status`).
    pub ignored: Vec<(String, String)>,
}

/// Read every record file in `dir`. Unreadable or foreign files are listed
/// in `ignored`, never acted on; a missing folder is an empty registry.
pub fn scan(dir: &Path, cluster_id: &str, now_ms: u64) -> Result<Scan> {
    let mut found = Scan::default();
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(Error::io(format!("cannot read {}", dir.display()), e)),
    };
    for item in listing.flatten() {
        let file_name = item.file_name().to_string_lossy().into_owned();
        // The engine's own files (.sync/, temporary downloads) are not ours.
        if file_name.starts_with('.') || !file_name.ends_with(".json") {
            continue;
        }
        let parsed = match item.metadata() {
            Ok(meta) if meta.is_file() && meta.len() <= 4096 => fs::read_to_string(item.path())
                .map_err(|e| format!("unreadable: {e}"))
                .and_then(|text| Record::parse(&file_name, &text, cluster_id, now_ms)),
            Ok(_) => Err("not a small regular file".into()),
            Err(e) => Err(format!("unreadable: {e}")),
        };
        match parsed {
            Ok(record) => found.records.push(record),
            Err(reason) => found.ignored.push((file_name, reason)),
        }
    }
    found.ignored.sort();
    Ok(found)
}

/// The winning record for every namespace that has one.
pub fn merge(records: &[Record]) -> BTreeMap<Name, &Record> {
    let mut winners: BTreeMap<Name, &Record> = BTreeMap::new();
    for record in records {
        match winners.get(&record.name) {
            Some(current) if current.precedence() >= record.precedence() => {}
            _ => {
                winners.insert(record.name.clone(), record);
            }
        }
    }
    winners
}

/// What this node holds locally, as far as reconciling is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub name: Name,
    /// Registered because of a cluster declaration (only those are removed
    /// by a cluster tombstone; a namespace added locally is left alone).
    pub from_cluster: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Add { name: Name, access: Access },
    Remove { name: Name },
}

/// The local changes that bring this node in line with the cluster.
pub fn reconcile(winners: &BTreeMap<Name, &Record>, local: &[Local]) -> Vec<Action> {
    let held: BTreeMap<&Name, &Local> = local.iter().map(|l| (&l.name, l)).collect();
    let mut actions = Vec::new();
    for (name, record) in winners {
        match (record.intent, held.get(name)) {
            (Intent::Declared(access), None) => actions.push(Action::Add {
                name: name.clone(),
                access,
            }),
            (Intent::Removed, Some(l)) if l.from_cluster => {
                actions.push(Action::Remove { name: name.clone() })
            }
            _ => {}
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "0123456789abcdef";
    const NOW: u64 = 1_764_000_000_000;

    fn record(name: &str, intent: Intent, at_ms: u64, device: &str) -> Record {
        Record {
            name: Name::parse(name).unwrap(),
            intent,
            at_ms,
            device: device.repeat(16 / device.len()),
            device_name: "node".into(),
        }
    }

    fn round_trip(r: &Record) -> std::result::Result<Record, String> {
        Record::parse(&r.file_name(), &r.to_json(CLUSTER), CLUSTER, NOW)
    }

    #[test]
    fn records_round_trip() {
        for intent in [
            Intent::Declared(Access::ReadWrite),
            Intent::Declared(Access::ReadOnly),
            Intent::Removed,
        ] {
            let r = record("gitlab", intent, NOW, "a");
            assert_eq!(round_trip(&r), Ok(r));
        }
    }

    #[test]
    fn hostile_records_are_rejected_with_a_reason() {
        let good = record("gitlab", Intent::Declared(Access::ReadWrite), NOW, "a");
        let text = good.to_json(CLUSTER);
        let name = good.file_name();
        let cases: Vec<(String, String)> = vec![
            (name.clone(), "garbage".into()),
            (name.clone(), text.replace(CLUSTER, "ffffffffffffffff")),
            (name.clone(), text.replace("\"v\":1", "\"v\":2")),
            (name.clone(), text.replace("gitlab", "../etc")),
            ("other@aaaaaaaaaaaaaaaa.json".into(), text.clone()),
            (name.clone(), text.replace("read-write", "root")),
            (
                name.clone(),
                text.replace(&NOW.to_string(), &(NOW + 2 * MAX_CLOCK_SKEW_MS).to_string()),
            ),
            (
                name.clone(),
                text.replace("aaaaaaaaaaaaaaaa", "AAAAAAAAAAAAAAAA"),
            ),
        ];
        for (file, body) in cases {
            let outcome = Record::parse(&file, &body, CLUSTER, NOW);
            assert!(outcome.is_err(), "{file}: {body} was accepted");
        }
    }

    #[test]
    fn newest_record_wins_and_ties_favour_keeping_data() {
        let declared = record("ns", Intent::Declared(Access::ReadWrite), 10, "a");
        let removed_later = record("ns", Intent::Removed, 11, "b");
        let declared_again = record("ns", Intent::Declared(Access::ReadOnly), 12, "a");
        let removed_same_ms = record("ns", Intent::Removed, 12, "f");

        let all = [declared.clone(), removed_later.clone()];
        assert_eq!(merge(&all)[&declared.name].intent, Intent::Removed);
        let all = [
            removed_later.clone(),
            declared_again.clone(),
            declared.clone(),
        ];
        assert_eq!(
            merge(&all)[&declared.name].intent,
            Intent::Declared(Access::ReadOnly)
        );
        let all = [removed_same_ms.clone(), declared_again.clone()];
        assert_eq!(
            merge(&all)[&declared.name].intent,
            Intent::Declared(Access::ReadOnly)
        );
        // Order of arrival never matters.
        let all = [declared_again, removed_same_ms];
        assert_eq!(
            merge(&all)[&declared.name].intent,
            Intent::Declared(Access::ReadOnly)
        );
    }

    #[test]
    fn reconcile_adds_declared_and_removes_only_cluster_tombstoned() {
        let records = [
            record("new", Intent::Declared(Access::ReadWrite), 1, "a"),
            record("held", Intent::Declared(Access::ReadWrite), 1, "a"),
            record("gone", Intent::Removed, 1, "a"),
            record("mine", Intent::Removed, 1, "a"),
            record("never-held", Intent::Removed, 1, "a"),
        ];
        let local = [
            Local {
                name: Name::parse("held").unwrap(),
                from_cluster: true,
            },
            Local {
                name: Name::parse("gone").unwrap(),
                from_cluster: true,
            },
            Local {
                name: Name::parse("mine").unwrap(),
                from_cluster: false,
            },
            Local {
                name: Name::parse("unknown").unwrap(),
                from_cluster: true,
            },
        ];
        let actions = reconcile(&merge(&records), &local);
        assert_eq!(
            actions,
            vec![
                Action::Remove {
                    name: Name::parse("gone").unwrap()
                },
                Action::Add {
                    name: Name::parse("new").unwrap(),
                    access: Access::ReadWrite
                },
            ]
        );
    }

    #[test]
    fn an_empty_registry_removes_nothing() {
        let local = [Local {
            name: Name::parse("held").unwrap(),
            from_cluster: true,
        }];
        assert!(reconcile(&merge(&[]), &local).is_empty());
    }

    #[test]
    fn scan_ignores_foreign_files_and_reads_good_ones() {
        let dir = std::env::temp_dir().join(format!("syncbox-cluster-scan-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join(".sync")).unwrap();
        let good = record("gitlab", Intent::Declared(Access::ReadWrite), NOW, "a");
        fs::write(dir.join(good.file_name()), good.to_json(CLUSTER)).unwrap();
        fs::write(dir.join("junk.json"), "{").unwrap();
        fs::write(dir.join("huge@aaaaaaaaaaaaaaaa.json"), "x".repeat(5000)).unwrap();
        fs::write(dir.join(".sync/ID"), "engine").unwrap();
        fs::write(dir.join("notes.txt"), "hello").unwrap();
        let found = scan(&dir, CLUSTER, NOW).unwrap();
        assert_eq!(found.records, vec![good]);
        let ignored: Vec<&str> = found.ignored.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(ignored, ["huge@aaaaaaaaaaaaaaaa.json", "junk.json"]);
        fs::remove_dir_all(&dir).unwrap();
        assert!(scan(&dir, CLUSTER, NOW).unwrap().records.is_empty());
    }
}
