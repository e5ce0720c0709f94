//! `BTSYNC_ENGINE_API=webui`: the engine runs without folders in its config
//! and with its WebUI JSON interface on a loopback port; init gives it the
//! registry's folders over that interface once it answers, applies changes
//! the same way (proven from `/proc` like a reload), and reads each
//! folder's sync state from it, at most once a second.
//!
//! Before each start the engine's `sync.dat` goes: in this mode 1.4.111
//! serves every folder it remembers, with no config to drop the ones
//! removed while init was down (their files may be gone). Each folder's
//! database stays and is taken up again; the engine gets a new PeerID.
//!
//! A folder whose first exchange does not start (every online peer still
//! listed under its address, [`sync_state::peers_unnamed`]) and that holds
//! no file yet ([`sync_state::holds_nothing`]) is taken up again: removed
//! and given again over the interface, which makes the engine find its
//! peers anew. 1.4.111 otherwise never retries in about 1
//! run in 50 of two nodes started together. So that this happens without
//! anyone asking for a state, the folders are looked at once a second
//! while one is young or waits to be taken up again; at rest, never.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Engine, Supervisor};
use crate::cluster::Cluster;
use crate::engine_api::{Client, Credentials, FolderState};
use crate::engine_config::{self, WebUi};
use crate::error::{Error, Result};
use crate::keys::Key;
use crate::layout::Layout;
use crate::name::Name;
use crate::sync_state::{self, Judgement, SyncWord, UNSTICK_MAX, Unstick};

/// How long a started engine may take to answer on its interface before
/// init gives up on this mode and restarts it in config-file mode.
pub const API_BOUND: Duration = Duration::from_secs(15);
/// How often the interface is tried while it does not answer yet.
pub const API_RETRY: Duration = Duration::from_millis(100);
/// At most this long of each loop turn goes to giving the engine folders.
pub const GIVE_TURN: Duration = Duration::from_millis(200);
/// The sync state is read at most this often, whoever asks.
pub const STATE_POLL: Duration = Duration::from_secs(1);
/// A folder given (or taken up again) less than this ago is young: init
/// looks at it every [`STATE_POLL`] on its own, to see whether its first
/// exchange started. Seen with 1.4.111: the peer is listed about 1 s after
/// the add, named at once or after ~34 s, or never.
pub const YOUNG: Duration = Duration::from_secs(120);

/// The engine's interface, as this engine run knows it.
pub struct Api {
    client: Client,
    ready: bool,
    deadline: Instant,
    /// When each namespace was given to this engine (unix seconds): the
    /// sync rule's "since".
    since: BTreeMap<Name, u64>,
    states: BTreeMap<Name, Judgement>,
    polled: Option<Instant>,
    /// The last read failed (logged once until one succeeds: init reads
    /// every second on its own while a folder is young).
    read_failed: bool,
    /// Every folder given over the interface, by path: watched for a first
    /// exchange that does not start.
    given: BTreeMap<PathBuf, Given>,
    /// A namespace was given after the states were last read: the next
    /// question reads them again rather than answer "unknown" for it.
    given_since_poll: bool,
    /// Once the interface answered: the folders still to give the engine
    /// (the cluster registry first), a few per loop turn.
    to_give: VecDeque<(PathBuf, Option<Name>, Key)>,
}

/// A folder the engine was given, as the watch for a first exchange that
/// does not start needs it.
struct Given {
    /// For the log and the guards: its namespace (`None`: the cluster
    /// registry, which no change removes while the engine runs).
    ns: Option<Name>,
    key: Key,
    /// When it was given or last taken up again.
    at: Instant,
    unstick: Unstick,
}

impl Given {
    fn new(ns: Option<Name>, key: &Key, at: Instant) -> Given {
        Given {
            ns,
            key: key.clone(),
            at,
            unstick: Unstick::new(sync_state::random_wait()),
        }
    }

    fn label(&self, path: &Path) -> String {
        folder_label(self.ns.as_ref(), path)
    }
}

