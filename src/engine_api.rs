//! A client of btsync 1.4.111's WebUI JSON interface on a loopback address:
//! the one way to learn, while the engine runs, what it is doing with a
//! folder (see `docs`' note on sync state). Plain HTTP/1.1 over std's TCP,
//! one request per connection.
//!
//! Keys travel in the query string, so nothing this module returns or
//! prints (errors, `Debug`) ever holds a URL, a query, a key, a password or
//! a response body.
//!
//! Seen with the real 1.4.111 and relied on here:
//! - every answer has a `Content-Length` (never chunked) and the engine
//!   keeps the connection open even when asked to close it, so the body
//!   is read by its length, never to the end of the stream;
//! - `POST /gui/token.html` with Basic auth gives the token in the body and
//!   a `GUID` cookie; a call without the cookie, or with a token of an
//!   engine that restarted since, is answered `400 invalid request`; wrong
//!   credentials `401` (empty body);
//! - a fresh storage answers every action with
//!   `{"error":"Need to agree with the license","status":500}` until one
//!   `setlicenseagreed&value=true`, which the storage keeps;
//! - `addsyncfolder` answers HTTP 200 and `"status":200` even when it
//!   refuses: the refusal is `value.error` (see [`Client::add_folder`]);
//! - `removefolder` answers `{"status":200}` for any key, added or not;
//! - the per-folder actions answer `{"error":"can't find folder by
//!   secret","status":500}` for a key the engine does not have
//!   (`addknownhost`: "'secret', 'addr', 'port' parameters are required");
//! - an unknown action is `400` with `{"error":"unknown function"}`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use data_encoding::{BASE64, BASE64URL_NOPAD};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::keys::Key;

/// `version`'s answer from btsync 1.4.111 (0x0104006F).
pub const VERSION_1_4_111: u32 = 0x0104_006F;

/// The most a whole answer may take. `getsyncfolders` takes about 600
/// bytes a folder (302 folders: 179,845 bytes), so this is room for
/// about 7,000 folders.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Headers are a few hundred bytes; anything longer is not the engine.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How long connecting, sending and receiving one answer may take each,
/// unless [`Client::set_timeout`] says otherwise. The engine answers on
/// loopback in milliseconds; a hung engine must not hang its caller.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The most a credentials file may hold.
const MAX_CREDENTIALS_FILE_BYTES: u64 = 4096;

/// Random bytes behind each generated login and password: 18 bytes are
/// exactly 24 url-safe base64 characters (144 bits).
const CREDENTIAL_RANDOM_BYTES: usize = 18;

const LICENSE_NOT_AGREED: &str = "Need to agree with the license";
const NO_SUCH_FOLDER: &str = "can't find folder by secret";
const UNKNOWN_ACTION: &str = "unknown function";

/// The login and password of the engine's interface.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    login: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Credentials as given; `None` if Basic auth cannot carry them (an
    /// empty login, a ':' in the login, a control character, non-ASCII).
    pub fn new(login: &str, password: &str) -> Option<Credentials> {
        let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        let usable =
            !login.is_empty() && !login.contains(':') && printable(login) && printable(password);
        usable.then(|| Credentials {
            login: login.to_owned(),
            password: password.to_owned(),
        })
    }

    /// New random credentials from the OS random source: 24 url-safe
    /// characters each.
    pub fn generate() -> io::Result<Credentials> {
        let login = random_text()?;
        let password = random_text()?;
        Ok(Credentials { login, password })
    }

    pub fn login(&self) -> &str {
        &self.login
    }

    /// Only the engine's config may show it.
    pub fn expose_password(&self) -> &str {
        &self.password
    }

    /// The credentials kept in `path` (a small JSON object `{"login": ..,
    /// "password": ..}`), made and stored there (mode 0600, atomically)
    /// when the file does not exist yet. The file is read as an untrusted
    /// one ([`fsutil::read_untrusted`]): a link or a FIFO there is refused.
    pub fn load_or_create(path: &Path) -> Result<Credentials> {
        match fsutil::read_untrusted(path, MAX_CREDENTIALS_FILE_BYTES) {
            Ok(bytes) => Credentials::from_file_contents(&bytes).map_err(|problem| {
                Error::EngineCredentials {
                    path: path.to_owned(),
                    problem,
                }
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let credentials = Credentials::generate().map_err(|e| {
                    Error::io("cannot make credentials for the engine's interface", e)
                })?;
                fsutil::write_atomic(path, credentials.file_contents().as_bytes(), 0o600)?;
                Ok(credentials)
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::EngineCredentials {
                path: path.to_owned(),
                problem: e.to_string(),
            }),
            Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
        }
    }

    fn file_contents(&self) -> String {
        let mut text =
            serde_json::json!({"login": self.login, "password": self.password}).to_string();
        text.push('\n');
        text
    }

    /// The problem never quotes the file: it holds a password.
    fn from_file_contents(bytes: &[u8]) -> std::result::Result<Credentials, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|_| "it is not a JSON object".to_owned())?;
        let text = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("it has no text '{name}'"))
        };
        let (login, password) = (text("login")?, text("password")?);
        Credentials::new(login, password).ok_or_else(|| {
            "its login or password holds characters Basic auth cannot carry".to_owned()
        })
    }

    fn basic_auth(&self) -> String {
        BASE64.encode(format!("{}:{}", self.login, self.password).as_bytes())
    }
}

fn random_text() -> io::Result<String> {
    let mut bytes = [0u8; CREDENTIAL_RANDOM_BYTES];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut bytes)
        .map_err(|e| io::Error::other(format!("the OS random source failed: {e}")))?;
    Ok(BASE64URL_NOPAD.encode(&bytes))
}

