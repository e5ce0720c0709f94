//! A stand-in for the btsync engine, for syncbox's tests only (never
//! shipped). It honours the contract init relies on:
//!
//! - refuses to start without `--nodaemon --config FILE` (btsync would
//!   daemonize and init would lose it);
//! - parses the config and checks it like btsync: `storage_path` and every
//!   folder's `dir` exist, every `secret` is a well-formed key;
//! - creates `.sync/` in each folder, as btsync does;
//! - records every start, signal and exit as JSON lines in `$STAND_IN_LOG`
//!   (default: `storage/stand-in.log` beside the config: like the real engine it
//!   may only write in its storage, not in the directory that holds its config);
//! - reports `vanished` when a file of a configured folder disappears while
//!   it runs: the real engine would propagate that deletion to every peer.
//!
//! Behaviour for tests, from the environment:
//! - `STAND_IN_EXIT_AT_START=N`: exit with N right after starting (a crash);
//! - `STAND_IN_ON_TERM`: what TERM/INT do: `exit:N` (default `exit:0`),
//!   `default` (die by the signal), `ignore`, `delay:SECS` (exit 0 later);
//! - `STAND_IN_ORPHANS=N` and `STAND_IN_ORPHANS_RELEASE=FILE`: leave N
//!   orphaned grandchildren that exit once FILE exists.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use signal_hook::consts::signal::*;
use signal_hook::iterator::Signals;

const WATCHED: &[i32] = &[
    SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH, SIGCONT,
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--orphan-maker") => orphan_maker(&args[1..]),
        Some("--sleeper") => sleeper(&args[1..]),
        _ => engine(&args),
    }
}

struct Log {
    path: PathBuf,
}

impl Log {
    fn record(&self, mut event: Value) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        event["t"] = json!(now);
        event["pid"] = json!(std::process::id());
        // One write per line with O_APPEND: lines from several processes never mix.
        if let Ok(mut file) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = file.write_all(format!("{event}\n").as_bytes());
        }
    }
}

fn refuse(log: Option<&Log>, message: &str) -> ! {
    eprintln!("stand-in-btsync: {message}");
    if let Some(log) = log {
        log.record(json!({"event": "refused", "reason": message}));
    }
    std::process::exit(1);
}

