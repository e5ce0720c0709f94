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
//! - a config with no folder but a `webui` object with `listen` starts in
//!   WebUI mode (below); with folders listed, `webui` is ignored, as 1.4.111
//!   does. Also checked like 1.4.111: `webui` must be a map ("Invalid key
//!   type: 'webui' must be map"), its `listen`, `login`, `password` strings
//!   ("Invalid key type: 'listen' must be string"), any other key in it is
//!   refused ("Invalid key 'NAME'"); the top-level `folder_defaults.use_relay`,
//!   `.use_tracker`, `.use_dht`, `.use_lan_broadcast`, `.delete_to_trash`
//!   (boolean) and `.known_hosts` (string "h:p,h:p"; an array gives "Invalid
//!   type of 'folder_defaults.known_hosts'. Must not be array"); any other
//!   `folder_defaults.*` key is an invalid key. A `webui` without `listen`
//!   counts as none. Stricter than btsync: a `webui` needs `login` and
//!   `password` (1.4.111 runs without), and `api_key`, `directory_root`,
//!   `dir_whitelist`, `force_https`, `ssl_certificate` (accepted by 1.4.111,
//!   never written by syncbox) are refused ("stand-in: webui.NAME is not
//!   modelled");
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
//! - reports `vanished` when a file of a served folder disappears while
//!   it runs: the real engine would propagate that deletion to every peer.
//!
//! WebUI mode, as 1.4.111 answers (checked side by side in
//! tests/engine_parity.rs), on `webui.listen` over HTTP/1.1:
//! - every folder stored in `sync.dat` is loaded and served at start, with
//!   its settings; HUP ("Reloading config file...") keeps the folders;
//! - every request needs Basic auth with `login:password`, else `401
//!   Unauthorized`, empty body, `WWW-Authenticate: Basic realm="BitTorrent
//!   Sync"`; `/` is a 301 to `/gui/`, an unknown path a 404 with no body;
//! - `/gui/token.html` (GET or POST) gives `Set-Cookie: GUID=...; path=/`
//!   and `<html><div id='token' style='display:none;'>TOKEN</div></html>`;
//!   each token goes with its cookie (an older pair stays valid);
//! - `/gui/?token=T&action=NAME&...` needs a known token with its `GUID`
//!   cookie and an `action`, else `400 ERROR`, `text/html`, body
//!   `"\r\ninvalid request"` (plus a new `GUID` cookie when none was sent);
//!   the answers are JSON laid out as 1.4.111 does (`{ "status": 200 }`);
//! - license: every action answers 500 `Need to agree with the license`
//!   until `setlicenseagreed&value=true` (`{ "status": 200, "value": {
//!   "error": 0 } }`), kept in `storage_path/settings.dat`; without `value`:
//!   500 `'value' parameter is required`; any other value: 200 `User
//!   doesn't agree with the license`, and the engine shuts down (exit 0);
//!   once agreed, `setlicenseagreed` is an `unknown function` (400), as is
//!   any action not listed here;
//! - `version`: 17039471;
//! - `addsyncfolder` (`path`, `secret`, `force`): serves the folder as a
//!   config folder is served, recorded in `sync.dat` with the
//!   `folder_defaults` as its settings; `{ "status": 200, "value": {
//!   "path": P, "secret": K } }`. Without `secret` a new A key is made.
//!   Refusals come as status 200 with `value.error` and `value.message`:
//!   201 "This secret is invalid.\nPlease generate...", 200 "Selected
//!   folder is already added to BitTorrent Sync." (the key's ID or the path
//!   is served already: one folder per ID), 100 "Can't open the destination
//!   folder." (empty path), 105 "Destination folder is not empty.  Add
//!   anyway?" (anything but `.sync` in it, unless `force=true`; `force=1` is
//!   not enough). A missing folder is created with its parents. No `path`:
//!   500 `'path' parameter is required`. Stricter: a relative path gets 100;
//! - `removefolder` (`secret`): lets go as config mode does (database closed
//!   and deleted, `.sync/ID` removed, files kept); `{ "status": 200 }`, also
//!   for a key it does not serve; no `secret`: 500 `'secret' parameter is
//!   required`;
//! - `getsyncfolders` (`discovery=1` changes nothing): `{ "folders": [...],
//!   "loading": false, "speed": { "downspeed": 0, "upspeed": 0 }, "status":
//!   200 }`, folders in the order added, each with 1.4.111's 26 fields
//!   (`archive`, `date_added`, `down_status`, `error`, `files`, `has_key`,
//!   `id`, `name`, `path`, `peers`, `readonlysecret`, `secret`, `size`,
//!   `status`, ...). Not the engine's: `id` (an i64 of 1.4.111's own
//!   derivation; here the first 8 bytes of the folder ID), `files`/`size`
//!   counted at each call (the engine counts after indexing), `status` always
//!   "N B in M files", `secrettype` always 1 (seen for A keys only);
//! - `folderpref` (`secret`): `canencrypt`, `deletetotrash`, `iswritable`,
//!   `readonlysecret`, `relay`, `searchdht`, `searchlan`, `secrettype`,
//!   `usehosts`, `usetracker`; `setfolderpref` (`secret` and any of `relay`,
//!   `usetracker`, `searchlan`, `searchdht`, `deletetotrash`, `usehosts`):
//!   `true` is true, anything else (even `1`) false; `knownhosts` (`secret`):
//!   `[ { "index": 0, "peer": "h:p" } ]`; `addknownhost` (`secret`, `addr`,
//!   `port`; the port read as `atoi` does); `removeknownhosts` (`secret`,
//!   `index`; out of range is a no-op). A key no folder was added with
//!   (its read-only key too): 500 `can't find folder by secret`, but 500
//!   `'secret', 'addr', 'port' parameters are required` from `addknownhost`
//!   and `'secret' and 'index' parameters are required` from
//!   `removeknownhosts`, as 1.4.111 answers. Settings and known hosts are
//!   kept in `sync.dat`. Config folders get their config keys as settings
//!   (where the config says nothing: the WebUI defaults, assumed);
//! - stricter or simpler than 1.4.111: one request per connection
//!   (`Connection: close`; 1.4.111 keeps connections alive); `/gui/` with
//!   no query is a stub page, not the web interface; switching between
//!   config folders and the WebUI on a HUP is refused ("Error while
//!   reloading config: stand-in: ... not modelled"), not modelled;
//! - each call is a JSON line in the log: `{"event":"api","action":NAME,
//!   "status":S,"folder":NAME,"error":CODE}` (`folder`: the folder's name,
//!   when the call names one; `error`: a refusal's `value.error`); a 401 is
//!   `{"event":"api","status":401}`. Never a key, a query or a body.
//!
//! Behaviour for tests, from the environment:
//! - `--help` prints a banner like 1.4.111's, `BitTorrent Sync stand-in
//!   1.4.111` (or `STAND_IN_BANNER`), then its usage;
//! - `STAND_IN_EXIT_AT_START=N`: exit with N right after starting (a crash);
//! - `STAND_IN_NO_WEBUI=1`: an engine without the WebUI interface: a
//!   config with `webui` and no folder is refused like one without `webui`;
//! - `STAND_IN_ON_TERM`: what TERM/INT do: `exit:N` (default `exit:0`),
//!   `default` (die by the signal), `ignore`, `delay:SECS` (exit 0 later);
//! - `STAND_IN_IGNORE_HUP=1`: HUP is logged and ignored (an engine that
//!   cannot reload; 1.4.111 can);
//! - `STAND_IN_ON_HUP=default`: HUP kills it, as USR1 and USR2 kill 1.4.111
//!   (an engine that does not survive a reload);
//! - `STAND_IN_ORPHANS=N` and `STAND_IN_ORPHANS_RELEASE=FILE`: leave N
//!   orphaned grandchildren that exit once FILE exists;
//! - `STAND_IN_PEERS=FILE`: the peers `getsyncfolders` shows, read again at
//!   each call: `{ "FOLDER NAME": [ {"isonline": true, "lastsynctime":
//!   1796200562, "downdiff": 0, "downfiles": 3}, ... ] }`. Each object is
//!   shown as given, over 1.4.111's other peer fields (`direct`: true,
//!   `downdiff`: 0, `id`: 40 hex digits, `isonline`: false,
//!   `lastreceivedtime`, `lastsenttime`, `lastsynctime`: 0, `name`:
//!   "peer-N", `updiff`: 0); `downfiles` only when given, and then
//!   `upfiles` (0 unless given) with it, as 1.4.111 shows both while files
//!   are exchanged and neither otherwise. No file, or no entry for the
//!   folder: `"peers": [  ]`. An object with `"unnamed_until_readded":
//!   true` plays the peer of a first exchange that never started: until
//!   this engine run removed the folder (`removefolder`) and was given it
//!   again (`addsyncfolder`), it is named by an address ("127.0.0.1:4xxxx")
//!   with only its `isonline` given and nothing exchanged (`lastsynctime`
//!   and `downdiff` 0); after that, as the object says.

