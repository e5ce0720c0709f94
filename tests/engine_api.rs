//! `syncbox::engine_api` and `syncbox::sync_state` against the real btsync
//! 1.4.111 (found as `common::real_engine` finds it; needs root).
//!
//! Each test re-runs itself (the test binary, `--exact NAME`) under
//! `unshare -n` with loopback up, so the engines and the client share a
//! network namespace with no route anywhere; tracker, relay, LAN search and
//! DHT are off, and the only known hosts are on loopback.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{REAL_ENGINE_VAR, TempDir, real_engine};
use serde_json::json;
use sha2::{Digest, Sha256};
use syncbox::engine_api::{ApiError, Client, Credentials, FolderPrefs, VERSION_1_4_111};
use syncbox::keys::Key;
use syncbox::procfs;
use syncbox::sync_state::{SyncWord, Unstick, holds_nothing, judge, peers_unnamed, random_wait};

/// Set in the copy of the test that runs inside the namespace.
const IN_NETNS: &str = "SYNCBOX_TEST_ENGINE_API_IN_NETNS";
const SIGTERM: i32 = 15;
/// Only stops a hung test; nothing here measures speed but the sync test.
const DEADLINE: Duration = Duration::from_secs(60);

const KEY_A: &str = "AZCC5D2ABDEORGMUTDLLU7EMRRPB672GO";
const KEY_B: &str = "AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA";

/// Run `body` with the real engine inside a network namespace of its own.
fn in_own_netns(test: &str, body: impl FnOnce(&Path)) {
    let Some(engine) = real_engine(test, true) else {
        return;
    };
    if std::env::var_os(IN_NETNS).is_some() {
        let links = Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .expect("run ip");
        let links = String::from_utf8_lossy(&links.stdout).into_owned();
        assert!(
            links.lines().count() == 1 && links.contains(": lo:"),
            "not in a namespace of its own: {links}"
        );
        body(&engine);
        return;
    }
    let exe = std::env::current_exe().expect("test executable");
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", r#"ip link set lo up && exec "$0" "$@""#])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .env(REAL_ENGINE_VAR, &engine)
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} failed in its namespace");
    // A filter that matched nothing would pass silently.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{test} did not run in its namespace"
    );
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// One engine in WebUI mode: no folder in its config, every folder added
/// over the interface gets the private defaults.
struct Engine {
    child: Child,
    dir: PathBuf,
    webui: SocketAddr,
    credentials: Credentials,
}

impl Engine {
    fn start(bin: &Path, dir: &Path, index: u16, known_hosts: &str) -> Engine {
        let credentials = Credentials::generate().expect("credentials");
        let webui: SocketAddr = format!("127.0.0.1:{}", 18890 + index)
            .parse()
            .expect("addr");
        let storage = dir.join("storage");
        fs::create_dir_all(&storage).expect("storage");
        let config = json!({
            "device_name": format!("engine{index}"),
            "storage_path": storage,
            "listening_port": 18880 + index,
            "check_for_updates": false,
            "use_upnp": false,
            "webui": {
                "listen": webui.to_string(),
                "login": credentials.login(),
                "password": credentials.expose_password(),
            },
            "folder_defaults.use_relay": false,
            "folder_defaults.use_tracker": false,
            "folder_defaults.use_dht": false,
            "folder_defaults.use_lan_broadcast": false,
            "folder_defaults.delete_to_trash": true,
            "folder_defaults.known_hosts": known_hosts,
        });
        fs::write(dir.join("btsync.conf"), config.to_string()).expect("config");
        let mut engine = Engine {
            child: Engine::spawn(bin, dir),
            dir: dir.to_owned(),
            webui,
            credentials,
        };
        engine.wait_for_interface();
        engine
    }

    fn spawn(bin: &Path, dir: &Path) -> Child {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("out.txt"))
            .expect("output file");
        let mut command = Command::new(bin);
        command
            .arg("--nodaemon")
            .arg("--config")
            .arg(dir.join("btsync.conf"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("output file"))
            .stderr(out);
        syncbox::sys::kill_child_with_parent(&mut command);
        command.spawn().expect("start the engine")
    }

