//! init under load and under faults, against the stand-in engine:
//!
//! - 100 concurrent `add`/`del` of a mix of names: afterwards the registry,
//!   the folders and the engine's config agree exactly with the expected set,
//!   no temporary file is left and the engine was restarted a bounded number
//!   of times (printed);
//! - `kill -9` of init at many points of a restart (and of the `add`/`del`
//!   waiting on it): the next command and the next init see a consistent
//!   state, nothing registered is lost and no engine outlives its init;
//! - an engine that dies at once: init stays up, backs off and uses little
//!   CPU over 30 s (printed).
//!
//! Deadlines only stop hangs; bounds on counts and CPU time are generous
//! statements of "batched" and "no hot loop", not speed goals (those are in
//! tests/bench/run.sh). Root-only tests (real PID 1 through `unshare`) fail
//! without root unless SYNCBOX_SKIP_ROOT_TESTS=1, like tests/init.rs.

mod common;
#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::Value;

/// Names of the shared folders in the engine config on disk.
fn config_folders(sandbox: &Sandbox) -> BTreeSet<String> {
    let text = fs::read_to_string(sandbox.config_path()).expect("read the engine config");
    let config: Value = serde_json::from_str(&text).expect("engine config is JSON");
    config["shared_folders"]
        .as_array()
        .expect("shared_folders")
        .iter()
        .map(|f| {
            let dir = Path::new(f["dir"].as_str().expect("dir"));
            assert_eq!(dir.parent(), Some(sandbox.data().as_path()), "{f}");
            dir.file_name()
                .expect("folder name")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn config_secret(sandbox: &Sandbox, ns: &str) -> Option<String> {
    let text = fs::read_to_string(sandbox.config_path()).ok()?;
    let config: Value = serde_json::from_str(&text).ok()?;
    let dir = sandbox.folder(ns);
    config["shared_folders"]
        .as_array()?
        .iter()
        .find(|f| f["dir"].as_str() == dir.to_str())
        .and_then(|f| f["secret"].as_str().map(str::to_owned))
}

fn listed(sandbox: &Sandbox) -> BTreeSet<String> {
    let out = sandbox.run(&["list"]);
    assert_eq!(out.status.code(), Some(0), "list: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Every directory entry under the data root that is not a namespace
/// folder or syncbox's state, and every temporary file anywhere in the state.
fn strays(sandbox: &Sandbox, expected: &BTreeSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    for item in fs::read_dir(sandbox.data()).expect("data root").flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        if name != ".btsync" && !expected.contains(&name) {
            found.push(name);
        }
    }
    let mut pending = vec![sandbox.data().join(".btsync")];
    while let Some(dir) = pending.pop() {
        if dir.ends_with("storage") {
            continue; // the engine's own state
        }
        for item in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp.") {
                found.push(item.path().display().to_string());
            }
            if item.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(item.path());
            }
        }
    }
    for leftovers in ["deleting", "trash"] {
        for item in fs::read_dir(sandbox.data().join(".btsync").join(leftovers))
            .into_iter()
            .flatten()
            .flatten()
        {
            found.push(item.path().display().to_string());
        }
    }
    found
}

/// Processes still alive (not zombies) running the stand-in engine with this
/// sandbox's config: an engine that outlived its init.
fn live_engines(sandbox: &Sandbox) -> Vec<i32> {
    let config = sandbox.config_path();
    let needle = config.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for pid in all_pids() {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_engine = args.iter().any(|a| a == "--nodaemon") && args.contains(&needle);
        if is_engine && proc_stat(pid).is_some_and(|s| s.0 != 'Z') {
            found.push(pid);
        }
    }
    found
}

fn finish(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().expect("wait for an applet");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{what}: {out:?}"
    );
    out
}

// -------------------------------------------------------------------- load

