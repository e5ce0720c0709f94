//! Issue 14 in docker with the real btsync 1.4.111: `add`/`del` reach the
//! running engine by a config reload (HUP), and a `del` still never reaches
//! a peer. Included from tests/docker.rs; run by tests/docker/run.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::support::*;

fn real_engine() -> String {
    let Some(real) = std::env::var_os(REAL_ENGINE_VAR).filter(|v| !v.is_empty()) else {
        panic!("{REAL_ENGINE_VAR} must name a real btsync/rslsync binary for this test");
    };
    real.to_string_lossy().into_owned()
}

#[test]
#[ignore = "needs docker and the real btsync: tests/docker/run runs it"]
fn real_btsync_reload_keeps_one_engine_across_20_adds_and_20_dels() {
    let real = real_engine();
    let scope = Scope::new("reload");
    let image = scope.build_image("reload", Path::new(&real));
    // No network at all: nothing to reach, nothing leaves.
    let node = Node::start(&scope, &image, "node", "none", &[]);
    node.wait_idle("a fresh node to be idle");
    node.exec_ok(&["ctl", "add", "base"]);
    let pid = engine_pid(&node.name);
    let names: Vec<String> = (0..20).map(|i| format!("ns-{i:02}")).collect();
    for ns in &names {
        node.exec_ok(&["ctl", "add", ns]);
        // add returned: the engine serves it (init saw .sync/ID and the
        // database open); the same engine.
        assert_eq!(
            fs::read(node.data.join(ns).join(".sync/ID"))
                .map(|id| id.len())
                .ok(),
            Some(20),
            "{ns}"
        );
        fs::write(node.data.join(ns).join("data.txt"), ns).expect("write");
    }
    assert_eq!(processes(&node.name, "/bin/btsync").len(), 1);
    assert_eq!(engine_pid(&node.name), pid);
    for ns in &names {
        node.exec_ok(&["ctl", "del", ns]);
        assert!(!node.data.join(ns).exists(), "{ns} left behind");
    }
    assert_eq!(engine_pid(&node.name), pid, "the engine was never replaced");
    let status = node.exec_json(&["status", "--json"]);
    assert_eq!(status["apply"], "reload", "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    assert_eq!(status["reloads"], 40, "{status}");
    assert_eq!(status["reload_fallbacks"], 0, "{status}");
    assert_eq!(status["crashes"], 0, "{status}");
    assert_eq!(status["engine"]["folders"], serde_json::json!(["base"]));
    let logs = node.logs();
    assert!(
        logs.contains("Reloading config file"),
        "the engine's stdout reaches docker logs:\n{logs}"
    );
}

/// Two nodes share a namespace; node a deletes it. Node b keeps every file,
/// also once node a has an empty folder of that name again. `apply` is the
/// BTSYNC_APPLY of node a.
fn del_leaves_the_peers_files(apply: &str) {
    let real = real_engine();
    let scope = Scope::new(&format!("reloaddel-{apply}"));
    let image = scope.build_image("reloaddel", Path::new(&real));
    let network = scope.network("net");
    let apply_env = format!("BTSYNC_APPLY={apply}");
    let (nodes, _) = Node::peers(&scope, &image, &network, 2, &["-e", &apply_env]);
    let (a, b) = (&nodes[0], &nodes[1]);
    a.exec_ok(&["ctl", "add", "keep"]);
    a.exec_ok(&["ctl", "add", "shared"]);
    let key = a.exec_ok(&["secret", "shared"]).trim().to_owned();
    b.exec_ok(&["ctl", "add", &format!("--token={key}"), "shared"]);
    let content = format!("written on {} at {:?}\n", a.name, Instant::now());
    fs::write(a.data.join("shared/hello.txt"), &content).expect("write on node a");
    let copy = b.data.join("shared/hello.txt");
    wait_for(
        "hello.txt to reach node b",
        Duration::from_secs(180),
        || (fs::read_to_string(&copy).ok()? == content).then_some(()),
    );
    let pid = engine_pid(&a.name);

    a.exec_ok(&["ctl", "del", "shared"]);
    assert!(!a.data.join("shared").exists());
    if apply == "reload" {
        assert_eq!(engine_pid(&a.name), pid, "node a reloaded, not restarted");
    }
    // The folder comes back empty on node a (a later bind mount, a script):
    // the engine let go of it, so nothing is sent to node b.
    fs::create_dir(a.data.join("shared")).expect("recreate the folder empty");
    // Long enough for a change to travel (about 10 s each way once connected).
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(
        fs::read_to_string(&copy).ok(),
        Some(content),
        "node b lost its copy"
    );
    let status = a.exec_json(&["status", "--json"]);
    assert_eq!(status["reload_fallbacks"], 0, "{status}");
}

#[test]
#[ignore = "needs docker and the real btsync: tests/docker/run runs it"]
fn real_btsync_del_by_reload_leaves_the_peers_files() {
    del_leaves_the_peers_files("reload");
}

#[test]
#[ignore = "needs docker and the real btsync: tests/docker/run runs it"]
fn real_btsync_del_by_restart_leaves_the_peers_files() {
    del_leaves_the_peers_files("restart");
}