/// A folder's discovery and removal preferences (`folderpref`,
/// `setfolderpref`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderPrefs {
    pub relay: bool,
    pub use_tracker: bool,
    pub search_lan: bool,
    pub search_dht: bool,
    pub delete_to_trash: bool,
    pub use_known_hosts: bool,
}

impl FolderPrefs {
    /// What syncbox wants for every folder: peers only from the known
    /// hosts, removed files kept in the archive.
    pub const PRIVATE: FolderPrefs = FolderPrefs {
        relay: false,
        use_tracker: false,
        search_lan: false,
        search_dht: false,
        delete_to_trash: true,
        use_known_hosts: true,
    };

    /// The engine's names for them.
    fn named(&self) -> [(&'static str, bool); 6] {
        [
            ("relay", self.relay),
            ("usetracker", self.use_tracker),
            ("searchlan", self.search_lan),
            ("searchdht", self.search_dht),
            ("deletetotrash", self.delete_to_trash),
            ("usehosts", self.use_known_hosts),
        ]
    }
}

/// One folder as `getsyncfolders` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderState {
    pub path: PathBuf,
    /// The key the folder was added with (`Debug` does not show it).
    pub key: Key,
    /// Files the engine knows of in the folder.
    pub files: u64,
    /// Their size in bytes.
    pub size: u64,
    pub peers: Vec<PeerState>,
}

/// A peer of a folder, as `getsyncfolders` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    /// `isonline`
    pub online: bool,
    /// `lastsynctime`: when the last exchange with it completed, unix
    /// seconds; 0 when never.
    pub last_sync: u64,
    /// `downdiff`: bytes it has that this node lacks. Not to be trusted
    /// alone: it was 0 for 30 s while files were missing.
    pub down_bytes: u64,
    /// `downfiles`: files left to get from it. The key is only there while
    /// an exchange is under way (`Some(0)` included).
    pub down_files: Option<u64>,
    /// `name`: its device name (its address until it said it).
    pub name: Option<String>,
    /// `id`: its peer id, in hex.
    pub id: Option<String>,
}

