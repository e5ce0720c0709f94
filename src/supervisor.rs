//! init: run the engine as a correct PID 1 and keep it in step with the
//! registry.
//!
//! One thread owns all state and does all reaping; two helper threads only
//! turn signals and control-socket requests into events for it:
//!
//! - signals: handlers are installed before the engine is spawned. TERM and
//!   INT stop the engine (forward, wait `BTSYNC_STOP_GRACE`, KILL) and init
//!   exits with its status; HUP QUIT USR1 USR2 ALRM WINCH CONT are forwarded
//!   as they are; TTIN TTOU TSTP are swallowed so init never stops; CHLD
//!   wakes the reaper.
//! - reaping: `waitpid(-1, WNOHANG)` until nothing is left, recognising the
//!   engine's pid inside that loop; every other child is an orphan that was
//!   re-parented to us and is simply reaped.
//! - changes: a request from `add`/`del` whose namespace the running engine
//!   does not reflect schedules an apply after a quiet period, so a burst of
//!   changes costs one. Clients wait for a generation number: every request
//!   takes the next one, every engine start (or proven reload) records the
//!   newest it read the registry after.
//! - apply (`BTSYNC_APPLY`, default reload): init rewrites the config and
//!   sends HUP, then watches for proof before the change counts as applied:
//!   an added folder has its `.sync/ID` and the database that id names is
//!   open in `/proc/ENGINE/fd`; a removed folder's database is closed. No
//!   proof within `RELOAD_BOUND` (an engine that ignores HUP, a folder it
//!   cannot load) falls back to a restart. The last namespace removed stops
//!   the engine instead: btsync refuses to reload a config without folders.
//! - crashes: an unexpected exit restarts the engine after an exponential
//!   backoff that resets once the engine has run for a healthy period. The
//!   backoff only guards against a broken engine: a registry change while
//!   it waits starts the engine at once and resets the delay.
//! - idle: with nothing to sync (no namespace and no cluster registry) no
//!   engine runs; the first change starts one at once, and when the last
//!   namespace goes the engine is stopped (files leave only after that).
//! - cluster mode: the registry folder is polled every `CLUSTER_POLL`; its
//!   declarations and tombstones are applied to the local registry and then
//!   to the engine exactly like an `add --no-wait` / `del --no-wait` (same
//!   restart coalescing; files leave only after the engine let go).
//!   Folders in the cluster trash are purged after `BTSYNC_TRASH_DAYS`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use signal_hook::consts::signal::*;
use signal_hook::iterator::Signals;

use crate::cluster::{self, Action, Cluster, Local, Watch};
use crate::control::{self, Ask, Disposal, Mode, Request};
use crate::engine_config::{self, Apply, Settings};
use crate::error::{Error, Result};
use crate::keys::Key;
use crate::layout::Layout;
use crate::name::Name;
use crate::procfs;
use crate::registry::{self, ClusterUnregistered, Parking, Registry, Removal};
use crate::sys::{self, ExitStatus, Pid};

/// Signals passed on to the engine unchanged.
const FORWARDED: &[i32] = &[
    SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH, SIGCONT,
];
/// Signals that must not stop or kill init; handled by doing nothing.
const SWALLOWED: &[i32] = &[SIGTTIN, SIGTTOU, SIGTSTP];

/// A change is applied once no other change came for this long...
pub const QUIET_PERIOD: Duration = Duration::from_millis(250);
/// ...but a steady stream of changes cannot postpone a restart longer than this.
pub const MAX_DELAY: Duration = Duration::from_secs(3);
/// While a registry writer holds the lock (more adds queued behind it), look again after this.
const WRITER_RECHECK: Duration = Duration::from_millis(50);
/// First delay after a crash; doubles per crash up to BACKOFF_MAX.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An engine that ran this long was healthy: its next crash starts over at BACKOFF_FIRST.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Wake up at least this often, in case a SIGCHLD was somehow missed.
const IDLE_WAKEUP: Duration = Duration::from_secs(5);
/// How often the cluster registry folder is looked at (a directory listing
/// when nothing changed).
pub const CLUSTER_POLL: Duration = Duration::from_secs(1);
/// `status` lists at most this many of the engine's folders (and counts all).
const STATUS_FOLDERS: usize = 1000;
/// How long a reload may take to show its proof before init restarts the engine.
pub const RELOAD_BOUND: Duration = Duration::from_secs(3);
/// How often `/proc/ENGINE/fd` is looked at while a reload is in flight.
const RELOAD_POLL: Duration = Duration::from_millis(10);
/// How often the cluster trash is checked for folders past their time.
const TRASH_SWEEP: Duration = Duration::from_secs(60);

enum Event {
    Signal(i32),
    Request(Request),
}