/// A folder as the log names it: its namespace, or the path of a cluster
/// folder (registry, member folder).
fn folder_label(ns: Option<&Name>, path: &Path) -> String {
    ns.map_or_else(|| path.display().to_string(), Name::to_string)
}

impl Api {
    /// Queue a folder that is not a namespace (the cluster's) to be given,
    /// unless it is given or queued already. `true`: queued now.
    pub fn give_internal(&mut self, dir: PathBuf, key: Key) -> bool {
        let queued = self.to_give.iter().any(|(path, _, _)| *path == dir);
        if queued || self.given.contains_key(&dir) {
            return false;
        }
        self.to_give.push_back((dir, None, key));
        true
    }

    /// The interface answered and the engine was given every folder.
    pub fn is_ready(&self) -> bool {
        self.ready && self.to_give.is_empty()
    }

    /// When the interface should next be tried, while it does not answer,
    /// or folders given, while some are left.
    pub fn next_try(&self, now: Instant) -> Option<Instant> {
        if !self.ready {
            Some(now + API_RETRY)
        } else {
            (!self.to_give.is_empty()).then_some(now)
        }
    }

    /// When the folders should next be looked at although nobody asks:
    /// while one is young or its clock runs, and may still be taken up
    /// again. `None` otherwise, so an init at rest sets no timer for it.
    pub fn next_look(&self, now: Instant) -> Option<Instant> {
        let watching = self.ready
            && self.given.values().any(|g| {
                g.unstick.left() && (g.unstick.waiting() || now.duration_since(g.at) < YOUNG)
            });
        watching.then(|| self.polled.map_or(now, |at| at + STATE_POLL))
    }
}

/// A free port on loopback for the interface (taken by the engine a
/// moment later).
fn free_loopback_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| Error::io("cannot find a free loopback port for the engine", e))
}

/// `$BTSYNC_DATA/.btsync/webui.json`: this node's interface credentials
/// (0600, init's; the engine gets them through its config only).
pub fn credentials_path(layout: &Layout) -> std::path::PathBuf {
    layout.state_dir().join("webui.json")
}

/// Everything a start in WebUI mode needs before the engine runs: the
/// credentials, a port, and no remembered folder list.
pub fn prepare_start(layout: &Layout) -> Result<(WebUi, Api)> {
    let credentials = Credentials::load_or_create(&credentials_path(layout))?;
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_loopback_port()?));
    let storage = engine_config::storage_path(layout);
    for name in ["sync.dat", "sync.dat.old"] {
        match std::fs::remove_file(storage.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    format!("cannot remove {}", storage.join(name).display()),
                    e,
                ));
            }
        }
    }
    let api = Api {
        client: Client::new(listen, credentials.clone()),
        ready: false,
        deadline: Instant::now() + API_BOUND,
        since: BTreeMap::new(),
        states: BTreeMap::new(),
        polled: None,
        read_failed: false,
        given: BTreeMap::new(),
        given_since_poll: false,
        to_give: VecDeque::new(),
    };
    Ok((
        WebUi {
            listen,
            credentials,
        },
        api,
    ))
}

