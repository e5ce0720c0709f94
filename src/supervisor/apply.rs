//! Keeping the engine in step with the registry: `add`/`del` requests and
//! cluster changes become pending changes, coalesced over a quiet period
//! and applied by a reload (HUP, then the proof in `reload`) or a restart.
//! Clients wait on generation numbers: every change takes the next one;
//! an engine start or a proven reload records the newest it read the
//! registry after. A removed namespace's files go only once the engine
//! let go of it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use signal_hook::consts::signal::{SIGHUP, SIGTERM};

use super::cluster_sync::ClusterSync;
use super::reload::{self, Proof, Reload, reload_bound};
use super::{AfterStop, Backoff, Engine, Supervisor, describe_changes};
use crate::control::{Ask, Disposal, Mode, Request};
use crate::engine_config;
use crate::error::Result;
use crate::keys::Key;
use crate::name::Name;
use crate::registry::{Entry, Parking, Registry, Removal};
use crate::settings::Apply;
use crate::sys::{self, Pid};

/// A change is applied once no other change came for this long...
pub const QUIET_PERIOD: Duration = Duration::from_millis(250);

/// ...but a steady stream of changes cannot postpone a restart longer than this.
pub const MAX_DELAY: Duration = Duration::from_secs(3);

/// While a registry writer holds the lock (more adds queued behind it), look again after this.
const WRITER_RECHECK: Duration = Duration::from_millis(50);

/// How long a change waits for the reload in flight before it is looked at again.
const RELOAD_POLL: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// An engine started from a registry read at or after the request.
    Running,
    /// No engine older than the request is running.
    Released,
}

pub(super) struct Waiter {
    generation: u64,
    needs: Needs,
    client: Option<Request>,
    /// `del --no-wait` or a cluster tombstone: delete or trash this
    /// namespace's files once released.
    /// The parking is the one seen when the removal was taken on: the
    /// files are touched only if the namespace is still parked that way.
    purge: Option<(Name, Disposal, Parking)>,
    /// `add`: the client hears "ok" only once the engine is seen serving
    /// this namespace's folder (its `.sync/ID` and database open), and an
    /// error if that proof is missing [`start_proof_bound`] after the
    /// engine was given its folders: a config that lists a folder is no proof that the
    /// engine took it (it takes one folder per key, for one).
    serving: Option<Name>,
}

/// How long after it was given its folders (its start, or its interface
/// answering) an engine may take to show that it serves a folder: more the
/// more folders it was given.
pub fn start_proof_bound(folders: usize) -> Duration {
    START_PROOF_BASE + START_PROOF_PER_FOLDER * u32::try_from(folders).unwrap_or(u32::MAX)
}

/// Seen: 1.4.111 serves a folder of a fresh start within about a second.
const START_PROOF_BASE: Duration = Duration::from_secs(15);
const START_PROOF_PER_FOLDER: Duration = Duration::from_millis(10);

/// How often `/proc/ENGINE/fd` is looked at while an `add` waits for its proof.
const PROOF_POLL: Duration = Duration::from_millis(20);

pub(super) struct PendingRestart {
    first: Instant,
    due: Instant,
    /// The namespaces whose change it applies, for the log.
    changed: BTreeSet<Name>,
}

impl Supervisor {
    /// When changes are next due to be applied, or a reload in flight
    /// next looked at.
    pub(super) fn next_apply(&self) -> Option<Instant> {
        let pending = self.pending.as_ref().map(|p| p.due);
        let reload = self.reload.as_ref().map(|r| {
            if r.to_give.is_empty() {
                r.next_look
            } else {
                Instant::now()
            }
        });
        let proof = self
            .waiters
            .iter()
            .any(|w| w.serving.is_some())
            .then(|| Instant::now() + PROOF_POLL);
        pending.into_iter().chain(reload).chain(proof).min()
    }

