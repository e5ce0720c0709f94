//! init in WebUI mode (`BTSYNC_ENGINE_API=webui`): folders given to the
//! engine over its interface and proven from /proc, the sync state read
//! from it, `wait`, and the fall back to config-file mode. The stand-in
//! plays the engine (its peers scripted through `STAND_IN_PEERS`).

mod common;
#[path = "support/harness.rs"]
mod harness;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use harness::*;
use serde_json::{Value, json};

fn peers_file(sandbox: &Sandbox) -> PathBuf {
    sandbox.root.join("peers.json")
}

fn webui_sandbox(label: &str) -> Sandbox {
    let sandbox = Sandbox::new(label);
    let peers = peers_file(&sandbox);
    sandbox
        .with_env("BTSYNC_ENGINE_API", "webui")
        .with_env("STAND_IN_PEERS", peers)
}

fn api_calls(sandbox: &Sandbox, action: &str) -> Vec<String> {
    sandbox
        .events_of("api")
        .into_iter()
        .filter(|e| e["action"] == action)
        .filter_map(|e| e["folder"].as_str().map(str::to_owned))
        .collect()
}

fn run_wait(sandbox: &Sandbox, args: &[&str]) -> (i32, String) {
    let mut all = vec!["wait"];
    all.extend_from_slice(args);
    let out = sandbox.run(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn webui_mode_gives_folders_over_the_interface_and_proves_them() {
    let sandbox = webui_sandbox("webui-folders");
    add(&sandbox, "alpha");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    wait_until(
        "the engine got alpha over its interface",
        || api_calls(&sandbox, "addsyncfolder") == ["alpha"],
        || sandbox.context(),
    );
    // The config lists no folder; the interface is on loopback only.
    let config: Value =
        serde_json::from_str(&fs::read_to_string(sandbox.config_path()).expect("config"))
            .expect("config JSON");
    assert!(config.get("shared_folders").is_none(), "{config}");
    let listen = config["webui"]["listen"].as_str().expect("listen");
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");
    assert_eq!(config["folder_defaults.use_tracker"], true);
    // The credentials: 0600, never in the log or status.
    let credentials = sandbox.data().join(".btsync/webui.json");
    let mode = fs::metadata(&credentials)
        .expect("credentials")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let password = config["webui"]["password"]
        .as_str()
        .expect("password")
        .to_owned();
    assert!(password.len() >= 16);
    let status = init.status();
    assert_eq!(status["engine_api"], "webui", "{status}");
    assert!(!status.to_string().contains(&password));
    assert!(!init.stderr().contains(&password));

    // add and del by the interface, proven as a reload is.
    add(&sandbox, "beta");
    assert_eq!(api_calls(&sandbox, "addsyncfolder"), ["alpha", "beta"]);
    assert_eq!(init.status()["engine"]["folders"], json!(["alpha", "beta"]));
    fs::write(sandbox.folder("alpha").join("data.txt"), b"precious").expect("write");
    let out = sandbox.run(&["del", "alpha"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(api_calls(&sandbox, "removefolder"), ["alpha"]);
    assert!(!sandbox.folder("alpha").exists());
    sandbox.assert_nothing_vanished();
    let status = init.status();
    assert_eq!(status["engine"]["folders"], json!(["beta"]), "{status}");
    assert_eq!(status["starts"], 1, "one engine for every change: {status}");
    assert!(!init.stderr().contains(&password));
    init.signal(libc_sigterm());
    assert_eq!(init.wait_exit(), 0);
}

fn libc_sigterm() -> i32 {
    signal_hook::consts::signal::SIGTERM
}

#[test]
fn wait_returns_once_every_online_peer_completed_an_exchange() {
    let sandbox = webui_sandbox("webui-wait");
    add(&sandbox, "beta");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    wait_until(
        "the engine got beta",
        || api_calls(&sandbox, "addsyncfolder") == ["beta"],
        || sandbox.context(),
    );
    let peers = peers_file(&sandbox);

    // No peer: unknown, and wait gives up at its timeout.
    let (code, stderr) = run_wait(&sandbox, &["--timeout", "2", "beta"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("beta: unknown, no peer online"), "{stderr}");

    // A peer online that never completed an exchange: still unknown,
    // though it says nothing is left (1.4.111 does so before a first exchange).
    fs::write(
        &peers,
        json!({"beta": [{"isonline": true, "lastsynctime": 0, "downdiff": 0}]}).to_string(),
    )
    .expect("peers");
    let (code, stderr) = run_wait(&sandbox, &["--timeout", "2", "beta"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("beta: unknown, 1 of 1 peers online"),
        "{stderr}"
    );

    // Files left: syncing, with what is left.
    fs::write(
        &peers,
        json!({"beta": [{"isonline": true, "lastsynctime": 0, "downdiff": 1000, "downfiles": 3}]})
            .to_string(),
    )
    .expect("peers");
    let (code, stderr) = run_wait(&sandbox, &["--timeout", "2", "beta"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("beta: syncing, 3 files (1000 bytes) left, 1 of 1 peers online"),
        "{stderr}"
    );

    // An exchange completed since the folder was given, nothing left: synced.
    let later = syncbox::registry::now() + 5;
    fs::write(
        &peers,
        json!({"beta": [
            {"isonline": true, "lastsynctime": later, "downdiff": 0},
            {"isonline": false, "lastsynctime": 0, "downdiff": 0}
        ]})
        .to_string(),
    )
    .expect("peers");
    let (code, stderr) = run_wait(&sandbox, &["--timeout", "5", "beta"]);
    assert_eq!(code, 0, "{stderr}");
    // The same state in `status NS`, `status --json NS` and `list --json`.
    let out = sandbox.run(&["status", "beta"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text,
        format!("beta: synced, 1 of 2 peers online, last completed sync at {later} (unix time)\n")
    );
    let out = sandbox.run(&["status", "--json", "beta"]);
    let state: Value = serde_json::from_slice(&out.stdout).expect("state JSON");
    assert_eq!(
        state,
        json!({"state": "synced", "peers_online": 1, "peers_known": 2, "files_left": null,
            "bytes_left": null, "last_sync": later})
    );
    let out = sandbox.run(&["list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).expect("list JSON");
    assert_eq!(list[0]["sync"], state, "{list}");
    assert_eq!(sandbox.run(&["status", "nosuch"]).status.code(), Some(1));

    // Bad input: exit 2, nothing waited for.
    assert_eq!(run_wait(&sandbox, &["nosuch"]).0, 2);
    assert_eq!(run_wait(&sandbox, &[]).0, 2);
    assert_eq!(run_wait(&sandbox, &["--timeout", "soon", "beta"]).0, 2);
    init.signal(libc_sigterm());
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn add_wait_returns_once_the_new_namespace_is_synced_and_says_what_is_left_otherwise() {
    let sandbox = webui_sandbox("webui-add-wait");
    add(&sandbox, "base");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    let later = syncbox::registry::now() + 5;
    fs::write(
        peers_file(&sandbox),
        json!({"gamma": [{"isonline": true, "lastsynctime": later, "downdiff": 0}],
               "zeta": [{"isonline": true, "lastsynctime": later, "downdiff": 0}],
               "delta": [{"isonline": true, "lastsynctime": 0, "downdiff": 1000, "downfiles": 3}]})
        .to_string(),
    )
    .expect("peers");
    let run = |args: &[&str]| {
        let out = sandbox.run(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let registered = |ns: &str| sandbox.run(&["has", ns]).status.code() == Some(0);

    // Bad input: exit 2, nothing added.
    for bad in [
        vec!["add", "--wait=soon", "eps"],
        vec!["add", "--wait=-1", "eps"],
        vec!["add", "--wait", "--no-wait", "eps"],
    ] {
        let (code, stderr) = run(&bad);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!registered("eps"), "{bad:?} added eps");
    }

    // Synced: 0, with a timeout given and with --wait alone.
    let (code, stderr) = run(&["add", "--wait=20", "gamma"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = run(&["add", "--wait", "zeta"]);
    assert_eq!(code, 0, "{stderr}");
    // Still syncing at the timeout: 1 with what is left; the namespace stays.
    let (code, stderr) = run(&["add", "--wait=2", "delta"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("delta: syncing, 3 files (1000 bytes) left, 1 of 1 peers online"),
        "{stderr}"
    );
    assert!(registered("delta"));
    // No peer: unknown.
    let (code, stderr) = run(&["add", "--wait=2", "omega"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("omega: unknown, no peer online"),
        "{stderr}"
    );
    init.signal(libc_sigterm());
    assert_eq!(init.wait_exit(), 0);
}

/// An engine without the interface: init falls back to config-file mode
/// (logged), the namespace is served from the config, and `wait` says it
/// cannot tell instead of guessing.
#[test]
fn an_engine_without_the_interface_runs_in_config_file_mode() {
    let sandbox = webui_sandbox("webui-fallback").with_env("STAND_IN_NO_WEBUI", "1");
    add(&sandbox, "gamma");
    let mut init = Init::start(&sandbox, Mode::Subreaper, &[]);
    wait_until(
        "init falls back to the config file",
        || init.stderr().contains("config-file mode from now on"),
        || sandbox.context(),
    );
    wait_until(
        "an engine serves gamma from its config",
        || {
            let status = sandbox.run(&["status", "--json"]);
            serde_json::from_slice::<Value>(&status.stdout).is_ok_and(|s| {
                s["engine_api"] == "config"
                    && s["engine"]["state"] == "running"
                    && s["engine"]["folders"] == json!(["gamma"])
            })
        },
        || sandbox.context(),
    );
    let (code, stderr) = run_wait(&sandbox, &["--timeout", "2", "gamma"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("config-file mode"), "{stderr}");
    let out = sandbox.run(&["status", "gamma"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("gamma: unknown") && text.contains("config-file mode"),
        "{text}"
    );
    add(&sandbox, "delta");
    init.signal(libc_sigterm());
    assert_eq!(init.wait_exit(), 0);
}

/// When the stand-in recorded each `action` call about `folder` (unix
/// seconds).
fn api_times(sandbox: &Sandbox, action: &str, folder: &str) -> Vec<f64> {
    sandbox
        .events_of("api")
        .into_iter()
        .filter(|e| e["action"] == action && e["folder"] == folder)
        .filter_map(|e| e["t"].as_f64())
        .collect()
}

const RETAKE_LINE: &str =
    "the engine's first exchange with its peer did not start: taking the folder up again";

/// 1.4.111's stuck first exchange (its peer online, named by its address,
/// forever): init takes the folder up again (removed and given again over
/// the interface) 8 to 16 s after it saw every peer unnamed, once: the
/// peer is named after. A folder whose peer is named is never touched, nor
/// one that holds files (its peers would see it empty for a moment). The
/// sync rule's `since` stays when the folder was first given.
#[test]
fn a_folder_whose_peer_stays_unnamed_is_taken_up_again_and_a_named_one_never() {
    let sandbox = webui_sandbox("webui-retake");
    let peers = peers_file(&sandbox);
    let script = |stuck_synced_at: u64| {
        json!({
            "stuck": [{"isonline": true, "unnamed_until_readded": true,
                       "lastsynctime": stuck_synced_at, "downdiff": 0}],
            "named": [{"isonline": true, "lastsynctime": 0, "downdiff": 0}],
            "full": [{"isonline": true, "unnamed_until_readded": true}],
        })
        .to_string()
    };
    fs::write(&peers, script(0)).expect("peers");
    add(&sandbox, "stuck");
    add(&sandbox, "named");
    add(&sandbox, "full");
    fs::write(sandbox.folder("full").join("kept.txt"), b"kept").expect("write");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    wait_until(
        "the engine got the folders",
        || api_calls(&sandbox, "addsyncfolder").len() == 3,
        || sandbox.context(),
    );
    let given = api_times(&sandbox, "addsyncfolder", "stuck")[0];
    // An exchange after the first give but before the retake (at least 8 s
    // later): it must count for the sync rule.
    let synced_at = given as u64 + 2;
    fs::write(&peers, script(synced_at)).expect("peers");

    wait_until(
        "init takes stuck up again",
        || api_calls(&sandbox, "addsyncfolder").len() == 4,
        || sandbox.context(),
    );
    assert_eq!(api_calls(&sandbox, "removefolder"), ["stuck"]);
    let removed = api_times(&sandbox, "removefolder", "stuck")[0];
    assert!(
        removed - given >= 8.0,
        "taken up again {:.1}s after it was given\n{}",
        removed - given,
        sandbox.context()
    );
    let stderr = init.stderr();
    assert!(
        stderr.contains(&format!("stuck: {RETAKE_LINE} (1 of 5)")),
        "{stderr}"
    );
    assert!(!stderr.contains("named: "), "{stderr}");
    // The `since` of the first give counts.
    let (code, stderr) = run_wait(&sandbox, &["--timeout", "5", "stuck"]);
    assert_eq!(code, 0, "{stderr}\n{}", sandbox.context());

    // Named now: no more; longer than the longest patience (16 s) and a look.
    std::thread::sleep(std::time::Duration::from_secs(18));
    assert_eq!(api_calls(&sandbox, "removefolder"), ["stuck"]);
    assert_eq!(api_calls(&sandbox, "addsyncfolder").len(), 4);
    assert_eq!(
        fs::read(sandbox.folder("full").join("kept.txt")).expect("kept"),
        b"kept"
    );
    let status = init.status();
    assert_eq!(
        status["engine"]["folders"],
        json!(["full", "named", "stuck"]),
        "{status}"
    );
    assert_eq!(status["starts"], 1, "{status}");
    let stderr = init.stderr();
    assert_eq!(stderr.matches(RETAKE_LINE).count(), 1, "{stderr}");
    // No key in the log.
    let key = String::from_utf8(sandbox.run(&["secret", "stuck"]).stdout).expect("key");
    assert!(!stderr.contains(key.trim()), "{stderr}");
    sandbox.assert_nothing_vanished();
    init.signal(libc_sigterm());
    assert_eq!(init.wait_exit(), 0);
}

/// A peer that stays unnamed whatever init does: the folder is taken up
/// again 5 times in this engine run, then left alone, and init stops
/// looking at the engine on its own.
#[test]
fn a_folder_is_taken_up_again_at_most_five_times() {
    let sandbox = webui_sandbox("webui-retake-max");
    fs::write(
        peers_file(&sandbox),
        json!({"mute": [{"isonline": true, "name": "127.0.0.1:45001"}]}).to_string(),
    )
    .expect("peers");
    add(&sandbox, "mute");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    for n in 1..=5 {
        wait_until(
            &format!("init takes mute up again ({n})"),
            || api_calls(&sandbox, "removefolder").len() >= n,
            || sandbox.context(),
        );
    }
    wait_until(
        "mute given again the fifth time",
        || api_calls(&sandbox, "addsyncfolder").len() == 6,
        || sandbox.context(),
    );
    let times = api_times(&sandbox, "removefolder", "mute");
    let gives = api_times(&sandbox, "addsyncfolder", "mute");
    for (n, removed) in times.iter().enumerate() {
        assert!(
            removed - gives[n] >= 8.0,
            "retake {} came {:.1}s after the give before it",
            n + 1,
            removed - gives[n]
        );
    }
    let stderr = init.stderr();
    assert!(
        stderr.contains(&format!("mute: {RETAKE_LINE} (5 of 5)")),
        "{stderr}"
    );
    // No try left: init no longer reads the engine's folders on its own.
    let looks = || {
        sandbox
            .events_of("api")
            .into_iter()
            .filter(|e| e["action"] == "getsyncfolders")
            .count()
    };
    std::thread::sleep(std::time::Duration::from_secs(2));
    let before = looks();
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(looks(), before, "init still looks at the engine's folders");
    assert_eq!(api_calls(&sandbox, "removefolder").len(), 5);
    assert_eq!(init.stderr().matches(RETAKE_LINE).count(), 5);
    assert_eq!(init.status()["starts"], 1);
    init.signal(libc_sigterm());
    assert_eq!(init.wait_exit(), 0);
}

/// Every file under `dir` (but `.sync/`) with the sha256 of its content.
fn digests(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    use sha2::{Digest, Sha256};
    let mut found = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(at) = todo.pop() {
        for entry in fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(dir).expect("below").display().to_string();
            if name == ".sync" || name.ends_with(".!sync") {
                continue;
            }
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = fs::read(&path) {
                found.insert(name, Sha256::digest(&bytes).to_vec());
            }
        }
    }
    found
}

/// The proof with the real 1.4.111, two nodes on loopback in a
/// network (and PID) namespace of their own, discovery off: node b joins a
/// namespace node a holds (40 small files and 8 MiB); `wait` on b returns
/// 0 only once every file on b has a's sha256, checked the moment it returns.
#[test]
fn with_the_real_engine_wait_returns_only_once_the_files_are_there() {
    let test = "with_the_real_engine_wait_returns_only_once_the_files_are_there";
    let Some(btsync) = real_engine_bin(test) else {
        return;
    };
    let a = Sandbox::new("realwait-a");
    let b = Sandbox::new("realwait-b");
    add(&a, "shared");
    for n in 0..40 {
        fs::write(
            a.folder("shared").join(format!("small-{n}.txt")),
            format!("file {n}\n"),
        )
        .expect("write");
    }
    let big: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(a.folder("shared").join("big.bin"), &big).expect("write");
    let key = String::from_utf8(a.run(&["secret", "shared"]).stdout).expect("key");
    let key = key.trim().to_owned();

    // Both inits in one namespace: sh is its PID 1, so killing it ends both.
    let node = |sandbox: &Sandbox, port: u16, peer: u16| {
        format!(
            "env BTSYNC_DATA={} BTSYNC_BIN={btsync} BTSYNC_ENGINE_API=webui \
             BTSYNC_USE_TRACKER=false BTSYNC_USE_RELAY_SERVER=false BTSYNC_SEARCH_LAN=false \
             BTSYNC_USE_DHT=false BTSYNC_LISTEN_PORT={port} BTSYNC_KNOWN_HOSTS=127.0.0.1:{peer} \
             BTSYNC_DEVICE_NAME=node{port} {} init 2>{} &",
            sandbox.data().display(),
            syncbox_bin().display(),
            sandbox.init_log_path().display(),
        )
    };
    let script = format!(
        "ip link set lo up && {} {} wait",
        node(&a, 46001, 46002),
        node(&b, 46002, 46001)
    );
    // --kill-child: when unshare is killed, so is sh, the namespace's PID
    // 1, and with it both nodes.
    let _nodes = KillOnDrop(
        std::process::Command::new("unshare")
            .args([
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sh",
                "-c",
                &script,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start both nodes"),
    );
    for sandbox in [&a, &b] {
        wait_until(
            "init answers",
            || sandbox.run(&["status", "--json"]).status.code() == Some(0),
            || sandbox.context(),
        );
    }
    let out = b
        .command(&["add", "--token", &key, "shared"])
        .env("BTSYNC_APPLY_TIMEOUT", "60")
        .output()
        .expect("add on b");
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", b.context());
    let started = std::time::Instant::now();
    let out = b.run(&["wait", "--timeout", "300", "shared"]);
    let returned = started.elapsed();
    let (sent, received) = (digests(&a.folder("shared")), digests(&b.folder("shared")));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{out:?}\n{}\n{}",
        a.context(),
        b.context()
    );
    assert_eq!(sent.len(), 41);
    assert_eq!(received, sent, "wait returned before every file was there");
    eprintln!(
        "{test}: wait returned {:.1}s after the add",
        returned.as_secs_f64()
    );
    let status = b.run(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).expect("status");
    assert_eq!(status["engine_api"], "webui", "{status}");
}