#[path = "stand_in_webui.rs"]
mod webui;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    Str,
    Map,
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
    ("webui", Kind::Map),
    ("shared_folders", Kind::Any),
    ("folder_rescan_interval", Kind::Any),
    ("config_refresh_interval", Kind::Any),
    ("max_file_size_for_versioning", Kind::Any),
    ("sync_trash_ttl", Kind::Any),
    ("log_size", Kind::Any),
    ("lan_encrypt_data", Kind::Bool),
    ("disk_low_priority", Kind::Bool),
    // The defaults of a folder added over the WebUI, as top-level dotted keys.
    ("folder_defaults.use_relay", Kind::Bool),
    ("folder_defaults.use_tracker", Kind::Bool),
    ("folder_defaults.use_dht", Kind::Bool),
    ("folder_defaults.use_lan_broadcast", Kind::Bool),
    ("folder_defaults.delete_to_trash", Kind::Bool),
    ("folder_defaults.known_hosts", Kind::Str),
];

/// Keys of `webui` the stand-in knows (1.4.111 also accepts `api_key`,
/// `directory_root`, `dir_whitelist`, `force_https`, `ssl_certificate`;
/// syncbox writes none of them and the stand-in refuses them).
const WEBUI_KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Str),
    ("login", Kind::Str),
    ("password", Kind::Str),
];
const WEBUI_KEYS_NOT_MODELLED: &[&str] = &[
    "api_key",
    "directory_root",
    "dir_whitelist",
    "force_https",
    "ssl_certificate",
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
        if matches!(kind, Kind::Str) && value.is_array() {
            return Err(format!(
                "Error while parsing config file: Invalid type of '{key}'. Must not be array"
            ));
        }
        let wrong = match kind {
            Kind::Bool => (!value.is_boolean()).then_some("boolean"),
            Kind::Int => (!value.is_i64() && !value.is_u64()).then_some("integer"),
            Kind::Str => (!value.is_string()).then_some("string"),
            Kind::Map => (!value.is_object()).then_some("map"),
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

/// A folder's settings as the WebUI shows them (`folderpref`).
#[derive(Clone)]
struct Prefs {
    relay: bool,
    usetracker: bool,
    searchlan: bool,
    searchdht: bool,
    deletetotrash: bool,
    usehosts: bool,
}

impl Prefs {
    fn to_json(&self) -> Value {
        json!({
            "relay": self.relay, "usetracker": self.usetracker,
            "searchlan": self.searchlan, "searchdht": self.searchdht,
            "deletetotrash": self.deletetotrash, "usehosts": self.usehosts,
        })
    }

    /// Stored prefs; what is missing gets 1.4.111's default for a folder
    /// added over the WebUI without `folder_defaults`.
    fn from_json(value: &Value) -> Prefs {
        let flag = |key: &str, default: bool| value[key].as_bool().unwrap_or(default);
        Prefs {
            relay: flag("relay", true),
            usetracker: flag("usetracker", true),
            searchlan: flag("searchlan", true),
            searchdht: flag("searchdht", false),
            deletetotrash: flag("deletetotrash", true),
            usehosts: flag("usehosts", false),
        }
    }
}

/// One folder, from a config, the WebUI or the storage.
#[derive(Clone)]
struct Folder {
    dir: PathBuf,
    /// Upper-case hex of the folder's 20-byte ID.
    id: String,
    /// The key it was added with (empty when stored by an older stand-in).
    secret: String,
    /// Unix seconds.
    added: u64,
    prefs: Prefs,
    known_hosts: Vec<String>,
}

impl Folder {
    fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A checked config: its folders (config mode) or, with no folder and a
/// `webui` that has `listen`, the interface to serve (WebUI mode).
struct Config {
    raw: Value,
    folders: Vec<Folder>,
    webui: Option<(webui::WebUi, webui::Defaults)>,
}

/// Read and check a config the way btsync does before it starts (or
/// reloads): its folders, or btsync's message for why not. Checks the
/// stand-in adds (folder exists, key well formed) come after.
fn read_config(path: &Path) -> Result<Config, String> {
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
    let not_modelled = config["webui"].as_object().and_then(|map| {
        WEBUI_KEYS_NOT_MODELLED
            .iter()
            .find(|key| map.contains_key(**key))
    });
    if let Some(key) = not_modelled {
        return Err(format!("stand-in: webui.{key} is not modelled"));
    }
    check_keys(&config["webui"], WEBUI_KEYS)?;
    let storage = config["storage_path"].as_str().unwrap_or("");
    if !Path::new(storage).is_dir() {
        return Err("Storage path specified in config file does not exist.".into());
    }
    // STAND_IN_NO_WEBUI=1: an engine without the interface (another
    // version): a config without folders is then refused as 1.4.111 refuses it.
    let listen = config["webui"]["listen"]
        .as_str()
        .filter(|_| std::env::var("STAND_IN_NO_WEBUI").as_deref() != Ok("1"));
    if listed.is_empty() && listen.is_none() {
        return Err(NO_FOLDER.into());
    }
    if listed.is_empty() {
        let (Some(login), Some(password)) = (
            config["webui"]["login"].as_str(),
            config["webui"]["password"].as_str(),
        ) else {
            return Err("stand-in: a webui needs a login and a password".into());
        };
        let flag = |key: &str, default: bool| {
            config[format!("folder_defaults.{key}")]
                .as_bool()
                .unwrap_or(default)
        };
        let known_hosts: Vec<String> = config["folder_defaults.known_hosts"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        let defaults = webui::Defaults {
            prefs: Prefs {
                relay: flag("use_relay", true),
                usetracker: flag("use_tracker", true),
                searchlan: flag("use_lan_broadcast", true),
                searchdht: flag("use_dht", false),
                deletetotrash: flag("delete_to_trash", true),
                usehosts: !known_hosts.is_empty(),
            },
            known_hosts,
        };
        let webui = webui::WebUi {
            listen: listen.unwrap_or_default().to_owned(),
            login: login.to_owned(),
            password: password.to_owned(),
        };
        return Ok(Config {
            raw: config,
            folders: Vec::new(),
            webui: Some((webui, defaults)),
        });
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
        let flag = |key: &str, default: bool| folder[key].as_bool().unwrap_or(default);
        let known_hosts = strings(&folder["known_hosts"]);
        folders.push(Folder {
            dir: PathBuf::from(dir),
            id: folder_id(secret),
            secret: secret.to_owned(),
            added: webui::now(),
            // Assumed, not seen: the WebUI defaults where the config says nothing.
            prefs: Prefs {
                relay: flag("use_relay_server", true),
                usetracker: flag("use_tracker", true),
                searchlan: flag("search_lan", true),
                searchdht: flag("use_dht", false),
                deletetotrash: flag("use_sync_trash", true),
                usehosts: !known_hosts.is_empty(),
            },
            known_hosts,
        });
    }
    Ok(Config {
        raw: config,
        folders,
        webui: None,
    })
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
                            secret: f["secret"].as_str().unwrap_or("").to_owned(),
                            added: f["added"].as_u64().unwrap_or(0),
                            prefs: Prefs::from_json(&f["prefs"]),
                            known_hosts: strings(&f["known_hosts"]),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn save(&self, folders: &[Folder]) {
        let list: Vec<Value> = folders
            .iter()
            .map(|f| {
                json!({
                    "dir": f.dir, "id": f.id, "secret": f.secret, "added": f.added,
                    "prefs": f.prefs.to_json(), "known_hosts": f.known_hosts,
                })
            })
            .collect();
        write_atomically(&self.file(), &json!({ "folders": list }));
    }

    /// Whether the WebUI's license was agreed to, kept (like 1.4.111) in
    /// the storage: `settings.dat` (the stand-in's own JSON).
    fn license_agreed(&self) -> bool {
        fs::read_to_string(self.dir.join("settings.dat"))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|settings| settings["license_agreed"] == json!(true))
    }

    fn agree_license(&self) {
        write_atomically(
            &self.dir.join("settings.dat"),
            &json!({"license_agreed": true}),
        );
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

fn write_atomically(path: &Path, value: &Value) {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    if fs::write(&temp, value.to_string()).is_ok() {
        let _ = fs::rename(&temp, path);
    }
}

/// The folders being served, each with its database held open.
struct Serving {
    storage: Storage,
    folders: Vec<(Folder, Option<fs::File>)>,
    problems: Vec<String>,
    /// Counts changes to the folder list, so the main loop knows when to
    /// look again at what it watches.
    changes: u64,
}

impl Serving {
    fn has(&self, id: &str) -> bool {
        self.folders.iter().any(|(f, _)| f.id == id)
    }

    /// The folder added with exactly this key (1.4.111 finds no folder by
    /// its read-only key).
    fn position_by_secret(&self, secret: &str) -> Option<usize> {
        self.folders
            .iter()
            .position(|(f, _)| !f.secret.is_empty() && f.secret == secret)
    }

    fn save(&mut self) {
        let list: Vec<Folder> = self.folders.iter().map(|(f, _)| f.clone()).collect();
        self.storage.save(&list);
        self.changes += 1;
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
        self.save();
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
    // Shared with the WebUI's threads for the life of the process.
    let log: Option<&'static Log> = log_path.map(|path| &*Box::leak(Box::new(Log { path })));
    let (Some(config_path), true) = (config_path, nodaemon) else {
        refuse(
            log,
            "usage: btsync --nodaemon --config FILE (refusing to daemonize)",
        );
    };
    // Installed before anything can signal us, as the real engine does, and
    // before the config work (key derivations take a while in a debug build).
    let mut signals = Signals::new(WATCHED).unwrap_or_else(|e| refuse(log, &e.to_string()));
    let config = match read_config(&config_path) {
        Ok(found) => found,
        Err(message) if message.starts_with("stand-in: ") => refuse(log, &message),
        Err(message) => refuse_like_btsync(log, &message),
    };
    let folders = &config.folders;

    let storage = Storage {
        dir: PathBuf::from(config.raw["storage_path"].as_str().unwrap_or("")),
    };
    let stored = storage.load();
    let mut serving = Serving {
        storage,
        folders: Vec::new(),
        problems: Vec::new(),
        changes: 0,
    };
    // Like 1.4.111: every stored folder is loaded (and logged) first, then
    // the config's are added, those already loaded with an error; a stored
    // folder the config no longer has is let go at once. With the WebUI
    // (no folder in the config) every stored folder is served.
    for folder in &stored {
        say(&format!("Loaded folder {}", folder.dir.display()));
    }
    if config.webui.is_some() {
        for folder in &stored {
            if !serving.has(&folder.id) {
                serving.serve(folder);
            }
        }
        serving.save();
    } else {
        for folder in &stored {
            if !folders.iter().any(|f| f.id == folder.id) {
                // Never re-created: 1.4.111 leaves a vanished stored folder gone.
                serving.storage.forget(folder);
            }
        }
        for folder in folders {
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
        serving.apply(folders);
    }
    let serving = Arc::new(Mutex::new(serving));
    let quit = Arc::new(AtomicBool::new(false));
    let mut listening = None;
    if let Some((webui, defaults)) = config.webui.clone() {
        let listener = TcpListener::bind(&webui.listen).unwrap_or_else(|e| {
            refuse(
                log,
                &format!("stand-in: cannot listen on {}: {e}", webui.listen),
            )
        });
        listening = listener.local_addr().ok().map(|a| a.to_string());
        let api = webui::Api::new(
            webui,
            defaults,
            Arc::clone(&serving),
            log,
            Arc::clone(&quit),
        );
        Arc::new(api).serve(listener);
    }
    let lock = || serving.lock().unwrap_or_else(|e| e.into_inner());
    let (mut watched, mut seen_changes) = {
        let serving = lock();
        (serving.watched(), serving.changes)
    };
    let (uid, gid) = ids();
    if let Some(log) = log {
        let serving = lock();
        log.record(json!({
            "event": "start",
            "folders": serving.names(),
            "loaded": stored.iter().map(|f| f.dir.clone()).collect::<Vec<_>>(),
            "uid": uid,
            "gid": gid,
            "device_name": config.raw["device_name"],
            "listening_port": config.raw["listening_port"],
            "webui": listening,
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
    let webui_mode = config.webui.is_some();
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
                let mut serving = lock();
                match read_config(&config_path) {
                    // 1.4.111 with the WebUI keeps its folders on a reload.
                    Ok(reread) if webui_mode && reread.webui.is_some() => {
                        if let Some(log) = log {
                            log.record(json!({"event": "reload", "folders": serving.names()}));
                        }
                    }
                    Ok(reread) if webui_mode != reread.webui.is_some() => {
                        let message = "stand-in: switching between config folders and the WebUI on a reload is not modelled";
                        say(&format!("Error while reloading config: {message}"));
                        if let Some(log) = log {
                            log.record(json!({"event": "reload_failed", "reason": message}));
                        }
                    }
                    Ok(reread) => {
                        for folder in &reread.folders {
                            if serving.has(&folder.id) {
                                say(&format!(
                                    "Error while adding folder {}: Selected folder is already added to BitTorrent Sync.",
                                    folder.dir.display()
                                ));
                            }
                        }
                        serving.apply(&reread.folders);
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
        // The license refused over the WebUI: 1.4.111 shuts down.
        if quit.load(Ordering::SeqCst) {
            finish(0);
        }
        {
            let serving = lock();
            if serving.changes != seen_changes {
                seen_changes = serving.changes;
                watched = serving.watched();
                vanished.retain(|path| watched.contains(path));
            }
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

/// The strings of a JSON array (none for anything else).
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
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
