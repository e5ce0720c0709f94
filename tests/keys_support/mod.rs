//! Simulated nodes for the key tests: each node is its own data directory,
//! driven through the built binary with a controlled environment.

#![allow(dead_code)] // Each test file uses a different part of this.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Variables syncbox reads; cleared so the caller's environment cannot leak
/// into a test.
const SYNCBOX_VARS: &[&str] = &[
    "BTSYNC_DATA",
    "BTSYNC_HOST_PATH",
    "BTSYNC_CLUSTER_KEY",
    "BTSYNC_CLUSTER_KEY_FILE",
    "BTSYNC_BIN",
];

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
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

/// What one run of the binary did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One node: a data directory plus the environment its commands run with.
#[derive(Clone)]
pub struct Node {
    data: Rc<TempDir>,
    env: Vec<(String, String)>,
}

impl Node {
    pub fn new(label: &str) -> Node {
        Node {
            data: Rc::new(TempDir::new(label)),
            env: Vec::new(),
        }
    }

    pub fn data(&self) -> &Path {
        self.data.path()
    }

    /// The same node, running commands with `var=value` added.
    pub fn with_env(&self, var: &str, value: impl AsRef<Path>) -> Node {
        let mut node = self.clone();
        let value = value
            .as_ref()
            .to_str()
            .expect("UTF-8 test value")
            .to_owned();
        node.env.push((var.to_owned(), value));
        node
    }

    /// Run `syncbox ARGS...` on this node.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let mut command = Command::new(env!("CARGO_BIN_EXE_syncbox"));
        for var in SYNCBOX_VARS {
            command.env_remove(var);
        }
        command.env("BTSYNC_DATA", self.data.path());
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let output = command.args(args).output().expect("run syncbox");
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Run `syncbox ARGS...`, insist on success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let outcome = self.run(args);
        assert_eq!(outcome.code, 0, "{args:?} failed: {outcome:?}");
        outcome.stdout
    }

    /// Every path under the data directory with its contents (files) or
    /// kind (directories, links), sorted: equal snapshots mean nothing changed.
    pub fn snapshot(&self) -> Vec<(PathBuf, Option<Vec<u8>>)> {
        let mut found = Vec::new();
        collect(self.data.path(), self.data.path(), &mut found);
        found.sort();
        found
    }
}

fn collect(root: &Path, dir: &Path, found: &mut Vec<(PathBuf, Option<Vec<u8>>)>) {
    let listing = fs::read_dir(dir).expect("read a test dir");
    for item in listing {
        let path = item.expect("read a test dir entry").path();
        let relative = path.strip_prefix(root).expect("inside root").to_owned();
        let meta = fs::symlink_metadata(&path).expect("stat a test path");
        if meta.is_dir() {
            found.push((relative, None));
            collect(root, &path, found);
        } else if meta.is_file() {
            found.push((relative, Some(fs::read(&path).expect("read a test file"))));
        } else {
            found.push((relative, None));
        }
    }
}
