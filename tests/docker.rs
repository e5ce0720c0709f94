//! The FROM-scratch image, built by rootfs/build-image and exercised with a real
//! docker engine.
//!
//! These tests need docker (and root, to look at engine processes through
//! /proc), so plain `cargo test` lists them as ignored; `.ci/run` runs them
//! through tests/docker/run with `--include-ignored`, and there a missing
//! docker fails them loudly. Every container, network, image and directory a
//! test creates carries a unique name and is removed when the test ends, also
//! when it fails.

// Shared with the engine end-to-end tests; each target uses part of it.
#[allow(dead_code)]
#[path = "docker/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use support::*;

/// The files the image holds besides btsync's libraries: the list in
/// issue 4 and the README, checked exactly.
fn expected_files(applets: &BTreeSet<String>, libraries: &[String]) -> BTreeSet<String> {
    let mut files: BTreeSet<String> = [
        "bin",
        "bin/syncbox",
        "bin/btsync",
        "data",
        "etc",
        "etc/group",
        "etc/nsswitch.conf",
        "etc/passwd",
        "tmp",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    files.extend(applets.iter().map(|a| format!("bin/{a}")));
    for library in libraries {
        let mut path = Path::new(library.trim_start_matches('/'));
        files.insert(path.to_string_lossy().into_owned());
        while let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            files.insert(parent.to_string_lossy().into_owned());
            path = parent;
        }
    }
    files
}

