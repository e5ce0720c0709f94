//! A stand-in for the btsync engine, for syncbox's tests only (never
//! shipped). It honours the contract init relies on:
//!
//! - refuses to start without `--nodaemon --config FILE` (btsync would
//!   daemonize and init would lose it);
//! - parses the config and checks it like btsync 1.4.111 (messages on
//!   stdout, exit 1, as it prints them): an unknown key is refused ("Invalid
//!   key 'NAME'", a wrong type too), `storage_path` must exist, a config
//!   without a folder is refused ("To use BitTorrent Sync you should specify
//!   shared directories..."). Stricter than btsync (which creates a missing
//!   folder and skips a bad key): every `dir` must exist and every `secret`
//!   must be a well-formed key;
//! - keeps its folders in `storage_path/sync.dat` (its own JSON): at start
//!   it logs "Loaded folder DIR" for each stored one, then "Error while
//!   adding folder DIR: Selected folder is already added..." for those the
//!   config lists again, and lets go at once of a stored folder the config
//!   no longer lists; one folder per ID (key): a config folder whose ID is
//!   served already, stored or listed before it, is never taken;
//! - serves a folder as btsync does on disk: `.sync/ID` (the 20-byte folder
//!   ID, SHA-1 of the read-only key's bytes) and `storage_path/<HEX ID>.db`
//!   held open and locked (flock; 1.4.111's is a POSIX lock) while served;
//!   letting go closes and deletes the database and removes `.sync/ID`,
//!   the files stay;
//! - TERM/INT: "Received shutdown request via signal N", then
//!   "Shutdown. Saving config sync.dat" and exit 0 (see `STAND_IN_ON_TERM`);
//!   HUP: "Reloading config file..." and the folders follow the config
//!   (a config it would refuse at start is reported as "Error while
//!   reloading config: ..." and the old folders stay), as 1.4.111 does;
//! - records every start, signal and exit as JSON lines in `$STAND_IN_LOG`
//!   (default: `storage/stand-in.log` beside the config: like the real engine it
//!   may only write in its storage, not in the directory that holds its config);
//! - reports `vanished` when a file of a configured folder disappears while
//!   it runs: the real engine would propagate that deletion to every peer.
//!
//! Behaviour for tests, from the environment:
//! - `--help` prints a banner like 1.4.111's, `BitTorrent Sync stand-in
//!   1.4.111` (or `STAND_IN_BANNER`), then its usage;
//! - `STAND_IN_EXIT_AT_START=N`: exit with N right after starting (a crash);
//! - `STAND_IN_ON_TERM`: what TERM/INT do: `exit:N` (default `exit:0`),
//!   `default` (die by the signal), `ignore`, `delay:SECS` (exit 0 later);
//! - `STAND_IN_IGNORE_HUP=1`: HUP is logged and ignored (an engine that
//!   cannot reload; 1.4.111 can);
//! - `STAND_IN_ON_HUP=default`: HUP kills it, as USR1 and USR2 kill 1.4.111
//!   (an engine that does not survive a reload);
//! - `STAND_IN_ORPHANS=N` and `STAND_IN_ORPHANS_RELEASE=FILE`: leave N
//!   orphaned grandchildren that exit once FILE exists.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use signal_hook::consts::signal::*;
use signal_hook::iterator::Signals;

const WATCHED: &[i32] = &[
    SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH, SIGCONT,
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--orphan-maker") => orphan_maker(&args[1..]),
        Some("--sleeper") => sleeper(&args[1..]),
        // The banner's shape is 1.4.111's ("BitTorrent Sync 1.4.111" first).
        Some("--help") => println!(
            "{}\nUsage:\n\t  stand-in-btsync [ options ... ]",
            std::env::var("STAND_IN_BANNER")
                .unwrap_or_else(|_| "BitTorrent Sync stand-in 1.4.111".to_owned())
        ),
        _ => engine(&args),
    }
}

struct Log {
    path: PathBuf,
}

impl Log {
    fn record(&self, mut event: Value) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        event["t"] = json!(now);
        event["pid"] = json!(std::process::id());
        // One write per line with O_APPEND: lines from several processes never mix.
        if let Ok(mut file) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = file.write_all(format!("{event}\n").as_bytes());
        }
    }
}

fn refuse(log: Option<&Log>, message: &str) -> ! {
    eprintln!("stand-in-btsync: {message}");
    if let Some(log) = log {
        log.record(json!({"event": "refused", "reason": message}));
    }
    std::process::exit(1);
}

