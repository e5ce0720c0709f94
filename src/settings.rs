//! What init needs from the environment: every `BTSYNC_*` variable of
//! init, checked when init starts. A malformed one stops init with an error
//! naming it, so the engine never runs with a config syncbox cannot stand
//! behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::pace::{self, Pace};
use crate::error::{Error, Result};
use crate::trash_limit::{self, TrashLimit};
use crate::user_db;

pub const BIN_VAR: &str = "BTSYNC_BIN";
pub const DEVICE_NAME_VAR: &str = "BTSYNC_DEVICE_NAME";
pub const LISTEN_PORT_VAR: &str = "BTSYNC_LISTEN_PORT";
pub const USE_RELAY_SERVER_VAR: &str = "BTSYNC_USE_RELAY_SERVER";
pub const USE_TRACKER_VAR: &str = "BTSYNC_USE_TRACKER";
pub const USE_DHT_VAR: &str = "BTSYNC_USE_DHT";
pub const SEARCH_LAN_VAR: &str = "BTSYNC_SEARCH_LAN";
pub const USE_SYNC_TRASH_VAR: &str = "BTSYNC_USE_SYNC_TRASH";
pub const KNOWN_HOSTS_VAR: &str = "BTSYNC_KNOWN_HOSTS";
pub const STOP_GRACE_VAR: &str = "BTSYNC_STOP_GRACE";
/// How init applies a registry change to a running engine: `reload` or `restart`.
pub const APPLY_VAR: &str = "BTSYNC_APPLY";
pub const ENGINE_API_VAR: &str = "BTSYNC_ENGINE_API";
pub const UID_VAR: &str = "BTSYNC_UID";
pub const GID_VAR: &str = "BTSYNC_GID";
pub const TRASH_DAYS_VAR: &str = "BTSYNC_TRASH_DAYS";
/// Whether a cluster tombstone with `"purge": true` may delete this node's
/// copy (default: no, it goes to the cluster trash like any removal).
pub const CLUSTER_PURGE_VAR: &str = "BTSYNC_CLUSTER_PURGE";
/// How many copies the cluster trash may hold before cluster removals wait.
pub const TRASH_MAX_COPIES_VAR: &str = "BTSYNC_TRASH_MAX_COPIES";
/// How many bytes the cluster trash may hold before cluster removals wait.
pub const TRASH_MAX_SIZE_VAR: &str = "BTSYNC_TRASH_MAX_SIZE";
/// How long the volume plugin's Mount waits for a namespace's data by
/// default (a volume's `-o wait=SECONDS` wins).
pub const VOLUME_WAIT_VAR: &str = "BTSYNC_VOLUME_WAIT";

pub const DEFAULT_BIN: &str = "/bin/btsync";
pub const DEFAULT_LISTEN_PORT: u16 = 55555;
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(8);
pub const DEFAULT_TRASH_DAYS: u64 = 7;
/// The longest wait for data a volume Mount may have, in seconds. Docker
/// gives up on a Mount after 120 s (moby's `longTimeout`, measured with
/// dockerd 20.10); this leaves room for the engine to pick the folder up
/// and for the last look at its state, so that a Mount never outlives
/// Docker's patience (a Mount that succeeds after Docker gave up would
/// count a container that never started).
pub const MAX_VOLUME_WAIT_SECONDS: u64 = 100;
/// Where `BTSYNC_UID`/`BTSYNC_GID` names are looked up (`passwd`, `group`);
/// the image ships both.
pub use crate::user_db::USER_DB_DIR;

/// How the engine finds peers and keeps deleted files, the same for every folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderOptions {
    pub use_relay_server: bool,
    pub use_tracker: bool,
    pub use_dht: bool,
    pub search_lan: bool,
    pub use_sync_trash: bool,
    /// `host:port` peers contacted directly.
    pub known_hosts: Vec<String>,
}

