//! Shared test scaffolding: a private data root per test (`Sandbox`, in a
//! `TempDir`) and ways to run the built binary with a controlled environment,
//! the three ways users do (bare applet link, `syncbox APPLET`, `ctl APPLET`).
//! Each test file uses a different part of this.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const SYNCBOX: &str = env!("CARGO_BIN_EXE_syncbox");

/// The seed's applets plus the dispatcher-level `ctl`.
pub const APPLETS: &[&str] = &["add", "del", "has", "list", "path", "secret"];

/// Variables syncbox reads; cleared so the caller's environment cannot leak
/// into a test.
const SYNCBOX_VARS: &[&str] = &[
    "BTSYNC_DATA",
    "BTSYNC_HOST_PATH",
    "BTSYNC_CLUSTER_KEY",
    "BTSYNC_CLUSTER_KEY_FILE",
    "BTSYNC_BIN",
];

#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// `bin/add ARGS` (a symlink named after the applet)
    Link,
    /// `syncbox add ARGS`
    Multiplexer,
    /// `bin/ctl add ARGS`
    Ctl,
}

pub const ALL_WAYS: [Via; 3] = [Via::Link, Via::Multiplexer, Via::Ctl];

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "syncbox-test-{label}-{}-{unique}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create a temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `contents` to `name` inside this directory; returns its path.
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path.join(name);
        fs::write(&path, contents).expect("write a test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// One node: a data root (`data`), links to the binary named after each
/// applet (`bin`), and the environment its commands run with. A clone is the
/// same node (the directory lives until the last clone goes).
#[derive(Clone)]
pub struct Sandbox {
    dir: Rc<TempDir>,
    pub root: PathBuf,
    pub data: PathBuf,
    pub bin: PathBuf,
    pub env: Vec<(String, OsString)>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox::labelled("sandbox")
    }

    /// A sandbox whose directory name carries `label`.
    pub fn labelled(label: &str) -> Sandbox {
        let dir = TempDir::new(label);
        let root = dir.path().to_owned();
        let data = root.join("data");
        let bin = root.join("bin");
        fs::create_dir_all(&data).expect("create data root");
        fs::create_dir_all(&bin).expect("create bin dir");
        for name in APPLETS.iter().chain(&["ctl"]) {
            symlink(SYNCBOX, bin.join(name)).expect("link applet");
        }
        Sandbox {
            dir: Rc::new(dir),
            root,
            data,
            bin,
            env: Vec::new(),
        }
    }

    /// The same node, running commands with `var=value` added (a later
    /// value of a variable wins).
    pub fn with_env(&self, var: &str, value: impl AsRef<OsStr>) -> Sandbox {
        let mut sandbox = self.clone();
        sandbox
            .env
            .push((var.to_owned(), value.as_ref().to_owned()));
        sandbox
    }

    /// The environment of every command: syncbox's variables from the caller
    /// removed, BTSYNC_DATA set to this data root, then `env`.
    fn environment(&self, command: &mut Command) {
        for var in SYNCBOX_VARS {
            command.env_remove(var);
        }
        command.env("BTSYNC_DATA", &self.data);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
    }

    pub fn command(&self, via: Via, applet: &str, args: &[&str]) -> Command {
        let mut cmd = match via {
            Via::Link => Command::new(self.bin.join(applet)),
            Via::Multiplexer => {
                let mut c = Command::new(SYNCBOX);
                c.arg(applet);
                c
            }
            Via::Ctl => {
                let mut c = Command::new(self.bin.join("ctl"));
                c.arg(applet);
                c
            }
        };
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        self.environment(&mut cmd);
        cmd
    }

    pub fn run_via(&self, via: Via, applet: &str, args: &[&str]) -> Run {
        let output = self
            .command(via, applet, args)
            .output()
            .expect("run syncbox");
        Run::from(output)
    }

    /// Run a bare applet (through its link).
    pub fn run(&self, applet: &str, args: &[&str]) -> Run {
        self.run_via(Via::Link, applet, args)
    }

    /// Run `syncbox ARGS...` (the applet is the first of `args`).
    pub fn syncbox(&self, args: &[&str]) -> Run {
        let mut command = Command::new(SYNCBOX);
        command.args(args);
        self.environment(&mut command);
        Run::from(command.output().expect("run syncbox"))
    }

    /// Run `syncbox ARGS...`, insist on success, return stdout.
    #[track_caller]
    pub fn syncbox_ok(&self, args: &[&str]) -> String {
        let run = self.syncbox(args);
        assert_eq!(run.code, 0, "{args:?} failed: {run:?}");
        run.stdout
    }

    pub fn folder(&self, ns: &str) -> PathBuf {
        self.data.join(ns)
    }

    pub fn entry(&self, ns: &str) -> PathBuf {
        self.data.join(".btsync/namespaces").join(ns)
    }

    /// Every path under the data root with its kind, mode and content
    /// (files): a test compares two snapshots to prove that a command changed
    /// nothing. Without the lock file, which the first command creates and
    /// leaves behind by design.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = self.snapshot_with_lock();
        out.remove(Path::new(".btsync/lock"));
        out
    }

    /// `snapshot`, the lock file included: for a data root that has one
    /// already.
    pub fn snapshot_with_lock(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        walk(&self.data, &self.data, &mut out);
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(listing) = fs::read_dir(dir) else {
        return;
    };
    for item in listing.flatten() {
        let path = item.path();
        let meta = fs::symlink_metadata(&path).expect("stat");
        let rel = path.strip_prefix(root).expect("under root").to_owned();
        // Exact: text as it is, anything else as its bytes.
        let content = if meta.is_file() {
            match String::from_utf8(fs::read(&path).expect("read a test file")) {
                Ok(text) => format!("text {text}"),
                Err(binary) => format!("bytes {:?}", binary.into_bytes()),
            }
        } else {
            String::new()
        };
        out.insert(
            rel,
            format!(
                "{:?} {:o} {}",
                meta.file_type(),
                meta.permissions().mode(),
                content
            ),
        );
        if meta.is_dir() {
            walk(root, &path, out);
        }
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }

    #[track_caller]
    pub fn code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit status: {self:?}");
        self
    }

    /// The error contract: exactly one line on stderr, nothing on stdout.
    #[track_caller]
    pub fn one_line_error(&self) -> &Run {
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "want one stderr line: {self:?}"
        );
        assert!(self.stdout.is_empty(), "want empty stdout: {self:?}");
        self
    }
}

