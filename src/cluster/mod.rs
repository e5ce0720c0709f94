//! Cluster-wide declarations: the records that `add --cluster` and
//! `del --cluster` write into the registry folder that every node's engine
//! syncs, and the rule that turns them into local adds and removals.
//!
//! Each node writes only its own files, `NS@DEVICE.json`, so two nodes never
//! edit the same file and the engine never has a write conflict to resolve.
//! For each namespace the newest record across all nodes wins (last writer
//! wins by time). A removal is always an explicit tombstone: a namespace
//! that has no record is simply unknown, never removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cluster_key::{CLUSTER_KEY_FILE_VAR, ClusterKey};
use crate::error::{Error, Result};
use crate::file_rule::{self, FileRule, RuleChange};
use crate::fsutil;
use crate::keys::{Access, Key};
use crate::layout::Layout;
use crate::name::Name;
use crate::read_only::read_only_key;
use crate::registry::{ClusterUnregistered, Entry, Registry, RegistryLock};

pub mod pace;
mod watch;

pub use watch::{Found, MAX_LOGGED_PER_MINUTE, STATUS_SAMPLE, Watch, sample};

/// Version of the record format; other versions are ignored, not guessed at.
pub const FORMAT: u64 = 1;
/// Records dated further than this into the future are ignored: one node
/// with a broken clock must not be able to pin a namespace forever.
pub const MAX_CLOCK_SKEW_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Every node should hold the namespace, with this access.
    Declared(Access),
    /// Every node should drop the namespace: move its folder into the
    /// cluster trash, or delete it with `purge`.
    Removed { purge: bool },
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
    /// A declaration's owner and umask (`add --cluster --owner`), given to
    /// the namespace on every node; `None`: each node keeps its own.
    pub rule: Option<FileRule>,
}

impl Record {
    /// File name of this record in the registry folder.
    pub fn file_name(&self) -> String {
        format!("{}@{}.json", self.name, self.device)
    }

