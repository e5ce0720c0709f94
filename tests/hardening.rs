//! Issue 15: the ways a hostile engine, a slow client or a starved machine
//! could wedge init or make `del` delete under a running engine. Each test
//! here failed before its fix. Races are made exact with the debug-build
//! pause points (`SYNCBOX_PAUSE_AT`, src/faults.rs) instead of timing.

mod common;
#[path = "support/harness.rs"]
mod harness;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use harness::*;

/// A process held at a pause point, released on demand.
struct Paused {
    release: PathBuf,
}

impl Paused {
    fn file(sandbox: &Sandbox, label: &str) -> Paused {
        Paused {
            release: sandbox.root.join(format!("release-{label}")),
        }
    }

    fn env(&self, step: &str) -> [(String, PathBuf); 2] {
        [
            ("SYNCBOX_PAUSE_AT".into(), PathBuf::from(step)),
            ("SYNCBOX_PAUSE_FILE".into(), self.release.clone()),
        ]
    }

    fn wait_reached(&self, sandbox: &Sandbox) {
        let mut here = self.release.clone().into_os_string();
        here.push(".here");
        let here = PathBuf::from(here);
        wait_until(
            "the process reached its pause point",
            || here.exists(),
            || sandbox.context(),
        );
    }

    fn release(&self) {
        fs::write(&self.release, "go").expect("release the paused process");
    }
}

fn spawn(sandbox: &Sandbox, args: &[&str], env: &[(String, PathBuf)]) -> Child {
    let mut command = sandbox.command(args);
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn syncbox")
}

fn finish(child: Child, what: &str) -> std::process::Output {
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lock_is_free(data: &Path) -> bool {
    let file = File::open(data.join(".btsync/lock")).expect("open the registry lock");
    let free = file.try_lock().is_ok();
    if free {
        let _ = file.unlock();
    }
    free
}

// ------------------------------------------------- 5: no deleting under the lock

#[test]
fn sweeping_leftover_trash_does_not_hold_the_registry_lock() {
    let sandbox = Sandbox::new("sweep-unlocked");
    add(&sandbox, "keep");
    // Trash a crashed `del` left behind: a folder moved aside, its entry gone.
    let leftover = sandbox.data().join(".btsync/trash/gone.4242");
    fs::create_dir_all(leftover.join("deep")).expect("leftover trash");
    for i in 0..100 {
        fs::write(leftover.join(format!("deep/{i}")), "x").expect("file");
    }
    let paused = Paused::file(&sandbox, "sweep");
    let del = spawn(
        &sandbox,
        &["del", "never-added"],
        &paused.env("sweep: deleting"),
    );
    paused.wait_reached(&sandbox);
    let free = lock_is_free(&sandbox.data());
    paused.release();
    finish(del, "del never-added");
    assert!(
        free,
        "the registry lock was held while a tree was being deleted: every add/del waits for it"
    );
    let left: Vec<_> = fs::read_dir(sandbox.data().join(".btsync/trash"))
        .expect("trash")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the leftover trash was not deleted: {left:?}"
    );
    assert!(sandbox.folder("keep").is_dir());
}

// ------------------------------------------------- 3: one slow client blocks no one

/// A client that sends its request one byte every `every`, until the
/// connection is closed or `bytes` were sent. Returns when it was cut off.
fn trickle(
    socket: PathBuf,
    every: Duration,
    bytes: usize,
) -> std::thread::JoinHandle<Option<Duration>> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut stream = UnixStream::connect(&socket).ok()?;
        for _ in 0..bytes {
            if stream.write_all(b"s").is_err() {
                return Some(started.elapsed());
            }
            sleep(every);
        }
        // Sent everything without being cut off.
        None
    })
}

#[test]
fn a_slow_client_holds_back_neither_status_nor_add() {
    let sandbox = Sandbox::new("slow-client");
    // Idle (nothing to sync) is enough: this is about the control socket.
    let init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    let socket = sandbox.data().join(".btsync/control.sock");
    // Two clients trickling a byte every 1.5 s: each byte would restart a
    // per-byte timeout, so a one-at-a-time server would never get past them.
    let slow = [
        trickle(socket.clone(), Duration::from_millis(1500), 8),
        trickle(socket.clone(), Duration::from_millis(1500), 8),
    ];
    sleep(Duration::from_millis(300));
    for applet in ["health", "status"] {
        let out = sandbox.run(&[applet]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{applet} failed while a slow client was connected: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            sandbox.context()
        );
    }
    add(&sandbox, "beside-the-slow-one");
    assert!(
        init.status()["engine"]["folders"]
            .as_array()
            .is_some_and(|f| f.iter().any(|n| n == "beside-the-slow-one"))
    );
    for client in slow {
        let cut_off = client.join().expect("slow client");
        // 8 bytes at 1.5 s would take 12 s; the request deadline is total.
        assert!(
            cut_off.is_some(),
            "a client trickling its request was never cut off"
        );
    }
}

