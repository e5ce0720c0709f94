//! The harness for tests that run `syncbox init` against the stand-in engine
//! (`tests/support/stand_in_engine.rs`, the cargo example `stand-in-btsync`):
//! a private data directory per test, init as a real PID 1 (`unshare`, root)
//! or as a child subreaper, and views of the stand-in's log and of /proc.
//! Shared by tests/init.rs, tests/stress.rs, tests/secrets.rs and
//! tests/cluster.rs; each uses part of it. Its directories are
//! `common::TempDir`s, so a test that uses it declares `mod common;` too.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use syncbox::sys;

use crate::common::TempDir;

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;
pub const SIGTERM: i32 = 15;

/// Long enough to never fire on a loaded 2-core machine; only stops hangs.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn syncbox_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_syncbox"))
}

pub fn stand_in_bin() -> PathBuf {
    // target/debug/deps/init-HASH -> target/debug/examples/stand-in-btsync
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("examples/stand-in-btsync");
    assert!(
        path.exists(),
        "{} is missing: run the whole suite with `cargo test` (it builds the examples)",
        path.display()
    );
    path
}

/// true: go on. false: the caller returns (only when skipping was asked for).
pub fn root_available(test: &str) -> bool {
    if crate::common::running_as_root() {
        return true;
    }
    if std::env::var("SYNCBOX_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!("{test}: SKIPPED: needs root (SYNCBOX_SKIP_ROOT_TESTS=1)");
        return false;
    }
    panic!(
        "{test} needs root (unshare --pid); CI runs as root. Set SYNCBOX_SKIP_ROOT_TESTS=1 to skip"
    );
}

/// Wait up to DEADLINE until `done`.
pub fn wait_until(what: &str, done: impl FnMut() -> bool, context: impl Fn() -> String) {
    wait_within(what, DEADLINE, done, context);
}

pub fn wait_within(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            panic!(
                "timed out after {limit:?} waiting until {what}\n{}",
                context()
            );
        }
        sleep(Duration::from_millis(20));
    }
}

/// A data directory, the engine's log and init's stderr, removed at the end.
pub struct Sandbox {
    dir: TempDir,
    pub root: PathBuf,
    /// Added to the environment of every command, after the sandbox's own.
    env: Vec<(String, OsString)>,
}

impl Sandbox {
    pub fn new(label: &str) -> Sandbox {
        let dir = TempDir::new(label);
        let root = dir.path().to_owned();
        fs::create_dir_all(root.join("data")).expect("create sandbox");
        // Traversable by an unprivileged engine (BTSYNC_UID tests).
        for dir in [root.clone(), root.join("data")] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let engine_log = root.join("engine.log");
        fs::write(&engine_log, b"").expect("create engine log");
        fs::set_permissions(&engine_log, fs::Permissions::from_mode(0o666)).expect("chmod");
        let sandbox = Sandbox {
            dir,
            root,
            env: Vec::new(),
        };
        // CI runs the suites once more with SYNCBOX_TEST_ENGINE_API=config:
        // every test not tied to one mode runs in both.
        match std::env::var_os("SYNCBOX_TEST_ENGINE_API") {
            Some(mode) => sandbox.with_env("BTSYNC_ENGINE_API", mode),
            None => sandbox,
        }
    }

    /// The sandbox with init in config-file mode, for a test of what only
    /// that mode does (the config's `shared_folders`, HUP reloads, restarts
    /// per change).
    pub fn config_file_mode(self) -> Sandbox {
        self.with_env("BTSYNC_ENGINE_API", "config")
    }

    /// The sandbox, running every command (init too) with `var=value` added.
    pub fn with_env(mut self, var: &str, value: impl Into<OsString>) -> Sandbox {
        self.env.push((var.to_owned(), value.into()));
        self
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn folder(&self, ns: &str) -> PathBuf {
        self.data().join(ns)
    }

    pub fn engine_log_path(&self) -> PathBuf {
        self.root.join("engine.log")
    }

    pub fn init_log_path(&self) -> PathBuf {
        self.root.join("init.log")
    }

    pub fn config_path(&self) -> PathBuf {
        self.data().join(".btsync/btsync.conf")
    }

    /// `syncbox APPLET ARGS` with a clean environment pointing at this sandbox.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(syncbox_bin());
        command.args(args);
        self.environment(&mut command);
        command
    }

    pub fn environment(&self, command: &mut Command) {
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BTSYNC_DATA", self.data())
            .env("BTSYNC_BIN", stand_in_bin())
            .env("STAND_IN_LOG", self.engine_log_path())
            .env("BTSYNC_APPLY_TIMEOUT", "60")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run syncbox")
    }

