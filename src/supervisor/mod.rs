//! init: run the engine as a correct PID 1 and keep it in step with the
//! registry.
//!
//! One thread (this loop) owns all state and does all reaping. The other
//! threads never touch that state:
//!
//! - the signal thread and the control socket's accept thread (plus one
//!   thread per client, bounded) turn signals and requests into events;
//! - with `BTSYNC_VOLUME_PLUGIN`, the plugin's accept thread and one thread
//!   per Docker request (bounded); they act as the applets do, through the
//!   control socket, and may run `btsync --get-ro-secret` for a D key;
//! - short-lived workers delete or trash a released namespace's files and
//!   sweep the cluster trash, beside the loop.
//!
//! A thread that starts a child process and waits for it itself starts it
//! as a `sys::OwnedChild`: the reaper below hands such a child's status to
//! its owner instead of reaping it as an orphan.
//!
//! - signals: handlers are installed before the engine is spawned. TERM and
//!   INT stop the engine (forward, wait `BTSYNC_STOP_GRACE`, KILL) and init
//!   exits with its status; HUP QUIT USR1 USR2 ALRM WINCH CONT are forwarded
//!   as they are; TTIN TTOU TSTP are swallowed so init never stops; CHLD
//!   wakes the reaper.
//! - reaping: `waitpid(-1, WNOHANG)` until nothing is left, recognising the
//!   engine's pid inside that loop; an owned child's status is kept for its
//!   owner; every other child is an orphan that was re-parented to us and is
//!   simply reaped.
//! - crashes: an unexpected exit restarts the engine after an exponential
//!   backoff that resets once the engine has run for a healthy period. The
//!   backoff only guards against a broken engine: a registry change while
//!   it waits starts the engine at once and resets the delay.
//! - idle: with nothing to sync (no namespace and no cluster registry) no
//!   engine runs; the first change starts one at once, and when the last
//!   namespace goes the engine is stopped (files leave only after that).
//!
//! This file is that loop and the engine's life cycle. The rest, one
//! subject per file:
//!
//! - `apply`: `add`/`del` requests and cluster changes become pending
//!   changes, coalesced over a quiet period and applied by a reload (HUP,
//!   `BTSYNC_APPLY=reload`, the default) or a restart; clients wait for
//!   proof, and a removed namespace's files go once the engine let go.
//! - `reload`: what proves a reload through, read from `/proc/ENGINE/fd`.
//! - `cluster_sync`: the cluster registry folder turned into local
//!   registry changes ("these namespaces changed"), and the trash sweep.
//! - `status`: the reply to `status`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use signal_hook::consts::signal::*;
use signal_hook::iterator::Signals;

use crate::cluster::Cluster;
use crate::control::{self, Request};
use crate::engine_config;
use crate::engine_info::{self, EngineInfo};
use crate::error::{Error, Result};
use crate::keys::Key;
use crate::layout::Layout;
use crate::name::Name;
use crate::registry::Registry;
use crate::settings::{EngineApi, Settings};
use crate::sys::{self, ExitStatus, Pid};

/// One line on stderr per event: `docker logs` is the user's view of init.
/// A closed stderr must not bring PID 1 down, so failures are ignored.
fn log(message: std::fmt::Arguments) {
    let _ = writeln!(io::stderr().lock(), "init: {message}");
}

macro_rules! log {
    ($($arg:tt)*) => { $crate::supervisor::log(format_args!($($arg)*)) };
}

mod apply;
mod cluster_sync;
mod keeping;
mod reload;
mod status;
mod webui;

use apply::{PendingRestart, Waiter};
use cluster_sync::{ClusterSync, TrashSweeper};
use reload::Reload;

/// Signals passed on to the engine unchanged.
const FORWARDED: &[i32] = &[
    SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH, SIGCONT,
];
/// Signals that must not stop or kill init; handled by doing nothing.
const SWALLOWED: &[i32] = &[SIGTTIN, SIGTTOU, SIGTSTP];

/// First delay after a crash; doubles per crash up to BACKOFF_MAX.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An engine that ran this long was healthy: its next crash starts over at BACKOFF_FIRST.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Wake up at least this often, in case a SIGCHLD was somehow missed.
const IDLE_WAKEUP: Duration = Duration::from_secs(5);

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
    /// What its config lists (after a proven reload: what it loaded).
    folders: BTreeMap<Name, Key>,
    /// Listed, but an `add` waited for proof that the engine serves it in
    /// vain (another namespace with its key, say): not shown as served.
    unserved: BTreeSet<Name>,
    /// WebUI mode: the engine's interface.
    api: Option<webui::Api>,
    /// When the engine was given its folders: at its start in config-file
    /// mode, once its interface answered in WebUI mode (`None` until then).
    /// The proof that it serves them is due a bound after this.
    given_folders: Option<Instant>,
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
    cluster: Option<ClusterSync>,
    /// A member folder appeared that the engine does not sync yet.
    members_to_take_up: bool,
    trash: TrashSweeper,
    /// Until the first start: a registry change waits for that start.
    booting: bool,
    /// What `BTSYNC_BIN --help` says the engine is, read at init's start.
    engine_info: std::result::Result<EngineInfo, String>,
    /// WebUI mode was asked for, but an engine did not answer on its
    /// interface: config-file mode for the rest of init's life.
    api_failed: bool,
    /// Gives what the engine writes to each namespace's owner.
    keeping: keeping::Keeping,
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

