//! busybox-style dispatch: argv[0], `syncbox APPLET`, `ctl APPLET`, the
//! multiplexer's own options.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::{APPLETS, Run, SYNCBOX, Sandbox};

fn syncbox(args: &[&str]) -> Run {
    Run::from(
        Command::new(SYNCBOX)
            .args(args)
            .output()
            .expect("run syncbox"),
    )
}

#[test]
fn list_prints_every_applet_one_per_line() {
    let run = syncbox(&["--list"]);
    run.ok();
    let names: Vec<&str> = run.stdout.lines().collect();
    for applet in APPLETS.iter().chain(&["ctl"]) {
        assert!(names.contains(applet), "{applet} missing from {names:?}");
    }
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
}

#[test]
fn help_and_version() {
    let help = syncbox(&["--help"]);
    help.ok();
    assert!(help.stdout.starts_with("Usage:"));
    for applet in APPLETS {
        assert!(help.stdout.contains(applet), "{applet} not in --help");
    }
    let version = syncbox(&["--version"]).ok().stdout.clone();
    let plain = format!("syncbox {}", env!("CARGO_PKG_VERSION"));
    // Built from this checkout, the binary names its commit (build.rs).
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    match head {
        Some(head) => {
            let commit = version
                .strip_prefix(&format!("{plain} (commit "))
                .and_then(|rest| rest.strip_suffix(")\n"))
                .unwrap_or_else(|| panic!("no commit in --version: {version:?}"));
            assert!(
                commit == head || commit == format!("{head}-dirty"),
                "--version names {commit}, HEAD is {head}"
            );
        }
        None => assert_eq!(version, format!("{plain}\n")),
    }

    let bare = syncbox(&[]);
    bare.code(2);
    assert!(bare.stdout.is_empty() && bare.stderr.contains("Usage:"));
    syncbox(&["--bogus"]).code(2).one_line_error();
}

#[test]
fn unknown_applets_exit_127() {
    let run = syncbox(&["frobnicate"]);
    run.code(127).one_line_error();
    assert_eq!(run.stderr, "frobnicate: applet not found\n");

    let sb = Sandbox::new();
    symlink(SYNCBOX, sb.bin.join("frobnicate")).unwrap();
    let run = Run::from(Command::new(sb.bin.join("frobnicate")).output().unwrap());
    run.code(127);
    assert_eq!(run.stderr, "frobnicate: applet not found\n");
}

#[test]
fn argv0_basename_and_login_dash_pick_the_applet() {
    let sb = Sandbox::new();
    for argv0 in ["has", "-has", "/some/where/has"] {
        let run = Run::from(
            Command::new(SYNCBOX)
                .arg0(argv0)
                .arg("gitlab")
                .env("BTSYNC_DATA", &sb.data)
                .output()
                .unwrap(),
        );
        run.code(1);
        assert!(
            run.stdout.is_empty() && run.stderr.is_empty(),
            "{argv0}: {run:?}"
        );
    }
}

#[test]
fn ctl_alone_or_unknown_prints_usage_and_exits_2() {
    let sb = Sandbox::new();
    let alone = sb.run("ctl", &[]);
    alone.code(2);
    assert!(
        alone.stdout.is_empty() && alone.stderr.starts_with("Usage: ctl"),
        "{alone:?}"
    );

    let unknown = sb.run("ctl", &["frob", "x"]);
    unknown.code(2);
    assert!(
        unknown.stderr.starts_with("ctl: unknown command \"frob\""),
        "{unknown:?}"
    );
    assert!(unknown.stderr.contains("Usage: ctl"));
    sb.run("ctl", &["ctl", "list"]).code(2);

    let help = sb.run("ctl", &["--help"]);
    help.ok();
    for applet in APPLETS {
        assert!(help.stdout.contains(applet));
    }
    assert!(sb.snapshot().is_empty());
}

#[test]
fn install_creates_links_idempotently_and_never_clobbers_files() {
    let sb = Sandbox::new();
    let dir = sb.root.join("install");
    fs::create_dir(&dir).unwrap();
    let target = fs::canonicalize(SYNCBOX).unwrap();

    syncbox(&["--install", dir.to_str().unwrap()]).ok();
    syncbox(&["--install", dir.to_str().unwrap()]).ok();
    for applet in APPLETS.iter().chain(&["ctl"]) {
        assert_eq!(fs::read_link(dir.join(applet)).unwrap(), target, "{applet}");
    }
    let run = Run::from(
        Command::new(dir.join("has"))
            .arg("x")
            .env("BTSYNC_DATA", &sb.data)
            .output()
            .unwrap(),
    );
    run.code(1);

    // A stale link is repointed; a regular file is left alone.
    fs::remove_file(dir.join("list")).unwrap();
    symlink("/nonexistent", dir.join("list")).unwrap();
    fs::remove_file(dir.join("del")).unwrap();
    fs::write(dir.join("del"), "mine").unwrap();
    let run = syncbox(&["--install", dir.to_str().unwrap()]);
    run.code(1).one_line_error();
    assert_eq!(fs::read_to_string(dir.join("del")).unwrap(), "mine");

    fs::remove_file(dir.join("del")).unwrap();
    syncbox(&["--install", dir.to_str().unwrap()]).ok();
    assert_eq!(fs::read_link(dir.join("list")).unwrap(), target);

    syncbox(&["--install"]).code(2).one_line_error();
    syncbox(&["--install", "/nonexistent/dir"])
        .code(1)
        .one_line_error();
}
