//! Docker's volume plugin protocol, served by init on a unix socket
//! (`BTSYNC_VOLUME_PLUGIN=/run/docker/plugins/NAME.sock`: the driver is
//! NAME). Docker finds the socket there by itself; `docker volume create -d
//! NAME`, `docker run -v VOL:/path --volume-driver NAME` and compose volumes
//! with `driver: NAME` then get synced folders.
//!
//! Every volume is a namespace. Create is `add` and Remove is `del`: they
//! call the same workflows as the applets (`ops::add`, `ops::del`), so the
//! rules and the messages are the same, and they reach the supervisor the
//! same way the applets do, through the control socket. Mount and Path
//! answer `$BTSYNC_HOST_PATH/NS`; Mount first waits, like `add`, until the
//! engine syncs the namespace, and then, when the volume has a wait
//! (`-o wait=SECONDS`, or `BTSYNC_VOLUME_WAIT`), until its data is here as
//! the `wait` applet judges it (`waiting::until_synced`). Mounts are
//! counted per mount ID in `.btsync/volume-mounts.json` (written
//! atomically) so that Remove of a mounted volume is refused, also after
//! init restarted. Each volume's wait is kept in
//! `.btsync/volume-options.json`: the number only, never a key.
//!
//! HTTP: `http`, a deliberately small server with every size, wait and
//! client count bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::control::{self, Waiting};
use crate::error::{Error, Result};
use crate::file_rule::{self, RuleChange};
use crate::fsutil::write_atomic;
use crate::keys::{self, Key};
use crate::layout::{HOST_PATH_VAR, Layout};
use crate::name::Name;
use crate::ops::{self, AddRequest, DelRequest};
use crate::registry::{Entry, Registry};
use crate::settings::parse_volume_wait;
use crate::user_db;
use crate::waiting::{self, Waited};

pub const PLUGIN_VAR: &str = "BTSYNC_VOLUME_PLUGIN";

/// Mount IDs Docker uses are 64 hex digits; leave room, refuse abuse.
const MAX_MOUNT_ID: usize = 128;
/// Mounts remembered across every volume, so the state file stays small.
const MAX_MOUNTS: usize = 4096;
const MOUNTS_FILE: &str = "volume-mounts.json";
/// Each volume's `wait` option, with the registration it was given for.
const OPTIONS_FILE: &str = "volume-options.json";

mod http;

fn log(message: std::fmt::Arguments) {
    let _ = writeln!(io::stderr().lock(), "init: volume plugin: {message}");
}

macro_rules! log {
    ($($arg:tt)*) => { log(format_args!($($arg)*)) };
}

/// Where to serve, from `BTSYNC_VOLUME_PLUGIN`.
#[derive(Debug, Clone)]
pub struct Settings {
    socket: PathBuf,
}

