//! The stand-in's WebUI mode: the JSON interface btsync 1.4.111 serves on
//! `webui.listen` when its config lists no folder. What it answers, and
//! where it is stricter than the real engine, is listed in the header of
//! `stand_in_engine.rs`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::{Folder, Log, Prefs, Serving, folder_id, valid_secret};

/// 1.4.111 as `version` gives it: 0x0104006F.
pub const VERSION: u64 = 17039471;
/// Request line and headers; curl and syncbox send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Sessions remembered; the oldest is forgotten first.
const MAX_SESSIONS: usize = 64;

const NOT_EMPTY: &str = "Destination folder is not empty.  Add anyway?";
const ALREADY_ADDED: &str = "Selected folder is already added to BitTorrent Sync.";
const CANNOT_OPEN: &str = "Can't open the destination folder.";
const INVALID_SECRET: &str = "This secret is invalid.\nPlease generate a new secret or enter the secret for your shared folder.";
const NO_FOLDER_BY_SECRET: &str = "can't find folder by secret";

/// The `webui` object of the config.
#[derive(Clone)]
pub struct WebUi {
    pub listen: String,
    pub login: String,
    pub password: String,
}

/// What a folder added over the interface starts with: the config's
/// top-level `folder_defaults.*` keys.
#[derive(Clone)]
pub struct Defaults {
    pub prefs: Prefs,
    pub known_hosts: Vec<String>,
}

pub struct Api {
    pub webui: WebUi,
    pub defaults: Defaults,
    pub serving: Arc<Mutex<Serving>>,
    pub log: Option<&'static Log>,
    /// Set when the interface is told the license is refused: the real
    /// engine shuts down then.
    pub quit: Arc<AtomicBool>,
    sessions: Mutex<Vec<(String, String)>>,
    counter: AtomicU64,
    /// Folders (by name) removed in this run, and those given again after.
    retaken: Mutex<Retaken>,
}

#[derive(Default)]
struct Retaken {
    removed: BTreeSet<String>,
    readded: BTreeSet<String>,
}

impl Api {
    pub fn new(
        webui: WebUi,
        defaults: Defaults,
        serving: Arc<Mutex<Serving>>,
        log: Option<&'static Log>,
        quit: Arc<AtomicBool>,
    ) -> Api {
        Api {
            webui,
            defaults,
            serving,
            log,
            quit,
            sessions: Mutex::new(Vec::new()),
            counter: AtomicU64::new(0),
            retaken: Mutex::new(Retaken::default()),
        }
    }

