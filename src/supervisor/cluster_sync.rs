//! init's cluster work: the registry folder every node syncs is read every
//! `CLUSTER_POLL`, and its declarations and tombstones become changes of the
//! local registry. Nothing here touches the engine. The supervisor hears
//! "these namespaces changed" (with, for a removed one, what to do with its
//! files) and brings the engine in line; it disposes of the files only once
//! the engine let go of them, as for an `add --no-wait` / `del --no-wait`.
//!
//! The cluster trash is swept here too: folders older than
//! `BTSYNC_TRASH_DAYS` are deleted, also on a node no longer in cluster mode.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cluster::pace::{self, Pace};
use crate::cluster::{self, Action, Cluster, Local, Watch};
use crate::control::Disposal;
use crate::error::Result;
use crate::file_rule::{self, FileRule, RuleChange};
use crate::keys::Access;
use crate::layout::Layout;
use crate::name::Name;
use crate::registry::{self, ClusterUnregistered, KeyIndex, Parking, Registry, RegistryLock};
use crate::trash_limit::{self, TrashLimit, TrashUse};

/// How often the cluster registry folder is looked at (a directory listing
/// when nothing changed).
pub const CLUSTER_POLL: Duration = Duration::from_secs(1);
/// How often the cluster trash is checked for folders past their time.
const TRASH_SWEEP: Duration = Duration::from_secs(60);

/// A namespace whose registry entry the cluster changed: the engine must
/// follow.
pub struct Changed {
    pub name: Name,
    /// Removed: what to do with its files once the engine let go of it.
    pub files: Option<(Disposal, Parking)>,
}

pub struct ClusterSync {
    watch: Watch,
    registry: Registry,
    next_poll: Instant,
    /// The last changes a poll made, for `status`.
    last_changes: Option<(SystemTime, Vec<String>)>,
    /// Declared namespaces that could not be added, with why (logged once).
    failures: BTreeMap<Name, String>,
    /// `BTSYNC_CLUSTER_PURGE`: a purge tombstone deletes the copy here;
    /// otherwise it goes to the trash like any removal.
    purge_allowed: bool,
    trash: TrashGauge,
    /// Removals that wait because the trash is full, with why.
    removals_waiting: BTreeMap<Name, String>,
    /// What the trash held when a removal was last refused: a change
    /// (the sweep, someone emptying it) makes the next poll look again.
    refused_at_use: Option<TrashUse>,
    pace: Pace,
    /// Declared namespaces not added yet: for the next step, or over the cap.
    adds_waiting: usize,
    /// The last poll found a member's cap reached (its declarations left
    /// out), and how many of `adds_waiting` wait for that reason.
    cap_reached: bool,
    adds_capped: usize,
    /// A member folder was made since the engine was last told.
    members_changed: bool,
    /// More members announced themselves than get a member folder here
    /// (logged once).
    members_left_out: bool,
}

