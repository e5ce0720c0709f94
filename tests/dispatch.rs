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
fn ctl_alone_prints_usage_and_exits_2() {
    let sb = Sandbox::new();
    let alone = sb.run("ctl", &[]);
    alone.code(2);
    assert!(
        alone.stdout.is_empty() && alone.stderr.starts_with("Usage: ctl"),
        "{alone:?}"
    );

    let help = sb.run("ctl", &["--help"]);
    help.ok();
    for applet in APPLETS {
        assert!(help.stdout.contains(applet));
    }
    assert!(sb.snapshot().is_empty());
}

/// Issue 16, item 5: `ctl APPLET` is the bare applet, so an unknown one is
/// what an unknown applet is everywhere (one line, 127), and `ctl
/// --version`/`--list` answer like `syncbox`'s.
#[test]
fn ctl_unknown_is_applet_not_found_and_ctl_answers_version_and_list() {
    let sb = Sandbox::new();
    let unknown = sb.run("ctl", &["frob", "x"]);
    unknown.code(127).one_line_error();
    assert_eq!(unknown.stderr, "frob: applet not found\n");
    // `ctl ctl list` is `syncbox ctl list`: ctl is in the --list.
    assert_eq!(sb.run("ctl", &["ctl", "list"]).ok().stdout, "");

    for option in ["--version", "--list"] {
        let via_ctl = sb.run("ctl", &[option]);
        via_ctl.ok();
        assert_eq!(via_ctl.stdout, syncbox(&[option]).ok().stdout, "{option}");
    }
    sb.run("ctl", &["--bogus"]).code(2).one_line_error();
    assert!(sb.snapshot().is_empty());
}

/// Issue 16, also settled: extra arguments after `--version`, `--list` or
/// `--help` are refused, not ignored; only one leading `-` of argv[0] (the
/// one login shells add) is dropped, so a link named `--list` is no applet.
#[test]
fn multiplexer_options_take_no_arguments_and_argv0_loses_one_dash() {
    let sb = Sandbox::new();
    for option in ["--version", "--list", "--help"] {
        let run = syncbox(&[option, "extra"]);
        run.code(2).one_line_error();
        assert!(run.stderr.contains(option), "{run:?}");
        sb.run("ctl", &[option, "extra"]).code(2).one_line_error();
    }
    for argv0 in ["--list", "--has"] {
        let run = Run::from(
            Command::new(SYNCBOX)
                .arg0(argv0)
                .arg("gitlab")
                .env("BTSYNC_DATA", &sb.data)
                .output()
                .unwrap(),
        );
        run.code(127).one_line_error();
        assert_eq!(
            run.stderr,
            format!("{}: applet not found\n", &argv0[1..]),
            "{argv0}"
        );
    }
}

/// Issue 16, item 6: `--install` goes through every applet: regular files
/// are left alone and each is reported, and stale links after them are
/// still repaired; exit 1 at the end.
#[test]
fn install_repairs_every_link_and_reports_each_file() {
    let sb = Sandbox::new();
    let dir = sb.root.join("install");
    fs::create_dir(&dir).unwrap();
    let target = fs::canonicalize(SYNCBOX).unwrap();
    fs::write(dir.join("del"), "mine").unwrap();
    fs::write(dir.join("has"), "mine too").unwrap();
    for stale in ["list", "path", "secret"] {
        symlink("/nonexistent", dir.join(stale)).unwrap();
    }

    let run = syncbox(&["--install", dir.to_str().unwrap()]);
    run.code(1);
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(
        run.stderr.lines().count(),
        2,
        "one line per refusal: {run:?}"
    );
    assert!(
        run.stderr.contains("install/del") && run.stderr.contains("install/has"),
        "{run:?}"
    );
    assert_eq!(fs::read_to_string(dir.join("del")).unwrap(), "mine");
    assert_eq!(fs::read_to_string(dir.join("has")).unwrap(), "mine too");
    for repaired in ["list", "path", "secret", "ctl", "status"] {
        assert_eq!(
            fs::read_link(dir.join(repaired)).unwrap(),
            target,
            "{repaired}"
        );
    }
}

/// Issue 16, item 7: links that already resolve to this binary (a relative
/// `add -> syncbox` beside it, as the image has) are left as they are.
#[test]
fn install_leaves_links_that_resolve_to_the_binary_alone() {
    let sb = Sandbox::new();
    let dir = sb.root.join("install");
    fs::create_dir(&dir).unwrap();
    symlink(SYNCBOX, dir.join("syncbox")).unwrap();
    symlink("syncbox", dir.join("add")).unwrap();
    syncbox(&["--install", dir.to_str().unwrap()]).ok();
    assert_eq!(
        fs::read_link(dir.join("add")).unwrap(),
        std::path::Path::new("syncbox"),
        "a link that resolves to the binary is left alone"
    );
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