/// Refuse to start the way btsync 1.4.111 does: its message on stdout, exit 1.
fn refuse_like_btsync(log: Option<&Log>, message: &str) -> ! {
    println!("{message}");
    if let Some(log) = log {
        log.record(json!({"event": "refused", "reason": message}));
    }
    std::process::exit(1);
}

/// A log line on stdout in the engine's words (tests match the words, not
/// the real engine's timestamp prefix).
fn say(message: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[stand-in] {message}");
    let _ = out.flush();
}

pub const NO_FOLDER: &str = "To use BitTorrent Sync you should specify shared directories in config file or enable Web UI or API";

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Any,
}

/// Top-level keys btsync 1.4.111 accepts (each seen accepted by it, the
/// typed ones also refused with a wrong type); anything else is refused
/// with "Invalid key 'NAME'". syncbox writes device_name, listening_port,
/// storage_path, check_for_updates, use_upnp and shared_folders.
const TOP_KEYS: &[(&str, Kind)] = &[
    ("device_name", Kind::Any),
    ("listening_port", Kind::Int),
    ("storage_path", Kind::Any),
    ("pid_file", Kind::Any),
    ("check_for_updates", Kind::Bool),
    ("use_upnp", Kind::Bool),
    ("download_limit", Kind::Any),
    ("upload_limit", Kind::Any),
    ("webui", Kind::Any),
    ("shared_folders", Kind::Any),
    ("folder_rescan_interval", Kind::Any),
    ("config_refresh_interval", Kind::Any),
    ("max_file_size_for_versioning", Kind::Any),
    ("sync_trash_ttl", Kind::Any),
    ("log_size", Kind::Any),
    ("lan_encrypt_data", Kind::Bool),
    ("disk_low_priority", Kind::Bool),
];

/// Keys of a `shared_folders` entry 1.4.111 accepts (it refuses
/// `selective_sync`).
const FOLDER_KEYS: &[(&str, Kind)] = &[
    ("secret", Kind::Any),
    ("dir", Kind::Any),
    ("use_relay_server", Kind::Bool),
    ("use_tracker", Kind::Bool),
    ("use_dht", Kind::Bool),
    ("search_lan", Kind::Bool),
    ("use_sync_trash", Kind::Bool),
    ("overwrite_changes", Kind::Bool),
    ("known_hosts", Kind::Any),
];

fn check_keys(object: &Value, known: &[(&str, Kind)]) -> Result<(), String> {
    let Some(map) = object.as_object() else {
        return Ok(());
    };
    for (key, value) in map {
        let Some((_, kind)) = known.iter().find(|(name, _)| name == key) else {
            return Err(format!(
                "Error while parsing config file: Invalid key '{key}'"
            ));
        };
        let wrong = match kind {
            Kind::Bool => (!value.is_boolean()).then_some("boolean"),
            Kind::Int => (!value.is_i64() && !value.is_u64()).then_some("integer"),
            Kind::Any => None,
        };
        if let Some(want) = wrong {
            return Err(format!(
                "Error while parsing config file: Invalid key type: '{key}' must be {want}"
            ));
        }
    }
    Ok(())
}

/// One folder of a config.
#[derive(Clone)]
struct Folder {
    dir: PathBuf,
    /// Upper-case hex of the folder's 20-byte ID.
    id: String,
}

/// Read and check a config the way btsync does before it starts (or
/// reloads): its folders, or btsync's message for why not. Checks the
/// stand-in adds (folder exists, key well formed) come after.
fn read_config(path: &Path) -> Result<(Value, Vec<Folder>), String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let config: Value =
        serde_json::from_str(&text).map_err(|e| format!("Error while parsing config file: {e}"))?;
    check_keys(&config, TOP_KEYS)?;
    let listed = config["shared_folders"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for folder in &listed {
        check_keys(folder, FOLDER_KEYS)?;
    }
    let storage = config["storage_path"].as_str().unwrap_or("");
    if !Path::new(storage).is_dir() {
        return Err("Storage path specified in config file does not exist.".into());
    }
    if listed.is_empty() {
        return Err(NO_FOLDER.into());
    }
    let mut folders = Vec::new();
    for folder in listed {
        let dir = folder["dir"].as_str().unwrap_or("");
        let secret = folder["secret"].as_str().unwrap_or("");
        if !Path::new(dir).is_dir() {
            return Err(format!("stand-in: shared folder {dir:?} does not exist"));
        }
        if !valid_secret(secret) {
            return Err(format!("stand-in: invalid secret for {dir:?}"));
        }
        folders.push(Folder {
            dir: PathBuf::from(dir),
            id: folder_id(secret),
        });
    }
    Ok((config, folders))
}