    pub fn to_json(&self, cluster_id: &str) -> String {
        let (state, access) = match self.intent {
            Intent::Declared(access) => ("declared", Some(access.as_str())),
            Intent::Removed { .. } => ("removed", None),
        };
        let mut value = json!({
            "v": FORMAT,
            "cluster": cluster_id,
            "name": self.name.as_str(),
            "state": state,
            "access": access,
            "at": self.at_ms,
            "device": self.device,
            "device_name": self.device_name,
        });
        if let Intent::Removed { purge: true } = self.intent {
            // Only tombstones that delete carry the field.
            value["purge"] = json!(true);
        }
        if let (Intent::Declared(_), Some(rule)) = (self.intent, self.rule) {
            value["umask"] = json!(file_rule::umask_text(rule.umask));
            if let Some(owner) = rule.owner {
                value["owner"] = json!(file_rule::owner_text(owner));
            }
        }
        let mut text = value.to_string();
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
        match field("cluster") {
            Some(id) if id == cluster_id => {}
            Some(_) => return Err("written for another cluster (a different cluster key)".into()),
            None => return Err("missing fields (no cluster id)".into()),
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
            (Some("removed"), _) => Intent::Removed {
                purge: value.get("purge").and_then(Value::as_bool) == Some(true),
            },
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
        // Declarations written before namespaces had owners carry neither.
        let rule = match (intent, value.get("owner"), value.get("umask")) {
            (Intent::Removed { .. }, _, _) | (_, None, None) => None,
            (_, owner, umask) => Some(FileRule {
                owner: match owner {
                    None => None,
                    Some(text) => Some(
                        text.as_str()
                            .and_then(file_rule::parse_owner_text)
                            .ok_or("an owner that is not UID:GID")?,
                    ),
                },
                umask: match umask {
                    None => file_rule::DEFAULT_UMASK,
                    Some(text) => text
                        .as_str()
                        .and_then(|t| file_rule::parse_umask(t).ok())
                        .ok_or("a umask that is not an octal group/other umask")?,
                },
            }),
        };
        Ok(Record {
            name,
            intent,
            at_ms,
            device,
            device_name,
            rule,
        })
    }

    /// The order in which records supersede each other: later time wins;
    /// at the same millisecond a declaration beats a removal (keeping data
    /// is the safer mistake); then the larger device id, so every node
    /// picks the same winner.
    fn precedence(&self) -> (u64, u8, &str) {
        let rank = match self.intent {
            Intent::Declared(_) => 1,
            Intent::Removed { .. } => 0,
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

/// Record files are a few hundred bytes; anything bigger is not ours.
const MAX_RECORD_BYTES: u64 = 4096;

/// Read a record file. The registry folder belongs to the engine's user,
/// who may swap anything in at any moment (a FIFO, a link to a device): see
/// [`fsutil::read_untrusted`], which checks the open file, never the name.
fn read_small_file(path: &Path) -> std::result::Result<String, String> {
    let bytes = fsutil::read_untrusted(path, MAX_RECORD_BYTES).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => "not a small regular file".to_owned(),
        _ => format!("unreadable: {e}"),
    })?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

/// What a scan of the registry folder found.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Record>,
    /// Files that were ignored, with the reason (for the log and `status`).
    pub ignored: Vec<(String, String)>,
    /// Of those, the records under this node's device id that this node
    /// did not write (file names).
    pub forged: Vec<String>,
    /// The members that announced themselves in the registry folder
    /// (`DEVICE.member`). Not the devices of records: anyone with the key
    /// can make up device ids by the thousand, and each member folder is
    /// one more engine folder.
    pub devices: BTreeSet<String>,
}

/// Member folders a node takes up at most (its own included): each is an
/// engine folder, and announcements are as easy to forge as records.
/// Members beyond it still reach this node through the registry folder.
pub const MAX_MEMBER_FOLDERS: usize = 64;

/// Suffix of a member's announcement in the registry folder.
const ANNOUNCEMENT_SUFFIX: &str = ".member";

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
        if let Some(device) = file_name.strip_suffix(ANNOUNCEMENT_SUFFIX)
            && is_device_id(device)
        {
            found.devices.insert(device.to_owned());
            continue;
        }
        // The engine's own files (.sync/, temporary downloads) are not ours.
        if file_name.starts_with('.') || !file_name.ends_with(".json") {
            continue;
        }
        let parsed = match item.metadata() {
            Ok(meta) if meta.is_file() && meta.len() <= MAX_RECORD_BYTES => {
                read_small_file(&item.path())
                    .and_then(|text| Record::parse(&file_name, &text, cluster_id, now_ms))
            }
            Ok(_) => Err("not a small regular file".into()),
            Err(e) => Err(format!("unreadable: {e}")),
        };
        match parsed {
            Ok(record) => found.records.push(record),
            Err(reason) => found.ignored.push((file_name, reason)),
        }
    }
    found.ignored.sort_unstable();
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
    pub rule: FileRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Add {
        name: Name,
        access: Access,
        rule: Option<FileRule>,
    },
    /// A namespace this node holds from the cluster was declared again
    /// with another owner or umask.
    SetRule {
        name: Name,
        rule: FileRule,
    },
    Remove {
        name: Name,
        purge: bool,
    },
}

/// The local changes that bring this node in line with the cluster.
pub fn reconcile(winners: &BTreeMap<Name, &Record>, local: &[Local]) -> Vec<Action> {
    // extend, not collect: collect sorts first, and every type sorted adds
    // its own copy of the sort code to the binary.
    let mut held: BTreeMap<&Name, &Local> = BTreeMap::new();
    held.extend(local.iter().map(|l| (&l.name, l)));
    let mut actions = Vec::new();
    for (name, record) in winners {
        match (record.intent, held.get(name)) {
            (Intent::Declared(access), None) => actions.push(Action::Add {
                name: name.clone(),
                access,
                rule: record.rule,
            }),
            (Intent::Declared(_), Some(l)) if l.from_cluster => {
                // What the declaration leaves out (no owner) each node keeps.
                let wanted = record.rule.map(|r| RuleChange::from(r).over(l.rule));
                if let Some(rule) = wanted.filter(|r| *r != l.rule) {
                    actions.push(Action::SetRule {
                        name: name.clone(),
                        rule,
                    });
                }
            }
            (Intent::Removed { purge }, Some(l)) if l.from_cluster => {
                actions.push(Action::Remove {
                    name: name.clone(),
                    purge,
                })
            }
            _ => {}
        }
    }
    actions
}

