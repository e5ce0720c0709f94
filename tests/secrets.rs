//! Keys stay secret: one scenario with init running exercises every applet,
//! its errors and a damaged registry entry, records everything each command
//! printed and init's whole log, then
//!
//! - greps all of it for every key involved (given, generated, derived,
//!   read-only forms, the cluster key, rejected near-keys; upper and lower
//!   case, and any 12-character piece of each), allowing keys only on the
//!   standard output of `secret` and `keygen`;
//! - checks that everything syncbox keeps under `.btsync/` is private: the
//!   directory itself and its subdirectories 0700, the registry entries, the
//!   engine config, the locks and the socket 0600.
//!
//! The engine is the stand-in (tests/support/stand_in_engine.rs); its own
//! log is not syncbox's output and is not scanned.

mod common;
#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use harness::*;
use serde_json::Value;

/// One command's record in the scenario.
struct Ran {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Only these may print a key, and only on standard output.
    fn may_print_keys(&self) -> bool {
        matches!(
            self.args.first().map(String::as_str),
            Some("secret" | "keygen")
        )
    }
}

struct Scenario<'s> {
    sandbox: &'s Sandbox,
    cluster_key_file: String,
    ran: Vec<Ran>,
}

impl Scenario<'_> {
    fn run_with(&mut self, env: &[(&str, &str)], args: &[&str]) -> &Ran {
        let mut command = self.sandbox.command(args);
        for (var, value) in env {
            command.env(var, value);
        }
        let out = command.output().expect("run syncbox");
        self.ran.push(Ran {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
        self.ran.last().expect("just pushed")
    }

    fn run(&mut self, args: &[&str]) -> &Ran {
        self.run_with(&[], args)
    }

    fn clustered(&mut self, args: &[&str]) -> &Ran {
        let file = self.cluster_key_file.clone();
        self.run_with(&[("BTSYNC_CLUSTER_KEY_FILE", &file)], args)
    }

    #[track_caller]
    fn expect(&mut self, code: i32, args: &[&str]) -> String {
        let ran = self.run(args);
        assert_eq!(
            ran.code,
            Some(code),
            "{args:?}: {}{}",
            ran.stdout,
            ran.stderr
        );
        ran.stdout.trim().to_owned()
    }
}

/// The places in `text` where `key` shows, whole or in part.
fn leaks(text: &str, key: &str) -> Vec<String> {
    let upper = text.to_ascii_uppercase();
    let key = key.to_ascii_uppercase();
    let piece = 12.min(key.len());
    (0..=key.len() - piece)
        .map(|start| &key[start..start + piece])
        .filter(|window| upper.contains(*window))
        .map(str::to_owned)
        .collect()
}

fn secrets_in_json(text: &str, out: &mut BTreeSet<String>) {
    fn walk(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (field, inner) in map {
                    if field == "secret"
                        && let Some(key) = inner.as_str()
                    {
                        out.insert(key.to_owned());
                    }
                    walk(inner, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        walk(&value, out);
    }
}

#[test]
fn no_key_reaches_any_output_but_secret_and_keygen_and_state_is_private() {
    no_key_leaks_with_init_in("webui");
}

#[test]
fn no_key_leaks_with_init_in_config_file_mode_either() {
    no_key_leaks_with_init_in("config");
}

fn no_key_leaks_with_init_in(mode: &str) {
    let sandbox = Sandbox::new("secrets").with_env("BTSYNC_ENGINE_API", mode);
    let cluster_key_file = sandbox.root.join("cluster.key");
    let mut scenario = Scenario {
        sandbox: &sandbox,
        cluster_key_file: cluster_key_file.display().to_string(),
        ran: Vec::new(),
    };
    let mut keys: BTreeSet<String> = BTreeSet::new();

    let cluster_key = scenario.expect(0, &["keygen"]);
    fs::write(&cluster_key_file, format!("{cluster_key}\n")).expect("write the cluster key");
    fs::set_permissions(&cluster_key_file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let given = scenario.expect(0, &["keygen"]);
    let other = scenario.expect(0, &["keygen"]);
    let for_read_only = scenario.expect(0, &["keygen"]);
    let damaged_key = scenario.expect(0, &["keygen"]);
    keys.extend([
        cluster_key.clone(),
        given.clone(),
        other.clone(),
        for_read_only.clone(),
        damaged_key.clone(),
    ]);

    // Registered before init starts, and while it runs.
    scenario.expect(0, &["add", "--token", &given, "alpha"]);
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    scenario.expect(0, &["add", "beta"]);
    scenario.expect(
        0,
        &["add", &format!("--token={}", given.to_lowercase()), "alpha"],
    );
    scenario.expect(1, &["add", "--token", &other, "alpha"]);
    scenario.expect(
        0,
        &["add", "--read-only", "--secret", &for_read_only, "gamma"],
    );
    let ran = scenario.clustered(&["add", "delta"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let ran = scenario.clustered(&["add", "--read-only", "epsilon"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let ran = scenario.clustered(&["add", "--token", &other, "alpha"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let ran = scenario.clustered(&["add", "beta"]);
    assert_eq!(
        ran.code,
        Some(1),
        "cluster key vs generated: {}",
        ran.stderr
    );

    // Rejected keys that are nearly real: a typo, one character too many, two
    // too few, padding, a space inside. The error must not echo them.
    let typo = format!("{}1", &given[..given.len() - 1]);
    let too_long = format!("{given}A");
    // (32 characters would be a valid pre-1.2 key.)
    let too_short = given[..given.len() - 2].to_owned();
    let padded = format!("{given}=");
    let spaced = format!("{} {}", &given[..16], &given[16..]);
    for bad in [&typo, &too_long, &too_short, &padded, &spaced] {
        scenario.expect(2, &["add", "--token", bad, "zeta"]);
        scenario.expect(2, &["add", &format!("--secret={bad}"), "zeta"]);
        keys.insert(bad.clone());
    }
    scenario.expect(2, &["add", "--token", &given, "--secret", &given, "zeta"]);
    scenario.expect(2, &["add", "--token", &given, "Not/A/Name"]);
    let short_cluster = "fifteen-chars!!";
    let ran = scenario.run_with(&[("BTSYNC_CLUSTER_KEY", short_cluster)], &["add", "theta"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    keys.insert(short_cluster.to_owned());

    // Every reading applet, text and JSON.
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["status"],
        &["status", "--json"],
        &["health"],
        &["has", "alpha"],
        &["path", "--scope=container", "alpha"],
        &["alpha"],
        &["--help"],
    ] {
        scenario.run(args);
    }
    for ns in ["alpha", "beta", "gamma", "delta", "epsilon"] {
        let key = scenario.expect(0, &["secret", ns]);
        keys.insert(key);
        let read_only = scenario.expect(0, &["secret", "--read-only", ns]);
        keys.insert(read_only);
    }

    // A damaged entry holding a key that is not valid: the errors about it
    // must not quote the file.
    let damaged_entry = sandbox.data().join(".btsync/namespaces/damaged");
    let broken = format!("{damaged_key}X");
    fs::write(
        &damaged_entry,
        format!("{{\"name\":\"damaged\",\"secret\":\"{broken}\",\"origin\":\"given\"}}"),
    )
    .expect("write a damaged entry");
    fs::create_dir(sandbox.folder("damaged")).expect("its folder");
    keys.insert(broken);
    for args in [
        &["secret", "damaged"][..],
        &["secret", "--read-only", "damaged"],
        &["add", "damaged"],
        &["list", "--json"],
        &["add", "--no-wait", "iota"],
    ] {
        scenario.run(args);
    }
    scenario.run(&["del", "damaged"]);
    scenario.expect(0, &["del", "beta"]);
    scenario.expect(0, &["del", "--no-wait", "delta"]);

    // Private state, while everything exists (init running, a parked entry).
    let state = sandbox.data().join(".btsync");
    let mut checked = 0;
    let mut pending = vec![state.clone()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).expect("stat");
        let mode = meta.permissions().mode() & 0o7777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
        checked += 1;
        if meta.is_dir() && path != state.join("storage") {
            for item in fs::read_dir(&path).expect("list").flatten() {
                pending.push(item.path());
            }
        }
    }
    for must in ["namespaces/alpha", "btsync.conf", "control.sock", "lock"] {
        assert!(state.join(must).exists(), "{must} was not checked");
    }
    eprintln!("secrets: {checked} paths under .btsync are private");

    // Every key the registry and the engine hold is on the list.
    for entry in fs::read_dir(state.join("namespaces"))
        .expect("namespaces")
        .flatten()
    {
        secrets_in_json(
            &fs::read_to_string(entry.path()).unwrap_or_default(),
            &mut keys,
        );
    }
    secrets_in_json(
        &fs::read_to_string(sandbox.config_path()).expect("config"),
        &mut keys,
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
    let init_log = fs::read_to_string(sandbox.init_log_path()).expect("init log");

    // The detector finds keys where they are allowed: it would find a leak.
    let allowed: String = scenario
        .ran
        .iter()
        .filter(|r| r.may_print_keys())
        .map(|r| r.stdout.as_str())
        .collect();
    assert!(!leaks(&allowed, &given).is_empty(), "the detector is blind");

    let mut findings = Vec::new();
    let mut scanned = 0;
    for ran in &scenario.ran {
        let mut texts = vec![("stderr", &ran.stderr)];
        if !ran.may_print_keys() {
            texts.push(("stdout", &ran.stdout));
        }
        for (stream, text) in texts {
            scanned += text.len();
            for key in &keys {
                let found = leaks(text, key);
                if !found.is_empty() {
                    findings.push(format!("{:?} {stream}: {found:?} in {text:?}", ran.args));
                }
            }
        }
    }
    scanned += init_log.len();
    for key in &keys {
        let found = leaks(&init_log, key);
        if !found.is_empty() {
            findings.push(format!("init log: {found:?}"));
        }
    }
    assert_eq!(findings, Vec::<String>::new());
    assert!(
        init_log.contains("engine started")
            && init_log.contains(if mode == "webui" {
                "over its interface"
            } else {
                "reloading the engine"
            }),
        "the scenario exercised init: {init_log}"
    );
    let errors = scenario.ran.iter().filter(|r| r.code != Some(0)).count();
    eprintln!(
        "secrets: {} commands ({errors} failing) and init's log, {scanned} bytes, \
         scanned for {} keys: none found outside secret/keygen",
        scenario.ran.len(),
        keys.len()
    );
}
