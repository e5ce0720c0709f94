//! Shared test scaffolding: a private data root per test and ways to run the
//! built binary the three ways users do (bare applet link, `syncbox APPLET`,
//! `ctl APPLET`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const SYNCBOX: &str = env!("CARGO_BIN_EXE_syncbox");

/// The seed's applets plus the dispatcher-level `ctl`.
pub const APPLETS: &[&str] = &["add", "del", "has", "list", "path", "secret"];

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

pub struct Sandbox {
    pub root: PathBuf,
    pub data: PathBuf,
    pub bin: PathBuf,
    pub env: Vec<(String, String)>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Sandbox {
    pub fn new() -> Sandbox {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("syncbox-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let data = root.join("data");
        let bin = root.join("bin");
        fs::create_dir_all(&data).expect("create data root");
        fs::create_dir_all(&bin).expect("create bin dir");
        for name in APPLETS.iter().chain(&["ctl"]) {
            symlink(SYNCBOX, bin.join(name)).expect("link applet");
        }
        let env = vec![("BTSYNC_DATA".to_owned(), data.display().to_string())];
        Sandbox {
            root,
            data,
            bin,
            env,
        }
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Sandbox {
        self.env.push((key.to_owned(), value.to_owned()));
        self
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
        cmd.env_remove("BTSYNC_HOST_PATH");
        cmd.env_remove("BTSYNC_CLUSTER_KEY");
        cmd.env_remove("BTSYNC_CLUSTER_KEY_FILE");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
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

    pub fn folder(&self, ns: &str) -> PathBuf {
        self.data.join(ns)
    }

    pub fn entry(&self, ns: &str) -> PathBuf {
        self.data.join(".btsync/namespaces").join(ns)
    }

    /// Every path under the data root with its kind, size and mode: a test
    /// compares two snapshots to prove that a command changed nothing.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        walk(&self.data, &self.data, &mut out);
        // The lock file is created and left behind by design.
        out.remove(Path::new(".btsync/lock"));
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
        let content = if meta.is_file() {
            fs::read(&path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
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

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
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