/// A fixed, deterministic key per name (base32 alphabet, `A` + 32).
fn key_for(ns: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ns.bytes() {
        state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut key = String::from("A");
    for _ in 0..32 {
        state ^= state >> 33;
        state = state.wrapping_mul(0xff51_afd7_ed55_8ccd);
        key.push(ALPHABET[(state % 32) as usize] as char);
    }
    key
}

#[test]
fn load_100_concurrent_adds_and_dels_leave_registry_folders_and_engine_in_agreement() {
    if !root_available(
        "load_100_concurrent_adds_and_dels_leave_registry_folders_and_engine_in_agreement",
    ) {
        return;
    }
    let sandbox = Sandbox::new("load").config_file_mode();
    let keep: Vec<String> = (0..10).map(|i| format!("keep-{i:02}")).collect();
    let gone: Vec<String> = (0..30).map(|i| format!("gone.{i:02}")).collect();
    for ns in keep.iter().chain(&gone) {
        add(&sandbox, ns);
        fs::write(sandbox.folder(ns).join("data.txt"), ns.as_bytes()).expect("write");
    }
    let mut init = Init::start_running(&sandbox, Mode::Pid1, &[]);

    // 100 operations, all started before the first returns:
    // 40 adds of new names (20 with a given key, 20 generated), 10 repeats
    // of those adds (same key: no change), 30 dels of registered names,
    // 10 dels of names never registered, 10 adds of names already there.
    let fresh: Vec<String> = (0..40).map(|i| format!("new_{i:02}")).collect();
    let mut operations: Vec<Vec<String>> = Vec::new();
    let add_args = |ns: &str, index: usize| -> Vec<String> {
        if index < 20 {
            vec!["add".into(), format!("--token={}", key_for(ns)), ns.into()]
        } else {
            vec!["add".into(), ns.into()]
        }
    };
    for (i, ns) in fresh.iter().enumerate() {
        operations.push(add_args(ns, i));
    }
    // Repeats of keyed adds only: two racing generated-key adds of one name
    // are a key conflict for the loser, by design.
    for (i, ns) in fresh.iter().enumerate().take(10) {
        operations.push(add_args(ns, i));
    }
    for ns in &gone {
        operations.push(vec!["del".into(), ns.clone()]);
    }
    for i in 0..10 {
        operations.push(vec!["del".into(), format!("never-{i}")]);
    }
    for ns in &keep {
        operations.push(vec!["add".into(), ns.clone()]);
    }
    assert_eq!(operations.len(), 100);
    // A fixed interleaving of adds and dels.
    let mut order: Vec<usize> = (0..operations.len()).collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..order.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let before = sandbox.starts().len();
    let running: Vec<(String, Child)> = order
        .iter()
        .map(|&i| {
            let args: Vec<&str> = operations[i].iter().map(String::as_str).collect();
            let child = sandbox
                .command(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn an applet");
            (args.join(" "), child)
        })
        .collect();
    for (what, child) in running {
        let out = finish(child, &what);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            sandbox.context()
        );
    }

    let expected: BTreeSet<String> = keep.iter().chain(&fresh).cloned().collect();
    assert_eq!(listed(&sandbox), expected, "the registry");
    assert_eq!(config_folders(&sandbox), expected, "the engine config");
    let running_folders: BTreeSet<String> = init.serving().into_iter().collect();
    assert_eq!(running_folders, expected, "the running engine");
    for ns in &expected {
        assert!(sandbox.folder(ns).is_dir(), "{ns} has no folder");
    }
    for ns in fresh.iter().take(20) {
        let out = sandbox.run(&["secret", ns]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), key_for(ns));
        assert_eq!(config_secret(&sandbox, ns), Some(key_for(ns)), "{ns}");
    }
    for ns in &keep {
        let data = fs::read_to_string(sandbox.folder(ns).join("data.txt")).expect("kept data");
        assert_eq!(&data, ns);
    }
    assert_eq!(strays(&sandbox, &expected), Vec::<String>::new());
    // Files of deleted namespaces went only after the engine let go.
    sandbox.assert_nothing_vanished();
    // Reload is the default: the changes reach the same engine.
    assert_eq!(sandbox.starts().len(), before, "{}", sandbox.context());
    let status = init.status();
    let reloads = sandbox.events_of("reload").len();
    eprintln!(
        "load: 100 concurrent add/del (70 changes) -> {reloads} engine reloads; init reports {} reloads, {} restarts",
        status["reloads"], status["restarts"]
    );
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(status["reloads"], reloads as u64, "{status}");
    // Unbatched, 70 changes would be 70 reloads; batching makes a handful.
    assert!(
        (1..=15).contains(&reloads),
        "{reloads} reloads\n{}",
        sandbox.context()
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

// ----------------------------------------------------- kill -9 of init

/// What an `add` or `del` killed along with init may answer: success, or a
/// one-line error saying init went away. Never a panic or a silent hang.
fn killed_midway(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(1) => assert!(
            stderr.lines().count() == 1 && stderr.contains("init"),
            "{what}: {stderr}"
        ),
        other => panic!("{what}: exit {other:?}: {stderr}"),
    }
}

#[test]
fn kill_9_of_init_at_any_point_of_a_restart_loses_nothing_and_leaves_no_engine() {
    if !root_available(
        "kill_9_of_init_at_any_point_of_a_restart_loses_nothing_and_leaves_no_engine",
    ) {
        return;
    }
    // Kill points anchored on what init is doing, not on the clock alone:
    // before and during the 250 ms quiet period, while the old engine takes
    // its 1 s to stop, and once the new engine has started.
    let points: [(&str, Anchor, u64); 7] = [
        ("at once", Anchor::Spawned, 0),
        ("in the quiet period", Anchor::Spawned, 100),
        ("as the restart begins", Anchor::Restarting, 0),
        ("while the engine stops", Anchor::Restarting, 300),
        ("late in the stop", Anchor::Restarting, 700),
        ("as the new engine starts", Anchor::NewEngine, 0),
        ("after the new engine started", Anchor::NewEngine, 200),
    ];
    let mut states_at_kill: std::collections::BTreeMap<String, u32> = Default::default();
    for (round, (mode, (point, anchor, delay))) in [Mode::Pid1, Mode::Subreaper]
        .into_iter()
        .flat_map(|mode| points.iter().map(move |p| (mode, p)))
        .enumerate()
    {
        let delay = *delay;
        let sandbox = Sandbox::new("kill9").config_file_mode();
        for ns in ["base-a", "base-b", "doomed"] {
            add(&sandbox, ns);
            fs::write(sandbox.folder(ns).join("data.txt"), b"precious").expect("write");
        }
        // A restart is what this test kills init in the middle of.
        let env = [("STAND_IN_ON_TERM", "delay:1"), ("BTSYNC_APPLY", "restart")];
        let mut init = Init::start_running(&sandbox, mode, &env);
        let starts_before = sandbox.starts().len();

        let adding = sandbox
            .command(&["add", "--token", &key_for("late"), "late"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn add");
        let deleting = sandbox
            .command(&["del", "doomed"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn del");
        let engine_state = || {
            let out = sandbox.run(&["status", "--json"]);
            serde_json::from_slice::<Value>(&out.stdout)
                .map(|s| s["engine"]["state"].as_str().unwrap_or("").to_owned())
                .unwrap_or_default()
        };
        match anchor {
            Anchor::Spawned => {}
            Anchor::Restarting => wait_until(
                "init restarts the engine",
                || engine_state() == "restarting",
                || sandbox.context(),
            ),
            Anchor::NewEngine => wait_until(
                "the new engine started",
                || sandbox.starts().len() > starts_before,
                || sandbox.context(),
            ),
        }
        sleep(Duration::from_millis(delay));
        let state = engine_state();
        init.signal(SIGKILL);
        let _ = init.child.wait();
        init.exited = Some(-1);
        *states_at_kill.entry(state.clone()).or_default() += 1;
        let context = format!(
            "round {round} ({mode:?}), kill {point} ({anchor:?} + {delay} ms), engine state then: {state:?}\n{}",
            sandbox.context()
        );
        wait_until(
            "no engine outlives the killed init",
            || live_engines(&sandbox).is_empty(),
            || context.clone(),
        );
        let added = finish(adding, "add late");
        killed_midway(&added, &format!("add late, {context}"));
        let deleted = finish(deleting, "del doomed");
        killed_midway(&deleted, &format!("del doomed, {context}"));

        // The next command sees a consistent state: everything registered
        // is there with its folder; a del that reported success is done, one
        // that did not kept the files.
        let registered = listed(&sandbox);
        for ns in ["base-a", "base-b", "late"] {
            assert!(registered.contains(ns), "{ns} lost: {context}");
            assert!(sandbox.folder(ns).is_dir(), "{ns} folder: {context}");
        }
        assert_eq!(
            String::from_utf8_lossy(&sandbox.run(&["secret", "late"]).stdout).trim(),
            key_for("late"),
            "{context}"
        );
        assert!(!registered.contains("doomed"), "{context}");
        if deleted.status.code() == Some(0) {
            assert!(!sandbox.folder("doomed").exists(), "{context}");
        } else {
            assert!(
                sandbox.folder("doomed").join("data.txt").exists(),
                "a del that failed deleted files: {context}"
            );
        }
        // The stale socket is noticed: with no init, del finishes the job.
        let out = sandbox.run(&["del", "doomed"]);
        assert_eq!(out.status.code(), Some(0), "{out:?} {context}");
        assert!(!sandbox.folder("doomed").exists(), "{context}");

        // The next init starts the engine with exactly the registry.
        let starts_so_far = sandbox.starts().len();
        let mut next = Init::start(&sandbox, Mode::Subreaper, &[]);
        next.wait_for_starts(starts_so_far + 1);
        let folders: BTreeSet<String> = folders_of(&next.current_start()).into_iter().collect();
        let expected: BTreeSet<String> = ["base-a", "base-b", "late"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(folders, expected, "{context}");
        assert_eq!(config_folders(&sandbox), expected, "{context}");
        assert_eq!(
            strays(&sandbox, &expected),
            Vec::<String>::new(),
            "{context}"
        );
        for ns in ["base-a", "base-b"] {
            assert!(
                sandbox.folder(ns).join("data.txt").exists(),
                "{ns}'s files: {context}"
            );
        }
        // No engine ever saw a file vanish: nothing was deleted under it.
        assert_eq!(
            sandbox.events_of("vanished"),
            Vec::<Value>::new(),
            "{context}"
        );
        next.signal(SIGTERM);
        assert_eq!(next.wait_exit(), 0, "{context}");
    }
    let kills: u32 = states_at_kill.values().sum();
    eprintln!(
        "kill -9 of init: {kills} kills around a restart, each recovered; engine state at the kill: {states_at_kill:?}"
    );
    assert!(
        states_at_kill.get("restarting").is_some_and(|n| *n >= 2),
        "too few kills landed mid-restart: {states_at_kill:?}"
    );
}

#[derive(Debug, Clone, Copy)]
enum Anchor {
    /// The add and the del were just started.
    Spawned,
    /// init reports the engine as restarting (TERM sent, not yet exited).
    Restarting,
    /// The engine started from the new config logged its start.
    NewEngine,
}

// ---------------------------------------------------- engine crash loop

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); after the comm, state is field 3.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / clock_ticks() as f64
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

#[test]
fn crash_looping_engine_leaves_init_up_backing_off_and_nearly_idle_for_30s() {
    let sandbox = Sandbox::new("crashloop");
    add(&sandbox, "alpha");
    let mut init = Init::start(
        &sandbox,
        Mode::Subreaper,
        &[("STAND_IN_EXIT_AT_START", "3")],
    );
    init.wait_for_starts(1);
    let cpu_at_start = cpu_seconds(init.pid);
    let started = Instant::now();
    let window = Duration::from_secs(30);
    while started.elapsed() < window {
        assert!(
            init.child.try_wait().expect("try_wait").is_none(),
            "init exited during the crash loop\n{}",
            sandbox.context()
        );
        sleep(Duration::from_millis(500));
    }
    let cpu_total = cpu_seconds(init.pid);
    let cpu = cpu_total - cpu_at_start;
    let starts = sandbox.starts().len();
    let status = init.status();
    eprintln!(
        "crash loop: init used {cpu:.3} s CPU over {:.1} s ({cpu_total:.3} s since it started; \
         /proc counts in {} ms ticks); {starts} engine starts, {} crashes",
        started.elapsed().as_secs_f64(),
        1000 / clock_ticks(),
        status["crashes"]
    );
    // Backoff 1, 2, 4, 8, 16 s: about 5 starts in 30 s; a hot loop would be
    // thousands. Both bounds are far from the expected values.
    assert!(
        (3..=8).contains(&starts),
        "{starts} starts\n{}",
        sandbox.context()
    );
    assert!(cpu < 1.0, "init used {cpu:.3} s of CPU in 30 s");
    assert_eq!(status["last_exit"]["status"], 3, "{status}");
    assert!(
        matches!(
            status["engine"]["state"].as_str(),
            Some("waiting" | "running")
        ),
        "{status}"
    );
    // Still answering and still stoppable.
    assert_eq!(sandbox.run(&["has", "alpha"]).status.code(), Some(0));
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 3);
}