/// Exponential backoff for crash restarts.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    /// The delay before restarting an engine that crashed after running `uptime`.
    pub fn after_crash(&mut self, uptime: Duration) -> Duration {
        if uptime >= HEALTHY_RUN {
            self.next = BACKOFF_FIRST;
        }
        let delay = self.next;
        self.next = (delay * 2).min(BACKOFF_MAX);
        delay
    }
}

struct Running {
    pid: Pid,
    started: Instant,
    generation: u64,
    folders: BTreeMap<Name, Key>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    Restart,
    Exit,
}

enum Engine {
    Up(Running),
    Stopping {
        engine: Running,
        deadline: Instant,
        killed: bool,
        then: AfterStop,
    },
    /// Not running: waiting out a crash backoff.
    Down {
        retry_at: Instant,
    },
    /// Nothing to sync (no namespace, no cluster registry): no engine runs,
    /// since btsync exits 1 at once with no folder in its config. The state
    /// reflects the registry as read when `generation` was current.
    Idle {
        generation: u64,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// An engine started from a registry read at or after the request.
    Running,
    /// No engine older than the request is running.
    Released,
}

struct Waiter {
    generation: u64,
    needs: Needs,
    client: Option<Request>,
    /// `del --no-wait` or a cluster tombstone: delete or trash this
    /// namespace's files once released.
    /// The parking is the one seen when the removal was taken on: the
    /// files are touched only if the namespace is still parked that way.
    purge: Option<(Name, Disposal, Parking)>,
}

struct PendingRestart {
    first: Instant,
    due: Instant,
    /// The namespaces whose change it applies, for the log.
    changed: BTreeSet<Name>,
}

/// A HUP sent, waiting for the engine to show it took the new config.
struct Reload {
    pid: Pid,
    sent: Instant,
    deadline: Instant,
    /// The registry generation the new config was written from.
    generation: u64,
    /// What the engine serves once the reload is proven.
    folders: BTreeMap<Name, Key>,
    /// Folders to be taken up: their `.sync/ID` names the database to see
    /// open (and so does the id the key gives, where it is known).
    adding: Vec<(Name, PathBuf, Option<[u8; procfs::FOLDER_ID_LEN]>)>,
    /// Databases (file names in the storage) to see closed.
    releasing: Vec<(Name, String)>,
    changed: BTreeSet<Name>,
}

struct ExitRecord {
    status: ExitStatus,
    at: Instant,
}

struct Supervisor {
    settings: Settings,
    registry: Registry,
    work_dir: PathBuf,
    engine: Engine,
    generation: u64,
    pending: Option<PendingRestart>,
    waiters: Vec<Waiter>,
    backoff: Backoff,
    born: Instant,
    subreaper: bool,
    starts: u64,
    restarts: u64,
    reloads: u64,
    /// Reloads that gave no proof in time and became restarts.
    reload_fallbacks: u64,
    reload: Option<Reload>,
    /// The engine died of a HUP: it cannot reload, so changes restart it.
    reload_unsupported: bool,
    crashes: u64,
    last_exit: Option<ExitRecord>,
    exit_code: Option<u8>,
    /// Cluster mode: the registry folder being watched.
    cluster: Option<Watch>,
    next_poll: Instant,
    /// The last changes a reconcile made, for `status`.
    last_reconcile: Option<(SystemTime, Vec<String>)>,
    /// Declared namespaces that could not be added, with why (logged once).
    cluster_failures: BTreeMap<Name, String>,
    next_trash_sweep: Instant,
    trash_sweeping: Arc<AtomicBool>,
    /// Until the first start: a registry change waits for that start.
    booting: bool,
}

/// One line on stderr per event: `docker logs` is the user's view of init.
/// A closed stderr must not bring PID 1 down, so failures are ignored.
fn log(message: std::fmt::Arguments) {
    let _ = writeln!(io::stderr().lock(), "init: {message}");
}

macro_rules! log {
    ($($arg:tt)*) => { log(format_args!($($arg)*)) };
}

/// "to apply changes to a, b, c, d, e and 3 more", for the log.
fn describe_changes(changed: &BTreeSet<Name>) -> String {
    const SHOWN: usize = 5;
    let mut names: Vec<&str> = changed.iter().take(SHOWN).map(Name::as_str).collect();
    let more = format!("and {} more", changed.len().saturating_sub(SHOWN));
    if changed.len() > SHOWN {
        names.push(&more);
    }
    format!("to apply changes to {}", names.join(", "))
}

/// Why the engine could not be started.
struct StartFailure {
    /// init's exit status if this happens on the first start.
    code: u8,
    message: String,
}

/// Can the engine be run? Checked at init's start even when there is
/// nothing to sync yet, so a wrong `BTSYNC_BIN` shows at once (127/126, as
/// a failed first start would) and not at the first `add`. A bare name is
/// looked up in `PATH`, as spawning it would.
fn check_engine_bin(bin: &Path) -> std::result::Result<(), StartFailure> {
    use std::os::unix::fs::PermissionsExt;
    let found = if bin.components().count() == 1 && !bin.is_absolute() {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(bin))
                .find(|candidate| candidate.is_file())
        })
    } else {
        Some(bin.to_owned()).filter(|path| path.exists())
    };
    let failure = |code: u8, why: &str| StartFailure {
        code,
        message: format!("cannot run the engine {}: {why}", bin.display()),
    };
    let Some(path) = found else {
        return Err(failure(127, "not found (set BTSYNC_BIN)"));
    };
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(failure(126, "permission denied (is it executable?)")),
        Err(e) => Err(failure(126, &e.to_string())),
    }
}