    /// May the folder of `ns` be removed and given again now? Not while a
    /// change waits or a reload is in flight (which may be about `ns`; a
    /// `del` must find the engine as the change expects, and a reload's
    /// proof must not see a folder come and go), nor while an `add` waits
    /// for the proof that the engine serves `ns`.
    pub(super) fn may_retake(&self, ns: Option<&Name>) -> bool {
        let proving =
            ns.is_some_and(|ns| self.waiters.iter().any(|w| w.serving.as_ref() == Some(ns)));
        self.pending.is_none() && self.reload.is_none() && !proving
    }

    /// Look at the reload in flight; apply the pending changes if due.
    pub(super) fn apply_due_changes(&mut self, now: Instant) {
        self.check_reload(now);
        if let Some(pending) = &self.pending
            && now >= pending.due
        {
            if !matches!(self.engine, Engine::Up(_)) {
                // Stopping or down: the next start reads the registry anyway.
                self.pending = None;
            } else if matches!(&self.engine, Engine::Up(e) if e.api.as_ref().is_some_and(|a| !a.is_ready()))
            {
                // WebUI mode before the interface answers: it gets every
                // registry folder once it does; the change waits for that.
                if let Some(pending) = &mut self.pending {
                    pending.due = now + super::webui::API_RETRY;
                }
            } else if self.reload.is_some() {
                // One reload at a time: the next one starts from its result.
                if let Some(pending) = &mut self.pending {
                    pending.due = now + RELOAD_POLL;
                }
            } else if now < pending.first + MAX_DELAY && self.registry_writer_active() {
                // More changes are queued on the registry lock: wait for them.
                if let Some(pending) = &mut self.pending {
                    pending.due = now + WRITER_RECHECK;
                }
            } else if let Some(pending) = self.pending.take() {
                self.apply_changes(now, pending.changed);
            }
        }
    }

    pub(super) fn on_request(&mut self, request: Request) {
        let (ns, added, mode) = match &request.ask {
            Ask::Status => {
                let status = self.status_json().to_string();
                request.reply(&status);
                return;
            }
            Ask::Sync => {
                let sync = self.sync_json(Instant::now()).to_string();
                request.reply(&sync);
                return;
            }
            Ask::Apply { ns, added, mode } => (ns.clone(), *added, *mode),
        };
        if self.stopping_for_good() {
            request
                .reply("error init is stopping; the change is in the registry for its next start");
            return;
        }
        let wanted = match self.registry.get(&ns) {
            Ok(entry) => {
                // A change of owner alone leaves the engine as it is.
                self.keep_folder(&ns, entry.as_ref().map(|e| e.rule));
                entry.map(|e| e.key)
            }
            Err(e) => {
                log!("cannot read the registry entry of {ns}: {e}");
                request.reply(&format!("error cannot read the registry: {e}"));
                return;
            }
        };
        self.generation += 1;
        let now = Instant::now();
        self.start_now(now);
        let waiter = Waiter {
            generation: self.generation,
            needs: if added {
                Needs::Running
            } else {
                Needs::Released
            },
            client: None,
            purge: match mode {
                Mode::Purge => self.parked(&ns).map(|p| (ns.clone(), Disposal::Delete, p)),
                Mode::Trash => self.parked(&ns).map(|p| (ns.clone(), Disposal::Trash, p)),
                Mode::Wait | Mode::NoWait => None,
            },
            serving: (added && wanted.is_some()).then(|| ns.clone()),
        };
        if matches!(self.engine, Engine::Up(_)) {
            if self.engine_reflects(&ns, wanted.as_ref()) {
                // The running engine already has it that way in its
                // config: nothing to restart. An `add` still waits to see
                // the folder served; on "ok" a `del` client deletes the
                // files itself.
                if waiter.serving.is_some() && mode == Mode::Wait {
                    self.waiters.push(Waiter {
                        generation: 0,
                        client: Some(request),
                        ..waiter
                    });
                } else {
                    let waiter = Waiter {
                        purge: None,
                        ..waiter
                    };
                    self.complete(waiter, Some(request));
                }
                return;
            }
            self.schedule_restart(now, ns.clone());
        }
        match mode {
            Mode::Wait => self.waiters.push(Waiter {
                client: Some(request),
                ..waiter
            }),
            Mode::NoWait | Mode::Purge | Mode::Trash => {
                request.reply("queued");
                if waiter.purge.is_some() {
                    self.waiters.push(waiter);
                }
            }
        }
    }

