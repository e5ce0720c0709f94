//! Issue 20 (sync state) with the real engine: `ctl wait` returns 0 only
//! once every file is on the node, after a first join and after a restart
//! that missed changes; it times out `unknown` with no peer; and a plugin
//! volume created with `-o wait` gives the container the whole copy.
//!
//! "Every file is there" is checked from the host, on the bind-mounted data
//! directories: every name and every sha256 on the receiver equal the
//! sender's, the engine's `.sync/` and its partial `*.!sync` files left out.
//! How long after that `wait` returned is printed (and written to
//! SYNCBOX_BENCH_OUT for the benchmark), never asserted.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::real::{OFFLINE, real_image};
use crate::support::*;

/// OFFLINE, and WebUI mode whatever SYNCBOX_TEST_ENGINE_API says: these
/// proofs are of the sync state, which only that mode knows.
pub(crate) fn webui_offline() -> Vec<&'static str> {
    let mut options = OFFLINE.to_vec();
    options.extend_from_slice(&["-e", "BTSYNC_ENGINE_API=webui"]);
    options
}

/// The namespace every test here syncs.
const NS: &str = "shared";
/// How long the engine may take to index a folder it was given.
const INDEX_BOUND: Duration = Duration::from_secs(180);
/// How often the watcher looks at the receiver's files.
const WATCH_EVERY: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------
// The data: written on the host into the sender's bind-mounted folder.

/// Pseudo-random bytes (xorshift64*): nothing for the engine to compress or
/// find twice.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The small files' names: spread over a few directories.
fn small_name(n: usize) -> String {
    format!("small/{}/file-{n:03}.bin", n % 5)
}

/// What a folder must hold: relative path -> (size, sha256).
type Expected = BTreeMap<String, (u64, [u8; 32])>;

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn write_file(folder: &Path, name: &str, bytes: &[u8], expected: &mut Expected) {
    let path = folder.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create a data directory");
    }
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    expected.insert(name.to_owned(), (bytes.len() as u64, sha256(bytes)));
}

/// `big` files of `big_len` bytes and `small` files of 1 to 4 KiB in
/// `folder`; what it holds now.
fn write_dataset(folder: &Path, big: usize, big_len: usize, small: usize) -> Expected {
    let mut expected = Expected::new();
    for n in 0..big {
        let bytes = random_bytes(1000 + n as u64, big_len);
        write_file(folder, &format!("big-{n}.bin"), &bytes, &mut expected);
    }
    for n in 0..small {
        let bytes = random_bytes(n as u64, 1024 + (n * 37) % 3072);
        write_file(folder, &small_name(n), &bytes, &mut expected);
    }
    expected
}

fn total_bytes(expected: &Expected) -> u64 {
    expected.values().map(|(size, _)| size).sum()
}

// ---------------------------------------------------------------------------
// What a folder holds, seen from the host.

/// What `stat` says of a file: cheap to compare, and any write or
/// replacement changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
}

/// Every file under `dir` with its stamp, the engine's `.sync/` and partial
/// `*.!sync` files left out. A missing `dir` holds nothing.
fn stamps(dir: &Path) -> BTreeMap<String, Stamp> {
    files_under(dir, |rel| rel == ".sync" || rel.ends_with(".!sync"))
        .into_iter()
        .map(|(rel, _, meta)| {
            let stamp = Stamp {
                size: meta.len(),
                mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
                ino: meta.ino(),
            };
            (rel, stamp)
        })
        .collect()
}

/// Names (and sizes) that differ between a folder and what it must hold:
/// empty when they agree.
fn size_differences(stamps: &BTreeMap<String, Stamp>, expected: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    for (name, (size, _)) in expected {
        match stamps.get(name) {
            None => out.push(format!("{name} missing")),
            Some(stamp) if stamp.size != *size => {
                out.push(format!("{name} has {} bytes of {size}", stamp.size))
            }
            Some(_) => {}
        }
    }
    for name in stamps.keys().filter(|n| !expected.contains_key(*n)) {
        out.push(format!("{name} should not be there"));
    }
    out
}

/// What a folder held when `wait` returned: the stamps taken first thing,
/// then every file's sha256, then the stamps again (equal: the digests are
/// of the files as they were at the return).
struct AtReturn {
    stamps: BTreeMap<String, Stamp>,
    digests: BTreeMap<String, [u8; 32]>,
    stamps_after: BTreeMap<String, Stamp>,
}