impl Supervisor {
    /// While the engine's interface does not answer yet: try it; once it
    /// does, give the engine every folder. No answer in time: this mode is
    /// given up for good, and the engine restarted with a config file.
    pub(super) fn drive_api(&mut self, now: Instant) {
        let layout = self.registry.layout().clone();
        let Engine::Up(engine) = &mut self.engine else {
            return;
        };
        let Some(api) = &mut engine.api else {
            return;
        };
        if api.ready {
            // Giving the folders, for at most GIVE_TURN per loop turn: the
            // loop stays free to answer `status`, `health` and `add`.
            let turn_ends = now + GIVE_TURN;
            let stamp = crate::registry::now();
            while Instant::now() < turn_ends
                && let Some((path, ns, key)) = api.to_give.pop_front()
            {
                let label = folder_label(ns.as_ref(), &path);
                match give(&mut api.client, &path, &key) {
                    Ok(()) => {
                        if let Some(ns) = &ns {
                            api.since.insert(ns.clone(), stamp);
                            api.given_since_poll = true;
                        }
                        api.given.insert(path, Given::new(ns, &key, Instant::now()));
                    }
                    Err(e) => log!("{label}: the engine did not take it: {e}"),
                }
            }
            if api.to_give.is_empty() && engine.given_folders.is_none() {
                engine.given_folders = Some(Instant::now());
            }
            return;
        }
        match api.client.version() {
            Ok(version) => {
                api.ready = true;
                log!(
                    "engine (pid {}) answers on its interface (version {version:#x}): giving it {} folder{}",
                    engine.pid,
                    engine.folders.len(),
                    if engine.folders.len() == 1 { "" } else { "s" }
                );
                // The cluster's own folders first; one queued already (a
                // member seen since the start) is not queued twice.
                let cluster = self.cluster.as_ref().map(|c| c.cluster());
                for (dir, key) in cluster.map(Cluster::engine_folders).unwrap_or_default() {
                    api.give_internal(dir, key);
                }
                api.to_give.extend(
                    engine
                        .folders
                        .iter()
                        .map(|(ns, key)| (layout.folder(ns), Some(ns.clone()), key.clone())),
                );
            }
            Err(_) if now < api.deadline => {}
            Err(e) => {
                log!(
                    "engine (pid {}) did not answer on its interface within {}s ({e}): \
                     config-file mode from now on, every sync state unknown",
                    engine.pid,
                    API_BOUND.as_secs()
                );
                self.api_failed = true;
                self.begin_restart(now, &Default::default());
            }
        }
    }

    /// Remove folders over the interface. `Err` says why it could not
    /// (then: restart).
    pub(super) fn release_over_api(
        &mut self,
        releasing: &BTreeMap<Name, Key>,
    ) -> std::result::Result<(), String> {
        let layout = self.registry.layout().clone();
        let Engine::Up(engine) = &mut self.engine else {
            return Err("the engine is not running".to_owned());
        };
        let Some(api) = &mut engine.api else {
            return Err("the engine has no interface".to_owned());
        };
        for (ns, key) in releasing {
            api.client
                .remove_folder(key)
                .map_err(|e| format!("cannot remove {ns}: {e}"))?;
            api.since.remove(ns);
            api.states.remove(ns);
            api.given.remove(&layout.folder(ns));
        }
        Ok(())
    }

    /// Give the engine folders the reload in flight still has to give, for
    /// at most `GIVE_TURN`: 1.4.111 takes about 45 ms per folder, and the
    /// loop must stay free to answer `status`, `health` and `add`. Once
    /// all are given, the reload's proof is due a bound from now. `Err`
    /// says why a folder could not be given (then: restart).
    pub(super) fn give_some(&mut self, now: Instant) -> std::result::Result<(), String> {
        let layout = self.registry.layout().clone();
        let (Engine::Up(engine), Some(reload)) = (&mut self.engine, &mut self.reload) else {
            return Ok(());
        };
        let Some(api) = &mut engine.api else {
            return Err("the engine has no interface".to_owned());
        };
        let stamp = crate::registry::now();
        let turn_ends = now + GIVE_TURN;
        while let Some((ns, key)) = reload.to_give.front() {
            let path = layout.folder(ns);
            give(&mut api.client, &path, key).map_err(|e| format!("cannot add {ns}: {e}"))?;
            api.since.insert(ns.clone(), stamp);
            api.given_since_poll = true;
            api.given
                .insert(path, Given::new(Some(ns.clone()), key, Instant::now()));
            reload.to_give.pop_front();
            if Instant::now() >= turn_ends {
                break;
            }
        }
        if reload.to_give.is_empty() {
            let (taking_up, _) = reload.proof.counts();
            let now = Instant::now();
            reload.deadline = now + super::reload::reload_bound(taking_up, reload.folders.len());
            reload.next_look = now;
        }
        Ok(())
    }

