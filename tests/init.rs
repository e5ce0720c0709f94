//! init, end to end: the built `syncbox` binary runs the stand-in engine
//! (`tests/support/stand_in_engine.rs`, built by `cargo test` as the
//! example `stand-in-btsync`) as a real PID 1 in a new PID namespace
//! (`unshare --pid --fork --mount-proc`, needs root: CI runs as root) or as a
//! plain child subreaper.
//!
//! The stand-in writes one JSON line per start, signal and exit; tests read
//! that log and /proc instead of measuring time. Deadlines are generous and
//! only stop a hung test; no assertion depends on speed.
//!
//! Root-only tests fail when not run as root, unless SYNCBOX_SKIP_ROOT_TESTS=1
//! is set, so a missing privilege never passes silently.

mod common;
#[path = "support/harness.rs"]
mod harness;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::Value;

// ---------------------------------------------------------------- exit codes

fn stop_status(on_term: &str, signal: i32) -> (i32, String) {
    let sandbox = Sandbox::new("exit");
    add(&sandbox, "base");
    let mut init = Init::start_running(&sandbox, Mode::Pid1, &[("STAND_IN_ON_TERM", on_term)]);
    init.signal(signal);
    let code = init.wait_exit();
    (code, init.stderr())
}

#[test]
fn pid1_passes_the_engine_exit_status_through() {
    if !root_available("pid1_passes_the_engine_exit_status_through") {
        return;
    }
    for code in [0, 3, 255] {
        let (status, log) = stop_status(&format!("exit:{code}"), SIGTERM);
        assert_eq!(status, code, "engine exit {code}:\n{log}");
        assert!(
            log.contains(&format!("exit status {code}")),
            "the exit is logged:\n{log}"
        );
    }
}

#[test]
fn pid1_reports_death_by_signal_as_128_plus_n() {
    if !root_available("pid1_reports_death_by_signal_as_128_plus_n") {
        return;
    }
    let (status, log) = stop_status("default", SIGTERM);
    assert_eq!(status, 128 + SIGTERM, "{log}");
    let (status, log) = stop_status("default", SIGINT);
    assert_eq!(status, 128 + SIGINT, "{log}");
}

#[test]
fn missing_engine_exits_127_and_names_the_path() {
    if !root_available("missing_engine_exits_127_and_names_the_path") {
        return;
    }
    let sandbox = Sandbox::new("missing");
    let mut init = Init::start(
        &sandbox,
        Mode::Pid1,
        &[("BTSYNC_BIN", "/nonexistent/btsync")],
    );
    assert_eq!(init.wait_exit(), 127);
    assert!(
        init.stderr().contains("/nonexistent/btsync"),
        "{}",
        init.stderr()
    );

    let sandbox = Sandbox::new("noexec");
    let not_executable = sandbox.root.join("btsync");
    fs::write(&not_executable, "not a program").expect("write");
    let mut init = Init::start(
        &sandbox,
        Mode::Subreaper,
        &[("BTSYNC_BIN", not_executable.to_str().expect("utf-8 path"))],
    );
    assert_eq!(init.wait_exit(), 126);
    assert!(
        init.stderr()
            .contains(not_executable.to_str().unwrap_or("?"))
    );
}

// ------------------------------------------------------------------- signals

#[test]
fn pid1_forwards_hup_usr1_int_and_term() {
    if !root_available("pid1_forwards_hup_usr1_int_and_term") {
        return;
    }
    let sandbox = Sandbox::new("signals");
    add(&sandbox, "base");
    let mut init = Init::start_running(&sandbox, Mode::Pid1, &[]);
    let signalled = |name: &str| {
        sandbox
            .events_of("signal")
            .iter()
            .any(|e| e["signal"] == name)
    };
    for (signal, name) in [(SIGHUP, "SIGHUP"), (SIGUSR1, "SIGUSR1")] {
        init.signal(signal);
        wait_until(
            &format!("the engine got {name}"),
            || signalled(name),
            || sandbox.context(),
        );
    }
    // HUP and USR1 are passed on; they do not restart or stop the engine.
    assert_eq!(sandbox.starts().len(), 1, "{}", sandbox.context());
    init.signal(SIGINT);
    assert_eq!(init.wait_exit(), 0);
    assert!(signalled("SIGINT"), "{}", sandbox.context());
    assert_eq!(sandbox.events_of("exit").len(), 1);

    let sandbox = Sandbox::new("term");
    add(&sandbox, "base");
    let mut init = Init::start_running(&sandbox, Mode::Pid1, &[]);
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
    assert!(
        sandbox
            .events_of("signal")
            .iter()
            .any(|e| e["signal"] == "SIGTERM")
    );
}

// ------------------------------------------------------------------- reaping

