//! Crashes, full disks and foreign state: the registry stays consistent and
//! nothing registered is lost.
//!
//! Crashes use the debug-only fault-injection hook (`SYNCBOX_CRASH_AT=N`
//! aborts at the N-th write step, leaving the disk exactly as `kill -9`
//! would). The disk-full test mounts a tmpfs and so needs root; CI runs as
//! root, and the test fails (never skips) without it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{A_KEY, Run, Sandbox, Via};

const KEEP_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// A data root with two namespaces that must survive whatever happens next.
fn baseline() -> Sandbox {
    let sb = Sandbox::new();
    sb.run("add", &["--token", KEEP_KEY, "keep1"]).ok();
    sb.run("add", &["keep2"]).ok();
    fs::write(sb.folder("keep1").join("f"), "precious").unwrap();
    sb
}

fn crash_run(sb: &Sandbox, step: u32, applet: &str, args: &[&str]) -> Run {
    let mut cmd = sb.command(Via::Link, applet, args);
    cmd.env("SYNCBOX_CRASH_AT", step.to_string());
    Run::from(cmd.output().expect("run"))
}

/// The invariants that must hold in any state a crash can leave.
#[track_caller]
fn assert_consistent(sb: &Sandbox, keep2_key: &str, context: &str) {
    let listed = sb.run("list", &[]).ok().stdout.clone();
    for ns in listed.split_whitespace() {
        sb.run("has", &[ns]).ok();
        sb.run("secret", &[ns]).ok();
        assert!(
            sb.folder(ns).is_dir(),
            "{context}: {ns} registered without a folder"
        );
    }
    assert_eq!(
        sb.run("secret", &["keep1"]).ok().stdout.trim(),
        KEEP_KEY,
        "{context}"
    );
    assert_eq!(
        sb.run("secret", &["keep2"]).ok().stdout.trim(),
        keep2_key,
        "{context}"
    );
    assert_eq!(
        fs::read_to_string(sb.folder("keep1").join("f")).unwrap(),
        "precious"
    );
}

fn temp_files(sb: &Sandbox) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["namespaces", "deleting"] {
        if let Ok(listing) = fs::read_dir(sb.data.join(".btsync").join(dir)) {
            for item in listing.flatten() {
                let name = item.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp.") {
                    found.push(name);
                }
            }
        }
    }
    found
}

#[test]
fn a_crash_at_any_step_of_add_is_repaired_by_the_next_add() {
    let mut crashes = 0;
    for step in 1.. {
        let sb = baseline();
        let keep2 = sb.run("secret", &["keep2"]).ok().stdout.trim().to_owned();
        let run = crash_run(&sb, step, "add", &["--token", A_KEY, "gitlab"]);
        if run.code == 0 {
            break;
        }
        crashes += 1;
        assert!(run.stderr.contains("crash point"), "step {step}: {run:?}");
        let context = format!("add crashed at step {step}");
        assert_consistent(&sb, &keep2, &context);

        sb.run("add", &["--token", A_KEY, "gitlab"]).ok();
        assert_eq!(
            sb.run("secret", &["gitlab"]).ok().stdout.trim(),
            A_KEY,
            "{context}"
        );
        assert!(sb.folder("gitlab").is_dir(), "{context}");
        assert!(
            temp_files(&sb).is_empty(),
            "{context}: {:?}",
            temp_files(&sb)
        );
        assert_consistent(&sb, &keep2, &context);
    }
    eprintln!("add: crashed and recovered at {crashes} steps");
    assert!(crashes >= 6, "only {crashes} crash points in add");
}

#[test]
fn a_crash_at_any_step_of_del_is_completed_by_the_next_del_or_undone_by_add() {
    let mut crashes = 0;
    for step in 1.. {
        for then in ["del", "add"] {
            let sb = baseline();
            let keep2 = sb.run("secret", &["keep2"]).ok().stdout.trim().to_owned();
            sb.run("add", &["--token", A_KEY, "gitlab"]).ok();
            fs::write(sb.folder("gitlab").join("data"), "x").unwrap();
            let run = crash_run(&sb, step, "del", &["gitlab"]);
            if run.code == 0 {
                eprintln!(
                    "del: crashed at {} steps, each recovered by del and by add",
                    crashes / 2
                );
                assert!(crashes >= 8, "only {crashes} crash points in del");
                return;
            }
            crashes += 1;
            let context = format!("del crashed at step {step}, then {then}");
            assert!(run.stderr.contains("crash point"), "{context}: {run:?}");
            assert_consistent(&sb, &keep2, &context);
            // Until the parked entry is dropped, the deletion can be undone.
            let undoable = sb.run("has", &["gitlab"]).code == 0
                || sb.data.join(".btsync/deleting/gitlab").exists();

            sb.run(then, &["gitlab"]).ok();
            assert_consistent(&sb, &keep2, &context);
            let trash = sb.data.join(".btsync/trash");
            if then == "del" {
                sb.run("has", &["gitlab"]).code(1);
                assert!(!sb.folder("gitlab").exists(), "{context}");
                assert!(
                    !sb.data.join(".btsync/deleting/gitlab").exists(),
                    "{context}"
                );
                assert_eq!(
                    fs::read_dir(&trash).map(|d| d.count()).unwrap_or(0),
                    0,
                    "{context}"
                );
            } else {
                sb.run("has", &["gitlab"]).ok();
                let key = sb.run("secret", &["gitlab"]).ok().stdout.trim().to_owned();
                if undoable {
                    assert_eq!(key, A_KEY, "{context}: the key was not restored");
                    assert!(sb.folder("gitlab").join("data").exists(), "{context}");
                } else {
                    assert_ne!(key, A_KEY, "{context}: a finished del came back");
                }
                assert!(
                    !sb.data.join(".btsync/deleting/gitlab").exists(),
                    "{context}"
                );
            }
        }
    }
}