pub const A_KEY: &str = "AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA";
pub const B_KEY: &str = "B3MF5NHDCWI6JTVUU2R3LYMQDAK2QCEXG";

/// Where a test finds the real btsync 1.4.111: `SYNCBOX_TEST_BTSYNC` (CI's
/// `.ci/run` exports it), else what `tests/real-engine` prints (it unpacks
/// the vendor tarball from `../shared/engines` after `sha256sum -c`).
pub const REAL_ENGINE_VAR: &str = "SYNCBOX_TEST_BTSYNC";

/// The real engine, or `None` after one visible line saying why the caller
/// skips. When `CI` is set a missing engine fails the test instead: CI never
/// skips the real-engine suites. Tests that need `unshare -n` (root) pass
/// `needs_root`, with the same rule for a missing privilege.
#[track_caller]
pub fn real_engine(test: &str, needs_root: bool) -> Option<PathBuf> {
    let found = locate_real_engine();
    let why = match (&found, needs_root && !running_as_root()) {
        (Err(why), _) => why.clone(),
        (Ok(_), true) => "needs root to run the real engine under `unshare -n`".to_owned(),
        (Ok(path), false) => return Some(path.clone()),
    };
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{test}: the real btsync is required in CI: {why}");
    }
    eprintln!("{test}: SKIPPED against the real btsync 1.4.111: {why}");
    None
}

fn locate_real_engine() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(REAL_ENGINE_VAR).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{REAL_ENGINE_VAR}={} is not a file",
                path.display()
            ))
        };
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real-engine");
    let output = Command::new(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && Path::new(&printed).is_file() {
        return Ok(PathBuf::from(printed));
    }
    let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Err(format!(
        "{REAL_ENGINE_VAR} is unset and tests/real-engine found none ({said})"
    ))
}

pub fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next().map(|uid| uid == "0"))
        .unwrap_or(false)
}
