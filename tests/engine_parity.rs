//! The stand-in engine (`tests/support/stand_in_engine.rs`) against the real
//! btsync 1.4.111: each behaviour init relies on is run as the same scenario
//! against both, with the same assertions, so the fast suite's stand-in
//! cannot drift from the engine it stands in for.
//!
//! The real engine runs under `unshare -n` (a network namespace of its own:
//! no route anywhere; needs root, CI runs as root) with tracker, relay, LAN
//! search and DHT off. It is found through `SYNCBOX_TEST_BTSYNC` or
//! `tests/real-engine` (see `common::real_engine`); without it a local run
//! checks the stand-in alone and prints one line saying why, and CI fails.
//!
//! Seen with 1.4.111 and held here:
//! - no folder in the config: "To use BitTorrent Sync you should specify
//!   shared directories in config file or enable Web UI or API" on stdout,
//!   exit 1 at once;
//! - an unknown key: "Error while parsing config file: Invalid key 'NAME'"
//!   (a folder's `selective_sync` too), a wrongly typed one: "Invalid key
//!   type: 'NAME' must be boolean"; exit 1;
//! - every key syncbox writes is accepted;
//! - a served folder has a 20-byte `.sync/ID` (the SHA-1 of the read-only
//!   key's bytes) and `storage_path/<HEX ID>.db` open;
//! - folders are kept in `storage_path`: at start "Loaded folder DIR" for
//!   each stored one, then "Error while adding folder DIR: Selected folder
//!   is already added..." for those the config lists again; a stored folder
//!   the config no longer lists is let go (database closed, `.sync/ID`
//!   removed, files kept);
//! - TERM: "Received shutdown request via signal 15", "Shutdown. Saving
//!   config sync.dat", exit 0;
//! - HUP: "Reloading config file...", folders added and let go as the
//!   config says; a reload to a config with no folder is refused ("Error
//!   while reloading config: To use BitTorrent Sync...") and the engine
//!   keeps serving what it had;
//! - WebUI mode (no folder, a `webui`): the interface's answers, error
//!   cases included, as asserted in the tests below (the real engine runs
//!   with its loopback up and is reached with `nsenter --net` + `curl`).

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The signal a segmentation fault delivers on Linux.
const SIGSEGV: i32 = 11;

use common::TempDir;
use serde_json::{Value, json};
use syncbox::engine_config;
use syncbox::keys::Key;
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::registry::{Entry, Origin};
use syncbox::settings::Settings;

const NO_FOLDER: &str = "To use BitTorrent Sync you should specify shared directories in config file or enable Web UI or API";
const SIGHUP: i32 = 1;
const SIGTERM: i32 = 15;
/// Only stops a hung test; nothing here measures speed.
const DEADLINE: Duration = Duration::from_secs(60);

/// Two fixed read-write keys, so both engines see the same folder IDs.
const KEY_A: &str = "AZCC5D2ABDEORGMUTDLLU7EMRRPB672GO";
const KEY_B: &str = "AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA";

#[derive(Clone)]
struct Engine {
    label: &'static str,
    bin: PathBuf,
    real: bool,
}