#[test]
fn add_on_a_full_disk_fails_clearly_and_changes_nothing() {
    assert_root("mounting a tmpfs");
    let sb = Sandbox::new();
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs"])
        .arg(&sb.data)
        .status()
        .expect("run mount");
    assert!(mount.success(), "mount tmpfs failed");
    let _unmount = Unmount(sb.data.clone());

    sb.run("add", &["--token", A_KEY, "before"]).ok();
    // Fill the file system to the last byte.
    let filler = sb.data.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let before = sb.snapshot();

    // A key of its own: one node syncs one folder per key.
    let after_key = "R3ZD4TMT6XDJQBW5V6LBVHZRSYOJSMLHQ";
    let run = sb.run("add", &["--token", after_key, "after"]);
    run.code(1).one_line_error();
    assert!(run.stderr.contains("No space left"), "{run:?}");
    assert!(!run.stderr.contains(after_key));
    assert_eq!(sb.snapshot(), before, "a failed add changed state");
    assert_eq!(sb.run("list", &[]).ok().stdout, "before\n");
    assert_eq!(sb.run("secret", &["before"]).ok().stdout.trim(), A_KEY);

    // Space again: the same add now works.
    fs::remove_file(&filler).unwrap();
    sb.run("add", &["--token", after_key, "after"]).ok();
    assert_eq!(sb.run("list", &[]).ok().stdout, "after before\n");
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn assert_root(why: &str) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "this test needs root ({why}); CI runs as root"
    );
}

#[test]
fn foreign_state_gives_clear_errors_and_never_a_panic() {
    let outside = Sandbox::new();
    fs::write(outside.data.join("victim"), "keep").unwrap();

    // .btsync replaced by a symlink pointing elsewhere.
    let sb = Sandbox::new();
    std::os::unix::fs::symlink(&outside.data, sb.data.join(".btsync")).unwrap();
    let run = sb.run("add", &["gitlab"]);
    run.code(1).one_line_error();
    assert!(run.stderr.contains(".btsync"), "{run:?}");
    sb.run("del", &["gitlab"]).code(1).one_line_error();
    assert_eq!(
        fs::read_to_string(outside.data.join("victim")).unwrap(),
        "keep"
    );

    // .btsync is a file.
    let sb = Sandbox::new();
    fs::write(sb.data.join(".btsync"), "junk").unwrap();
    sb.run("add", &["gitlab"]).code(1).one_line_error();
    sb.run("has", &["gitlab"]).code(1);

    // Too-open permissions are tightened by the next writer.
    let sb = Sandbox::new();
    sb.run("add", &["gitlab"]).ok();
    fs::set_permissions(sb.data.join(".btsync"), fs::Permissions::from_mode(0o755)).unwrap();
    sb.run("add", &["other"]).ok();
    let mode = fs::metadata(sb.data.join(".btsync"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);

    // Garbage and truncated registry files, and a directory where an entry goes.
    let sb = Sandbox::new();
    for ns in ["garbage", "truncated", "empty", "wrongname", "isdir"] {
        sb.run("add", &[ns]).ok();
    }
    fs::write(sb.entry("garbage"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    fs::write(
        sb.entry("truncated"),
        "{\"name\":\"truncated\",\"secret\":\"AHRAX",
    )
    .unwrap();
    fs::write(sb.entry("empty"), "").unwrap();
    fs::write(
        sb.entry("wrongname"),
        format!("{{\"name\":\"other\",\"secret\":\"{A_KEY}\",\"origin\":\"given\"}}"),
    )
    .unwrap();
    fs::remove_file(sb.entry("isdir")).unwrap();
    fs::create_dir(sb.entry("isdir")).unwrap();
    for ns in ["garbage", "truncated", "empty", "wrongname", "isdir"] {
        for (applet, args) in [
            ("secret", vec![ns]),
            ("add", vec![ns]),
            ("path", vec!["--scope=container", ns]),
        ] {
            let run = sb.run(applet, &args);
            assert!(!run.stderr.contains("panicked"), "{applet} {ns}: {run:?}");
            if applet != "path" {
                run.code(1).one_line_error();
            }
        }
        // Deleting a damaged entry is how the user repairs it.
        let run = sb.run("del", &[ns]);
        assert!(!run.stderr.contains("panicked"), "del {ns}: {run:?}");
    }
    let run = sb.run("list", &["--json"]);
    assert!(!run.stderr.contains("panicked"), "{run:?}");
}