/// Run init until it is stopped; returns its exit status. `cluster` turns
/// cluster mode on.
pub fn run(settings: Settings, layout: Layout, cluster: Option<Cluster>) -> Result<u8> {
    // Handlers first: PID 1 drops every signal it has no handler for, and a
    // signal arriving before the engine exists must not be lost.
    let mut handled: Vec<i32> = FORWARDED.to_vec();
    handled.extend_from_slice(SWALLOWED);
    handled.push(SIGCHLD);
    let mut signals =
        Signals::new(&handled).map_err(|e| Error::io("cannot install signal handlers", e))?;
    let (events, inbox) = mpsc::channel::<Event>();

    layout.check_data_root()?;
    let plugin = crate::volume_plugin::Settings::from_env(&layout)?;
    crate::fsutil::ensure_private_dir(&layout.state_dir())?;
    let (_claim, listener) = control::claim(&layout)?;

    let subreaper = std::process::id() != 1;
    if subreaper {
        sys::become_child_subreaper()
            .map_err(|e| Error::io("cannot become the reaper of orphaned processes", e))?;
    }

    let signal_events = events.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal_events.send(Event::Signal(signal)).is_err() {
                break;
            }
        }
    });
    let request_events = events.clone();
    control::serve(listener, move |request| {
        let _ = request_events.send(Event::Request(request));
    });
    // Its requests reach this loop through the control socket, as the applets' do.
    let _plugin = crate::volume_plugin::serve(plugin.as_ref(), &layout)?;

    let work_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let now = Instant::now();
    let mut supervisor = Supervisor {
        settings,
        registry: Registry::new(layout),
        work_dir,
        engine: Engine::Down { retry_at: now },
        generation: 0,
        pending: None,
        waiters: Vec::new(),
        backoff: Backoff::default(),
        born: now,
        subreaper,
        starts: 0,
        restarts: 0,
        reloads: 0,
        reload_fallbacks: 0,
        reload: None,
        reload_unsupported: false,
        crashes: 0,
        last_exit: None,
        exit_code: None,
        cluster: cluster.map(Watch::new),
        next_poll: now,
        last_reconcile: None,
        cluster_failures: BTreeMap::new(),
        next_trash_sweep: now,
        trash_sweeping: Arc::new(AtomicBool::new(false)),
        booting: true,
    };
    if subreaper {
        log!(
            "running as pid {} (not PID 1): registered as child subreaper",
            std::process::id()
        );
    }
    supervisor.sweep_trash(now);
    if supervisor.cluster.is_some() {
        supervisor.start_cluster_mode(now)?;
    }
    // An idle init would only find out at the first `add`: check now.
    if let Err(failure) =
        check_engine_bin(&supervisor.settings.engine_bin).and_then(|()| supervisor.start_engine())
    {
        log!("{}", failure.message);
        return Ok(failure.code);
    }
    supervisor.booting = false;
    // Hold no mount busy; later engines still start in the original directory.
    let _ = std::env::set_current_dir("/");
    Ok(supervisor.run(inbox, events))
}