fn engine(args: &[String]) {
    let nodaemon = args.iter().any(|a| a == "--nodaemon");
    let config_path = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let log_path = std::env::var_os("STAND_IN_LOG")
        .map(PathBuf::from)
        .or_else(|| {
            config_path
                .as_ref()
                .and_then(|c| c.parent().map(|d| d.join("storage").join("stand-in.log")))
        });
    let log = log_path.map(|path| Log { path });
    let log = log.as_ref();
    let (Some(config_path), true) = (config_path, nodaemon) else {
        refuse(
            log,
            "usage: btsync --nodaemon --config FILE (refusing to daemonize)",
        );
    };
    let text = fs::read_to_string(&config_path)
        .unwrap_or_else(|e| refuse(log, &format!("cannot read {}: {e}", config_path.display())));
    let config: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| refuse(log, &format!("config is not JSON: {e}")));
    let storage = config["storage_path"].as_str().unwrap_or("");
    if !Path::new(storage).is_dir() {
        refuse(log, "Storage path specified in config file does not exist.");
    }
    let mut dirs = Vec::new();
    for folder in config["shared_folders"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let dir = folder["dir"].as_str().unwrap_or("");
        if !Path::new(dir).is_dir() {
            refuse(log, &format!("shared folder {dir:?} does not exist"));
        }
        if !valid_secret(folder["secret"].as_str().unwrap_or("")) {
            refuse(log, &format!("invalid secret for {dir:?}"));
        }
        dirs.push(PathBuf::from(dir));
    }

    // Installed before anything can signal us, as the real engine does.
    let mut signals = Signals::new(WATCHED).unwrap_or_else(|e| refuse(log, &e.to_string()));
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    let mut problems = Vec::new();
    for dir in &dirs {
        let sync_dir = dir.join(".sync");
        match fs::create_dir_all(&sync_dir).and_then(|()| fs::write(sync_dir.join("ID"), b"id")) {
            Ok(()) => {}
            Err(e) => problems.push(format!("{}: {e}", dir.display())),
        }
        watched.insert(dir.clone());
        for item in fs::read_dir(dir).into_iter().flatten().flatten() {
            watched.insert(item.path());
        }
    }
    let names: Vec<String> = dirs
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let (uid, gid) = ids();
    if let Some(log) = log {
        log.record(json!({
            "event": "start",
            "folders": names,
            "uid": uid,
            "gid": gid,
            "device_name": config["device_name"],
            "listening_port": config["listening_port"],
            "folder_problems": problems,
        }));
    }
    let finish = |code: i32| -> ! {
        if let Some(log) = log {
            log.record(json!({"event": "exit", "code": code}));
        }
        std::process::exit(code);
    };
    if let Some(code) = env_number("STAND_IN_EXIT_AT_START") {
        finish(code as i32);
    }
    if let Some(count) = env_number("STAND_IN_ORPHANS") {
        let release = std::env::var("STAND_IN_ORPHANS_RELEASE").unwrap_or_default();
        let exe = std::env::current_exe().unwrap_or_else(|e| refuse(log, &e.to_string()));
        let made = Command::new(exe)
            .arg("--orphan-maker")
            .arg(count.to_string())
            .arg(release)
            .stdin(Stdio::null())
            .status();
        if let Some(log) = log {
            log.record(json!({"event": "orphans", "count": count, "maker": format!("{made:?}")}));
        }
    }

    let on_term = std::env::var("STAND_IN_ON_TERM").unwrap_or_else(|_| "exit:0".into());
    let mut exit_at: Option<Instant> = None;
    let mut vanished: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        for signal in signals.pending() {
            let name = signal_hook::low_level::signal_name(signal).unwrap_or("?");
            if let Some(log) = log {
                log.record(json!({"event": "signal", "signal": name}));
            }
            if signal != SIGTERM && signal != SIGINT {
                continue;
            }
            if let Some(code) = on_term.strip_prefix("exit:") {
                finish(code.parse().unwrap_or(0));
            } else if on_term == "default" {
                if let Some(log) = log {
                    log.record(json!({"event": "dying", "signal": name}));
                }
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            } else if let Some(secs) = on_term.strip_prefix("delay:") {
                let delay = secs.parse::<f64>().unwrap_or(1.0);
                exit_at.get_or_insert(Instant::now() + Duration::from_secs_f64(delay));
            }
            // "ignore": carry on.
        }
        if exit_at.is_some_and(|at| Instant::now() >= at) {
            finish(0);
        }
        for path in &watched {
            if !vanished.contains(path) && fs::symlink_metadata(path).is_err() {
                if let Some(log) = log {
                    log.record(json!({"event": "vanished", "path": path}));
                }
                vanished.insert(path.clone());
            }
        }
        sleep(Duration::from_millis(20));
    }
}

/// btsync keys: base32 (A-Z 2-7); a type letter and 32 characters, an E
/// key of 59, or 32 characters without a type letter.
fn valid_secret(secret: &str) -> bool {
    let base32 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    };
    match secret.len() {
        32 => base32(secret),
        33 => "ABCDFR".contains(&secret[..1]) && base32(secret),
        59 => secret.starts_with('E') && base32(secret),
        _ => false,
    }
}

fn ids() -> (u32, u32) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    (field("Uid:"), field("Gid:"))
}

fn env_number(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

/// Start `count` sleepers and exit at once without waiting for them, so
/// they are orphaned and re-parented to the nearest reaper (init).
fn orphan_maker(args: &[String]) {
    let count: u32 = args.first().and_then(|c| c.parse().ok()).unwrap_or(0);
    let release = args.get(1).cloned().unwrap_or_default();
    let Ok(exe) = std::env::current_exe() else {
        std::process::exit(1);
    };
    for _ in 0..count {
        let _ = Command::new(&exe)
            .arg("--sleeper")
            .arg(&release)
            .stdin(Stdio::null())
            .spawn();
    }
}

/// Wait (at most two minutes) until the release file exists, then exit.
fn sleeper(args: &[String]) {
    let release = PathBuf::from(args.first().cloned().unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !release.exists() && Instant::now() < deadline {
        sleep(Duration::from_millis(20));
    }
}