/// How a registry change reaches a running engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Apply {
    /// Rewrite the config and send HUP; restart only when no proof comes.
    #[default]
    Reload,
    /// Stop the engine and start it again (drops every peer connection).
    Restart,
}

impl Apply {
    pub fn as_str(self) -> &'static str {
        match self {
            Apply::Reload => "reload",
            Apply::Restart => "restart",
        }
    }
}

/// How init gives the engine its folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineApi {
    /// `shared_folders` in the config file; changes by HUP (or restart).
    /// Also what an engine whose interface does not answer gets.
    Config,
    /// btsync 1.4's WebUI JSON interface on loopback: folders added and
    /// removed over it, and their sync state read from it.
    #[default]
    WebUi,
}

impl EngineApi {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineApi::Config => "config",
            EngineApi::WebUi => "webui",
        }
    }
}

/// The owner the engine runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub engine_bin: PathBuf,
    pub device_name: String,
    pub listening_port: u16,
    pub folders: FolderOptions,
    pub stop_grace: Duration,
    pub owner: Option<Owner>,
    /// How long folders removed by a cluster tombstone stay in the trash.
    pub trash_kept: Duration,
    /// `BTSYNC_CLUSTER_PURGE`: a purge tombstone deletes this node's copy.
    pub cluster_purge: bool,
    /// When the cluster trash is full: further cluster removals wait.
    pub trash_limit: TrashLimit,
    /// `BTSYNC_CLUSTER_ADD_STEP` and `BTSYNC_CLUSTER_MAX_NAMESPACES`.
    pub cluster_pace: Pace,
    pub apply: Apply,
    pub engine_api: EngineApi,
    /// `BTSYNC_VOLUME_WAIT`: how long a volume Mount waits for the data
    /// when the volume has no `wait` option of its own (0: it does not).
    pub volume_wait: Duration,
}

impl Settings {
    /// Read every init variable from the process environment.
    pub fn from_env() -> Result<Settings> {
        let hostname = crate::sys::hostname().unwrap_or_default();
        Settings::from_lookup(
            |var| std::env::var_os(var).map(|v| v.to_string_lossy().into_owned()),
            &hostname,
        )
    }