    /// Look at the folders when [`Api::next_look`] says so, and take up
    /// again every folder whose peers stayed unnamed too long.
    pub(super) fn unstick_folders(&mut self, now: Instant) {
        let look = match &self.engine {
            Engine::Up(engine) => engine
                .api
                .as_ref()
                .and_then(|api| api.next_look(now))
                .is_some_and(|at| at <= now),
            _ => false,
        };
        if look {
            self.sync_states(now);
        }
        let due: Vec<(PathBuf, Option<Name>)> = match &self.engine {
            Engine::Up(engine) => engine
                .api
                .iter()
                .filter(|api| api.ready)
                .flat_map(|api| &api.given)
                .filter(|(_, g)| g.unstick.due(now))
                // Still what this engine should serve, as given.
                .filter(|(_, g)| {
                    g.ns.as_ref()
                        .is_none_or(|ns| engine.folders.get(ns) == Some(&g.key))
                })
                .map(|(path, g)| (path.clone(), g.ns.clone()))
                .collect(),
            _ => return,
        };
        let mut failed = false;
        for (path, ns) in due {
            // Asked again for each folder: a failure below may have
            // started a restart.
            if !self.may_retake(ns.as_ref()) || failed {
                continue;
            }
            failed = !self.retake(&path, now);
        }
    }

    /// Remove the folder at `path` and give it again. `removefolder` drops
    /// the folder's `.sync/ID` and database, which costs nothing here: only
    /// a folder holding nothing but `.sync` is taken up again. `since`
    /// stays when it was first given, see below. `false`: it could not be given again, the engine restarts
    /// (and gets every folder again).
    fn retake(&mut self, path: &Path, now: Instant) -> bool {
        let Engine::Up(engine) = &mut self.engine else {
            return true;
        };
        let Some(api) = &mut engine.api else {
            return true;
        };
        let Some(given) = api.given.get_mut(path) else {
            return true;
        };
        let label = given.label(path);
        let n = given.unstick.taken_up_again(sync_state::random_wait());
        given.at = now;
        log!(
            "{label}: the engine's first exchange with its peer did not start: taking the \
             folder up again ({n} of {UNSTICK_MAX})"
        );
        // Given again whatever the removal answered: a folder the engine
        // no longer had is given, one it kept is "already added".
        let _ = api.client.remove_folder(&given.key);
        let key = given.key.clone();
        // `since` (the sync rule's) is not moved: a first exchange had not
        // begun, every online peer being unnamed, and the files are the
        // ones that were there when the folder was first given. An
        // exchange after that first give speaks for them, even one with a
        // peer offline now; moving `since` would only make `synced` later.
        // The proof that the engine serves its folders is due a bound
        // after this give, as after the first one: an `add` of a folder
        // served already must not catch it between removal and give.
        engine.given_folders = Some(Instant::now());
        match give(&mut api.client, path, &key) {
            Ok(()) => true,
            Err(e) => {
                log!("{label}: the engine did not take it again ({e}): restarting it");
                self.begin_restart(now, &Default::default());
                false
            }
        }
    }

