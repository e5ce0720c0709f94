//! The Docker volume plugin init serves (`BTSYNC_VOLUME_PLUGIN`), spoken to
//! over its raw socket the way Docker's plugin client does, with init
//! running the stand-in engine as a child subreaper (no root needed). The
//! real daemon is driven in tests/docker.rs.
//!
//! Deadlines are generous and only stop a hung test; no assertion depends
//! on speed.

mod common;
#[path = "support/harness.rs"]
mod harness;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use harness::*;
use serde_json::{Value, json};

/// The data root as the host sees it: init runs on the host here, so it is
/// the data root's own path (init refuses a host path the data root is not
/// a bind mount of).
fn host_path(sandbox: &Sandbox) -> PathBuf {
    fs::canonicalize(sandbox.data()).expect("data root")
}

/// Where Docker is told to find namespace `ns`.
fn mountpoint(sandbox: &Sandbox, ns: &str) -> String {
    host_path(sandbox)
        .join(ns)
        .to_str()
        .expect("utf-8")
        .to_owned()
}

/// A sandbox whose init serves the plugin at `plugins/syncbox-test.sock`.
fn plugin_sandbox(label: &str) -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::new(label);
    let plugins = sandbox.root.join("plugins");
    fs::create_dir_all(&plugins).expect("plugins dir");
    let socket = plugins.join("syncbox-test.sock");
    let host = host_path(&sandbox);
    let sandbox = sandbox
        .with_env("BTSYNC_VOLUME_PLUGIN", &socket)
        .with_env("BTSYNC_HOST_PATH", host);
    (sandbox, socket)
}

/// Send raw bytes, read the whole reply (the server closes after one).
fn raw(socket: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).expect("connect to the plugin");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    // The server may answer (and close) before taking all of an oversized request.
    let _ = stream.write_all(request);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// (HTTP status, JSON body) of a reply.
fn parse_reply(reply: &str) -> (u16, Value) {
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP reply: {reply:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head:?}"));
    assert!(
        head.contains("Content-Type: application/vnd.docker.plugins.v1.2+json"),
        "{head}"
    );
    (status, serde_json::from_str(body).expect("JSON body"))
}

/// POST `body` to `endpoint` as Docker does.
fn call(socket: &Path, endpoint: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let request = format!(
        "POST {endpoint} HTTP/1.1\r\nHost: plugin\r\nUser-Agent: Go-http-client/1.1\r\n\
         Content-Length: {}\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n\r\n{body}",
        body.len()
    );
    parse_reply(&raw(socket, request.as_bytes()))
}

/// The Err of a 200 reply ("" on success).
fn err_of(socket: &Path, endpoint: &str, body: &Value) -> String {
    let (status, reply) = call(socket, endpoint, body);
    assert_eq!(status, 200, "{endpoint} {body}: {reply}");
    reply["Err"].as_str().expect("Err is a string").to_owned()
}