    /// Read the variables through `lookup`; an empty variable counts as unset.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        hostname: &str,
    ) -> Result<Settings> {
        Settings::from_lookup_in(lookup, hostname, Path::new(USER_DB_DIR))
    }

    /// [`Settings::from_lookup`] with user and group names looked up in
    /// `user_db/passwd` and `user_db/group`.
    pub fn from_lookup_in(
        lookup: impl Fn(&str) -> Option<String>,
        hostname: &str,
        user_db: &Path,
    ) -> Result<Settings> {
        let get = |var: &str| lookup(var).filter(|v| !v.is_empty());
        let engine_bin = match get(BIN_VAR) {
            Some(text) => absolute_engine_bin(&text)?,
            None => PathBuf::from(DEFAULT_BIN),
        };
        let device_name = match get(DEVICE_NAME_VAR) {
            Some(name) => check_device_name(DEVICE_NAME_VAR, &name)?,
            None if hostname.is_empty() => "syncbox".to_owned(),
            None => hostname.to_owned(),
        };
        let listening_port = match get(LISTEN_PORT_VAR) {
            Some(text) => text.trim().parse::<u16>().map_err(|_| Error::Env {
                var: LISTEN_PORT_VAR,
                problem: format!("{text:?} is not a port number (0-65535; 0 = random)"),
            })?,
            None => DEFAULT_LISTEN_PORT,
        };
        let flag = |var: &'static str, default: bool| -> Result<bool> {
            match get(var) {
                None => Ok(default),
                Some(text) => parse_bool(&text).ok_or_else(|| Error::Env {
                    var,
                    problem: format!("{text:?} is not a boolean (true/false, 1/0, yes/no, on/off)"),
                }),
            }
        };
        let folders = FolderOptions {
            use_relay_server: flag(USE_RELAY_SERVER_VAR, true)?,
            use_tracker: flag(USE_TRACKER_VAR, true)?,
            use_dht: flag(USE_DHT_VAR, false)?,
            search_lan: flag(SEARCH_LAN_VAR, true)?,
            use_sync_trash: flag(USE_SYNC_TRASH_VAR, true)?,
            known_hosts: match get(KNOWN_HOSTS_VAR) {
                Some(text) => parse_known_hosts(&text)?,
                None => Vec::new(),
            },
        };
        let stop_grace = match get(STOP_GRACE_VAR) {
            Some(text) => parse_seconds(STOP_GRACE_VAR, &text)?,
            None => DEFAULT_STOP_GRACE,
        };
        let user = get(UID_VAR)
            .map(|t| user_db::user_id(&t, &user_db.join("passwd")))
            .transpose()
            .map_err(|problem| Error::Env {
                var: UID_VAR,
                problem,
            })?;
        let gid = get(GID_VAR)
            .map(|t| user_db::group_id(&t, &user_db.join("group")))
            .transpose()
            .map_err(|problem| Error::Env {
                var: GID_VAR,
                problem,
            })?;
        let owner = match (user, gid) {
            (Some((uid, primary)), gid) => Some(Owner {
                uid,
                gid: gid.unwrap_or(primary),
            }),
            (None, Some(_)) => {
                return Err(Error::Env {
                    var: GID_VAR,
                    problem: format!("is set but {UID_VAR} is not; set both"),
                });
            }
            (None, None) => None,
        };
        let trash_kept = match get(TRASH_DAYS_VAR) {
            Some(text) => parse_days(TRASH_DAYS_VAR, &text)?,
            None => Duration::from_secs(DEFAULT_TRASH_DAYS * 86400),
        };
        let cluster_purge = flag(CLUSTER_PURGE_VAR, false)?;
        let trash_limit = TrashLimit {
            copies: match get(TRASH_MAX_COPIES_VAR) {
                Some(text) => trash_limit::parse_copies(&text).map_err(|problem| Error::Env {
                    var: TRASH_MAX_COPIES_VAR,
                    problem,
                })?,
                None => trash_limit::DEFAULT_MAX_COPIES,
            },
            bytes: match get(TRASH_MAX_SIZE_VAR) {
                Some(text) => trash_limit::parse_size(&text).map_err(|problem| Error::Env {
                    var: TRASH_MAX_SIZE_VAR,
                    problem,
                })?,
                None => None,
            },
        };
        let count = |var: &'static str,
                     parse: fn(&str) -> std::result::Result<usize, String>,
                     default| match get(var) {
            Some(text) => parse(&text).map_err(|problem| Error::Env { var, problem }),
            None => Ok(default),
        };
        let cluster_pace = Pace {
            step: count(pace::ADD_STEP_VAR, pace::parse_step, pace::DEFAULT_ADD_STEP)?,
            max_namespaces: count(
                pace::MAX_NAMESPACES_VAR,
                pace::parse_max_namespaces,
                pace::DEFAULT_MAX_NAMESPACES,
            )?,
        };
        let apply = match get(APPLY_VAR).as_deref().map(str::trim) {
            None => Apply::default(),
            Some("reload") => Apply::Reload,
            Some("restart") => Apply::Restart,
            Some(text) => {
                return Err(Error::Env {
                    var: APPLY_VAR,
                    problem: format!("{text:?} is neither reload nor restart"),
                });
            }
        };
        let engine_api = match get(ENGINE_API_VAR).as_deref().map(str::trim) {
            None => EngineApi::default(),
            Some("config") => EngineApi::Config,
            Some("webui") => EngineApi::WebUi,
            Some(text) => {
                return Err(Error::Env {
                    var: ENGINE_API_VAR,
                    problem: format!("{text:?} is neither config nor webui"),
                });
            }
        };
        let volume_wait = match get(VOLUME_WAIT_VAR) {
            Some(text) => parse_volume_wait(&text).map_err(|problem| Error::Env {
                var: VOLUME_WAIT_VAR,
                problem,
            })?,
            None => Duration::ZERO,
        };
        Ok(Settings {
            apply,
            engine_api,
            volume_wait,
            engine_bin,
            device_name,
            listening_port,
            folders,
            stop_grace,
            owner,
            trash_kept,
            cluster_purge,
            trash_limit,
            cluster_pace,
        })
    }
}