    /// Each namespace's sync state, read from the engine at most once a
    /// second. `None` (every state unknown): not in WebUI mode, or the
    /// interface does not answer.
    pub(super) fn sync_states(&mut self, now: Instant) -> Option<&BTreeMap<Name, Judgement>> {
        let layout = self.registry.layout().clone();
        let Engine::Up(engine) = &mut self.engine else {
            return None;
        };
        let api = engine.api.as_mut().filter(|api| api.ready)?;
        if api.given_since_poll
            || api
                .polled
                .is_none_or(|at| now.duration_since(at) >= STATE_POLL)
        {
            api.polled = Some(now);
            api.given_since_poll = false;
            match api.client.folders() {
                Ok(folders) => {
                    api.read_failed = false;
                    // Indexed: thousands of folders, looked up twice
                    // each, every second while any is young. By the bytes
                    // of the path as `Path` compares it (the engine may
                    // add a trailing slash).
                    let mut by_path: BTreeMap<OsString, &FolderState> = BTreeMap::new();
                    by_path.extend(folders.iter().map(|f| (path_key(&f.path), f)));
                    let mut states = BTreeMap::new();
                    for (ns, since) in &api.since {
                        let path = layout.folder(ns);
                        if let Some(folder) = by_path.get(&path_key(&path)) {
                            states.insert(ns.clone(), sync_state::judge(folder, *since));
                        }
                    }
                    api.states = states;
                    for (path, given) in &mut api.given {
                        let unnamed = by_path
                            .get(&path_key(path))
                            .filter(|f| f.key == given.key)
                            .is_some_and(|f| sync_state::peers_unnamed(f));
                        // Read from disk only while peers are unnamed,
                        // which is rare after the first seconds.
                        let stuck = unnamed && sync_state::holds_nothing(path);
                        given.unstick.look(stuck, now);
                    }
                }
                Err(e) => {
                    if !api.read_failed {
                        log!("cannot read the sync state from the engine: {e}");
                    }
                    api.read_failed = true;
                    api.states.clear();
                    // Nothing is taken up again on what was not seen.
                    for given in api.given.values_mut() {
                        given.unstick.look(false, now);
                    }
                }
            }
        }
        Some(&api.states)
    }

    /// The reply to `sync`: every registered namespace's state.
    pub(super) fn sync_json(&mut self, now: Instant) -> Value {
        let names = self.registry.names().unwrap_or_default();
        let mode = self.engine_api_mode();
        let states = self.sync_states(now).cloned().unwrap_or_default();
        let mut namespaces = serde_json::Map::new();
        for ns in names.iter().take(SYNC_REPLY_MAX) {
            namespaces.insert(ns.to_string(), judgement_json(states.get(ns)));
        }
        json!({
            "mode": mode,
            "namespaces": namespaces,
            "count": names.len(),
        })
    }

    /// "webui" or "config": how this engine gets its folders.
    pub(super) fn engine_api_mode(&self) -> &'static str {
        match &self.engine {
            Engine::Up(engine) | Engine::Stopping { engine, .. } if engine.api.is_some() => "webui",
            _ if self.settings.engine_api == crate::settings::EngineApi::WebUi
                && !self.api_failed =>
            {
                "webui"
            }
            _ => "config",
        }
    }
}

/// `path` as bytes that are equal where the paths are (`a/b/` and `a//b`
/// are `a/b`), for an index that compares bytes.
fn path_key(path: &Path) -> OsString {
    path.components().collect::<PathBuf>().into_os_string()
}

/// At most this many namespaces in a `sync` reply (names are at most 64
/// bytes, a state about 150: far below the protocol's 1 MiB).
const SYNC_REPLY_MAX: usize = 2000;

fn give(client: &mut Client, folder: &Path, key: &Key) -> std::result::Result<(), String> {
    match client.add_folder(folder, key) {
        Ok(()) => Ok(()),
        // Given already (a retry after a failed step): as good as done.
        Err(crate::engine_api::ApiError::FolderAlreadyAdded { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// One namespace's state as JSON (`unknown` with nothing known when the
/// engine gave no state).
pub fn judgement_json(judgement: Option<&Judgement>) -> Value {
    let Some(j) = judgement else {
        return json!({
            "state": SyncWord::Unknown.as_str(),
            "peers_online": null,
            "peers_known": null,
            "files_left": null,
            "bytes_left": null,
            "last_sync": null,
        });
    };
    // Before a first exchange the engine says "nothing left": a figure is
    // shown only while it counts what is left.
    let left = |figure: Option<u64>| {
        if j.word == SyncWord::Syncing {
            figure
        } else {
            None
        }
    };
    json!({
        "state": j.word.as_str(),
        "peers_online": j.peers_online,
        "peers_known": j.peers_known,
        "files_left": left(j.files_left),
        "bytes_left": left(j.bytes_left),
        "last_sync": j.last_sync,
    })
}