fn orphans_are_reaped(mode: Mode) {
    let sandbox = Sandbox::new("orphans");
    add(&sandbox, "base");
    let release = sandbox.root.join("release-orphans");
    let release_text = release.to_str().expect("utf-8 path").to_owned();
    let mut init = Init::start_running(
        &sandbox,
        mode,
        &[
            ("STAND_IN_ORPHANS", "100"),
            ("STAND_IN_ORPHANS_RELEASE", &release_text),
        ],
    );
    let stand_in_children = || {
        children_of(init.pid)
            .iter()
            .filter(|c| c.2 == "stand-in-btsync")
            .count()
    };
    // The stand-in's orphan maker exits at once; its 100 children must be
    // re-parented to init (PID 1 or the subreaper), not to the host's init.
    wait_until(
        "100 orphans were re-parented to init",
        || stand_in_children() >= 101,
        || sandbox.context(),
    );
    fs::write(&release, b"go").expect("release the orphans");
    wait_until(
        "every orphan was reaped",
        || {
            let children = children_of(init.pid);
            children.len() == 1 && children.iter().all(|c| c.1 != 'Z')
        },
        || format!("{:?}\n{}", children_of(init.pid), sandbox.context()),
    );
    // The engine itself is untouched by all that reaping.
    assert_eq!(sandbox.starts().len(), 1, "{}", sandbox.context());
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn pid1_reaps_100_orphaned_grandchildren() {
    if !root_available("pid1_reaps_100_orphaned_grandchildren") {
        return;
    }
    orphans_are_reaped(Mode::Pid1);
}

#[test]
fn subreaper_reaps_100_orphaned_grandchildren() {
    orphans_are_reaped(Mode::Subreaper);
}

// ------------------------------------------------------------------ changes

#[test]
fn add_returns_once_the_engine_runs_with_the_namespace() {
    if !root_available("add_returns_once_the_engine_runs_with_the_namespace") {
        return;
    }
    let sandbox = Sandbox::new("add").config_file_mode();
    add(&sandbox, "alpha");
    // Restart mode: each applied change is a new engine start (reload mode
    // has tests of its own below).
    let mut init = Init::start_running(&sandbox, Mode::Pid1, &[("BTSYNC_APPLY", "restart")]);
    assert_eq!(folders_of(&sandbox.starts()[0]), ["alpha"]);

    add(&sandbox, "beta");
    // When add returns, the engine running is one started from a config
    // that has beta (checked without waiting).
    let config = fs::read_to_string(sandbox.config_path()).expect("config");
    assert!(config.contains(sandbox.folder("beta").to_str().expect("utf-8")));
    let status = init.status();
    assert_eq!(
        status["engine"]["folders"],
        serde_json::json!(["alpha", "beta"])
    );
    let pid = status["engine"]["pid"].clone();
    wait_until(
        "the new engine logged its start",
        || sandbox.starts().iter().any(|s| s["pid"] == pid),
        || sandbox.context(),
    );
    let starts = sandbox.starts();
    assert_eq!(starts.len(), 2, "{}", sandbox.context());
    assert_eq!(folders_of(&starts[1]), ["alpha", "beta"]);
    assert_eq!(starts[1]["pid"], pid);

    // Adding what the engine already has restarts nothing.
    add(&sandbox, "beta");
    add(&sandbox, "alpha");
    assert_eq!(sandbox.starts().len(), 2, "{}", sandbox.context());

    // --no-wait returns at once; init still applies the change.
    let out = sandbox.run(&["add", "--no-wait", "gamma"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    wait_until(
        "the engine picked up gamma",
        || {
            sandbox
                .starts()
                .last()
                .is_some_and(|s| folders_of(s).contains(&"gamma".to_owned()))
        },
        || sandbox.context(),
    );
    let status = init.status();
    assert_eq!(status["restarts"], 2, "{status}");
    assert_eq!(
        status["engine"]["folders"],
        serde_json::json!(["alpha", "beta", "gamma"])
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn burst_of_50_adds_costs_at_most_2_restarts() {
    if !root_available("burst_of_50_adds_costs_at_most_2_restarts") {
        return;
    }
    let sandbox = Sandbox::new("burst").config_file_mode();
    add(&sandbox, "seed");
    let mut init = Init::start_running(&sandbox, Mode::Pid1, &[("BTSYNC_APPLY", "restart")]);
    add_concurrently(&sandbox, 50);
    // Every add waited for an engine that has its namespace, so the engine
    // running now lists all of them.
    let last = folders_of(&init.current_start());
    assert_eq!(last.len(), 51, "{}", sandbox.context());
    let starts = sandbox.starts();
    let restarts = starts.len() - 1;
    assert!(
        (1..=2).contains(&restarts),
        "50 concurrent adds caused {restarts} restarts\n{}",
        sandbox.context()
    );
    assert_eq!(init.status()["restarts"], restarts as u64);
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn add_works_from_another_pid_namespace() {
    if !root_available("add_works_from_another_pid_namespace") {
        return;
    }
    let sandbox = Sandbox::new("otherns").config_file_mode();
    // Nothing to sync yet: init is idle, the add from elsewhere starts it.
    let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--"])
        .arg(syncbox_bin())
        .args(["add", "remote"]);
    sandbox.environment(&mut command);
    let out = command.output().expect("run unshare");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(folders_of(&init.current_start()), ["remote"]);
    assert_eq!(sandbox.starts().len(), 1, "{}", sandbox.context());
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn stand_in_reports_files_that_vanish_under_it() {
    // The del tests rely on this detector; show that it fires.
    let sandbox = Sandbox::new("vanish").config_file_mode();
    add(&sandbox, "victim");
    fs::write(sandbox.folder("victim").join("data.txt"), b"precious").expect("write");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    fs::remove_file(sandbox.folder("victim").join("data.txt")).expect("remove");
    wait_until(
        "the stand-in reported the deletion",
        || !sandbox.events_of("vanished").is_empty(),
        || sandbox.context(),
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn del_deletes_files_only_after_the_engine_dropped_the_folder() {
    if !root_available("del_deletes_files_only_after_the_engine_dropped_the_folder") {
        return;
    }
    let sandbox = Sandbox::new("del").config_file_mode();
    for ns in ["keep", "victim", "later"] {
        add(&sandbox, ns);
        fs::write(sandbox.folder(ns).join("data.txt"), b"precious").expect("write");
    }
    // Restart mode: "the engine let go" is an engine exit here.
    let mut init = Init::start_running(&sandbox, Mode::Pid1, &[("BTSYNC_APPLY", "restart")]);
    let out = sandbox.run(&["del", "victim"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!sandbox.folder("victim").exists());
    assert_eq!(folders_of(&init.current_start()), ["keep", "later"]);
    assert_eq!(sandbox.starts().len(), 2, "{}", sandbox.context());
    // The engine that had the folder exited before the files went.
    assert_eq!(sandbox.events_of("exit").len(), 1);

    // --no-wait: init deletes the files itself once the engine let go.
    let out = sandbox.run(&["del", "--no-wait", "later"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    wait_until(
        "init deleted the files of 'later'",
        || !sandbox.folder("later").exists(),
        || sandbox.context(),
    );
    assert_eq!(folders_of(&init.current_start()), ["keep"]);

    // --keep-data: unregistered, files stay. It was the last namespace:
    // the engine is stopped, not restarted (btsync refuses an empty
    // config), and init is idle.
    let out = sandbox.run(&["del", "--keep-data", "keep"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(sandbox.folder("keep").join("data.txt").exists());
    assert_eq!(init.status()["engine"]["state"], "idle");
    assert_eq!(sandbox.starts().len(), 3, "{}", sandbox.context());
    assert_eq!(sandbox.events_of("exit").len(), 3);

    // Never did an engine see a file of its folders disappear.
    sandbox.assert_nothing_vanished();
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn del_no_wait_of_a_namespace_the_engine_never_had() {
    let sandbox = Sandbox::new("nowaitdel");
    // An engine runs already (with another namespace), so the change to
    // 'brief' is coalesced behind the quiet period.
    add(&sandbox, "base");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    // Added and deleted before the engine picked it up (or just after:
    // either way exactly one party deletes the files, quietly).
    assert_eq!(
        sandbox.run(&["add", "--no-wait", "brief"]).status.code(),
        Some(0)
    );
    let out = sandbox.run(&["del", "--no-wait", "brief"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(!message.contains("added again"), "{message}");
    wait_until(
        "the folder of 'brief' is gone",
        || !sandbox.folder("brief").exists(),
        || sandbox.context(),
    );
    assert!(!init.stderr().contains("added again"), "{}", init.stderr());
    assert_eq!(sandbox.run(&["has", "brief"]).status.code(), Some(1));
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn del_keeps_the_files_when_the_engine_does_not_let_go() {
    let sandbox = Sandbox::new("stuck");
    add(&sandbox, "victim");
    fs::write(sandbox.folder("victim").join("data.txt"), b"precious").expect("write");
    let mut init = Init::start_running(
        &sandbox,
        Mode::Subreaper,
        &[("STAND_IN_ON_TERM", "ignore"), ("BTSYNC_STOP_GRACE", "600")],
    );
    let out = sandbox
        .command(&["del", "victim"])
        .env("BTSYNC_APPLY_TIMEOUT", "1")
        .output()
        .expect("del");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("files were kept"), "{message}");
    assert!(sandbox.folder("victim").join("data.txt").exists());
    assert_eq!(sandbox.run(&["has", "victim"]).status.code(), Some(1));
    assert!(sandbox.data().join(".btsync/deleting/victim").exists());

    // init dies (SIGKILL): the engine goes with it, the socket is stale.
    let engine = sandbox.starts()[0]["pid"].as_i64().expect("engine pid") as i32;
    init.signal(SIGKILL);
    let killed = init.child.wait().expect("wait init");
    assert_eq!(killed.code(), None, "init was killed");
    init.exited = Some(-1);
    wait_until(
        "the engine died with init",
        || proc_stat(engine).is_none_or(|s| s.0 == 'Z'),
        || sandbox.context(),
    );
    assert!(sandbox.folder("victim").join("data.txt").exists());
    // A later del, with no init running, finishes the job.
    let out = sandbox.run(&["del", "victim"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!sandbox.folder("victim").exists());
    assert!(!sandbox.data().join(".btsync/deleting/victim").exists());
}

// ------------------------------------------------------------ crashes, stop

#[test]
fn crashing_engine_is_restarted_with_growing_delays() {
    let sandbox = Sandbox::new("crash");
    add(&sandbox, "base");
    let mut init = Init::start(
        &sandbox,
        Mode::Subreaper,
        &[("STAND_IN_EXIT_AT_START", "1")],
    );
    init.wait_for_starts(4);
    let times: Vec<f64> = sandbox
        .starts()
        .iter()
        .map(|s| s["t"].as_f64().expect("time"))
        .collect();
    // Backoff 1 s, 2 s, 4 s: sleeps last at least that long, so these lower
    // bounds hold however loaded the machine is.
    for (i, minimum) in [0.9, 1.9, 3.9].iter().enumerate() {
        let gap = times[i + 1] - times[i];
        assert!(
            gap >= *minimum,
            "start {} came {gap:.2}s after the previous",
            i + 2
        );
    }
    let status = init.status();
    assert!(status["crashes"].as_u64() >= Some(3), "{status}");
    assert_eq!(status["last_exit"]["status"], 1);
    assert!(
        init.stderr().contains("exited unexpectedly"),
        "{}",
        init.stderr()
    );
    // Stopping while the engine waits to be restarted is immediate.
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 1);
}

#[test]
fn stop_waits_for_a_slow_engine_within_the_grace_period() {
    let sandbox = Sandbox::new("graceful");
    add(&sandbox, "base");
    let mut init = Init::start_running(
        &sandbox,
        Mode::Subreaper,
        &[("STAND_IN_ON_TERM", "delay:1"), ("BTSYNC_STOP_GRACE", "30")],
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
    assert_eq!(
        sandbox.events_of("exit").len(),
        1,
        "the engine exited on its own\n{}",
        sandbox.context()
    );
    assert!(!init.stderr().contains("sent KILL"), "{}", init.stderr());
}

#[test]
fn pid1_stop_kills_an_engine_that_ignores_term_after_the_grace() {
    if !root_available("pid1_stop_kills_an_engine_that_ignores_term_after_the_grace") {
        return;
    }
    let sandbox = Sandbox::new("kill");
    add(&sandbox, "base");
    let mut init = Init::start_running(
        &sandbox,
        Mode::Pid1,
        &[("STAND_IN_ON_TERM", "ignore"), ("BTSYNC_STOP_GRACE", "1")],
    );
    let asked = Instant::now();
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 128 + SIGKILL);
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "KILL came before the grace ended"
    );
    assert!(init.stderr().contains("sent KILL"), "{}", init.stderr());
    assert!(
        sandbox.events_of("exit").is_empty(),
        "the engine never exited by itself"
    );
}

// ------------------------------------------------------------ config, owner

#[test]
fn config_comes_from_the_registry_and_the_environment() {
    let sandbox = Sandbox::new("config").config_file_mode();
    let key = "ABCDEFGHIJKLMNOPQRSTUVWXYZ2345672";
    let out = sandbox.run(&["add", "--token", key, "media"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    add(&sandbox, "gitlab");
    let mut init = Init::start_running(
        &sandbox,
        Mode::Subreaper,
        &[
            ("BTSYNC_DEVICE_NAME", "store-7"),
            ("BTSYNC_LISTEN_PORT", "44444"),
            ("BTSYNC_SEARCH_LAN", "false"),
            ("BTSYNC_USE_SYNC_TRASH", "no"),
            ("BTSYNC_KNOWN_HOSTS", "10.0.0.2:44444,node-b:44444"),
        ],
    );
    let config_path = sandbox.config_path();
    let mode = fs::metadata(&config_path)
        .expect("config")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the config holds keys");
    let config: Value =
        serde_json::from_str(&fs::read_to_string(&config_path).expect("read")).expect("json");
    let data = sandbox.data();
    assert_eq!(config["device_name"], "store-7");
    assert_eq!(config["listening_port"], 44444);
    assert_eq!(config["use_upnp"], false);
    assert_eq!(config["check_for_updates"], false);
    assert!(config.get("webui").is_none());
    assert_eq!(
        config["storage_path"],
        data.join(".btsync/storage").to_str().expect("utf-8")
    );
    let folders = config["shared_folders"].as_array().expect("folders");
    assert_eq!(folders.len(), 2);
    let media = folders
        .iter()
        .find(|f| f["dir"] == data.join("media").to_str().expect("utf-8"))
        .expect("media folder");
    assert_eq!(media["secret"], key);
    for folder in folders {
        assert_eq!(folder["search_lan"], false);
        assert_eq!(folder["use_sync_trash"], false);
        assert_eq!(folder["use_relay_server"], true);
        assert_eq!(folder["use_tracker"], true);
        assert_eq!(folder["use_dht"], false);
        assert_eq!(
            folder["known_hosts"],
            serde_json::json!(["10.0.0.2:44444", "node-b:44444"])
        );
    }
    // The stand-in accepted it as btsync would.
    let start = &sandbox.starts()[0];
    assert_eq!(start["device_name"], "store-7");
    assert_eq!(start["listening_port"], 44444);
    // Keys never reach init's log.
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
    assert!(!init.stderr().contains(key), "{}", init.stderr());
}

#[test]
fn a_damaged_registry_entry_is_left_out_and_the_rest_still_syncs() {
    let sandbox = Sandbox::new("damaged").config_file_mode();
    add(&sandbox, "good");
    add(&sandbox, "broken");
    let entry = sandbox.data().join(".btsync/namespaces/broken");
    fs::write(&entry, "{\"name\": \"broken\", \"secr").expect("damage the entry");
    fs::write(sandbox.folder("broken").join("keep.txt"), "data").expect("write");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    assert_eq!(
        folders_of(&init.current_start()),
        ["good"],
        "{}",
        sandbox.context()
    );
    let log = init.stderr();
    assert!(
        log.contains("left out of the engine config") && log.contains("namespaces/broken"),
        "{log}"
    );
    // Left out, never acted on: the files stay.
    assert!(sandbox.folder("broken").join("keep.txt").exists());
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn malformed_variable_stops_init_before_the_engine_starts() {
    for (var, value) in [
        ("BTSYNC_LISTEN_PORT", "seventy"),
        ("BTSYNC_KNOWN_HOSTS", "node-b"),
        ("BTSYNC_UID", "no-such-user-here"),
        ("BTSYNC_GID", "no-such-group-here"),
        ("BTSYNC_BIN", "stand-in-btsync"),
        ("BTSYNC_BIN", "relative/btsync"),
        ("BTSYNC_STOP_GRACE", "soon"),
        ("BTSYNC_USE_DHT", "perhaps"),
    ] {
        let sandbox = Sandbox::new("badenv");
        let mut init = Init::start(&sandbox, Mode::Subreaper, &[(var, value)]);
        assert_eq!(init.wait_exit(), 2, "{var}={value}: {}", init.stderr());
        assert!(init.stderr().contains(var), "{var}: {}", init.stderr());
        assert_eq!(
            init.stderr().lines().count(),
            1,
            "one line: {}",
            init.stderr()
        );
        assert!(sandbox.events().is_empty(), "the engine must not start");
        assert!(!sandbox.config_path().exists());
    }
    let sandbox = Sandbox::new("badtimeout");
    let out = sandbox
        .command(&["add", "alpha"])
        .env("BTSYNC_APPLY_TIMEOUT", "forever")
        .output()
        .expect("add");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        !sandbox.folder("alpha").exists(),
        "bad input changes nothing"
    );
}

/// Issue 16, item 3: `BTSYNC_BIN=sleep` once ran /usr/bin/sleep from PATH
/// and crash-looped. Only an absolute path is accepted.
#[test]
fn btsync_bin_must_be_an_absolute_path() {
    let sandbox = Sandbox::new("relbin");
    let examples = stand_in_bin().parent().expect("examples dir").to_owned();
    let path = format!(
        "{}:{}",
        examples.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for bin in ["sleep", "stand-in-btsync", "examples/stand-in-btsync"] {
        let mut init = Init::start(
            &sandbox,
            Mode::Subreaper,
            &[("BTSYNC_BIN", bin), ("PATH", &path)],
        );
        assert_eq!(init.wait_exit(), 2, "{bin}: {}", init.stderr());
        let log = init.stderr();
        assert!(
            log.contains("BTSYNC_BIN") && log.contains("absolute") && log.lines().count() == 1,
            "{bin}: {log}"
        );
        assert!(
            sandbox.events().is_empty(),
            "{bin}: the engine must not start"
        );
    }
}

/// The uid and primary gid of `user` in this host's /etc/passwd.
fn passwd_ids(user: &str) -> (u32, u32) {
    let text = fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(user))
        .unwrap_or_else(|| panic!("{user} not in /etc/passwd"));
    let fields: Vec<&str> = line.split(':').collect();
    (
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    )
}

/// The first group name in this host's /etc/group with `gid`.
fn group_name(gid: u32) -> String {
    let text = fs::read_to_string("/etc/group").expect("/etc/group");
    text.lines()
        .find(|l| l.split(':').nth(2) == Some(&gid.to_string()))
        .and_then(|l| l.split(':').next())
        .expect("a group with that gid")
        .to_owned()
}

/// Issue 16, item 8: where /etc/passwd exists (the image ships one with
/// `btsync`), BTSYNC_UID takes a user name and BTSYNC_GID a group name;
/// a named user's group defaults to its primary group.
#[test]
fn btsync_uid_and_gid_accept_names_from_etc_passwd_and_group() {
    if !root_available("btsync_uid_and_gid_accept_names_from_etc_passwd_and_group") {
        return;
    }
    let (uid, gid) = passwd_ids("nobody");
    let sandbox = Sandbox::new("uidname");
    // Something to sync, or init idles and starts no engine.
    add(&sandbox, "shared");
    let mut init = Init::start_running(&sandbox, Mode::Pid1, &[("BTSYNC_UID", "nobody")]);
    let start = &sandbox.starts()[0];
    assert_eq!(
        (start["uid"].as_u64(), start["gid"].as_u64()),
        (Some(u64::from(uid)), Some(u64::from(gid))),
        "{}",
        sandbox.context()
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);

    let sandbox = Sandbox::new("gidname");
    add(&sandbox, "shared");
    let group = group_name(0);
    let mut init = Init::start_running(
        &sandbox,
        Mode::Pid1,
        &[("BTSYNC_UID", "nobody"), ("BTSYNC_GID", &group)],
    );
    let start = &sandbox.starts()[0];
    assert_eq!(start["uid"].as_u64(), Some(u64::from(uid)));
    assert_eq!(start["gid"].as_u64(), Some(0), "{}", sandbox.context());
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn engine_runs_unprivileged_with_btsync_uid_and_gid() {
    if !root_available("engine_runs_unprivileged_with_btsync_uid_and_gid") {
        return;
    }
    let sandbox = Sandbox::new("uid");
    add(&sandbox, "shared");
    fs::write(sandbox.folder("shared").join("old.txt"), b"from root").expect("write");
    let mut init = Init::start_running(
        &sandbox,
        Mode::Pid1,
        &[("BTSYNC_UID", "65534"), ("BTSYNC_GID", "65533")],
    );
    let start = &sandbox.starts()[0];
    assert_eq!(start["uid"], 65534, "{}", sandbox.context());
    assert_eq!(start["gid"], 65533);
    assert_eq!(
        start["folder_problems"],
        serde_json::json!([]),
        "the engine can write its folders"
    );
    for path in [
        sandbox.folder("shared"),
        sandbox.folder("shared").join("old.txt"),
        sandbox.data().join(".btsync/storage"),
        sandbox.config_path(),
    ] {
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (65534, 65533),
            "{}",
            path.display()
        );
    }
    // .btsync/ itself stays root's: the engine's group may only traverse
    // it, so the engine cannot rename or replace the registry, the lock,
    // the control socket or the trash kept there.
    let state = fs::metadata(sandbox.data().join(".btsync")).expect("stat");
    assert_eq!((state.uid(), state.gid()), (0, 65533));
    assert_eq!(state.permissions().mode() & 0o7777, 0o710);
    // A namespace added later is handed over too, and the applet's writes
    // leave .btsync/ traversable for the engine.
    add(&sandbox, "later");
    assert_eq!(
        fs::metadata(sandbox.folder("later")).expect("stat").uid(),
        65534
    );
    let state = fs::metadata(sandbox.data().join(".btsync")).expect("stat");
    assert_eq!(state.permissions().mode() & 0o7777, 0o710);
    assert_eq!(
        init.current_start()["folder_problems"],
        serde_json::json!([])
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

// ------------------------------------------------------------ status, health

#[test]
fn status_and_health_report_init_and_the_engine() {
    let sandbox = Sandbox::new("status");
    assert_eq!(
        sandbox.run(&["health"]).status.code(),
        Some(1),
        "no init yet"
    );
    assert_eq!(sandbox.run(&["status"]).status.code(), Some(1));
    add(&sandbox, "alpha");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    let out = sandbox.run(&["health"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status = init.status();
    assert_eq!(status["engine"]["state"], "running");
    assert_eq!(status["engine"]["pid"], sandbox.starts()[0]["pid"]);
    assert_eq!(status["engine"]["folders"], serde_json::json!(["alpha"]));
    assert_eq!(status["init"]["pid"], init.pid);
    assert_eq!(status["init"]["subreaper"], true);
    assert_eq!(status["restarts"], 0);
    assert!(status["last_exit"].is_null());
    let text = sandbox.run(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("running") && text.contains("alpha"), "{text}");
    assert!(
        text.contains("apply:    reload; 0 reloads, 0 fell back to a restart\n"),
        "{text}"
    );

    // A second init on the same data directory is refused.
    let mut second = sandbox
        .command(&["init"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("second init");
    let mut refused = None;
    wait_until(
        "the second init gave up",
        || {
            refused = second.try_wait().expect("try_wait");
            refused.is_some()
        },
        || sandbox.context(),
    );
    let second = second.wait_with_output().expect("second init output");
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another init"));

    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
    assert_eq!(
        sandbox.run(&["health"]).status.code(),
        Some(1),
        "init is gone"
    );
}

/// Issue 16, also settled: the text `status` has no trailing spaces, also
/// with no folders (it printed "folders:  0 ").
#[test]
fn status_text_has_no_trailing_spaces() {
    let sandbox = Sandbox::new("statustext");
    let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    let out = sandbox.run(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("folders:  0"), "{text}");
    for line in text.lines() {
        assert_eq!(line, line.trim_end(), "trailing space: {text:?}");
    }
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

// ------------------------------------------------------------------ idle

#[test]
fn fresh_node_is_idle_healthy_and_runs_no_engine() {
    let sandbox = Sandbox::new("idle");
    let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    let status = init.status();
    assert_eq!(status["engine"]["state"], "idle", "{status}");
    assert!(status["engine"]["pid"].is_null(), "{status}");
    assert_eq!(status["starts"], 0, "{status}");
    assert_eq!(status["crashes"], 0, "{status}");
    // No engine process was ever started.
    assert!(sandbox.events().is_empty(), "{}", sandbox.context());
    assert!(
        children_of(init.pid).is_empty(),
        "{:?}",
        children_of(init.pid)
    );
    let health = sandbox.run(&["health"]);
    assert_eq!(health.status.code(), Some(0), "{health:?}");
    let text = sandbox.run(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("engine:   idle"), "{text}");
    assert!(
        init.stderr().contains("nothing to sync"),
        "{}",
        init.stderr()
    );
    // Stopping an idle init is a clean stop.
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn first_add_starts_the_engine_at_once_and_the_last_del_stops_it() {
    let sandbox = Sandbox::new("idlecycle").config_file_mode();
    let init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    add(&sandbox, "alpha");
    // The add returned: the engine runs with alpha, and it is the first
    // engine ever started (no failed start, no backoff before it).
    let status = init.status();
    assert_eq!(status["engine"]["state"], "running", "{status}");
    assert_eq!(status["engine"]["folders"], serde_json::json!(["alpha"]));
    assert_eq!(status["starts"], 1, "{status}");
    assert_eq!(status["crashes"], 0, "{status}");
    assert!(status["last_exit"].is_null(), "{status}");
    assert_eq!(folders_of(&init.current_start()), ["alpha"]);

    add(&sandbox, "beta");
    fs::write(sandbox.folder("beta").join("data.txt"), b"precious").expect("write");
    let out = sandbox.run(&["del", "alpha"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(init.serving(), ["beta"]);

    // The last namespace: del returns once the engine has stopped, and
    // only then are the files gone.
    let out = sandbox.run(&["del", "beta"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!sandbox.folder("beta").exists());
    let status = init.status();
    assert_eq!(status["engine"]["state"], "idle", "{status}");
    assert!(status["engine"]["pid"].is_null(), "{status}");
    let starts = sandbox.starts().len();
    assert_eq!(
        sandbox.events_of("exit").len(),
        starts,
        "every engine exited\n{}",
        sandbox.context()
    );
    sandbox.assert_nothing_vanished();
    assert!(
        children_of(init.pid).is_empty(),
        "{:?}",
        children_of(init.pid)
    );
    assert_eq!(sandbox.run(&["health"]).status.code(), Some(0));

    // And back: the next add starts an engine again.
    add(&sandbox, "gamma");
    assert_eq!(init.status()["engine"]["state"], "running");
    assert_eq!(folders_of(&init.current_start()), ["gamma"]);
    assert_eq!(sandbox.starts().len(), starts + 1);
}

#[test]
fn a_change_during_a_crash_backoff_is_applied_at_once() {
    let sandbox = Sandbox::new("backoffchange");
    add(&sandbox, "base");
    let mut init = Init::start(
        &sandbox,
        Mode::Subreaper,
        &[("STAND_IN_EXIT_AT_START", "1")],
    );
    // Crashes at 0, 1, 3, 7 s: the next start would be 8 s after the last.
    init.wait_for_starts(4);
    wait_until(
        "init waits out the backoff after the 4th crash",
        || {
            let status = init.status();
            status["crashes"] == 4 && status["engine"]["state"] == "waiting"
        },
        || sandbox.context(),
    );
    // The engine crashes at every start, so it never serves `second`: the
    // add reports that (after its timeout), never success.
    let out = sandbox
        .command(&["add", "second"])
        .env("BTSYNC_APPLY_TIMEOUT", "5")
        .output()
        .expect("add");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has not picked it up within 5s"),
        "{out:?}"
    );
    let log = init.stderr();
    let now = log
        .find("registry changed: starting the engine now")
        .unwrap_or_else(|| panic!("the add did not cut the backoff short:\n{log}"));
    init.wait_for_starts(5);
    assert_eq!(
        folders_of(&sandbox.starts()[4]),
        ["base", "second"],
        "{}",
        sandbox.context()
    );
    // The delay was reset: that engine's crash is retried after 1 s.
    init.wait_for_starts(6);
    let log = init.stderr();
    assert!(log[now..].contains("restarting in 1s"), "{log}");

    // A del during the backoff too; the last one leaves init idle.
    for ns in ["base", "second"] {
        let out = sandbox.run(&["del", ns]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    init.wait_for_state("idle");
    let starts = sandbox.starts().len();
    assert_eq!(sandbox.run(&["health"]).status.code(), Some(0));
    assert_eq!(sandbox.starts().len(), starts, "no engine start when idle");
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn with_the_real_engine_init_idles_syncs_and_idles_again() {
    let test = "with_the_real_engine_init_idles_syncs_and_idles_again";
    let Some(btsync) = real_engine_bin(test) else {
        return;
    };
    let sandbox = Sandbox::new("realidle");
    let env = offline_engine_env(&btsync);
    let mut init = Init::start_idle(&sandbox, Mode::Pid1Offline, &env);
    assert_eq!(sandbox.run(&["health"]).status.code(), Some(0));
    assert!(children_of(init.pid).is_empty(), "no engine while idle");
    // init names the engine it runs, from its own --help.
    let status = init.status();
    assert_eq!(status["engine"]["name"], "BitTorrent Sync", "{status}");
    assert_eq!(status["engine"]["version"], "1.4.111", "{status}");
    assert_eq!(status["engine"]["proven"], true, "{status}");
    assert!(
        init.stderr().contains(&format!(
            "init: engine: BitTorrent Sync 1.4.111 ({btsync})\n"
        )),
        "{}",
        init.stderr()
    );

    let out = sandbox
        .command(&["add", "alpha"])
        .envs(env)
        .output()
        .expect("add");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status = init.status();
    assert_eq!(status["engine"]["state"], "running", "{status}");
    assert_eq!(status["crashes"], 0, "{status}");
    let id = sandbox.folder("alpha").join(".sync/ID");
    wait_until(
        "btsync serves alpha (.sync/ID, 20 bytes)",
        || fs::read(&id).is_ok_and(|b| b.len() == 20),
        || sandbox.context(),
    );
    fs::write(sandbox.folder("alpha").join("data.txt"), b"x").expect("write");

    let out = sandbox
        .command(&["del", "alpha"])
        .envs(env)
        .output()
        .expect("del");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!sandbox.folder("alpha").exists());
    let status = init.status();
    assert_eq!(status["engine"]["state"], "idle", "{status}");
    assert_eq!(
        status["last_exit"]["status"], 0,
        "btsync stopped on TERM: {status}"
    );
    assert!(children_of(init.pid).is_empty(), "the engine is gone");
    assert_eq!(sandbox.run(&["health"]).status.code(), Some(0));
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

// ------------------------------------------------------------------ reload

/// The database the engine keeps for `ns` (named by its `.sync/ID`), if
/// `pid` holds it open.
fn holds_database(sandbox: &Sandbox, pid: i64, ns: &str) -> bool {
    let Ok(id) = fs::read(sandbox.folder(ns).join(".sync/ID")) else {
        return false;
    };
    let name: String = id.iter().map(|b| format!("{b:02X}")).collect();
    let db = fs::canonicalize(sandbox.data().join(".btsync/storage"))
        .expect("storage")
        .join(format!("{name}.db"));
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| fd.ok())
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == db))
        })
        .unwrap_or(false)
}

#[test]
fn reload_applies_add_and_del_with_the_same_engine() {
    let sandbox = Sandbox::new("reload").config_file_mode();
    add(&sandbox, "alpha");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    let pid = init.status()["engine"]["pid"].clone();

    // add returns once the engine serves beta: .sync/ID and its database open.
    add(&sandbox, "beta");
    let host_pid = pid.as_i64().expect("pid");
    assert!(
        holds_database(&sandbox, host_pid, "beta"),
        "{}",
        sandbox.context()
    );
    let status = init.status();
    assert_eq!(status["engine"]["pid"], pid, "{status}");
    assert_eq!(status["apply"], "reload", "{status}");
    assert_eq!(status["reloads"], 1, "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(status["reloading"], false, "{status}");
    assert_eq!(init.serving(), ["alpha", "beta"]);
    assert_eq!(sandbox.starts().len(), 1, "{}", sandbox.context());

    // del: the files go only once the database is closed.
    for ns in ["alpha", "beta"] {
        fs::write(sandbox.folder(ns).join("data.txt"), b"precious").expect("write");
    }
    let out = sandbox.run(&["del", "alpha"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!sandbox.folder("alpha").exists());
    assert_eq!(init.serving(), ["beta"]);
    // --no-wait: init deletes the files itself, after the proof.
    add(&sandbox, "gamma");
    fs::write(sandbox.folder("gamma").join("data.txt"), b"precious").expect("write");
    let out = sandbox.run(&["del", "--no-wait", "gamma"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    wait_until(
        "init deleted the files of 'gamma'",
        || !sandbox.folder("gamma").exists(),
        || sandbox.context(),
    );
    assert_eq!(init.serving(), ["beta"]);
    let status = init.status();
    assert_eq!(status["engine"]["pid"], pid, "{status}");
    assert_eq!(status["reloads"], 4, "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(sandbox.starts().len(), 1, "{}", sandbox.context());
    assert!(
        sandbox.events_of("exit").is_empty(),
        "{}",
        sandbox.context()
    );
    sandbox.assert_nothing_vanished();

    // The last namespace stops the engine: btsync refuses a reload to a
    // config without folders.
    let out = sandbox.run(&["del", "beta"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!sandbox.folder("beta").exists());
    assert_eq!(init.status()["engine"]["state"], "idle");
    assert!(sandbox.events_of("reload_failed").is_empty());
    sandbox.assert_nothing_vanished();
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn burst_of_50_adds_costs_at_most_2_reloads_and_no_restart() {
    let sandbox = Sandbox::new("reloadburst").config_file_mode();
    add(&sandbox, "seed");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    add_concurrently(&sandbox, 50);
    assert_eq!(init.serving().len(), 51, "{}", sandbox.context());
    let status = init.status();
    let reloads = status["reloads"].as_u64().unwrap_or(0);
    assert!(
        (1..=2).contains(&reloads),
        "50 concurrent adds caused {reloads} reloads\n{}",
        sandbox.context()
    );
    assert_eq!(
        sandbox.events_of("reload").len() as u64,
        reloads,
        "{}",
        sandbox.context()
    );
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(sandbox.starts().len(), 1, "{}", sandbox.context());
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn an_engine_that_ignores_hup_is_restarted_and_the_changes_still_apply() {
    let sandbox = Sandbox::new("nohup").config_file_mode();
    add(&sandbox, "alpha");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[("STAND_IN_IGNORE_HUP", "1")]);
    let first = init.status()["engine"]["pid"].clone();
    add(&sandbox, "beta");
    let status = init.status();
    assert_ne!(status["engine"]["pid"], first, "{status}");
    assert_eq!(status["reloads"], 0, "{status}");
    assert_eq!(status["reload_fallbacks"], 1, "{status}");
    assert_eq!(status["restarts"], 1, "{status}");
    assert_eq!(folders_of(&init.current_start()), ["alpha", "beta"]);
    assert!(
        init.stderr().contains("no proof of the reload"),
        "{}",
        init.stderr()
    );
    assert_eq!(sandbox.events_of("hup_ignored").len(), 1);

    // A del falls back the same way; the files go after the engine exited.
    fs::write(sandbox.folder("alpha").join("data.txt"), b"precious").expect("write");
    let out = sandbox.run(&["del", "alpha"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!sandbox.folder("alpha").exists());
    assert_eq!(folders_of(&init.current_start()), ["beta"]);
    let status = init.status();
    assert_eq!(status["reload_fallbacks"], 2, "{status}");
    assert_eq!(status["restarts"], 2, "{status}");
    sandbox.assert_nothing_vanished();
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

/// An engine killed by HUP (1.4.111 dies of USR1 and USR2 that way) must not
/// be killed by every later change: the change it died of is applied by a
/// start, and later ones restart it without a HUP.
#[test]
fn an_engine_that_dies_of_hup_is_restarted_and_never_sent_hup_again() {
    let sandbox = Sandbox::new("hupkills").config_file_mode();
    add(&sandbox, "alpha");
    let mut init =
        Init::start_running(&sandbox, Mode::Subreaper, &[("STAND_IN_ON_HUP", "default")]);
    let first = init.status()["engine"]["pid"].clone();
    add(&sandbox, "beta");
    assert_eq!(folders_of(&init.current_start()), ["alpha", "beta"]);
    let status = init.status();
    assert_ne!(status["engine"]["pid"], first, "{status}");
    assert_eq!(status["engine"]["state"], "running", "{status}");
    assert_eq!(status["reloads"], 0, "{status}");
    assert_eq!(
        status["apply"], "restart (the engine does not survive HUP)",
        "{status}"
    );
    assert_eq!(status["last_exit"]["status"], 128 + SIGHUP, "{status}");
    assert_eq!(status["crashes"], 1, "{status}");
    assert!(
        init.stderr().contains("the engine does not survive HUP"),
        "{}",
        init.stderr()
    );
    let hups = |sandbox: &Sandbox| {
        sandbox
            .events_of("signal")
            .iter()
            .filter(|e| e["signal"] == "SIGHUP")
            .count()
    };
    assert_eq!(hups(&sandbox), 1, "{}", sandbox.context());

    // Later changes restart it (TERM, a clean stop), with no HUP.
    add(&sandbox, "gamma");
    fs::write(sandbox.folder("alpha").join("data.txt"), b"precious").expect("write");
    let out = sandbox.run(&["del", "alpha"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!sandbox.folder("alpha").exists());
    assert_eq!(folders_of(&init.current_start()), ["beta", "gamma"]);
    let status = init.status();
    assert_eq!(status["restarts"], 2, "{status}");
    assert_eq!(status["reloads"], 0, "{status}");
    assert_eq!(status["last_exit"]["status"], 0, "{status}");
    assert_eq!(hups(&sandbox), 1, "{}", sandbox.context());
    assert_eq!(sandbox.starts().len(), 4, "{}", sandbox.context());
    sandbox.assert_nothing_vanished();
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn btsync_apply_restart_forces_restarts() {
    let sandbox = Sandbox::new("applyrestart").config_file_mode();
    add(&sandbox, "alpha");
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[("BTSYNC_APPLY", "restart")]);
    add(&sandbox, "beta");
    let status = init.status();
    assert_eq!(status["apply"], "restart", "{status}");
    assert_eq!(status["restarts"], 1, "{status}");
    assert_eq!(status["reloads"], 0, "{status}");
    assert_eq!(folders_of(&init.current_start()), ["alpha", "beta"]);
    assert_eq!(sandbox.starts().len(), 2, "{}", sandbox.context());
    assert!(
        !sandbox
            .events_of("signal")
            .iter()
            .any(|e| e["signal"] == "SIGHUP"),
        "{}",
        sandbox.context()
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);

    let sandbox = Sandbox::new("applybad").config_file_mode();
    let out = Init::start(&sandbox, Mode::Subreaper, &[("BTSYNC_APPLY", "hup")]).wait_exit();
    assert_eq!(out, 2);
}

#[test]
fn engine_killed_in_the_middle_of_a_reload() {
    let sandbox = Sandbox::new("reloadkill").config_file_mode();
    for ns in ["keep", "victim"] {
        add(&sandbox, ns);
        fs::write(sandbox.folder(ns).join("data.txt"), b"precious").expect("write");
    }
    // The engine ignores HUP, so the reload stays in flight until it is killed.
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[("STAND_IN_IGNORE_HUP", "1")]);
    let pid = init.status()["engine"]["pid"].as_i64().expect("pid") as i32;
    let out = sandbox.run(&["del", "--no-wait", "victim"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        sandbox.run(&["add", "--no-wait", "fresh"]).status.code(),
        Some(0)
    );
    wait_until(
        "the engine got the HUP",
        || !sandbox.events_of("hup_ignored").is_empty(),
        || sandbox.context(),
    );
    // Nothing is deleted while the engine may still serve the folder.
    assert!(sandbox.folder("victim").join("data.txt").exists());
    assert_eq!(init.status()["reloading"], true);
    syncbox::sys::send_signal(pid, SIGKILL).expect("kill the engine");
    wait_until(
        "init deleted the files of 'victim'",
        || !sandbox.folder("victim").exists(),
        || sandbox.context(),
    );
    wait_until(
        "a new engine serves the registry",
        || {
            let status = init.status();
            status["engine"]["state"] == "running" && status["engine"]["pid"] != pid
        },
        || sandbox.context(),
    );
    assert_eq!(folders_of(&init.current_start()), ["fresh", "keep"]);
    assert!(sandbox.folder("keep").join("data.txt").exists());
    assert!(
        init.stderr().contains("exited during a reload"),
        "{}",
        init.stderr()
    );
    sandbox.assert_nothing_vanished();
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn with_the_real_engine_20_adds_and_20_dels_keep_the_same_engine() {
    let test = "with_the_real_engine_20_adds_and_20_dels_keep_the_same_engine";
    let Some(btsync) = real_engine_bin(test) else {
        return;
    };
    let sandbox = Sandbox::new("realreload").config_file_mode();
    let env = offline_engine_env(&btsync);
    let run = |args: &[&str]| {
        let out = sandbox.command(args).envs(env).output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    };
    let mut init = Init::start_idle(&sandbox, Mode::Pid1Offline, &env);
    // The first namespace starts the engine; the changes after it reload.
    run(&["add", "base"]);
    let pid = init.status()["engine"]["pid"].clone();
    // The engine's pid as seen from here (init runs in a PID namespace).
    let children = children_of(init.pid);
    assert_eq!(children.len(), 1, "{children:?}");
    let host_pid = i64::from(children[0].0);
    let names: Vec<String> = (0..20).map(|i| format!("ns-{i:02}")).collect();
    for ns in &names {
        run(&["add", ns]);
        // The proof init waited for, seen from here too.
        assert!(holds_database(&sandbox, host_pid, ns), "{}", init.stderr());
        fs::write(sandbox.folder(ns).join("data.txt"), b"x").expect("write");
    }
    for ns in &names {
        run(&["del", ns]);
        assert!(!sandbox.folder(ns).exists());
    }
    let status = init.status();
    assert_eq!(status["engine"]["pid"], pid, "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(status["reloads"], 40, "{status}");
    assert_eq!(status["reload_fallbacks"], 0, "{status}");
    assert_eq!(status["crashes"], 0, "{status}");
    assert_eq!(status["engine"]["folders"], serde_json::json!(["base"]));
    assert_eq!(children_of(init.pid).len(), 1, "still one engine");
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn init_killed_in_the_middle_of_a_reload_deletes_nothing_under_an_engine() {
    let sandbox = Sandbox::new("reloadinitkill").config_file_mode();
    for ns in ["keep", "victim"] {
        add(&sandbox, ns);
        fs::write(sandbox.folder(ns).join("data.txt"), b"precious").expect("write");
    }
    // The engine ignores HUP: the reload is still waiting for its proof.
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[("STAND_IN_IGNORE_HUP", "1")]);
    let engine = init.status()["engine"]["pid"].as_i64().expect("pid") as i32;
    let deleting = sandbox
        .command(&["del", "victim"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn del");
    wait_until(
        "the engine got the HUP",
        || !sandbox.events_of("hup_ignored").is_empty(),
        || sandbox.context(),
    );
    assert!(sandbox.folder("victim").join("data.txt").exists());
    init.signal(SIGKILL);
    let _ = init.child.wait();
    init.exited = Some(-1);
    wait_until(
        "the engine died with init",
        || !syncbox::sys::process_exists(engine),
        || sandbox.context(),
    );
    let out = deleting.wait_with_output().expect("del");
    // Either del finished on its own once no engine could see the folder,
    // or it failed and the files stay; never files gone under an engine.
    if out.status.code() == Some(0) {
        assert!(!sandbox.folder("victim").exists(), "{out:?}");
    } else {
        assert!(
            sandbox.folder("victim").join("data.txt").exists(),
            "a failed del deleted files: {out:?}"
        );
    }
    assert!(sandbox.folder("keep").join("data.txt").exists());
    sandbox.assert_nothing_vanished();
}

// ------------------------------------------------------- the host path

/// Runs `syncbox init` in a mount namespace of its own where `source` is
/// bind-mounted on the sandbox's data root, as `docker run -v` does.
fn init_on_bind_mount(sandbox: &Sandbox, source: &Path, host_path: &str) -> KillOnDrop {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$2" && exec "$3" init"#)
        .arg("sh")
        .arg(source)
        .arg(sandbox.data())
        .arg(syncbox_bin());
    sandbox.environment(&mut command);
    command.env("BTSYNC_HOST_PATH", host_path);
    let log = fs::File::create(sandbox.init_log_path()).expect("init log");
    command.stderr(log).stdout(Stdio::null());
    KillOnDrop(command.spawn().expect("start init in a mount namespace"))
}

/// A forgotten `-v` (no mount, or a docker volume where the host path
/// should be) is refused at init's start in one line, before anything is
/// written; the bind mount of the host path starts.
#[test]
fn init_refuses_a_host_path_the_data_root_is_not_a_bind_mount_of() {
    let test = "init_refuses_a_host_path_the_data_root_is_not_a_bind_mount_of";
    if !root_available(test) {
        return;
    }
    let sandbox = Sandbox::new("hostpath");
    let one_line_refusal = |stderr: String, shows: &str| {
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("BTSYNC_HOST_PATH=/mnt/resource/sync but")
                && stderr.contains("-v /mnt/resource/sync:")
                && stderr.contains(shows),
            "{stderr}"
        );
        assert!(
            !sandbox.data().join(".btsync").exists(),
            "nothing written before the refusal"
        );
        assert!(sandbox.starts().is_empty(), "no engine started");
    };

    // No mount at all: the data root lies on the root filesystem.
    let mut init = Init::start(
        &sandbox,
        Mode::Subreaper,
        &[("BTSYNC_HOST_PATH", "/mnt/resource/sync")],
    );
    assert_eq!(init.wait_exit(), 2);
    one_line_refusal(init.stderr(), "is not a mount of its own");
    drop(init);

    // A docker volume (anonymous or named) mounted where the host path should be.
    let volume = sandbox.root.join("volumes/3f2a/_data");
    fs::create_dir_all(&volume).expect("volume dir");
    let mut init = init_on_bind_mount(&sandbox, &volume, "/mnt/resource/sync");
    assert_eq!(init.exit_code(&sandbox), 2);
    one_line_refusal(
        fs::read_to_string(sandbox.init_log_path()).expect("log"),
        "volumes/3f2a/_data of its filesystem",
    );

    // The bind mount of the host path itself: init starts and serves.
    let host = sandbox.root.join("mnt/resource/sync");
    fs::create_dir_all(&host).expect("host dir");
    let host = fs::canonicalize(&host).expect("host path");
    let mut init = init_on_bind_mount(&sandbox, &host, host.to_str().expect("utf-8"));
    let status_of_host = || {
        sandbox
            .command(&["status", "--json"])
            .env("BTSYNC_DATA", &host)
            .output()
            .expect("status")
    };
    wait_until(
        "init on the bind mount answers status",
        || status_of_host().status.code() == Some(0),
        || sandbox.context(),
    );
    let on_host = |args: &[&str]| {
        sandbox
            .command(args)
            .env("BTSYNC_DATA", &host)
            .env("BTSYNC_HOST_PATH", &host)
            .output()
            .expect("syncbox")
    };
    let out = on_host(&["add", "alpha"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = on_host(&["path", "alpha"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        host.join("alpha").to_str().expect("utf-8"),
        "{out:?}"
    );
    syncbox::sys::send_signal(init.id() as i32, SIGTERM).expect("TERM");
    assert_eq!(init.exit_code(&sandbox), 0);
}

// ------------------------------------------------- proof that add worked

/// A registry written before keys were checked for a second use may list
/// two namespaces with one key (`pg` and `copy`): the engine serves one
/// folder per key, so it never serves `copy`.
fn plant_a_second_name_for_the_key_of(sandbox: &Sandbox, ns: &str, copy: &str) {
    let entries = sandbox.data().join(".btsync/namespaces");
    let entry = fs::read_to_string(entries.join(ns)).expect("entry");
    let planted = entry.replace(
        &format!("\"name\":\"{ns}\""),
        &format!("\"name\":\"{copy}\""),
    );
    assert_ne!(planted, entry, "the entry names its namespace: {entry}");
    fs::write(entries.join(copy), planted).expect("plant the entry");
    fs::create_dir(sandbox.folder(copy)).expect("its folder");
}

/// `add` exits 0 only once the engine is seen serving the folder: when the
/// engine never takes it (here: its key is another namespace's), `add`
/// fails with exit 1, by a restart and by a reload whose fallback restart
/// shows no proof either. The other namespace stays served.
#[test]
fn add_fails_when_the_engine_never_serves_the_folder() {
    for apply in ["restart", "reload"] {
        let sandbox = Sandbox::new(&format!("unserved-{apply}")).config_file_mode();
        let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[("BTSYNC_APPLY", apply)]);
        add(&sandbox, "pg");
        plant_a_second_name_for_the_key_of(&sandbox, "pg", "copy");
        let out = sandbox.run(&["add", "copy"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{apply}: {stderr}\n{}",
            sandbox.context()
        );
        assert!(
            stderr.contains("does not serve copy") && stderr.lines().count() == 1,
            "{apply}: {stderr}"
        );
        let status = init.status();
        assert_eq!(
            status["engine"]["folders"],
            serde_json::json!(["pg"]),
            "{status}"
        );
        assert_eq!(
            status["engine"]["not_served"],
            serde_json::json!(["copy"]),
            "{status}"
        );
        assert_eq!(init.serving(), ["pg"], "{apply}");
        assert!(
            init.stderr().contains("does not serve copy"),
            "{}",
            init.stderr()
        );
        // Asked again, it fails again rather than taking the config's word.
        let again = sandbox.run(&["add", "copy"]);
        assert_eq!(again.status.code(), Some(1), "{apply}: {again:?}");
        init.signal(SIGTERM);
        assert_eq!(init.wait_exit(), 0);
    }
}

/// The same with the real engine: 1.4.111 takes one folder per key.
#[test]
fn with_the_real_engine_add_fails_when_the_engine_never_serves_the_folder() {
    let test = "with_the_real_engine_add_fails_when_the_engine_never_serves_the_folder";
    let Some(btsync) = real_engine_bin(test) else {
        return;
    };
    let sandbox = Sandbox::new("realunserved");
    let env = offline_engine_env(&btsync);
    let mut init = Init::start_idle(&sandbox, Mode::Pid1Offline, &env);
    let out = sandbox
        .command(&["add", "pg"])
        .envs(env)
        .output()
        .expect("add");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    plant_a_second_name_for_the_key_of(&sandbox, "pg", "copy");
    let out = sandbox
        .command(&["add", "copy"])
        .envs(env)
        .output()
        .expect("add");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{}", init.stderr());
    assert!(stderr.contains("does not serve copy"), "{stderr}");
    assert!(
        !sandbox.folder("copy").join(".sync").exists(),
        "btsync never took the second folder of one key"
    );
    assert!(sandbox.folder("pg").join(".sync/ID").exists());
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

/// init says which engine it runs, and that an engine syncbox's tests do
/// not run is not proven: in its log at start and in `status`.
#[test]
fn init_names_the_engine_and_whether_tests_prove_it() {
    for (banner, name, version) in [
        (None, "BitTorrent Sync stand-in", "1.4.111"),
        (Some("Resilio Sync 2.7.3 (1381)"), "Resilio Sync", "2.7.3"),
    ] {
        let sandbox = Sandbox::new("engine-info");
        let sandbox = match banner {
            Some(banner) => sandbox.with_env("STAND_IN_BANNER", banner),
            None => sandbox,
        };
        let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
        let status = init.status();
        assert_eq!(status["engine"]["name"], name, "{status}");
        assert_eq!(status["engine"]["version"], version, "{status}");
        assert_eq!(status["engine"]["proven"], false, "{status}");
        let line = format!(
            "init: engine: {name} {version} ({}): not a version syncbox's tests run \
             (BitTorrent Sync 1.4.111); see docs/image.md",
            stand_in_bin().display()
        );
        assert!(init.stderr().contains(&line), "{}", init.stderr());
        let text = sandbox.run(&["status"]);
        let text = String::from_utf8_lossy(&text.stdout).into_owned();
        assert!(text.contains(&format!("{name} {version}")), "{text}");
        init.signal(SIGTERM);
        assert_eq!(init.wait_exit(), 0);
    }
}

/// As in a container (docker grants no CAP_SYS_PTRACE): init cannot read
/// the descriptors of an engine running as another user. The proof is the
/// lock the engine holds on each folder database (/proc/locks): `add` is
/// proven, and `del` deletes nothing while the engine still holds the
/// folder (here it ignores HUP, so only the restart lets go). Reading an
/// empty descriptor list as "let go" would delete the files under it.
#[test]
fn without_ptrace_the_proof_is_the_engines_database_lock() {
    let test = "without_ptrace_the_proof_is_the_engines_database_lock";
    if !root_available(test) {
        return;
    }
    let sandbox = Sandbox::new("noptrace");
    // Two namespaces: removing the last one would stop the engine instead.
    add(&sandbox, "base");
    add(&sandbox, "keep");
    let mut command = Command::new("setpriv");
    command
        .args(["--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace", "--"])
        .arg(syncbox_bin())
        .arg("init");
    sandbox.environment(&mut command);
    command.envs([
        ("BTSYNC_UID", "65534"),
        ("BTSYNC_GID", "65533"),
        ("STAND_IN_IGNORE_HUP", "1"),
    ]);
    let log = fs::File::create(sandbox.init_log_path()).expect("init log");
    let mut init = KillOnDrop(
        command
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .expect("start init without CAP_SYS_PTRACE"),
    );
    wait_until(
        "the engine runs",
        || sandbox.starts().len() == 1,
        || sandbox.context(),
    );
    let engine = sandbox.starts()[0]["pid"].as_i64().expect("pid");
    let fds = fs::read_dir(format!("/proc/{engine}/fd")).map(|fds| {
        fds.filter_map(|fd| fd.ok())
            .all(|fd| fs::read_link(fd.path()).is_ok())
    });
    // The test itself is root with every capability: it can read them.
    assert_eq!(fds.ok(), Some(true));
    let status = fs::read_to_string(format!("/proc/{}/status", init.id())).expect("status");
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("CapEff");
    const CAP_SYS_PTRACE: u32 = 19;
    assert_eq!(
        caps & (1 << CAP_SYS_PTRACE),
        0,
        "init runs without CAP_SYS_PTRACE"
    );

    // Proven by the lock after the fallback restart (HUP is ignored).
    let out = sandbox.run(&["add", "fresh"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", sandbox.context());
    fs::write(sandbox.folder("base").join("data.txt"), b"precious").expect("write");
    let out = sandbox.run(&["del", "base"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", sandbox.context());
    assert!(!sandbox.folder("base").exists());
    sandbox.assert_nothing_vanished();
    let log = fs::read_to_string(sandbox.init_log_path()).expect("log");
    assert!(
        log.contains("showed no proof of the reload"),
        "the engine ignored HUP, so the reload could not be proven: {log}"
    );
    syncbox::sys::send_signal(init.id() as i32, SIGTERM).expect("TERM");
    assert_eq!(init.exit_code(&sandbox), 0);
}

// ------------------------------------------------------- owners (issue 21)

/// init runs the engine with umask 077, and its keeper gives what "the
/// engine" (here: this test, root like the engine) writes into a namespace
/// with an owner to that owner, with the namespace's mode: new files,
/// downloads renamed into place, new folders, a file replaced by an update.
/// A link planted in the folder is given, never followed; a file that
/// belongs to someone else (the service) keeps its owner.
#[test]
fn the_keeper_gives_what_the_engine_writes_to_the_namespace_owner() {
    if !root_available("the_keeper_gives_what_the_engine_writes_to_the_namespace_owner") {
        return;
    }
    let sandbox = Sandbox::new("keeper");
    let out = sandbox.run(&["add", "--owner=4242:4343", "--umask=027", "pg"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    add(&sandbox, "plain");
    let init = Init::start_running(&sandbox, Mode::Pid1, &[]);
    let status = init.status();
    let engine_pid = status["engine"]["pid"].as_u64().expect("engine pid");
    let proc_status =
        fs::read_to_string(format!("/proc/{}/status", host_pid_of(&init, engine_pid)))
            .expect("engine status");
    assert!(
        proc_status.lines().any(|l| l == "Umask:\t0077"),
        "the engine's umask: {proc_status}"
    );
    wait_until(
        "the keeper watches pg",
        || init.status()["keeper"]["folders"] == 1,
        || format!("{}\n{}", init.status(), sandbox.context()),
    );

    let pg = sandbox.folder("pg");
    let outside = sandbox.data().join("../outside-keeper");
    fs::create_dir_all(&outside).expect("outside");
    fs::write(outside.join("secret"), "x").expect("outside file");
    fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o644)).expect("mode");
    // What the engine does: folders, files, a download renamed into place,
    // an executable, a link, and an update that replaces a file.
    fs::create_dir_all(pg.join("data/base/1")).expect("dirs");
    for i in 0..200 {
        fs::write(pg.join(format!("data/base/1/{i}")), "row").expect("file");
    }
    fs::write(pg.join("data/PG_VERSION.!sync"), "15").expect("download");
    fs::rename(pg.join("data/PG_VERSION.!sync"), pg.join("data/PG_VERSION")).expect("rename");
    // The engine sets a file's mode before it renames it into place.
    fs::write(pg.join("run.sh.!sync"), "#!/bin/sh").expect("exe");
    fs::set_permissions(pg.join("run.sh.!sync"), fs::Permissions::from_mode(0o755))
        .expect("exe mode");
    fs::rename(pg.join("run.sh.!sync"), pg.join("run.sh")).expect("rename");
    std::os::unix::fs::symlink(outside.join("secret"), pg.join("link")).expect("link");
    // The service's own file: owned by its user, never touched.
    fs::write(pg.join("data/service.conf"), "mine").expect("service file");
    std::os::unix::fs::chown(pg.join("data/service.conf"), Some(5000), Some(5000)).expect("chown");
    fs::set_permissions(
        pg.join("data/service.conf"),
        fs::Permissions::from_mode(0o644),
    )
    .expect("service mode");

    let owned = |p: &Path| fs::symlink_metadata(p).map(|m| (m.uid(), m.gid(), m.mode() & 0o7777));
    let all_kept = || {
        let mut paths = vec![pg.join("data/base"), pg.join("data/base/1")];
        paths.extend((0..200).map(|i| pg.join(format!("data/base/1/{i}"))));
        paths.push(pg.join("data/PG_VERSION"));
        let files_and_dirs = paths
            .iter()
            .all(|p| matches!(owned(p), Ok((4242, 4343, mode)) if mode == 0o750 || mode == 0o640));
        files_and_dirs
            && matches!(owned(&pg.join("run.sh")), Ok((4242, 4343, 0o750)))
            && matches!(owned(&pg.join("link")), Ok((4242, 4343, _)))
    };
    wait_until("the keeper gave everything to 4242:4343", all_kept, || {
        format!("{}\n{}", init.status()["keeper"], sandbox.context())
    });
    assert_eq!(owned(&pg.join("data/base/1/7")).expect("file").2, 0o640);
    assert_eq!(owned(&pg.join("data/base")).expect("dir").2, 0o750);
    // Nothing outside changed through the link; the service's file is its own.
    assert_eq!(
        owned(&outside.join("secret")).expect("outside"),
        (0, 0, 0o644)
    );
    assert_eq!(
        owned(&pg.join("data/service.conf")).expect("service"),
        (5000, 5000, 0o644)
    );

    // An update replaces a file (a new inode, the engine's again): given back.
    fs::write(pg.join("data/PG_VERSION.!sync"), "16").expect("update");
    fs::rename(pg.join("data/PG_VERSION.!sync"), pg.join("data/PG_VERSION")).expect("rename");
    wait_until(
        "the updated file is given back",
        || matches!(owned(&pg.join("data/PG_VERSION")), Ok((4242, 4343, 0o640))),
        || sandbox.context(),
    );
    let keeper = &init.status()["keeper"];
    assert_eq!(keeper["running"], true, "{keeper}");
    assert!(keeper["fixed"].as_u64().unwrap_or(0) >= 204, "{keeper}");

    // A namespace without an owner or umask is not watched: the engine's
    // umask already gives it 0600/0700, and a root file stays as it is.
    fs::write(sandbox.folder("plain").join("f"), "x").expect("plain file");
    fs::set_permissions(
        sandbox.folder("plain").join("f"),
        fs::Permissions::from_mode(0o644),
    )
    .expect("mode");
    assert_eq!(init.status()["keeper"]["folders"], 1);

    // Added again with another owner: init hands the keeper the new rule.
    let out = sandbox.run(&["add", "--owner=4444:4444", "pg"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // A file that arrives while the keeper takes the change up may get the
    // old owner; from when it says so, every file gets the new one.
    wait_until(
        "the keeper settled on the new owner",
        || init.status()["keeper"]["settled"] == true,
        || format!("{}\n{}", init.status()["keeper"], sandbox.context()),
    );
    fs::write(pg.join("data/after"), "x").expect("file after");
    wait_until(
        "a file after the change gets the new owner",
        || matches!(owned(&pg.join("data/after")), Ok((4444, 4444, 0o640))),
        || format!("{}\n{}", init.status()["keeper"], sandbox.context()),
    );
    let _ = fs::remove_dir_all(&outside);
}

/// The engine's pid as the host sees it: init runs in a PID namespace of
/// its own, where status reports the engine's pid inside it.
fn host_pid_of(init: &Init, inner: u64) -> i32 {
    let inner = i32::try_from(inner).expect("pid");
    children_of(init.pid)
        .into_iter()
        .map(|(pid, _, _)| pid)
        .find(|&pid| {
            fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .find(|l| l.starts_with("NSpid:"))
                    .and_then(|l| l.split_whitespace().last())
                    .and_then(|p| p.parse::<i32>().ok())
                    == Some(inner)
            })
        })
        .expect("the engine among init's children")
}