    pub fn events(&self) -> Vec<Value> {
        fs::read_to_string(self.engine_log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    pub fn starts(&self) -> Vec<Value> {
        self.events_of("start")
    }

    /// No engine saw a file of its folders disappear: the real engine would
    /// have sent that deletion to every peer.
    pub fn assert_nothing_vanished(&self) {
        assert_eq!(
            self.events_of("vanished"),
            Vec::<Value>::new(),
            "files were deleted under an engine that syncs them\n{}",
            self.context()
        );
    }

    pub fn context(&self) -> String {
        format!(
            "--- init stderr:\n{}\n--- engine log:\n{}",
            fs::read_to_string(self.init_log_path()).unwrap_or_default(),
            fs::read_to_string(self.engine_log_path()).unwrap_or_default()
        )
    }
}

pub fn folders_of(start: &Value) -> Vec<String> {
    start["folders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// PID 1 of a new PID namespace (unshare; root).
    Pid1,
    /// A plain child of the test: init makes itself child subreaper.
    Subreaper,
    /// PID 1 of a new PID namespace that also has a network namespace of
    /// its own (no route anywhere): for the real engine (root). Its
    /// loopback is down, so init runs the engine in config-file mode.
    Pid1Offline,
    /// Pid1Offline with the loopback up (`ip link set lo up` before init
    /// is exec'd as PID 1): the engine's WebUI answers, as in a container.
    Pid1Loopback,
}

/// A running `syncbox init`.
pub struct Init<'s> {
    sandbox: &'s Sandbox,
    /// unshare (Pid1) or init itself (Subreaper).
    pub child: Child,
    /// init's pid as this test sees it.
    pub pid: i32,
    pub exited: Option<i32>,
}

pub fn proc_stat(pid: i32) -> Option<(char, i32, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid, comm))
}

/// The pid of every process /proc lists.
pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// (pid, state, comm) of every process whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<(i32, char, String)> {
    let mut found = Vec::new();
    for pid in all_pids() {
        if let Some((state, ppid, comm)) = proc_stat(pid)
            && ppid == parent
        {
            found.push((pid, state, comm));
        }
    }
    found
}