impl AtReturn {
    fn take(dir: &Path) -> AtReturn {
        let stamps = stamps(dir);
        let digests = stamps
            .keys()
            .filter_map(|name| Some((name.clone(), sha256(&fs::read(dir.join(name)).ok()?))))
            .collect();
        let stamps_after = self::stamps(dir);
        AtReturn {
            stamps,
            digests,
            stamps_after,
        }
    }

    /// Every way the folder differed from `expected` at the return.
    fn differences(&self, expected: &Expected) -> Vec<String> {
        let mut out = size_differences(&self.stamps, expected);
        for (name, (_, digest)) in expected {
            if self.stamps.contains_key(name) && self.digests.get(name) != Some(digest) {
                out.push(format!("{name} has other content"));
            }
        }
        if self.stamps_after != self.stamps {
            let changed: Vec<&String> = self
                .stamps_after
                .iter()
                .filter(|(name, stamp)| self.stamps.get(*name) != Some(stamp))
                .map(|(name, _)| name)
                .chain(
                    self.stamps
                        .keys()
                        .filter(|name| !self.stamps_after.contains_key(*name)),
                )
                .collect();
            out.push(format!(
                "changed while being hashed, after wait returned: {changed:?}"
            ));
        }
        out
    }
}

/// What the watcher saw: when the folder first held every file (the start
/// of the look that found it so), and when a look last found a difference.
#[derive(Debug, Default, Clone, Copy)]
struct Watched {
    matched_at: Option<Instant>,
    last_difference: Option<Instant>,
    looks: u32,
}

/// Looks at a folder every WATCH_EVERY from a thread of its own: sizes and
/// stamps first, a file's sha256 only once every size is right, and once
/// per stamp.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Watched>,
}

impl Watcher {
    fn start(dir: PathBuf, expected: Expected) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut seen = Watched::default();
            let mut digests: BTreeMap<String, (Stamp, [u8; 32])> = BTreeMap::new();
            while !stopped.load(Ordering::SeqCst) {
                let look = Instant::now();
                let now = stamps(&dir);
                let mut same = size_differences(&now, &expected).is_empty();
                if same {
                    for (name, stamp) in &now {
                        let digest = match digests.get(name) {
                            Some((known, digest)) if known == stamp => *digest,
                            _ => match fs::read(dir.join(name)) {
                                Ok(bytes) => {
                                    let digest = sha256(&bytes);
                                    digests.insert(name.clone(), (*stamp, digest));
                                    digest
                                }
                                Err(_) => [0; 32],
                            },
                        };
                        if expected.get(name).map(|(_, d)| d) != Some(&digest) {
                            same = false;
                        }
                    }
                }
                seen.looks += 1;
                if same {
                    seen.matched_at.get_or_insert(look);
                } else {
                    seen.matched_at = None;
                    seen.last_difference = Some(look);
                }
                thread::sleep(WATCH_EVERY);
            }
            seen
        });
        Watcher { stop, thread }
    }

    fn finish(self) -> Watched {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the watcher thread")
    }
}

// ---------------------------------------------------------------------------
// Nodes and the engine's own view.

/// Wait until init answers on the node's control socket.
pub(crate) fn wait_init(node: &Node) {
    wait_for(
        &format!("init to answer in {}", node.name),
        Duration::from_secs(60),
        || {
            node.exec(&["status", "--json"])
                .status
                .success()
                .then_some(())
        },
    );
}