impl Supervisor {
    fn run(&mut self, inbox: Receiver<Event>, _keep_open: Sender<Event>) -> u8 {
        loop {
            self.reap();
            let now = Instant::now();
            if self.exit_code.is_none() {
                self.on_timers(now);
            }
            if let Some(code) = self.exit_code {
                self.fail_waiters("init stopped before the engine picked up the change");
                return code;
            }
            self.settle_waiters();
            let wait = self
                .next_deadline()
                .map_or(IDLE_WAKEUP, |d| d.saturating_duration_since(now))
                .min(IDLE_WAKEUP);
            match inbox.recv_timeout(wait) {
                Ok(event) => {
                    self.handle(event);
                    while let Ok(event) = inbox.try_recv() {
                        self.handle(event);
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Signal(signal) => self.on_signal(signal),
            Event::Request(request) => self.on_request(request),
        }
    }

    fn engine_pid(&self) -> Option<Pid> {
        match &self.engine {
            Engine::Up(engine) | Engine::Stopping { engine, .. } => Some(engine.pid),
            Engine::Down { .. } | Engine::Idle { .. } => None,
        }
    }

    fn on_signal(&mut self, signal: i32) {
        if signal == SIGCHLD {
            return; // the loop reaps on every wake-up
        }
        let name = sys::signal_name(signal);
        if SWALLOWED.contains(&signal) {
            log!("{name} received: ignored (init does not stop)");
            return;
        }
        let stops = signal == SIGTERM || signal == SIGINT;
        let Some(pid) = self.engine_pid() else {
            if stops {
                // Idle is init doing its job: a clean stop. In a crash
                // backoff the engine's last failure is the status.
                let code = match self.engine {
                    Engine::Idle { .. } => 0,
                    _ => self.last_exit.as_ref().map_or(0, |e| e.status.code()),
                };
                log!("{name} received: no engine running; exiting with status {code}");
                self.exit_code = Some(code);
            } else {
                log!("{name} received: no engine running to forward it to");
            }
            return;
        };
        let forwarded = sys::send_signal(pid, signal);
        if let Err(e) = &forwarded {
            log!("{name} received: cannot forward it to the engine (pid {pid}): {e}");
            // A stop still stops: the grace runs out and KILL follows.
            if !stops {
                return;
            }
        } else if !stops {
            log!("{name} received: forwarded to the engine (pid {pid})");
            return;
        }
        let grace = self.settings.stop_grace;
        let now = Instant::now();
        self.engine = match std::mem::replace(&mut self.engine, Engine::Down { retry_at: now }) {
            Engine::Up(engine) => Engine::Stopping {
                engine,
                deadline: now + grace,
                killed: false,
                then: AfterStop::Exit,
            },
            Engine::Stopping {
                engine,
                deadline,
                killed,
                ..
            } => Engine::Stopping {
                engine,
                deadline,
                killed,
                then: AfterStop::Exit,
            },
            down => down,
        };
        self.pending = None;
        self.reload = None;
        log!(
            "{name} received: {} the engine (pid {pid}); stopping, KILL after {}s",
            if forwarded.is_ok() {
                "forwarded to"
            } else {
                "not forwarded to"
            },
            grace.as_secs_f64()
        );
    }

    fn on_request(&mut self, request: Request) {
        let (ns, added, mode) = match &request.ask {
            Ask::Status => {
                let status = self.status_json().to_string();
                request.reply(&status);
                return;
            }
            Ask::Apply { ns, added, mode } => (ns.clone(), *added, *mode),
        };
        if matches!(
            self.engine,
            Engine::Stopping {
                then: AfterStop::Exit,
                ..
            }
        ) {
            request
                .reply("error init is stopping; the change is in the registry for its next start");
            return;
        }
        let wanted = match self.registry.get(&ns) {
            Ok(entry) => entry.map(|e| e.key),
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
        };
        if matches!(self.engine, Engine::Up(_)) {
            if self.engine_reflects(&ns, wanted.as_ref()) {
                // The running engine already has it that way: nothing to
                // restart. On "ok" the client deletes the files itself.
                let waiter = Waiter {
                    purge: None,
                    ..waiter
                };
                self.complete(waiter, Some(request));
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

    fn settle_waiters(&mut self) {
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
        for waiter in done {
            self.complete(waiter, None);
        }
    }

    fn fail_waiters(&mut self, message: &str) {
        for waiter in std::mem::take(&mut self.waiters) {
            // The engine is gone, so a removed namespace is released.
            if waiter.needs == Needs::Released && self.engine_pid().is_none() {
                self.complete(waiter, None);
            } else if let Some(client) = waiter.client {
                client.reply(&format!("error {message}"));
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let engine = match &self.engine {
            Engine::Stopping {
                deadline,
                killed: false,
                ..
            } => Some(*deadline),
            Engine::Down { retry_at } => Some(*retry_at),
            _ => None,
        };
        let restart = self.pending.as_ref().map(|p| p.due);
        let poll = self.cluster.as_ref().map(|_| self.next_poll);
        let reload = self.reload.as_ref().map(|_| Instant::now() + RELOAD_POLL);
        engine
            .into_iter()
            .chain(restart)
            .chain(reload)
            .chain(poll)
            .chain(Some(self.next_trash_sweep))
            .min()
    }

    fn on_timers(&mut self, now: Instant) {
        if self.cluster.is_some() && now >= self.next_poll {
            self.next_poll = now + CLUSTER_POLL;
            self.reconcile_cluster(now);
        }
        if now >= self.next_trash_sweep {
            self.sweep_trash(now);
        }
        if let Engine::Stopping {
            engine,
            deadline,
            killed,
            ..
        } = &mut self.engine
            && !*killed
            && now >= *deadline
        {
            *killed = true;
            let pid = engine.pid;
            match sys::send_signal(pid, SIGKILL) {
                Ok(()) => log!(
                    "engine (pid {pid}) did not stop within {}s: sent KILL",
                    self.settings.stop_grace.as_secs_f64()
                ),
                Err(e) => log!("engine (pid {pid}) did not stop; cannot KILL it: {e}"),
            }
        }
        self.check_reload(now);
        if let Some(pending) = &self.pending
            && now >= pending.due
        {
            if !matches!(self.engine, Engine::Up(_)) {
                // Stopping or down: the next start reads the registry anyway.
                self.pending = None;
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
        if let Engine::Down { retry_at } = self.engine
            && now >= retry_at
            && let Err(failure) = self.start_engine()
        {
            log!("{}", failure.message);
            self.crashed_start(now);
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
        let mut adding = Vec::new();
        for (name, key) in &target {
            match engine.folders.get(name) {
                Some(old) if old == key => {}
                Some(_) => return Err(Some(format!("the key of {name} changed"))),
                None => adding.push((name.clone(), layout.folder(name), key.folder_id())),
            }
        }
        let mut releasing = Vec::new();
        for (name, key) in &engine.folders {
            if target.contains_key(name) {
                continue;
            }
            // Both the id the key gives and the one in .sync/ID (if they
            // differ, neither database may stay open): a wrong id would
            // make a database that was never open look released.
            let ids: BTreeSet<[u8; procfs::FOLDER_ID_LEN]> = key
                .folder_id()
                .into_iter()
                .chain(procfs::read_folder_id(&layout.folder(name)))
                .collect();
            if ids.is_empty() {
                return Err(Some(format!(
                    "cannot tell which database the engine keeps for {name}"
                )));
            }
            for id in ids {
                releasing.push((name.clone(), procfs::database_name(&id)));
            }
        }
        if adding.is_empty() && releasing.is_empty() {
            // Undone within the burst: the engine already serves this.
            engine.generation = generation;
            return Ok(());
        }
        for (_, problem) in &damaged {
            log!("left out of the engine config: {problem}");
        }
        let cluster = self.cluster.as_ref().map(|watch| &watch.cluster);
        engine_config::prepare(&self.settings, &layout, &entries, cluster)
            .map_err(|e| Some(format!("cannot write its config: {e}")))?;
        sys::send_signal(pid, SIGHUP).map_err(|e| Some(format!("cannot send HUP: {e}")))?;
        log!(
            "reloading the engine (pid {pid}) {}: sent HUP ({} to take up, {} to let go)",
            describe_changes(changed),
            adding.len(),
            releasing.len()
        );
        self.reload = Some(Reload {
            pid,
            sent: now,
            deadline: now + RELOAD_BOUND,
            generation,
            folders: target,
            adding,
            releasing,
            changed: changed.clone(),
        });
        Ok(())
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
        let storage = engine_config::storage_path(self.registry.layout());
        let storage = std::fs::canonicalize(&storage).unwrap_or(storage);
        let missing: Vec<&Name> = match procfs::open_files(reload.pid) {
            Ok(open) => {
                let is_open = |db: &str| open.contains(&storage.join(db));
                let not_up = reload.adding.iter().filter(|(_, folder, by_key)| {
                    let seen = procfs::read_folder_id(folder);
                    !(seen.is_some_and(|id| is_open(&procfs::database_name(&id)))
                        && by_key.is_none_or(|id| is_open(&procfs::database_name(&id))))
                });
                let still_held = reload
                    .releasing
                    .iter()
                    .filter(|(_, db)| is_open(db))
                    .map(|(name, _)| name);
                not_up.map(|(name, ..)| name).chain(still_held).collect()
            }
            // Unreadable /proc proves nothing.
            Err(_) => reload
                .adding
                .iter()
                .map(|(name, ..)| name)
                .chain(reload.releasing.iter().map(|(name, _)| name))
                .collect(),
        };
        if missing.is_empty() {
            let Some(reload) = self.reload.take() else {
                return;
            };
            self.reloads += 1;
            log!(
                "engine (pid {}) reloaded in {} ms: {} taken up, {} let go",
                reload.pid,
                now.duration_since(reload.sent).as_millis(),
                reload.adding.len(),
                reload.releasing.len()
            );
            if let Engine::Up(engine) = &mut self.engine {
                engine.generation = reload.generation;
                engine.folders = reload.folders;
            }
        } else if now >= reload.deadline {
            let names: BTreeSet<Name> = missing.into_iter().cloned().collect();
            log!(
                "engine (pid {}) showed no proof of the reload within {}s (still {}): restarting it instead",
                reload.pid,
                RELOAD_BOUND.as_secs_f64(),
                describe_changes(&names).replacen("to apply changes to", "waiting for", 1)
            );
            let changed = reload.changed.clone();
            self.reload = None;
            self.reload_fallbacks += 1;
            self.begin_restart(now, &changed);
        }
    }

    fn begin_restart(&mut self, now: Instant, changed: &BTreeSet<Name>) {
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

    /// A start failed after the first one: retry later like after a crash.
    fn crashed_start(&mut self, now: Instant) {
        self.crashes += 1;
        let delay = self.backoff.after_crash(Duration::ZERO);
        log!("retrying in {}s", delay.as_secs_f64());
        self.engine = Engine::Down {
            retry_at: now + delay,
        };
    }

    fn reap(&mut self) {
        loop {
            match sys::reap_any() {
                Ok(Some((pid, status))) => {
                    if Some(pid) == self.engine_pid() {
                        self.engine_exited(status);
                    }
                    // Any other pid is an orphan re-parented to us: reaped, done.
                }
                Ok(None) => return,
                Err(e) => {
                    log!("waitpid failed: {e}");
                    return;
                }
            }
        }
    }

    fn engine_exited(&mut self, status: ExitStatus) {
        let now = Instant::now();
        self.last_exit = Some(ExitRecord { status, at: now });
        let previous = std::mem::replace(&mut self.engine, Engine::Down { retry_at: now });
        let reloading = self.reload.take().is_some();
        if reloading && status == ExitStatus::Signaled(SIGHUP) && !self.reload_unsupported {
            log!("the engine does not survive HUP: changes restart it from now on");
            self.reload_unsupported = true;
        }
        match previous {
            Engine::Stopping {
                engine,
                then: AfterStop::Exit,
                ..
            } => {
                log!(
                    "engine (pid {}) stopped: {status}; init exits with status {}",
                    engine.pid,
                    status.code()
                );
                self.exit_code = Some(status.code());
            }
            Engine::Stopping {
                engine,
                then: AfterStop::Restart,
                ..
            } => {
                log!(
                    "engine (pid {}) stopped for the restart: {status}",
                    engine.pid
                );
                self.restarts += 1;
                if let Err(failure) = self.start_engine() {
                    log!("{}", failure.message);
                    self.crashed_start(now);
                }
            }
            Engine::Up(engine) if reloading => {
                // The change it was reloading for is still to be applied:
                // start again now, from the registry.
                self.crashes += 1;
                log!(
                    "engine (pid {}) exited during a reload: {status}; starting it again now",
                    engine.pid
                );
                if let Err(failure) = self.start_engine() {
                    log!("{}", failure.message);
                    self.crashed_start(now);
                }
            }
            Engine::Up(engine) => {
                self.crashes += 1;
                let uptime = now.duration_since(engine.started);
                let delay = self.backoff.after_crash(uptime);
                log!(
                    "engine (pid {}) exited unexpectedly after {:.1}s: {status}; restarting in {}s",
                    engine.pid,
                    uptime.as_secs_f64(),
                    delay.as_secs_f64()
                );
                self.engine = Engine::Down {
                    retry_at: now + delay,
                };
            }
            down => self.engine = down,
        }
    }

    /// Write the config from the registry as it is now and start the engine.
    fn start_engine(&mut self) -> std::result::Result<(), StartFailure> {
        // Every request numbered up to here was registered before this read.
        let generation = self.generation;
        let layout = self.registry.layout().clone();
        let (entries, damaged) = self.registry.readable_entries().map_err(|e| StartFailure {
            code: 1,
            message: format!("cannot start the engine: {e}"),
        })?;
        for (_, problem) in &damaged {
            log!("left out of the engine config: {problem}");
        }
        let cluster = self.cluster.as_ref().map(|watch| &watch.cluster);
        if entries.is_empty() && cluster.is_none() {
            // btsync refuses an empty config (exit 1): run nothing.
            log!("nothing to sync (no namespace): no engine runs until one is added");
            self.backoff = Backoff::default();
            self.engine = Engine::Idle { generation };
            return Ok(());
        }
        let config =
            engine_config::prepare(&self.settings, &layout, &entries, cluster).map_err(|e| {
                StartFailure {
                    code: 1,
                    message: format!("cannot start the engine: {e}"),
                }
            })?;
        let bin = &self.settings.engine_bin;
        let mut command = Command::new(bin);
        command
            .arg("--nodaemon")
            .arg("--config")
            .arg(&config)
            .current_dir(&self.work_dir)
            // The engine gets its keys from the config; the cluster key,
            // which derives every namespace's key, stays out of its
            // environment (/proc/PID/environ of a long-lived process).
            .env_remove(crate::cluster_key::CLUSTER_KEY_VAR)
            .stdin(Stdio::null());
        if let Some(owner) = self.settings.owner {
            command.uid(owner.uid).gid(owner.gid);
        }
        sys::kill_child_with_parent(&mut command);
        let child = command.spawn().map_err(|e| {
            let (code, why) = match e.kind() {
                io::ErrorKind::NotFound => (127, "not found (set BTSYNC_BIN)".to_owned()),
                io::ErrorKind::PermissionDenied => {
                    (126, "permission denied (is it executable?)".to_owned())
                }
                _ => (126, e.to_string()),
            };
            StartFailure {
                code,
                message: format!("cannot run the engine {}: {why}", bin.display()),
            }
        })?;
        let pid = child.id() as Pid;
        // The Child handle is dropped without waiting: the reap loop owns it.
        drop(child);
        self.starts += 1;
        log!(
            "engine started: pid {pid}, {} folder{}{}",
            entries.len(),
            if entries.len() == 1 { "" } else { "s" },
            if cluster.is_some() {
                " and the cluster registry"
            } else {
                ""
            }
        );
        // extend, not collect: collect sorts first, and every type sorted
        // adds its own copy of the sort code to the binary.
        let mut folders = BTreeMap::new();
        folders.extend(entries.into_iter().map(|e| (e.name, e.key)));
        self.engine = Engine::Up(Running {
            pid,
            started: Instant::now(),
            generation,
            folders,
        });
        Ok(())
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
    fn start_cluster_mode(&mut self, now: Instant) -> Result<()> {
        let layout = self.registry.layout().clone();
        let device = {
            let lock = self.registry.lock()?;
            cluster::device_id(&layout, &lock)?
        };
        if let Some(watch) = &self.cluster {
            watch.cluster.ensure_dir()?;
            log!(
                "cluster mode: registry {} (cluster id {}), this device {device}",
                watch.cluster.dir().display(),
                watch.cluster.id()
            );
        }
        for ns in self.registry.parked_cluster_removals()? {
            log!("{ns}: finishing a cluster removal an earlier init left unfinished");
            if let Some(parking) = self.parked(&ns) {
                self.purge(ns, Disposal::Trash, parking);
            }
        }
        self.next_poll = now + CLUSTER_POLL;
        self.reconcile_cluster(now);
        Ok(())
    }

    /// Look at the registry folder and apply what changed: declared
    /// namespaces are added, tombstoned ones that came from the cluster are
    /// removed. Nothing else is ever removed.
    fn reconcile_cluster(&mut self, now: Instant) {
        if matches!(
            self.engine,
            Engine::Stopping {
                then: AfterStop::Exit,
                ..
            }
        ) {
            // Stopping for good: the next init start applies the registry.
            return;
        }
        let layout = self.registry.layout().clone();
        let Some(watch) = &mut self.cluster else {
            return;
        };
        let watched_too = [layout.namespaces_dir(), layout.deleting_dir()];
        let (winners, ignored_lines) = match watch.poll(now, &watched_too) {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(e) => {
                log!("cluster: cannot read the registry: {e}");
                return;
            }
        };
        for line in &ignored_lines {
            log!("cluster: {line}");
        }
        let local: Vec<Local> = match self.registry.readable_entries() {
            // A damaged entry counts as held and local: the cluster neither
            // re-adds over it nor removes it; the engine start reports it.
            Ok((entries, damaged)) => entries
                .into_iter()
                .map(|e| Local {
                    name: e.name,
                    from_cluster: e.from_cluster,
                })
                .chain(damaged.into_iter().map(|(name, _)| Local {
                    name,
                    from_cluster: false,
                }))
                .collect(),
            Err(e) => {
                log!("cluster: cannot read the local registry: {e}");
                return;
            }
        };
        let mut borrowed: BTreeMap<Name, &cluster::Record> = BTreeMap::new();
        borrowed.extend(winners.iter().map(|(n, r)| (n.clone(), r)));
        let actions = cluster::reconcile(&borrowed, &local);
        let mut done = Vec::new();
        for action in actions {
            if let Some(change) = self.apply_cluster_action(action, &winners, now) {
                done.push(change);
            }
        }
        if !done.is_empty() {
            self.last_reconcile = Some((SystemTime::now(), done));
        }
    }

    /// Apply one reconcile action; a description of the change if one was made.
    fn apply_cluster_action(
        &mut self,
        action: Action,
        winners: &BTreeMap<Name, cluster::Record>,
        now: Instant,
    ) -> Option<String> {
        let watch = self.cluster.as_ref()?;
        let by = |ns: &Name| {
            winners.get(ns).map_or_else(String::new, |r| {
                format!(" by {} ({})", r.device_name, r.device)
            })
        };
        match action {
            Action::Add { name, access } => {
                let added = watch.cluster.namespace_key(&name, access).and_then(|key| {
                    let lock = self.registry.lock()?;
                    self.registry.add_for_cluster(&lock, &name, key, false)
                });
                match added {
                    Ok(_) => {
                        self.cluster_failures.remove(&name);
                        log!(
                            "cluster: {name} declared{} ({}): added",
                            by(&name),
                            access.as_str()
                        );
                        self.engine_should_reflect(&name, now, None);
                        Some(format!("added {name}"))
                    }
                    Err(e) => {
                        let message = e.to_string();
                        if self.cluster_failures.get(&name) != Some(&message) {
                            log!("cluster: {name} is declared but cannot be added here: {message}");
                            self.cluster_failures.insert(name, message);
                        }
                        None
                    }
                }
            }
            Action::Remove { name, purge } => {
                let parked = self
                    .registry
                    .lock()
                    .and_then(|lock| self.registry.unregister_for_cluster(&lock, &name));
                match parked {
                    Ok(ClusterUnregistered::Parked(parking)) => {
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
                        self.engine_should_reflect(&name, now, Some((disposal, parking)));
                        Some(format!("removed {name}"))
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

    /// Delete cluster-trash folders older than `BTSYNC_TRASH_DAYS`, on a
    /// thread of its own (trees may be big); one sweep at a time.
    fn sweep_trash(&mut self, now: Instant) {
        self.next_trash_sweep = now + TRASH_SWEEP;
        let trash = self.registry.layout().cluster_trash_dir();
        if !trash.is_dir() || self.trash_sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        let kept = self.settings.trash_kept;
        let busy = Arc::clone(&self.trash_sweeping);
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

    fn cluster_status(&self) -> Value {
        let Some(watch) = &self.cluster else {
            return Value::Null;
        };
        let mut status = watch.status_json();
        let now = SystemTime::now();
        status["device"] = json!(cluster::read_device_id(self.registry.layout()));
        status["last_reconcile"] = match &self.last_reconcile {
            Some((at, changes)) => json!({
                "seconds_ago": now.duration_since(*at).map_or(0, |d| d.as_secs()),
                "changes": cluster::sample(changes, |c| json!(c)),
                "changes_count": changes.len(),
            }),
            None => Value::Null,
        };
        status["failures"] = cluster::sample(
            &self.cluster_failures,
            |(ns, why)| json!({"name": ns.as_str(), "problem": why}),
        );
        status["failures_count"] = json!(self.cluster_failures.len());
        status
    }

    fn status_json(&self) -> Value {
        let now = Instant::now();
        let (state, engine) = match &self.engine {
            Engine::Up(engine) => ("running", Some(engine)),
            Engine::Stopping {
                engine,
                then: AfterStop::Restart,
                ..
            } => ("restarting", Some(engine)),
            Engine::Stopping { engine, .. } => ("stopping", Some(engine)),
            Engine::Down { .. } => ("waiting", None),
            Engine::Idle { .. } => ("idle", None),
        };
        let retry_in = match &self.engine {
            Engine::Down { retry_at } => Some(retry_at.saturating_duration_since(now).as_secs()),
            _ => None,
        };
        json!({
            "init": {
                "pid": std::process::id(),
                "uptime_seconds": now.duration_since(self.born).as_secs(),
                "subreaper": self.subreaper,
            },
            "engine": {
                "state": state,
                "pid": engine.map(|e| e.pid),
                "uptime_seconds": engine.map(|e| now.duration_since(e.started).as_secs()),
                // Bounded like every list of the reply (names are at most
                // 64 bytes): the reply stays far below the protocol's 1 MiB.
                "folders": engine.map(|e| {
                    e.folders.keys().take(STATUS_FOLDERS).map(Name::as_str).collect::<Vec<_>>()
                }),
                "folder_count": engine.map(|e| e.folders.len()),
                "retry_in_seconds": retry_in,
            },
            "starts": self.starts,
            "restarts": self.restarts,
            "apply": if self.settings.apply == Apply::Reload && self.reload_unsupported {
                "restart (the engine does not survive HUP)"
            } else {
                self.settings.apply.as_str()
            },
            "reloads": self.reloads,
            "reload_fallbacks": self.reload_fallbacks,
            "reloading": self.reload.is_some(),
            "crashes": self.crashes,
            "changes_pending": self.pending.is_some(),
            "cluster": self.cluster_status(),
            "last_exit": self.last_exit.as_ref().map(|e| json!({
                "status": e.status.code(),
                "description": e.status.to_string(),
                "seconds_ago": now.duration_since(e.at).as_secs(),
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_healthy_run() {
        let mut backoff = Backoff::default();
        let quick = Duration::from_millis(10);
        let delays: Vec<u64> = (0..7)
            .map(|_| backoff.after_crash(quick).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.after_crash(HEALTHY_RUN).as_secs(), 1);
        assert_eq!(backoff.after_crash(quick).as_secs(), 2);
    }
}