impl Settings {
    /// `None` when the variable is unset or empty. Bad input (exit 2): a
    /// relative path, a name Docker does not look for, or no host path.
    pub fn from_env(layout: &Layout) -> Result<Option<Settings>> {
        let Some(value) = std::env::var_os(PLUGIN_VAR).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let socket = PathBuf::from(value);
        let problem = |problem: String| Error::Env {
            var: PLUGIN_VAR,
            problem,
        };
        if !socket.is_absolute() {
            return Err(problem(format!(
                "{} is not an absolute path (use /run/docker/plugins/NAME.sock)",
                socket.display()
            )));
        }
        if driver_name(&socket).is_none() {
            return Err(problem(format!(
                "{}: Docker only finds a plugin socket named NAME.sock (NAME is the driver), \
                 e.g. /run/docker/plugins/syncbox.sock",
                socket.display()
            )));
        }
        if layout.host_folder(&Name::parse("x")?).is_none() {
            return Err(problem(format!(
                "needs {HOST_PATH_VAR} too: Docker mounts a volume from the path the plugin \
                 returns, which must be a path on the host (start the container with \
                 -e {HOST_PATH_VAR}=/host/dir/mounted/at/data)"
            )));
        }
        Ok(Some(Settings { socket }))
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// The driver name Docker derives from the socket: the file name less `.sock`.
pub fn driver_name(socket: &Path) -> Option<&str> {
    let name = socket.file_name()?.to_str()?.strip_suffix(".sock")?;
    (!name.is_empty() && !name.starts_with('.')).then_some(name)
}

/// The socket being served; removed when init stops cleanly, so that a
/// dockerd that has not used the driver yet finds no plugin instead of a
/// dead one. A SIGKILL leaves it behind, and `bind` in the next init
/// replaces it.
pub struct Serving {
    socket: PathBuf,
    inode: (u64, u64),
}

impl Drop for Serving {
    fn drop(&mut self) {
        // Only our own: another init may have replaced it meanwhile.
        if let Ok(meta) = fs::symlink_metadata(&self.socket)
            && (meta.dev(), meta.ino()) == self.inode
        {
            let _ = fs::remove_file(&self.socket);
        }
    }
}

/// Serve the plugin when `BTSYNC_VOLUME_PLUGIN` asked for it; init keeps
/// the result for its lifetime. `default_wait` is `BTSYNC_VOLUME_WAIT`.
pub fn serve(
    settings: Option<&Settings>,
    layout: &Layout,
    default_wait: Duration,
) -> Result<Option<Serving>> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    start(
        settings,
        layout.clone(),
        Waiting::from_env(false)?,
        default_wait,
    )
    .map(Some)
}

/// Bind the socket and serve it on threads of its own. `waiting` is how
/// long Create, Mount and Remove wait for the engine, as `add` and `del`
/// do; `default_wait` how long a Mount waits for the data of a volume
/// created without `-o wait`.
pub fn start(
    settings: &Settings,
    layout: Layout,
    waiting: Waiting,
    default_wait: Duration,
) -> Result<Serving> {
    let driver = Arc::new(Driver::new(layout, waiting, default_wait)?);
    let (listener, serving) = bind(&settings.socket)?;
    log!(
        "serving driver {:?} on {}",
        driver_name(&settings.socket).unwrap_or_default(),
        settings.socket.display()
    );
    std::thread::spawn(move || http::serve(listener, move |path, body| driver.answer(path, body)));
    Ok(serving)
}

/// Bind at a temporary name, set the mode, rename over the final name: a
/// client never sees the socket with the wrong mode, and a socket a killed
/// init left behind is replaced. A socket somebody still serves is not.
fn bind(socket: &Path) -> Result<(UnixListener, Serving)> {
    let dir = socket.parent().unwrap_or(Path::new("/"));
    let file_name = socket
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match fs::symlink_metadata(socket) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(Error::Supervisor(format!(
                "{PLUGIN_VAR}: {} exists and is not a socket; move it away first",
                socket.display()
            )));
        }
        Ok(_) => {
            if UnixStream::connect(socket).is_ok() {
                return Err(Error::Supervisor(format!(
                    "{PLUGIN_VAR}: another process already serves {} (another syncbox \
                     with the same driver name?); pick another NAME.sock",
                    socket.display()
                )));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(format!("cannot inspect {}", socket.display()), e));
        }
    }
    if !dir.is_dir() {
        return Err(Error::Supervisor(format!(
            "{PLUGIN_VAR}: {} is not a directory; mount the host's /run/docker/plugins \
             (-v /run/docker/plugins:/run/docker/plugins)",
            dir.display()
        )));
    }
    // Not NAME.sock, so Docker never picks up the half-made socket.
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temp);
    let listener = UnixListener::bind(&temp)
        .map_err(|e| Error::io(format!("cannot listen on {}", temp.display()), e))?;
    let placed = fs::set_permissions(&temp, fs::Permissions::from_mode(0o600))
        .and_then(|()| fs::rename(&temp, socket))
        .and_then(|()| fs::symlink_metadata(socket));
    match placed {
        Ok(meta) => Ok((
            listener,
            Serving {
                socket: socket.to_owned(),
                inode: (meta.dev(), meta.ino()),
            },
        )),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(Error::io(format!("cannot create {}", socket.display()), e))
        }
    }
}

fn err_body(message: String) -> Value {
    json!({ "Err": message })
}

/// Mount IDs per namespace, and the namespaces a Remove is working on.
#[derive(Default)]
struct Mounts {
    ids: BTreeMap<String, BTreeSet<String>>,
    removing: BTreeSet<String>,
}

impl Mounts {
    fn count(&self, ns: &str) -> usize {
        self.ids.get(ns).map_or(0, BTreeSet::len)
    }

    fn total(&self) -> usize {
        self.ids.values().map(BTreeSet::len).sum()
    }
}

