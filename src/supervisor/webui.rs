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

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Engine, Supervisor};
use crate::engine_api::{Client, Credentials};
use crate::engine_config::{self, WebUi};
use crate::error::{Error, Result};
use crate::keys::Key;
use crate::layout::Layout;
use crate::name::Name;
use crate::sync_state::{self, Judgement, SyncWord};

/// How long a started engine may take to answer on its interface before
/// init gives up on this mode and restarts it in config-file mode.
pub const API_BOUND: Duration = Duration::from_secs(15);
/// How often the interface is tried while it does not answer yet.
pub const API_RETRY: Duration = Duration::from_millis(100);
/// The sync state is read at most this often, whoever asks.
pub const STATE_POLL: Duration = Duration::from_secs(1);

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
}

impl Api {
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// When the interface should next be tried, while it does not answer.
    pub fn next_try(&self, now: Instant) -> Option<Instant> {
        (!self.ready).then_some(now + API_RETRY)
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
        let registry_folder = self
            .cluster
            .as_ref()
            .map(|c| (layout.cluster_registry_dir(), c.cluster().registry_key()));
        let Engine::Up(engine) = &mut self.engine else {
            return;
        };
        let Some(api) = &mut engine.api else {
            return;
        };
        if api.ready {
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
                let stamp = crate::registry::now();
                for (ns, key) in &engine.folders {
                    match give(&mut api.client, &layout.folder(ns), key) {
                        Ok(()) => {
                            api.since.insert(ns.clone(), stamp);
                        }
                        Err(e) => log!("{ns}: the engine did not take it: {e}"),
                    }
                }
                if let Some((dir, key)) = registry_folder
                    && let Err(e) = give(&mut api.client, &dir, &key)
                {
                    log!("the cluster registry: the engine did not take it: {e}");
                }
                engine.given_folders = Some(now);
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

    /// Apply a change over the interface: remove what the target lacks,
    /// add what it has new. `Err` says why it could not (then: restart).
    pub(super) fn change_over_api(
        &mut self,
        releasing: &BTreeMap<Name, Key>,
        adding: &BTreeMap<Name, Key>,
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
        }
        let stamp = crate::registry::now();
        for (ns, key) in adding {
            give(&mut api.client, &layout.folder(ns), key)
                .map_err(|e| format!("cannot add {ns}: {e}"))?;
            api.since.insert(ns.clone(), stamp);
        }
        Ok(())
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
        if api
            .polled
            .is_none_or(|at| now.duration_since(at) >= STATE_POLL)
        {
            api.polled = Some(now);
            match api.client.folders() {
                Ok(folders) => {
                    let mut states = BTreeMap::new();
                    for (ns, since) in &api.since {
                        let path = layout.folder(ns);
                        if let Some(folder) = folders.iter().find(|f| f.path == path) {
                            states.insert(ns.clone(), sync_state::judge(folder, *since));
                        }
                    }
                    api.states = states;
                }
                Err(e) => {
                    log!("cannot read the sync state from the engine: {e}");
                    api.states.clear();
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