fn keygen(sandbox: &Sandbox) -> String {
    let out = sandbox.run(&["keygen"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn wait_for_socket(socket: &Path, sandbox: &Sandbox) {
    wait_until(
        "init serves the plugin socket",
        || UnixStream::connect(socket).is_ok(),
        || sandbox.context(),
    );
}

#[test]
fn create_mount_remove_follow_add_and_del() {
    let (sandbox, socket) = plugin_sandbox("plugin-flow");
    let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    wait_for_socket(&socket, &sandbox);
    let meta = fs::symlink_metadata(&socket).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    assert_eq!(
        call(&socket, "/Plugin.Activate", &Value::Null),
        (200, json!({"Implements": ["VolumeDriver"]}))
    );
    assert_eq!(
        call(&socket, "/VolumeDriver.Capabilities", &Value::Null),
        (200, json!({"Capabilities": {"Scope": "local"}}))
    );

    // Create = add: when it answers, the engine runs with the namespace.
    assert_eq!(
        err_of(
            &socket,
            "/VolumeDriver.Create",
            &json!({"Name": "alpha", "Opts": {}})
        ),
        ""
    );
    assert!(sandbox.folder("alpha").is_dir());
    assert_eq!(init.status()["engine"]["folders"], json!(["alpha"]));

    let key = keygen(&sandbox);
    let create_beta = json!({"Name": "beta", "Opts": {"token": key, "read-only": "true"}});
    assert_eq!(err_of(&socket, "/VolumeDriver.Create", &create_beta), "");
    // Again with the same key: nothing to do; with another: refused as `add` refuses.
    assert_eq!(err_of(&socket, "/VolumeDriver.Create", &create_beta), "");
    let other = keygen(&sandbox);
    let refused = err_of(
        &socket,
        "/VolumeDriver.Create",
        &json!({"Name": "beta", "Opts": {"secret": other}}),
    );
    let add_says = sandbox.run(&["add", "--token", &other, "beta"]);
    assert_eq!(add_says.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&add_says.stderr).contains(&refused),
        "{refused:?} vs {add_says:?}"
    );
    assert!(!refused.contains(&other));
    // beta's key under another name: the engine syncs one folder per key.
    let second_name = err_of(
        &socket,
        "/VolumeDriver.Create",
        &json!({"Name": "betacopy", "Opts": {"token": key}}),
    );
    assert!(
        second_name.contains("is the key of namespace beta on this node"),
        "{second_name}"
    );
    assert!(!second_name.contains(&key) && !sandbox.folder("betacopy").exists());

    // token-file: the key from a file that init reads, so that `docker
    // volume inspect` shows a path, not the key.
    let keys = sandbox.root.join("keys");
    fs::create_dir_all(&keys).expect("keys dir");
    let file_key = keygen(&sandbox);
    let key_file = keys.join("epsilon.key");
    fs::write(&key_file, format!("{file_key}\n")).expect("key file");
    let create_epsilon = json!({"Name": "epsilon", "Opts": {"token-file": key_file}});
    assert_eq!(err_of(&socket, "/VolumeDriver.Create", &create_epsilon), "");
    let secret = sandbox.run(&["secret", "epsilon"]);
    assert_eq!(String::from_utf8_lossy(&secret.stdout).trim(), file_key);

    // Every bad input: a message, and nothing created.
    let bad_key = "A1CDEFGHIJKLMNOPQRSTUVWXYZ234567Q";
    let garbage = keys.join("garbage.key");
    fs::write(&garbage, format!("{bad_key}\n")).expect("garbage file");
    let missing = keys.join("missing.key");
    for (opts, expected) in [
        (json!({"token": bad_key}), "invalid key"),
        (json!({"token": key, "secret": key}), "give the key once"),
        (
            json!({"token": key, "token-file": key_file}),
            "give the key once",
        ),
        (json!({"token-file": "epsilon.key"}), "absolute path"),
        (json!({"token-file": missing}), "no such file"),
        (json!({"token-file": keys}), "not a regular file"),
        (json!({"token-file": garbage}), "invalid key"),
        (json!({"size": "1G"}), "unknown option \"size\""),
        (json!({"read-only": "yes"}), "read-only=true"),
        (json!({"cluster": "true"}), "cluster key"),
        (json!({"token": 7}), "must be a string"),
    ] {
        let message = err_of(
            &socket,
            "/VolumeDriver.Create",
            &json!({"Name": "gamma", "Opts": opts}),
        );
        assert!(message.contains(expected), "{opts}: {message}");
        assert!(
            !message.contains(bad_key) && !message.contains(&key) && !message.contains(&file_key),
            "{message}"
        );
        assert!(!sandbox.folder("gamma").exists(), "{opts}");
    }
    let bad_name = err_of(&socket, "/VolumeDriver.Create", &json!({"Name": "No_Caps"}));
    let add_says = sandbox.run(&["add", "No_Caps"]);
    assert_eq!(add_says.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&add_says.stderr).contains(&bad_name),
        "{bad_name:?} vs {add_says:?}"
    );
    assert_eq!(
        init.status()["engine"]["folders"],
        json!(["alpha", "beta", "epsilon"])
    );

    // Get/List show every namespace, also one added with `add`; never a key.
    harness::add(&sandbox, "delta");
    let (status, list) = call(&socket, "/VolumeDriver.List", &json!({}));
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["Volumes"]
        .as_array()
        .expect("Volumes")
        .iter()
        .filter_map(|v| v["Name"].as_str())
        .collect();
    assert_eq!(names, ["alpha", "beta", "delta", "epsilon"]);
    assert!(!list.to_string().contains(&key));
    assert!(!list.to_string().contains(&file_key));
    let (_, got) = call(&socket, "/VolumeDriver.Get", &json!({"Name": "beta"}));
    // No peer: `unknown` in either mode (config-file mode knows no peer
    // figures at all; WebUI mode counts none).
    let peers = if init.status()["engine_api"] == "webui" {
        json!(0)
    } else {
        json!(null)
    };
    assert_eq!(
        got,
        json!({"Volume": {"Name": "beta", "Mountpoint": mountpoint(&sandbox, "beta"), "Status": {
            "access": "read-only", "key_origin": "given", "declared": "local", "mounts": 0,
            "sync": {"state": "unknown", "peers_online": peers, "peers_known": peers,
                "files_left": null, "bytes_left": null, "last_sync": null},
            // No wait of its own, none from BTSYNC_VOLUME_WAIT: Mount does not wait.
            "wait": 0.0}},
            "Err": ""})
    );
    let missing = err_of(&socket, "/VolumeDriver.Get", &json!({"Name": "nope"}));
    assert!(missing.contains("no such namespace"), "{missing}");
    assert!(err_of(&socket, "/VolumeDriver.Path", &json!({"Name": "nope"})).contains("nope"));
    assert_eq!(
        call(&socket, "/VolumeDriver.Path", &json!({"Name": "alpha"})).1,
        json!({"Mountpoint": mountpoint(&sandbox, "alpha"), "Err": ""})
    );

    // Mounts are counted per ID; Remove of a mounted volume is refused,
    // also after init restarted.
    for id in ["c1", "c2"] {
        assert_eq!(
            call(
                &socket,
                "/VolumeDriver.Mount",
                &json!({"Name": "alpha", "ID": id})
            )
            .1,
            json!({"Mountpoint": mountpoint(&sandbox, "alpha"), "Err": ""})
        );
    }
    let mount_missing = err_of(
        &socket,
        "/VolumeDriver.Mount",
        &json!({"Name": "nope", "ID": "c3"}),
    );
    assert!(
        mount_missing.contains("no such namespace"),
        "{mount_missing}"
    );
    let in_use = err_of(&socket, "/VolumeDriver.Remove", &json!({"Name": "alpha"}));
    assert!(in_use.contains("in use by 2 containers"), "{in_use}");
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
    drop(init);
    assert!(!socket.exists(), "init removes its socket when it stops");

    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    wait_for_socket(&socket, &sandbox);
    assert!(
        err_of(&socket, "/VolumeDriver.Remove", &json!({"Name": "alpha"}))
            .contains("in use by 2 containers")
    );
    assert_eq!(
        err_of(
            &socket,
            "/VolumeDriver.Unmount",
            &json!({"Name": "alpha", "ID": "c1"})
        ),
        ""
    );
    assert!(
        err_of(&socket, "/VolumeDriver.Remove", &json!({"Name": "alpha"}))
            .contains("in use by 1 container;")
    );
    assert_eq!(
        err_of(
            &socket,
            "/VolumeDriver.Unmount",
            &json!({"Name": "alpha", "ID": "c2"})
        ),
        ""
    );
    fs::write(sandbox.folder("alpha").join("file"), b"x").expect("write");
    // Remove = del: unregistered, and the local copy deleted once the engine let go.
    assert_eq!(
        err_of(&socket, "/VolumeDriver.Remove", &json!({"Name": "alpha"})),
        ""
    );
    assert!(!sandbox.folder("alpha").exists());
    assert_eq!(
        init.status()["engine"]["folders"],
        json!(["beta", "delta", "epsilon"])
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

#[test]
fn hostile_clients_do_not_stop_init_or_other_clients() {
    let (sandbox, socket) = plugin_sandbox("plugin-hostile");
    // A socket a killed init left behind is replaced.
    drop(UnixListener::bind(&socket).expect("stale socket"));
    assert!(socket.exists());
    let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    wait_for_socket(&socket, &sandbox);

    let (status, reply) = call(&socket, "/VolumeDriver.Snapshot", &json!({}));
    assert_eq!(status, 404, "{reply}");
    assert!(
        reply["Err"]
            .as_str()
            .is_some_and(|e| e.contains("unknown endpoint"))
    );

    let garbage = "{\"Name\": ";
    let request = format!(
        "POST /VolumeDriver.Create HTTP/1.1\r\nContent-Length: {}\r\n\r\n{garbage}",
        garbage.len()
    );
    let (status, reply) = parse_reply(&raw(&socket, request.as_bytes()));
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["Err"]
            .as_str()
            .is_some_and(|e| e.contains("malformed JSON"))
    );

    let (status, _) = parse_reply(&raw(
        &socket,
        b"GET /Plugin.Activate HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    ));
    assert_eq!(status, 405);
    let (status, _) = parse_reply(&raw(&socket, b"this is not HTTP\r\n\r\n"));
    assert_eq!(status, 400);
    // A Content-Length is digits only: a sign, a space or hex is refused.
    for length in ["+5", "-0", "5 5", "0x5", ""] {
        let request =
            format!("POST /Plugin.Activate HTTP/1.1\r\nContent-Length: {length}\r\n\r\n{{}}xyz");
        let (status, _) = parse_reply(&raw(&socket, request.as_bytes()));
        assert_eq!(status, 400, "Content-Length: {length:?}");
    }

    // An oversized body is refused from its Content-Length, unread.
    let (status, _) = parse_reply(&raw(
        &socket,
        b"POST /VolumeDriver.Create HTTP/1.1\r\nContent-Length: 104857600\r\n\r\n{",
    ));
    assert_eq!(status, 413);
    // An endless head is cut off.
    let mut endless = b"POST /Plugin.Activate HTTP/1.1\r\nX: ".to_vec();
    endless.extend(std::iter::repeat_n(b'a', 1 << 20));
    let (status, _) = parse_reply(&raw(&socket, &endless));
    assert_eq!(status, 431);

    // Clients that never finish: one announces a body it never sends, the
    // others connect and say nothing.
    let mut silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&socket).expect("connect"))
        .collect();
    let mut no_body = UnixStream::connect(&socket).expect("connect");
    no_body
        .write_all(b"POST /VolumeDriver.Create HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"Na")
        .expect("write");

    // Meanwhile 100 clients at once all get their answer, and init answers
    // `status` and applies an add.
    let workers: Vec<_> = (0..100)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let endpoint = if i % 2 == 0 {
                    "/Plugin.Activate"
                } else {
                    "/VolumeDriver.List"
                };
                call(&socket, endpoint, &json!({})).0
            })
        })
        .collect();
    // Nothing to sync yet: init answers while idle; the add starts the engine.
    assert_eq!(init.status()["engine"]["state"], "idle");
    harness::add(&sandbox, "during");
    for worker in workers {
        assert_eq!(worker.join().expect("client thread"), 200);
    }
    assert_eq!(
        init.status()["engine"]["folders"],
        json!(["during"]),
        "{}",
        sandbox.context()
    );

    // The one that never sent its body is told so (408) and closed; so are
    // the silent ones.
    no_body.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut reply = String::new();
    let _ = no_body.read_to_string(&mut reply);
    assert_eq!(parse_reply(&reply).0, 408);
    for stream in &mut silent {
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
    }
    drop(silent);
    // A flood of connections over the limit is shed, not queued forever.
    let flood: Vec<UnixStream> = (0..300)
        .filter_map(|_| UnixStream::connect(&socket).ok())
        .collect();
    assert_eq!(init.status()["engine"]["state"], "running");
    drop(flood);
    wait_until(
        "the plugin answers again after the flood",
        || {
            UnixStream::connect(&socket).is_ok()
                && call(&socket, "/Plugin.Activate", &json!({})).0 == 200
        },
        || sandbox.context(),
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

/// `docker rm -f` and `docker kill` end init with SIGKILL, which leaves no
/// chance to remove the socket: it stays, with nobody listening. The next
/// init must take it over, not refuse to start (docs/deploy.md says so).
#[test]
fn a_socket_left_by_a_killed_init_is_taken_over_by_the_next_init() {
    let (sandbox, socket) = plugin_sandbox("plugin-killed");
    let init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    wait_for_socket(&socket, &sandbox);
    let killed = init.pid;
    // Dropping an init that has not exited sends it SIGKILL and reaps it.
    drop(init);
    assert!(
        proc_stat(killed).is_none(),
        "init {killed} outlived SIGKILL"
    );
    let left = fs::symlink_metadata(&socket).expect("SIGKILL leaves the socket behind");
    assert!(left.file_type().is_socket());
    let refused = UnixStream::connect(&socket).expect_err("nobody serves the socket left behind");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    wait_for_socket(&socket, &sandbox);
    assert_eq!(
        call(&socket, "/Plugin.Activate", &json!({})),
        (200, json!({"Implements": ["VolumeDriver"]}))
    );
    assert!(
        !init.stderr().contains("another process already serves"),
        "{}",
        init.stderr()
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
    assert!(!socket.exists(), "a clean stop removes the socket");
}

#[test]
fn plugin_needs_an_absolute_socket_and_the_host_path() {
    let sandbox = Sandbox::new("plugin-env");
    let socket = sandbox.root.join("syncbox-test.sock");
    let host = host_path(&sandbox);
    let host = host.to_str().expect("utf-8");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("BTSYNC_VOLUME_PLUGIN", socket.to_str().expect("utf-8"))],
            "BTSYNC_HOST_PATH",
        ),
        (
            &[
                ("BTSYNC_VOLUME_PLUGIN", "plugins/syncbox.sock"),
                ("BTSYNC_HOST_PATH", host),
            ],
            "absolute",
        ),
        (
            &[
                ("BTSYNC_VOLUME_PLUGIN", "/run/docker/plugins/syncbox"),
                ("BTSYNC_HOST_PATH", host),
            ],
            "NAME.sock",
        ),
    ];
    for (env, expected) in cases {
        let mut init = Init::start(&sandbox, Mode::Subreaper, env);
        assert_eq!(init.wait_exit(), 2, "{env:?}: {}", init.stderr());
        let stderr = init.stderr();
        assert!(
            stderr.contains("BTSYNC_VOLUME_PLUGIN") && stderr.contains(expected),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(sandbox.starts().is_empty(), "no engine was started");
        assert!(!socket.exists());
    }
}