/// `BTSYNC_BIN` as a path. Only an absolute path: a bare name would be
/// looked up on PATH (`BTSYNC_BIN=sleep` ran /usr/bin/sleep) and a relative
/// one would depend on the working directory.
pub fn absolute_engine_bin(text: &str) -> Result<PathBuf> {
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(Error::Env {
            var: BIN_VAR,
            problem: format!(
                "{text:?} is not an absolute path (e.g. {DEFAULT_BIN}; it is never looked up on PATH)"
            ),
        })
    }
}

fn check_device_name(var: &'static str, name: &str) -> Result<String> {
    if name.chars().any(char::is_control) || name.len() > 255 {
        return Err(Error::Env {
            var,
            problem: "must be at most 255 characters without control characters".into(),
        });
    }
    Ok(name.to_owned())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A numeric id: digits only, below u32::MAX (which means "no change" to
/// chown).
/// Seconds as a decimal number: `8`, `0.5`. At most a day: anything longer
/// is a typo, and docker would have killed the container long before.
pub fn parse_seconds(var: &'static str, text: &str) -> Result<Duration> {
    parse_decimal(var, text, "seconds", 86400.0, 1.0, "8")
}

/// A volume's wait for its data: seconds from 0 to
/// [`MAX_VOLUME_WAIT_SECONDS`], decimals allowed (`30`, `2.5`). The problem,
/// when there is one, reads the same for `BTSYNC_VOLUME_WAIT` and for
/// `-o wait=`.
pub fn parse_volume_wait(text: &str) -> std::result::Result<Duration, String> {
    let trimmed = text.trim();
    let plain = !trimmed.is_empty()
        && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && trimmed.bytes().filter(|&b| b == b'.').count() <= 1;
    match trimmed.parse::<f64>() {
        Ok(seconds) if plain && seconds <= MAX_VOLUME_WAIT_SECONDS as f64 => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => {
            // A long value is not shown: it may be a key typed in the wrong place.
            let shown = if trimmed.chars().count() <= 12 {
                format!("{trimmed:?}")
            } else {
                "the value".to_owned()
            };
            Err(format!(
                "{shown} is not a number of seconds from 0 to {MAX_VOLUME_WAIT_SECONDS} \
                 (e.g. 60 or 2.5; 0 = do not wait for the data; Docker gives up on a \
                 mount after 120 s)"
            ))
        }
    }
}

/// Days as a decimal number (`7`, `0.5`), at most 100 years.
fn parse_days(var: &'static str, text: &str) -> Result<Duration> {
    parse_decimal(var, text, "days", 36500.0, 86400.0, "7")
}

/// A plain decimal number of `unit`s between 0 and `max` (no sign, no
/// exponent), as a duration of `unit_seconds` each.
fn parse_decimal(
    var: &'static str,
    text: &str,
    unit: &str,
    max: f64,
    unit_seconds: f64,
    example: &str,
) -> Result<Duration> {
    let bad = || Error::Env {
        var,
        problem: format!(
            "{text:?} is not a number of {unit} between 0 and {max} (e.g. {example} or 0.5)"
        ),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let value: f64 = trimmed.parse().map_err(|_| bad())?;
    if !(0.0..=max).contains(&value) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(value * unit_seconds))
}

/// `host:port,host:port`; IPv6 literals in brackets: `[fd00::1]:55555`.
fn parse_known_hosts(text: &str) -> Result<Vec<String>> {
    let mut hosts = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| Error::Env {
            var: KNOWN_HOSTS_VAR,
            problem: format!("{item:?}: {why}; expected host:port[,host:port...]"),
        };
        let (host, port) = item.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(bad("the port is not a number from 1 to 65535")),
        }
        let host_ok = if let Some(inner) = host.strip_prefix('[') {
            inner.strip_suffix(']').is_some_and(|ip| {
                !ip.is_empty()
                    && ip
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            })
        } else {
            !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        };
        if !host_ok {
            return Err(bad("the host is not a host name or an IP address"));
        }
        hosts.push(item.to_owned());
    }
    Ok(hosts)
}