/// What the engine in `node` says of its folders (`getsyncfolders`), asked
/// from the host inside the container's network namespace (the interface
/// listens on the container's loopback only), with the credentials init
/// gave it in its config. `None` while there is no engine or it does not
/// answer.
pub(crate) fn engine_folders(node: &Node) -> Option<Vec<serde_json::Value>> {
    let (pid, _) = *processes(&node.name, "/bin/btsync").first()?;
    let config = engine_config(pid)?;
    let webui = &config["webui"];
    let base = format!("http://{}/gui/", webui["listen"].as_str()?);
    let user = format!(
        "{}:{}",
        webui["login"].as_str()?,
        webui["password"].as_str()?
    );
    let curl = |args: &[&str]| -> Option<String> {
        let out = run_with_deadline(
            Command::new("nsenter")
                .args([
                    "-t",
                    &pid.to_string(),
                    "-n",
                    "curl",
                    "-s",
                    "--max-time",
                    "10",
                ])
                .args(["-u", &user])
                .args(args),
            Duration::from_secs(30),
        );
        out.status.success().then(|| text(&out.stdout))
    };
    let page = curl(&["-i", "-X", "POST", &format!("{base}token.html")])?;
    let cookie = page.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("set-cookie")
            .then(|| value.trim().split(';').next())?
    })?;
    let token = page.split("id='token'").nth(1)?.split('>').nth(1)?;
    let token = token.split('<').next()?;
    let answer = curl(&[
        "-b",
        cookie,
        &format!("{base}?token={token}&action=getsyncfolders&discovery=1"),
    ])?;
    let answer: serde_json::Value = serde_json::from_str(&answer).ok()?;
    answer["folders"].as_array().cloned()
}

/// The engine's entry for `/data/NS`, as JSON text (for failure messages).
fn engine_view(node: &Node) -> String {
    let path = format!("/data/{NS}");
    match engine_folders(node) {
        Some(folders) => folders
            .iter()
            .find(|f| f["path"] == path.as_str())
            .map(|f| f.to_string())
            .unwrap_or_else(|| format!("no folder {path} in {folders:?}")),
        None => "the engine did not answer".to_owned(),
    }
}

/// Wait until the sender's engine holds `expected` in NS: its folder counts
/// every file and every byte. Until then a receiver could be in sync with a
/// part of the data, which says nothing about `wait`.
fn wait_holding(node: &Node, expected: &Expected) {
    let path = format!("/data/{NS}");
    let (files, bytes) = (expected.len() as u64, total_bytes(expected));
    let started = Instant::now();
    let mut last = None;
    wait_for(
        &format!(
            "{}'s engine to index {files} files, {bytes} bytes",
            node.name
        ),
        INDEX_BOUND,
        || {
            let folders = engine_folders(node);
            let folder = folders?.into_iter().find(|f| f["path"] == path.as_str());
            let counted = folder
                .as_ref()
                .map(|f| (f["files"].as_u64(), f["size"].as_u64()));
            if last != counted {
                println!("{}: the engine counts {counted:?}", node.name);
                last = counted;
            }
            (counted == Some((Some(files), Some(bytes)))).then_some(())
        },
    );
    println!(
        "{}: the engine holds {files} files, {bytes} bytes, {:.1} s after asked",
        node.name,
        started.elapsed().as_secs_f64()
    );
}

/// `ctl wait --timeout=SECONDS NS` in `node`: its output and when it ended.
fn ctl_wait(node: &Node, timeout: u64) -> (Output, Instant) {
    let out = run_with_deadline(
        Command::new("docker").args([
            "exec",
            &node.name,
            "ctl",
            "wait",
            &format!("--timeout={timeout}"),
            NS,
        ]),
        Duration::from_secs(timeout + 60),
    );
    (out, Instant::now())
}