fn stand_in() -> Engine {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("examples/stand-in-btsync");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test` (it builds the examples)",
        bin.display()
    );
    Engine {
        label: "stand-in",
        bin,
        real: false,
    }
}

/// The stand-in, and the real 1.4.111 when it is at hand.
/// The tests of this file run one at a time: real 1.4.111 engines started
/// side by side crashed now and then (SIGSEGV after "SyncDb: Failed to
/// init db - 5", 2 of 9 runs of this file), which says nothing about the
/// behaviour under test.
fn one_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn engines(test: &str) -> Vec<Engine> {
    let mut engines = vec![stand_in()];
    if let Some(bin) = common::real_engine(test, true) {
        engines.push(Engine {
            label: "btsync 1.4.111",
            bin,
            real: true,
        });
    }
    engines
}

/// A data root as syncbox lays it out, for one engine's runs.
struct Node {
    _dir: TempDir,
    root: PathBuf,
    layout: Layout,
    runs: usize,
}

impl Node {
    fn new(engine: &Engine, label: &str) -> Node {
        let dir = TempDir::new(&format!(
            "parity-{label}-{}",
            if engine.real { "real" } else { "stand-in" }
        ));
        let root = dir.path().to_owned();
        let layout = Layout::new(root.join("data"), None);
        fs::create_dir_all(engine_config::storage_path(&layout)).expect("storage");
        Node {
            _dir: dir,
            root,
            layout,
            runs: 0,
        }
    }

    fn folder(&self, ns: &str) -> PathBuf {
        self.layout.folder(&Name::parse(ns).expect("name"))
    }

    fn storage(&self) -> PathBuf {
        engine_config::storage_path(&self.layout)
    }

    fn config_path(&self) -> PathBuf {
        self.root.join("btsync.conf")
    }

    /// Write the config syncbox would write for these folders (all peer
    /// discovery off but known hosts), then let `edit` change it.
    fn write_config(&self, folders: &[(&str, &str)], edit: impl FnOnce(&mut Value)) {
        let settings = Settings::from_lookup(
            |var| {
                let value = match var {
                    "BTSYNC_DEVICE_NAME" => "parity",
                    "BTSYNC_LISTEN_PORT" => "0",
                    "BTSYNC_USE_RELAY_SERVER"
                    | "BTSYNC_USE_TRACKER"
                    | "BTSYNC_USE_DHT"
                    | "BTSYNC_SEARCH_LAN" => "false",
                    "BTSYNC_KNOWN_HOSTS" => "127.0.0.1:1,127.0.0.2:2",
                    _ => return None,
                };
                Some(value.to_owned())
            },
            "parity",
        )
        .expect("settings");
        let entries: Vec<Entry> = folders
            .iter()
            .map(|(ns, key)| {
                fs::create_dir_all(self.folder(ns)).expect("folder");
                Entry {
                    name: Name::parse(ns).expect("name"),
                    key: Key::parse(key).expect("key"),
                    origin: Origin::Given,
                    added: 0,
                    from_cluster: false,
                    rule: Default::default(),
                }
            })
            .collect();
        let text = engine_config::render(&settings, &self.layout, &entries, &[]);
        let mut config: Value = serde_json::from_str(&text).expect("rendered JSON");
        edit(&mut config);
        fs::write(self.config_path(), config.to_string()).expect("write config");
    }

    fn start(&mut self, engine: &Engine, env: &[(&str, &str)]) -> Running {
        self.start_with(engine, env, false)
    }

    /// Start with the loopback up in the real engine's namespace, so its
    /// WebUI on 127.0.0.1 can be reached (through `nsenter`).
    fn start_webui(&mut self, engine: &Engine, env: &[(&str, &str)]) -> Running {
        self.start_with(engine, env, true)
    }

    /// `start_webui`, then a session. Now and then 1.4.111 dies of SIGSEGV
    /// before its WebUI first answers (seen in about 1 of 40 starts here,
    /// with nothing asked of it but the token); such a start is reported
    /// and made once more: the engine's own crash is not a behaviour the
    /// stand-in must copy, and init restarts an engine that crashes.
    fn start_webui_session(
        &mut self,
        engine: &Engine,
        env: &[(&str, &str)],
        port: u16,
    ) -> (Running, Session) {
        for attempt in 1..=2 {
            let mut run = self.start_webui(engine, env);
            if let Some(session) = run.try_session(port) {
                return (run, session);
            }
            eprintln!(
                "{}: died of SIGSEGV before its WebUI answered (start {attempt} of 2)\n{}",
                engine.label,
                run.output()
            );
        }
        panic!(
            "{}: died of SIGSEGV before its WebUI answered, twice",
            engine.label
        );
    }

    fn start_with(&mut self, engine: &Engine, env: &[(&str, &str)], loopback: bool) -> Running {
        self.runs += 1;
        let out = self.root.join(format!("out-{}.txt", self.runs));
        let file = fs::File::create(&out).expect("output file");
        let err = file.try_clone().expect("output file");
        let mut command = if engine.real && loopback {
            // sh execs the engine (no fork): the child's pid is the engine's.
            let mut c = Command::new("unshare");
            c.args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
                .arg(&engine.bin);
            c
        } else if engine.real {
            // Exec'd by unshare (no fork): the child's pid is the engine's.
            let mut c = Command::new("unshare");
            c.arg("-n").arg(&engine.bin);
            c
        } else {
            Command::new(&engine.bin)
        };
        command
            .arg("--nodaemon")
            .arg("--config")
            .arg(self.config_path())
            .current_dir(&self.root)
            .env("STAND_IN_LOG", self.root.join("stand-in.log"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        let child = command.spawn().expect("start the engine");
        Running {
            label: engine.label,
            real: engine.real,
            child,
            out,
        }
    }

    /// The ID of the folder's `.sync/ID`, as upper-case hex, when it holds 20 bytes.
    fn folder_id(&self, ns: &str) -> Option<String> {
        let bytes = fs::read(self.folder(ns).join(".sync/ID")).ok()?;
        (bytes.len() == 20).then(|| bytes.iter().map(|b| format!("{b:02X}")).collect())
    }
}

struct Running {
    label: &'static str,
    real: bool,
    child: Child,
    out: PathBuf,
}

impl Running {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&mut Running) -> bool) {
        if let Err(status) = self.poll_until(what, |r| done(r).then_some(())) {
            self.exited_before(status, what);
        }
    }

    /// `attempt` until it gives a value; `Err` with the engine's exit
    /// status when it exits first. Fails the test at the deadline.
    fn poll_until<T>(
        &mut self,
        what: &str,
        mut attempt: impl FnMut(&mut Running) -> Option<T>,
    ) -> Result<T, std::process::ExitStatus> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = attempt(self) {
                return Ok(value);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting until {what}\n{}",
                self.label,
                self.output()
            );
            sleep(Duration::from_millis(20));
        }
    }

    fn exited_before(&self, status: std::process::ExitStatus, what: &str) -> ! {
        panic!(
            "{}: exited ({status}) before {what}\n{}",
            self.label,
            self.output()
        );
    }

    /// Does the engine serve `ns` as btsync does: a 20-byte `.sync/ID` and
    /// its `<HEX ID>.db` open?
    fn serves(&self, node: &Node, ns: &str) -> bool {
        node.folder_id(ns).is_some_and(|id| {
            let db = node.storage().join(format!("{id}.db"));
            self.open_files().contains(&db)
        })
    }

    fn holds_db(&self, node: &Node, id: &str) -> bool {
        let db = node.storage().join(format!("{id}.db"));
        self.open_files().contains(&db)
    }

    fn open_files(&self) -> Vec<PathBuf> {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .collect()
    }

    fn signal(&self, signal: i32) {
        syncbox::sys::send_signal(self.pid(), signal).expect("signal the engine");
    }

    /// Wait for the exit; (status code, or 128+N for signal N; output).
    fn wait_exit(mut self) -> (i32, String) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                use std::os::unix::process::ExitStatusExt;
                let code = status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(-1);
                return (code, self.output());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{}: did not exit\n{}", self.label, self.output());
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// TERM, and the engine's stop as 1.4.111 does it.
    #[track_caller]
    fn stop(self) -> String {
        let label = self.label;
        self.signal(SIGTERM);
        let (code, out) = self.wait_exit();
        assert_eq!(code, 0, "{label}: TERM\n{out}");
        assert!(
            out.contains("Received shutdown request via signal 15")
                && out.contains("Shutdown. Saving config sync.dat"),
            "{label}\n{out}"
        );
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run the engine on the node's config until it exits by itself.
fn refused(engine: &Engine, node: &mut Node) -> (i32, String) {
    node.start(engine, &[]).wait_exit()
}

#[test]
fn a_config_without_a_folder_is_refused_with_exit_1() {
    let _one_at_a_time = one_test_at_a_time();
    for engine in engines("a_config_without_a_folder_is_refused_with_exit_1") {
        let mut node = Node::new(&engine, "nofolder");
        node.write_config(&[], |_| {});
        let (code, out) = refused(&engine, &mut node);
        assert_eq!(code, 1, "{}: {out}", engine.label);
        assert!(out.contains(NO_FOLDER), "{}: {out}", engine.label);

        node.write_config(&[], |config| {
            config.as_object_mut().map(|c| c.remove("shared_folders"));
        });
        let (code, out) = refused(&engine, &mut node);
        assert_eq!(code, 1, "{}: {out}", engine.label);
        assert!(out.contains(NO_FOLDER), "{}: {out}", engine.label);
    }
}

#[test]
fn an_unknown_or_mistyped_key_is_refused() {
    let _one_at_a_time = one_test_at_a_time();
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 4] = [
        (
            |c| c["bogus_key"] = json!(1),
            "Error while parsing config file: Invalid key 'bogus_key'",
        ),
        (
            |c| c["shared_folders"][0]["bogus_folder_key"] = json!(true),
            "Error while parsing config file: Invalid key 'bogus_folder_key'",
        ),
        (
            // In the notes of older engines; 1.4.111 does not know it.
            |c| c["shared_folders"][0]["selective_sync"] = json!(false),
            "Error while parsing config file: Invalid key 'selective_sync'",
        ),
        (
            |c| c["use_upnp"] = json!(1),
            "Error while parsing config file: Invalid key type: 'use_upnp' must be boolean",
        ),
    ];
    for engine in engines("an_unknown_or_mistyped_key_is_refused") {
        let mut node = Node::new(&engine, "badkey");
        for (edit, message) in cases {
            node.write_config(&[("alpha", KEY_A)], edit);
            let (code, out) = refused(&engine, &mut node);
            assert_eq!(code, 1, "{}: {out}", engine.label);
            assert!(
                out.contains(message),
                "{}: want {message:?}\n{out}",
                engine.label
            );
            assert!(
                node.folder_id("alpha").is_none(),
                "{}: refused, so nothing served",
                engine.label
            );
        }
    }
}

#[test]
fn syncbox_config_is_served_and_term_stops_with_status_0() {
    let _one_at_a_time = one_test_at_a_time();
    let mut ids = Vec::new();
    for engine in engines("syncbox_config_is_served_and_term_stops_with_status_0") {
        let mut node = Node::new(&engine, "served");
        node.write_config(&[("alpha", KEY_A), ("beta", KEY_B)], |_| {});
        let mut run = node.start(&engine, &[]);
        run.wait_until("both folders are served", |r| {
            r.serves(&node, "alpha") && r.serves(&node, "beta")
        });
        let found = (node.folder_id("alpha"), node.folder_id("beta"));
        run.stop();
        ids.push((engine.label, found));
    }
    // The same key gives the same folder ID in both engines.
    if let [(_, stand_in), (_, real)] = ids.as_slice() {
        assert_eq!(stand_in, real, "folder IDs differ");
    }
}

#[test]
fn folders_persist_in_storage_and_one_no_longer_configured_is_let_go() {
    let _one_at_a_time = one_test_at_a_time();
    for engine in engines("folders_persist_in_storage_and_one_no_longer_configured_is_let_go") {
        let label = engine.label;
        let mut node = Node::new(&engine, "persist");
        node.write_config(&[("alpha", KEY_A)], |_| {});
        let mut run = node.start(&engine, &[]);
        run.wait_until("alpha is served", |r| r.serves(&node, "alpha"));
        run.stop();
        let alpha = node.folder("alpha").display().to_string();
        let alpha_id = node.folder_id("alpha").expect("alpha's ID");
        fs::write(node.folder("alpha").join("data.txt"), b"kept").expect("write");

        // Stored, and listed again.
        let mut run = node.start(&engine, &[]);
        run.wait_until("alpha is served again", |r| r.serves(&node, "alpha"));
        let out = run.stop();
        assert!(
            out.contains(&format!("Loaded folder {alpha}")),
            "{label}\n{out}"
        );
        assert!(
            out.contains(&format!(
                "Error while adding folder {alpha}: Selected folder is already added"
            )),
            "{label}\n{out}"
        );

        // Stored, but no longer listed: loaded, then let go.
        node.write_config(&[("beta", KEY_B)], |_| {});
        let mut run = node.start(&engine, &[]);
        run.wait_until("beta is served", |r| r.serves(&node, "beta"));
        run.wait_until("alpha's .sync/ID is removed", |_| {
            node.folder_id("alpha").is_none()
        });
        assert!(
            !run.holds_db(&node, &alpha_id),
            "{label}: alpha's db is open"
        );
        assert_eq!(
            fs::read(node.folder("alpha").join("data.txt"))
                .ok()
                .as_deref(),
            Some(&b"kept"[..]),
            "{label}: the files stay"
        );
        let out = run.stop();
        assert!(
            out.contains(&format!("Loaded folder {alpha}")),
            "{label}\n{out}"
        );
        let beta = node.folder("beta").display().to_string();
        assert!(
            !out.contains(&format!("Loaded folder {beta}")),
            "{label}\n{out}"
        );
    }
}

#[test]
fn hup_reloads_the_folder_list_and_keeps_it_on_a_config_without_folders() {
    let _one_at_a_time = one_test_at_a_time();
    for engine in engines("hup_reloads_the_folder_list_and_keeps_it_on_a_config_without_folders") {
        let label = engine.label;
        let mut node = Node::new(&engine, "hup");
        node.write_config(&[("alpha", KEY_A)], |_| {});
        let mut run = node.start(&engine, &[]);
        run.wait_until("alpha is served", |r| r.serves(&node, "alpha"));
        let alpha_id = node.folder_id("alpha").expect("alpha's ID");

        node.write_config(&[("alpha", KEY_A), ("beta", KEY_B)], |_| {});
        run.signal(SIGHUP);
        run.wait_until("beta is served after HUP", |r| r.serves(&node, "beta"));
        assert!(run.output().contains("Reloading config file..."), "{label}");

        node.write_config(&[("beta", KEY_B)], |_| {});
        run.signal(SIGHUP);
        run.wait_until("alpha is let go after HUP", |r| {
            !r.holds_db(&node, &alpha_id) && node.folder_id("alpha").is_none()
        });
        assert!(run.serves(&node, "beta"), "{label}");

        // A reload it would refuse at start: reported, nothing let go.
        node.write_config(&[], |_| {});
        run.signal(SIGHUP);
        run.wait_until("the refused reload is reported", |r| {
            r.output()
                .contains(&format!("Error while reloading config: {NO_FOLDER}"))
        });
        assert!(run.serves(&node, "beta"), "{label}: still served");
        run.stop();
    }
}

/// Not a parity check: the stand-in's opt-in engine that cannot reload
/// (`STAND_IN_IGNORE_HUP=1`), for tests of what init does then.
#[test]
fn stand_in_can_be_told_to_ignore_hup() {
    let _one_at_a_time = one_test_at_a_time();
    let engine = stand_in();
    let mut node = Node::new(&engine, "nohup");
    node.write_config(&[("alpha", KEY_A)], |_| {});
    let mut run = node.start(&engine, &[("STAND_IN_IGNORE_HUP", "1")]);
    run.wait_until("alpha is served", |r| r.serves(&node, "alpha"));
    node.write_config(&[("alpha", KEY_A), ("beta", KEY_B)], |_| {});
    run.signal(SIGHUP);
    let log = node.root.join("stand-in.log");
    run.wait_until("the HUP was ignored", |_| {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("hup_ignored"))
    });
    assert!(!run.serves(&node, "beta"));
    assert!(!run.output().contains("Reloading config file"));
    run.stop();
}

// ---- WebUI mode: a config with no folder and a `webui`, folders managed
// over its JSON interface. Seen with 1.4.111 and held here: the answers
// asserted below, error cases included.

const LOGIN: &str = "parity";
const PASSWORD: &str = "parity-password";
const LICENSE: &str = "Need to agree with the license";
const ALREADY_ADDED: &str = "Selected folder is already added to BitTorrent Sync.";
const NOT_EMPTY: &str = "Destination folder is not empty.  Add anyway?";
const NO_FOLDER_BY_SECRET: &str = "can't find folder by secret";
/// Every field 1.4.111 gives a folder in `getsyncfolders`.
const FOLDER_FIELDS: &[&str] = &[
    "archive",
    "archive_files",
    "archive_size",
    "canencrypt",
    "date_added",
    "down_eta",
    "down_speed",
    "down_status",
    "error",
    "files",
    "has_key",
    "id",
    "indexing",
    "iswritable",
    "last_modified",
    "name",
    "path",
    "peers",
    "readonlysecret",
    "secret",
    "secrettype",
    "size",
    "status",
    "up_eta",
    "up_speed",
    "up_status",
];
const PREF_FIELDS: &[&str] = &[
    "canencrypt",
    "deletetotrash",
    "iswritable",
    "readonlysecret",
    "relay",
    "searchdht",
    "searchlan",
    "secrettype",
    "usehosts",
    "usetracker",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl Node {
    /// syncbox's config without folders, with a WebUI and the folder
    /// defaults syncbox wants (discovery off but known hosts).
    fn write_webui_config(&self, port: u16, edit: impl FnOnce(&mut Value)) {
        self.write_config(&[], |config| {
            let map = config.as_object_mut().expect("a JSON object");
            map.remove("shared_folders");
            map.insert(
                "webui".into(),
                json!({"listen": format!("127.0.0.1:{port}"), "login": LOGIN, "password": PASSWORD}),
            );
            for key in ["use_relay", "use_tracker", "use_dht", "use_lan_broadcast"] {
                map.insert(format!("folder_defaults.{key}"), json!(false));
            }
            map.insert("folder_defaults.delete_to_trash".into(), json!(true));
            map.insert(
                "folder_defaults.known_hosts".into(),
                json!("127.0.0.1:1,127.0.0.2:2"),
            );
            edit(config);
        });
    }
}

/// An HTTP answer: status, head, body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// A WebUI session: the port, the cookie and the token.
struct Session {
    port: u16,
    guid: String,
    token: String,
}

impl Running {
    /// `curl` against the engine's WebUI, from inside the real engine's
    /// network namespace; None when nothing answered.
    fn http(&self, port: u16, args: &[&str], target: &str) -> Option<Reply> {
        let mut command = if self.real {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/proc/{}/ns/net", self.pid()))
                .arg("curl");
            c
        } else {
            Command::new("curl")
        };
        let output = command
            .args(["-s", "-i", "--max-time", "10"])
            .args(args)
            .arg(format!("http://127.0.0.1:{port}{target}"))
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        if !output.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("an HTTP status line");
        Some(Reply {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    }

    /// Wait until the WebUI answers, then open a session.
    /// A session, once the WebUI answers; `None` when the real engine died
    /// of SIGSEGV first (see `Node::start_webui_session`).
    fn try_session(&mut self, port: u16) -> Option<Session> {
        let auth = format!("{LOGIN}:{PASSWORD}");
        let what = "the WebUI answers";
        let reply = match self.poll_until(what, |r| {
            r.http(port, &["-u", &auth, "-X", "POST"], "/gui/token.html")
        }) {
            Ok(reply) => reply,
            Err(status) if status.signal() == Some(SIGSEGV) && self.real => return None,
            Err(status) => self.exited_before(status, what),
        };
        assert_eq!(reply.status, 200, "{}: {}", self.label, reply.head);
        let guid = reply
            .head
            .lines()
            .find_map(|l| l.strip_prefix("Set-Cookie: GUID="))
            .and_then(|rest| rest.strip_suffix("; path=/"))
            .expect("a GUID cookie")
            .to_owned();
        let token = reply
            .body
            .strip_prefix("<html><div id='token' style='display:none;'>")
            .and_then(|rest| rest.strip_suffix("</div></html>"))
            .expect("the token page")
            .to_owned();
        Some(Session { port, guid, token })
    }

    /// One action: (HTTP status, JSON body).
    #[track_caller]
    fn call(&self, session: &Session, query: &str) -> (u16, Value) {
        let reply = self.raw_call(session, query);
        let body = serde_json::from_str(&reply.body)
            .unwrap_or_else(|e| panic!("{}: {query}: {e}: {:?}", self.label, reply.body));
        (reply.status, body)
    }

    #[track_caller]
    fn raw_call(&self, session: &Session, query: &str) -> Reply {
        let auth = format!("{LOGIN}:{PASSWORD}");
        let cookie = format!("GUID={}", session.guid);
        self.http(
            session.port,
            &["-u", &auth, "-b", &cookie],
            &format!("/gui/?token={}&{query}", session.token),
        )
        .unwrap_or_else(|| panic!("{}: no answer to {query}", self.label))
    }

    #[track_caller]
    fn agree(&self, session: &Session) {
        assert_eq!(
            self.call(session, "action=setlicenseagreed&value=true"),
            (200, json!({"status": 200, "value": {"error": 0}})),
            "{}",
            self.label
        );
    }

    #[track_caller]
    fn add(&self, session: &Session, path: &Path, key: &str, extra: &str) -> Value {
        let (status, body) = self.call(
            session,
            &format!(
                "action=addsyncfolder&path={}&secret={key}{extra}",
                path.display()
            ),
        );
        assert_eq!(status, 200, "{}: {body}", self.label);
        body["value"].clone()
    }

    fn folders(&self, session: &Session) -> Vec<Value> {
        let (status, body) = self.call(session, "action=getsyncfolders&discovery=1");
        assert_eq!(status, 200, "{}: {body}", self.label);
        body["folders"].as_array().cloned().unwrap_or_default()
    }
}

fn error(status: u16, message: &str) -> (u16, Value) {
    (status, json!({"error": message, "status": status}))
}

fn keys_of(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn webui_config_without_folders_starts_and_guards_its_interface() {
    let _one_at_a_time = one_test_at_a_time();
    for engine in engines("webui_config_without_folders_starts_and_guards_its_interface") {
        let label = engine.label;
        let mut node = Node::new(&engine, "webui");
        let port = free_port();
        node.write_webui_config(port, |_| {});
        let (run, session) = node.start_webui_session(&engine, &[], port);

        for auth in [None, Some(format!("{LOGIN}:wrong"))] {
            let mut args = vec!["-X", "POST"];
            if let Some(auth) = &auth {
                args.extend(["-u", auth.as_str()]);
            }
            let reply = run.http(port, &args, "/gui/token.html").expect("answer");
            assert_eq!(reply.status, 401, "{label}: {}", reply.head);
            assert_eq!(reply.body, "", "{label}");
            assert!(
                reply
                    .head
                    .contains("WWW-Authenticate: Basic realm=\"BitTorrent Sync\""),
                "{label}: {}",
                reply.head
            );
        }
        // A token is only good with its cookie.
        let auth = format!("{LOGIN}:{PASSWORD}");
        for cookie in [None, Some("GUID=bogus")] {
            let mut args = vec!["-u", auth.as_str()];
            if let Some(cookie) = cookie {
                args.extend(["-b", cookie]);
            }
            let target = format!("/gui/?token={}&action=version", session.token);
            let reply = run.http(port, &args, &target).expect("answer");
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (400, "\r\ninvalid request"),
                "{label}"
            );
        }
        let wrong_token = Session {
            token: "bogus".into(),
            ..Session {
                port,
                guid: session.guid.clone(),
                token: String::new(),
            }
        };
        let reply = run.raw_call(&wrong_token, "action=version");
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (400, "\r\ninvalid request"),
            "{label}"
        );

        // The license first.
        assert_eq!(
            run.call(&session, "action=version"),
            error(500, LICENSE),
            "{label}"
        );
        assert_eq!(
            run.call(&session, "action=getsyncfolders"),
            error(500, LICENSE),
            "{label}"
        );
        assert_eq!(
            run.call(&session, "action=setlicenseagreed"),
            error(500, "'value' parameter is required"),
            "{label}"
        );
        run.agree(&session);
        assert_eq!(
            run.call(&session, "action=version"),
            (200, json!({"status": 200, "value": 17039471})),
            "{label}"
        );
        for unknown in ["action=setlicenseagreed&value=true", "action=nosuchaction"] {
            assert_eq!(
                run.call(&session, unknown),
                error(400, "unknown function"),
                "{label}: {unknown}"
            );
        }
        let (status, body) = run.call(&session, "action=getsyncfolders");
        assert_eq!(
            (status, &body),
            (
                200,
                &json!({"folders": [], "loading": false,
                        "speed": {"downspeed": 0, "upspeed": 0}, "status": 200})
            ),
            "{label}"
        );
        run.stop();

        // The agreement is kept in the storage.
        let (run, session) = node.start_webui_session(&engine, &[], port);
        assert_eq!(
            run.call(&session, "action=version"),
            (200, json!({"status": 200, "value": 17039471})),
            "{label}: after a restart"
        );
        run.stop();
    }
}

#[test]
fn refusing_the_license_shuts_the_engine_down() {
    let _one_at_a_time = one_test_at_a_time();
    for engine in engines("refusing_the_license_shuts_the_engine_down") {
        let mut node = Node::new(&engine, "license");
        let port = free_port();
        node.write_webui_config(port, |_| {});
        let (run, session) = node.start_webui_session(&engine, &[], port);
        assert_eq!(
            run.call(&session, "action=setlicenseagreed&value=false"),
            error(200, "User doesn't agree with the license"),
            "{}",
            engine.label
        );
        let (code, out) = run.wait_exit();
        assert_eq!(code, 0, "{}: {out}", engine.label);
        assert!(
            out.contains("Shutdown. Saving config sync.dat"),
            "{}: {out}",
            engine.label
        );
    }
}

#[test]
fn webui_and_folder_defaults_keys_are_checked() {
    let _one_at_a_time = one_test_at_a_time();
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 8] = [
        (
            |c| c["folder_defaults.use_relay"] = json!(1),
            "Error while parsing config file: Invalid key type: 'folder_defaults.use_relay' must be boolean",
        ),
        (
            |c| c["folder_defaults.delete_to_trash"] = json!("yes"),
            "Error while parsing config file: Invalid key type: 'folder_defaults.delete_to_trash' must be boolean",
        ),
        (
            |c| c["folder_defaults.known_hosts"] = json!(1),
            "Error while parsing config file: Invalid key type: 'folder_defaults.known_hosts' must be string",
        ),
        (
            |c| c["folder_defaults.known_hosts"] = json!(["127.0.0.1:1"]),
            "Error while parsing config file: Invalid type of 'folder_defaults.known_hosts'. Must not be array",
        ),
        (
            |c| c["folder_defaults.bogus"] = json!(true),
            "Error while parsing config file: Invalid key 'folder_defaults.bogus'",
        ),
        (
            |c| c["webui"]["bogus"] = json!(1),
            "Error while parsing config file: Invalid key 'bogus'",
        ),
        (
            |c| c["webui"]["listen"] = json!(1),
            "Error while parsing config file: Invalid key type: 'listen' must be string",
        ),
        (
            |c| c["webui"] = json!(1),
            "Error while parsing config file: Invalid key type: 'webui' must be map",
        ),
    ];
    for engine in engines("webui_and_folder_defaults_keys_are_checked") {
        let mut node = Node::new(&engine, "webuikeys");
        for (edit, message) in cases {
            node.write_webui_config(free_port(), edit);
            let (code, out) = refused(&engine, &mut node);
            assert_eq!(code, 1, "{}: {out}", engine.label);
            assert!(
                out.contains(message),
                "{}: want {message:?}\n{out}",
                engine.label
            );
        }
        // A webui without `listen` is no webui.
        node.write_webui_config(free_port(), |c| {
            c["webui"].as_object_mut().map(|w| w.remove("listen"));
        });
        let (code, out) = refused(&engine, &mut node);
        assert_eq!(code, 1, "{}: {out}", engine.label);
        assert!(out.contains(NO_FOLDER), "{}: {out}", engine.label);
    }
}

#[test]
fn a_folder_added_over_the_webui_is_served_like_a_config_folder() {
    let _one_at_a_time = one_test_at_a_time();
    for engine in engines("a_folder_added_over_the_webui_is_served_like_a_config_folder") {
        let label = engine.label;
        let mut node = Node::new(&engine, "webuiadd");
        let port = free_port();
        node.write_webui_config(port, |_| {});
        let (mut run, session) = node.start_webui_session(&engine, &[], port);
        run.agree(&session);
        let alpha = node.folder("alpha");
        fs::create_dir_all(&alpha).expect("alpha");
        let before = now();

        let added = run.add(&session, &alpha, KEY_A, "");
        assert_eq!(
            added,
            json!({"path": alpha.display().to_string(), "secret": KEY_A}),
            "{label}"
        );
        run.wait_until("alpha is served", |r| r.serves(&node, "alpha"));
        let alpha_id = node.folder_id("alpha").expect("alpha's ID");

        // One folder per ID, one per path.
        let elsewhere = node.root.join("elsewhere");
        let value = run.add(&session, &elsewhere, KEY_A, "");
        assert_eq!(
            (&value["error"], &value["message"]),
            (&json!(200), &json!(ALREADY_ADDED)),
            "{label}: same key: {value}"
        );
        let value = run.add(&session, &alpha, KEY_B, "");
        assert_eq!(value["error"], json!(200), "{label}: same path: {value}");
        let value = run.add(&session, &elsewhere, "BADKEY", "");
        assert_eq!(value["error"], json!(201), "{label}: {value}");
        assert!(
            value["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("This secret is invalid.")),
            "{label}: {value}"
        );
        assert_eq!(
            run.call(&session, "action=addsyncfolder"),
            error(500, "'path' parameter is required"),
            "{label}"
        );

        // A folder with files in it needs force=true (1 is not enough);
        // a missing one is created.
        let beta = node.folder("beta");
        fs::create_dir_all(&beta).expect("beta");
        fs::write(beta.join("data.txt"), b"beta").expect("write");
        for extra in ["", "&force=1"] {
            let value = run.add(&session, &beta, KEY_B, extra);
            assert_eq!(
                (&value["error"], &value["message"]),
                (&json!(105), &json!(NOT_EMPTY)),
                "{label}: {extra}: {value}"
            );
        }
        assert!(node.folder_id("beta").is_none(), "{label}: not served");
        let value = run.add(&session, &beta, KEY_B, "&force=true");
        assert!(value.get("error").is_none(), "{label}: {value}");
        run.wait_until("beta is served", |r| r.serves(&node, "beta"));

        // getsyncfolders: 1.4.111's fields, in the order added.
        let folders = run.folders(&session);
        assert_eq!(folders.len(), 2, "{label}: {folders:?}");
        let listed = &folders[0];
        let mut fields = keys_of(listed);
        fields.sort();
        assert_eq!(fields, FOLDER_FIELDS, "{label}");
        assert_eq!(
            listed["path"],
            json!(alpha.display().to_string()),
            "{label}"
        );
        assert_eq!(listed["name"], json!("alpha"), "{label}");
        assert_eq!(listed["secret"], json!(KEY_A), "{label}");
        assert_eq!(
            listed["archive"],
            json!(alpha.join(".sync/Archive").display().to_string()),
            "{label}"
        );
        assert!(
            listed["readonlysecret"]
                .as_str()
                .is_some_and(|k| k.len() == 33 && k.starts_with('B')),
            "{label}: {listed}"
        );
        assert_eq!(
            (&listed["files"], &listed["size"], &listed["status"]),
            (&json!(0), &json!(0), &json!("0 B in 0 files")),
            "{label}"
        );
        assert_eq!(
            (&listed["error"], &listed["down_status"], &listed["peers"]),
            (&json!(0), &json!(100), &json!([])),
            "{label}"
        );
        assert_eq!(
            (
                &listed["has_key"],
                &listed["iswritable"],
                &listed["secrettype"]
            ),
            (&json!(true), &json!(true), &json!(1)),
            "{label}"
        );
        assert!(listed["id"].is_i64(), "{label}: {listed}");
        let date_added = listed["date_added"].as_u64().expect("date_added");
        assert!(
            (before..=now()).contains(&date_added),
            "{label}: {date_added}"
        );
        assert_eq!(
            folders[1]["path"],
            json!(beta.display().to_string()),
            "{label}"
        );

        // Settings: the config's folder defaults, then what is set.
        let pref_call = format!("action=folderpref&secret={KEY_A}");
        let (status, prefs) = run.call(&session, &pref_call);
        assert_eq!(status, 200, "{label}: {prefs}");
        let mut fields = keys_of(&prefs["value"]);
        fields.sort();
        assert_eq!(fields, PREF_FIELDS, "{label}");
        let flags = |prefs: &Value| {
            [
                "relay",
                "usetracker",
                "searchlan",
                "searchdht",
                "deletetotrash",
                "usehosts",
            ]
            .map(|k| prefs["value"][k].as_bool())
        };
        assert_eq!(
            flags(&prefs),
            [false, false, false, false, true, true].map(Some),
            "{label}: {prefs}"
        );
        assert_eq!(
            run.call(
                &session,
                &format!(
                    "action=setfolderpref&secret={KEY_A}&relay=true&usetracker=1&searchlan=yes"
                )
            ),
            (200, json!({"status": 200})),
            "{label}"
        );
        let (_, prefs) = run.call(&session, &pref_call);
        assert_eq!(
            flags(&prefs),
            [true, false, false, false, true, true].map(Some),
            "{label}: {prefs}"
        );
        for unknown in [
            "action=folderpref".to_owned(),
            format!(
                "action=folderpref&secret={}",
                listed["readonlysecret"].as_str().unwrap_or("")
            ),
            format!("action=setfolderpref&secret={KEY_B}X&relay=true"),
        ] {
            assert_eq!(
                run.call(&session, &unknown),
                error(500, NO_FOLDER_BY_SECRET),
                "{label}: {unknown}"
            );
        }

        // Known hosts.
        let hosts_call = format!("action=knownhosts&secret={KEY_A}");
        assert_eq!(
            run.call(&session, &hosts_call),
            (
                200,
                json!({"status": 200, "value": [
                {"index": 0, "peer": "127.0.0.1:1"}, {"index": 1, "peer": "127.0.0.2:2"}]})
            ),
            "{label}"
        );
        assert_eq!(
            run.call(
                &session,
                &format!("action=addknownhost&secret={KEY_A}&addr=10.0.0.1&port=99")
            ),
            (200, json!({"status": 200})),
            "{label}"
        );
        assert_eq!(
            run.call(
                &session,
                &format!("action=addknownhost&secret={KEY_A}&addr=10.0.0.1")
            ),
            error(500, "'secret', 'addr', 'port' parameters are required"),
            "{label}"
        );
        assert_eq!(
            run.call(
                &session,
                &format!("action=removeknownhosts&secret={KEY_A}&index=0")
            ),
            (200, json!({"status": 200})),
            "{label}"
        );
        assert_eq!(
            run.call(&session, &format!("action=removeknownhosts&secret={KEY_A}")),
            error(500, "'secret' and 'index' parameters are required"),
            "{label}"
        );
        assert_eq!(
            run.call(&session, &hosts_call),
            (
                200,
                json!({"status": 200, "value": [
                {"index": 0, "peer": "127.0.0.2:2"}, {"index": 1, "peer": "10.0.0.1:99"}]})
            ),
            "{label}"
        );

        // Let go: database closed, .sync/ID removed, files kept.
        fs::write(alpha.join("data.txt"), b"kept").expect("write");
        assert_eq!(
            run.call(&session, "action=removefolder"),
            error(500, "'secret' parameter is required"),
            "{label}"
        );
        for _ in 0..2 {
            assert_eq!(
                run.call(&session, &format!("action=removefolder&secret={KEY_A}")),
                (200, json!({"status": 200})),
                "{label}"
            );
        }
        run.wait_until("alpha is let go", |r| {
            !r.holds_db(&node, &alpha_id) && node.folder_id("alpha").is_none()
        });
        assert_eq!(
            fs::read(alpha.join("data.txt")).ok().as_deref(),
            Some(&b"kept"[..]),
            "{label}: the files stay"
        );
        let folders = run.folders(&session);
        assert_eq!(folders.len(), 1, "{label}: {folders:?}");
        assert_eq!(
            folders[0]["path"],
            json!(beta.display().to_string()),
            "{label}"
        );
        assert!(run.serves(&node, "beta"), "{label}");
        run.stop();
    }
}

#[test]
fn folders_added_over_the_webui_are_served_again_after_a_restart() {
    let _one_at_a_time = one_test_at_a_time();
    for engine in engines("folders_added_over_the_webui_are_served_again_after_a_restart") {
        let label = engine.label;
        let mut node = Node::new(&engine, "webuirestart");
        let port = free_port();
        node.write_webui_config(port, |_| {});
        let (mut run, session) = node.start_webui_session(&engine, &[], port);
        run.agree(&session);
        let alpha = node.folder("alpha");
        run.add(&session, &alpha, KEY_A, "");
        run.wait_until("alpha is served", |r| r.serves(&node, "alpha"));
        run.call(
            &session,
            &format!("action=setfolderpref&secret={KEY_A}&relay=true"),
        );
        let date_added = run.folders(&session)[0]["date_added"].clone();

        // HUP keeps the folders of the WebUI.
        run.signal(SIGHUP);
        run.wait_until("the reload", |r| {
            r.output().contains("Reloading config file...")
        });
        sleep(Duration::from_secs(1));
        assert!(run.serves(&node, "alpha"), "{label}: kept over HUP");
        run.stop();

        let (mut run, session) = node.start_webui_session(&engine, &[], port);
        run.wait_until("alpha is served again", |r| r.serves(&node, "alpha"));
        let folders = run.folders(&session);
        assert_eq!(folders.len(), 1, "{label}: {folders:?}");
        assert_eq!(
            folders[0]["path"],
            json!(alpha.display().to_string()),
            "{label}"
        );
        assert_eq!(folders[0]["date_added"], date_added, "{label}");
        let (_, prefs) = run.call(&session, &format!("action=folderpref&secret={KEY_A}"));
        assert_eq!(prefs["value"]["relay"], json!(true), "{label}: {prefs}");
        let out = run.stop();
        assert!(
            out.contains(&format!("Loaded folder {}", alpha.display())),
            "{label}\n{out}"
        );
    }
}

#[test]
fn a_folder_stored_from_config_mode_is_served_in_webui_mode() {
    let _one_at_a_time = one_test_at_a_time();
    for engine in engines("a_folder_stored_from_config_mode_is_served_in_webui_mode") {
        let label = engine.label;
        let mut node = Node::new(&engine, "modes");
        node.write_config(&[("alpha", KEY_A)], |_| {});
        let mut run = node.start(&engine, &[]);
        run.wait_until("alpha is served", |r| r.serves(&node, "alpha"));
        run.stop();

        let port = free_port();
        node.write_webui_config(port, |_| {});
        let (mut run, session) = node.start_webui_session(&engine, &[], port);
        run.agree(&session);
        run.wait_until("alpha is served in WebUI mode", |r| {
            r.serves(&node, "alpha")
        });
        let folders = run.folders(&session);
        assert_eq!(folders.len(), 1, "{label}: {folders:?}");
        assert_eq!(
            (&folders[0]["path"], &folders[0]["secret"]),
            (
                &json!(node.folder("alpha").display().to_string()),
                &json!(KEY_A)
            ),
            "{label}"
        );
        run.stop();
    }
}

/// Not a parity check: the stand-in's peers for tests (`STAND_IN_PEERS`)
/// and its log of API calls, for syncbox's sync-state tests.
#[test]
fn stand_in_shows_the_peers_it_is_given_and_logs_each_call() {
    let _one_at_a_time = one_test_at_a_time();
    let engine = stand_in();
    let mut node = Node::new(&engine, "peers");
    let port = free_port();
    node.write_webui_config(port, |_| {});
    let peers = node.root.join("peers.json");
    let peers_var = peers.display().to_string();
    let (run, session) = node.start_webui_session(&engine, &[("STAND_IN_PEERS", &peers_var)], port);
    run.agree(&session);
    let alpha = node.folder("alpha");
    run.add(&session, &alpha, KEY_A, "");
    assert_eq!(run.folders(&session)[0]["peers"], json!([]), "no file yet");

    fs::write(
        &peers,
        json!({"alpha": [
            {"isonline": true, "lastsynctime": 1796200562, "downdiff": 0},
            {"isonline": true, "lastsynctime": 0, "downdiff": 5, "downfiles": 3},
        ], "other": [{"isonline": true}]})
        .to_string(),
    )
    .expect("peers file");
    let listed = run.folders(&session)[0]["peers"].clone();
    let list = listed.as_array().expect("peers");
    assert_eq!(list.len(), 2, "{listed}");
    assert_eq!(
        (
            &list[0]["isonline"],
            &list[0]["lastsynctime"],
            &list[0]["downdiff"]
        ),
        (&json!(true), &json!(1796200562), &json!(0))
    );
    assert!(list[0].get("downfiles").is_none(), "{listed}");
    assert!(list[0].get("upfiles").is_none(), "{listed}");
    assert_eq!(
        (
            &list[1]["downdiff"],
            &list[1]["downfiles"],
            &list[1]["upfiles"]
        ),
        (&json!(5), &json!(3), &json!(0))
    );
    for field in [
        "direct",
        "id",
        "lastreceivedtime",
        "lastsenttime",
        "name",
        "updiff",
    ] {
        assert!(list[0].get(field).is_some(), "{field}: {listed}");
    }

    // Read again at each call.
    fs::write(&peers, json!({"alpha": []}).to_string()).expect("peers file");
    assert_eq!(run.folders(&session)[0]["peers"], json!([]));
    run.call(&session, &format!("action=removefolder&secret={KEY_A}"));
    run.stop();

    let log = fs::read_to_string(node.root.join("stand-in.log")).expect("log");
    let events: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for (action, folder) in [("addsyncfolder", "alpha"), ("removefolder", "alpha")] {
        assert!(
            events.iter().any(|e| e["event"] == "api"
                && e["action"] == action
                && e["folder"] == folder
                && e["status"] == 200),
            "{action}: {log}"
        );
    }
    assert!(!log.contains(KEY_A), "a key in the log: {log}");
    assert!(!log.contains(&session.token), "a token in the log");
}