    /// The registry changed: an idle init, or one waiting out a crash
    /// backoff, starts the engine now with the new config (the backoff
    /// guards against a broken engine, not against a user's command). The
    /// start reads the whole registry, so changes queued in the same batch
    /// of events are in it too.
    fn start_now(&mut self, now: Instant) {
        if self.booting {
            return; // run() starts the engine once cluster mode is set up
        }
        match self.engine {
            Engine::Idle { .. } => {}
            Engine::Down { retry_at } => {
                log!(
                    "registry changed: starting the engine now, not in {}s (crash backoff reset)",
                    retry_at.saturating_duration_since(now).as_secs_f64().ceil()
                );
                self.backoff = Backoff::default();
            }
            Engine::Up(_) | Engine::Stopping { .. } => return,
        }
        if let Err(failure) = self.start_engine() {
            log!("{}", failure.message);
            self.crashed_start(now);
        }
    }

    /// Does the running engine serve `ns` as `wanted` (`None`: not at all),
    /// and will it still once a reload in flight is through?
    fn engine_reflects(&self, ns: &Name, wanted: Option<&Key>) -> bool {
        let Engine::Up(engine) = &self.engine else {
            return false;
        };
        engine.folders.get(ns) == wanted
            && self
                .reload
                .as_ref()
                .is_none_or(|r| r.folders.get(ns) == wanted)
    }

    fn schedule_restart(&mut self, now: Instant, ns: Name) {
        let pending = self.pending.get_or_insert(PendingRestart {
            first: now,
            due: now,
            changed: BTreeSet::new(),
        });
        pending.due = (now + QUIET_PERIOD).min(pending.first + MAX_DELAY);
        pending.changed.insert(ns);
    }

    fn complete(&self, waiter: Waiter, client: Option<Request>) {
        if let Some(client) = client.or(waiter.client) {
            client.reply("ok");
        }
        if let Some((ns, disposal, parking)) = waiter.purge {
            self.purge(ns, disposal, parking);
        }
    }

    /// How `ns` is parked now (`None`: not parked, nothing to remove).
    fn parked(&self, ns: &Name) -> Option<Parking> {
        self.registry.parking(ns).unwrap_or_else(|e| {
            log!("{ns}: cannot read its parked entry: {e}; run 'del {ns}' to finish");
            None
        })
    }

    /// `del --no-wait` or a tombstone: delete (or trash) the folder now that
    /// no engine can see it. Deleting a big tree takes a while, so it runs
    /// beside the loop.
    fn purge(&self, ns: Name, disposal: Disposal, parking: Parking) {
        let registry = Registry::new(self.registry.layout().clone());
        std::thread::spawn(move || {
            let outcome = match disposal {
                Disposal::Delete => registry.remove_files(&ns, parking),
                Disposal::Trash => registry.trash_files(&ns, parking),
            };
            match outcome {
                Ok(Removal::Deleted) => log!("{ns}: files deleted after the engine let go"),
                Ok(Removal::Trashed(path)) => log!(
                    "{ns}: files moved to {} after the engine let go",
                    path.display()
                ),
                Ok(Removal::NoFolder) => log!("{ns}: no folder left to remove"),
                Ok(Removal::Readded) => log!("{ns}: added again meanwhile; files kept"),
                // Added back and removed again since: that removal has a
                // waiter of its own, which deletes once that is safe.
                Ok(Removal::NotPending | Removal::Reparked(_)) => {}
                Ok(Removal::NotADirectory(path)) => {
                    log!("{ns}: {} is not a directory; left in place", path.display())
                }
                Err(e) => log!("{ns}: cannot remove its files: {e}; run 'del {ns}' to retry"),
            }
        });
    }