/// Settings from `vars` alone on host "node-7", names looked up in the
/// image's user database: for unit tests.
#[cfg(test)]
pub(crate) fn from_vars(vars: &[(&str, &str)]) -> Result<Settings> {
    let map: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let user_db = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/etc");
    Settings::from_lookup_in(|var| map.get(var).cloned(), "node-7", &user_db)
}

#[cfg(test)]
mod tests {
    use super::from_vars as settings;
    use super::*;

    fn env_error_var(result: Result<Settings>) -> &'static str {
        match result {
            Err(Error::Env { var, .. }) => var,
            other => panic!("expected an environment error, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(s.engine_bin, PathBuf::from("/bin/btsync"));
        assert_eq!(s.device_name, "node-7");
        assert_eq!(s.listening_port, 55555);
        assert_eq!(s.stop_grace, Duration::from_secs(8));
        assert_eq!(s.owner, None);
        assert_eq!(s.apply, Apply::Reload);
        assert_eq!(s.volume_wait, Duration::ZERO);
        assert_eq!(
            s.folders,
            FolderOptions {
                use_relay_server: true,
                use_tracker: true,
                use_dht: false,
                search_lan: true,
                use_sync_trash: true,
                known_hosts: vec![],
            }
        );
    }

    #[test]
    fn values_are_read() {
        let s = settings(&[
            ("BTSYNC_DEVICE_NAME", "store-1"),
            ("BTSYNC_LISTEN_PORT", "0"),
            ("BTSYNC_SEARCH_LAN", "off"),
            ("BTSYNC_USE_DHT", "YES"),
            (
                "BTSYNC_KNOWN_HOSTS",
                "10.0.0.2:55555, node-b:4000,[fd00::1]:55555",
            ),
            ("BTSYNC_STOP_GRACE", "0.5"),
            ("BTSYNC_UID", "1000"),
            ("BTSYNC_APPLY", "restart"),
        ])
        .expect("valid");
        assert_eq!(s.apply, Apply::Restart);
        assert_eq!(s.device_name, "store-1");
        assert_eq!(s.listening_port, 0);
        assert!(!s.folders.search_lan);
        assert!(s.folders.use_dht);
        assert_eq!(
            s.folders.known_hosts,
            ["10.0.0.2:55555", "node-b:4000", "[fd00::1]:55555"]
        );
        assert_eq!(s.stop_grace, Duration::from_millis(500));
        assert_eq!(
            s.owner,
            Some(Owner {
                uid: 1000,
                gid: 1000
            })
        );
    }

    #[test]
    fn malformed_variables_are_named() {
        let cases: &[(&str, &str)] = &[
            ("BTSYNC_LISTEN_PORT", "65536"),
            ("BTSYNC_LISTEN_PORT", "http"),
            ("BTSYNC_USE_TRACKER", "maybe"),
            ("BTSYNC_KNOWN_HOSTS", "node-b"),
            ("BTSYNC_KNOWN_HOSTS", "node-b:0"),
            ("BTSYNC_KNOWN_HOSTS", "bad host:55555"),
            ("BTSYNC_STOP_GRACE", "-1"),
            ("BTSYNC_STOP_GRACE", "8s"),
            ("BTSYNC_STOP_GRACE", "1e9"),
            ("BTSYNC_UID", "no-such-user"),
            ("BTSYNC_UID", "-5"),
            ("BTSYNC_UID", "btsync:x"),
            ("BTSYNC_GID", "no-such-group"),
            ("BTSYNC_BIN", "btsync"),
            ("BTSYNC_BIN", "bin/btsync"),
            ("BTSYNC_DEVICE_NAME", "a\nb"),
            ("BTSYNC_APPLY", "hup"),
            ("BTSYNC_APPLY", "Reload"),
            ("BTSYNC_VOLUME_WAIT", "abc"),
            ("BTSYNC_VOLUME_WAIT", "-1"),
            ("BTSYNC_VOLUME_WAIT", "101"),
            ("BTSYNC_VOLUME_WAIT", "60s"),
        ];
        for (var, value) in cases {
            assert_eq!(
                env_error_var(settings(&[(var, value)])),
                *var,
                "{var}={value}"
            );
        }
        assert_eq!(
            env_error_var(settings(&[("BTSYNC_GID", "100")])),
            "BTSYNC_GID"
        );
    }

    /// Issue 16, item 8: the names the image's /etc/passwd and /etc/group
    /// hold work; a named user's group defaults to its primary group.
    #[test]
    fn uid_and_gid_take_names_from_the_images_user_database() {
        let owner = |vars: &[(&str, &str)]| settings(vars).expect("valid").owner;
        assert_eq!(
            owner(&[("BTSYNC_UID", "btsync")]),
            Some(Owner {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(
            owner(&[("BTSYNC_UID", "nobody"), ("BTSYNC_GID", "btsync")]),
            Some(Owner {
                uid: 65534,
                gid: 1000
            })
        );
        assert_eq!(
            owner(&[("BTSYNC_UID", "1000"), ("BTSYNC_GID", "nogroup")]),
            Some(Owner {
                uid: 1000,
                gid: 65534
            })
        );
        let missing = Settings::from_lookup_in(
            |var| (var == UID_VAR).then(|| "btsync".to_owned()),
            "node-7",
            Path::new("/nonexistent"),
        );
        assert_eq!(env_error_var(missing), "BTSYNC_UID");
    }

    #[test]
    fn trash_days_default_to_seven_and_take_decimals() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(s.trash_kept, Duration::from_secs(7 * 86400));
        let s = settings(&[("BTSYNC_TRASH_DAYS", "0.5")]).expect("valid");
        assert_eq!(s.trash_kept, Duration::from_secs(43200));
        for bad in ["-1", "7d", "36501", "1e3"] {
            assert_eq!(
                env_error_var(settings(&[("BTSYNC_TRASH_DAYS", bad)])),
                "BTSYNC_TRASH_DAYS",
                "{bad}"
            );
        }
    }

    #[test]
    fn volume_wait_is_seconds_up_to_the_cap() {
        let wait = |text: &str| settings(&[("BTSYNC_VOLUME_WAIT", text)]).map(|s| s.volume_wait);
        assert_eq!(wait("60").expect("valid"), Duration::from_secs(60));
        assert_eq!(wait(" 2.5 ").expect("valid"), Duration::from_millis(2500));
        assert_eq!(wait("0").expect("valid"), Duration::ZERO);
        assert_eq!(
            wait(&MAX_VOLUME_WAIT_SECONDS.to_string()).expect("valid"),
            Duration::from_secs(MAX_VOLUME_WAIT_SECONDS)
        );
        for bad in [
            "abc", "-5", "100.5", "1e2", "1.2.3", ".", "86400", "inf", "NaN",
        ] {
            let problem = parse_volume_wait(bad).expect_err(bad);
            assert!(problem.contains("from 0 to 100"), "{bad}: {problem}");
        }
        // A key given as the value is never echoed.
        let key = "AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA";
        let problem = parse_volume_wait(key).expect_err("a key is no number");
        assert!(!problem.contains("AHRAX"), "{problem}");
        assert!(
            parse_volume_wait("abc")
                .expect_err("abc")
                .contains("\"abc\"")
        );
    }
}