/// `BTSYNC_KNOWN_HOSTS=` the containers `names`, on the engine's port.
fn known_hosts(names: &[&str]) -> String {
    let hosts: Vec<String> = names.iter().map(|n| format!("{n}:55555")).collect();
    format!("BTSYNC_KNOWN_HOSTS={}", hosts.join(","))
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Run `ctl wait` on `receiver` while a watcher looks at its folder; assert
/// it returned 0 with every file there; the figures, as seconds since
/// `from`: (every file matched, wait returned, lag).
fn wait_and_check(
    receiver: &Node,
    sender: &Node,
    expected: &Expected,
    watcher: Watcher,
    from: Instant,
    what: &str,
) -> (Option<f64>, f64, f64) {
    let dir = receiver.data.join(NS);
    let (out, returned) = ctl_wait(receiver, 600);
    let at_return = AtReturn::take(&dir);
    let checked = Instant::now();
    let watched = watcher.finish();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: ctl wait --timeout=600 did not say synced:\n{}{}\nreceiver's engine: {}\nsender's engine: {}",
        text(&out.stdout),
        text(&out.stderr),
        engine_view(receiver),
        engine_view(sender),
    );
    let differences = at_return.differences(expected);
    assert!(
        differences.is_empty(),
        "{what}: ctl wait returned 0 {:.1} s after the start but the files were not all there \
         ({} differences; the watcher last saw a difference {:?} before the return): {:?}\n\
         receiver's engine: {}\nsender's engine: {}",
        seconds(returned - from),
        differences.len(),
        watched
            .last_difference
            .map(|t| returned.saturating_duration_since(t)),
        &differences[..differences.len().min(20)],
        engine_view(receiver),
        engine_view(sender),
    );
    let matched = watched.matched_at.filter(|t| *t <= returned);
    let lag = matched.map_or(0.0, |t| seconds(returned - t));
    let wait_s = seconds(returned - from);
    match matched {
        Some(t) => println!(
            "{what}: every file matched {:.1} s after the start, wait returned {wait_s:.1} s \
             after the start: wait returned {lag:.1} s after the last file matched \
             ({} looks; hashing at the return took {:.1} s)",
            seconds(t - from),
            watched.looks,
            seconds(checked - returned),
        ),
        None => println!(
            "{what}: wait returned {wait_s:.1} s after the start, within {:.1} s of the last \
             file matching (the watcher's last look, that long before the return, still saw a \
             difference): wait returned 0.0 s after the last file matched",
            watched
                .last_difference
                .map_or(0.0, |t| seconds(returned.saturating_duration_since(t))),
        ),
    }
    (matched.map(|t| seconds(t - from)), wait_s, lag)
}

// ---------------------------------------------------------------------------
// 1. A fresh node joins 200 MiB and 500 small files, five times.

#[test]
#[ignore = "needs docker and the real btsync: tests/docker/run"]
fn real_btsync_sync_state_wait_on_a_fresh_node_returns_with_every_file() {
    const RUNS: usize = 5;
    let scope = Scope::new("sync-join");
    let image = real_image();
    let network = scope.network("net");
    let sender_name = scope.unique("node1");
    let receiver_names: Vec<String> = (0..RUNS)
        .map(|run| scope.unique(&format!("node2-{run}")))
        .collect();
    let mut all: Vec<&str> = vec![&sender_name];
    all.extend(receiver_names.iter().map(String::as_str));
    let sender_hosts = known_hosts(&all);
    let mut options = webui_offline();
    options.extend_from_slice(&["-e", &sender_hosts]);
    let sender = Node::start(&scope, &image, "node1", &network, &options);

    let started = Instant::now();
    let expected = write_dataset(&sender.data.join(NS), 4, 50 << 20, 500);
    println!(
        "wrote {} files, {} bytes in {:.1} s",
        expected.len(),
        total_bytes(&expected),
        started.elapsed().as_secs_f64()
    );
    sender.exec_ok(&["ctl", "add", NS]);
    wait_holding(&sender, &expected);
    let key = sender.exec_ok(&["secret", NS]).trim().to_owned();

    let mut figures = Vec::new();
    for (run, name) in receiver_names.iter().enumerate() {
        let hosts = known_hosts(&[&sender_name, name]);
        let mut options = webui_offline();
        options.extend_from_slice(&["-e", &hosts]);
        let receiver = Node::start(&scope, &image, &format!("node2-{run}"), &network, &options);
        wait_init(&receiver);
        let watcher = Watcher::start(receiver.data.join(NS), expected.clone());
        let added = Instant::now();
        receiver.exec_ok(&["ctl", "add", &format!("--token={key}"), NS]);
        let what = format!("run {}", run + 1);
        figures.push(wait_and_check(
            &receiver, &sender, &expected, watcher, added, &what,
        ));
        docker_ok(&["rm", "-f", "-v", &receiver.name]);
        let _ = fs::remove_dir_all(&receiver.data);
    }

    let mut lags: Vec<f64> = figures.iter().map(|(_, _, lag)| *lag).collect();
    lags.sort_by(f64::total_cmp);
    let (median, max) = (lags[lags.len() / 2], lags[lags.len() - 1]);
    println!(
        "{RUNS} of {RUNS} runs correct; wait returned after the last file matched: median \
         {median:.1} s, max {max:.1} s"
    );
    if let Some(out) = std::env::var_os("SYNCBOX_BENCH_OUT").filter(|v| !v.is_empty()) {
        let runs: Vec<serde_json::Value> = figures
            .iter()
            .map(|(matched, returned, lag)| {
                serde_json::json!({
                    "all_files_matched_s": matched,
                    "wait_returned_s": returned,
                    "lag_s": lag,
                })
            })
            .collect();
        let report = serde_json::json!({
            "what": "a fresh node joins 200 MiB in 4 files and 500 small files; seconds since its ctl add",
            "files": expected.len(),
            "bytes": total_bytes(&expected),
            "runs": runs,
            "correct": RUNS,
            "lag_median_s": median,
            "lag_max_s": max,
        });
        fs::write(&out, format!("{report:#}\n")).unwrap_or_else(|e| {
            panic!("write SYNCBOX_BENCH_OUT {}: {e}", Path::new(&out).display())
        });
    }
}

