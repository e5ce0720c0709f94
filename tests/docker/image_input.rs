//! rootfs/build-image's input and labels: the vendor tarball taken as it is,
//! every engine it must refuse, the OCI labels and the engine's version label,
//! and which toolchain built the image's syncbox.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::support::*;

/// rootfs/build-image with `args` then `engine`, staging in a directory of the
/// scope; the tag (removed with the scope) and the context directory too.
fn build(scope: &Scope, what: &str, args: &[&str], engine: &Path) -> (Output, String, PathBuf) {
    let tag = scope.image_tag(what);
    let context = scope.dir(&format!("context-{what}"));
    let mut cmd = Command::new(Path::new(REPO).join("rootfs/build-image"));
    cmd.arg("--tag")
        .arg(&tag)
        .arg("--context")
        .arg(&context)
        .args(args)
        .arg(engine)
        .env_remove("LD_LIBRARY_PATH");
    let out = run_with_deadline(&mut cmd, Duration::from_secs(900));
    (out, tag, context)
}

fn tarball(dir: &Path, name: &str, members: &[(&str, &Path)]) -> PathBuf {
    let staging = dir.join(format!("{name}.d"));
    for (member, source) in members {
        let target = staging.join(member);
        fs::create_dir_all(target.parent().expect("member has a parent")).expect("mkdir");
        fs::copy(source, &target).expect("copy a tarball member");
    }
    let path = dir.join(name);
    let out = Command::new("tar")
        .arg("-czf")
        .arg(&path)
        .arg("-C")
        .arg(&staging)
        .args(members.iter().map(|(member, _)| *member))
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar: {}", text(&out.stderr));
    path
}

/// A 64-byte ELF64 header and nothing else: enough for build-image to read
/// the class and machine from.
fn elf_header(class: u8, machine: u16) -> Vec<u8> {
    let mut header = vec![0x7f, b'E', b'L', b'F', class, 1, 1, 0];
    header.resize(16, 0);
    header.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    header.extend_from_slice(&machine.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    header.resize(64, 0);
    header
}

fn executable(path: &Path, bytes: &[u8]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, bytes).expect("write a fixture");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod a fixture");
    path.to_owned()
}

/// The labels of `image`, from `docker image inspect`.
fn labels(image: &str) -> serde_json::Value {
    let inspect: serde_json::Value =
        serde_json::from_str(&docker_ok(&["image", "inspect", image])).expect("inspect JSON");
    inspect[0]["Config"]["Labels"].clone()
}