/// Why a call to the engine's interface failed. No message ever holds a
/// URL, a query, a key, a password or what the engine answered.
#[derive(Debug)]
pub enum ApiError {
    /// Nothing accepted a connection (the engine is not up yet, or died).
    Connect { addr: SocketAddr, source: io::Error },
    /// The exchange broke off or took longer than the timeout.
    Exchange {
        addr: SocketAddr,
        action: &'static str,
        source: io::Error,
    },
    /// The engine refused the credentials.
    Unauthorized { addr: SocketAddr },
    /// An HTTP or JSON status other than 200 that has no meaning of its own.
    Status { action: &'static str, status: u64 },
    /// An answer this client cannot read; `what` says what was wrong.
    Unexpected {
        action: &'static str,
        what: &'static str,
    },
    /// The answer was larger than [`MAX_ANSWER_BYTES`].
    TooBig { action: &'static str },
    /// The engine does not know this action (another engine version?).
    UnknownAction { action: &'static str },
    /// A per-folder action with a key the engine has no folder for.
    NoSuchFolder { action: &'static str },
    /// `add_folder` with a relative path: the engine would take it as
    /// relative to its own working directory.
    PathNotAbsolute { path: PathBuf },
    /// The engine cannot use the path as a folder (a file, a path under a
    /// file, a directory it may not create or open).
    CannotOpenFolder { path: PathBuf },
    /// The folder is there already, at this path with this key.
    FolderAlreadyAdded { path: PathBuf },
    /// The key (or its read-only or read-write form) is the key of the
    /// folder at `other`: the engine keeps one folder per key.
    KeyInUse { path: PathBuf, other: PathBuf },
    /// The path is the path of a folder with another key.
    PathInUse { path: PathBuf },
    /// The engine refused the key as invalid.
    KeyRefused { path: PathBuf },
    /// `addsyncfolder` refused with an error number this client does not know.
    AddRefused { path: PathBuf, code: i64 },
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Connect { addr, source } => write!(
                f,
                "cannot connect to the engine's interface on {addr}: {source}"
            ),
            ApiError::Exchange {
                addr,
                action,
                source,
            } => write!(
                f,
                "asking the engine's interface on {addr} for '{action}' failed: {}",
                describe_io(source)
            ),
            ApiError::Unauthorized { addr } => write!(
                f,
                "the engine's interface on {addr} answered 401: it refused the login and \
                 password syncbox gave it (the engine's config and syncbox's credentials \
                 file differ)"
            ),
            ApiError::Status { action, status } => {
                write!(f, "the engine's interface answered {status} to '{action}'")
            }
            ApiError::Unexpected { action, what } => write!(
                f,
                "the engine's interface answered something unexpected to '{action}' ({what})"
            ),
            ApiError::TooBig { action } => write!(
                f,
                "the engine's interface answered '{action}' with more than {} MiB",
                MAX_ANSWER_BYTES / (1024 * 1024)
            ),
            ApiError::UnknownAction { action } => write!(
                f,
                "the engine's interface does not know '{action}' (is the engine btsync 1.4?)"
            ),
            ApiError::NoSuchFolder { action } => write!(
                f,
                "the engine's interface answered '{action}': it has no folder with that key"
            ),
            ApiError::PathNotAbsolute { path } => write!(
                f,
                "{}: the engine needs an absolute folder path",
                path.display()
            ),
            ApiError::CannotOpenFolder { path } => write!(
                f,
                "{}: the engine cannot open it as a folder (is it a file, or under one?)",
                path.display()
            ),
            ApiError::FolderAlreadyAdded { path } => write!(
                f,
                "{}: the engine has this folder with this key already",
                path.display()
            ),
            ApiError::KeyInUse { path, other } => write!(
                f,
                "{}: the engine syncs {} with this key (or its read-only or read-write \
                 form) and keeps one folder per key",
                path.display(),
                other.display()
            ),
            ApiError::PathInUse { path } => write!(
                f,
                "{}: the engine has this folder already, with another key",
                path.display()
            ),
            ApiError::KeyRefused { path } => write!(
                f,
                "{}: the engine refused the key as invalid",
                path.display()
            ),
            ApiError::AddRefused { path, code } => write!(
                f,
                "{}: the engine refused to add the folder (its error {code})",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ApiError {}

fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "no answer in time".to_owned(),
        _ => error.to_string(),
    }
}

/// What the engine answered to one request.
struct Answer {
    status: u16,
    /// The `GUID` cookie it set, if any.
    cookie: Option<String>,
    body: Vec<u8>,
}

/// A token and the cookie that goes with it.
struct Session {
    token: String,
    cookie: String,
}

/// A client of one engine's interface. Calls take `&mut self`: the session
/// is fetched on first use and renewed when the engine forgot it.
pub struct Client {
    addr: SocketAddr,
    credentials: Credentials,
    timeout: Duration,
    session: Option<Session>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .field("session", &self.session.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    pub fn new(addr: SocketAddr, credentials: Credentials) -> Client {
        Client {
            addr,
            credentials,
            timeout: DEFAULT_TIMEOUT,
            session: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How long connecting, sending, and receiving a whole answer may take
    /// each (a zero duration is taken as one millisecond).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout.max(Duration::from_millis(1));
    }

    /// The engine's version number (`VERSION_1_4_111` for 1.4.111).
    pub fn version(&mut self) -> std::result::Result<u32, ApiError> {
        const ACTION: &str = "version";
        let answer = self.call(ACTION, &[])?;
        answer
            .get("value")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or(ApiError::Unexpected {
                action: ACTION,
                what: "no version number",
            })
    }

    /// Add the folder at `path` (absolute) with `key`. The engine makes the
    /// directory (parents too) if it is missing, and takes a folder that
    /// holds files as it is (without `force=true` it refuses those:
    /// "Destination folder is not empty", error 105).
    ///
    /// Refusals, as 1.4.111 gives them (`value.error` in an HTTP 200):
    /// 100 "Can't open the destination folder." (a file, a path under a
    /// file, an empty path), 200 "Selected folder is already added" (the
    /// key, or its read-only/read-write form, is in use at any path; or the
    /// path has a folder with another key), 201 "This secret is invalid".
    /// A 200 is told apart by looking at the engine's folders.
    pub fn add_folder(&mut self, path: &Path, key: &Key) -> std::result::Result<(), ApiError> {
        const ACTION: &str = "addsyncfolder";
        if !path.is_absolute() {
            return Err(ApiError::PathNotAbsolute {
                path: path.to_owned(),
            });
        }
        let answer = self.call(
            ACTION,
            &[
                ("path", path.as_os_str().as_bytes()),
                ("secret", key.expose().as_bytes()),
                ("force", b"true"),
            ],
        )?;
        let value = answer.get("value").ok_or(ApiError::Unexpected {
            action: ACTION,
            what: "no value",
        })?;
        let code = match value.get("error") {
            None => return Ok(()),
            Some(code) => code.as_i64().ok_or(ApiError::Unexpected {
                action: ACTION,
                what: "an error that is not a number",
            })?,
        };
        let path = path.to_owned();
        match code {
            0 => Ok(()),
            100 => Err(ApiError::CannotOpenFolder { path }),
            200 => Err(self.why_already_added(path, key)?),
            201 => Err(ApiError::KeyRefused { path }),
            code => Err(ApiError::AddRefused { path, code }),
        }
    }

    /// The engine's error 200 covers three cases; its folders tell which.
    fn why_already_added(
        &mut self,
        path: PathBuf,
        key: &Key,
    ) -> std::result::Result<ApiError, ApiError> {
        let folders = self.folders()?;
        let holder = folders.iter().find(|f| same_folder(&f.key, key));
        Ok(match holder {
            Some(folder) if folder.path == path => ApiError::FolderAlreadyAdded { path },
            Some(folder) => ApiError::KeyInUse {
                path,
                other: folder.path.clone(),
            },
            None => ApiError::PathInUse { path },
        })
    }

    /// Stop syncing the folder of `key`; its files stay. The engine answers
    /// the same whether it had the folder or not, so this does too.
    pub fn remove_folder(&mut self, key: &Key) -> std::result::Result<(), ApiError> {
        self.call("removefolder", &[("secret", key.expose().as_bytes())])
            .map(drop)
    }

    pub fn set_folder_prefs(
        &mut self,
        key: &Key,
        prefs: &FolderPrefs,
    ) -> std::result::Result<(), ApiError> {
        let mut params: Vec<(&str, &[u8])> = vec![("secret", key.expose().as_bytes())];
        for (name, on) in prefs.named() {
            // The engine takes only these words: "1" was stored as false.
            params.push((name, if on { b"true" } else { b"false" }));
        }
        self.call("setfolderpref", &params).map(drop)
    }

    pub fn folder_prefs(&mut self, key: &Key) -> std::result::Result<FolderPrefs, ApiError> {
        const ACTION: &str = "folderpref";
        let answer = self.call(ACTION, &[("secret", key.expose().as_bytes())])?;
        let value = answer.get("value").ok_or(ApiError::Unexpected {
            action: ACTION,
            what: "no value",
        })?;
        let flag = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_bool)
                .ok_or(ApiError::Unexpected {
                    action: ACTION,
                    what: "a preference that is missing or not true/false",
                })
        };
        Ok(FolderPrefs {
            relay: flag("relay")?,
            use_tracker: flag("usetracker")?,
            search_lan: flag("searchlan")?,
            search_dht: flag("searchdht")?,
            delete_to_trash: flag("deletetotrash")?,
            use_known_hosts: flag("usehosts")?,
        })
    }

    /// The folder's known hosts, as `host:port`, in the engine's order.
    pub fn known_hosts(&mut self, key: &Key) -> std::result::Result<Vec<String>, ApiError> {
        const ACTION: &str = "knownhosts";
        let answer = self.call(ACTION, &[("secret", key.expose().as_bytes())])?;
        let unexpected = ApiError::Unexpected {
            action: ACTION,
            what: "no list of hosts",
        };
        let Some(hosts) = answer.get("value").and_then(Value::as_array) else {
            return Err(unexpected);
        };
        hosts
            .iter()
            .map(|host| {
                host.get("peer")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or(ApiError::Unexpected {
                        action: ACTION,
                        what: "a host without a text 'peer'",
                    })
            })
            .collect()
    }

    /// Add a known host to the folder. The engine keeps duplicates: check
    /// [`Client::known_hosts`] first when that matters.
    pub fn add_known_host(
        &mut self,
        key: &Key,
        host: &str,
        port: u16,
    ) -> std::result::Result<(), ApiError> {
        const ACTION: &str = "addknownhost";
        let port = port.to_string();
        let answer = self.call(
            ACTION,
            &[
                ("secret", key.expose().as_bytes()),
                ("addr", host.as_bytes()),
                ("port", port.as_bytes()),
            ],
        );
        match answer {
            // 1.4.111 says "'secret', 'addr', 'port' parameters are
            // required" (500) for a key it has no folder for; all three
            // are always sent.
            Err(ApiError::Status { status: 500, .. }) => {
                Err(ApiError::NoSuchFolder { action: ACTION })
            }
            other => other.map(drop),
        }
    }

    /// Every folder the engine has, with its peers.
    pub fn folders(&mut self) -> std::result::Result<Vec<FolderState>, ApiError> {
        const ACTION: &str = "getsyncfolders";
        let answer = self.call(ACTION, &[("discovery", b"1")])?;
        parse_folders(&answer).map_err(|what| ApiError::Unexpected {
            action: ACTION,
            what,
        })
    }

    /// One action, answered `"status": 200`: the session is renewed once
    /// if the engine forgot it, and the license agreed once if it asks.
    fn call(
        &mut self,
        action: &'static str,
        params: &[(&str, &[u8])],
    ) -> std::result::Result<Value, ApiError> {
        let mut agreed = false;
        loop {
            let (status, json) = self.call_once(action, params)?;
            let error = json.get("error").and_then(Value::as_str);
            if error == Some(LICENSE_NOT_AGREED) && !agreed {
                agreed = true;
                self.agree_to_license()?;
                continue;
            }
            let json_status = json.get("status").and_then(Value::as_u64);
            if status == 200 && json_status == Some(200) {
                return Ok(json);
            }
            return Err(match error {
                Some(NO_SUCH_FOLDER) => ApiError::NoSuchFolder { action },
                Some(UNKNOWN_ACTION) => ApiError::UnknownAction { action },
                _ => ApiError::Status {
                    action,
                    status: json_status
                        .filter(|_| status == 200)
                        .unwrap_or(u64::from(status)),
                },
            });
        }
    }

    /// The engine shows its license once per storage; syncbox's users
    /// agreed to it by choosing the engine.
    fn agree_to_license(&mut self) -> std::result::Result<(), ApiError> {
        const ACTION: &str = "setlicenseagreed";
        let (status, json) = self.call_once(ACTION, &[("value", b"true")])?;
        if status == 200 && json.get("status").and_then(Value::as_u64) == Some(200) {
            Ok(())
        } else {
            Err(ApiError::Status {
                action: ACTION,
                status: u64::from(status),
            })
        }
    }

    /// One action, with a fresh session if the engine no longer knows the
    /// one we had (it restarted): the HTTP status and the JSON answer.
    fn call_once(
        &mut self,
        action: &'static str,
        params: &[(&str, &[u8])],
    ) -> std::result::Result<(u16, Value), ApiError> {
        let mut renewed = false;
        loop {
            let had_session = self.session.is_some();
            let session = match self.session.take() {
                Some(session) => session,
                None => self.new_session()?,
            };
            let mut target = format!(
                "/gui/?token={}&action={action}",
                percent_encode(session.token.as_bytes())
            );
            for (name, value) in params {
                target.push('&');
                target.push_str(name);
                target.push('=');
                target.push_str(&percent_encode(value));
            }
            let answer = self.exchange(action, "GET", &target, Some(&session.cookie))?;
            let json = serde_json::from_slice::<Value>(&answer.body).ok();
            let unknown_action = json
                .as_ref()
                .and_then(|j| j.get("error"))
                .and_then(Value::as_str)
                == Some(UNKNOWN_ACTION);
            let session_refused = answer.status == 401 || (answer.status == 400 && !unknown_action);
            if session_refused && had_session && !renewed {
                renewed = true;
                continue;
            }
            if answer.status == 401 {
                return Err(ApiError::Unauthorized { addr: self.addr });
            }
            if !session_refused {
                self.session = Some(session);
            }
            return match json {
                Some(json) if json.is_object() => Ok((answer.status, json)),
                _ if answer.status != 200 => Err(ApiError::Status {
                    action,
                    status: u64::from(answer.status),
                }),
                _ => Err(ApiError::Unexpected {
                    action,
                    what: "not a JSON object",
                }),
            };
        }
    }

    fn new_session(&mut self) -> std::result::Result<Session, ApiError> {
        const ACTION: &str = "token";
        let answer = self.exchange(ACTION, "POST", "/gui/token.html", None)?;
        match answer.status {
            200 => {}
            401 => return Err(ApiError::Unauthorized { addr: self.addr }),
            status => {
                return Err(ApiError::Status {
                    action: ACTION,
                    status: u64::from(status),
                });
            }
        }
        let token = token_in(&answer.body).ok_or(ApiError::Unexpected {
            action: ACTION,
            what: "no token",
        })?;
        let cookie = answer.cookie.ok_or(ApiError::Unexpected {
            action: ACTION,
            what: "no GUID cookie",
        })?;
        Ok(Session { token, cookie })
    }

    /// One request on a connection of its own.
    fn exchange(
        &self,
        action: &'static str,
        method: &str,
        target: &str,
        cookie: Option<&str>,
    ) -> std::result::Result<Answer, ApiError> {
        let stream = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(|source| {
            ApiError::Connect {
                addr: self.addr,
                source,
            }
        })?;
        let broke = |source| ApiError::Exchange {
            addr: self.addr,
            action,
            source,
        };
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\n",
            self.addr,
            self.credentials.basic_auth()
        );
        if let Some(cookie) = cookie {
            request.push_str(&format!("Cookie: GUID={cookie}\r\n"));
        }
        if method == "POST" {
            request.push_str("Content-Length: 0\r\n");
        }
        request.push_str("Connection: close\r\n\r\n");
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(broke)?;
        (&stream).write_all(request.as_bytes()).map_err(broke)?;
        read_answer(&stream, Instant::now() + self.timeout).map_err(|e| match e {
            ReadError::Io(source) => broke(source),
            ReadError::TooBig => ApiError::TooBig { action },
            ReadError::Malformed(what) => ApiError::Unexpected { action, what },
        })
    }
}

/// Do two keys open the same folder? The engine keeps one folder per key
/// and counts a key's read-only form as the same folder.
fn same_folder(a: &Key, b: &Key) -> bool {
    a == b || a.folder_id().is_some_and(|id| b.folder_id() == Some(id))
}

enum ReadError {
    Io(io::Error),
    TooBig,
    Malformed(&'static str),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

/// Read one answer: headers, then a body of `Content-Length` bytes (or, if
/// there is none, to the end of the stream), all by `deadline`.
fn read_answer(
    mut stream: &TcpStream,
    deadline: Instant,
) -> std::result::Result<Answer, ReadError> {
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let header_end = loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            break end;
        }
        if received.len() > MAX_HEADER_BYTES {
            return Err(ReadError::Malformed("headers too long"));
        }
        let n = read_by(&mut stream, &mut chunk, deadline)?;
        if n == 0 {
            return Err(ReadError::Malformed(
                "the connection closed before the headers ended",
            ));
        }
        received.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&received[..header_end])
        .map_err(|_| ReadError::Malformed("headers that are not text"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1."))
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(ReadError::Malformed("no HTTP status line"))?;
    let mut length = None;
    let mut cookie = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed("a header line without ':'"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| ReadError::Malformed("a Content-Length that is not a number"))?;
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // 1.4.111 never sends one; a chunked body is not read here.
            return Err(ReadError::Malformed("a Transfer-Encoding"));
        } else if name.eq_ignore_ascii_case("set-cookie")
            && let Some(guid) = value
                .split(';')
                .next()
                .and_then(|pair| pair.trim().strip_prefix("GUID="))
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            cookie = Some(guid.to_owned());
        }
    }
    let mut body = received.split_off(header_end + 4);
    if length.is_some_and(|n| n > MAX_ANSWER_BYTES) {
        return Err(ReadError::TooBig);
    }
    let want = length.unwrap_or(MAX_ANSWER_BYTES + 1);
    while body.len() < want {
        let n = read_by(&mut stream, &mut chunk, deadline)?;
        if n == 0 {
            if length.is_some() {
                return Err(ReadError::Malformed(
                    "the connection closed inside the body",
                ));
            }
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(ReadError::TooBig);
    }
    body.truncate(want);
    Ok(Answer {
        status,
        cookie,
        body,
    })
}

/// One read that gives up at `deadline`, so an engine that sends a byte a
/// second cannot hold the caller longer than the timeout.
fn read_by(stream: &mut &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The token in `<html><div id='token' style='display:none;'>TOKEN</div></html>`.
fn token_in(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let after = &text[text.find("id='token'")?..];
    let start = after.find('>')? + 1;
    let token = &after[start..start + after[start..].find('<')?];
    let usable = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    usable.then(|| token.to_owned())
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The folders of a `getsyncfolders` answer. Fields this client does not
/// use are ignored; those it uses must have the expected type.
fn parse_folders(answer: &Value) -> std::result::Result<Vec<FolderState>, &'static str> {
    let folders = answer
        .get("folders")
        .and_then(Value::as_array)
        .ok_or("no list of folders")?;
    folders.iter().map(parse_folder).collect()
}

fn parse_folder(folder: &Value) -> std::result::Result<FolderState, &'static str> {
    let folder = folder.as_object().ok_or("a folder that is not an object")?;
    let path = folder
        .get("path")
        .and_then(Value::as_str)
        .ok_or("a folder without a text 'path'")?;
    let key = folder
        .get("secret")
        .and_then(Value::as_str)
        .and_then(|s| Key::parse(s).ok())
        .ok_or("a folder without a valid key")?;
    let peers = folder
        .get("peers")
        .and_then(Value::as_array)
        .ok_or("a folder without a list of peers")?;
    Ok(FolderState {
        path: PathBuf::from(path),
        key,
        files: number(folder, "files").ok_or("a folder without a number 'files'")?,
        size: number(folder, "size").ok_or("a folder without a number 'size'")?,
        peers: peers
            .iter()
            .map(parse_peer)
            .collect::<std::result::Result<_, _>>()?,
    })
}

fn parse_peer(peer: &Value) -> std::result::Result<PeerState, &'static str> {
    let peer = peer.as_object().ok_or("a peer that is not an object")?;
    let optional_text = |name: &str| match peer.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err("a peer's name or id that is not text"),
    };
    Ok(PeerState {
        online: peer
            .get("isonline")
            .and_then(Value::as_bool)
            .ok_or("a peer without a true/false 'isonline'")?,
        last_sync: number(peer, "lastsynctime").ok_or("a peer without a number 'lastsynctime'")?,
        down_bytes: number(peer, "downdiff").ok_or("a peer without a number 'downdiff'")?,
        down_files: match peer.get("downfiles") {
            None => None,
            Some(n) => Some(
                n.as_u64()
                    .ok_or("a peer's 'downfiles' that is not a number")?,
            ),
        },
        name: optional_text("name")?,
        id: optional_text("id")?,
    })
}

fn number(object: &Map<String, Value>, name: &str) -> Option<u64> {
    object.get(name).and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Mutex};