    /// Answer every client on its own thread, one request per connection.
    pub fn serve(self: Arc<Self>, listener: TcpListener) {
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let api = Arc::clone(&self);
                std::thread::spawn(move || api.client(stream));
            }
        });
    }

    fn record(&self, event: Value) {
        if let Some(log) = self.log {
            log.record(event);
        }
    }

    fn client(&self, mut stream: TcpStream) {
        let Some(request) = read_head(&mut stream) else {
            return;
        };
        let reply = self.answer(&request);
        let _ = stream.write_all(&reply.bytes());
        let _ = stream.flush();
        if reply.quit_after {
            self.quit.store(true, Ordering::SeqCst);
        }
    }

    fn answer(&self, request: &Request) -> Reply {
        let expected = format!("{}:{}", self.webui.login, self.webui.password);
        let authorized = request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b64| data_encoding::BASE64.decode(b64.trim().as_bytes()).ok())
            .is_some_and(|pair| pair == expected.as_bytes());
        if !authorized {
            self.record(json!({"event": "api", "status": 401}));
            return Reply::new(401, "Unauthorized", "text/html", Vec::new())
                .header("WWW-Authenticate", "Basic realm=\"BitTorrent Sync\"");
        }
        let (path, query) = request
            .target
            .split_once('?')
            .unwrap_or((&request.target, ""));
        match path {
            "/gui/token.html" => self.token(),
            "/gui/" if query.is_empty() => Reply::new(
                200,
                "OK",
                "text/html",
                b"<!DOCTYPE html><html><body>stand-in</body></html>".to_vec(),
            ),
            "/gui/" => self.call(request, &parse_query(query)),
            "/" => Reply::new(301, "Moved Permanently", "text/html", Vec::new())
                .header("Location", "/gui/"),
            _ => Reply::new(404, "Not Found", "text/html", Vec::new()),
        }
    }

    fn fresh(&self, len: usize) -> String {
        use sha1::{Digest, Sha1};
        let mut text = String::new();
        while text.len() < len {
            let n = self.counter.fetch_add(1, Ordering::SeqCst);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let seed = format!("{n}:{nanos}:{}", std::process::id());
            text.extend(
                Sha1::digest(seed.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}")),
            );
        }
        text.truncate(len);
        text
    }

    fn token(&self) -> Reply {
        let (guid, token) = (self.fresh(20), self.fresh(64));
        if let Ok(mut sessions) = self.sessions.lock() {
            if sessions.len() >= MAX_SESSIONS {
                sessions.remove(0);
            }
            sessions.push((guid.clone(), token.clone()));
        }
        self.record(json!({"event": "api", "action": "token", "status": 200}));
        let body = format!("<html><div id='token' style='display:none;'>{token}</div></html>");
        Reply::new(200, "OK", "text/html", body.into_bytes())
            .header("Set-Cookie", &format!("GUID={guid}; path=/"))
    }

    fn call(&self, request: &Request, params: &[(String, String)]) -> Reply {
        let guid = request.cookie("GUID");
        let token = param(params, "token");
        let action = param(params, "action");
        let known = match (&guid, token) {
            (Some(guid), Some(token)) => self
                .sessions
                .lock()
                .is_ok_and(|sessions| sessions.iter().any(|(g, t)| g == guid && t == token)),
            _ => false,
        };
        let Some(action) = action.filter(|_| known) else {
            self.record(json!({"event": "api", "action": action, "status": 400}));
            let reply = Reply::new(400, "ERROR", "text/html", b"\r\ninvalid request".to_vec());
            // Like 1.4.111: a request without a cookie is given one.
            return if guid.is_none() {
                reply.header("Set-Cookie", &format!("GUID={}; path=/", self.fresh(20)))
            } else {
                reply
            };
        };
        let Ok(mut serving) = self.serving.lock() else {
            return json_reply(
                500,
                &json!({"error": "stand-in: state lost", "status": 500}),
            );
        };
        let (status, body, folder) = self.act(&mut serving, action, params);
        drop(serving);
        let mut event = json!({"event": "api", "action": action, "status": status});
        if let Some(folder) = folder {
            event["folder"] = json!(folder);
        }
        if let Some(code) = body["value"]["error"].as_i64().filter(|c| *c != 0) {
            event["error"] = json!(code);
        }
        self.record(event);
        let mut reply = json_reply(status, &body);
        if action == "setlicenseagreed" && body["error"].is_string() && status == 200 {
            reply.quit_after = true;
        }
        reply
    }

    /// One action: (status, body, name of the folder it was about).
    fn act(
        &self,
        serving: &mut Serving,
        action: &str,
        params: &[(String, String)],
    ) -> (u16, Value, Option<String>) {
        let fail = |status: u16, message: &str| {
            (status, json!({"error": message, "status": status}), None)
        };
        let agreed = serving.storage.license_agreed();
        if !agreed {
            if action != "setlicenseagreed" {
                return fail(500, "Need to agree with the license");
            }
            return match param(params, "value") {
                None => fail(500, "'value' parameter is required"),
                Some("true") => {
                    serving.storage.agree_license();
                    (200, json!({"status": 200, "value": {"error": 0}}), None)
                }
                Some(_) => fail(200, "User doesn't agree with the license"),
            };
        }
        let secret = param(params, "secret");
        let found = secret.and_then(|s| serving.position_by_secret(s));
        let name = found.map(|at| serving.folders[at].0.name());
        match action {
            "version" => (200, json!({"status": 200, "value": VERSION}), None),
            "addsyncfolder" => self.add(serving, params),
            "removefolder" => {
                if secret.is_none() {
                    return fail(500, "'secret' parameter is required");
                }
                if let Some(at) = found {
                    let id = serving.folders[at].0.id.clone();
                    serving.drop_folder(&id);
                    serving.save();
                    if let (Ok(mut retaken), Some(name)) = (self.retaken.lock(), &name) {
                        retaken.removed.insert(name.clone());
                    }
                }
                (200, json!({"status": 200}), name)
            }
            "getsyncfolders" => {
                let peers = peers_file();
                let readded = self
                    .retaken
                    .lock()
                    .map(|r| r.readded.clone())
                    .unwrap_or_default();
                let folders: Vec<Value> = serving
                    .folders
                    .iter()
                    .map(|(f, _)| folder_json(f, &peers, readded.contains(&f.name())))
                    .collect();
                (
                    200,
                    json!({
                        "folders": folders,
                        "loading": false,
                        "speed": {"downspeed": 0, "upspeed": 0},
                        "status": 200,
                    }),
                    None,
                )
            }
            "folderpref" => match found {
                Some(at) => {
                    let folder = &serving.folders[at].0;
                    let p = &folder.prefs;
                    let value = json!({
                        "canencrypt": false,
                        "deletetotrash": p.deletetotrash,
                        "iswritable": writable(&folder.secret),
                        "readonlysecret": read_only_secret(&folder.secret),
                        "relay": p.relay,
                        "searchdht": p.searchdht,
                        "searchlan": p.searchlan,
                        "secrettype": 1,
                        "usehosts": p.usehosts,
                        "usetracker": p.usetracker,
                    });
                    (200, json!({"status": 200, "value": value}), name)
                }
                None => fail(500, NO_FOLDER_BY_SECRET),
            },
            "setfolderpref" => match found {
                Some(at) => {
                    let prefs = &mut serving.folders[at].0.prefs;
                    for (key, slot) in [
                        ("relay", &mut prefs.relay),
                        ("usetracker", &mut prefs.usetracker),
                        ("searchlan", &mut prefs.searchlan),
                        ("searchdht", &mut prefs.searchdht),
                        ("deletetotrash", &mut prefs.deletetotrash),
                        ("usehosts", &mut prefs.usehosts),
                    ] {
                        // 1.4.111 stores anything but `true` (even `1`) as false.
                        if let Some(value) = param(params, key) {
                            *slot = value == "true";
                        }
                    }
                    serving.save();
                    (200, json!({"status": 200}), name)
                }
                None => fail(500, NO_FOLDER_BY_SECRET),
            },
            "knownhosts" => match found {
                Some(at) => {
                    let hosts: Vec<Value> = serving.folders[at]
                        .0
                        .known_hosts
                        .iter()
                        .enumerate()
                        .map(|(index, peer)| json!({"index": index, "peer": peer}))
                        .collect();
                    (200, json!({"status": 200, "value": hosts}), name)
                }
                None => fail(500, NO_FOLDER_BY_SECRET),
            },
            "addknownhost" => match (found, param(params, "addr"), param(params, "port")) {
                (Some(at), Some(addr), Some(port)) => {
                    let port = leading_number(port);
                    serving.folders[at]
                        .0
                        .known_hosts
                        .push(format!("{addr}:{port}"));
                    serving.save();
                    (200, json!({"status": 200}), name)
                }
                _ => fail(500, "'secret', 'addr', 'port' parameters are required"),
            },
            "removeknownhosts" => match (found, param(params, "index")) {
                (Some(at), Some(index)) => {
                    let index = leading_number(index) as usize;
                    let hosts = &mut serving.folders[at].0.known_hosts;
                    if index < hosts.len() {
                        hosts.remove(index);
                        serving.save();
                    }
                    (200, json!({"status": 200}), name)
                }
                _ => fail(500, "'secret' and 'index' parameters are required"),
            },
            _ => fail(400, "unknown function"),
        }
    }

    fn add(
        &self,
        serving: &mut Serving,
        params: &[(String, String)],
    ) -> (u16, Value, Option<String>) {
        let Some(path) = param(params, "path") else {
            return (
                500,
                json!({"error": "'path' parameter is required", "status": 500}),
                None,
            );
        };
        let secret = match param(params, "secret") {
            Some(secret) => secret.to_owned(),
            // 1.4.111 makes a new read-write key when none is given.
            None => match syncbox::keys::Key::generate() {
                Ok(key) => key.expose().to_owned(),
                Err(e) => {
                    return (
                        500,
                        json!({"error": format!("stand-in: {e}"), "status": 500}),
                        None,
                    );
                }
            },
        };
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let refuse = |code: u16, message: &str| {
            (
                200,
                json!({"status": 200, "value": {
                    "error": code, "message": message, "path": path, "secret": secret,
                }}),
                name.clone(),
            )
        };
        if !valid_secret(&secret) || syncbox::keys::Key::parse(&secret).is_err() {
            return refuse(201, INVALID_SECRET);
        }
        let id = folder_id(&secret);
        let dir = PathBuf::from(path);
        if serving.has(&id) || serving.folders.iter().any(|(f, _)| same_path(&f.dir, &dir)) {
            return refuse(200, ALREADY_ADDED);
        }
        // Stricter than 1.4.111 (which takes a relative path somewhere):
        // the stand-in wants an absolute one.
        if !dir.is_absolute() {
            return refuse(100, CANNOT_OPEN);
        }
        let has_content = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|item| item.file_name() != ".sync");
        if has_content && param(params, "force") != Some("true") {
            return refuse(105, NOT_EMPTY);
        }
        if std::fs::create_dir_all(&dir).is_err() {
            return refuse(100, CANNOT_OPEN);
        }
        let folder = Folder {
            dir,
            id,
            secret: secret.clone(),
            added: now(),
            prefs: self.defaults.prefs.clone(),
            known_hosts: self.defaults.known_hosts.clone(),
        };
        serving.serve(&folder);
        serving.save();
        if let (Ok(mut retaken), Some(name)) = (self.retaken.lock(), &name)
            && retaken.removed.contains(name)
        {
            retaken.readded.insert(name.clone());
        }
        (
            200,
            json!({"status": 200, "value": {"path": path, "secret": secret}}),
            name,
        )
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    a.components().eq(b.components())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn writable(secret: &str) -> bool {
    syncbox::keys::Key::parse(secret)
        .is_ok_and(|key| key.access() == syncbox::keys::Access::ReadWrite)
}