/// Say once which engine runs, and whether syncbox's tests prove it.
fn log_engine_info(info: &std::result::Result<EngineInfo, String>, bin: &Path) {
    match info {
        Ok(info) if info.proven() => {
            log!("engine: {} ({})", info.describe(), bin.display());
        }
        Ok(info) => log!(
            "engine: {} ({}): not a version syncbox's tests run ({}); see docs/image.md \
             for what to check first",
            info.describe(),
            bin.display(),
            proven_versions()
        ),
        Err(why) => log!(
            "engine: {}: name and version unknown ({why}); syncbox's tests run {}",
            bin.display(),
            proven_versions()
        ),
    }
}

fn proven_versions() -> String {
    let versions: Vec<String> = engine_info::PROVEN
        .iter()
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    versions.join(", ")
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
    // The engine inherits it: nothing it writes is readable by group or
    // others; a namespace that allows more gets it from the keeper.
    sys::set_umask(crate::file_rule::DEFAULT_UMASK);

    layout.check_data_root()?;
    if let Some(unchecked) = crate::host_mount::check(&layout)? {
        log!("{unchecked}");
    }
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
    let _plugin = crate::volume_plugin::serve(plugin.as_ref(), &layout, settings.volume_wait)?;

    let work_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let now = Instant::now();
    let trash = TrashSweeper::new(&layout, settings.trash_kept, now);
    let cluster = cluster.map(|cluster| {
        ClusterSync::new(
            cluster,
            layout.clone(),
            now,
            settings.cluster_purge,
            settings.trash_limit,
            settings.cluster_pace,
        )
    });
    let keeping = keeping::Keeping::start(settings.owner);
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
        cluster,
        members_to_take_up: false,
        trash,
        booting: true,
        engine_info: Err("not asked yet".to_owned()),
        api_failed: false,
        keeping,
    };
    if subreaper {
        log!(
            "running as pid {} (not PID 1): registered as child subreaper",
            std::process::id()
        );
    }
    supervisor.trash.sweep(now);
    supervisor.start_cluster_mode(now)?;
    // An idle init would only find out at the first `add`: check now.
    if let Err(failure) = check_engine_bin(&supervisor.settings.engine_bin) {
        log!("{}", failure.message);
        return Ok(failure.code);
    }
    supervisor.engine_info = engine_info::identify(&supervisor.settings.engine_bin);
    log_engine_info(&supervisor.engine_info, &supervisor.settings.engine_bin);
    if let Err(failure) = supervisor.start_engine() {
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
        let apply = self.next_apply();
        let now = Instant::now();
        let api = match &self.engine {
            Engine::Up(engine) => engine
                .api
                .as_ref()
                .and_then(|a| a.next_try(now).into_iter().chain(a.next_look(now)).min()),
            _ => None,
        };
        let apply = apply.into_iter().chain(api).min();
        let poll = self
            .cluster
            .as_ref()
            .filter(|_| !self.stopping_for_good())
            .map(ClusterSync::next_poll);
        engine
            .into_iter()
            .chain(apply)
            .chain(poll)
            .chain(Some(self.trash.next_sweep()))
            .min()
    }

    fn on_timers(&mut self, now: Instant) {
        self.drive_api(now);
        self.unstick_folders(now);
        self.poll_cluster(now);
        self.trash.sweep(now);
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
        self.apply_due_changes(now);
        if let Engine::Down { retry_at } = self.engine
            && now >= retry_at
            && let Err(failure) = self.start_engine()
        {
            log!("{}", failure.message);
            self.crashed_start(now);
        }
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
        if let Engine::Up(engine) = &previous
            && engine.api.as_ref().is_some_and(|api| !api.is_ready())
            && !self.api_failed
        {
            log!(
                "engine (pid {}) exited before it answered on its interface: config-file mode \
                 from now on, every sync state unknown",
                engine.pid
            );
            self.api_failed = true;
        }
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
        self.keep_folders(&entries);
        let cluster = self.cluster.as_ref().map(ClusterSync::cluster);
        if entries.is_empty() && cluster.is_none() {
            // btsync refuses an empty config (exit 1): run nothing.
            log!("nothing to sync (no namespace): no engine runs until one is added");
            self.backoff = Backoff::default();
            self.engine = Engine::Idle { generation };
            return Ok(());
        }
        let cannot_start = |e: Error| StartFailure {
            code: 1,
            message: format!("cannot start the engine: {e}"),
        };
        let (webui, api) = if self.settings.engine_api == EngineApi::WebUi && !self.api_failed {
            let (webui, api) = webui::prepare_start(&layout).map_err(cannot_start)?;
            (Some(webui), Some(api))
        } else {
            (None, None)
        };
        let config =
            engine_config::prepare(&self.settings, &layout, &entries, cluster, webui.as_ref())
                .map_err(cannot_start)?;
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
        let started = Instant::now();
        let given_folders = api.is_none().then_some(started);
        self.engine = Engine::Up(Running {
            pid,
            started,
            generation,
            folders,
            unserved: BTreeSet::new(),
            api,
            given_folders,
        });
        Ok(())
    }

    fn stopping_for_good(&self) -> bool {
        matches!(
            self.engine,
            Engine::Stopping {
                then: AfterStop::Exit,
                ..
            }
        )
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