/// A volume's own wait (`-o wait=SECONDS`), for the registration of the
/// namespace it was given with: after a `del` and another `add` of the
/// same name (`added` differs) it no longer applies.
#[derive(Debug, Clone, Copy, PartialEq)]
struct VolumeWait {
    wait: Duration,
    added: u64,
}

/// The volume driver: answers each endpoint. Shared by the client threads.
pub struct Driver {
    layout: Layout,
    waiting: Waiting,
    /// `BTSYNC_VOLUME_WAIT`: for volumes without a wait of their own.
    default_wait: Duration,
    mounts: Mutex<Mounts>,
    /// Every write of `volume-options.json` happens under this lock.
    waits: Mutex<BTreeMap<String, VolumeWait>>,
}

impl Driver {
    /// Load the mount counts and waits an earlier init left. A damaged
    /// file is logged and not a reason to stop syncing: Docker itself refuses to remove a
    /// volume a container uses, these counts are a second guard.
    pub fn new(layout: Layout, waiting: Waiting, default_wait: Duration) -> Result<Driver> {
        let waits = load_waits(&layout)?;
        let path = mounts_path(&layout);
        let ids = match fs::read(&path) {
            Ok(bytes) => parse_mounts(&bytes).unwrap_or_else(|| {
                log!(
                    "{} is damaged (not the JSON object of mount IDs init writes); \
                     mount counts start from zero",
                    path.display()
                );
                BTreeMap::new()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        Ok(Driver {
            layout,
            waiting,
            default_wait,
            mounts: Mutex::new(Mounts {
                ids,
                removing: BTreeSet::new(),
            }),
            waits: Mutex::new(waits),
        })
    }

    fn waits(&self) -> MutexGuard<'_, BTreeMap<String, VolumeWait>> {
        // Every change is one insert or remove, as for the mounts.
        self.waits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `wait` (or, with `None`, forget any) as `name`'s own wait for
    /// the registration added at `added`; on disk first.
    fn set_wait(
        &self,
        name: &Name,
        wait: Option<Duration>,
        added: u64,
    ) -> std::result::Result<(), String> {
        let mut waits = self.waits();
        let mut changed = waits.clone();
        match wait {
            Some(wait) => {
                changed.insert(name.as_str().to_owned(), VolumeWait { wait, added });
            }
            None => {
                changed.remove(name.as_str());
            }
        }
        if changed == *waits {
            return Ok(());
        }
        let volumes: Map<String, Value> = changed
            .iter()
            .map(|(ns, own)| {
                let options = json!({ "wait": own.wait.as_secs_f64(), "added": own.added });
                (ns.clone(), options)
            })
            .collect();
        let text = json!({ "volumes": volumes }).to_string();
        write_atomic(&options_path(&self.layout), text.as_bytes(), 0o600)
            .map_err(|e| format!("cannot record the wait option: {e}"))?;
        *waits = changed;
        Ok(())
    }

    /// How long a Mount of `entry` waits for its data: its own wait when
    /// it was given for this registration, else `BTSYNC_VOLUME_WAIT`.
    fn wait_of(&self, entry: &Entry) -> Duration {
        match self.waits().get(entry.name.as_str()) {
            Some(own) if own.added == entry.added => own.wait,
            _ => self.default_wait,
        }
    }

    fn mounts(&self) -> MutexGuard<'_, Mounts> {
        // A panic elsewhere cannot leave the table half-changed: every
        // change is one insert or remove.
        self.mounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reply (HTTP status and JSON) to one request.
    pub fn answer(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let endpoint = match path {
            "/Plugin.Activate" => return (200, json!({ "Implements": ["VolumeDriver"] })),
            "/VolumeDriver.Capabilities" => {
                return (200, json!({ "Capabilities": { "Scope": "local" } }));
            }
            _ => match path.strip_prefix("/VolumeDriver.") {
                Some(
                    endpoint
                    @ ("Create" | "Remove" | "Mount" | "Unmount" | "Path" | "Get" | "List"),
                ) => endpoint,
                _ => {
                    let shown: String = path.chars().take(64).collect();
                    return (404, err_body(format!("unknown endpoint {shown:?}")));
                }
            },
        };
        let request = match parse_body(body) {
            Ok(request) => request,
            Err(message) => return (400, err_body(message)),
        };
        if endpoint == "List" {
            return (200, self.list());
        }
        let name = match request.get("Name") {
            Some(Value::String(name)) => name.as_str(),
            _ => return (400, err_body("the request has no Name".into())),
        };
        let id = request
            .get("ID")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reply = match endpoint {
            "Create" => self.create(name, request.get("Opts")).map(|()| json!({})),
            "Remove" => self.remove(name).map(|()| json!({})),
            "Mount" => self
                .mount(name, id)
                .map(|mountpoint| json!({ "Mountpoint": mountpoint })),
            "Unmount" => self.unmount(name, id).map(|()| json!({})),
            "Path" => self
                .path(name)
                .map(|mountpoint| json!({ "Mountpoint": mountpoint })),
            _ => self.get(name).map(|volume| json!({ "Volume": volume })),
        };
        // Docker's convention: status 200 and an "Err" that it prints.
        (
            200,
            match reply {
                Ok(mut value) => {
                    value["Err"] = json!("");
                    value
                }
                Err(message) => err_body(message),
            },
        )
    }

    fn create(&self, name: &str, opts: Option<&Value>) -> std::result::Result<(), String> {
        let name = Name::parse(name).map_err(|e| e.to_string())?;
        let options = parse_options(opts)?;
        let wait = options.wait;
        let request = AddRequest {
            name: name.clone(),
            key: match (&options.key, &options.key_file) {
                (Some(text), _) => Some(Key::parse(text).map_err(|e| e.to_string())?),
                (None, Some(path)) => Some(keys::read_key_file(path).map_err(|e| e.to_string())?),
                (None, None) => None,
            },
            read_only: options.read_only,
            cluster: options.cluster,
            local: false,
            waiting: self.waiting,
            rule: options.rule,
        };
        ops::add(self.layout.clone(), request).map_err(|e| {
            log!("create {name}: {e}");
            e.to_string()
        })?;
        // The registration the wait belongs to; Docker calls Create only
        // for a volume it does not know, so this sets what was asked.
        let recorded = match Registry::new(self.layout.clone()).get(&name) {
            Ok(Some(entry)) => self.set_wait(&name, wait, entry.added),
            Ok(None) => Err(Error::NotRegistered(name.to_string()).to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = recorded {
            log!("create {name}: registered, but {e}");
            return Err(format!(
                "{name} is registered, but {e}; mounts wait as BTSYNC_VOLUME_WAIT says \
                 (remove the volume and create it again to set its wait)"
            ));
        }
        match wait {
            Some(wait) => log!(
                "create {name}: registered, mounts wait up to {}s for its data",
                wait.as_secs_f64()
            ),
            None => log!("create {name}: registered"),
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> std::result::Result<(), String> {
        let name = Name::parse(name).map_err(|e| e.to_string())?;
        {
            let mut mounts = self.mounts();
            let count = mounts.count(name.as_str());
            if count > 0 {
                return Err(format!(
                    "{name}: in use by {count} container{}; nothing changed (stop {} first)",
                    if count == 1 { "" } else { "s" },
                    if count == 1 { "it" } else { "them" }
                ));
            }
            if !mounts.removing.insert(name.as_str().to_owned()) {
                return Err(format!("{name}: a removal is already in progress"));
            }
        }
        let request = DelRequest {
            name: name.clone(),
            keep_data: false,
            cluster: false,
            purge: false,
            waiting: self.waiting,
        };
        let outcome = ops::del(self.layout.clone(), request);
        self.mounts().removing.remove(name.as_str());
        match outcome {
            Ok(outcome) => {
                // A stale wait would not apply anyway (see `VolumeWait`);
                // this keeps the file from growing.
                if let Err(e) = self.set_wait(&name, None, 0) {
                    log!("remove {name}: {e}");
                }
                log!(
                    "remove {name}: {}",
                    outcome
                        .note(&name)
                        .unwrap_or_else(|| "unregistered, local copy deleted".into())
                );
                Ok(())
            }
            Err(e) => {
                log!("remove {name}: {e}");
                Err(e.to_string())
            }
        }
    }

    fn mount(&self, name: &str, id: &str) -> std::result::Result<String, String> {
        let started = Instant::now();
        let name = Name::parse(name).map_err(|e| e.to_string())?;
        check_mount_id(id)?;
        let entry = self.registered(&name)?;
        let mountpoint = self.mountpoint(&name);
        let wait = self.wait_of(&entry);
        {
            let mut mounts = self.mounts();
            if mounts.removing.contains(name.as_str()) {
                return Err(format!("{name}: being removed; not mounted"));
            }
            if mounts.total() >= MAX_MOUNTS {
                return Err(format!("{MAX_MOUNTS} mounts already; not mounted"));
            }
            // On disk first: a mount that was not recorded must not count
            // (Docker sends no Unmount for a Mount that failed).
            let mut ids = mounts.ids.clone();
            ids.entry(name.as_str().to_owned())
                .or_default()
                .insert(id.to_owned());
            self.save(&ids)?;
            mounts.ids = ids;
        }
        // Like `add`: only a folder the engine syncs is handed out; with a
        // wait, only once its data is here. The count taken above keeps a
        // Remove out meanwhile; a Mount that fails gives it back (Docker
        // sends no Unmount for it).
        let ready = control::announce_add(&self.layout, &name, self.waiting)
            .map_err(|e| e.to_string())
            .and_then(|_| self.wait_for_data(&name, wait, started));
        if let Err(e) = ready {
            if let Err(forgot) = self.forget_mount(&name, id) {
                log!("mount {name}: {forgot}");
            }
            log!("mount {name}: {e}");
            return Err(e);
        }
        log!("mount {name} ({id})");
        Ok(mountpoint)
    }

    /// Until `name` is `synced`, the same rule and the same source as the
    /// `wait` applet: init, asked over the control socket once a second.
    /// This runs on a plugin thread, never on init's main loop, which
    /// answers those questions meanwhile. `wait` counts from `started`,
    /// the Mount's arrival, so that the whole Mount stays within it (or
    /// within the engine's pick-up, when that took longer).
    fn wait_for_data(
        &self,
        name: &Name,
        wait: Duration,
        started: Instant,
    ) -> std::result::Result<(), String> {
        if wait.is_zero() {
            return Ok(());
        }
        let left = wait.saturating_sub(started.elapsed());
        match waiting::until_synced(&self.layout, std::slice::from_ref(name), left) {
            Ok(Waited::Synced) => Ok(()),
            Ok(Waited::TimedOut(states)) => {
                let states: Vec<String> = states
                    .iter()
                    .map(|(ns, state)| waiting::describe(ns, state))
                    .collect();
                Err(format!(
                    "{name}: its data is not here after {}s (the volume's wait); not mounted. {}",
                    wait.as_secs_f64(),
                    states.join("; ")
                ))
            }
            Err(e) => Err(format!(
                "{name}: cannot wait for its data: {e}; not mounted"
            )),
        }
    }

    fn unmount(&self, name: &str, id: &str) -> std::result::Result<(), String> {
        let name = Name::parse(name).map_err(|e| e.to_string())?;
        check_mount_id(id)?;
        if let Err(e) = self.forget_mount(&name, id) {
            log!("unmount {name} ({id}): {e}");
            return Err(e);
        }
        log!("unmount {name} ({id})");
        Ok(())
    }

    /// Stop counting mount `id` of `name`: on disk first, so that memory
    /// and the file never disagree (a count kept only on disk would refuse
    /// Remove again after a restart). Unknown ids are not an error.
    fn forget_mount(&self, name: &Name, id: &str) -> std::result::Result<(), String> {
        let mut mounts = self.mounts();
        if !mounts
            .ids
            .get(name.as_str())
            .is_some_and(|ids| ids.contains(id))
        {
            return Ok(());
        }
        let mut ids = mounts.ids.clone();
        if let Some(of_name) = ids.get_mut(name.as_str()) {
            of_name.remove(id);
            if of_name.is_empty() {
                ids.remove(name.as_str());
            }
        }
        self.save(&ids)?;
        mounts.ids = ids;
        Ok(())
    }

    fn save(&self, ids: &BTreeMap<String, BTreeSet<String>>) -> std::result::Result<(), String> {
        let text = json!({ "mounts": ids }).to_string();
        write_atomic(&mounts_path(&self.layout), text.as_bytes(), 0o600)
            .map_err(|e| format!("cannot record the mount count: {e}; nothing changed"))
    }

    fn path(&self, name: &str) -> std::result::Result<String, String> {
        let name = Name::parse(name).map_err(|e| e.to_string())?;
        self.registered_mountpoint(&name)
    }

    fn registered_mountpoint(&self, name: &Name) -> std::result::Result<String, String> {
        self.registered(name).map(|_| self.mountpoint(name))
    }

    fn registered(&self, name: &Name) -> std::result::Result<Entry, String> {
        match Registry::new(self.layout.clone()).get(name) {
            Ok(Some(entry)) => Ok(entry),
            Ok(None) => Err(Error::NotRegistered(name.to_string()).to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn mountpoint(&self, name: &Name) -> String {
        self.layout
            .host_folder(name)
            .unwrap_or_else(|| self.layout.folder(name))
            .display()
            .to_string()
    }

    fn get(&self, name: &str) -> std::result::Result<Value, String> {
        let name = Name::parse(name).map_err(|e| e.to_string())?;
        match Registry::new(self.layout.clone()).get(&name) {
            Ok(Some(entry)) => {
                let mut volume = self.volume(&entry);
                // The sync state as `status NS` shows it (`docker volume
                // inspect`); asked of init like any client, once per Get.
                let sync = control::query_sync(&self.layout)
                    .ok()
                    .flatten()
                    .map_or(Value::Null, |s| s["namespaces"][name.as_str()].clone());
                volume["Status"]["sync"] = sync;
                volume["Status"]["wait"] = json!(self.wait_of(&entry).as_secs_f64());
                Ok(volume)
            }
            Ok(None) => Err(Error::NotRegistered(name.to_string()).to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn list(&self) -> Value {
        match Registry::new(self.layout.clone()).readable_entries() {
            Ok((entries, _damaged)) => json!({
                "Volumes": entries.iter().map(|e| self.volume(e)).collect::<Vec<_>>(),
                "Err": "",
            }),
            Err(e) => err_body(e.to_string()),
        }
    }

    /// What `docker volume inspect` shows; never the key.
    fn volume(&self, entry: &Entry) -> Value {
        json!({
            "Name": entry.name.as_str(),
            "Mountpoint": self.mountpoint(&entry.name),
            "Status": {
                "access": entry.key.access().as_str(),
                "key_origin": entry.origin.as_str(),
                "declared": if entry.from_cluster { "cluster" } else { "local" },
                "mounts": self.mounts().count(entry.name.as_str()),
            },
        })
    }
}

fn mounts_path(layout: &Layout) -> PathBuf {
    layout.state_dir().join(MOUNTS_FILE)
}

fn options_path(layout: &Layout) -> PathBuf {
    layout.state_dir().join(OPTIONS_FILE)
}

/// The waits an earlier init kept. A damaged file is logged and read as
/// empty: those volumes then wait as `BTSYNC_VOLUME_WAIT` says.
fn load_waits(layout: &Layout) -> Result<BTreeMap<String, VolumeWait>> {
    let path = options_path(layout);
    match fs::read(&path) {
        Ok(bytes) => Ok(parse_waits(&bytes).unwrap_or_else(|| {
            log!(
                "{} is damaged (not the JSON object of volume options init writes); \
                 every volume waits as {} says",
                path.display(),
                crate::settings::VOLUME_WAIT_VAR
            );
            BTreeMap::new()
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}

fn parse_waits(bytes: &[u8]) -> Option<BTreeMap<String, VolumeWait>> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let mut waits = BTreeMap::new();
    for (ns, options) in value.get("volumes")?.as_object()? {
        Name::parse(ns).ok()?;
        let seconds = options.get("wait")?.as_f64()?;
        if !(0.0..=crate::settings::MAX_VOLUME_WAIT_SECONDS as f64).contains(&seconds) {
            return None;
        }
        let added = options.get("added")?.as_u64()?;
        waits.insert(
            ns.clone(),
            VolumeWait {
                wait: Duration::from_secs_f64(seconds),
                added,
            },
        );
    }
    Some(waits)
}

fn parse_mounts(bytes: &[u8]) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let mut ids = BTreeMap::new();
    for (ns, list) in value.get("mounts")?.as_object()? {
        Name::parse(ns).ok()?;
        let set: BTreeSet<String> = list
            .as_array()?
            .iter()
            .map(|id| id.as_str().map(str::to_owned))
            .collect::<Option<_>>()?;
        if !set.is_empty() {
            ids.insert(ns.clone(), set);
        }
    }
    Some(ids)
}

fn check_mount_id(id: &str) -> std::result::Result<(), String> {
    let fine = !id.is_empty()
        && id.len() <= MAX_MOUNT_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "the mount ID must be 1-{MAX_MOUNT_ID} of A-Z a-z 0-9 - _ ."
        ))
    }
}

/// An empty body or `null` (Docker sends that with no arguments) is `{}`.
fn parse_body(body: &[u8]) -> std::result::Result<Map<String, Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err("the request body must be a JSON object".into()),
        // serde_json's message says where, never what: no key is echoed.
        Err(e) => Err(format!("malformed JSON request: {e}")),
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub key: Option<String>,
    /// `token-file`: a path inside this container (Docker shows the
    /// options in `docker volume inspect`; a path there reveals no key).
    pub key_file: Option<PathBuf>,
    pub read_only: bool,
    pub cluster: bool,
    /// `wait`: how long a Mount waits for the data (`None`: as
    /// `BTSYNC_VOLUME_WAIT` says).
    pub wait: Option<Duration>,
    /// `owner` and `umask`, as `add --owner/--umask` takes them.
    pub rule: RuleChange,
}

/// `docker volume create -o`: `token` (or `secret`), `token-file`,
/// `read-only`, `cluster`, `wait`.
pub fn parse_options(opts: Option<&Value>) -> std::result::Result<Options, String> {
    let mut options = Options::default();
    let map = match opts {
        None | Some(Value::Null) => return Ok(options),
        Some(Value::Object(map)) => map,
        Some(_) => return Err("Opts must be a JSON object".into()),
    };
    for (name, value) in map {
        let Value::String(value) = value else {
            return Err(format!("option {name:?}: the value must be a string"));
        };
        match name.as_str() {
            "token" | "secret" | "token-file" => {
                if options.key.is_some() || options.key_file.is_some() {
                    return Err("give the key once: -o token=KEY, -o secret=KEY or \
                                -o token-file=PATH, not two of them"
                        .into());
                }
                if name == "token-file" {
                    // init's working directory means nothing to the user,
                    // and "-" (standard input) is the applet's alone.
                    if !value.starts_with('/') {
                        return Err("option token-file: give an absolute path inside the \
                                    btsync container"
                            .into());
                    }
                    options.key_file = Some(PathBuf::from(value));
                } else {
                    options.key = Some(value.clone());
                }
            }
            "read-only" => options.read_only = parse_switch(name, value)?,
            "cluster" => options.cluster = parse_switch(name, value)?,
            "owner" => {
                options.rule.owner = Some(
                    user_db::owner(value, Path::new(user_db::USER_DB_DIR))
                        .map_err(|problem| format!("option owner: {problem}"))?,
                );
            }
            "umask" => {
                options.rule.umask = Some(
                    file_rule::parse_umask(value)
                        .map_err(|problem| format!("option umask: {problem}"))?,
                );
            }
            "wait" => {
                options.wait = Some(
                    parse_volume_wait(value)
                        .map_err(|problem| format!("option wait: {problem}"))?,
                );
            }
            _ => {
                // A long unknown name may be a key typed in the wrong place.
                let shown = if name.len() <= 24 {
                    format!(" {name:?}")
                } else {
                    String::new()
                };
                return Err(format!(
                    "unknown option{shown}: the options are token (or secret), token-file, \
                     read-only, cluster, owner, umask and wait"
                ));
            }
        }
    }
    Ok(options)
}

fn parse_switch(name: &str, value: &str) -> std::result::Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("option {name}: use {name}=true or {name}=false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_token_secret_token_file_read_only_and_cluster() {
        let opts = json!({"token": "K", "read-only": "true"});
        assert_eq!(
            parse_options(Some(&opts)),
            Ok(Options {
                key: Some("K".into()),
                key_file: None,
                read_only: true,
                cluster: false,
                wait: None,
                rule: RuleChange::default(),
            })
        );
        let opts = json!({"owner": "70:71", "umask": "027"});
        assert_eq!(
            parse_options(Some(&opts)).map(|o| o.rule),
            Ok(RuleChange {
                owner: Some(crate::settings::Owner { uid: 70, gid: 71 }),
                umask: Some(0o027),
            })
        );
        for bad in [
            json!({"owner": ""}),
            json!({"umask": "0777"}),
            json!({"owner": "70:x-no-such-group"}),
        ] {
            let problem = parse_options(Some(&bad)).expect_err("refused");
            assert!(
                problem.starts_with("option owner") || problem.starts_with("option umask"),
                "{problem}"
            );
        }
        let opts = json!({"token-file": "/run/secrets/k"});
        assert_eq!(
            parse_options(Some(&opts)),
            Ok(Options {
                key_file: Some(PathBuf::from("/run/secrets/k")),
                ..Options::default()
            })
        );
        assert!(parse_options(Some(&json!({"token": "A", "secret": "B"}))).is_err());
        for (one, other) in [("token", "token-file"), ("secret", "token-file")] {
            let opts = json!({ one: "/k", other: "/k" });
            let message = parse_options(Some(&opts)).unwrap_err();
            assert!(message.contains("give the key once"), "{message}");
        }
        for relative in ["k", "-", "./k", ""] {
            let message = parse_options(Some(&json!({"token-file": relative}))).unwrap_err();
            assert!(message.contains("absolute path"), "{relative:?}: {message}");
        }
        assert!(parse_options(Some(&json!({"cluster": "yes"}))).is_err());
        assert!(parse_options(Some(&json!({"size": "1G"}))).is_err());
        let key_like = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let message = parse_options(Some(&json!({ key_like: "token" }))).unwrap_err();
        assert!(!message.contains(key_like), "{message}");
        assert_eq!(parse_options(None), Ok(Options::default()));
    }

    #[test]
    fn wait_option_is_seconds_up_to_the_cap() {
        let wait = |value: &str| parse_options(Some(&json!({ "wait": value }))).map(|o| o.wait);
        assert_eq!(wait("60"), Ok(Some(Duration::from_secs(60))));
        assert_eq!(wait("0"), Ok(Some(Duration::ZERO)));
        assert_eq!(wait("2.5"), Ok(Some(Duration::from_millis(2500))));
        assert_eq!(wait("100"), Ok(Some(Duration::from_secs(100))));
        for bad in ["abc", "-1", "101", "86400", "60s", "", "1e2"] {
            let message = wait(bad).expect_err(bad);
            assert!(
                message.starts_with("option wait: ") && message.contains("from 0 to 100"),
                "{bad:?}: {message}"
            );
        }
        let opts = json!({"token": "K", "wait": "30"});
        assert_eq!(
            parse_options(Some(&opts)).map(|o| (o.key, o.wait)),
            Ok((Some("K".into()), Some(Duration::from_secs(30))))
        );
        // Not a string, as Docker never sends: refused like the others.
        assert!(parse_options(Some(&json!({"wait": 30}))).is_err());
        let unknown = parse_options(Some(&json!({"size": "1G"}))).unwrap_err();
        assert!(unknown.contains("owner, umask and wait"), "{unknown}");
    }

    #[test]
    fn waits_file_round_trips_and_rejects_garbage() {
        let waits =
            parse_waits(br#"{"volumes":{"gitlab":{"wait":2.5,"added":17}}}"#).expect("parse");
        assert_eq!(
            waits["gitlab"],
            VolumeWait {
                wait: Duration::from_millis(2500),
                added: 17
            }
        );
        for garbage in [
            &br#"{"volumes":{"../etc":{"wait":1,"added":1}}}"#[..],
            br#"{"volumes":{"x":{"wait":1000,"added":1}}}"#,
            br#"{"volumes":{"x":{"wait":-1,"added":1}}}"#,
            br#"{"volumes":{"x":{"wait":1}}}"#,
            b"[]",
        ] {
            assert!(
                parse_waits(garbage).is_none(),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn driver_name_is_the_socket_name_less_sock() {
        assert_eq!(
            driver_name(Path::new("/run/docker/plugins/syncbox.sock")),
            Some("syncbox")
        );
        assert_eq!(driver_name(Path::new("/run/docker/plugins/.sock")), None);
        assert_eq!(driver_name(Path::new("/run/docker/plugins/x.socket")), None);
    }

    #[test]
    fn mount_file_round_trips_and_rejects_garbage() {
        let ids = parse_mounts(br#"{"mounts":{"gitlab":["a","b"],"x":[]}}"#).expect("parse");
        assert_eq!(ids.len(), 1);
        assert_eq!(ids["gitlab"].len(), 2);
        assert!(parse_mounts(br#"{"mounts":{"../etc":["a"]}}"#).is_none());
        assert!(parse_mounts(b"[]").is_none());
    }
}