// ------------------------------------------------------------ cluster mode

/// A node's view of cluster mode: the cluster key, the public cluster id
/// and where the registry folder is.
#[derive(Debug, Clone)]
pub struct Cluster {
    key: ClusterKey,
    id: String,
    dir: PathBuf,
    layout: Layout,
}

impl Cluster {
    pub fn new(key: ClusterKey, layout: &Layout) -> Cluster {
        Cluster {
            id: key.cluster_id(),
            key,
            dir: layout.cluster_registry_dir(),
            layout: layout.clone(),
        }
    }

    /// Cluster mode is on when a cluster key is set (see `cluster_key`).
    pub fn from_env(layout: &Layout) -> Result<Option<Cluster>> {
        Ok(ClusterKey::from_env()?.map(|key| Cluster::new(key, layout)))
    }

    /// Like [`Cluster::from_env`], for the cluster options of `add`/`del`.
    pub fn required(layout: &Layout, option: &str) -> Result<Cluster> {
        Cluster::from_env(layout)?.ok_or_else(|| {
            Error::Usage(format!(
                "{option} needs the cluster key: set {CLUSTER_KEY_FILE_VAR} (or \
                 BTSYNC_CLUSTER_KEY) to the same key on every node"
            ))
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of the registry folder itself.
    pub fn registry_key(&self) -> Key {
        self.key.registry_key()
    }

    /// The key every node registers a declared namespace with.
    pub fn namespace_key(&self, ns: &Name, access: Access) -> Result<Key> {
        let key = self.key.namespace_key(ns);
        match access {
            // A -> B is computed offline; it never asks the engine.
            Access::ReadOnly => read_only_key(&key),
            Access::ReadWrite | Access::Encrypted => Ok(key),
        }
    }

    /// Every record of the registry, except records under this node's
    /// device id that it did not write: another member (or a buggy tool)
    /// wrote them, and the engine carried them over this node's own file.
    /// Those are ignored and listed as forged.
    pub fn scan(&self) -> Result<Scan> {
        let now = now_ms();
        let mut found = scan(&self.dir, &self.id, now)?;
        self.scan_member_folders(&mut found, now)?;
        let own_dir = self.layout.own_records_dir();
        let Some(device) = read_device_id(&self.layout) else {
            return Ok(found);
        };
        if !own_dir.is_dir() {
            // Not adopted yet (init does at its start): nothing to tell by.
            return Ok(found);
        }
        let (records, forged): (Vec<Record>, Vec<Record>) = std::mem::take(&mut found.records)
            .into_iter()
            .partition(|r| r.device != device || self.wrote(&own_dir, r, now));
        found.records = records;
        for record in forged {
            let file = record.file_name();
            found.ignored.push((
                file.clone(),
                format!(
                    "forged: under this node's device id ({device}), but not what this node \
                     wrote; not applied"
                ),
            ));
            found.forged.push(file);
        }
        found.ignored.sort_unstable();
        found.forged.sort_unstable();
        Ok(found)
    }

    /// Add the records of every member folder to `found`. A member folder
    /// holds only its member's records; another device's record in it is
    /// ignored (any member can write into any member folder).
    fn scan_member_folders(&self, found: &mut Scan, now: u64) -> Result<()> {
        let mut known: BTreeSet<(String, u64)> = found
            .records
            .iter()
            .map(|r| (r.file_name(), r.at_ms))
            .collect();
        for device in self.members() {
            let in_folder = scan(&self.member_dir(&device), &self.id, now)?;
            for record in in_folder.records {
                if record.device != device {
                    found.ignored.push((
                        format!("{device}/{}", record.file_name()),
                        format!(
                            "in the member folder of {device} but written as {}: not applied",
                            record.device
                        ),
                    ));
                } else if known.insert((record.file_name(), record.at_ms)) {
                    found.records.push(record);
                }
            }
            found.ignored.extend(
                in_folder
                    .ignored
                    .into_iter()
                    .map(|(file, why)| (format!("{device}/{file}"), why)),
            );
        }
        Ok(())
    }

    /// Where the member folders are.
    pub fn members_dir(&self) -> PathBuf {
        self.layout.cluster_members_dir()
    }

    /// The member folder of `device`: the records that member wrote.
    pub fn member_dir(&self, device: &str) -> PathBuf {
        self.members_dir().join(device)
    }

    /// The device ids of the member folders this node keeps, sorted.
    pub fn members(&self) -> Vec<String> {
        let mut devices: Vec<String> = fs::read_dir(self.members_dir())
            .into_iter()
            .flatten()
            .flatten()
            // A link to a directory counts, as for the registry folder.
            .filter(|item| item.path().is_dir())
            .filter_map(|item| item.file_name().into_string().ok())
            .filter(|name| is_device_id(name))
            .collect();
        devices.sort_unstable();
        devices
    }

    /// Every folder the engine syncs for cluster mode, beside the
    /// namespaces: the registry folder, then each member folder.
    pub fn engine_folders(&self) -> Vec<(PathBuf, Key)> {
        std::iter::once((self.dir.clone(), self.registry_key()))
            .chain(
                self.members()
                    .into_iter()
                    .map(|device| (self.member_dir(&device), self.key.member_key(&device))),
            )
            .collect()
    }

    /// Make the member folder of every device in `devices` that has none
    /// yet, up to [`MAX_MEMBER_FOLDERS`] in all. Returns how many were
    /// made and how many were left out for the bound.
    pub fn ensure_member_dirs<'a>(
        &self,
        devices: impl IntoIterator<Item = &'a String>,
    ) -> Result<(usize, usize)> {
        let mut held = self.members().len();
        let (mut made, mut left_out) = (0, 0);
        for device in devices {
            let dir = self.member_dir(device);
            if !is_device_id(device) || dir.is_dir() {
                continue;
            }
            if held >= MAX_MEMBER_FOLDERS {
                left_out += 1;
                continue;
            }
            held += 1;
            self.make_member_dir(device)?;
            made += 1;
        }
        Ok((made, left_out))
    }

    /// Make the member folder of `device`, whatever the bound: this node's
    /// own always exists.
    fn make_member_dir(&self, device: &str) -> Result<()> {
        let members = self.members_dir();
        fsutil::ensure_private_dir(&members)?;
        give_to_folder_owner(&self.dir, &members);
        let dir = self.member_dir(device);
        fsutil::ensure_private_dir(&dir)?;
        give_to_folder_owner(&self.dir, &dir);
        Ok(())
    }

    /// Announce this node in the registry folder (`DEVICE.member`), so
    /// that the other members take up its member folder before its first
    /// record, and make its own member folder.
    pub fn announce(&self, device: &str, device_name: &str) -> Result<()> {
        self.make_member_dir(device)?;
        let path = self.dir.join(format!("{device}{ANNOUNCEMENT_SUFFIX}"));
        if path.exists() {
            return Ok(());
        }
        let text = json!({
            "syncbox_cluster_member": FORMAT,
            "cluster": self.id,
            "device": device,
            "device_name": device_name.chars().take(64).collect::<String>(),
        });
        fsutil::write_atomic(&path, format!("{text}\n").as_bytes(), 0o644)?;
        give_to_folder_owner(&self.dir, &path);
        Ok(())
    }

    /// Did this node write `record`? It is what the node's own copy (or
    /// the copy of a write under way) says.
    fn wrote(&self, own_dir: &Path, record: &Record, now: u64) -> bool {
        let file = record.file_name();
        [
            format!("{}.json", record.name),
            format!("{}.json.next", record.name),
        ]
        .iter()
        .any(|own| {
            read_small_file(&own_dir.join(own))
                .and_then(|text| Record::parse(&file, &text, &self.id, now))
                .is_ok_and(|mine| mine == *record)
        })
    }

    /// Once, before init first looks at the registry with forgery checks:
    /// take the records under this node's device id as its own (they were
    /// written before syncbox kept copies). Later records are checked.
    pub fn adopt_own_records(&self, _lock: &RegistryLock) -> Result<usize> {
        let own_dir = self.layout.own_records_dir();
        if own_dir.is_dir() {
            return Ok(0);
        }
        let Some(device) = read_device_id(&self.layout) else {
            return Ok(0);
        };
        let staging = self.layout.state_dir().join(".cluster-own.adopting");
        let _ = fs::remove_dir_all(&staging);
        fsutil::ensure_private_dir(&staging)?;
        let found = scan(&self.dir, &self.id, now_ms())?;
        let mut adopted = 0;
        for record in found.records.iter().filter(|r| r.device == device) {
            let own = staging.join(format!("{}.json", record.name));
            fsutil::write_atomic(&own, record.to_json(&self.id).as_bytes(), 0o600)?;
            adopted += 1;
        }
        fs::rename(&staging, &own_dir)
            .map_err(|e| Error::io(format!("cannot make {}", own_dir.display()), e))?;
        Ok(adopted)
    }

    /// The newest record of `ns`, if any.
    pub fn winner(&self, ns: &Name) -> Result<Option<Record>> {
        let found = self.scan()?;
        Ok(merge(&found.records).get(ns).map(|r| (*r).clone()))
    }

    /// Make the registry folder if it is missing. A symbolic link to a
    /// directory (or a mount) is accepted as it is: that is how a registry
    /// shared by other means is plugged in.
    pub fn ensure_dir(&self) -> Result<()> {
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(Error::FolderOccupied {
                path: self.dir.clone(),
                problem: "exists but is not a directory (it should be the cluster registry)",
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fsutil::ensure_private_dir(&self.dir),
            Err(e) => Err(Error::io(
                format!("cannot inspect {}", self.dir.display()),
                e,
            )),
        }
    }

    /// Write this node's record for `ns`, dated so that it supersedes every
    /// record this node can see (a clock behind another node's must not make
    /// a new intent lose to an old one). The caller holds the lock.
    fn write_record(
        &self,
        lock: &RegistryLock,
        registry: &Registry,
        ns: &Name,
        intent: Intent,
        rule: Option<FileRule>,
        device_name: &str,
    ) -> Result<Record> {
        self.ensure_dir()?;
        let device = device_id(registry.layout(), lock)?;
        self.adopt_own_records(lock)?;
        let newest_seen = self.winner(ns)?.map_or(0, |r| r.at_ms.saturating_add(1));
        let record = Record {
            name: ns.clone(),
            intent,
            at_ms: now_ms().max(newest_seen),
            device,
            device_name: device_name.chars().take(64).collect(),
            rule,
        };
        let path = self.dir.join(record.file_name());
        let text = record.to_json(&self.id);
        // This node's own copy first (as the write under way), so that a
        // crash between the two writes never makes its record look forged.
        let own_dir = self.layout.own_records_dir();
        fsutil::ensure_private_dir(&own_dir)?;
        let next = own_dir.join(format!("{ns}.json.next"));
        fsutil::write_atomic(&next, text.as_bytes(), 0o600)?;
        // Readable by an engine that runs as another user, never secret.
        fsutil::write_atomic(&path, text.as_bytes(), 0o644)?;
        give_to_folder_owner(&self.dir, &path);
        // And into this node's member folder, which only its own records
        // travel through: a flood in the registry folder never queues it.
        self.make_member_dir(&record.device)?;
        let member_dir = self.member_dir(&record.device);
        let in_member_dir = member_dir.join(record.file_name());
        fsutil::write_atomic(&in_member_dir, text.as_bytes(), 0o644)?;
        give_to_folder_owner(&member_dir, &in_member_dir);
        fsutil::write_atomic(&own_dir.join(format!("{ns}.json")), text.as_bytes(), 0o600)?;
        let _ = fs::remove_file(&next);
        Ok(record)
    }
}

/// Best effort: give `path` to the owner of `folder` (the engine's user),
/// as the engine's own files are.
fn give_to_folder_owner(folder: &Path, path: &Path) {
    if let Ok(meta) = fs::metadata(folder) {
        let _ = std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()));
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This node's device id, made from the OS random source on first use and
/// kept in `.btsync/device-id`. The caller holds the registry lock.
pub fn device_id(layout: &Layout, _lock: &RegistryLock) -> Result<String> {
    let path = layout.device_id_file();
    if let Some(id) = read_device_id(layout) {
        return Ok(id);
    }
    let mut bytes = [0u8; 8];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut bytes)
        .map_err(|e| Error::io("cannot generate a device id", io::Error::other(e)))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    fsutil::write_atomic(&path, format!("{id}\n").as_bytes(), 0o600)?;
    Ok(id)
}

/// The device id, if this node has one already.
pub fn read_device_id(layout: &Layout) -> Option<String> {
    let bytes = fsutil::read_untrusted(&layout.device_id_file(), 64).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.trim_end();
    is_device_id(id).then(|| id.to_owned())
}

/// `add --cluster`: register `ns` here (marked as from the cluster) and
/// declare it for every node. Nothing is declared when the local add fails
/// (e.g. `ns` is registered here with another key).
pub fn declare(
    registry: &Registry,
    cluster: &Cluster,
    ns: &Name,
    access: Access,
    change: RuleChange,
    device_name: &str,
) -> Result<Record> {
    let key = cluster.namespace_key(ns, access)?;
    let lock = registry.lock()?;
    registry.add_for_cluster(&lock, ns, key, true, change)?;
    // A declaration without --owner keeps the rule the namespace has here,
    // so declaring it again does not take an owner away from other nodes.
    let rule = registry.get(ns)?.map(|entry| entry.rule);
    cluster.write_record(
        &lock,
        registry,
        ns,
        Intent::Declared(access),
        rule,
        device_name,
    )
}

/// `del --cluster`: write a tombstone for every node and take `ns` out of
/// this node's registry if it came from the cluster. Both happen under one
/// lock, so init's reconcile never handles the same removal a second time.
pub fn tombstone(
    registry: &Registry,
    cluster: &Cluster,
    ns: &Name,
    purge: bool,
    device_name: &str,
) -> Result<ClusterUnregistered> {
    let lock = registry.lock()?;
    cluster.write_record(
        &lock,
        registry,
        ns,
        Intent::Removed { purge },
        None,
        device_name,
    )?;
    registry.unregister_for_cluster(&lock, ns)
}

/// What a local `del` (without `--cluster`) of `ns` may do in cluster mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalDel {
    /// Delete it as always: nothing in the cluster would add it back.
    Proceed,
    /// Held because of the cluster (declared, or from the cluster and not
    /// synced yet): the next reconcile would add it back; `del --cluster`
    /// is the way.
    Refused,
    /// Added here with a local `add` and declared by the cluster with the
    /// key it has: deleting the files would only see them synced back.
    /// The node drops its own claim and holds it for the cluster.
    HandOver,
}

/// What a local `del` of the registered `entry` may do. A namespace that
/// is not registered here has nothing to refuse. One the cluster declares
/// with another key than the local one is deleted: the cluster's own comes
/// in its place.
pub fn local_del(cluster: &Cluster, entry: Option<&Entry>, ns: &Name) -> Result<LocalDel> {
    let Some(entry) = entry else {
        return Ok(LocalDel::Proceed);
    };
    Ok(match cluster.winner(ns)?.map(|r| r.intent) {
        Some(Intent::Declared(_)) if entry.from_cluster => LocalDel::Refused,
        Some(Intent::Declared(access)) => {
            if cluster.namespace_key(ns, access)? == entry.key {
                LocalDel::HandOver
            } else {
                LocalDel::Proceed
            }
        }
        Some(Intent::Removed { .. }) => LocalDel::Proceed,
        None if entry.from_cluster => LocalDel::Refused,
        None => LocalDel::Proceed,
    })
}

/// Mark the locally added `ns` as held for the cluster, under the lock;
/// false when it is no longer registered with the key the declaration
/// derives (changed since [`local_del`] looked).
pub fn hand_over(registry: &Registry, cluster: &Cluster, ns: &Name) -> Result<bool> {
    let lock = registry.lock()?;
    let Some(Intent::Declared(access)) = cluster.winner(ns)?.map(|r| r.intent) else {
        return Ok(false);
    };
    let key = cluster.namespace_key(ns, access)?;
    match registry.get(ns)? {
        Some(entry) if entry.key == key => {
            registry.add_for_cluster(&lock, ns, key, true, RuleChange::default())?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The device name records carry: `BTSYNC_DEVICE_NAME`, else the host name.
pub fn device_name_from_env() -> String {
    std::env::var("BTSYNC_DEVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty() && !n.chars().any(char::is_control))
        .or_else(|| crate::sys::hostname().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const CLUSTER: &str = "0123456789abcdef";
    const NOW: u64 = 1_764_000_000_000;

    fn record(name: &str, intent: Intent, at_ms: u64, device: &str) -> Record {
        Record {
            name: Name::parse(name).unwrap(),
            intent,
            at_ms,
            device: device.repeat(16 / device.len()),
            device_name: "node".into(),
            rule: None,
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
            Intent::Removed { purge: false },
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

    /// Issue 16: a record that only lacks fields is not blamed on another
    /// cluster.
    #[test]
    fn a_record_missing_fields_is_reported_as_such() {
        let name = "gitlab@aaaaaaaaaaaaaaaa.json";
        for body in ["{\"v\":1}", "{\"v\":1,\"name\":\"gitlab\"}"] {
            let why = Record::parse(name, body, CLUSTER, NOW).expect_err(body);
            assert!(!why.contains("another cluster"), "{body}: {why}");
            assert!(why.contains("missing"), "{body}: {why}");
        }
        let other = r#"{"v":1,"cluster":"ffffffffffffffff"}"#;
        let why = Record::parse(name, other, CLUSTER, NOW).expect_err("other cluster");
        assert!(why.contains("another cluster"), "{why}");
    }

    #[test]
    fn newest_record_wins_and_ties_favour_keeping_data() {
        let declared = record("ns", Intent::Declared(Access::ReadWrite), 10, "a");
        let removed_later = record("ns", Intent::Removed { purge: false }, 11, "b");
        let declared_again = record("ns", Intent::Declared(Access::ReadOnly), 12, "a");
        let removed_same_ms = record("ns", Intent::Removed { purge: false }, 12, "f");

        let all = [declared.clone(), removed_later.clone()];
        assert_eq!(
            merge(&all)[&declared.name].intent,
            Intent::Removed { purge: false }
        );
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
            record("gone", Intent::Removed { purge: false }, 1, "a"),
            record("mine", Intent::Removed { purge: false }, 1, "a"),
            record("never-held", Intent::Removed { purge: false }, 1, "a"),
        ];
        let local = [
            Local {
                name: Name::parse("held").unwrap(),
                from_cluster: true,
                rule: FileRule::default(),
            },
            Local {
                name: Name::parse("gone").unwrap(),
                from_cluster: true,
                rule: FileRule::default(),
            },
            Local {
                name: Name::parse("mine").unwrap(),
                from_cluster: false,
                rule: FileRule::default(),
            },
            Local {
                name: Name::parse("unknown").unwrap(),
                from_cluster: true,
                rule: FileRule::default(),
            },
        ];
        let actions = reconcile(&merge(&records), &local);
        assert_eq!(
            actions,
            vec![
                Action::Remove {
                    name: Name::parse("gone").unwrap(),
                    purge: false
                },
                Action::Add {
                    name: Name::parse("new").unwrap(),
                    access: Access::ReadWrite,
                    rule: None,
                },
            ]
        );
    }

    #[test]
    fn a_declaration_with_another_owner_changes_held_namespaces() {
        let owned = FileRule {
            owner: Some(crate::settings::Owner { uid: 70, gid: 70 }),
            umask: 0o077,
        };
        let mut declared = record("pg", Intent::Declared(Access::ReadWrite), 1, "a");
        declared.rule = Some(owned);
        let parsed = round_trip(&declared).expect("a declaration with an owner");
        assert_eq!(parsed.rule, Some(owned));
        let held = |from_cluster, rule| Local {
            name: Name::parse("pg").unwrap(),
            from_cluster,
            rule,
        };
        let records = [declared];
        assert_eq!(
            reconcile(&merge(&records), &[held(true, FileRule::default())]),
            vec![Action::SetRule {
                name: Name::parse("pg").unwrap(),
                rule: owned
            }]
        );
        assert!(reconcile(&merge(&records), &[held(true, owned)]).is_empty());
        // A namespace added here by hand is this node's to own.
        assert!(reconcile(&merge(&records), &[held(false, FileRule::default())]).is_empty());
        assert_eq!(
            reconcile(&merge(&records), &[]),
            vec![Action::Add {
                name: Name::parse("pg").unwrap(),
                access: Access::ReadWrite,
                rule: Some(owned),
            }]
        );
        // A record with a bad owner is not acted on.
        let text = records[0].to_json(CLUSTER).replace("\"70:70\"", "\"70\"");
        assert!(Record::parse(&records[0].file_name(), &text, CLUSTER, NOW).is_err());
    }

    #[test]
    fn an_empty_registry_removes_nothing() {
        let local = [Local {
            name: Name::parse("held").unwrap(),
            from_cluster: true,
            rule: FileRule::default(),
        }];
        assert!(reconcile(&merge(&[]), &local).is_empty());
    }

    /// Run `read` on a thread; its answer, or `None` if it is still
    /// blocked after a few seconds (the thread is then left behind).
    fn within_seconds<T: Send + 'static>(read: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (sender, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(read());
        });
        answer.recv_timeout(Duration::from_secs(5)).ok()
    }

    #[test]
    fn a_fifo_or_a_link_in_place_of_a_record_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("syncbox-cluster-fifo-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let good = record("gitlab", Intent::Declared(Access::ReadWrite), NOW, "a");
        let target = dir.join("target.txt");
        fs::write(&target, good.to_json(CLUSTER)).unwrap();
        // What the engine's user can swap in between scan's lstat and the open.
        let fifo = dir.join(good.file_name());
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo");
        let link = dir.join("link@aaaaaaaaaaaaaaaa.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let path = fifo.clone();
        let outcome = within_seconds(move || read_small_file(&path));
        if outcome.is_none() {
            // Let the stuck open finish so the thread ends.
            let _ = fs::OpenOptions::new().write(true).open(&fifo);
        }
        let outcome =
            outcome.expect("opening a FIFO record blocked (init's main thread would hang)");
        assert_eq!(outcome, Err("not a small regular file".to_owned()));
        assert_eq!(
            read_small_file(&link),
            Err("not a small regular file".to_owned()),
            "a symbolic link was followed"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn member_folders_come_from_announcements_up_to_the_bound() {
        let data = std::env::temp_dir().join(format!("syncbox-members-{}", std::process::id()));
        let _ = fs::remove_dir_all(&data);
        let layout = Layout::new(data.clone(), None);
        fs::create_dir_all(layout.state_dir()).unwrap();
        let key = ClusterKey::from_bytes(b"0123456789abcdef".to_vec()).unwrap();
        let cluster = Cluster::new(key.clone(), &layout);
        cluster.ensure_dir().unwrap();
        let id = cluster.id().to_owned();
        // A record names a device, but only an announcement makes a member.
        let by_record = record(
            "gitlab",
            Intent::Declared(Access::ReadWrite),
            NOW,
            "00000000000000aa",
        );
        fs::write(
            cluster.dir().join(by_record.file_name()),
            by_record.to_json(&id),
        )
        .unwrap();
        for i in 0..MAX_MEMBER_FOLDERS + 6 {
            fs::write(cluster.dir().join(format!("{i:016x}.member")), "{}").unwrap();
        }
        let found = scan(cluster.dir(), &id, NOW).unwrap();
        assert_eq!(found.devices.len(), MAX_MEMBER_FOLDERS + 6);
        assert!(!found.devices.contains("00000000000000aa"));
        assert_eq!(found.records.len(), 1, "an announcement is not a record");
        let (made, left_out) = cluster.ensure_member_dirs(&found.devices).unwrap();
        assert_eq!((made, left_out), (MAX_MEMBER_FOLDERS, 6));
        assert_eq!(cluster.members().len(), MAX_MEMBER_FOLDERS);
        // This node's own member folder is made whatever the bound.
        cluster.announce("00000000000000ff", "me").unwrap();
        assert!(cluster.member_dir("00000000000000ff").is_dir());
        let folders = cluster.engine_folders();
        assert_eq!(folders.len(), 1 + MAX_MEMBER_FOLDERS + 1);
        assert_eq!(folders[0].0, layout.cluster_registry_dir());
        let own = folders
            .iter()
            .find(|(dir, _)| dir.ends_with("00000000000000ff"))
            .unwrap();
        assert_eq!(own.1.expose(), key.member_key("00000000000000ff").expose());
        fs::remove_dir_all(&data).unwrap();
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