impl ClusterSync {
    pub fn new(
        cluster: Cluster,
        layout: Layout,
        now: Instant,
        purge_allowed: bool,
        trash_limit: TrashLimit,
        pace: Pace,
    ) -> ClusterSync {
        ClusterSync {
            trash: TrashGauge::new(&layout, trash_limit),
            watch: Watch::new(cluster),
            registry: Registry::new(layout),
            next_poll: now,
            last_changes: None,
            failures: BTreeMap::new(),
            purge_allowed,
            removals_waiting: BTreeMap::new(),
            refused_at_use: None,
            pace,
            adds_waiting: 0,
            cap_reached: false,
            adds_capped: 0,
            members_changed: false,
            members_left_out: false,
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.watch.cluster
    }

    /// Before the first engine start: give this node its device id, make
    /// the registry folder and announce the node there. Returns the namespaces whose cluster
    /// removal an earlier init left half done; no engine runs yet, so their
    /// files may go to the cluster trash now.
    pub fn start(&mut self, device_name: &str) -> Result<Vec<Name>> {
        let layout = self.registry.layout().clone();
        let cluster = &self.watch.cluster;
        let device = {
            let lock = self.registry.lock()?;
            let device = cluster::device_id(&layout, &lock)?;
            let adopted = cluster.adopt_own_records(&lock)?;
            if adopted > 0 {
                log!(
                    "cluster mode: {adopted} records under this device id taken as this node's own; a record under its id that differs from what it wrote is ignored as forged from now on"
                );
            }
            device
        };
        cluster.ensure_dir()?;
        // The other members' folders are made by the first poll, which
        // runs before the first engine start.
        cluster.announce(&device, device_name)?;
        log!(
            "cluster mode: registry {} (cluster id {}), this device {device}",
            cluster.dir().display(),
            cluster.id()
        );
        let unfinished = self.registry.parked_cluster_removals()?;
        for ns in &unfinished {
            log!("{ns}: finishing a cluster removal an earlier init left unfinished");
        }
        Ok(unfinished)
    }

    /// Was a member folder made since the last call? The engine has to
    /// take it up.
    pub fn take_members_changed(&mut self) -> bool {
        std::mem::take(&mut self.members_changed)
    }

    /// When the next poll is due.
    pub fn next_poll(&self) -> Instant {
        self.next_poll
    }

    /// The engine took a step: with adds waiting, the next one is due now,
    /// not at the next regular poll.
    pub fn engine_took_a_step(&mut self, now: Instant) {
        if self.adds_waiting > self.adds_capped {
            self.next_poll = self.next_poll.min(now);
        }
    }

    /// If a poll is due: look at the registry folder and apply what changed
    /// to the local registry. Declared namespaces are added (a step at a
    /// time, and only when `engine_free`: the engine took the last step),
    /// tombstoned ones that came from the cluster are removed; nothing else
    /// is ever removed. Returns the namespaces changed.
    pub fn poll(&mut self, now: Instant, engine_free: bool) -> Vec<Changed> {
        if now < self.next_poll {
            return Vec::new();
        }
        self.next_poll = now + CLUSTER_POLL;
        if self.adds_waiting > self.adds_capped && engine_free {
            // The engine took the last step: the next one is due.
            self.watch.look_again();
        }
        if let Some(refused_at) = self.refused_at_use
            && self.trash.current(&self.registry) != refused_at
        {
            // Room may have been made: try the waiting removals again.
            self.watch.look_again();
        }
        let layout = self.registry.layout();
        let watched_too = [layout.namespaces_dir(), layout.deleting_dir()];
        let (winners, ignored_lines) = match self.watch.poll(now, &watched_too) {
            Ok(Some(found)) => found,
            Ok(None) => return Vec::new(),
            Err(e) => {
                log!("cluster: cannot read the registry: {e}");
                return Vec::new();
            }
        };
        for line in &ignored_lines {
            log!("cluster: {line}");
        }
        match self.watch.cluster.ensure_member_dirs(&self.watch.devices) {
            Ok((made, left_out)) => {
                if left_out > 0 && !self.members_left_out {
                    log!(
                        "cluster: {left_out} more members announced themselves than the {} member folders a node takes up: their records reach this node through the registry folder only",
                        cluster::MAX_MEMBER_FOLDERS
                    );
                }
                self.members_left_out = left_out > 0;
                if made > 0 {
                    log!(
                        "cluster: {made} new member{} seen: taking up {} member folder{}",
                        if made == 1 { "" } else { "s" },
                        if made == 1 { "its" } else { "their" },
                        if made == 1 { "" } else { "s" },
                    );
                    self.members_changed = true;
                }
            }
            Err(e) => log!("cluster: cannot make a member folder: {e}"),
        }
        let local: Vec<Local> = match self.registry.readable_entries() {
            // A damaged entry counts as held and local: the cluster neither
            // re-adds over it nor removes it; the engine start reports it.
            Ok((entries, damaged)) => entries
                .into_iter()
                .map(|e| Local {
                    name: e.name,
                    from_cluster: e.from_cluster,
                    rule: e.rule,
                })
                .chain(damaged.into_iter().map(|(name, _)| Local {
                    name,
                    from_cluster: false,
                    rule: FileRule::default(),
                }))
                .collect(),
            Err(e) => {
                log!("cluster: cannot read the local registry: {e}");
                return Vec::new();
            }
        };
        let mut borrowed: BTreeMap<Name, &cluster::Record> = BTreeMap::new();
        borrowed.extend(winners.iter().map(|(n, r)| (n.clone(), r)));
        let mut changed = Vec::new();
        let mut described = Vec::new();
        self.removals_waiting.clear();
        self.refused_at_use = None;
        // The cap is per declaring member: one member's flood never uses
        // up the room for another member's declarations.
        let declarer = |name: &Name| winners.get(name).map(|r| r.device.clone());
        let mut held_by_member: BTreeMap<Option<String>, usize> = BTreeMap::new();
        for held in local.iter().filter(|l| l.from_cluster) {
            *held_by_member.entry(declarer(&held.name)).or_default() += 1;
        }
        let mut step_left = if engine_free { self.pace.step } else { 0 };
        let (mut waiting, mut capped) = (0, 0);
        // Taken at the first add (fair_order puts adds last: nothing after
        // it takes the lock again) and held for the step.
        let mut batch: Option<(RegistryLock, KeyIndex)> = None;
        for action in pace::fair_order(cluster::reconcile(&borrowed, &local), &borrowed) {
            let member = match &action {
                Action::Add { name, .. } => Some(declarer(name)),
                Action::SetRule { .. } | Action::Remove { .. } => None,
            };
            let is_add = member.is_some();
            let held = member
                .as_ref()
                .map_or(0, |m| held_by_member.get(m).copied().unwrap_or(0));
            if is_add && held >= self.pace.max_namespaces {
                (waiting, capped) = (waiting + 1, capped + 1);
                continue;
            }
            if is_add && step_left == 0 {
                waiting += 1;
                continue;
            }
            let outcome = self.apply(action, &mut batch, &winners);
            if let (Some(member), Some(_)) = (member, &outcome) {
                *held_by_member.entry(member).or_default() += 1;
                step_left -= 1;
            }
            if let Some((change, description)) = outcome {
                changed.push(change);
                described.push(description);
            }
        }
        drop(batch);
        let over_cap = capped > 0;
        if over_cap && !self.cap_reached {
            log!(
                "cluster: a member declared more namespaces than {} lets this node take from one member ({}): its further declarations wait",
                pace::MAX_NAMESPACES_VAR,
                self.pace.max_namespaces,
            );
        }
        (self.adds_waiting, self.adds_capped, self.cap_reached) = (waiting, capped, over_cap);
        if !described.is_empty() {
            self.last_changes = Some((SystemTime::now(), described));
        }
        changed
    }

    /// Apply one reconcile action to the local registry: the change and its
    /// description, if one was made. An add runs under `batch` (taken at
    /// the first add); every other action takes the lock itself, so it must
    /// come before the first add, as `fair_order` puts them.
    fn apply(
        &mut self,
        action: Action,
        batch: &mut Option<(RegistryLock, KeyIndex)>,
        winners: &BTreeMap<Name, cluster::Record>,
    ) -> Option<(Changed, String)> {
        let by = |ns: &Name| {
            winners.get(ns).map_or_else(String::new, |r| {
                format!(" by {} ({})", r.device_name, r.device)
            })
        };
        match action {
            Action::SetRule { name, rule } => {
                // The key it has: a rule change never touches the key.
                let changed = self.registry.get(&name).and_then(|entry| {
                    let Some(entry) = entry else { return Ok(false) };
                    let lock = self.registry.lock()?;
                    self.registry
                        .add_for_cluster(&lock, &name, entry.key, false, rule.into())
                        .map(|_| true)
                });
                match changed {
                    Ok(true) => {
                        log!(
                            "cluster: {name} declared{} with owner {} and umask {}: changed here",
                            by(&name),
                            rule.owner
                                .map_or("(the engine's)".into(), file_rule::owner_text),
                            file_rule::umask_text(rule.umask)
                        );
                        let description = format!("changed the owner of {name}");
                        Some((Changed { name, files: None }, description))
                    }
                    Ok(false) => None,
                    Err(e) => {
                        let message = e.to_string();
                        if self.failures.get(&name) != Some(&message) {
                            log!(
                                "cluster: {name} is declared with another owner, but cannot be changed here: {message}"
                            );
                            self.failures.insert(name, message);
                        }
                        None
                    }
                }
            }
            Action::Add { name, access, rule } => self.add(batch, name, access, rule, winners),
            Action::Remove { name, purge } => {
                if purge && !self.purge_allowed {
                    log!(
                        "cluster: {name} removed{} with purge, but this node keeps its copy in the trash (BTSYNC_CLUSTER_PURGE is off)",
                        by(&name)
                    );
                }
                let purge = purge && self.purge_allowed;
                if !purge {
                    let used = self.trash.current(&self.registry);
                    if let Some(why) = self.trash.limit.refuses(used) {
                        if self.removals_waiting.is_empty() {
                            log!("cluster: removals wait: {why}");
                        }
                        self.removals_waiting.insert(name, why);
                        self.refused_at_use = Some(used);
                        return None;
                    }
                }
                let parked = self
                    .registry
                    .lock()
                    .and_then(|lock| self.registry.unregister_for_cluster(&lock, &name));
                match parked {
                    Ok(ClusterUnregistered::Parked(parking)) => {
                        if !purge {
                            // On its way into the trash: the next removal
                            // needs a figure that counts it.
                            self.trash.measure_again(&self.registry);
                        }
                        let disposal = if purge {
                            Disposal::Delete
                        } else {
                            Disposal::Trash
                        };
                        log!(
                            "cluster: {name} removed{}: unregistered; its files {} once the engine let go",
                            by(&name),
                            if purge {
                                "are deleted"
                            } else {
                                "go to the cluster trash"
                            }
                        );
                        let description = format!("removed {name}");
                        let files = Some((disposal, parking));
                        Some((Changed { name, files }, description))
                    }
                    Ok(ClusterUnregistered::LocalOnly | ClusterUnregistered::NotRegistered) => None,
                    Err(e) => {
                        log!("cluster: {name} is removed but cannot be unregistered here: {e}");
                        None
                    }
                }
            }
        }
    }

    /// Add `name` as declared, under the batch's lock and key index (taken
    /// here if `batch` has none yet).
    fn add(
        &mut self,
        batch: &mut Option<(RegistryLock, KeyIndex)>,
        name: Name,
        access: Access,
        rule: Option<FileRule>,
        winners: &BTreeMap<Name, cluster::Record>,
    ) -> Option<(Changed, String)> {
        let by = winners.get(&name).map_or_else(String::new, |r| {
            format!(" by {} ({})", r.device_name, r.device)
        });
        let added = self
            .watch
            .cluster
            .namespace_key(&name, access)
            .and_then(|key| {
                let (lock, index) = match batch {
                    Some((lock, index)) => (lock, index),
                    None => {
                        let lock = self.registry.lock()?;
                        let index = self.registry.key_index(&lock)?;
                        let (lock, index) = batch.insert((lock, index));
                        (lock, index)
                    }
                };
                self.registry.add_for_cluster_indexed(
                    lock,
                    index,
                    &name,
                    key,
                    rule.map(RuleChange::from).unwrap_or_default(),
                )
            });
        match added {
            Ok(_) => {
                self.failures.remove(&name);
                log!("cluster: {name} declared{by} ({}): added", access.as_str());
                let description = format!("added {name}");
                Some((Changed { name, files: None }, description))
            }
            Err(e) => {
                let message = e.to_string();
                if self.failures.get(&name) != Some(&message) {
                    log!("cluster: {name} is declared but cannot be added here: {message}");
                    self.failures.insert(name, message);
                }
                None
            }
        }
    }

    /// The `cluster` object of `status`.
    pub fn status_json(&self) -> Value {
        let mut status = self.watch.status_json();
        let now = SystemTime::now();
        status["device"] = json!(cluster::read_device_id(self.registry.layout()));
        status["last_reconcile"] = match &self.last_changes {
            Some((at, changes)) => json!({
                "seconds_ago": now.duration_since(*at).map_or(0, |d| d.as_secs()),
                "changes": cluster::sample(changes, |c| json!(c)),
                "changes_count": changes.len(),
            }),
            None => Value::Null,
        };
        status["failures"] = cluster::sample(
            &self.failures,
            |(ns, why)| json!({"name": ns.as_str(), "problem": why}),
        );
        status["failures_count"] = json!(self.failures.len());
        status["purge"] = json!(if self.purge_allowed {
            "honoured"
        } else {
            "trashed"
        });
        let used = self.trash.current(&self.registry);
        status["trash"] = json!({
            "copies": used.copies,
            "bytes": used.bytes,
            "max_copies": self.trash.limit.copies,
            "max_bytes": self.trash.limit.bytes,
            "removals_waiting": cluster::sample(
                &self.removals_waiting,
                |(ns, _)| json!(ns.as_str()),
            ),
            "removals_waiting_count": self.removals_waiting.len(),
            "why": self.removals_waiting.values().next(),
        });
        status["adds"] = json!({
            "waiting": self.adds_waiting,
            "step": self.pace.step,
            "max_namespaces": self.pace.max_namespaces,
            "cap_reached": self.cap_reached,
        });
        status
    }
}

/// What the cluster trash holds: copies counted on each look (a directory
/// listing), bytes measured on a thread of its own (copies may be big) and
/// only when a size limit is set.
struct TrashGauge {
    limit: TrashLimit,
    trash: PathBuf,
    /// The last figure in bytes (`None` while it is stale), and how many
    /// times it was made stale: a measurement begun before the last removal
    /// was taken on must not be believed.
    bytes: Arc<Mutex<(u64, Option<u64>)>>,
    measuring: Arc<AtomicBool>,
}

impl TrashGauge {
    fn new(layout: &Layout, limit: TrashLimit) -> TrashGauge {
        TrashGauge {
            limit,
            trash: layout.cluster_trash_dir(),
            bytes: Arc::new(Mutex::new((0, None))),
            measuring: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The trash with the cluster removals on their way into it (their
    /// folders still where they were).
    fn current(&self, registry: &Registry) -> TrashUse {
        let on_the_way = registry.parked_cluster_removals().unwrap_or_default();
        let copies = trash_limit::count_copies(&self.trash) + on_the_way.len();
        let bytes = if self.limit.bytes.is_some() {
            let known = self.bytes.lock().map_or(None, |b| b.1);
            if known.is_none() {
                self.start_measuring(registry);
            }
            known
        } else {
            None
        };
        TrashUse { copies, bytes }
    }

    /// Forget the figure (a removal was just taken on) and measure again.
    fn measure_again(&self, registry: &Registry) {
        if self.limit.bytes.is_none() {
            return;
        }
        if let Ok(mut bytes) = self.bytes.lock() {
            *bytes = (bytes.0.wrapping_add(1), None);
        }
        self.start_measuring(registry);
    }

    fn start_measuring(&self, registry: &Registry) {
        if self.measuring.swap(true, Ordering::SeqCst) {
            // One at a time; a removal taken on meanwhile is measured by
            // the next one (the figure stays unknown until then).
            return;
        }
        let layout = registry.layout().clone();
        let began = self.bytes.lock().map_or(0, |b| b.0);
        let on_the_way = registry.parked_cluster_removals().unwrap_or_default();
        let (trash, bytes, measuring) = (
            self.trash.clone(),
            Arc::clone(&self.bytes),
            Arc::clone(&self.measuring),
        );
        std::thread::spawn(move || {
            let total = on_the_way
                .iter()
                .map(|ns| trash_limit::disk_usage(&layout.folder(ns)))
                .fold(trash_limit::disk_usage(&trash), u64::saturating_add);
            if let Ok(mut figure) = bytes.lock()
                && figure.0 == began
            {
                figure.1 = Some(total);
            }
            measuring.store(false, Ordering::SeqCst);
        });
    }
}

/// Deletes cluster-trash folders older than `BTSYNC_TRASH_DAYS`, on a
/// thread of its own (trees may be big); one sweep at a time.
pub struct TrashSweeper {
    trash: PathBuf,
    kept: Duration,
    next: Instant,
    busy: Arc<AtomicBool>,
}

impl TrashSweeper {
    pub fn new(layout: &Layout, kept: Duration, now: Instant) -> TrashSweeper {
        TrashSweeper {
            trash: layout.cluster_trash_dir(),
            kept,
            next: now,
            busy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// When the next sweep is due.
    pub fn next_sweep(&self) -> Instant {
        self.next
    }

    /// Sweep if one is due and none is running.
    pub fn sweep(&mut self, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + TRASH_SWEEP;
        if !self.trash.is_dir() || self.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        let (trash, kept, busy) = (self.trash.clone(), self.kept, Arc::clone(&self.busy));
        std::thread::spawn(move || {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let cutoff = now.saturating_sub(kept.as_secs());
            for name in registry::purge_trash(&trash, cutoff) {
                log!("cluster trash: purged {name} (kept its BTSYNC_TRASH_DAYS)");
            }
            busy.store(false, Ordering::SeqCst);
        });
    }
}