fn run_in(image: &str, entrypoint: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        entrypoint,
        image,
    ];
    all.extend_from_slice(args);
    docker(&all)
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn image_from_a_dynamic_btsync_holds_exactly_syncbox_btsync_and_its_libraries() {
    let scope = Scope::new("dynamic");
    let btsync = probe("dynamic", &[]);
    let libraries = ldd_paths(&btsync);
    assert!(
        libraries.iter().any(|l| l.ends_with("/libc.so.6")),
        "the probe should be dynamically linked against glibc: {libraries:?}"
    );
    let image = scope.build_image("dynamic", &btsync);

    let applets = applets(&image);
    for core in ["add", "ctl", "del", "has", "list", "path", "secret"] {
        assert!(
            applets.contains(core),
            "{core} missing from --list: {applets:?}"
        );
    }
    let files = image_files(&scope, &image);
    let actual: BTreeSet<String> = files.keys().cloned().collect();
    let expected = expected_files(&applets, &libraries);
    assert_eq!(
        actual,
        expected,
        "\nunexpected in the image: {:?}\nmissing from the image: {:?}",
        actual.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&actual).collect::<Vec<_>>()
    );

    for applet in &applets {
        let entry = &files[&format!("bin/{applet}")];
        assert_eq!(
            entry.link.as_deref(),
            Some("syncbox"),
            "bin/{applet}: {entry:?}"
        );
    }
    for (path, entry) in &files {
        assert_eq!(
            entry.owner, "0/0",
            "{path} should belong to root: {entry:?}"
        );
    }
    assert_eq!(files["tmp"].mode, "drwxrwxrwt");
    assert_eq!(files["data"].mode, "drwxr-xr-x");
    assert_eq!(files["bin/syncbox"].mode, "-rwxr-xr-x");
    assert_eq!(files["bin/btsync"].mode, "-rwxr-xr-x");
    assert_eq!(files["etc/passwd"].mode, "-rw-r--r--");

    // The image's own loader runs btsync from the collected libraries, as root
    // and as the unprivileged uid BTSYNC_UID=1000 selects.
    let out = run_in(&image, "/bin/btsync", &["hello"]);
    assert!(
        out.status.success(),
        "btsync in the image: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "probe ok hello\n");
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "1000:1000",
        "--entrypoint",
        "/bin/btsync",
        &image,
        "as-1000",
    ]);
    assert!(
        out.status.success(),
        "btsync as uid 1000: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "probe ok as-1000\n");

    let size: u64 = docker_ok(&["image", "inspect", "-f", "{{.Size}}", &image])
        .trim()
        .parse()
        .expect("image size");
    let btsync_and_libraries: u64 = std::iter::once(btsync.to_string_lossy().into_owned())
        .chain(libraries.iter().cloned())
        .map(|p| fs::metadata(&p).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "image size {size} bytes; btsync and its libraries {btsync_and_libraries} bytes; \
         the rest (syncbox, links, /etc) {} bytes",
        size - btsync_and_libraries
    );
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn image_config_has_init_entrypoint_volume_ports_healthcheck_and_env() {
    let scope = Scope::new("config");
    let image = scope.build_image("config", &probe("dynamic", &[]));
    let inspect: serde_json::Value =
        serde_json::from_str(&docker_ok(&["image", "inspect", &image])).expect("inspect JSON");
    let config = &inspect[0]["Config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/init"]));
    assert_eq!(config["Cmd"], serde_json::Value::Null);
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/bin/health"])
    );
    assert!(config["Volumes"]["/data"].is_object(), "{config}");
    assert!(config["ExposedPorts"]["55555/tcp"].is_object(), "{config}");
    assert!(config["ExposedPorts"]["55555/udp"].is_object(), "{config}");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for var in [
        "PATH=/bin",
        "BTSYNC_DATA=/data",
        "BTSYNC_BIN=/bin/btsync",
        "BTSYNC_LISTEN_PORT=55555",
    ] {
        assert!(env.contains(&var), "{var} not in the image's Env: {env:?}");
    }
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn image_has_no_shell_and_the_applets_work_through_docker() {
    let scope = Scope::new("applets");
    let image = scope.build_image("applets", &probe("dynamic", &[]));

    for shell in ["sh", "/bin/sh", "bash"] {
        let out = run_in(&image, shell, &["-c", "true"]);
        assert!(!out.status.success(), "{shell} ran in the image");
    }

    // Bare applets through --entrypoint, on the image's own (empty) /data.
    let out = run_in(&image, "/bin/has", &["gitlab"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "has gitlab: {}",
        text(&out.stderr)
    );
    let out = run_in(&image, "/bin/has", &["../etc"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "has ../etc: {}",
        text(&out.stderr)
    );
    let out = run_in(&image, "/bin/ctl", &["list"]);
    assert!(out.status.success(), "ctl list: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "");
    let out = run_in(&image, "/bin/syncbox", &["nosuchapplet"]);
    assert_eq!(out.status.code(), Some(127));

    // A running container, bind-mounted data, `docker exec` through PATH:
    // the registry-only path the applets take when no init is listening.
    let data = scope.dir("data");
    let container = scope.container("node");
    let volume = format!("{}:/data", data.display());
    let host_path = format!("BTSYNC_HOST_PATH={}", data.display());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &container,
        "--network",
        "none",
        "-v",
        &volume,
        "-e",
        &host_path,
        "--entrypoint",
        "/bin/btsync",
        &image,
        "--sleep",
        "120",
    ]);
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", container.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    };
    for shell in ["sh", "/bin/sh"] {
        let out = exec(&[shell]);
        assert!(!out.status.success(), "docker exec {shell} worked");
    }
    assert_eq!(exec(&["has", "gitlab"]).status.code(), Some(1));
    let out = exec(&["ctl", "add", "gitlab"]);
    assert!(
        out.status.success(),
        "ctl add gitlab: {}",
        text(&out.stderr)
    );
    assert_eq!(exec(&["has", "gitlab"]).status.code(), Some(0));
    assert_eq!(text(&exec(&["ctl", "list"]).stdout), "gitlab\n");
    let host_folder = data.join("gitlab");
    assert_eq!(
        text(&exec(&["ctl", "path", "gitlab"]).stdout),
        format!("{}\n", host_folder.display())
    );
    assert!(
        host_folder.is_dir(),
        "{} missing on the host",
        host_folder.display()
    );
    assert_eq!(
        text(&exec(&["ctl", "path", "--scope=container", "gitlab"]).stdout),
        "/data/gitlab\n"
    );
    let secret = text(&exec(&["secret", "gitlab"]).stdout);
    assert!(secret.trim().starts_with('A'), "secret: {secret}");
    let out = exec(&["ctl", "del", "gitlab"]);
    assert!(
        out.status.success(),
        "ctl del gitlab: {}",
        text(&out.stderr)
    );
    assert_eq!(exec(&["has", "gitlab"]).status.code(), Some(1));
    assert!(!host_folder.exists(), "del left {}", host_folder.display());
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn image_from_a_static_btsync_carries_no_loader_and_no_libraries() {
    let scope = Scope::new("static");
    let btsync = probe("static", &["--target", "x86_64-unknown-linux-musl"]);
    assert!(
        ldd_paths(&btsync).is_empty(),
        "the static probe is not static"
    );
    let image = scope.build_image("static", &btsync);
    let files: BTreeSet<String> = image_files(&scope, &image).into_keys().collect();
    assert_eq!(files, expected_files(&applets(&image), &[]));
    let out = run_in(&image, "/bin/btsync", &["static"]);
    assert_eq!(
        text(&out.stdout),
        "probe ok static\n",
        "{}",
        text(&out.stderr)
    );
}

fn rust_std_dir() -> String {
    let sysroot = text(
        &std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .args(["--print", "sysroot"])
            .output()
            .expect("rustc --print sysroot")
            .stdout,
    );
    format!(
        "{}/lib/rustlib/x86_64-unknown-linux-gnu/lib",
        sysroot.trim()
    )
}

fn image_exists(tag: &str) -> bool {
    docker(&["image", "inspect", tag]).status.success()
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn build_fails_naming_a_library_the_machine_lacks() {
    let scope = Scope::new("missing-lib");
    // -C prefer-dynamic links Rust's libstd-HASH.so, which is in no system path.
    let btsync = probe("prefer-dynamic", &["-C", "prefer-dynamic"]);
    let out = scope.try_build_image("missing", &btsync, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("needs libraries this machine does not have: libstd-"),
        "{stderr}"
    );
    assert!(!image_exists(&format!("{}:test", scope.unique("missing"))));
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn build_fails_when_the_images_loader_cannot_find_a_library() {
    let scope = Scope::new("hidden-lib");
    // ldd finds libstd through LD_LIBRARY_PATH, a directory the loader inside
    // the image never searches: the build must notice and keep no image.
    let btsync = probe("prefer-dynamic", &["-C", "prefer-dynamic"]);
    let std_dir = rust_std_dir();
    let out = scope.try_build_image("hidden", &btsync, &[("LD_LIBRARY_PATH", &std_dir)]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{std_dir}/libstd-")),
        "ldd should have found libstd in {std_dir}: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("btsync does not load inside the image"),
        "{stderr}"
    );
    assert!(!image_exists(&format!("{}:test", scope.unique("hidden"))));
}
