//! Cluster mode, end to end, with several nodes on one machine: each node
//! has its own data directory, its own `syncbox init` (a plain child that
//! makes itself subreaper; no root needed) and its own stand-in engine
//! (`tests/support/stand_in_engine.rs`). Their registry folders
//! (`.btsync/cluster`) are symbolic links to one shared directory: a
//! perfectly replicating engine, so these tests show what syncbox does with
//! the registry, not how fast a real engine replicates it.
//!
//! The stand-in reports `vanished` when a file of a folder it syncs
//! disappears while it runs; every removal test checks that it never did.
//! Deadlines are generous and only stop a hung test; propagation times are
//! printed (run with --nocapture), never asserted.

mod common;
#[path = "support/harness.rs"]
mod harness;

use std::fs;
use std::ops::Deref;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::TempDir;
use harness::{Init, Mode, SIGTERM, Sandbox, wait_until, wait_within};
use serde_json::{Value, json};

const CLUSTER_KEY: &str = "correct horse battery staple";
/// The cluster id of CLUSTER_KEY (docs/cluster.md test vector).
const CLUSTER_ID: &str = "925124d2a45407c2";
/// For "every node holds it": the issue asks for 3 s; waiting up to this
/// long keeps a loaded machine from failing the test, and the time it took
/// is printed.
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(15);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The shared registry of one test, removed at the end, and the maker of
/// its nodes.
struct Cluster {
    label: String,
    registry: TempDir,
}

impl Cluster {
    fn new(label: &str) -> Cluster {
        Cluster {
            label: label.to_owned(),
            registry: TempDir::new(&format!("cluster-{label}-registry")),
        }
    }

    fn registry(&self) -> PathBuf {
        self.registry.path().to_owned()
    }

    /// A node whose `.btsync/cluster` is the shared registry.
    fn node(&self, name: &str) -> Node {
        let node = self.lonely_node(name);
        fs::create_dir_all(node.data().join(".btsync")).expect("create .btsync");
        symlink(self.registry(), node.data().join(".btsync/cluster")).expect("link the registry");
        node
    }

    /// A node with a registry folder of its own (empty, not shared).
    fn lonely_node(&self, name: &str) -> Node {
        let sandbox = Sandbox::new(&format!("cluster-{}-{name}", self.label))
            .with_env("BTSYNC_CLUSTER_KEY", CLUSTER_KEY)
            .with_env("BTSYNC_DEVICE_NAME", name);
        Node {
            name: name.to_owned(),
            sandbox,
        }
    }
}

/// A sandbox of the harness that is one named node of the cluster: its
/// commands run with the cluster key and the node's device name.
struct Node {
    name: String,
    sandbox: Sandbox,
}

impl Deref for Node {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Node {
    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {args:?}: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.context()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `syncbox init` as a child subreaper, once its engine runs.
    fn start_init(&self, env: &[(&str, &str)]) -> Init<'_> {
        let init = Init::start(&self.sandbox, Mode::Subreaper, env);
        // Running, and past its start (signal handlers installed): a TERM
        // that came earlier would kill it rather than stop it.
        wait_until(
            &format!("{}: the engine runs", self.name),
            || {
                self.status().is_some_and(|s| {
                    s["engine"]["state"] == "running"
                        && self
                            .events_of("start")
                            .iter()
                            .any(|e| e["pid"] == s["engine"]["pid"])
                })
            },
            || self.context(),
        );
        init
    }

    /// TERM to init; it must exit 0. Once the running engine is past its
    /// start (handlers installed): a TERM that came earlier would kill it
    /// (status 143) rather than stop it.
    fn stop(&self, mut init: Init) {
        wait_until(
            &format!("{}: the running engine logged its start", self.name),
            || {
                self.status().is_some_and(|s| {
                    s["engine"]["pid"].is_null()
                        || self
                            .events_of("start")
                            .iter()
                            .any(|e| e["pid"] == s["engine"]["pid"])
                })
            },
            || self.context(),
        );
        init.signal(SIGTERM);
        assert_eq!(init.wait_exit(), 0, "{}", self.context());
    }