// ---------------------------------------------------------------------------
// 2. After a restart that missed 100 changes, wait waits for all of them.

#[test]
#[ignore = "needs docker and the real btsync: tests/docker/run"]
fn real_btsync_sync_state_wait_after_a_restart_waits_for_every_change() {
    let scope = Scope::new("sync-restart");
    let image = real_image();
    let network = scope.network("net");
    let (nodes, _) = Node::peers(&scope, &image, &network, 2, &webui_offline());
    let (sender, receiver) = (&nodes[0], &nodes[1]);
    let mut expected = write_dataset(&sender.data.join(NS), 1, 20 << 20, 500);
    sender.exec_ok(&["ctl", "add", NS]);
    wait_holding(sender, &expected);
    let key = sender.exec_ok(&["secret", NS]).trim().to_owned();

    let watcher = Watcher::start(receiver.data.join(NS), expected.clone());
    let added = Instant::now();
    receiver.exec_ok(&["ctl", "add", &format!("--token={key}"), NS]);
    wait_and_check(receiver, sender, &expected, watcher, added, "first join");

    docker_ok(&["stop", &receiver.name]);
    // 100 small files get new content of another length, so that the
    // sender's byte count shows when its engine has seen every change.
    let folder = sender.data.join(NS);
    for n in (0..500).step_by(5) {
        let bytes = random_bytes(7_000_000 + n as u64, 1024 + (n * 37) % 3072 + 100);
        write_file(&folder, &small_name(n), &bytes, &mut expected);
    }
    wait_holding(sender, &expected);

    let watcher = Watcher::start(receiver.data.join(NS), expected.clone());
    let restarted = Instant::now();
    docker_ok(&["start", &receiver.name]);
    wait_init(receiver);
    assert_eq!(receiver.exec_ok(&["ctl", "list"]), format!("{NS}\n"));
    wait_and_check(
        receiver,
        sender,
        &expected,
        watcher,
        restarted,
        "after the restart",
    );
}

// ---------------------------------------------------------------------------
// 3. No peer to be had: wait times out, `unknown`.