    pub(super) fn settle_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let running_generation = match &self.engine {
            Engine::Up(engine) => Some(engine.generation),
            Engine::Idle { generation } => Some(*generation),
            _ => None,
        };
        let released = matches!(self.engine, Engine::Down { .. } | Engine::Idle { .. });
        let (done, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| {
                running_generation.is_some_and(|g| g >= w.generation)
                    || (w.needs == Needs::Released && released)
            });
        self.waiters = waiting;
        let (unproven, failed) = self.lacking_proof(&done);
        if let Engine::Up(engine) = &mut self.engine {
            for ns in done.iter().filter_map(|w| w.serving.as_ref()) {
                if failed.contains(ns) {
                    engine.unserved.insert(ns.clone());
                } else if !unproven.contains(ns) {
                    engine.unserved.remove(ns);
                }
            }
        }
        for waiter in done {
            match &waiter.serving {
                Some(ns) if failed.contains(ns) => self.fail_unproven(waiter),
                Some(ns) if unproven.contains(ns) => self.waiters.push(waiter),
                _ => self.complete(waiter, None),
            }
        }
    }

    /// Of the namespaces `waiters` added: those the running engine does not
    /// show it serves yet, and of those the ones past the proof bound. A
    /// namespace the engine's config no longer lists (deleted since) needs
    /// no proof.
    fn lacking_proof(&self, waiters: &[Waiter]) -> (BTreeSet<Name>, BTreeSet<Name>) {
        let Engine::Up(engine) = &self.engine else {
            return Default::default();
        };
        let target: BTreeMap<Name, Key> = waiters
            .iter()
            .filter_map(|w| w.serving.as_ref())
            .filter_map(|ns| Some((ns.clone(), engine.folders.get(ns)?.clone())))
            .collect();
        if target.is_empty() {
            return Default::default();
        }
        let layout = self.registry.layout();
        let unproven = match Proof::for_change(layout, &BTreeMap::new(), &target) {
            Ok(proof) => {
                let storage = engine_config::storage_path(layout);
                let storage = std::fs::canonicalize(&storage).unwrap_or(storage);
                proof.lacking(engine.pid, &storage)
            }
            Err(_) => target.into_keys().collect(),
        };
        let overdue = engine
            .given_folders
            .is_some_and(|given| Instant::now() >= given + start_proof_bound(engine.folders.len()));
        let failed = if overdue {
            unproven.clone()
        } else {
            BTreeSet::new()
        };
        (unproven, failed)
    }

    /// An `add` whose folder the engine was never seen serving: the client
    /// gets an error, not "ok".
    fn fail_unproven(&self, waiter: Waiter) {
        let (Some(ns), Engine::Up(engine)) = (&waiter.serving, &self.engine) else {
            return;
        };
        let bound = start_proof_bound(engine.folders.len()).as_secs_f64();
        log!(
            "engine (pid {}) does not serve {ns} {bound}s after it was given its folders (no \
             .sync/ID with its database open): the add is reported as failed",
            engine.pid
        );
        if let Some(client) = waiter.client {
            client.reply(&format!(
                "error the engine (pid {}) does not serve {ns}: {bound}s after it was given its \
                 folders there is still no .sync/ID with its database open in the engine (is another \
                 namespace on this node using the same key? see 'list --json' and init's log)",
                engine.pid
            ));
        }
    }

    pub(super) fn fail_waiters(&mut self, message: &str) {
        for waiter in std::mem::take(&mut self.waiters) {
            // The engine is gone, so a removed namespace is released.
            if waiter.needs == Needs::Released && self.engine_pid().is_none() {
                self.complete(waiter, None);
            } else if let Some(client) = waiter.client {
                client.reply(&format!("error {message}"));
            }
        }
    }

    /// Bring the running engine in line with the registry, the way
    /// `BTSYNC_APPLY` asks; a reload that cannot be tried becomes a restart.
    fn apply_changes(&mut self, now: Instant, changed: BTreeSet<Name>) {
        if self.settings.apply == Apply::Restart || self.reload_unsupported {
            self.begin_restart(now, &changed);
            return;
        }
        match self.begin_reload(now, &changed) {
            Ok(()) => {}
            Err(None) => self.begin_restart(now, &changed),
            Err(Some(why)) => {
                log!("cannot reload the engine ({why}): restarting it instead");
                self.reload_fallbacks += 1;
                self.begin_restart(now, &changed);
            }
        }
    }

    /// Write the config from the registry as it is now and send HUP; the
    /// change counts as applied once `check_reload` sees the proof.
    /// `Err(None)`: nothing is left to sync, the engine must stop (btsync
    /// refuses to reload a config without folders and keeps serving them).
    fn begin_reload(
        &mut self,
        now: Instant,
        changed: &BTreeSet<Name>,
    ) -> std::result::Result<(), Option<String>> {
        // Every request numbered up to here was registered before this read.
        let generation = self.generation;
        let layout = self.registry.layout().clone();
        let (entries, damaged) = self
            .registry
            .readable_entries()
            .map_err(|e| Some(format!("cannot read the registry: {e}")))?;
        // Before anything else: a change of owner alone gives the engine
        // nothing to reload.
        self.keep_folders(&entries);
        if entries.is_empty() && self.cluster.is_none() {
            return Err(None);
        }
        let Engine::Up(engine) = &mut self.engine else {
            return Err(Some("the engine is not running".to_owned()));
        };
        let pid = engine.pid;
        let target: BTreeMap<Name, Key> = entries
            .iter()
            .map(|e| (e.name.clone(), e.key.clone()))
            .collect();
        let proof = Proof::for_change(&layout, &engine.folders, &target).map_err(Some)?;
        if proof.is_empty() {
            // Undone within the burst: the engine already serves this.
            engine.generation = generation;
            return Ok(());
        }
        for (_, problem) in &damaged {
            log!("left out of the engine config: {problem}");
        }
        let (taking_up, letting_go) = proof.counts();
        let mut to_give = VecDeque::new();
        if engine.api.is_some() {
            // WebUI mode: the config lists no folder; the interface takes
            // the change. Removals at once; the adds a few per loop turn,
            // those a client waits for first.
            let releasing: BTreeMap<Name, Key> = engine
                .folders
                .iter()
                .filter(|(ns, _)| !target.contains_key(*ns))
                .map(|(ns, key)| (ns.clone(), key.clone()))
                .collect();
            let awaited = |ns: &Name| {
                self.waiters
                    .iter()
                    .any(|w| w.client.is_some() && w.serving.as_ref() == Some(ns))
            };
            let mut adding: Vec<(Name, Key)> = target
                .iter()
                .filter(|(ns, _)| !engine.folders.contains_key(*ns))
                .map(|(ns, key)| (ns.clone(), key.clone()))
                .collect();
            // Stable: by name within each part.
            adding.sort_by_key(|(ns, _)| !awaited(ns));
            to_give.extend(adding);
            self.release_over_api(&releasing).map_err(Some)?;
            log!(
                "changing the engine's folders (pid {pid}) {} over its interface ({taking_up} to take up, {letting_go} to let go)",
                describe_changes(changed),
            );
        } else {
            self.write_config_and_hup(&entries, pid).map_err(Some)?;
            log!(
                "reloading the engine (pid {pid}) {}: sent HUP ({taking_up} to take up, {letting_go} to let go)",
                describe_changes(changed),
            );
        }
        let total = target.len();
        let lacking_at_first = proof.namespaces();
        self.reload = Some(Reload {
            pid,
            sent: now,
            deadline: now + reload_bound(taking_up, total),
            generation,
            folders: target,
            proof,
            changed: changed.clone(),
            to_give,
            lacking_at_deadline: lacking_at_first,
            next_look: now,
        });
        Ok(())
    }

    /// Config-file mode: write the engine's config from `entries` (and the
    /// cluster's folders) and send the engine HUP. `Err` says which failed.
    fn write_config_and_hup(&self, entries: &[Entry], pid: Pid) -> std::result::Result<(), String> {
        let cluster = self.cluster.as_ref().map(ClusterSync::cluster);
        engine_config::prepare(
            &self.settings,
            self.registry.layout(),
            entries,
            cluster,
            None,
        )
        .map_err(|e| format!("cannot write its config: {e}"))?;
        sys::send_signal(pid, SIGHUP).map_err(|e| format!("cannot send HUP: {e}"))
    }

    /// Is the reload in flight proven? Then the engine's generation moves
    /// on (waiters settle, files may go); no proof in time: restart.
    fn check_reload(&mut self, now: Instant) {
        let Some(reload) = &self.reload else {
            return;
        };
        if !matches!(&self.engine, Engine::Up(engine) if engine.pid == reload.pid) {
            self.reload = None;
            return;
        }
        if !reload.to_give.is_empty() {
            if let Err(why) = self.give_some(now) {
                log!(
                    "cannot change the engine's folders over its interface ({why}): restarting it instead"
                );
                let changed = self.reload.take().map(|r| r.changed).unwrap_or_default();
                self.reload_fallbacks += 1;
                self.begin_restart(now, &changed);
            }
            return;
        }
        if now < reload.next_look {
            return;
        }
        let storage = engine_config::storage_path(self.registry.layout());
        let storage = std::fs::canonicalize(&storage).unwrap_or(storage);
        let missing = reload.proof.lacking(reload.pid, &storage);
        if missing.is_empty() {
            let Some(reload) = self.reload.take() else {
                return;
            };
            self.reloads += 1;
            let (taken_up, let_go) = reload.proof.counts();
            log!(
                "engine (pid {}) reloaded in {} ms: {taken_up} taken up, {let_go} let go",
                reload.pid,
                now.duration_since(reload.sent).as_millis(),
            );
            if let Engine::Up(engine) = &mut self.engine {
                engine.generation = reload.generation;
                engine.folders = reload.folders;
                let folders = &engine.folders;
                engine.unserved.retain(|ns| folders.contains_key(ns));
            }
            if let Some(cluster) = &mut self.cluster {
                cluster.engine_took_a_step(now);
            }
        } else if now >= reload.deadline && missing.len() < reload.lacking_at_deadline {
            // Still taking folders up: slow, not stuck.
            let bound = reload_bound(missing.len(), reload.folders.len());
            if let Some(reload) = &mut self.reload {
                reload.lacking_at_deadline = missing.len();
                reload.deadline = now + bound;
            }
        } else if now >= reload.deadline {
            log!(
                "engine (pid {}) showed no proof of the reload within {}s, nor progress (still {}): restarting it instead",
                reload.pid,
                now.duration_since(reload.sent).as_secs_f64().round(),
                describe_changes(&missing).replacen("to apply changes to", "waiting for", 1)
            );
            let changed = reload.changed.clone();
            self.reload = None;
            self.reload_fallbacks += 1;
            self.begin_restart(now, &changed);
        }
        if let Some(reload) = &mut self.reload {
            reload.next_look = now + reload::look_interval(reload.folders.len());
        }
    }

    pub(super) fn begin_restart(&mut self, now: Instant, changed: &BTreeSet<Name>) {
        let why = describe_changes(changed);
        // Only for the log: the start after the stop decides for itself.
        let nothing_left = self.cluster.is_none()
            && self
                .registry
                .readable_entries()
                .is_ok_and(|(entries, _)| entries.is_empty());
        let (what, why) = if nothing_left {
            ("stopping", format!("{why} (nothing left to sync)"))
        } else {
            ("restarting", why)
        };
        let grace = self.settings.stop_grace;
        self.engine = match std::mem::replace(&mut self.engine, Engine::Down { retry_at: now }) {
            Engine::Up(engine) => {
                let pid = engine.pid;
                match sys::send_signal(pid, SIGTERM) {
                    Ok(()) => log!("{what} the engine (pid {pid}) {why}: sent TERM"),
                    Err(e) => {
                        log!("{what} the engine (pid {pid}) {why}: cannot send TERM: {e}")
                    }
                }
                Engine::Stopping {
                    engine,
                    deadline: now + grace,
                    killed: false,
                    then: AfterStop::Restart,
                }
            }
            other => other,
        };
    }

    /// Is a registry writer holding the lock right now? Probed with a
    /// non-blocking flock that is released at once.
    fn registry_writer_active(&self) -> bool {
        crate::fsutil::FileLock::is_held(&self.registry.layout().lock_file())
    }

    /// Before the first engine start in cluster mode: give this node its
    /// device id, finish cluster removals a previous init left half done
    /// (no engine runs now, so the folders may go), and apply the registry
    /// so the engine starts with every declared namespace.
    pub(super) fn start_cluster_mode(&mut self, now: Instant) -> Result<()> {
        let Some(cluster) = &mut self.cluster else {
            return Ok(());
        };
        for ns in cluster.start(&self.settings.device_name)? {
            if let Some(parking) = self.parked(&ns) {
                self.purge(ns, Disposal::Trash, parking);
            }
        }
        self.poll_cluster(now);
        Ok(())
    }

    /// Apply what the cluster registry changed (when a poll is due) to the
    /// engine, as `add --no-wait`/`del --no-wait` would.
    pub(super) fn poll_cluster(&mut self, now: Instant) {
        if self.stopping_for_good() {
            // The next init start applies the cluster registry.
            return;
        }
        // Booting: the first start takes one step with it.
        let engine_free = self.booting
            || self.pending.is_none()
                && self.reload.is_none()
                && match &self.engine {
                    Engine::Up(engine) => {
                        engine.given_folders.is_some()
                            && engine.api.as_ref().is_none_or(|api| api.is_ready())
                    }
                    Engine::Idle { .. } => true,
                    Engine::Stopping { .. } | Engine::Down { .. } => false,
                };
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let changes = cluster.poll(now, engine_free);
        self.members_to_take_up |= cluster.take_members_changed();
        for change in changes {
            self.engine_should_reflect(&change.name, now, change.files);
        }
        if self.members_to_take_up && self.take_up_member_folders() {
            self.members_to_take_up = false;
        }
    }

    /// Give the engine the member folders it lacks. Over the interface:
    /// queued with the rest it is given. With a config file: a config that
    /// lists them, and HUP (the folders it serves stay as they are). `false`:
    /// not now (a reload is in flight); try again at the next poll.
    fn take_up_member_folders(&mut self) -> bool {
        let Some(cluster) = self.cluster.as_ref().map(ClusterSync::cluster) else {
            return true;
        };
        let Engine::Up(engine) = &mut self.engine else {
            // The next start gives the engine every member folder.
            return true;
        };
        if let Some(api) = &mut engine.api {
            for (dir, key) in cluster.engine_folders() {
                let shown = dir.display().to_string();
                if api.give_internal(dir, key) {
                    log!("cluster: giving the engine the member folder {shown}");
                }
            }
            return true;
        }
        if self.reload.is_some() || self.pending.is_some() {
            return false;
        }
        let entries: Vec<Entry> = match self.registry.readable_entries() {
            Ok((entries, _)) => entries,
            Err(e) => {
                log!("cluster: cannot read the registry to take up member folders: {e}");
                return false;
            }
        };
        let pid = engine.pid;
        match self.write_config_and_hup(&entries, pid) {
            Ok(()) => log!("reloading the engine (pid {pid}): sent HUP to take up member folders"),
            Err(why) => {
                log!("cluster: cannot give the engine member folders ({why}); its next start will")
            }
        }
        true
    }

    /// The registry changed for `ns` (not through a client): bring the
    /// engine in line the way an `add --no-wait`/`del --no-wait` does.
    fn engine_should_reflect(
        &mut self,
        ns: &Name,
        now: Instant,
        files: Option<(Disposal, Parking)>,
    ) {
        let wanted = self.registry.get(ns).ok().flatten().map(|e| e.key);
        self.generation += 1;
        self.start_now(now);
        let waiter = Waiter {
            generation: self.generation,
            needs: if wanted.is_some() {
                Needs::Running
            } else {
                Needs::Released
            },
            client: None,
            purge: files.map(|(disposal, parking)| (ns.clone(), disposal, parking)),
            serving: None,
        };
        if matches!(self.engine, Engine::Up(_)) {
            if self.engine_reflects(ns, wanted.as_ref()) {
                // The running engine never had it: the files may go now.
                self.complete(waiter, None);
                return;
            }
            self.schedule_restart(now, ns.clone());
        }
        if waiter.purge.is_some() {
            self.waiters.push(waiter);
        }
    }
}
