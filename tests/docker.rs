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

// The real-engine suites (real_btsync_*).
#[path = "docker/real.rs"]
mod real;

// Issue 20 (sync state) with the real engine: the real_btsync_sync_state_*
// suites.
#[path = "docker/sync_state.rs"]
mod sync_state;

// Issue 21 (PostgreSQL moves to a second node): the FROM-scratch postgres
// image of tests/docker/postgres-image, and the move with the real engine.
#[path = "docker/postgres.rs"]
mod postgres;

// add --owner with the real engine: 10,000 arriving files given to the
// owner, and planted symbolic links that change nothing outside.
#[path = "docker/owner.rs"]
mod owner;

// rootfs/build-image's engine input (vendor tarballs, refusals) and labels.
#[path = "docker/image_input.rs"]
mod image_input;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// The files the image holds besides btsync's libraries: the list in
/// issue 4 and docs/image.md, checked exactly.
fn expected_files(applets: &BTreeSet<String>, libraries: &[String]) -> BTreeSet<String> {
    let mut files: BTreeSet<String> = [
        "bin",
        "bin/syncbox",
        "bin/btsync",
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

    let applets = applets(&scope, &image);
    for core in [
        "add", "ctl", "del", "has", "health", "init", "list", "path", "secret", "status",
    ] {
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
    assert_eq!(files["bin/syncbox"].mode, "-rwxr-xr-x");
    assert_eq!(files["bin/btsync"].mode, "-rwxr-xr-x");
    assert_eq!(files["etc/passwd"].mode, "-rw-r--r--");

    // The image's own loader runs btsync from the collected libraries, as root
    // and as the unprivileged uid BTSYNC_UID=1000 selects.
    let out = scope.run_once(&[], &image, "/bin/btsync", &["hello"]);
    assert!(
        out.status.success(),
        "btsync in the image: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "probe ok hello\n");
    let out = scope.run_once(
        &["--user", "1000:1000"],
        &image,
        "/bin/btsync",
        &["as-1000"],
    );
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
fn image_config_has_init_entrypoint_ports_healthcheck_env_and_no_volume() {
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
    // No VOLUME: an anonymous volume would hide a forgotten `-v` (and
    // `docker run --rm` would delete it with the container).
    assert!(config["Volumes"].is_null(), "{config}");
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

    // A forgotten `-v`: init refuses to start, in one line, exit 2.
    let out = scope.run_once(&[], &image, "/bin/init", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the data root /data does not exist") && stderr.lines().count() == 1,
        "{stderr}"
    );
    // A docker volume where BTSYNC_HOST_PATH says a host directory is.
    let out = scope.run_once(
        &["-v", "/data", "-e", "BTSYNC_HOST_PATH=/mnt/resource/sync"],
        &image,
        "/bin/init",
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "BTSYNC_HOST_PATH=/mnt/resource/sync but /data shows /var/lib/docker/volumes/"
        ) && stderr.contains("-v /mnt/resource/sync:/data")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn image_has_no_shell_and_the_applets_work_through_docker() {
    let scope = Scope::new("applets");
    let image = scope.build_image("applets", &probe("dynamic", &[]));

    for shell in ["sh", "/bin/sh", "bash"] {
        let out = scope.run_once(&[], &image, shell, &["-c", "true"]);
        assert!(!out.status.success(), "{shell} ran in the image");
    }

    // Bare applets through --entrypoint. Without a data volume there is no
    // /data: refused in one line, never read as "no namespaces".
    let out = scope.run_once(&[], &image, "/bin/has", &["gitlab"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "has gitlab: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("/data does not exist"));
    let empty = scope.dir.join("empty-data");
    std::fs::create_dir_all(&empty).expect("empty data dir");
    let empty_volume = format!("{}:/data", empty.display());
    let out = scope.run_once(&["-v", &empty_volume], &image, "/bin/has", &["gitlab"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "has gitlab: {}",
        text(&out.stderr)
    );
    let out = scope.run_once(&[], &image, "/bin/has", &["../etc"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "has ../etc: {}",
        text(&out.stderr)
    );
    let out = scope.run_once(&["-v", &empty_volume], &image, "/bin/ctl", &["list"]);
    assert!(out.status.success(), "ctl list: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "");
    let out = scope.run_once(&[], &image, "/bin/syncbox", &["nosuchapplet"]);
    assert_eq!(out.status.code(), Some(127));

    // A running container, bind-mounted data, `docker exec` through PATH:
    // the registry-only path the applets take when no init is listening.
    let node = Node::start_with(
        &scope,
        &image,
        "node",
        "none",
        &["--entrypoint", "/bin/btsync"],
        &["--sleep", "120"],
    );
    let data = &node.data;
    for shell in ["sh", "/bin/sh"] {
        let out = node.exec(&[shell]);
        assert!(!out.status.success(), "docker exec {shell} worked");
    }
    assert_eq!(node.exec(&["has", "gitlab"]).status.code(), Some(1));
    let out = node.exec(&["ctl", "add", "gitlab"]);
    assert!(
        out.status.success(),
        "ctl add gitlab: {}",
        text(&out.stderr)
    );
    assert_eq!(node.exec(&["has", "gitlab"]).status.code(), Some(0));
    assert_eq!(text(&node.exec(&["ctl", "list"]).stdout), "gitlab\n");
    let host_folder = data.join("gitlab");
    assert_eq!(
        text(&node.exec(&["ctl", "path", "gitlab"]).stdout),
        format!("{}\n", host_folder.display())
    );
    assert!(
        host_folder.is_dir(),
        "{} missing on the host",
        host_folder.display()
    );
    assert_eq!(
        text(
            &node
                .exec(&["ctl", "path", "--scope=container", "gitlab"])
                .stdout
        ),
        "/data/gitlab\n"
    );
    let secret = text(&node.exec(&["secret", "gitlab"]).stdout);
    assert!(secret.trim().starts_with('A'), "secret: {secret}");
    let out = node.exec(&["ctl", "del", "gitlab"]);
    assert!(
        out.status.success(),
        "ctl del gitlab: {}",
        text(&out.stderr)
    );
    assert_eq!(node.exec(&["has", "gitlab"]).status.code(), Some(1));
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
    assert_eq!(files, expected_files(&applets(&scope, &image), &[]));
    let out = scope.run_once(&[], &image, "/bin/btsync", &["static"]);
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

// ---------------------------------------------------------------------------
// The engine end to end: init as the container's PID 1 supervising the
// stand-in engine (tests/support/stand_in_engine.rs, a dynamically linked
// cargo example, so the library collection runs as for rslsync) or, with
// SYNCBOX_TEST_BTSYNC=/path/to/rslsync, the real engine.

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn engine_namespace_lifecycle_through_docker_exec() {
    let (scope, image, stand_in) = engine_image("lifecycle");
    let node = Node::start(&scope, &image, "node", "none", &[]);
    // Nothing to sync: init is idle and runs no engine (btsync refuses a
    // config without a folder).
    node.wait_idle("a fresh node to be idle");

    assert_eq!(node.exec(&["has", "gitlab"]).status.code(), Some(1));
    node.exec_ok(&["ctl", "add", "gitlab"]);
    assert_eq!(node.exec(&["has", "gitlab"]).status.code(), Some(0));
    assert_eq!(node.exec_ok(&["ctl", "list"]), "gitlab\n");
    let host_folder = node.data.join("gitlab");
    assert_eq!(
        node.exec_ok(&["ctl", "path", "gitlab"]),
        format!("{}\n", host_folder.display())
    );
    assert!(host_folder.is_dir(), "{} missing", host_folder.display());
    assert_eq!(
        node.exec_ok(&["ctl", "path", "--scope=container", "gitlab"]),
        "/data/gitlab\n"
    );

    // `add` returns once the engine runs with the folder: the first engine
    // process, given it in its config or over its interface.
    let (pid, _) = node.engine_config();
    assert_eq!(node.served_dirs(), ["/data/gitlab"]);
    let status = node.exec_json(&["status", "--json"]);
    assert_eq!(status["engine"]["state"], "running", "{status}");
    if stand_in {
        let events = stand_in_events(&node.data);
        let starts: Vec<_> = events_named(&events, "start").collect();
        assert_eq!(starts.len(), 1, "{events:?}");
        assert_eq!(given_folders(&events), ["gitlab"]);
        assert_eq!(
            starts[0]["pid"].as_u64(),
            pid_in_container(pid).map(u64::from),
            "the last start is the running engine"
        );
    }

    // del: the engine lets go of the folder before its files go.
    fs::write(host_folder.join("file"), "content").expect("write into the namespace");
    node.exec_ok(&["ctl", "del", "gitlab"]);
    assert_eq!(node.exec(&["has", "gitlab"]).status.code(), Some(1));
    assert!(!host_folder.exists(), "del left {}", host_folder.display());
    // It was the last namespace: the engine stopped, init is idle again.
    node.wait_idle("init to be idle after the last del");
    if stand_in {
        node.assert_nothing_vanished();
    }

    // The compose/Kubernetes pattern of docs/deploy.md: a one-shot container of the
    // image sharing only the data directory registers a namespace, and the
    // node's init applies it before `add` returns.
    let volume = format!("{}:/data", node.data.display());
    let out = scope.run_once(&["-v", &volume], &image, "/bin/add", &["oneshot"]);
    assert!(out.status.success(), "one-shot add: {}", text(&out.stderr));
    assert_eq!(node.served_dirs(), ["/data/oneshot"]);
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn engine_health_signals_crash_restart_and_clean_stop() {
    let (scope, image, stand_in) = engine_image("signals");
    let node = Node::start(
        &scope,
        &image,
        "node",
        "none",
        &["--health-interval=1s", "--health-retries=3"],
    );
    // Idle (nothing to sync) is healthy; then give the engine a folder.
    node.wait_healthy("the fresh, idle container to turn healthy");
    node.exec_ok(&["ctl", "add", "gitlab"]);

    let pid = engine_pid(&node.name);
    let inner_pid = pid_in_container(pid).expect("the engine's pid in the container");
    docker_ok(&["kill", "-s", "USR1", &node.name]);
    let pid = if stand_in {
        wait_for("the engine to see USR1", Duration::from_secs(10), || {
            let events = stand_in_events(&node.data);
            events_named(&events, "signal")
                .any(|e| e["signal"] == "SIGUSR1" && e["pid"] == serde_json::json!(inner_pid))
                .then_some(())
        });
        pid
    } else {
        // btsync 1.4.111 dies on USR1 (status 138). init forwards it as a
        // transparent init must, then restarts the engine as after any crash.
        let again = wait_engine_replaced(
            &node.name,
            pid,
            "the real engine, killed by USR1, to be restarted",
        );
        assert!(node.logs().contains("killed by SIGUSR1"), "{}", node.logs());
        again
    };
    assert_eq!(node.inspect("{{.State.Running}}"), "true");

    // A crashing engine is restarted (after a backoff), the container stays up.
    let killed = run_with_deadline(
        std::process::Command::new("kill").args(["-KILL", &pid.to_string()]),
        Duration::from_secs(10),
    );
    assert!(killed.status.success(), "kill: {}", text(&killed.stderr));
    let restarted = wait_engine_replaced(&node.name, pid, "the engine to be restarted");
    let restarted = pid_in_container(restarted).expect("the new engine's pid in the container");
    assert_eq!(node.inspect("{{.State.Running}}"), "true");
    node.wait_healthy("healthy again");

    let started = Instant::now();
    docker_ok(&["stop", &node.name]);
    let took = started.elapsed();
    println!("docker stop took {took:?}");
    assert_eq!(node.inspect("{{.State.ExitCode}}"), "0", "{}", node.logs());
    // Exit 0 rather than 137 already shows docker did not need SIGKILL; the
    // bound only catches a stop that waited out init's whole grace period.
    assert!(took < Duration::from_secs(8), "docker stop took {took:?}");
    if stand_in {
        let events = stand_in_events(&node.data);
        let mine = |e: &&serde_json::Value| e["pid"] == serde_json::json!(restarted);
        assert!(
            events_named(&events, "signal")
                .filter(mine)
                .any(|e| e["signal"] == "SIGTERM"),
            "{events:?}"
        );
        assert!(
            events_named(&events, "exit")
                .filter(mine)
                .any(|e| e["code"] == 0),
            "{events:?}"
        );
    }
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn engine_runs_as_btsync_uid_and_owns_the_namespace() {
    let (scope, image, stand_in) = engine_image("uid");
    let node = Node::start(
        &scope,
        &image,
        "node",
        "none",
        &["-e", "BTSYNC_UID=1000", "-e", "BTSYNC_GID=1000"],
    );
    node.exec_ok(&["ctl", "add", "gitlab"]);
    let (pid, _) = node.engine_config();
    assert_eq!(node.served_dirs(), ["/data/gitlab"]);
    let engines = processes(&node.name, "/bin/btsync");
    assert_eq!(engines, [(pid, 1000)], "engine processes (pid, uid)");
    let owner = fs::metadata(node.data.join("gitlab")).expect("the namespace folder");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((owner.uid(), owner.gid()), (1000, 1000));
    if stand_in {
        let events = stand_in_events(&node.data);
        let start = events_named(&events, "start")
            .last()
            .expect("a start record");
        assert_eq!(
            (start["uid"].as_u64(), start["gid"].as_u64()),
            (Some(1000), Some(1000))
        );
        assert_eq!(start["folder_problems"], serde_json::json!([]), "{start}");
    }
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn three_nodes_on_a_private_network_share_the_key_and_known_hosts() {
    let (scope, image, _) = engine_image("cluster");
    let network = scope.network("net");
    let (nodes, known_hosts) = Node::peers(&scope, &image, &network, 3, &[]);
    nodes[0].exec_ok(&["ctl", "add", "shared"]);
    let key = nodes[0].exec_ok(&["secret", "shared"]).trim().to_owned();
    let token = format!("--token={key}");
    for node in &nodes[1..] {
        node.exec_ok(&["ctl", "add", &token, "shared"]);
    }
    for node in &nodes {
        assert_eq!(
            node.engine_folders(),
            [("/data/shared".to_owned(), key.clone())],
            "{}",
            node.name
        );
        // The known hosts and LAN search: per folder in config-file mode,
        // the folder defaults every folder given over the interface takes.
        let (_, config) = node.engine_config();
        match config["shared_folders"].as_array() {
            Some(folders) => {
                assert_eq!(
                    folders[0]["known_hosts"],
                    serde_json::json!(known_hosts),
                    "{}",
                    node.name
                );
                assert_eq!(folders[0]["search_lan"], false, "{}", node.name);
            }
            None => {
                assert_eq!(
                    config["folder_defaults.known_hosts"],
                    known_hosts.join(","),
                    "{}: {config}",
                    node.name
                );
                assert_eq!(
                    config["folder_defaults.use_lan_broadcast"], false,
                    "{}: {config}",
                    node.name
                );
            }
        }
    }
}

/// The namespace folders a node's engine runs, and the key it runs the
/// cluster registry with (what the engine says: see `engine_folders`).
fn namespaces_and_registry_key(node: &Node) -> (Vec<String>, Option<String>) {
    let mut registry_key = None;
    let mut dirs = Vec::new();
    for (dir, key) in node.engine_folders() {
        if dir == "/data/.btsync/cluster" {
            registry_key = Some(key);
        } else if !dir.starts_with("/data/.btsync/cluster-members/") {
            dirs.push(dir);
        }
    }
    (dirs, registry_key)
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn cluster_mode_three_nodes_share_a_registry_through_a_host_directory() {
    let (scope, image, stand_in) = engine_image("clustermode");
    let network = scope.network("net");
    // The registry folder of every node is this one host directory: it
    // stands in for the engine replicating it between the nodes.
    let shared = scope.dir("registry");
    let secrets = scope.dir("secrets");
    fs::write(
        secrets.join("cluster.key"),
        "correct horse battery staple\n",
    )
    .expect("key file");
    let registry_mount = format!("{}:/data/.btsync/cluster", shared.display());
    let key_mount = format!("{}:/run/secrets:ro", secrets.display());
    let (nodes, _) = Node::peers(
        &scope,
        &image,
        &network,
        3,
        &[
            "-v",
            &registry_mount,
            "-v",
            &key_mount,
            "-e",
            "BTSYNC_CLUSTER_KEY_FILE=/run/secrets/cluster.key",
        ],
    );
    // Every engine syncs the registry, with one key, before anything is declared.
    for node in &nodes {
        let (dirs, registry_key) = namespaces_and_registry_key(node);
        assert!(dirs.is_empty(), "{}: {dirs:?}", node.name);
        assert_eq!(
            registry_key.as_deref(),
            Some("AYYVRHAIW65KJOFMV7MHTSBKGNHGQM2ZL"),
            "{}: the registry key derived from the cluster key (docs/cluster.md vector)",
            node.name
        );
    }

    let declared = Instant::now();
    nodes[0].exec_ok(&["ctl", "add", "--cluster", "gitlab"]);
    let mut took = Vec::new();
    for node in &nodes[1..] {
        wait_for(
            &format!("{} to sync gitlab", node.name),
            Duration::from_secs(30),
            || {
                let (dirs, _) = namespaces_and_registry_key(node);
                (dirs == ["/data/gitlab"]).then_some(())
            },
        );
        took.push(declared.elapsed());
    }
    println!("docker: declare on node0 -> node1, node2 engines sync gitlab after {took:?}");
    let key = nodes[0].exec_ok(&["secret", "gitlab"]);
    for node in &nodes {
        assert_eq!(node.exec_ok(&["secret", "gitlab"]), key, "{}", node.name);
        fs::write(node.data.join("gitlab/data.txt"), &node.name).expect("write");
    }
    let listed = nodes[2].exec_json(&["ctl", "list", "--json"]);
    assert_eq!(listed[0]["declared"], "cluster", "{listed}");

    // A local del is refused; del --cluster on another node removes it everywhere.
    let refused = nodes[1].exec(&["ctl", "del", "gitlab"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("del --cluster"));
    let removed = Instant::now();
    nodes[2].exec_ok(&["ctl", "del", "--cluster", "gitlab"]);
    for node in &nodes {
        let trash = node.data.join(".btsync/cluster-trash");
        let trashed = wait_for(
            &format!("{} to trash gitlab", node.name),
            Duration::from_secs(30),
            || {
                let (dirs, _) = namespaces_and_registry_key(node);
                if !dirs.is_empty() || node.data.join("gitlab").exists() {
                    return None;
                }
                fs::read_dir(&trash)
                    .ok()?
                    .flatten()
                    .next()
                    .map(|i| i.path())
            },
        );
        assert_eq!(
            fs::read_to_string(trashed.join("data.txt")).expect("the trashed copy"),
            node.name
        );
        if stand_in {
            node.assert_nothing_vanished();
        }
    }
    println!(
        "docker: del --cluster on node2 -> every node trashed gitlab after {:?}",
        removed.elapsed()
    );
    let status = nodes[0].exec_json(&["status", "--json"]);
    assert_eq!(
        status["cluster"]["removed"][0]["name"], "gitlab",
        "{status}"
    );
}

/// The published vector (docs/keys.md) for the cluster key derivation: the file
/// holds these bytes (the final newline is not part of the key).
const CLUSTER_KEY_FILE_TEXT: &str = "correct horse battery staple\n";
const CLUSTER_GITLAB_KEY: &str = "A3YU7QPZZJIDMMZDEH3YWCZEY75J3OZHB";
const CLUSTER_GITLAB_READ_ONLY_KEY: &str = "BZH73GNW4OKONMZFB24CISS6M5BERFYWO";

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn nodes_sharing_a_cluster_key_file_derive_the_same_key_and_a_read_only_node_the_b_key() {
    let (scope, image, _) = engine_image("clusterkey");
    let key_file = scope.dir("secrets").join("cluster.key");
    fs::write(&key_file, CLUSTER_KEY_FILE_TEXT).expect("write the cluster key file");
    let mount = format!("{}:/run/secrets/cluster.key:ro", key_file.display());
    let options = [
        "-v",
        &mount,
        "-e",
        "BTSYNC_CLUSTER_KEY_FILE=/run/secrets/cluster.key",
    ];
    let nodes: Vec<Node> = (0..4)
        .map(|i| Node::start(&scope, &image, &format!("node{i}"), "none", &options))
        .collect();
    let (writers, reader) = nodes.split_at(3);
    let reader = &reader[0];

    let holds = |node: &Node, key: &str, access: &str| {
        let printed = node.exec_ok(&["ctl", "secret", "gitlab"]);
        assert_eq!(printed.trim(), key, "ctl secret gitlab on {}", node.name);
        // With a cluster key the engine also syncs the cluster registry
        // folder; the namespaces are the other folders.
        let (dirs, registry_key) = namespaces_and_registry_key(node);
        assert_eq!(dirs, ["/data/gitlab"], "{}", node.name);
        assert!(registry_key.is_some(), "{}: no registry folder", node.name);
        let folders = node.engine_folders();
        let gitlab = folders
            .iter()
            .find(|(dir, _)| dir == "/data/gitlab")
            .expect("gitlab folder");
        assert!(
            gitlab.1 == key,
            "{}: the engine runs gitlab with another key",
            node.name
        );
        let listed = node.exec_json(&["ctl", "list", "--json"]);
        assert_eq!(
            listed[0]["key_origin"], "cluster",
            "{}: {listed}",
            node.name
        );
        assert_eq!(listed[0]["access"], access, "{}: {listed}", node.name);
        assert!(
            !listed.to_string().contains(key),
            "list --json shows the key"
        );
    };
    for node in writers {
        node.exec_ok(&["ctl", "add", "gitlab"]);
    }
    for node in writers {
        holds(node, CLUSTER_GITLAB_KEY, "read-write");
    }
    assert_eq!(
        writers[0]
            .exec_ok(&["ctl", "secret", "--read-only", "gitlab"])
            .trim(),
        CLUSTER_GITLAB_READ_ONLY_KEY
    );

    reader.exec_ok(&["ctl", "add", "--read-only", "gitlab"]);
    holds(reader, CLUSTER_GITLAB_READ_ONLY_KEY, "read-only");
    // The read-write key was never stored on the read-only node.
    let entry = fs::read_to_string(reader.data.join(".btsync/namespaces/gitlab"))
        .expect("the registry entry");
    assert!(!entry.contains(CLUSTER_GITLAB_KEY), "{}", reader.name);
    for node in &nodes {
        assert!(
            !node.logs().contains("correct horse"),
            "the cluster key is in {}'s log",
            node.name
        );
    }
}
// ------------------------------------------------------------ volume plugin

/// `docker volume create` that must fail: its stderr.
fn refused_create(args: &[&str]) -> String {
    let mut all = vec!["volume", "create"];
    all.extend_from_slice(args);
    let out = docker(&all);
    assert!(!out.status.success(), "docker {all:?} succeeded");
    text(&out.stderr)
}

/// `docker kill` (as `docker rm -f`) ends init with SIGKILL: its socket
/// stays in /run/docker/plugins with nobody listening. `docker start` runs
/// a new init, which takes the socket over, and dockerd, which remembers the
/// driver, reaches it again with no restart of its own (docs/deploy.md).
#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn volume_plugin_serves_again_after_its_container_was_killed() {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::net::UnixStream;
    let (scope, image, _) = engine_image("plugin-killed");
    let plugin = PluginNode::start(&scope, &image, "node", "none", &[]);
    let driver = plugin.driver.as_str();
    let before = plugin.volume(&scope, "before");
    docker_ok(&["volume", "create", "-d", driver, &before]);

    docker_ok(&["kill", &plugin.node.name]);
    wait_for(
        &format!("{} to stop", plugin.node.name),
        Duration::from_secs(60),
        || {
            (docker_ok(&["inspect", "-f", "{{.State.Running}}", &plugin.node.name]).trim()
                == "false")
                .then_some(())
        },
    );
    let left = fs::symlink_metadata(&plugin.socket).expect("SIGKILL leaves the socket behind");
    assert!(left.file_type().is_socket());
    let refused = UnixStream::connect(&plugin.socket).expect_err("nobody serves the old socket");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    docker_ok(&["start", &plugin.node.name]);
    wait_for(
        &format!(
            "{} to serve {} again",
            plugin.node.name,
            plugin.socket.display()
        ),
        Duration::from_secs(60),
        || UnixStream::connect(&plugin.socket).ok().map(drop),
    );
    let after = plugin.volume(&scope, "after");
    docker_ok(&["volume", "create", "-d", driver, &after]);
    assert!(plugin.has(&after));
    let listed = docker_ok(&["volume", "ls", "-q", "-f", &format!("driver={driver}")]);
    let listed: BTreeSet<&str> = listed.lines().collect();
    assert_eq!(listed, [before.as_str(), after.as_str()].into());
}

#[test]
#[ignore = "needs docker: .ci/run runs it through tests/docker/run"]
fn volume_plugin_creates_mounts_lists_and_removes_namespaces() {
    let (scope, image, _) = engine_image("plugin");
    let writer = writer_image(&scope);
    let plugin = PluginNode::start(&scope, &image, "node", "none", &[]);
    let (node, driver) = (&plugin.node, plugin.driver.as_str());

    // create without and with a key; inspect shows the host folder.
    let plain = plugin.volume(&scope, "plain");
    docker_ok(&["volume", "create", "-d", driver, &plain]);
    assert!(plugin.has(&plain));
    assert_eq!(
        docker_ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", &plain]).trim(),
        node.data.join(&plain).display().to_string()
    );
    let key = node.exec_ok(&["keygen"]).trim().to_owned();
    let keyed = plugin.volume(&scope, "keyed");
    plugin.create_with_token(&keyed, &key);
    assert_eq!(node.exec_ok(&["secret", &keyed]).trim(), key);
    let status = docker_ok(&["volume", "inspect", "-f", "{{json .Status}}", &keyed]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("Status JSON");
    assert_eq!(status["access"], "read-write", "{status}");
    assert_eq!(status["key_origin"], "given", "{status}");
    assert_eq!(status["declared"], "local", "{status}");
    // Docker itself keeps (and shows) the -o options it was given; the
    // plugin's part of inspect never holds a key.
    assert!(!status.to_string().contains(&key), "{status}");

    // ls: every namespace, also one added with ctl add.
    let by_ctl = plugin.volume(&scope, "by-ctl");
    node.exec_ok(&["ctl", "add", &by_ctl]);
    let listed = docker_ok(&["volume", "ls", "-q", "-f", &format!("driver={driver}")]);
    let listed: BTreeSet<&str> = listed.lines().collect();
    let expected: BTreeSet<&str> = [plain.as_str(), keyed.as_str(), by_ctl.as_str()].into();
    assert_eq!(listed, expected);

    // A container writes through -v NAME:/path into the host folder.
    let mount = format!("{plain}:/vol");
    let out = scope.run_once(
        &["-v", &mount],
        &writer,
        "/bin/btsync",
        &["--write", "/vol/hello.txt", "through the plugin"],
    );
    assert!(out.status.success(), "writer: {}", text(&out.stderr));
    assert_eq!(
        fs::read_to_string(node.data.join(&plain).join("hello.txt")).expect("written file"),
        "through the plugin"
    );

    // Implicit create: docker run -v NAME:... --volume-driver NAME.
    let implicit = plugin.volume(&scope, "implicit");
    let mount = format!("{implicit}:/vol");
    let out = scope.run_once(
        &["-v", &mount, "--volume-driver", driver],
        &writer,
        "/bin/btsync",
        &["--write", "/vol/made.txt", "implicitly"],
    );
    assert!(out.status.success(), "implicit: {}", text(&out.stderr));
    assert!(plugin.has(&implicit));
    assert!(node.data.join(&implicit).join("made.txt").is_file());

    // rm while a container uses it is refused; after, rm = del.
    let user = plugin.user(&scope, "user");
    let mount = format!("{plain}:/vol");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &user,
        "--network",
        "none",
        "-v",
        &mount,
        "--entrypoint",
        "/bin/btsync",
        &writer,
        "--sleep",
        "300",
    ]);
    let out = docker(&["volume", "rm", &plain]);
    assert!(!out.status.success(), "rm of a mounted volume succeeded");
    assert!(plugin.has(&plain));
    assert!(node.data.join(&plain).join("hello.txt").is_file());
    let mounts = docker_ok(&["volume", "inspect", "-f", "{{json .Status}}", &plain]);
    assert!(mounts.contains("\"mounts\":1"), "{mounts}");
    docker_ok(&["rm", "-f", &user]);
    docker_ok(&["volume", "rm", &plain]);
    plugin.forget(&plain);
    assert!(!plugin.has(&plain));
    assert!(!node.data.join(&plain).exists(), "rm left the local copy");

    // Every bad input: docker prints the plugin's message, nothing is made.
    let bad = scope.unique("bad");
    let bad_key = "A1CDEFGHIJKLMNOPQRSTUVWXYZ234567Q";
    for (options, expected) in [
        (
            vec!["-o".to_owned(), format!("token={bad_key}")],
            "invalid key",
        ),
        (
            vec![
                "-o".to_owned(),
                format!("token={key}"),
                "-o".to_owned(),
                format!("secret={key}"),
            ],
            "give the key once",
        ),
        (
            vec!["-o".to_owned(), "size=1G".to_owned()],
            "unknown option",
        ),
        (
            vec!["-o".to_owned(), "read-only=maybe".to_owned()],
            "read-only=true",
        ),
        (
            vec!["-o".to_owned(), "cluster=true".to_owned()],
            "cluster key",
        ),
    ] {
        let mut args = vec!["-d", driver];
        args.extend(options.iter().map(String::as_str));
        args.push(&bad);
        let stderr = refused_create(&args);
        assert!(stderr.contains(expected), "{options:?}: {stderr}");
        assert!(
            !stderr.contains(bad_key) && !stderr.contains(&key),
            "{stderr}"
        );
        assert!(!plugin.has(&bad), "{options:?} registered {bad}");
    }
    let stderr = refused_create(&["-d", driver, "Not_A_Namespace"]);
    assert!(stderr.contains("Not_A_Namespace"), "{stderr}");
    // Docker asks Get before Create: for a namespace that exists, create is
    // a no-op that succeeds, and the registered key stays (the plugin's own
    // refusal of another key is tested over the raw socket).
    let other = plugin.volume(&scope, "other");
    node.exec_ok(&["ctl", "add", &other]);
    let registered = node.exec_ok(&["secret", &other]);
    plugin.create_with_token(&other, &key);
    assert_eq!(node.exec_ok(&["secret", &other]), registered);
}

#[test]
#[ignore = "needs docker and docker-compose: .ci/run runs it through tests/docker/run"]
fn volume_plugin_serves_the_compose_example() {
    let (scope, image, _) = engine_image("compose");
    let writer = writer_image(&scope);
    // The host's /etc/syncbox, mounted where the example's token-file points.
    let keys = scope.dir("keys");
    let keys_mount = format!("{}:/run/secrets/syncbox:ro", keys.display());
    let plugin = PluginNode::start(&scope, &image, "node", "none", &["-v", &keys_mount]);
    let project = scope.unique("proj");
    let data = plugin.volume(&scope, "proj_gitlab-data");
    let config = plugin.volume(&scope, "proj_gitlab-config");
    plugin.user(&scope, "proj_gitlab_1");

    // The example as docs/deploy.md shows it, with this run's driver and a
    // writer instead of GitLab (nothing can be pulled here).
    let example =
        fs::read_to_string(Path::new(REPO).join("examples/docker-compose.volume-plugin.yml"))
            .expect("the example");
    let image_line = "    image: gitlab/gitlab-ce\n";
    assert!(example.contains(image_line) && example.contains("driver: syncbox"));
    let file = example
        .replace("driver: syncbox", &format!("driver: {}", plugin.driver))
        .replace(
            image_line,
            &format!(
                "    image: {writer}\n    network_mode: none\n    entrypoint: \
                 [/bin/btsync, --write, /var/opt/gitlab/hello.txt, compose]\n"
            ),
        );
    let path = scope.dir("compose").join("docker-compose.yml");
    fs::write(&path, file).expect("write the compose file");
    let key = plugin.node.exec_ok(&["keygen"]).trim().to_owned();
    fs::write(keys.join("gitlab.key"), format!("{key}\n")).expect("write the key file");
    let compose = |args: &[&str]| {
        let mut command = std::process::Command::new("docker-compose");
        command
            .arg("-p")
            .arg(&project)
            .arg("-f")
            .arg(&path)
            .args(args);
        run_with_deadline(&mut command, COMMAND_DEADLINE)
    };
    let up = compose(&["up", "--no-color"]);
    assert!(
        up.status.success(),
        "docker-compose up: {}",
        text(&up.stderr)
    );
    let node = &plugin.node;
    assert_eq!(node.exec_ok(&["secret", &data]).trim(), key);
    // Docker keeps the options and shows them: the path, not the key.
    let inspected = docker_ok(&["volume", "inspect", &data]);
    assert!(
        inspected.contains("/run/secrets/syncbox/gitlab.key"),
        "{inspected}"
    );
    assert!(
        !inspected.contains(&key),
        "docker volume inspect shows the key"
    );
    assert!(plugin.has(&config));
    assert_eq!(
        fs::read_to_string(node.data.join(&data).join("hello.txt")).expect("written file"),
        "compose"
    );
    let down = compose(&["down", "-v"]);
    assert!(
        down.status.success(),
        "docker-compose down: {}",
        text(&down.stderr)
    );
    plugin.forget(&data);
    plugin.forget(&config);
    assert!(!plugin.has(&data) && !plugin.has(&config));
    assert!(!node.data.join(&data).exists());
}

#[test]
#[ignore = "needs docker and a real btsync: SYNCBOX_TEST_BTSYNC=/path/to/rslsync tests/docker/run"]
fn real_btsync_two_nodes_sync_a_file_through_plugin_volumes() {
    let Some(real) = std::env::var_os(REAL_ENGINE_VAR).filter(|v| !v.is_empty()) else {
        panic!("{REAL_ENGINE_VAR} must name a real btsync/rslsync binary for this test");
    };
    let scope = Scope::new("realplugin");
    let image = scope.build_image("realplugin", Path::new(&real));
    let writer = writer_image(&scope);
    let network = scope.network("net");
    let names = [scope.unique("a"), scope.unique("b")];
    let known_hosts = format!("BTSYNC_KNOWN_HOSTS={}:55555,{}:55555", names[0], names[1]);
    let mut off = vec!["-e", known_hosts.as_str()];
    off.extend(real::OFFLINE);
    let a = PluginNode::start(&scope, &image, "a", &network, &off);
    let b = PluginNode::start(&scope, &image, "b", &network, &off);
    // Volume names are per Docker host: each node's volume has its own name,
    // the key makes them one folder.
    let on_a = a.volume(&scope, "shared-a");
    let on_b = b.volume(&scope, "shared-b");
    docker_ok(&["volume", "create", "-d", &a.driver, &on_a]);
    let key = a.node.exec_ok(&["secret", &on_a]).trim().to_owned();
    b.create_with_token(&on_b, &key);

    let content = format!("written through {on_a} at {:?}", Instant::now());
    let mount = format!("{on_a}:/vol");
    let out = scope.run_once(
        &["-v", &mount],
        &writer,
        "/bin/btsync",
        &["--write", "/vol/hello.txt", &content],
    );
    assert!(out.status.success(), "writer: {}", text(&out.stderr));
    let copy = b.node.data.join(&on_b).join("hello.txt");
    wait_for("hello.txt to reach node b", SYNC_BOUND, || {
        (fs::read_to_string(&copy).ok()? == content).then_some(())
    });

    // A read-only volume from a D key: init's plugin thread asks the
    // engine's --get-ro-secret for the E key while init reaps every child.
    let a_key = a.node.exec_ok(&["keygen"]).trim().to_owned();
    let d_key = format!("D{}", &a_key[1..]);
    let e_key = a.node.exec_ok(&["btsync", "--get-ro-secret", &d_key]);
    let vault = a.volume(&scope, "vault");
    let token = format!("token={d_key}");
    docker_ok(&[
        "volume",
        "create",
        "-d",
        &a.driver,
        "-o",
        &token,
        "-o",
        "read-only=true",
        &vault,
    ]);
    assert_eq!(a.node.exec_ok(&["secret", &vault]).trim(), e_key.trim());
}

// Issue 14 (apply by reload) with the real engine, in a file of its own.
#[path = "docker/reload.rs"]
mod reload;