/// A folder's ID as btsync 1.4.111 makes it: the SHA-1 of the bytes of the
/// key's read-only form, so a key and its read-only key share one ID. Keys
/// whose read-only form needs the engine get the SHA-1 of their text.
fn folder_id(secret: &str) -> String {
    use sha1::{Digest, Sha1};
    let read_only =
        syncbox::keys::Key::parse(secret)
            .ok()
            .and_then(|key| match key.read_only_form() {
                syncbox::keys::ReadOnlyForm::Key(ro) => Some(ro.expose().to_owned()),
                syncbox::keys::ReadOnlyForm::NeedsEngine => None,
            });
    let bytes = read_only
        .and_then(|ro| {
            data_encoding::BASE32_NOPAD
                .decode(&ro.as_bytes()[ro.len().saturating_sub(32)..])
                .ok()
        })
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    Sha1::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// What the engine keeps in `storage_path`: the folders it had (a
/// `sync.dat` of its own, JSON), and per served folder `<ID>.db`, held
/// open while it serves the folder.
struct Storage {
    dir: PathBuf,
}

impl Storage {
    fn file(&self) -> PathBuf {
        self.dir.join("sync.dat")
    }

    fn load(&self) -> Vec<Folder> {
        let text = fs::read_to_string(self.file()).unwrap_or_default();
        let stored: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        stored["folders"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|f| {
                        Some(Folder {
                            dir: PathBuf::from(f["dir"].as_str()?),
                            id: f["id"].as_str()?.to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn save(&self, folders: &[Folder]) {
        let list: Vec<Value> = folders
            .iter()
            .map(|f| json!({"dir": f.dir, "id": f.id}))
            .collect();
        let temp = self.dir.join("sync.dat.tmp");
        if fs::write(&temp, json!({ "folders": list }).to_string()).is_ok() {
            let _ = fs::rename(&temp, self.file());
        }
    }

    fn db(&self, folder: &Folder) -> PathBuf {
        self.dir.join(format!("{}.db", folder.id))
    }

    /// Let go of a folder: delete its database, remove its `.sync/ID`; its
    /// files stay.
    fn forget(&self, folder: &Folder) {
        let _ = fs::remove_file(self.db(folder));
        let _ = fs::remove_file(folder.dir.join(".sync").join("ID"));
    }
}

/// The folders being served, each with its database held open.
struct Serving {
    storage: Storage,
    folders: Vec<(Folder, Option<fs::File>)>,
    problems: Vec<String>,
}

impl Serving {
    fn has(&self, id: &str) -> bool {
        self.folders.iter().any(|(f, _)| f.id == id)
    }

    fn serve(&mut self, folder: &Folder) {
        let sync_dir = folder.dir.join(".sync");
        let id_bytes: Vec<u8> = (0..folder.id.len() / 2)
            .filter_map(|i| u8::from_str_radix(&folder.id[2 * i..2 * i + 2], 16).ok())
            .collect();
        if let Err(e) =
            fs::create_dir_all(&sync_dir).and_then(|()| fs::write(sync_dir.join("ID"), id_bytes))
        {
            self.problems.push(format!("{}: {e}", folder.dir.display()));
        }
        // Held open and locked while served, as 1.4.111's SQLite database
        // is (a write lock, which /proc/locks shows to any user).
        let db = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.storage.db(folder))
            .ok()
            .filter(|db| db.lock().is_ok());
        self.folders.push((folder.clone(), db));
    }

    /// Let go of a folder as 1.4.111 does: close and delete its database,
    /// remove its `.sync/ID`; its files stay.
    fn drop_folder(&mut self, id: &str) {
        let Some(at) = self.folders.iter().position(|(f, _)| f.id == id) else {
            return;
        };
        let (folder, db) = self.folders.remove(at);
        drop(db);
        self.storage.forget(&folder);
    }

    /// Serve exactly `wanted`: drop the others, add the new ones.
    fn apply(&mut self, wanted: &[Folder]) {
        let gone: Vec<String> = self
            .folders
            .iter()
            .filter(|(f, _)| !wanted.iter().any(|w| w.id == f.id))
            .map(|(f, _)| f.id.clone())
            .collect();
        for id in gone {
            self.drop_folder(&id);
        }
        for folder in wanted {
            if !self.has(&folder.id) {
                self.serve(folder);
            }
        }
        let list: Vec<Folder> = self.folders.iter().map(|(f, _)| f.clone()).collect();
        self.storage.save(&list);
    }

    /// The served folders' names, sorted (the order they were taken in
    /// tells nothing).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .folders
            .iter()
            .filter_map(|(f, _)| f.dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names
    }

    /// Each served folder and what is in its top level: the paths whose
    /// disappearance the engine would propagate.
    fn watched(&self) -> BTreeSet<PathBuf> {
        let mut watched = BTreeSet::new();
        for (folder, _) in &self.folders {
            watched.insert(folder.dir.clone());
            for item in fs::read_dir(&folder.dir).into_iter().flatten().flatten() {
                // syncbox's own atomic writes into the synced cluster registry
                // create `.tmp.*` files and rename them over the record: that
                // is a rename of syncbox's file, not user data deleted.
                if item.file_name().as_encoded_bytes().starts_with(b".tmp.") {
                    continue;
                }
                watched.insert(item.path());
            }
        }
        watched
    }
}

fn engine(args: &[String]) {
    let nodaemon = args.iter().any(|a| a == "--nodaemon");
    let config_path = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let log_path = std::env::var_os("STAND_IN_LOG")
        .map(PathBuf::from)
        .or_else(|| {
            config_path
                .as_ref()
                .and_then(|c| c.parent().map(|d| d.join("storage").join("stand-in.log")))
        });
    let log = log_path.map(|path| Log { path });
    let log = log.as_ref();
    let (Some(config_path), true) = (config_path, nodaemon) else {
        refuse(
            log,
            "usage: btsync --nodaemon --config FILE (refusing to daemonize)",
        );
    };
    // Installed before anything can signal us, as the real engine does, and
    // before the config work (key derivations take a while in a debug build).
    let mut signals = Signals::new(WATCHED).unwrap_or_else(|e| refuse(log, &e.to_string()));
    let (config, folders) = match read_config(&config_path) {
        Ok(found) => found,
        Err(message) if message.starts_with("stand-in: ") => refuse(log, &message),
        Err(message) => refuse_like_btsync(log, &message),
    };

    let storage = Storage {
        dir: PathBuf::from(config["storage_path"].as_str().unwrap_or("")),
    };
    let stored = storage.load();
    let mut serving = Serving {
        storage,
        folders: Vec::new(),
        problems: Vec::new(),
    };
    // Like 1.4.111: every stored folder is loaded (and logged) first, then
    // the config's are added, those already loaded with an error; a stored
    // folder the config no longer has is let go at once.
    for folder in &stored {
        say(&format!("Loaded folder {}", folder.dir.display()));
    }
    for folder in &stored {
        if !folders.iter().any(|f| f.id == folder.id) {
            // Never re-created: 1.4.111 leaves a vanished stored folder gone.
            serving.storage.forget(folder);
        }
    }
    for folder in &folders {
        if stored.iter().any(|f| f.id == folder.id) {
            say(&format!(
                "Error while adding folder {}: Selected folder is already added to BitTorrent Sync.",
                folder.dir.display()
            ));
        }
    }
    // The stored folder is the one served, at its stored path: a second
    // config folder with the same ID (key) is never taken, as with 1.4.111.
    for folder in &stored {
        if folders.iter().any(|f| f.id == folder.id) && !serving.has(&folder.id) {
            serving.serve(folder);
        }
    }
    serving.apply(&folders);
    let mut watched = serving.watched();
    let (uid, gid) = ids();
    if let Some(log) = log {
        log.record(json!({
            "event": "start",
            "folders": serving.names(),
            "loaded": stored.iter().map(|f| f.dir.clone()).collect::<Vec<_>>(),
            "uid": uid,
            "gid": gid,
            "device_name": config["device_name"],
            "listening_port": config["listening_port"],
            "folder_problems": serving.problems,
        }));
    }
    let finish = |code: i32| -> ! {
        say("Shutdown. Saving config sync.dat");
        if let Some(log) = log {
            log.record(json!({"event": "exit", "code": code}));
        }
        std::process::exit(code);
    };
    if let Some(code) = env_number("STAND_IN_EXIT_AT_START") {
        finish(code as i32);
    }
    if let Some(count) = env_number("STAND_IN_ORPHANS") {
        let release = std::env::var("STAND_IN_ORPHANS_RELEASE").unwrap_or_default();
        let exe = std::env::current_exe().unwrap_or_else(|e| refuse(log, &e.to_string()));
        let made = Command::new(exe)
            .arg("--orphan-maker")
            .arg(count.to_string())
            .arg(release)
            .stdin(Stdio::null())
            .status();
        if let Some(log) = log {
            log.record(json!({"event": "orphans", "count": count, "maker": format!("{made:?}")}));
        }
    }

    let on_term = std::env::var("STAND_IN_ON_TERM").unwrap_or_else(|_| "exit:0".into());
    let ignore_hup = std::env::var("STAND_IN_IGNORE_HUP").as_deref() == Ok("1");
    let hup_kills = std::env::var("STAND_IN_ON_HUP").as_deref() == Ok("default");
    let mut exit_at: Option<Instant> = None;
    let mut vanished: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        for signal in signals.pending() {
            let name = signal_hook::low_level::signal_name(signal).unwrap_or("?");
            if let Some(log) = log {
                log.record(json!({"event": "signal", "signal": name}));
            }
            if signal == SIGHUP {
                if hup_kills {
                    if let Some(log) = log {
                        log.record(json!({"event": "dying", "signal": name}));
                    }
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                }
                if ignore_hup {
                    if let Some(log) = log {
                        log.record(json!({"event": "hup_ignored"}));
                    }
                    continue;
                }
                say("Reloading config file...");
                match read_config(&config_path) {
                    Ok((_, wanted)) => {
                        for folder in &wanted {
                            if serving.has(&folder.id) {
                                say(&format!(
                                    "Error while adding folder {}: Selected folder is already added to BitTorrent Sync.",
                                    folder.dir.display()
                                ));
                            }
                        }
                        serving.apply(&wanted);
                        watched = serving.watched();
                        vanished.clear();
                        if let Some(log) = log {
                            log.record(json!({"event": "reload", "folders": serving.names()}));
                        }
                    }
                    Err(message) => {
                        // 1.4.111 keeps serving what it had.
                        say(&format!("Error while reloading config: {message}"));
                        if let Some(log) = log {
                            log.record(json!({"event": "reload_failed", "reason": message}));
                        }
                    }
                }
                continue;
            }
            if signal != SIGTERM && signal != SIGINT {
                continue;
            }
            say(&format!("Received shutdown request via signal {signal}"));
            if let Some(code) = on_term.strip_prefix("exit:") {
                finish(code.parse().unwrap_or(0));
            } else if on_term == "default" {
                if let Some(log) = log {
                    log.record(json!({"event": "dying", "signal": name}));
                }
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            } else if let Some(secs) = on_term.strip_prefix("delay:") {
                let delay = secs.parse::<f64>().unwrap_or(1.0);
                exit_at.get_or_insert(Instant::now() + Duration::from_secs_f64(delay));
            }
            // "ignore": carry on.
        }
        if exit_at.is_some_and(|at| Instant::now() >= at) {
            finish(0);
        }
        for path in &watched {
            if !vanished.contains(path) && fs::symlink_metadata(path).is_err() {
                if let Some(log) = log {
                    log.record(json!({"event": "vanished", "path": path}));
                }
                vanished.insert(path.clone());
            }
        }
        sleep(Duration::from_millis(20));
    }
}

/// btsync keys: base32 (A-Z 2-7); a type letter and 32 characters, an E
/// key of 59, or 32 characters without a type letter.
fn valid_secret(secret: &str) -> bool {
    let base32 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    };
    match secret.len() {
        32 => base32(secret),
        33 => "ABCDFR".contains(&secret[..1]) && base32(secret),
        59 => secret.starts_with('E') && base32(secret),
        _ => false,
    }
}

fn ids() -> (u32, u32) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    (field("Uid:"), field("Gid:"))
}

fn env_number(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

/// Start `count` sleepers and exit at once without waiting for them, so
/// they are orphaned and re-parented to the nearest reaper (init).
fn orphan_maker(args: &[String]) {
    let count: u32 = args.first().and_then(|c| c.parse().ok()).unwrap_or(0);
    let release = args.get(1).cloned().unwrap_or_default();
    let Ok(exe) = std::env::current_exe() else {
        std::process::exit(1);
    };
    for _ in 0..count {
        let _ = Command::new(&exe)
            .arg("--sleeper")
            .arg(&release)
            .stdin(Stdio::null())
            .spawn();
    }
}

/// Wait (at most two minutes) until the release file exists, then exit.
fn sleeper(args: &[String]) {
    let release = PathBuf::from(args.first().cloned().unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !release.exists() && Instant::now() < deadline {
        sleep(Duration::from_millis(20));
    }
}