/// `git rev-parse HEAD` of this checkout, if it is one.
fn checkout_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--verify", "HEAD"])
        .current_dir(REPO)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_owned())
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn build_refuses_an_engine_it_cannot_use_in_one_line_and_builds_nothing() {
    let scope = Scope::new("refusals");
    let dir = scope.dir("fixtures");
    let engine = probe("dynamic", &[]);
    let aarch64 = executable(&dir.join("aarch64"), &elf_header(2, 183));
    let i386 = executable(&dir.join("i386"), &elf_header(1, 3));
    let script = executable(
        &dir.join("script"),
        b"#!/bin/sh\necho BitTorrent Sync 9.9\n",
    );
    let readme = dir.join("README");
    fs::write(&readme, "not an engine\n").expect("write README");
    let junk = dir.join("junk.tgz");
    fs::write(&junk, "not gzip\n").expect("write junk.tgz");
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "both",
            tarball(
                &dir,
                "both.tar.gz",
                &[("rslsync", &engine), ("btsync", &engine)],
            ),
            "holds more than one engine (rslsync btsync)",
        ),
        (
            "none",
            tarball(&dir, "none.tar.gz", &[("README", &readme)]),
            "holds neither rslsync nor btsync",
        ),
        ("not-elf", script.clone(), "is not an ELF executable"),
        (
            "not-elf-in-tarball",
            tarball(&dir, "script.tgz", &[("btsync", &script)]),
            "btsync is not an ELF executable",
        ),
        (
            "aarch64",
            aarch64.clone(),
            "is built for aarch64 (arm64), not x86-64",
        ),
        (
            "aarch64-in-tarball",
            tarball(&dir, "arm64.tar.gz", &[("rslsync", &aarch64)]),
            "rslsync is built for aarch64 (arm64), not x86-64",
        ),
        ("i386", i386, "is built for 32-bit x86 (i386), not x86-64"),
        ("junk", junk, "not a gzip-compressed tar archive"),
        ("missing", dir.join("no-such-file"), "not a readable file"),
    ];
    for (what, engine, message) in cases {
        let (out, tag, _) = build(&scope, what, &[], &engine);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line, got {stderr}");
        assert!(
            stderr.starts_with("build-image: error: ") && stderr.contains(message),
            "{what}: expected {message:?} in {stderr:?}"
        );
        assert!(out.stdout.is_empty(), "{what}: {}", text(&out.stdout));
        assert!(
            !docker(&["image", "inspect", &tag]).status.success(),
            "{what}: an image {tag} was built"
        );
    }
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn image_from_a_vendor_style_tarball_carries_its_engine_and_the_labels() {
    let scope = Scope::new("tarball");
    let dir = scope.dir("fixtures");
    let license = dir.join("LICENSE.TXT");
    fs::write(&license, "terms\n").expect("write LICENSE.TXT");
    // Resilio Sync's tarball layout: rslsync and the licence at the top.
    let engine = probe("dynamic", &[]);
    let package = tarball(
        &dir,
        "resilio-sync_x64.tar.gz",
        &[("rslsync", &engine), ("LICENSE.TXT", &license)],
    );
    let (out, image, context) = build(&scope, "tarball", &[], &package);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "build-image: {stderr}");
    assert_eq!(text(&out.stdout).trim(), image);

    // The tarball's rslsync is the image's /bin/btsync; its licence stays out.
    let run = scope.run_once(&[], &image, "/bin/btsync", &["from-the-tarball"]);
    assert_eq!(text(&run.stdout), "probe ok from-the-tarball\n");
    let files = image_files(&scope, &image);
    assert!(files.contains_key("bin/btsync"), "{files:?}");
    assert!(
        !files
            .keys()
            .any(|f| f.contains("LICENSE") || f.contains("rslsync")),
        "{files:?}"
    );

    // Which toolchain built syncbox, and its size, as the image holds it.
    let size_line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("build-image: syncbox: "))
        .unwrap_or_else(|| panic!("no syncbox size line: {stderr}"));
    let (bytes, toolchain) = size_line
        .split_once(" bytes, built with ")
        .unwrap_or_else(|| panic!("odd size line: {size_line}"));
    let staged = fs::metadata(context.join("rootfs/bin/syncbox")).expect("staged syncbox");
    assert_eq!(bytes.parse::<u64>().ok(), Some(staged.len()), "{size_line}");
    let nightly = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .is_ok_and(|out| text(&out.stdout).lines().any(|l| l.starts_with("nightly-")));
    assert_eq!(
        toolchain.starts_with("nightly"),
        nightly,
        "nightly installed: {nightly}; {size_line}"
    );

    let labels = labels(&image);
    let label = |key: &str| labels[key].as_str().map(str::to_owned);
    let oci = |key: &str| label(&format!("org.opencontainers.image.{key}"));
    assert_eq!(oci("title").as_deref(), Some("syncbox"), "{labels}");
    assert_eq!(
        oci("version").as_deref(),
        Some(env!("CARGO_PKG_VERSION")),
        "{labels}"
    );
    assert_eq!(
        oci("description").as_deref(),
        Some(env!("CARGO_PKG_DESCRIPTION")),
        "{labels}"
    );
    assert_eq!(
        oci("licenses").as_deref(),
        Some(env!("CARGO_PKG_LICENSE")),
        "{labels}"
    );
    // The revision is the commit the image's syncbox names.
    let version = scope.run_once(&[], &image, "/bin/syncbox", &["--version"]);
    let version = text(&version.stdout);
    match checkout_commit() {
        Some(head) => {
            let revision = oci("revision").unwrap_or_else(|| panic!("no revision: {labels}"));
            assert!(
                revision == head || revision == format!("{head}-dirty"),
                "revision {revision}, HEAD {head}"
            );
            assert_eq!(
                version,
                format!(
                    "syncbox {} (commit {revision})\n",
                    env!("CARGO_PKG_VERSION")
                )
            );
        }
        None => assert_eq!(oci("revision"), None, "{labels}"),
    }
    let origin = Command::new("git")
        .args(["config", "--get", "remote.origin.url"])
        .current_dir(REPO)
        .output()
        .ok()
        .map(|out| text(&out.stdout).trim().to_owned())
        .filter(|url| !url.is_empty());
    let source = Some(env!("CARGO_PKG_REPOSITORY"))
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .or(origin);
    assert_eq!(oci("source"), source, "{labels}");
    // The probe's --help prints no name and version: no guess is labelled.
    assert_eq!(
        label("syncbox.engine").as_deref(),
        Some("unknown"),
        "{labels}"
    );
}

/// The real vendor tarballs (tests/real-engine checks their sums).
fn vendor_tarball(version: &str) -> PathBuf {
    let engines = std::env::var_os("SYNCBOX_ENGINES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join("../shared/engines"));
    let tarball = engines.join(format!("btsync_x64-{version}.tar.gz"));
    assert!(
        tarball.is_file(),
        "{} is missing: tests/docker/run skips real_btsync_* only without it",
        tarball.display()
    );
    tarball
}

#[test]
#[ignore = "needs docker and the vendor tarballs in ../shared/engines: tests/docker/run"]
fn real_btsync_image_from_the_vendor_tarball_is_labelled_with_the_engine_version() {
    let scope = Scope::new("vendor");
    let (out, image, _) = build(&scope, "vendor", &[], &vendor_tarball("1.4.111"));
    assert!(out.status.success(), "build-image: {}", text(&out.stderr));
    assert_eq!(
        labels(&image)["syncbox.engine"],
        "BitTorrent Sync 1.4.111",
        "{}",
        text(&out.stderr)
    );
    // The same words the engine in the image prints, with no network.
    let help = scope.run_once(&[], &image, "/bin/btsync", &["--help"]);
    assert_eq!(
        text(&help.stdout).lines().next(),
        Some("BitTorrent Sync 1.4.111")
    );

    // The older package, staged only: its label is in the context's Dockerfile.
    let (out, _, context) = build(
        &scope,
        "older",
        &["--context-only"],
        &vendor_tarball("1.3.106"),
    );
    assert!(out.status.success(), "build-image: {}", text(&out.stderr));
    let dockerfile =
        fs::read_to_string(context.join("Dockerfile.scratch")).expect("staged Dockerfile");
    assert!(
        dockerfile.contains("syncbox.engine=\"BitTorrent Sync 1.3.106\""),
        "{dockerfile}"
    );
}