// ------------------------------------- 2: an answer about an older parking is stale

#[test]
fn a_stalled_del_never_deletes_under_an_engine_that_got_the_namespace_back() {
    stalled_del("restart");
}

#[test]
fn a_stalled_del_never_deletes_under_a_reloaded_engine_that_got_the_namespace_back() {
    stalled_del("reload");
}

/// The scenario under `BTSYNC_APPLY=apply`.
fn stalled_del(apply: &str) {
    // HUP reloads and restarts per change: config-file mode's own.
    let sandbox = Sandbox::new("stale-answer").config_file_mode();
    // A namespace that stays, so that dropping ns1 restarts (or reloads)
    // the engine rather than stopping it (init idles with nothing to sync).
    add(&sandbox, "base");
    // Each restart takes a while: the engine lingers 2 s after TERM.
    let mut init = Init::start_running(
        &sandbox,
        Mode::Subreaper,
        &[("STAND_IN_ON_TERM", "delay:2"), ("BTSYNC_APPLY", apply)],
    );
    add(&sandbox, "ns1");
    fs::write(sandbox.folder("ns1").join("data.txt"), "precious").expect("write");
    add(&sandbox, "other");

    // del #1 has init's answer (no engine holds ns1) and stalls before it
    // takes the lock.
    let paused = Paused::file(&sandbox, "del1");
    let first = spawn(&sandbox, &["del", "ns1"], &paused.env("del: init answered"));
    paused.wait_reached(&sandbox);
    // Meanwhile ns1 comes back (the engine restarts with it) and a second
    // del parks it again; that restart has not happened yet when del #1
    // wakes up.
    add(&sandbox, "ns1");
    assert!(init.serving().contains(&"ns1".to_owned()));
    let out = sandbox.run(&["del", "--no-wait", "ns1"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    paused.release();
    finish(first, "del #1");

    wait_until(
        "the files of ns1 are gone",
        || !sandbox.folder("ns1").exists(),
        || sandbox.context(),
    );
    // Once the engine that had ns1 back is gone, it has had every chance
    // to see its files vanish.
    wait_until(
        "an engine without ns1 runs",
        || init.status()["engine"]["folders"] == serde_json::json!(["base", "other"]),
        || sandbox.context(),
    );
    sandbox.assert_nothing_vanished();
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

// ------------------------------------- 1: a FIFO swapped into the registry

#[test]
fn a_fifo_swapped_over_a_registry_record_does_not_freeze_init() {
    let sandbox =
        Sandbox::new("fifo-swap").with_env("BTSYNC_CLUSTER_KEY", "correct horse battery staple");
    let init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    let registry = sandbox.data().join(".btsync/cluster");
    assert!(registry.is_dir(), "{}", sandbox.context());
    // What the engine's user can do in the registry it owns: rename a hard
    // link to a FIFO and one to a regular file over a record, in turn, so
    // that init's lstat sees a file and its open meets the FIFO. (Names
    // starting with '.' are not records: init skips the two sources.)
    let fifo = registry.join(".fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let file = registry.join(".file");
    fs::write(&file, "{}").expect("file");
    let record = registry.join("x@aaaaaaaaaaaaaaaa.json");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, registry) = (stop.clone(), registry.clone());
        std::thread::spawn(move || {
            let temp = registry.join(".swap");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for source in [&fifo, &file] {
                    let _ = fs::remove_file(&temp);
                    if fs::hard_link(source, &temp).is_ok() {
                        let _ = fs::rename(&temp, &record);
                    }
                }
            }
        })
    };
    // init polls the registry every second; give it several polls.
    let until = Instant::now() + Duration::from_secs(6);
    let mut answered = 0;
    while Instant::now() < until {
        let out = sandbox.run(&["health"]);
        if out.status.code() == Some(0) {
            answered += 1;
        } else {
            break;
        }
        sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = swapper.join();
    let out = sandbox.run(&["health"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "init stopped answering after {answered} health checks: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sandbox.context()
    );
    drop(init);
}

#[test]
fn an_oversized_or_unknown_request_gets_an_error_line() {
    let sandbox = Sandbox::new("bad-request");
    let _init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    let socket = sandbox.data().join(".btsync/control.sock");
    let ask = |request: &[u8]| {
        let mut stream = UnixStream::connect(&socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.write_all(request).expect("write");
        let mut reply = String::new();
        let _ = std::io::Read::read_to_string(&mut stream, &mut reply);
        reply
    };
    let mut long = vec![b'x'; 300];
    long.push(b'\n');
    assert_eq!(ask(&long), "error request too long\n");
    assert_eq!(ask(b"reboot\n"), "error unknown request\n");
    assert!(ask(b"status\n").starts_with('{'));
}