#[test]
fn deploy_doc_shows_the_compose_example_exactly() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = fs::read_to_string(repo.join("examples/docker-compose.volume-plugin.yml"))
        .expect("the example");
    let deploy = fs::read_to_string(repo.join("docs/deploy.md")).expect("docs/deploy.md");
    assert!(
        deploy.contains(&format!("```yaml\n{example}```\n")),
        "docs/deploy.md must show examples/docker-compose.volume-plugin.yml exactly"
    );
    // The file is what tests/docker.rs runs with docker-compose; its key is
    // a file in the btsync container, the one the docs mount there.
    let key_file = "/run/secrets/syncbox/gitlab.key";
    assert!(
        example.contains("driver: syncbox") && example.contains(&format!("token-file: {key_file}"))
    );
    assert!(deploy.contains("-v /etc/syncbox:/run/secrets/syncbox:ro"));
}

/// A read-only volume from a D key: the E key comes from the real engine's
/// `--get-ro-secret`, run by a plugin thread of init while init's reaper
/// takes every child it does not own. That child is owned: every Create
/// succeeds and registers the engine's own E key.
#[test]
fn real_engine_read_only_volumes_from_d_keys_through_init() {
    let test = "real_engine_read_only_volumes_from_d_keys_through_init";
    let Some(btsync) = real_engine_bin(test) else {
        return;
    };
    let (sandbox, socket) = plugin_sandbox("plugin-dkey");
    let env = offline_engine_env(&btsync);
    let mut init = Init::start_idle(&sandbox, Mode::Pid1Offline, &env);
    wait_for_socket(&socket, &sandbox);
    let mut names = Vec::new();
    for n in 0..5 {
        let d_key = format!("D{}", &keygen(&sandbox)[1..]);
        let engine_says = std::process::Command::new("unshare")
            .args(["--net", "--", &btsync, "--get-ro-secret", &d_key])
            .output()
            .expect("btsync --get-ro-secret");
        let e_key = String::from_utf8_lossy(&engine_says.stdout)
            .trim()
            .to_owned();
        assert!(
            e_key.starts_with('E') && e_key.len() == 59,
            "{engine_says:?}"
        );
        let ns = format!("vault{n}");
        let create = json!({"Name": ns, "Opts": {"token": d_key, "read-only": "true"}});
        assert_eq!(
            err_of(&socket, "/VolumeDriver.Create", &create),
            "",
            "{}",
            sandbox.context()
        );
        let secret = sandbox.run(&["secret", &ns]);
        assert_eq!(
            String::from_utf8_lossy(&secret.stdout).trim(),
            e_key,
            "{secret:?}"
        );
        names.push(ns);
    }
    assert_eq!(init.status()["engine"]["folders"], json!(names));
    assert!(
        !init.stderr().contains("No child processes"),
        "{}",
        init.stderr()
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

/// What the plugin could not record on disk does not count in memory
/// either: a Mount whose count could not be saved fails and never blocks
/// Remove; an Unmount that could not be saved fails and still counts, as
/// the file does, so a restart changes nothing.
#[test]
fn mount_counts_change_only_once_they_are_on_disk() {
    let (sandbox, socket) = plugin_sandbox("plugin-persist");
    let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    wait_for_socket(&socket, &sandbox);
    let create = json!({"Name": "alpha", "Opts": {}});
    assert_eq!(err_of(&socket, "/VolumeDriver.Create", &create), "");
    let mounts_of = |socket: &Path| {
        call(socket, "/VolumeDriver.Get", &json!({"Name": "alpha"})).1["Volume"]["Status"]["mounts"]
            .clone()
    };
    let state = sandbox.data().join(".btsync");
    let counts_file = state.join("volume-mounts.json");
    // A directory where init's temporary file goes: every save fails, and
    // the file already on disk stays as it is.
    let blocker = state.join(format!(".tmp.volume-mounts.json.{}", init.pid));
    fs::create_dir(&blocker).expect("block the save");
    let mount = |id: &str| json!({"Name": "alpha", "ID": id});
    let failed = err_of(&socket, "/VolumeDriver.Mount", &mount("c1"));
    assert!(failed.contains("cannot record the mount count"), "{failed}");
    assert_eq!(mounts_of(&socket), json!(0));
    assert!(!counts_file.exists());

    fs::remove_dir(&blocker).expect("unblock");
    assert_eq!(err_of(&socket, "/VolumeDriver.Mount", &mount("c2")), "");
    let recorded = fs::read_to_string(&counts_file).expect("counts file");
    assert!(
        recorded.contains("c2") && !recorded.contains("c1"),
        "{recorded}"
    );
    fs::create_dir(&blocker).expect("block the save");
    let failed = err_of(&socket, "/VolumeDriver.Unmount", &mount("c2"));
    assert!(failed.contains("cannot record the mount count"), "{failed}");
    assert_eq!(mounts_of(&socket), json!(1));
    assert_eq!(fs::read_to_string(&counts_file).expect("kept"), recorded);
    let refused = err_of(&socket, "/VolumeDriver.Remove", &json!({"Name": "alpha"}));
    assert!(refused.contains("in use by 1 container"), "{refused}");

    // After a restart memory is what the file says: still one mount.
    fs::remove_dir(&blocker).expect("unblock");
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
    drop(init);
    let mut init = Init::start_running(&sandbox, Mode::Subreaper, &[]);
    wait_for_socket(&socket, &sandbox);
    assert_eq!(mounts_of(&socket), json!(1));
    assert_eq!(err_of(&socket, "/VolumeDriver.Unmount", &mount("c2")), "");
    assert_eq!(mounts_of(&socket), json!(0));
    assert_eq!(
        err_of(&socket, "/VolumeDriver.Remove", &json!({"Name": "alpha"})),
        ""
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

/// A volume's wait as `docker volume inspect` shows it.
fn status_of(socket: &Path, ns: &str) -> Value {
    let (status, reply) = call(socket, "/VolumeDriver.Get", &json!({ "Name": ns }));
    assert_eq!(status, 200, "{reply}");
    reply["Volume"]["Status"].clone()
}

/// Issue 20, item 5: with a wait, Mount answers only once the namespace is
/// `synced` (the `wait` applet's rule, asked of init as `wait` asks it);
/// at the end of the wait it fails with what is left, and a failed Mount
/// does not count. `BTSYNC_VOLUME_WAIT` is the wait of volumes without one.
#[test]
fn mount_with_wait_answers_once_the_data_is_here() {
    let (sandbox, socket) = plugin_sandbox("plugin-wait");
    let peers = sandbox.root.join("peers.json");
    let sandbox = sandbox
        .with_env("BTSYNC_ENGINE_API", "webui")
        .with_env("STAND_IN_PEERS", &peers)
        .with_env("BTSYNC_VOLUME_WAIT", "2");
    let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    wait_for_socket(&socket, &sandbox);
    let create = json!({"Name": "beta", "Opts": {"wait": "60"}});
    assert_eq!(err_of(&socket, "/VolumeDriver.Create", &create), "");
    assert_eq!(status_of(&socket, "beta")["wait"], json!(60.0));
    let counts_file = sandbox.data().join(".btsync/volume-mounts.json");

    // A peer with files left: syncing, so the Mount goes on waiting.
    fs::write(
        &peers,
        json!({"beta": [{"isonline": true, "lastsynctime": 0, "downdiff": 1000, "downfiles": 3}]})
            .to_string(),
    )
    .expect("peers");
    let synced_written = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mount = {
        let (socket, synced_written) = (socket.clone(), synced_written.clone());
        std::thread::spawn(move || {
            let err = err_of(
                &socket,
                "/VolumeDriver.Mount",
                &json!({"Name": "beta", "ID": "c1"}),
            );
            (
                err,
                synced_written.load(std::sync::atomic::Ordering::SeqCst),
            )
        })
    };
    // Let the Mount see the peer syncing a few times before it catches up.
    std::thread::sleep(std::time::Duration::from_secs(3));
    // Raised before the file changes: a reply that finds it down came
    // before the namespace could be synced.
    synced_written.store(true, std::sync::atomic::Ordering::SeqCst);
    let later = syncbox::registry::now() + 5;
    fs::write(
        &peers,
        json!({"beta": [{"isonline": true, "lastsynctime": later, "downdiff": 0}]}).to_string(),
    )
    .expect("peers");
    let (err, after_synced) = mount.join().expect("the Mount thread");
    assert_eq!(err, "", "{}", sandbox.context());
    assert!(
        after_synced,
        "Mount answered before the namespace was synced"
    );
    assert_eq!(status_of(&socket, "beta")["mounts"], json!(1));

    // No peer, the driver-wide wait (2 s): refused with what is left, not counted.
    let create = json!({"Name": "gamma", "Opts": {}});
    assert_eq!(err_of(&socket, "/VolumeDriver.Create", &create), "");
    assert_eq!(status_of(&socket, "gamma")["wait"], json!(2.0));
    let failed = err_of(
        &socket,
        "/VolumeDriver.Mount",
        &json!({"Name": "gamma", "ID": "c2"}),
    );
    assert!(
        failed.contains("not here after 2s")
            && failed.contains("gamma: unknown, no peer online")
            && failed.contains("not mounted"),
        "{failed}"
    );
    assert_eq!(status_of(&socket, "gamma")["mounts"], json!(0));
    let counts = fs::read_to_string(&counts_file).expect("counts file");
    assert!(
        counts.contains("c1") && !counts.contains("c2") && !counts.contains("gamma"),
        "{counts}"
    );
    // Nothing holds it: it can be removed at once.
    assert_eq!(
        err_of(&socket, "/VolumeDriver.Remove", &json!({"Name": "gamma"})),
        ""
    );

    // `wait=0`: this volume does not wait, whatever the driver's default.
    let create = json!({"Name": "delta", "Opts": {"wait": "0"}});
    assert_eq!(err_of(&socket, "/VolumeDriver.Create", &create), "");
    let mount = json!({"Name": "delta", "ID": "c3"});
    assert_eq!(err_of(&socket, "/VolumeDriver.Mount", &mount), "");
    assert_eq!(err_of(&socket, "/VolumeDriver.Unmount", &mount), "");

    // Remove forgets the volume's wait; the file never held more than waits.
    let options_file = sandbox.data().join(".btsync/volume-options.json");
    let before: Value =
        serde_json::from_str(&fs::read_to_string(&options_file).expect("options")).expect("JSON");
    assert_eq!(before["volumes"]["beta"]["wait"], json!(60.0), "{before}");
    let unmount = json!({"Name": "beta", "ID": "c1"});
    assert_eq!(err_of(&socket, "/VolumeDriver.Unmount", &unmount), "");
    assert_eq!(
        err_of(&socket, "/VolumeDriver.Remove", &json!({"Name": "beta"})),
        ""
    );
    let after: Value =
        serde_json::from_str(&fs::read_to_string(&options_file).expect("options")).expect("JSON");
    assert_eq!(
        after,
        json!({"volumes": {"delta": {"wait": 0.0, "added": before["volumes"]["delta"]["added"]}}})
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
}

/// In config-file mode nothing tells whether the data is here: a Mount
/// with a wait fails with `wait`'s own message instead of hanging or
/// pretending. Bad waits are refused at Create, and nothing is created;
/// a bad `BTSYNC_VOLUME_WAIT` stops init (exit 2, one line).
#[test]
fn mount_with_wait_in_config_file_mode_says_it_cannot_tell() {
    let (sandbox, socket) = plugin_sandbox("plugin-wait-config");
    let sandbox = sandbox.config_file_mode();
    let mut init = Init::start_idle(&sandbox, Mode::Subreaper, &[]);
    wait_for_socket(&socket, &sandbox);
    for (wait, shown) in [
        ("abc", "\"abc\""),
        ("-1", "\"-1\""),
        ("1000", "\"1000\""),
        ("100.5", "\"100.5\""),
    ] {
        let create = json!({"Name": "alpha", "Opts": {"wait": wait}});
        let refused = err_of(&socket, "/VolumeDriver.Create", &create);
        assert!(
            refused.starts_with("option wait: ")
                && refused.contains(shown)
                && refused.contains("from 0 to 100"),
            "{wait}: {refused}"
        );
        assert!(!sandbox.folder("alpha").exists());
    }
    let key = keygen(&sandbox);
    let create = json!({"Name": "alpha", "Opts": {"token": key, "wait": "1"}});
    assert_eq!(err_of(&socket, "/VolumeDriver.Create", &create), "");
    let options = fs::read_to_string(sandbox.data().join(".btsync/volume-options.json"))
        .expect("options file");
    assert!(
        options.contains("alpha") && !options.contains(&key),
        "{options}"
    );

    let failed = err_of(
        &socket,
        "/VolumeDriver.Mount",
        &json!({"Name": "alpha", "ID": "c1"}),
    );
    let wait_says = sandbox.run(&["wait", "--timeout", "1", "alpha"]);
    assert_eq!(wait_says.status.code(), Some(1), "{wait_says:?}");
    let wait_says = String::from_utf8_lossy(&wait_says.stderr).into_owned();
    let reason = wait_says
        .trim()
        .strip_prefix("wait: ")
        .unwrap_or_else(|| panic!("{wait_says}"));
    assert!(reason.contains("config-file mode"), "{reason}");
    assert!(
        failed.contains(reason) && failed.contains("not mounted"),
        "{failed} vs {reason}"
    );
    assert_eq!(status_of(&socket, "alpha")["mounts"], json!(0));
    assert_eq!(
        err_of(&socket, "/VolumeDriver.Remove", &json!({"Name": "alpha"})),
        ""
    );
    init.signal(SIGTERM);
    assert_eq!(init.wait_exit(), 0);
    drop(init);

    for bad in ["abc", "-1", "101"] {
        let mut init = Init::start(&sandbox, Mode::Subreaper, &[("BTSYNC_VOLUME_WAIT", bad)]);
        assert_eq!(init.wait_exit(), 2, "{bad}: {}", init.stderr());
        let stderr = init.stderr();
        assert!(
            stderr.contains("BTSYNC_VOLUME_WAIT") && stderr.contains("from 0 to 100"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