    fn status(&self) -> Option<Value> {
        let out = self.run(&["status", "--json"]);
        if out.status.code() != Some(0) {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn has(&self, ns: &str) -> bool {
        self.run(&["has", ns]).status.code() == Some(0)
    }

    /// The namespaces the running engine syncs (not while it restarts).
    fn engine_folders(&self) -> Option<Vec<String>> {
        let status = self.status()?;
        if status["engine"]["state"] != "running" {
            return None;
        }
        serde_json::from_value(status["engine"]["folders"].clone()).ok()
    }

    /// Registered, and the running engine syncs it.
    fn holds(&self, ns: &str) -> bool {
        self.has(ns)
            && self
                .engine_folders()
                .is_some_and(|f| f.iter().any(|n| n == ns))
    }

    /// Not registered, and a running engine that does not sync it.
    fn dropped(&self, ns: &str) -> bool {
        !self.has(ns)
            && self
                .engine_folders()
                .is_some_and(|f| f.iter().all(|n| n != ns))
    }

    /// Items of the cluster trash that hold `ns`.
    fn trash_of(&self, ns: &str) -> Vec<PathBuf> {
        let mut items: Vec<PathBuf> = fs::read_dir(self.data().join(".btsync/cluster-trash"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|i| {
                i.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&format!("{ns}@")))
            })
            .map(|i| i.path())
            .collect();
        items.sort();
        items
    }

    fn context(&self) -> String {
        format!("=== node {}\n{}", self.name, self.sandbox.context())
    }

    fn assert_nothing_vanished(&self) {
        assert_eq!(
            self.events_of("vanished"),
            Vec::<Value>::new(),
            "an engine saw files disappear\n{}",
            self.context()
        );
    }
}

fn context_of(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| n.context())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Wait until every node satisfies `check`; the time each took from `since`.
fn wait_all(
    what: &str,
    nodes: &[&Node],
    since: Instant,
    check: impl Fn(&Node) -> bool,
) -> Vec<Duration> {
    nodes
        .iter()
        .map(|node| {
            wait_within(
                &format!("{}: {what}", node.name),
                PROPAGATION_DEADLINE,
                || check(node),
                || context_of(nodes),
            );
            since.elapsed()
        })
        .collect()
}

fn record(registry: &Path, file: &str) -> Value {
    let text = fs::read_to_string(registry.join(file)).expect("record file");
    serde_json::from_str(&text).expect("record JSON")
}

fn device_of(node: &Node) -> String {
    fs::read_to_string(node.data().join(".btsync/device-id"))
        .expect("device id")
        .trim()
        .to_owned()
}

#[test]
fn declaration_reaches_every_node_and_a_tombstone_trashes_after_the_engine_let_go() {
    let cluster = Cluster::new("declare");
    let nodes: Vec<Node> = (1..=3).map(|i| cluster.node(&format!("node{i}"))).collect();
    let inits: Vec<Init> = nodes.iter().map(|node| node.start_init(&[])).collect();
    let all: Vec<&Node> = nodes.iter().collect();

    let declared_at = Instant::now();
    nodes[0].run_ok(&["add", "--cluster", "gitlab"]);
    // add returns once node 1's own engine runs with it.
    assert!(nodes[0].holds("gitlab"), "{}", nodes[0].context());
    let took = wait_all("holds gitlab", &all[1..], declared_at, |n| {
        n.holds("gitlab")
    });
    eprintln!("declare on node1 -> node2, node3 hold gitlab after {took:?}");

    // Same key everywhere, registered as coming from the cluster.
    let key = nodes[0].run_ok(&["secret", "gitlab"]);
    for node in &nodes {
        assert_eq!(node.run_ok(&["secret", "gitlab"]), key, "{}", node.name);
        let list: Value = serde_json::from_str(&node.run_ok(&["list", "--json"])).expect("list");
        assert_eq!(list[0]["name"], "gitlab");
        assert_eq!(list[0]["declared"], "cluster", "{}: {list}", node.name);
        assert_eq!(list[0]["key_origin"], "cluster");
        fs::write(node.folder("gitlab").join("data.txt"), &node.name).expect("write");
    }
    let status = nodes[1].status().expect("status");
    assert_eq!(status["cluster"]["cluster_id"], CLUSTER_ID);
    assert_eq!(
        status["cluster"]["declared"][0]["name"], "gitlab",
        "{status}"
    );
    assert_eq!(status["cluster"]["declared"][0]["device_name"], "node1");
    assert_eq!(
        status["cluster"]["last_reconcile"]["changes"],
        json!(["added gitlab"]),
        "{status}"
    );

    // A local del would be undone at once: refused, nothing changes.
    let out = nodes[1].run(&["del", "gitlab"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("del --cluster gitlab"), "{message}");
    assert!(nodes[1].holds("gitlab"));

    // Removed from another node than the one that declared it.
    let removed_at = Instant::now();
    nodes[2].run_ok(&["del", "--cluster", "gitlab"]);
    let took = wait_all("dropped gitlab", &all, removed_at, |n| {
        n.dropped("gitlab") && n.trash_of("gitlab").len() == 1
    });
    eprintln!("del --cluster on node3 -> every node dropped gitlab after {took:?}");
    for node in &nodes {
        assert!(!node.folder("gitlab").exists(), "{}", node.name);
        let trashed = &node.trash_of("gitlab")[0];
        assert_eq!(
            fs::read_to_string(trashed.join("data.txt")).expect("trashed file"),
            node.name,
            "the trash keeps {}'s own copy",
            node.name
        );
        // The engine that synced gitlab was stopped before its files moved.
        node.assert_nothing_vanished();
    }
    let status = nodes[0].status().expect("status");
    assert_eq!(
        status["cluster"]["removed"][0]["name"], "gitlab",
        "{status}"
    );
    assert_eq!(status["cluster"]["removed"][0]["device_name"], "node3");
    assert_eq!(status["cluster"]["declared"], json!([]));
    for (node, init) in nodes.iter().zip(inits) {
        node.stop(init);
    }
}

#[test]
fn redeclaring_after_a_tombstone_works_and_purge_deletes_only_where_allowed() {
    let cluster = Cluster::new("redeclare");
    let nodes: Vec<Node> = (1..=2).map(|i| cluster.node(&format!("node{i}"))).collect();
    let mut inits: Vec<Init> = nodes.iter().map(|node| node.start_init(&[])).collect();
    let all: Vec<&Node> = nodes.iter().collect();
    nodes[0].run_ok(&["add", "--cluster", "wiki"]);
    wait_all("holds wiki", &all, Instant::now(), |n| n.holds("wiki"));
    for node in &nodes {
        fs::write(node.folder("wiki").join("old.txt"), "old").expect("write");
    }
    nodes[1].run_ok(&["del", "--cluster", "wiki"]);
    wait_all("trashed wiki", &all, Instant::now(), |n| {
        n.dropped("wiki") && n.trash_of("wiki").len() == 1
    });

    // Declared again: every node holds it again, starting from an empty
    // folder (the old copies stay in the trash).
    let again = Instant::now();
    nodes[1].run_ok(&["add", "--cluster", "wiki"]);
    let took = wait_all("holds wiki again", &all, again, |n| n.holds("wiki"));
    eprintln!("re-declare -> both nodes hold wiki after {took:?}");
    let device = device_of(&nodes[1]);
    let mine = record(&cluster.registry(), &format!("wiki@{device}.json"));
    assert_eq!(mine["state"], "declared", "{mine}");
    for node in &nodes {
        assert!(
            !node.folder("wiki").join("old.txt").exists(),
            "{}",
            node.name
        );
        assert_eq!(node.trash_of("wiki").len(), 1, "{}", node.name);
        fs::write(node.folder("wiki").join("new.txt"), "new").expect("write");
    }

    // A purge tombstone from another device (issue 27): node2 opted in
    // (BTSYNC_CLUSTER_PURGE) and deletes its copy; node1 did not, and keeps
    // its copy in the trash like any removal.
    let node2_init = inits.remove(1);
    nodes[1].stop(node2_init);
    inits.push(nodes[1].start_init(&[("BTSYNC_CLUSTER_PURGE", "on")]));
    wait_all("holds wiki after the restart", &all, Instant::now(), |n| {
        n.holds("wiki")
    });
    write_foreign_record(
        &cluster.registry(),
        "wiki",
        json!({"state": "removed", "purge": true}),
    );
    wait_all("dropped wiki", &all, Instant::now(), |n| n.dropped("wiki"));
    wait_all("disposed of wiki's copy", &all, Instant::now(), |n| {
        !n.folder("wiki").exists()
    });
    assert_eq!(nodes[0].trash_of("wiki").len(), 2, "node1 kept a copy");
    let kept = &nodes[0].trash_of("wiki")[1];
    assert_eq!(
        fs::read_to_string(kept.join("new.txt")).ok().as_deref(),
        Some("new")
    );
    assert_eq!(nodes[1].trash_of("wiki").len(), 1, "node2 deleted its copy");
    for node in &nodes {
        node.assert_nothing_vanished();
    }
    let status = nodes[0].status().expect("status");
    assert_eq!(status["cluster"]["purge"], "trashed", "{status}");
    let status = nodes[1].status().expect("status");
    assert_eq!(status["cluster"]["purge"], "honoured", "{status}");
    for (node, init) in nodes.iter().zip(inits) {
        node.stop(init);
    }
}

/// The device id of records written here as another member would.
const OTHER_DEVICE: &str = "00000000000000ee";

/// Write a record for `name` as device [`OTHER_DEVICE`], dated now, with
/// `fields` over a declaration's (atomically: a half-written file would be
/// ignored, not read as this record).
fn write_foreign_record(registry: &Path, name: &str, fields: Value) {
    write_record_as(registry, name, OTHER_DEVICE, fields);
}

fn write_record_as(registry: &Path, name: &str, device: &str, fields: Value) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let mut record = json!({
        "v": 1, "cluster": CLUSTER_ID, "name": name, "state": "declared",
        "access": "read-write", "at": now_ms, "device": device, "device_name": "other",
    });
    if let (Some(record), Some(fields)) = (record.as_object_mut(), fields.as_object()) {
        for (key, value) in fields {
            if value.is_null() {
                record.remove(key);
            } else {
                record.insert(key.clone(), value.clone());
            }
        }
    }
    let file = registry.join(format!("{name}@{device}.json"));
    let temporary = registry.join(format!(".{name}@{device}.json.tmp"));
    fs::write(&temporary, record.to_string()).expect("write record");
    fs::rename(&temporary, &file).expect("rename record");
}

#[test]
fn a_declaration_travels_through_the_declaring_members_folder() {
    // Two nodes whose registry folders are NOT shared: only b's member
    // folder is (as an engine syncs it), so a record of b's can reach a
    // only that way, as it does while a flood fills the registry folder.
    let cluster = Cluster::new("members");
    // Config-file mode: the engine's start lists every folder it took.
    let a = cluster.lonely_node("a");
    let a = Node {
        name: a.name,
        sandbox: a.sandbox.config_file_mode(),
    };
    let b = cluster.lonely_node("b");
    let init_b = b.start_init(&[]);
    let device_b = device_of(&b);
    let folder_b = b.data().join(".btsync/cluster-members").join(&device_b);
    assert!(folder_b.is_dir(), "b made its own member folder");
    let announced = b.data().join(format!(".btsync/cluster/{device_b}.member"));
    assert!(
        announced.is_file(),
        "b announced itself in its registry folder"
    );
    fs::create_dir_all(a.data().join(".btsync/cluster-members")).expect("members dir");
    symlink(
        &folder_b,
        a.data().join(".btsync/cluster-members").join(&device_b),
    )
    .expect("link");
    let init_a = a.start_init(&[]);
    // a's engine syncs b's member folder beside the registry.
    let started: Vec<String> = a
        .events()
        .iter()
        .filter(|e| e["event"] == "start" || e["event"] == "reload")
        .flat_map(harness::folders_of)
        .collect();
    assert!(started.contains(&device_b), "{started:?}\n{}", a.context());

    let declared_at = Instant::now();
    b.run_ok(&["add", "--cluster", "wiki"]);
    assert!(folder_b.join(format!("wiki@{device_b}.json")).is_file());
    let took = wait_all("holds wiki", &[&a], declared_at, |n| n.holds("wiki"));
    eprintln!("declare on b -> a holds wiki through b's member folder after {took:?}");
    let status = a.status().expect("status");
    assert_eq!(status["cluster"]["declared"][0]["device_name"], "b");
    let members = status["cluster"]["members"].as_array().expect("members");
    assert!(members.contains(&json!(device_b)), "{status}");

    // Another device's record in b's member folder is not b's: ignored.
    write_foreign_record(&folder_b, "intruder", json!({}));
    wait_until(
        "a ignores a record in b's member folder that b did not write",
        || {
            a.status().is_some_and(|s| {
                s["cluster"]["ignored"].as_array().is_some_and(|i| {
                    i.iter().any(|f| {
                        f["file"] == format!("{device_b}/intruder@{OTHER_DEVICE}.json")
                            && f["reason"]
                                .as_str()
                                .is_some_and(|r| r.contains("in the member folder of"))
                    })
                })
            })
        },
        || a.context(),
    );
    assert!(!a.has("intruder"), "{}", a.context());
    a.stop(init_a);
    b.stop(init_b);
}

#[test]
fn a_fresh_node_with_an_empty_registry_deletes_nothing() {
    let cluster = Cluster::new("fresh");
    let node = cluster.lonely_node("fresh");
    // Registered before: one local namespace, one from an earlier cluster
    // declaration whose record this node's registry no longer has (a new
    // registry folder that has not synced yet).
    node.run_ok(&["add", "local"]);
    node.run_ok(&["add", "--cluster", "declared"]);
    for item in fs::read_dir(node.data().join(".btsync/cluster")).expect("registry") {
        fs::remove_file(item.expect("entry").path()).expect("empty the registry");
    }
    // And its member folder, which holds its own records too.
    let _ = fs::remove_dir_all(node.data().join(".btsync/cluster-members"));
    for ns in ["local", "declared"] {
        fs::write(node.folder(ns).join("data.txt"), ns).expect("write");
    }
    let init = node.start_init(&[]);
    // Let init look at the empty registry several times.
    let started = Instant::now();
    wait_until(
        "init polled the registry for 4 s",
        || {
            started.elapsed() > Duration::from_secs(4)
                && node
                    .status()
                    .is_some_and(|s| s["cluster"]["last_scan_seconds_ago"].is_u64())
        },
        || node.context(),
    );
    for ns in ["local", "declared"] {
        assert!(node.holds(ns), "{ns}\n{}", node.context());
        assert_eq!(
            fs::read_to_string(node.folder(ns).join("data.txt")).expect("file"),
            ns
        );
    }
    assert!(node.trash_of("local").is_empty() && node.trash_of("declared").is_empty());
    assert_eq!(node.events_of("start").len(), 1, "{}", node.context());
    node.assert_nothing_vanished();
    // The cluster registry is synced, but it is not a namespace.
    assert_eq!(node.run_ok(&["list"]), "declared local\n");
    let config = fs::read_to_string(node.data().join(".btsync/btsync.conf")).expect("config");
    let given_over_the_interface = node
        .events_of("api")
        .iter()
        .filter(|e| e["action"] == "addsyncfolder")
        .any(|e| e["folder"] == "cluster");
    assert!(
        config.contains(".btsync/cluster\"") || given_over_the_interface,
        "the engine was never given the registry folder: {config}\n{}",
        node.context()
    );

    // A tombstone only removes what came from the cluster: a namespace
    // this node added locally stays.
    let other = cluster.lonely_node("other");
    fs::create_dir_all(other.data().join(".btsync")).expect("mkdir");
    symlink(
        node.data().join(".btsync/cluster"),
        other.data().join(".btsync/cluster"),
    )
    .expect("share the registry");
    other.run_ok(&["del", "--cluster", "local"]);
    other.run_ok(&["del", "--cluster", "declared"]);
    let removed = Instant::now();
    wait_within(
        "the declared namespace was trashed",
        PROPAGATION_DEADLINE,
        || node.dropped("declared") && node.trash_of("declared").len() == 1,
        || node.context(),
    );
    eprintln!("tombstone -> dropped after {:?}", removed.elapsed());
    assert!(node.holds("local"), "{}", node.context());
    assert!(node.folder("local").join("data.txt").exists());
    node.assert_nothing_vanished();
    node.stop(init);
}

#[test]
fn twenty_thousand_junk_files_leave_status_health_and_the_log_bounded() {
    let cluster = Cluster::new("junk-flood");
    let node = cluster.node("node1");
    let init = node.start_init(&[]);
    let registry = cluster.registry();
    // What any cluster member can write into the registry every node syncs.
    // Listed in full, they would make the status reply pass the control
    // protocol's 1 MiB and init's log grow by a line each.
    let junk = 20_000;
    for i in 0..junk {
        fs::write(
            registry.join(format!("junk-{i:06}-padding-padding.json")),
            "{",
        )
        .expect("write junk");
    }
    wait_until(
        "status counts every junk file",
        || {
            node.status()
                .is_some_and(|s| s["cluster"]["ignored_count"] == junk)
        },
        || {
            init.stderr()
                .lines()
                .take(50)
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    let health = node.run(&["health"]);
    assert_eq!(health.status.code(), Some(0), "{health:?}");
    let status = node.status().expect("status answers");
    let sample = status["cluster"]["ignored"].as_array().map_or(0, Vec::len);
    assert!((1..=100).contains(&sample), "ignored sample of {sample}");
    let logged = |log: &str| log.matches("ignored registry file").count();
    let first = init.stderr();
    assert!(logged(&first) <= 20, "{} lines logged", logged(&first));
    assert!(
        first.contains("registry files are ignored"),
        "no summary line: {first}"
    );

    // One more junk file makes init read the whole registry again: only
    // the news is logged, not the thousands it logged no line for.
    fs::write(registry.join("junk-one-more.json"), "{").expect("write junk");
    wait_until(
        "status counts the new junk file",
        || {
            node.status()
                .is_some_and(|s| s["cluster"]["ignored_count"] == junk + 1)
        },
        String::new,
    );
    let second = init.stderr();
    assert!(
        second.len() - first.len() < 2_000,
        "a rescan logged {} more bytes",
        second.len() - first.len()
    );
    assert!(
        second.len() < 16 * 1024,
        "init's log is {} bytes",
        second.len()
    );
    assert_eq!(node.status().expect("status")["engine"]["state"], "running");
    node.stop(init);
}

#[test]
fn garbage_in_the_registry_is_logged_once_and_ignored() {
    let cluster = Cluster::new("garbage");
    let node = cluster.node("node1");
    let init = node.start_init(&[]);
    let registry = cluster.registry();
    let device = "aaaaaaaaaaaaaaaa";
    let good = |name: &str, at: u64, cluster_id: &str| {
        json!({
            "v": 1, "cluster": cluster_id, "name": name, "state": "declared",
            "access": "read-write", "at": at, "device": device, "device_name": "evil",
        })
        .to_string()
    };
    let now_ms = now_secs() * 1000;
    let garbage: Vec<(String, String)> = vec![
        ("junk.json".into(), "{".into()),
        ("binary@aaaaaaaaaaaaaaaa.json".into(), "\u{0}\u{1}".into()),
        (
            format!("foreign@{device}.json"),
            good("foreign", now_ms, "ffffffffffffffff"),
        ),
        (
            format!("future@{device}.json"),
            good("future", now_ms + 3 * 86_400_000, CLUSTER_ID),
        ),
        (
            format!("mismatch@{device}.json"),
            good("other-name", now_ms, CLUSTER_ID),
        ),
        (
            format!("escape@{device}.json"),
            good("..", now_ms, CLUSTER_ID).replace("\"..\"", "\"../etc\""),
        ),
        (format!("huge@{device}.json"), "x".repeat(100_000)),
    ];
    for (file, body) in &garbage {
        fs::write(registry.join(file), body).expect("write garbage");
    }
    symlink("/dev/zero", registry.join(format!("zero@{device}.json"))).expect("symlink");
    fs::create_dir(registry.join(format!("dir@{device}.json"))).expect("mkdir");
    let fifo = registry.join(format!("fifo@{device}.json"));
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let expected = garbage.len() + 3;

    wait_until(
        "status lists every ignored file",
        || {
            node.status()
                .is_some_and(|s| s["cluster"]["ignored"].as_array().map(Vec::len) == Some(expected))
        },
        || node.context(),
    );
    // Several more polls: still up, nothing added, each file logged once.
    sleep(Duration::from_secs(3));
    let status = node.status().expect("init still answers");
    assert_eq!(status["engine"]["state"], "running");
    assert_eq!(status["cluster"]["declared"], json!([]), "{status}");
    assert_eq!(node.run_ok(&["list"]), "");
    let log = init.stderr();
    for file in [
        "junk.json",
        "huge@aaaaaaaaaaaaaaaa.json",
        "fifo@aaaaaaaaaaaaaaaa.json",
        "escape@aaaaaaaaaaaaaaaa.json",
    ] {
        assert_eq!(
            log.matches(&format!("ignored registry file \"{file}\""))
                .count(),
            1,
            "{file}\n{log}"
        );
    }
    assert!(log.contains("another cluster"), "{log}");
    assert!(log.contains("no valid namespace name"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // A real declaration next to the garbage still works.
    let other = cluster.node("node2");
    other.run_ok(&["add", "--cluster", "real"]);
    wait_within(
        "the real declaration was applied",
        PROPAGATION_DEADLINE,
        || node.holds("real"),
        || node.context(),
    );
    assert_eq!(node.run_ok(&["list"]), "real\n");
    node.stop(init);
}

#[test]
fn cluster_applets_without_init() {
    let cluster = Cluster::new("applets");
    let node = cluster.node("solo");
    let code = |args: &[&str]| node.run(args).status.code();

    // Bad usage changes nothing (exit 2).
    let out = node
        .command(&["add", "--cluster", "x"])
        .env_remove("BTSYNC_CLUSTER_KEY")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("BTSYNC_CLUSTER_KEY_FILE"));
    assert_eq!(
        code(&[
            "add",
            "--cluster",
            "--token=AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA",
            "x"
        ]),
        Some(2)
    );
    assert_eq!(code(&["del", "--purge", "x"]), Some(2));
    assert_eq!(code(&["del", "--cluster", "--keep-data", "x"]), Some(2));
    assert_eq!(
        fs::read_dir(cluster.registry()).expect("registry").count(),
        0
    );
    assert!(!node.has("x"));

    // add --cluster: registered here, and a declaration record.
    node.run_ok(&["add", "--cluster", "gitlab"]);
    assert!(node.has("gitlab"));
    let device = device_of(&node);
    let file = format!("gitlab@{device}.json");
    let declared = record(&cluster.registry(), &file);
    assert_eq!(declared["v"], 1);
    assert_eq!(declared["cluster"], CLUSTER_ID);
    assert_eq!(declared["name"], "gitlab");
    assert_eq!(declared["state"], "declared");
    assert_eq!(declared["access"], "read-write");
    assert_eq!(declared["device"], device.as_str());
    assert_eq!(declared["device_name"], "solo");
    let mode = fs::metadata(cluster.registry().join(&file))
        .expect("record")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "records hold no secret");
    let text = fs::read_to_string(cluster.registry().join(&file)).expect("record");
    let key = node.run_ok(&["secret", "gitlab"]);
    assert!(!text.contains(key.trim()), "a record never holds a key");

    // Local del refused; a local namespace still goes with a plain del.
    let out = node.run(&["del", "gitlab"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(node.has("gitlab"));
    node.run_ok(&["add", "mine"]);
    node.run_ok(&["del", "mine"]);
    assert!(!node.has("mine"));

    // del --cluster: tombstone, and with no init the copy goes to the trash at once.
    fs::write(node.folder("gitlab").join("data.txt"), "kept").expect("write");
    node.run_ok(&["del", "--cluster", "gitlab"]);
    assert!(!node.has("gitlab"));
    let removed = record(&cluster.registry(), &file);
    assert_eq!(removed["state"], "removed");
    assert!(removed["at"].as_u64() > declared["at"].as_u64());
    assert!(removed.get("purge").is_none(), "{removed}");
    let trash = node.trash_of("gitlab");
    assert_eq!(trash.len(), 1);
    assert_eq!(
        fs::read_to_string(trash[0].join("data.txt")).expect("trashed"),
        "kept"
    );
    // A local del of a namespace the cluster removed is allowed again.
    node.run_ok(&["add", "gitlab"]);
    node.run_ok(&["del", "gitlab"]);

    // Read-only declaration: the B form of the derived key.
    node.run_ok(&["add", "--cluster", "--read-only", "mirror"]);
    let list: Value = serde_json::from_str(&node.run_ok(&["list", "--json"])).expect("list");
    assert_eq!(list[0]["access"], "read-only", "{list}");
    let mirror = record(&cluster.registry(), &format!("mirror@{device}.json"));
    assert_eq!(mirror["access"], "read-only");
    // --purge deletes this node's copy only where BTSYNC_CLUSTER_PURGE
    // allows it; otherwise it goes to the trash like any removal.
    node.run_ok(&["del", "--cluster", "--purge", "mirror"]);
    assert!(!node.folder("mirror").exists());
    assert_eq!(node.trash_of("mirror").len(), 1);
    node.run_ok(&["add", "--cluster", "mirror"]);
    let out = node
        .command(&["del", "--cluster", "--purge", "mirror"])
        .env("BTSYNC_CLUSTER_PURGE", "on")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!node.folder("mirror").exists());
    assert_eq!(node.trash_of("mirror").len(), 1, "deleted, not trashed");
}

#[test]
fn init_purges_cluster_trash_older_than_btsync_trash_days() {
    let cluster = Cluster::new("trash");
    let node = cluster.node("node1");
    let trash = node.data().join(".btsync/cluster-trash");
    let now = now_secs();
    let items = [
        format!("ancient@{}", now - 86_400),
        format!("recent@{}", now - 3600),
        "not-ours".to_owned(),
    ];
    for item in &items {
        fs::create_dir_all(trash.join(item).join("sub")).expect("mkdir");
        fs::write(trash.join(item).join("sub/file"), "x").expect("write");
    }
    // Half a day: the one-day-old item goes, the one-hour-old one stays.
    let init = node.start_init(&[("BTSYNC_TRASH_DAYS", "0.5")]);
    wait_until(
        "init purged the day-old trash",
        || !trash.join(&items[0]).exists(),
        || node.context(),
    );
    assert!(trash.join(&items[1]).join("sub/file").exists());
    assert!(trash.join(&items[2]).join("sub/file").exists());
    assert!(init.stderr().contains(&format!("purged {}", items[0])));
    node.stop(init);
}

#[test]
fn the_engine_never_receives_the_cluster_key() {
    // The engine needs only the keys in its config. The cluster key derives
    // every namespace's key; in the engine's environment it would sit in
    // /proc/PID/environ of a long-lived third-party process.
    let cluster = Cluster::new("environ");
    let node = cluster.lonely_node("node1");
    let init = node.start_init(&[]);
    let status = node.status().expect("status");
    let engine = status["engine"]["pid"].as_i64().expect("engine pid");
    let environ = fs::read(format!("/proc/{engine}/environ")).expect("engine environment");
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.split('\0').any(|v| v.starts_with("BTSYNC_DATA=")),
        "not the engine's environment: {environ:?}"
    );
    assert!(
        !environ.contains(CLUSTER_KEY),
        "the engine's environment holds the cluster key"
    );
    node.stop(init);
}

/// Issue 21: `add --cluster --owner` carries the owner and umask to every
/// node, and a declaration with another owner changes it where the
/// namespace is held from the cluster.
#[test]
fn a_declared_owner_reaches_every_node() {
    use std::os::unix::fs::MetadataExt;
    if !common::running_as_root() {
        eprintln!(
            "a_declared_owner_reaches_every_node: SKIPPED: needs root to chown (CI runs as root)"
        );
        return;
    }
    let cluster = Cluster::new("owner");
    let nodes: Vec<Node> = (1..=2).map(|i| cluster.node(&format!("node{i}"))).collect();
    let inits: Vec<Init> = nodes.iter().map(|node| node.start_init(&[])).collect();
    let all: Vec<&Node> = nodes.iter().collect();
    nodes[0].run_ok(&["add", "--cluster", "--owner=4242:4343", "--umask=027", "pg"]);
    let owned = |node: &Node, path: &str| {
        fs::symlink_metadata(node.folder("pg").join(path))
            .map(|m| (m.uid(), m.gid(), m.mode() & 0o7777))
            .ok()
    };
    let started = Instant::now();
    wait_all("holds pg with its owner", &all, started, |n| {
        n.holds("pg") && owned(n, "") == Some((4242, 4343, 0o750))
    });
    for node in &nodes {
        let list: Value = serde_json::from_str(&node.run_ok(&["list", "--json"])).expect("list");
        assert_eq!(
            (list[0]["owner"].as_str(), list[0]["umask"].as_str()),
            (Some("4242:4343"), Some("027")),
            "{list}"
        );
    }
    // Declared again with another owner: node 2 changes to it.
    nodes[0].run_ok(&["add", "--cluster", "--owner=4444", "pg"]);
    let started = Instant::now();
    wait_all("node2 changed pg's owner", &all[1..], started, |n| {
        owned(n, "") == Some((4444, 4444, 0o750))
    });
    // Declared again without an owner: the record keeps the owner the
    // namespace has, so no node loses it.
    nodes[0].run_ok(&["add", "--cluster", "pg"]);
    let written = record(
        &cluster.registry(),
        &format!("pg@{}.json", device_of(&nodes[0])),
    );
    assert_eq!(
        (written["owner"].as_str(), written["umask"].as_str()),
        (Some("4444:4444"), Some("027")),
        "{written}"
    );
    for (node, init) in nodes.iter().zip(inits) {
        node.stop(init);
    }
}

/// Issue 27: the cluster trash has a limit. At it, further cluster removals
/// wait (the namespace stays and syncs), nothing already trashed is deleted
/// early, and `status` and `health` say why; once room is made they go on.
#[test]
fn a_full_cluster_trash_makes_removals_wait_and_deletes_nothing_early() {
    let cluster = Cluster::new("trashlimit");
    let node = cluster.node("node1");
    let init = node.start_init(&[("BTSYNC_TRASH_MAX_COPIES", "1")]);
    let registry = cluster.registry();
    for ns in ["first", "second"] {
        write_foreign_record(&registry, ns, json!({}));
    }
    wait_all("holds both", &[&node], Instant::now(), |n| {
        n.holds("first") && n.holds("second")
    });
    fs::write(node.folder("first").join("a.txt"), "first's").expect("write");
    fs::write(node.folder("second").join("b.txt"), "second's").expect("write");
    write_foreign_record(&registry, "first", json!({"state": "removed"}));
    wait_all("first trashed", &[&node], Instant::now(), |n| {
        n.dropped("first") && n.trash_of("first").len() == 1
    });
    let health = || {
        let out = node.run(&["health"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(health().0, Some(0), "{}", health().1);

    write_foreign_record(&registry, "second", json!({"state": "removed"}));
    wait_until(
        "the removal of second waits for the trash",
        || {
            node.status()
                .is_some_and(|s| s["cluster"]["trash"]["removals_waiting"] == json!(["second"]))
        },
        || node.context(),
    );
    let status = node.status().expect("status");
    let trash = &status["cluster"]["trash"];
    assert_eq!(
        (trash["copies"].as_u64(), trash["max_copies"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        trash["why"]
            .as_str()
            .is_some_and(|w| w.contains("BTSYNC_TRASH_MAX_COPIES")),
        "{status}"
    );
    let (code, said) = health();
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("cluster removal") && said.contains("BTSYNC_TRASH_MAX_COPIES"),
        "{said}"
    );
    let human = node.run_ok(&["status"]);
    assert!(human.contains("removals waiting: 1"), "{human}");
    // Several polls later: still held and synced, first's copy untouched.
    sleep(Duration::from_secs(3));
    assert!(node.holds("second"), "{}", node.context());
    assert_eq!(
        fs::read_to_string(node.folder("second").join("b.txt"))
            .ok()
            .as_deref(),
        Some("second's")
    );
    let kept = node.trash_of("first");
    assert_eq!(kept.len(), 1);
    assert_eq!(
        fs::read_to_string(kept[0].join("a.txt")).ok().as_deref(),
        Some("first's")
    );

    // Room made by hand: the waiting removal goes on.
    fs::remove_dir_all(&kept[0]).expect("empty the trash");
    wait_all("second trashed", &[&node], Instant::now(), |n| {
        n.dropped("second") && n.trash_of("second").len() == 1
    });
    assert_eq!(health().0, Some(0), "{}", health().1);
    node.assert_nothing_vanished();
    node.stop(init);
}

/// Issue 27: a record under this node's own device id that it did not
/// write (another member wrote it, and the engine carried it over this
/// node's file) is not applied, and is reported.
#[test]
fn a_forged_record_under_this_nodes_device_id_is_not_applied() {
    let cluster = Cluster::new("forged");
    let node = cluster.node("node1");
    let init = node.start_init(&[]);
    node.run_ok(&["add", "--cluster", "st"]);
    fs::write(node.folder("st").join("data.txt"), "kept").expect("write");
    let device = device_of(&node);
    // A tombstone dated after the declaration, under this node's own id.
    write_record_as(
        &cluster.registry(),
        "st",
        &device,
        json!({"state": "removed", "access": null, "device_name": "node1"}),
    );
    wait_until(
        "status reports the forged record",
        || {
            node.status()
                .is_some_and(|s| s["cluster"]["forged_count"] == 1)
        },
        || node.context(),
    );
    let status = node.status().expect("status");
    assert_eq!(
        status["cluster"]["forged"],
        json!([format!("st@{device}.json")]),
        "{status}"
    );
    // The poll that found it reconciled without it, and so do later ones.
    sleep(Duration::from_secs(3));
    assert!(node.holds("st"), "{}", node.context());
    assert!(node.trash_of("st").is_empty());
    assert!(init.stderr().contains("forged"), "{}", init.stderr());
    let human = node.run_ok(&["status"]);
    assert!(human.contains("forged:"), "{human}");

    // What this node writes itself counts again.
    node.run_ok(&["del", "--cluster", "st"]);
    assert!(!node.has("st"));
    wait_until(
        "the node's own tombstone is not called forged",
        || {
            node.status()
                .is_some_and(|s| s["cluster"]["forged_count"] == 0)
        },
        || node.context(),
    );
    node.stop(init);
}

/// Issue 27: in cluster mode a plain `add` derives the key from the
/// cluster key (every member can read and write it); `add --local` makes
/// a key of its own. A local `del` of a namespace added locally that the
/// cluster also declares hands it over to the cluster instead of a refusal.
#[test]
fn local_only_namespaces_and_a_local_del_of_a_declared_namespace() {
    let cluster = Cluster::new("localonly");
    let node = cluster.node("solo");
    let list =
        || -> Value { serde_json::from_str(&node.run_ok(&["list", "--json"])).expect("list") };
    node.run_ok(&["add", "--local", "private"]);
    assert_eq!(list()[0]["key_origin"], "generated", "{}", list());
    node.run_ok(&["add", "--local", "private"]);
    node.run_ok(&["add", "shared"]);
    let code = |args: &[&str]| {
        let out = node.run(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for bad in [
        &["add", "--local", "--cluster", "x"][..],
        &["add", "--local", "--read-only", "x"],
        &[
            "add",
            "--local",
            "--token=AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA",
            "x",
        ],
        &["add", "--local", "shared"],
    ] {
        let (exit, said) = code(bad);
        assert_eq!(exit, Some(2), "{bad:?}: {said}");
        assert_eq!(said.lines().count(), 1, "{bad:?}: {said}");
    }
    let listed = list();
    let names: Vec<&str> = listed
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["private", "shared"]);

    // Another member declares "shared" (this node added it with a plain
    // add, so with the same derived key) and "private" (another key here).
    write_foreign_record(&cluster.registry(), "shared", json!({}));
    write_foreign_record(&cluster.registry(), "private", json!({}));
    fs::write(node.folder("shared").join("data.txt"), "kept").expect("write");
    let (exit, said) = code(&["del", "shared"]);
    assert_eq!(exit, Some(0), "{said}");
    assert!(said.contains("stays here as the cluster's"), "{said}");
    assert!(node.has("shared"));
    let shared = list()
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == "shared").cloned())
        .expect("shared listed");
    assert_eq!(shared["declared"], "cluster", "{shared}");
    assert_eq!(
        fs::read_to_string(node.folder("shared").join("data.txt"))
            .ok()
            .as_deref(),
        Some("kept")
    );
    // Now held for the cluster: a second local del is refused as such.
    let (exit, said) = code(&["del", "shared"]);
    assert_eq!(exit, Some(1), "{said}");
    assert!(said.contains("del --cluster shared"), "{said}");
    // The local-only one is deleted as always: the cluster's comes instead.
    let (exit, said) = code(&["del", "private"]);
    assert_eq!(exit, Some(0), "{said}");
    assert!(!node.has("private"));
}

/// The size limit of the cluster trash, measured on disk: a removal that
/// would go over waits like one over the count.
#[test]
fn a_cluster_trash_over_its_size_makes_removals_wait() {
    let cluster = Cluster::new("trashsize");
    let node = cluster.node("node1");
    let init = node.start_init(&[("BTSYNC_TRASH_MAX_SIZE", "64K")]);
    let registry = cluster.registry();
    for ns in ["big", "next"] {
        write_foreign_record(&registry, ns, json!({}));
    }
    wait_all("holds both", &[&node], Instant::now(), |n| {
        n.holds("big") && n.holds("next")
    });
    fs::write(node.folder("big").join("blob"), vec![7u8; 256 * 1024]).expect("write");
    write_foreign_record(&registry, "big", json!({"state": "removed"}));
    wait_all("big trashed", &[&node], Instant::now(), |n| {
        n.dropped("big") && n.trash_of("big").len() == 1
    });
    write_foreign_record(&registry, "next", json!({"state": "removed"}));
    wait_until(
        "the removal of next waits for the trash",
        || {
            node.status().is_some_and(|s| {
                s["cluster"]["trash"]["removals_waiting"] == json!(["next"])
                    && s["cluster"]["trash"]["why"]
                        .as_str()
                        .is_some_and(|w| w.contains("BTSYNC_TRASH_MAX_SIZE=64K"))
            })
        },
        || node.context(),
    );
    let status = node.status().expect("status");
    assert!(
        status["cluster"]["trash"]["bytes"].as_u64() >= Some(256 * 1024),
        "{status}"
    );
    assert!(node.holds("next"));
    assert_eq!(node.trash_of("big").len(), 1);
    node.stop(init);
}

/// Issue 27, items 2 and 6: a flood of declarations is taken a step at a
/// time (never more than BTSYNC_CLUSTER_ADD_STEP in one change of the
/// engine) up to BTSYNC_CLUSTER_MAX_NAMESPACES; the rest waits, shown in
/// `status`, with `health` still 0. Another member's single declaration
/// is not held back by the flood, and a removal makes room for the next.
#[test]
fn a_flood_of_declarations_is_taken_in_steps_up_to_the_cap() {
    let cluster = Cluster::new("flood");
    let node = cluster.node("node1");
    let init = node.start_init(&[
        ("BTSYNC_CLUSTER_ADD_STEP", "2"),
        ("BTSYNC_CLUSTER_MAX_NAMESPACES", "5"),
    ]);
    let registry = cluster.registry();
    // The flood first, then one declaration by another member, whose
    // name sorts after the flood's.
    for i in 0..8 {
        write_foreign_record(&registry, &format!("flood-{i}"), json!({}));
    }
    write_record_as(&registry, "zz-legit", "00000000000000dd", json!({}));
    // The cap is per member: five of the flood, and the other member's.
    wait_until(
        "five of the flood added, the cap reached, and the other member's added",
        || {
            node.status().is_some_and(|s| {
                s["cluster"]["adds"]["cap_reached"] == true
                    && s["engine"]["folder_count"] == 6
                    && s["changes_pending"] == false
                    && s["reloading"] == false
            })
        },
        || node.context(),
    );
    let list = node.run_ok(&["list"]);
    let held: Vec<&str> = list.split_whitespace().collect();
    assert_eq!(held.len(), 6, "{list}");
    assert!(
        held.contains(&"zz-legit"),
        "the flood held back another member: {list}"
    );
    let status = node.status().expect("status");
    let adds = &status["cluster"]["adds"];
    assert_eq!(adds["waiting"], 3, "{status}");
    assert_eq!(
        (adds["step"].as_u64(), adds["max_namespaces"].as_u64()),
        (Some(2), Some(5))
    );
    let health = node.run(&["health"]);
    assert_eq!(health.status.code(), Some(0), "{health:?}");
    let human = node.run_ok(&["status"]);
    assert!(
        human.contains("adds waiting: 3") && human.contains("BTSYNC_CLUSTER_MAX_NAMESPACES"),
        "{human}"
    );
    let log = init.stderr();
    assert!(log.contains("further declarations wait"), "{log}");
    // Steps: no change of the engine took up more than two folders.
    let steps: Vec<u64> = log
        .lines()
        .filter(|l| l.contains(" to take up"))
        .filter_map(|l| {
            l.split(" to take up")
                .next()?
                .rsplit('(')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        steps.len() >= 3 && steps.iter().all(|&n| n <= 2),
        "{steps:?}\n{log}"
    );

    // The flood's member at its cap leaves room for the others: a later
    // declaration of the other member is taken.
    write_record_as(&registry, "zz-later", "00000000000000dd", json!({}));
    wait_until(
        "the other member's later declaration added",
        || {
            node.has("zz-later")
                && node
                    .status()
                    .is_some_and(|s| s["engine"]["folder_count"] == 7)
        },
        || node.context(),
    );

    // A removal makes room: the next declaration is taken.
    let removed = held
        .iter()
        .find(|n| n.starts_with("flood-"))
        .expect("a flood namespace");
    write_foreign_record(&registry, removed, json!({"state": "removed"}));
    wait_until(
        "one removed, the next added",
        || {
            node.status().is_some_and(|s| {
                s["cluster"]["adds"]["waiting"] == 2 && s["engine"]["folder_count"] == 7
            })
        },
        || node.context(),
    );
    assert!(!node.has(removed));
    node.assert_nothing_vanished();
    node.stop(init);
}

/// Issue 27's proof with the real engine: 3,000 declarations appear at once
/// in one node's registry (another device's records; the cap raised to
/// 3,000). Every one is served within 5 minutes by the same engine (no
/// restart, no reload fallback), `health` exits 0 in every sample taken
/// every 2 s, and a local `add` meanwhile is answered. Root (a PID and a
/// network namespace of its own, loopback up so the WebUI answers).
#[test]
fn with_the_real_engine_3000_declarations_are_served_without_a_restart() {
    const DECLARED: usize = 3000;
    const LIMIT: Duration = Duration::from_secs(300);
    let test = "with_the_real_engine_3000_declarations_are_served_without_a_restart";
    let Some(btsync) = harness::real_engine_bin(test) else {
        return;
    };
    let cluster = Cluster::new("flood3000");
    let node = cluster.node("a");
    let mut env = harness::offline_engine_env(&btsync).to_vec();
    env.push(("BTSYNC_CLUSTER_MAX_NAMESPACES", "3000"));
    // The default mode: CI's config-file pass skips this test.
    env.push(("BTSYNC_ENGINE_API", "webui"));
    let init = Init::start(&node.sandbox, Mode::Pid1Loopback, &env);
    wait_until(
        "the engine answers on its interface and serves the registry",
        || {
            node.status()
                .is_some_and(|s| s["engine_api"] == "webui" && s["engine"]["state"] == "running")
                && node.run(&["health"]).status.code() == Some(0)
        },
        || format!("{}\n{}", init.stderr(), node.context()),
    );
    let engine_pid = node.status().expect("status")["engine"]["pid"].clone();

    // Written aside, then renamed in: they appear within a fraction of a second.
    let staging = node.data().join("flood-staging");
    fs::create_dir_all(&staging).expect("staging");
    let names: Vec<String> = (0..DECLARED).map(|i| format!("flood-{i:04}")).collect();
    for name in &names {
        write_foreign_record(&staging, name, json!({}));
    }
    let registry = cluster.registry();
    let started = Instant::now();
    for name in &names {
        let file = format!("{name}@{OTHER_DEVICE}.json");
        fs::rename(staging.join(&file), registry.join(&file)).expect("move the record in");
    }
    let appeared = started.elapsed();

    let (mut samples, mut unhealthy) = (0, Vec::new());
    let mut local_add: Option<Duration> = None;
    let mut served_at: Vec<(Duration, u64)> = Vec::new();
    let served = loop {
        let health = node.run(&["health"]);
        samples += 1;
        if health.status.code() != Some(0) {
            unhealthy.push(format!(
                "{:?}: {}",
                started.elapsed(),
                String::from_utf8_lossy(&health.stderr).trim()
            ));
        }
        let status = node.status().expect("status answers");
        let served = status["engine"]["folder_count"].as_u64().unwrap_or(0);
        served_at.push((started.elapsed(), served));
        if local_add.is_none() && started.elapsed() >= Duration::from_secs(20) {
            // A local add in the middle of the flood: answered, and served.
            let asked = Instant::now();
            let out = node.run(&["add", "local-meanwhile"]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "add during the flood: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                init.stderr()
            );
            local_add = Some(asked.elapsed());
        }
        // The cluster registry is a folder the engine serves too.
        if served as usize > DECLARED || started.elapsed() > LIMIT {
            break served;
        }
        sleep(Duration::from_secs(2));
    };
    let took = started.elapsed();
    let status = node.status().expect("status");
    let progress: Vec<String> = served_at
        .iter()
        .step_by(10)
        .map(|(at, n)| format!("{}s:{n}", at.as_secs()))
        .collect();
    eprintln!(
        "{DECLARED} declarations (appeared in {appeared:?}): {served} served in {took:?}; \
         health {} of {samples} samples failed; local add answered in {local_add:?}; \
         progress {progress:?}; cluster.adds {}",
        unhealthy.len(),
        status["cluster"]["adds"]
    );
    assert!(
        served as usize > DECLARED,
        "{served} of {DECLARED} served (and a local add) after {took:?}: {progress:?}\n{}",
        init.stderr()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(unhealthy.is_empty(), "health failed: {unhealthy:?}");
    assert!(local_add.is_some(), "no local add was tried");
    assert_eq!(
        status["engine"]["pid"], engine_pid,
        "the same engine: {status}"
    );
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(status["reload_fallbacks"], 0, "{status}");
    assert_eq!(status["crashes"], 0, "{status}");
    assert_eq!(status["cluster"]["adds"]["waiting"], 0, "{status}");
    assert_eq!(status["cluster"]["adds"]["cap_reached"], false, "{status}");
    let mut init = init;
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0, "{}", init.stderr());
}
