//! Embeds the git commit the binary is built from, for `syncbox --version` and
//! the image's `org.opencontainers.image.revision` label (rootfs/build-image
//! reads it back from the binary, so the label names what is in the image).
//!
//! `SYNCBOX_BUILD_COMMIT` in the build environment wins (a build from a
//! source tarball, which has no .git, can still say where it came from). It is
//! not named SYNCBOX_COMMIT: `cargo test` and `cargo run` put the rustc-env
//! below into their programs' environment, and a build those programs start
//! (the docker tests run rootfs/build-image) must not take that stale value.
//! Otherwise `git rev-parse HEAD` in a checkout, with `-dirty` appended when
//! the files the binary is compiled from differ from that commit; otherwise
//! nothing, and `--version` prints the version alone.

use std::path::Path;
use std::process::Command;

/// What the binary is compiled from: a change to any of them outside a commit
/// makes the build `-dirty`. Tests and docs are not part of the binary.
const SOURCES: &[&str] = &["src", "applets", "build.rs", "Cargo.toml", "Cargo.lock"];

fn main() {
    println!("cargo:rerun-if-env-changed=SYNCBOX_BUILD_COMMIT");
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    let commit = match std::env::var("SYNCBOX_BUILD_COMMIT") {
        Ok(given) => Some(given.trim().to_owned()).filter(|c| !c.is_empty()),
        Err(_) => from_git(),
    };
    if let Some(commit) = commit {
        println!("cargo:rustc-env=SYNCBOX_COMMIT={commit}");
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn from_git() -> Option<String> {
    // Only this package's own checkout: a source tarball unpacked inside some
    // other repository must not take that repository's commit.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    if Path::new(&top).canonicalize().ok()? != Path::new(&here).canonicalize().ok()? {
        return None;
    }
    // A new commit or checkout moves HEAD or the branch it names; staging
    // changes the index. Each must refresh the embedded commit.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD", "index", "packed-refs"]
        .into_iter()
        .chain(branch.as_deref())
    {
        // A path that does not exist would make cargo rerun this every build.
        if let Some(file) = git(&["rev-parse", "--git-path", path])
            && Path::new(&file).exists()
        {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    let commit = git(&["rev-parse", "--verify", "HEAD"])?;
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend_from_slice(SOURCES);
    let dirty = git(&status).is_some_and(|changes| !changes.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}