fn read_only_secret(secret: &str) -> String {
    syncbox::keys::Key::parse(secret)
        .ok()
        .and_then(|key| match key.read_only_form() {
            syncbox::keys::ReadOnlyForm::Key(ro) => Some(ro.expose().to_owned()),
            syncbox::keys::ReadOnlyForm::NeedsEngine => None,
        })
        .unwrap_or_default()
}

/// What `atoi` makes of it, as 1.4.111 reads a port or an index: the
/// leading digits, 0 without any.
fn leading_number(text: &str) -> u64 {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// Files and bytes in the folder, `.sync` left out. The real engine counts
/// them once it has indexed; the stand-in counts at each call.
fn content(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for item in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            if at == dir && item.file_name() == ".sync" {
                continue;
            }
            match item.file_type() {
                Ok(kind) if kind.is_dir() => todo.push(item.path()),
                Ok(kind) if kind.is_file() => {
                    files += 1;
                    bytes += item.metadata().map(|m| m.len()).unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    (files, bytes)
}

/// `readded`: the folder was removed and given again in this run.
fn folder_json(folder: &Folder, peers: &Map<String, Value>, readded: bool) -> Value {
    let (files, size) = content(&folder.dir);
    let name = folder.name();
    let id_bytes: Vec<u8> = (0..folder.id.len() / 2)
        .filter_map(|i| u8::from_str_radix(folder.id.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let mut first = [0u8; 8];
    for (slot, byte) in first.iter_mut().zip(&id_bytes) {
        *slot = *byte;
    }
    let listed: Vec<Value> = peers
        .get(&name)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .enumerate()
                .map(|(n, given)| peer_json(&folder.id, n, given, readded))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "archive": folder.dir.join(".sync/Archive"),
        "archive_files": 0,
        "archive_size": 0,
        "canencrypt": false,
        "date_added": folder.added,
        "down_eta": 0,
        "down_speed": 0,
        "down_status": 100,
        "error": 0,
        "files": files,
        "has_key": true,
        "id": i64::from_be_bytes(first),
        "indexing": false,
        "iswritable": writable(&folder.secret),
        "last_modified": folder.added,
        "name": name,
        "path": folder.dir,
        "peers": listed,
        "readonlysecret": read_only_secret(&folder.secret),
        "secret": folder.secret,
        "secrettype": 1,
        "size": size,
        "status": format!("{size} B in {files} files"),
        "up_eta": 0,
        "up_speed": 0,
        "up_status": 100,
    })
}

/// A peer of `STAND_IN_PEERS` with the fields 1.4.111 gives every peer
/// filled in where the test left them out. `downfiles` (and `upfiles`,
/// which 1.4.111 shows with it) only when given: the real engine shows them
/// only while files are being exchanged. A peer `"unnamed_until_readded"`
/// is named by its address, online as given and nothing else, until the
/// folder was `readded`.
fn peer_json(folder_id: &str, n: usize, given: &Value, readded: bool) -> Value {
    use sha1::{Digest, Sha1};
    let id: String = Sha1::digest(format!("{folder_id}:{n}").as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let mut peer = json!({
        "direct": true,
        "downdiff": 0,
        "id": id,
        "isonline": false,
        "lastreceivedtime": 0,
        "lastsenttime": 0,
        "lastsynctime": 0,
        "name": format!("peer-{n}"),
        "updiff": 0,
    });
    const UNNAMED: &str = "unnamed_until_readded";
    if let (Some(peer), Some(given)) = (peer.as_object_mut(), given.as_object()) {
        if given.get(UNNAMED) == Some(&Value::Bool(true)) && !readded {
            peer.insert("name".into(), json!(format!("127.0.0.1:{}", 40000 + n)));
            if let Some(online) = given.get("isonline") {
                peer.insert("isonline".into(), online.clone());
            }
            return Value::Object(peer.clone());
        }
        for (key, value) in given.iter().filter(|(key, _)| *key != UNNAMED) {
            peer.insert(key.clone(), value.clone());
        }
        if given.contains_key("downfiles") && !given.contains_key("upfiles") {
            peer.insert("upfiles".into(), json!(0));
        }
    }
    peer
}

/// `STAND_IN_PEERS`, read again at each call so a test can change it.
fn peers_file() -> Map<String, Value> {
    std::env::var_os("STAND_IN_PEERS")
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|value| value.as_object().cloned())
        .unwrap_or_default()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = text
            .get(at + 1..at + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[at], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Request {
    target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.header("cookie")?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_owned())
    }
}

/// The request line and headers, at most `MAX_HEAD` bytes within
/// `READ_TIMEOUT`; a body is never needed by this interface and is left unread.
fn read_head(stream: &mut TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Some(Request { target, headers })
}

struct Reply {
    status: u16,
    reason: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    quit_after: bool,
}

impl Reply {
    fn new(status: u16, reason: &'static str, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            reason,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            quit_after: false,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.status,
            self.reason,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Cache-Control: no-cache\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn json_reply(status: u16, body: &Value) -> Reply {
    let reason = if status == 200 { "OK" } else { "ERROR" };
    Reply::new(
        status,
        reason,
        "application/json; charset=utf-8",
        engine_json(body).into_bytes(),
    )
}

/// JSON laid out as 1.4.111 writes it (`{ "a": 1, "b": [  ] }`, keys
/// sorted), so a client's parser meets the same text.
fn engine_json(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[ {} ]",
            items.iter().map(engine_json).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(key, value)| format!(
                    "{}: {}",
                    Value::from(key.as_str()),
                    engine_json(value)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}