#[test]
#[ignore = "needs docker and the real btsync: tests/docker/run"]
fn real_btsync_sync_state_wait_without_a_peer_times_out_unknown() {
    let scope = Scope::new("sync-alone");
    let image = real_image();
    let network = scope.network("net");
    // One node knows no host; the other knows one nobody answers to (no
    // container has the name).
    let nowhere = known_hosts(&[&scope.unique("nobody")]);
    let mut pointing = webui_offline();
    pointing.extend_from_slice(&["-e", &nowhere]);
    let nodes = [
        Node::start(&scope, &image, "alone", &network, &webui_offline()),
        Node::start(&scope, &image, "pointing", &network, &pointing),
    ];
    for node in &nodes {
        node.exec_ok(&["ctl", "add", NS]);
    }
    let waits: Vec<(Output, Duration)> = thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|node| {
                s.spawn(move || {
                    let started = Instant::now();
                    let (out, ended) = ctl_wait(node, 20);
                    (out, ended - started)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a wait thread"))
            .collect()
    });
    for (node, (out, took)) in nodes.iter().zip(&waits) {
        let stderr = text(&out.stderr);
        println!(
            "{}: wait --timeout=20 took {took:?}: {}",
            node.name,
            stderr.trim()
        );
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", node.name);
        assert!(
            *took >= Duration::from_secs(20),
            "{}: wait gave up after {took:?}",
            node.name
        );
        assert!(
            stderr.contains(&format!("{NS}: unknown")),
            "{}: {stderr}",
            node.name
        );
    }
}

// ---------------------------------------------------------------------------
// 4. A plugin volume created with -o wait: the container sees every file.

/// FNV-1a 64, as the probe's `--list` prints it.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
#[ignore = "needs docker and the real btsync: tests/docker/run"]
fn real_btsync_sync_state_plugin_mount_with_wait_gives_the_whole_copy() {
    let scope = Scope::new("sync-plugin");
    let image = real_image();
    let lister = writer_image(&scope);
    let network = scope.network("net");
    let names = [scope.unique("node1"), scope.unique("node2")];
    let hosts = known_hosts(&[&names[0], &names[1]]);
    let mut options = webui_offline();
    options.extend_from_slice(&["-e", &hosts]);
    let sender = Node::start(&scope, &image, "node1", &network, &options);
    let folder = sender.data.join(NS);
    let expected = write_dataset(&folder, 2, 10 << 20, 100);
    let listing: BTreeMap<String, (u64, String)> = expected
        .iter()
        .map(|(name, (size, _))| {
            let bytes = fs::read(folder.join(name)).expect("read a written file");
            (name.clone(), (*size, format!("{:016x}", fnv1a(&bytes))))
        })
        .collect();
    sender.exec_ok(&["ctl", "add", NS]);
    wait_holding(&sender, &expected);
    let key = sender.exec_ok(&["secret", NS]).trim().to_owned();

    let plugin = PluginNode::start(&scope, &image, "node2", &network, &options);
    let volume = plugin.volume(&scope, "vol");
    let token = format!("token={key}");
    let created = Instant::now();
    docker_ok(&[
        "volume",
        "create",
        "-d",
        &plugin.driver,
        "-o",
        &token,
        "-o",
        "wait=90",
        &volume,
    ]);
    // A Mount whose wait ran out fails, and the container never runs: that
    // is the wait working (the first exchange between two fresh engines
    // now and then takes minutes), so the run is tried again, up to
    // SYNC_BOUND. Whenever the container does run, it must see everything.
    let mount = format!("{volume}:/vol:ro");
    let mut attempts = 0;
    let out = loop {
        attempts += 1;
        let out = scope.run_once(&["-v", &mount], &lister, "/bin/btsync", &["--list", "/vol"]);
        if out.status.success() {
            break out;
        }
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("not mounted"),
            "docker run -v {mount} failed otherwise than by the wait running out: {stderr}"
        );
        assert!(
            created.elapsed() < SYNC_BOUND,
            "the volume's data never came within {SYNC_BOUND:?}: {stderr}"
        );
        println!("attempt {attempts}: {}", stderr.trim());
    };
    println!(
        "the container ran {:.1} s after the volume was created (attempt {attempts})",
        created.elapsed().as_secs_f64()
    );
    let seen: BTreeMap<String, (u64, String)> = text(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ' ');
            let size = fields.next()?.parse().ok()?;
            let hash = fields.next()?.to_owned();
            Some((fields.next()?.to_owned(), (size, hash)))
        })
        .collect();
    let missing: Vec<&String> = listing
        .iter()
        .filter(|(name, entry)| seen.get(*name) != Some(entry))
        .map(|(name, _)| name)
        .collect();
    let extra: Vec<&String> = seen.keys().filter(|n| !listing.contains_key(*n)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the container saw {} of {} files as on node1; wrong or missing: {:?}; extra: {extra:?}",
        listing.len() - missing.len(),
        listing.len(),
        &missing[..missing.len().min(20)],
    );
}

/// Two real-engine nodes that know each other, init answering in both.
pub(crate) fn two_nodes(scope: &Scope) -> (Node, Node) {
    let image = crate::real::real_image();
    let network = scope.network("net");
    let (nodes, _) = Node::peers(scope, &image, &network, 2, &webui_offline());
    let mut nodes = nodes.into_iter();
    let (Some(first), Some(second)) = (nodes.next(), nodes.next()) else {
        panic!("Node::peers made fewer than two nodes");
    };
    wait_init(&first);
    wait_init(&second);
    (first, second)
}