    fn client(&self) -> Client {
        Client::new(self.webui, self.credentials.clone())
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn output(&self) -> String {
        fs::read_to_string(self.dir.join("out.txt")).unwrap_or_default()
    }

    fn wait_for_interface(&mut self) {
        let mut client = self.client();
        let deadline = Instant::now() + DEADLINE;
        loop {
            match client.version() {
                Ok(_) => return,
                Err(ApiError::Connect { .. }) if Instant::now() < deadline => {}
                Err(e) => panic!("the interface did not come up: {e}\n{}", self.output()),
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the engine exited ({status})\n{}", self.output());
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// TERM, as init stops it, and wait for it to exit.
    fn stop(&mut self) {
        syncbox::sys::send_signal(self.pid(), SIGTERM).expect("TERM");
        let deadline = Instant::now() + DEADLINE;
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "the engine ignored TERM");
            sleep(Duration::from_millis(100));
        }
    }

    fn restart(&mut self, bin: &Path) {
        self.stop();
        self.child = Engine::spawn(bin, &self.dir);
        self.wait_for_interface();
    }

    /// Is the folder's database open in the engine?
    fn holds_database(&self, key: &Key) -> bool {
        let id = key.folder_id().expect("an A key has a known folder id");
        let db = self.dir.join("storage").join(procfs::database_name(&id));
        procfs::open_files(self.pid())
            .expect("read /proc")
            .contains(db.as_os_str())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn version_is_1_4_111_and_the_license_is_agreed_on_fresh_storage() {
    in_own_netns(
        "version_is_1_4_111_and_the_license_is_agreed_on_fresh_storage",
        |bin| {
            let dir = TempDir::new("api-version");
            let mut engine = Engine::start(bin, dir.path(), 1, "127.0.0.1:1");
            // Engine::start already asked once, on a fresh storage: that
            // only works if the client agreed to the license.
            let mut client = engine.client();
            assert_eq!(client.version().expect("version"), VERSION_1_4_111);
            assert_eq!(VERSION_1_4_111, 17039471);

            // A restarted engine forgets sessions: the same client must
            // renew its own, and the license stays agreed.
            engine.restart(bin);
            assert_eq!(client.version().expect("after a restart"), 17039471);
            engine.stop();
        },
    );
}

#[test]
fn wrong_credentials_are_answered_401() {
    in_own_netns("wrong_credentials_are_answered_401", |bin| {
        let dir = TempDir::new("api-401");
        let engine = Engine::start(bin, dir.path(), 1, "127.0.0.1:1");
        let wrong =
            Credentials::new(engine.credentials.login(), "not-the-password").expect("credentials");
        let error = Client::new(engine.webui, wrong)
            .version()
            .expect_err("a wrong password");
        assert!(matches!(error, ApiError::Unauthorized { .. }), "{error:?}");
        let shown = error.to_string();
        assert!(shown.contains("answered 401"), "{shown}");
        assert!(!shown.contains("not-the-password"), "{shown}");
    });
}

#[test]
fn a_folder_is_taken_up_and_let_go_through_the_interface() {
    in_own_netns(
        "a_folder_is_taken_up_and_let_go_through_the_interface",
        |bin| {
            let dir = TempDir::new("api-folder");
            let engine = Engine::start(bin, dir.path(), 1, "127.0.0.1:1");
            let mut client = engine.client();
            let key = Key::parse(KEY_A).expect("key");
            // Files in it already: the engine refuses such a folder
            // unless told to take it anyway.
            let folder = dir.path().join("ns");
            fs::create_dir_all(&folder).expect("folder");
            fs::write(folder.join("kept.txt"), "kept").expect("file");

            client.add_folder(&folder, &key).expect("add");
            wait_until("the folder is taken up", || {
                procfs::read_folder_id(&folder).is_some() && engine.holds_database(&key)
            });
            assert_eq!(procfs::read_folder_id(&folder), key.folder_id());
            let folders = client.folders().expect("folders");
            assert_eq!(folders.len(), 1);
            assert_eq!(folders[0].path, folder);
            assert_eq!(folders[0].key, key);
            assert!(folders[0].peers.is_empty());

            // The config's folder defaults were applied at the add.
            assert_eq!(
                client.folder_prefs(&key).expect("prefs"),
                FolderPrefs::PRIVATE
            );
            let open = FolderPrefs {
                relay: true,
                search_lan: true,
                ..FolderPrefs::PRIVATE
            };
            client.set_folder_prefs(&key, &open).expect("set prefs");
            assert_eq!(client.folder_prefs(&key).expect("prefs"), open);
            client
                .set_folder_prefs(&key, &FolderPrefs::PRIVATE)
                .expect("set prefs back");
            assert_eq!(
                client.folder_prefs(&key).expect("prefs"),
                FolderPrefs::PRIVATE
            );

            assert_eq!(client.known_hosts(&key).expect("hosts"), ["127.0.0.1:1"]);
            client
                .add_known_host(&key, "127.0.0.1", 2)
                .expect("add host");
            assert_eq!(
                client.known_hosts(&key).expect("hosts"),
                ["127.0.0.1:1", "127.0.0.1:2"]
            );

            client.remove_folder(&key).expect("remove");
            wait_until("the folder is let go", || {
                procfs::read_folder_id(&folder).is_none() && !engine.holds_database(&key)
            });
            assert!(client.folders().expect("folders").is_empty());
            assert_eq!(
                fs::read_to_string(folder.join("kept.txt")).expect("files stay"),
                "kept"
            );
        },
    );
}

#[test]
fn refusals_are_told_apart() {
    in_own_netns("refusals_are_told_apart", |bin| {
        let dir = TempDir::new("api-refusals");
        let engine = Engine::start(bin, dir.path(), 1, "127.0.0.1:1");
        let mut client = engine.client();
        let a = Key::parse(KEY_A).expect("key");
        let b = Key::parse(KEY_B).expect("key");
        let first = dir.path().join("first");
        let second = dir.path().join("second");
        client.add_folder(&first, &a).expect("add");

        let shown = |error: &ApiError| {
            let text = error.to_string();
            assert!(!text.contains(KEY_A) && !text.contains(KEY_B), "{text}");
            assert!(
                !text.contains("token") && !text.contains("secret="),
                "{text}"
            );
            text
        };

        let error = client.add_folder(&first, &a).expect_err("again");
        assert!(
            matches!(&error, ApiError::FolderAlreadyAdded { path } if *path == first),
            "{error:?}"
        );
        shown(&error);

        let error = client.add_folder(&second, &a).expect_err("same key");
        assert!(
            matches!(&error, ApiError::KeyInUse { path, other } if *path == second && *other == first),
            "{error:?}"
        );
        shown(&error);

        // The read-only form opens the same folder.
        let read_only = match a.read_only_form() {
            syncbox::keys::ReadOnlyForm::Key(key) => key,
            other => panic!("an A key has a B form: {other:?}"),
        };
        let error = client.add_folder(&second, &read_only).expect_err("B form");
        assert!(matches!(&error, ApiError::KeyInUse { .. }), "{error:?}");

        let error = client.add_folder(&first, &b).expect_err("same path");
        assert!(
            matches!(&error, ApiError::PathInUse { path } if *path == first),
            "{error:?}"
        );
        shown(&error);

        let file = dir.write("a-file", b"not a folder");
        let error = client.add_folder(&file, &b).expect_err("a file");
        assert!(
            matches!(&error, ApiError::CannotOpenFolder { .. }),
            "{error:?}"
        );
        shown(&error);
        let error = client
            .add_folder(&file.join("under"), &b)
            .expect_err("under a file");
        assert!(
            matches!(&error, ApiError::CannotOpenFolder { .. }),
            "{error:?}"
        );

        // Nothing was added by any of the refusals.
        let folders = client.folders().expect("folders");
        assert_eq!(folders.len(), 1);
        assert!(!second.exists());

        // Per-folder actions with a key the engine has no folder for.
        let error = client.known_hosts(&b).expect_err("no folder");
        assert!(matches!(&error, ApiError::NoSuchFolder { .. }), "{error:?}");
        shown(&error);
        let error = client.folder_prefs(&b).expect_err("no folder");
        assert!(matches!(&error, ApiError::NoSuchFolder { .. }), "{error:?}");
        let error = client
            .set_folder_prefs(&b, &FolderPrefs::PRIVATE)
            .expect_err("no folder");
        assert!(matches!(&error, ApiError::NoSuchFolder { .. }), "{error:?}");
        let error = client
            .add_known_host(&b, "127.0.0.1", 2)
            .expect_err("no folder");
        assert!(matches!(&error, ApiError::NoSuchFolder { .. }), "{error:?}");
        // removefolder answers the same for a key it never had.
        client.remove_folder(&b).expect("remove what is not there");

        // A missing directory is made, parents too.
        let deep = dir.path().join("made/by/the/engine");
        client.add_folder(&deep, &b).expect("add a missing path");
        wait_until("the engine made it", || {
            procfs::read_folder_id(&deep).is_some()
        });
    });
}

/// sha256 of every regular file under `root` (`.sync` left out), by path.
fn digests(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(entries) = fs::read_dir(root) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == ".sync" {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            if let Ok(bytes) = fs::read(&path) {
                out.insert(
                    path.strip_prefix(root).expect("under").to_owned(),
                    Sha256::digest(bytes).to_vec(),
                );
            }
        } else if meta.is_dir() {
            for (sub, digest) in digests(&path) {
                out.insert(path.strip_prefix(root).expect("under").join(sub), digest);
            }
        }
    }
    out
}

#[test]
fn two_engines_sync_and_the_judgement_is_never_early() {
    in_own_netns("two_engines_sync_and_the_judgement_is_never_early", |bin| {
        let dir = TempDir::new("api-sync");
        let (sender_dir, receiver_dir) = (dir.path().join("sender"), dir.path().join("receiver"));
        let sender = Engine::start(bin, &sender_dir, 1, "127.0.0.1:18882");
        let receiver = Engine::start(bin, &receiver_dir, 2, "127.0.0.1:18881");
        let key = Key::parse(KEY_A).expect("key");

        let source = sender_dir.join("data");
        fs::create_dir_all(source.join("sub")).expect("source");
        for i in 0..20 {
            let place = if i % 4 == 0 { "sub/" } else { "" };
            fs::write(
                source.join(format!("{place}small-{i}.txt")),
                format!("file {i}\n").repeat(i + 1),
            )
            .expect("small file");
        }
        let mut big = vec![0u8; 5 * 1024 * 1024];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for byte in big.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        fs::write(source.join("big.bin"), &big).expect("big file");
        let want = digests(&source);
        assert_eq!(want.len(), 21);

        let mut sender_client = sender.client();
        sender_client
            .add_folder(&source, &key)
            .expect("add on the sender");
        let target = receiver_dir.join("data");
        let mut client = receiver.client();
        let since = now();
        let started = Instant::now();
        client
            .add_folder(&target, &key)
            .expect("add on the receiver");

        let mut truth_at = None;
        let mut synced_at = None;
        let mut timeline = Vec::new();
        let mut last_line = String::new();
        // What init does on each node (src/supervisor/webui.rs): a folder
        // whose peers all stay unnamed is taken up again. 1.4.111 never
        // starts the first exchange on its own in about 1 run in 50.
        let mut unstick = [Unstick::new(random_wait()), Unstick::new(random_wait())];
        while started.elapsed() < Duration::from_secs(240) {
            let folders = client.folders().expect("folders");
            let folder = folders.iter().find(|f| f.key == key).expect("the folder");
            let judged = judge(folder, since);
            let elapsed = started.elapsed().as_secs_f64();
            for (side, (node, path)) in [(&mut sender_client, &source), (&mut client, &target)]
                .into_iter()
                .enumerate()
            {
                let watch = &mut unstick[side];
                let folders = node.folders().expect("folders");
                let unnamed = folders
                    .iter()
                    .find(|f| f.key == key)
                    .is_some_and(peers_unnamed);
                let looked = Instant::now();
                // As init: only a folder with nothing in it (never the sender's).
                watch.look(unnamed && holds_nothing(path), looked);
                if watch.due(looked) {
                    let n = watch.taken_up_again(random_wait());
                    let who = ["sender", "receiver"][side];
                    println!(
                        "+{elapsed:.1} s: the {who}'s peer stayed unnamed: folder taken up again ({n})"
                    );
                    timeline.push(format!("+{elapsed:6.1} s  {who}: taken up again ({n})"));
                    node.remove_folder(&key).expect("remove for the retake");
                    node.add_folder(path, &key).expect("add again");
                }
            }
            let true_now = digests(&target) == want;
            if true_now && truth_at.is_none() {
                truth_at = Some(elapsed);
            }
            let line = format!(
                "{} online {}/{} files_left {:?} bytes_left {:?} last_sync {} truth {}",
                judged.word.as_str(),
                judged.peers_online,
                judged.peers_known,
                judged.files_left,
                judged.bytes_left,
                judged.last_sync.map_or("never".to_owned(), |t| format!(
                    "since+{}",
                    t as i64 - since as i64
                )),
                true_now,
            );
            if line != last_line {
                timeline.push(format!("+{elapsed:6.1} s  {line}"));
                last_line = line;
            }
            if judged.word == SyncWord::Synced {
                // Checked again now that it says so, files and all.
                assert_eq!(
                    digests(&target),
                    want,
                    "judge() said synced before the files were all there:\n{}",
                    timeline.join("\n")
                );
                synced_at = Some(elapsed);
                break;
            }
            if let Some(truth) = truth_at {
                assert!(
                    elapsed - truth < 120.0,
                    "not synced 120 s after the files were all there:\n{}",
                    timeline.join("\n")
                );
            }
            sleep(Duration::from_secs(1));
        }
        println!(
            "timeline (receiver, since the add):\n{}",
            timeline.join("\n")
        );
        let (truth, synced) = (
            truth_at.expect("the files never all arrived"),
            synced_at.expect("judge() never said synced"),
        );
        println!(
            "files all there (sha256) at +{truth:.1} s; judge() said synced at +{synced:.1} s ({:.1} s after)",
            synced - truth
        );
        assert!(synced >= truth);
    });
}