    const KEY: &str = "AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA";

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            percent_encode(b"/data/a b&c=d%"),
            "%2Fdata%2Fa%20b%26c%3Dd%25"
        );
        assert_eq!(percent_encode(b"Az09-._~"), "Az09-._~");
        assert_eq!(percent_encode(&[0xff, b'+']), "%FF%2B");
    }

    #[test]
    fn the_token_is_read_from_the_engines_page() {
        let page = b"<html><div id='token' style='display:none;'>nR2J_vC-x9AAAAA</div></html>";
        assert_eq!(token_in(page).as_deref(), Some("nR2J_vC-x9AAAAA"));
        assert_eq!(token_in(b"<html><div id='token'></div></html>"), None);
        assert_eq!(token_in(b"<html>no token</html>"), None);
        assert_eq!(token_in(b"<div id='token'>a&b</div>"), None);
    }

    #[test]
    fn generated_credentials_are_random_url_safe_and_never_debug_printed() {
        let one = Credentials::generate().expect("random");
        let two = Credentials::generate().expect("random");
        assert_ne!(one, two);
        for text in [one.login(), one.expose_password()] {
            assert_eq!(text.len(), 24);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
        assert_ne!(one.login(), one.expose_password());
        let shown = format!("{one:?}");
        assert!(!shown.contains(one.expose_password()), "{shown}");
        let client = Client::new("127.0.0.1:1".parse().expect("addr"), one.clone());
        assert!(!format!("{client:?}").contains(one.expose_password()));
    }

    #[test]
    fn credentials_basic_auth_cannot_carry_are_refused() {
        assert!(Credentials::new("a", "b").is_some());
        assert!(Credentials::new("", "b").is_none());
        assert!(Credentials::new("a:b", "c").is_none());
        assert!(Credentials::new("a", "b c").is_none());
        assert!(Credentials::new("a", "b\n").is_none());
        assert!(Credentials::new("\u{e9}", "b").is_none());
        // A ':' in the password is fine: Basic auth splits at the first one.
        assert!(Credentials::new("a", "b:c").is_some());
    }

    fn temp_dir(label: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("syncbox-engine-api-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        dir
    }

    #[test]
    fn credentials_are_made_once_private_and_then_kept() {
        let dir = temp_dir("credentials");
        let path = dir.join("webui.json");
        let made = Credentials::load_or_create(&path).expect("made");
        let meta = std::fs::metadata(&path).expect("written");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let again = Credentials::load_or_create(&path).expect("loaded");
        assert_eq!(made, again);
        let stored: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
        assert_eq!(stored["login"], made.login());
        assert_eq!(stored["password"], made.expose_password());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_credentials_are_refused_without_quoting_them() {
        let dir = temp_dir("damaged");
        let path = dir.join("webui.json");
        for damaged in [
            "hunter2-not-json",
            r#"{"login": "a", "password": 7}"#,
            r#"{"login": "a:hunter2", "password": "p"}"#,
            r#"{"password": "hunter2"}"#,
        ] {
            std::fs::write(&path, damaged).expect("write");
            let error = Credentials::load_or_create(&path).expect_err(damaged);
            assert!(
                matches!(error, Error::EngineCredentials { .. }),
                "{error:?}"
            );
            let shown = error.to_string();
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("webui.json"), "{shown}");
            // Refused, not replaced: the engine's config may still use it.
            assert_eq!(std::fs::read_to_string(&path).expect("kept"), damaged);
        }
        std::fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd", &path).expect("link");
        let error = Credentials::load_or_create(&path).expect_err("a link");
        assert!(
            matches!(error, Error::EngineCredentials { .. }),
            "{error:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A `getsyncfolders` answer of the real 1.4.111 (receiver, mid-sync).
    const FOLDERS: &str = r#"{ "folders": [ { "archive": "/tmp/f2/.sync/Archive",
        "archive_files": 0, "archive_size": 0, "canencrypt": false, "date_added": 1796212890,
        "down_eta": 0, "down_speed": 0, "down_status": 100, "error": 0, "files": 5,
        "has_key": true, "id": -8740735023527712210, "indexing": false, "iswritable": true,
        "last_modified": 1796212890, "name": "f2", "path": "/tmp/f2",
        "peers": [ { "direct": true, "downdiff": 5000, "downfiles": 0,
        "id": "10D3023C4CB2A7275EB703FEAB77FC5D1377C187", "isonline": true,
        "lastreceivedtime": 1796212919, "lastsenttime": 0, "lastsynctime": 0, "name": "e1",
        "updiff": 0, "upfiles": 0 }, { "direct": true, "downdiff": 0, "isonline": false,
        "lastreceivedtime": 0, "lastsenttime": 0, "lastsynctime": 1796212000, "updiff": 0 } ],
        "readonlysecret": "B3MF5NHDCWI6JTVUU2R3LYMQDAK2QCEXG",
        "secret": "AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA", "secrettype": 1, "size": 5000,
        "status": "4.9 kB in 5 files", "up_eta": 0, "up_speed": 0, "up_status": 100 } ],
        "loading": false, "speed": { "downspeed": 0, "upspeed": 0 }, "status": 200 }"#;

    #[test]
    fn folders_are_read_from_the_engines_answer() {
        let answer: Value = serde_json::from_str(FOLDERS).expect("JSON");
        let folders = parse_folders(&answer).expect("folders");
        assert_eq!(folders.len(), 1);
        let folder = &folders[0];
        assert_eq!(folder.path, Path::new("/tmp/f2"));
        assert_eq!(folder.key, Key::parse(KEY).expect("key"));
        assert_eq!((folder.files, folder.size), (5, 5000));
        assert_eq!(
            folder.peers,
            vec![
                PeerState {
                    online: true,
                    last_sync: 0,
                    down_bytes: 5000,
                    down_files: Some(0),
                    name: Some("e1".into()),
                    id: Some("10D3023C4CB2A7275EB703FEAB77FC5D1377C187".into()),
                },
                PeerState {
                    online: false,
                    last_sync: 1796212000,
                    down_bytes: 0,
                    down_files: None,
                    name: None,
                    id: None,
                },
            ]
        );
        assert!(!format!("{folders:?}").contains(KEY));
    }

    #[test]
    fn fields_used_must_have_their_type() {
        for (from, to) in [
            (r#""lastsynctime": 0"#, r#""lastsynctime": "0""#),
            (r#""downfiles": 0"#, r#""downfiles": null"#),
            (r#""isonline": true"#, r#""isonline": 1"#),
            (r#""downdiff": 5000"#, r#""downdiff": -1"#),
            (r#""files": 5"#, r#""files": 5.5"#),
            (r#""path": "/tmp/f2""#, r#""path": 2"#),
            (r#""name": "e1""#, r#""name": 1"#),
            (
                r#""secret": "AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA""#,
                r#""secret": "nope""#,
            ),
        ] {
            assert!(FOLDERS.contains(from), "{from}");
            let answer: Value = serde_json::from_str(&FOLDERS.replacen(from, to, 1)).expect(to);
            assert!(parse_folders(&answer).is_err(), "{to} was taken");
        }
    }

    /// A scripted stand-in for the engine's interface on loopback: `answer`
    /// gets each request's head and gives the whole response.
    struct Fake {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<String>>>,
    }

    fn fake_engine(answer: impl Fn(&str) -> String + Send + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let response = answer(&head);
                seen.lock().expect("lock").push(head);
                let _ = stream.write_all(response.as_bytes());
                // Like the engine: the connection stays open after the
                // answer, so the client must stop at Content-Length.
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(5));
                    drop(stream);
                });
            }
        });
        Fake { addr, requests }
    }

    fn json_response(http: u16, body: &str) -> String {
        format!(
            "HTTP/1.1 {http} X\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\
             Content-Type: application/json; charset=utf-8\r\n\r\n{body}",
            body.len()
        )
    }

    fn token_page(n: usize) -> String {
        let body = format!("<html><div id='token' style='display:none;'>T{n}</div></html>");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nSet-Cookie: GUID=G{n}; path=/\r\n\r\n{body}",
            body.len()
        )
    }

    /// A fake that behaves as the engine: sessions forgotten when
    /// `restarts` is bumped, the license asked for until agreed to.
    fn fake_like_the_engine(restarts: Arc<Mutex<usize>>) -> Fake {
        let agreed = Mutex::new(false);
        let issued = Mutex::new(0usize);
        fake_engine(move |head| {
            let line = head.lines().next().unwrap_or_default().to_owned();
            if !head.contains("Authorization: Basic dXNlcjpwYXNz\r\n") {
                return "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                    .to_owned();
            }
            if line.starts_with("POST /gui/token.html ") {
                let mut n = issued.lock().expect("lock");
                *n += 1;
                return token_page(*n + 1000 * *restarts.lock().expect("lock"));
            }
            let n = *issued.lock().expect("lock") + 1000 * *restarts.lock().expect("lock");
            let valid = line.contains(&format!("token=T{n}&"))
                && head.contains(&format!("Cookie: GUID=G{n}\r\n"));
            if !valid {
                return "HTTP/1.1 400 ERROR\r\nContent-Length: 15\r\n\r\ninvalid request"
                    .to_owned();
            }
            if line.contains("action=setlicenseagreed&value=true ") {
                *agreed.lock().expect("lock") = true;
                return json_response(200, r#"{ "status": 200, "value": { "error": 0 } }"#);
            }
            if !*agreed.lock().expect("lock") {
                return json_response(
                    500,
                    r#"{ "error": "Need to agree with the license", "status": 500 }"#,
                );
            }
            if line.contains("action=version ") {
                return json_response(200, r#"{ "status": 200, "value": 17039471 }"#);
            }
            if line.contains("action=addsyncfolder&") {
                // As 1.4.111 refuses: an HTTP 200 with the error inside.
                let code = if line.contains("bad-key") { 201 } else { 105 };
                return json_response(
                    200,
                    &format!(
                        r#"{{ "status": 200, "value": {{ "error": {code}, "message": "m" }} }}"#
                    ),
                );
            }
            if line.contains("action=knownhosts&") {
                return json_response(
                    500,
                    r#"{ "error": "can't find folder by secret", "status": 500 }"#,
                );
            }
            json_response(400, r#"{ "error": "unknown function", "status": 400 }"#)
        })
    }

    fn user_pass() -> Credentials {
        Credentials::new("user", "pass").expect("credentials")
    }

    #[test]
    fn the_license_is_agreed_once_and_a_forgotten_session_renewed_once() {
        let restarts = Arc::new(Mutex::new(0));
        let fake = fake_like_the_engine(Arc::clone(&restarts));
        let mut client = Client::new(fake.addr, user_pass());
        client.set_timeout(Duration::from_secs(1));
        let started = Instant::now();
        assert_eq!(client.version().expect("version"), VERSION_1_4_111);
        // The fake holds every connection open for 5 s: the answers were
        // read by their length.
        assert!(started.elapsed() < Duration::from_secs(3));
        let lines = |fake: &Fake| -> Vec<String> {
            let requests = fake.requests.lock().expect("lock");
            requests
                .iter()
                .map(|r| r.lines().next().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(
            lines(&fake),
            [
                "POST /gui/token.html HTTP/1.1",
                "GET /gui/?token=T1&action=version HTTP/1.1",
                "GET /gui/?token=T1&action=setlicenseagreed&value=true HTTP/1.1",
                "GET /gui/?token=T1&action=version HTTP/1.1",
            ]
        );
        assert!(
            fake.requests
                .lock()
                .expect("lock")
                .iter()
                .all(|r| r.contains("Connection: close\r\n"))
        );

        // The engine restarted: the old session is refused with a 400.
        *restarts.lock().expect("lock") += 1;
        assert_eq!(client.version().expect("version"), VERSION_1_4_111);
        assert_eq!(
            lines(&fake)[4..],
            [
                "GET /gui/?token=T1&action=version HTTP/1.1",
                "POST /gui/token.html HTTP/1.1",
                "GET /gui/?token=T1002&action=version HTTP/1.1",
            ]
        );
    }

    #[test]
    fn refusals_have_their_own_errors_and_never_show_the_query() {
        let fake = fake_like_the_engine(Arc::new(Mutex::new(0)));
        let mut client = Client::new(fake.addr, user_pass());
        let key = Key::parse(KEY).expect("key");
        let error = client.known_hosts(&key).expect_err("no folder");
        assert!(
            matches!(
                error,
                ApiError::NoSuchFolder {
                    action: "knownhosts"
                }
            ),
            "{error:?}"
        );
        let shown = error.to_string();
        assert!(!shown.contains(KEY) && !shown.contains("token"), "{shown}");
        let last = fake
            .requests
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request");
        assert!(last.contains(&format!("&secret={KEY} ")), "{last}");

        let error = client.folders().expect_err("unknown to the fake");
        assert!(
            matches!(
                error,
                ApiError::UnknownAction {
                    action: "getsyncfolders"
                }
            ),
            "{error:?}"
        );

        let error = client
            .add_folder(Path::new("relative/dir"), &key)
            .expect_err("relative");
        assert!(
            matches!(error, ApiError::PathNotAbsolute { .. }),
            "{error:?}"
        );

        let error = client
            .add_folder(Path::new("/data/bad-key"), &key)
            .expect_err("refused key");
        assert!(matches!(error, ApiError::KeyRefused { .. }), "{error:?}");
        let error = client
            .add_folder(Path::new("/data/other"), &key)
            .expect_err("unknown refusal");
        assert!(
            matches!(error, ApiError::AddRefused { code: 105, .. }),
            "{error:?}"
        );
        let last = fake
            .requests
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request");
        assert!(
            last.starts_with(&format!(
                "GET /gui/?token=T1&action=addsyncfolder&path=%2Fdata%2Fother&secret={KEY}&force=true "
            )),
            "{last}"
        );

        let mut stranger = Client::new(fake.addr, Credentials::new("user", "hunter2").expect("c"));
        let error = stranger.version().expect_err("wrong password");
        assert!(matches!(error, ApiError::Unauthorized { .. }), "{error:?}");
        let shown = error.to_string();
        assert!(
            shown.contains("401") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn an_answer_too_big_is_refused_before_it_is_read() {
        let fake = fake_engine(|head| {
            if head.starts_with("POST") {
                return token_page(1);
            }
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{{",
                MAX_ANSWER_BYTES + 1
            )
        });
        let mut client = Client::new(fake.addr, user_pass());
        let error = client.folders().expect_err("too big");
        assert!(
            matches!(
                error,
                ApiError::TooBig {
                    action: "getsyncfolders"
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_silent_engine_times_out() {
        let fake = fake_engine(|_| String::new());
        let mut client = Client::new(fake.addr, user_pass());
        client.set_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let error = client.version().expect_err("silence");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(error, ApiError::Exchange { .. }), "{error:?}");
        assert!(error.to_string().contains("no answer in time"), "{error}");
    }

    #[test]
    fn nothing_listening_is_a_connect_error() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr")
        };
        let error = Client::new(addr, user_pass())
            .version()
            .expect_err("closed");
        assert!(matches!(error, ApiError::Connect { .. }), "{error:?}");
        assert!(
            error.to_string().starts_with(&format!(
                "cannot connect to the engine's interface on {addr}: "
            )),
            "{error}"
        );
    }
}