impl<'s> Init<'s> {
    pub fn start(sandbox: &'s Sandbox, mode: Mode, env: &[(&str, &str)]) -> Init<'s> {
        let mut command = match mode {
            Mode::Pid1 | Mode::Pid1Offline => {
                let mut c = Command::new("unshare");
                if mode == Mode::Pid1Offline {
                    c.arg("--net");
                }
                c.args(["--pid", "--fork", "--mount-proc", "--"])
                    .arg(syncbox_bin())
                    .arg("init");
                c
            }
            Mode::Pid1Loopback => {
                let mut c = Command::new("unshare");
                c.args(["--net", "--pid", "--fork", "--mount-proc", "--"])
                    .args(["sh", "-c", "ip link set lo up && exec \"$0\" init"])
                    .arg(syncbox_bin());
                c
            }
            Mode::Subreaper => {
                let mut c = Command::new(syncbox_bin());
                c.arg("init");
                c
            }
        };
        sandbox.environment(&mut command);
        for (var, value) in env {
            command.env(var, value);
        }
        let log = fs::File::create(sandbox.init_log_path()).expect("init log");
        command.stderr(log).stdout(Stdio::null());
        let child = command.spawn().expect("start init");
        let outer = child.id() as i32;
        let mut init = Init {
            sandbox,
            child,
            pid: outer,
            exited: None,
        };
        if mode != Mode::Subreaper {
            let mut inner = None;
            wait_until(
                "unshare forked init",
                || {
                    inner = children_of(outer).first().map(|c| c.0);
                    inner.is_some() || init.child.try_wait().ok().flatten().is_some()
                },
                || sandbox.context(),
            );
            init.pid = inner.unwrap_or(outer);
        }
        init
    }

    /// Start init and wait until the engine has started once. An engine
    /// runs only with something to sync: register a namespace first.
    pub fn start_running(sandbox: &'s Sandbox, mode: Mode, env: &[(&str, &str)]) -> Init<'s> {
        let mut init = Init::start(sandbox, mode, env);
        init.wait_for_starts(1);
        init
    }

    /// Start init on a node with nothing to sync and wait until it says
    /// it is idle.
    pub fn start_idle(sandbox: &'s Sandbox, mode: Mode, env: &[(&str, &str)]) -> Init<'s> {
        let init = Init::start(sandbox, mode, env);
        init.wait_for_state("idle");
        init
    }

    /// Wait until `status` reports the engine in `state`.
    pub fn wait_for_state(&self, state: &str) {
        let sandbox = self.sandbox;
        wait_until(
            &format!("init reports the engine {state}"),
            || {
                let out = sandbox.run(&["status", "--json"]);
                out.status.code() == Some(0)
                    && serde_json::from_slice::<Value>(&out.stdout)
                        .is_ok_and(|s| s["engine"]["state"] == state)
            },
            || sandbox.context(),
        );
    }

    pub fn wait_for_starts(&mut self, count: usize) {
        let sandbox = self.sandbox;
        wait_until(
            &format!("the engine started {count} time(s)"),
            || sandbox.starts().len() >= count,
            || sandbox.context(),
        );
    }

    /// The start record of the engine init runs now. Init answers add/del
    /// once it has spawned that engine; the stand-in logs its start a moment
    /// later, so wait for that line.
    pub fn current_start(&self) -> Value {
        let pid = self.status()["engine"]["pid"].clone();
        assert!(
            pid.is_i64(),
            "no engine running\n{}",
            self.sandbox.context()
        );
        let mut found = None;
        wait_until(
            "the running engine logged its start",
            || {
                found = self.sandbox.starts().into_iter().find(|s| s["pid"] == pid);
                found.is_some()
            },
            || self.sandbox.context(),
        );
        found.unwrap_or_default()
    }

    /// The folders the running engine serves now, as the stand-in last
    /// logged them (its start, or a reload since, by the same pid). Waits
    /// until that log agrees with what init's `status` says it serves: init
    /// answers once it saw the proof, the stand-in logs a moment later.
    pub fn serving(&self) -> Vec<String> {
        let status = self.status();
        let pid = status["engine"]["pid"].clone();
        assert!(
            pid.is_i64(),
            "no engine running\n{}",
            self.sandbox.context()
        );
        let mut claimed: Vec<String> = folders_of(&status["engine"]);
        claimed.sort();
        let mut found = Vec::new();
        wait_until(
            "the running engine logged the folders init says it serves",
            || {
                found = self
                    .sandbox
                    .events()
                    .into_iter()
                    .rev()
                    .find(|e| e["pid"] == pid && (e["event"] == "start" || e["event"] == "reload"))
                    .map(|e| folders_of(&e))
                    .unwrap_or_default();
                found.sort();
                found == claimed
            },
            || self.sandbox.context(),
        );
        found
    }

    pub fn signal(&self, signal: i32) {
        sys::send_signal(self.pid, signal).expect("signal init");
    }

    /// Wait for init to exit; its exit status (unshare passes it through).
    pub fn wait_exit(&mut self) -> i32 {
        if let Some(code) = self.exited {
            return code;
        }
        let code = exit_code(&mut self.child, self.sandbox);
        self.exited = Some(code);
        code
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.sandbox.init_log_path()).unwrap_or_default()
    }

    pub fn status(&self) -> Value {
        let out = self.sandbox.run(&["status", "--json"]);
        assert_eq!(out.status.code(), Some(0), "status failed: {out:?}");
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }
}

impl Drop for Init<'_> {
    fn drop(&mut self) {
        if self.exited.is_none() {
            // Killing init ends its PID namespace, or (subreaper) the engine
            // through its parent-death signal.
            let _ = sys::send_signal(self.pid, SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `add ns-00` .. `add ns-NN` all at once and asserts each succeeded.
pub fn add_concurrently(sandbox: &Sandbox, count: usize) {
    let adds: Vec<(String, Child)> = (0..count)
        .map(|i| {
            let ns = format!("ns-{i:02}");
            let child = sandbox
                .command(&["add", &ns])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn add");
            (ns, child)
        })
        .collect();
    for (ns, child) in adds {
        let out = child.wait_with_output().expect("wait add");
        assert_eq!(
            out.status.code(),
            Some(0),
            "add {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn add(sandbox: &Sandbox, ns: &str) {
    let out = sandbox.run(&["add", ns]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "add {ns}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sandbox.context()
    );
}

/// The real btsync's path, for init's `BTSYNC_BIN`, or `None` after the
/// line saying why the caller skips (never in CI: see `common::real_engine`).
#[track_caller]
pub fn real_engine_bin(test: &str) -> Option<String> {
    let path = crate::common::real_engine(test, true)?;
    Some(
        path.to_str()
            .expect("a UTF-8 path to the engine")
            .to_owned(),
    )
}

/// init's variables for the real engine under test: it runs in a network
/// namespace of its own (Mode::Pid1Offline), with no peer discovery, so
/// nothing leaves the machine.
pub fn offline_engine_env(btsync: &str) -> [(&'static str, &str); 7] {
    [
        ("BTSYNC_BIN", btsync),
        ("BTSYNC_USE_TRACKER", "false"),
        ("BTSYNC_USE_RELAY_SERVER", "false"),
        ("BTSYNC_SEARCH_LAN", "false"),
        ("BTSYNC_USE_DHT", "false"),
        ("BTSYNC_KNOWN_HOSTS", "127.0.0.1:1"),
        ("BTSYNC_LISTEN_PORT", "0"),
    ]
}

/// A child process killed (and reaped) when the guard goes, so that a
/// failing test leaves no init or engine behind.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Its exit code within the test deadline.
    pub fn exit_code(&mut self, sandbox: &Sandbox) -> i32 {
        exit_code(&mut self.0, sandbox)
    }
}

/// The exit code of `child` (unshare passes init's through), waited for
/// within the test deadline.
fn exit_code(child: &mut std::process::Child, sandbox: &Sandbox) -> i32 {
    let mut status = None;
    wait_until(
        "the process exited",
        || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        },
        || sandbox.context(),
    );
    status
        .and_then(|s| s.code())
        .expect("the process exited with a status code")
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
