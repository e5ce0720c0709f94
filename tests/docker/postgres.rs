//! Issue 21: PostgreSQL moves to a second node and starts there untouched.
//!
//! The database runs in a FROM-scratch image of this host's Debian
//! PostgreSQL (tests/docker/postgres-image; user and group `postgres`,
//! 70:70), built once per run of this test binary and shared. Every postgres
//! container runs with `--network none` and the data directory bind-mounted
//! at /var/lib/postgresql/data; psql reaches the server through its unix
//! socket, in the same container (`docker exec`).
//!
//! `postgres_image_runs_in_scratch` proves the image alone. The move itself,
//! `real_btsync_postgres_moves_to_a_second_node`, runs the recipe of the
//! docs with the real engine: node 1 `add --owner=70:70 pg`, initdb and
//! postgres on `path --data pg`, 10,000 rows, a clean stop; node 2
//! `add --token=KEY --owner=70:70 --wait=600 pg`, then postgres on its own
//! `path --data pg` with no chown or chmod by anyone, and the rows are
//! there. Each command of the recipe is printed as it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::*;
use crate::sync_state::{engine_folders, two_nodes};

/// The user and group the image's postgres runs as (`postgres` in its
/// /etc/passwd and /etc/group), as `docker run -u` takes them.
pub const PG_USER: &str = "70:70";
pub const PG_UID: u32 = 70;
pub const PG_GID: u32 = 70;
/// Where the data directory is mounted in every postgres container (the
/// official postgres images' PGDATA).
pub const PGDATA: &str = "/var/lib/postgresql/data";
/// The rows the database holds.
const ROWS: u64 = 10_000;
/// The namespace that carries the database.
const NS: &str = "pg";
/// How long postgres may take to accept connections, or the engine to index
/// the folder postgres left behind.
const START_BOUND: Duration = Duration::from_secs(60);
const INDEX_BOUND: Duration = Duration::from_secs(180);

/// The postgres image, built once per run of this test binary by
/// tests/docker/postgres-image and shared by every test here; removed when
/// this process exits (`remove_image_at_exit`).
pub fn postgres_image() -> String {
    static BUILT: Mutex<Option<String>> = Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(tag) = built.as_ref() {
        return tag.clone();
    }
    let pid = std::process::id();
    let tag = format!("sbxt-{pid}-postgres:test");
    remove_image_at_exit(&tag);
    let context = work_dir().join(format!("context-postgres-{pid}"));
    let mut cmd = Command::new(Path::new(REPO).join("tests/docker/postgres-image"));
    cmd.arg("--tag")
        .arg(&tag)
        .arg("--context")
        .arg(&context)
        .env_remove("LD_LIBRARY_PATH");
    let out = run_with_deadline(&mut cmd, Duration::from_secs(300));
    let _ = fs::remove_dir_all(&context);
    assert!(
        out.status.success(),
        "tests/docker/postgres-image failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), tag);
    *built = Some(tag.clone());
    tag
}

/// `word` as a shell reads it back: as it is when it holds nothing the
/// shell treats specially, else in single quotes.
fn quoted(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=,@%+-".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `docker ARGS`, printed first as a shell command (the recipe).
fn shown(args: &[&str]) -> Output {
    let words: Vec<String> = args.iter().map(|a| quoted(a)).collect();
    println!("$ docker {}", words.join(" "));
    docker(args)
}

/// `-v DIR:/var/lib/postgresql/data`.
fn data_mount(data: &Path) -> String {
    format!("{}:{PGDATA}", data.display())
}

/// `docker run --rm` of the postgres image on `data`, as 70:70 with no
/// network: `command` after the image.
fn run_once(scope: &Scope, image: &str, what: &str, data: &Path, command: &[&str]) -> Output {
    let name = scope.container(what);
    let mount = data_mount(data);
    let mut args = vec![
        "run",
        "--rm",
        "--name",
        &name,
        "--network",
        "none",
        "-u",
        PG_USER,
        "-v",
        &mount,
        image,
    ];
    args.extend_from_slice(command);
    shown(&args)
}

/// initdb on `data` (a directory 70:70 can write to).
fn initdb(scope: &Scope, image: &str, data: &Path) {
    let out = run_once(
        scope,
        image,
        "initdb",
        data,
        &["initdb", "--encoding=UTF8", "--no-locale", "-D", PGDATA],
    );
    assert!(
        out.status.success(),
        "initdb on {} failed ({}):\n{}{}",
        data.display(),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `Database cluster state` of the data directory, as pg_controldata says.
fn cluster_state(scope: &Scope, image: &str, what: &str, data: &Path) -> String {
    let out = run_once(scope, image, what, data, &["pg_controldata", "-D", PGDATA]);
    assert!(
        out.status.success(),
        "pg_controldata on {}: {}",
        data.display(),
        text(&out.stderr)
    );
    let printed = text(&out.stdout);
    printed
        .lines()
        .find_map(|line| line.strip_prefix("Database cluster state:"))
        .map(|state| state.trim().to_owned())
        .unwrap_or_else(|| panic!("pg_controldata printed no cluster state: {printed}"))
}

/// A postgres server in a container of its own, on a bind-mounted data
/// directory.
struct Postgres {
    what: String,
    name: String,
    data: PathBuf,
}

impl Postgres {
    /// `docker run -d` postgres on `data`; returns once it answers psql.
    fn start(scope: &Scope, image: &str, what: &str, data: &Path) -> Postgres {
        let name = scope.container(what);
        let mount = data_mount(data);
        let out = shown(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "-u",
            PG_USER,
            "-v",
            &mount,
            image,
            "postgres",
            "-D",
            PGDATA,
        ]);
        assert!(
            out.status.success(),
            "docker run postgres on {}: {}",
            data.display(),
            text(&out.stderr)
        );
        let server = Postgres {
            what: what.to_owned(),
            name,
            data: data.to_owned(),
        };
        wait_for(
            &format!("postgres in {} to accept connections", server.name),
            START_BOUND,
            || {
                if server
                    .exec(&["psql", "-tA", "-c", "select 1"])
                    .status
                    .success()
                {
                    return Some(());
                }
                let running = docker_ok(&["inspect", "-f", "{{.State.Running}}", &server.name]);
                assert_eq!(
                    running.trim(),
                    "true",
                    "postgres on {} exited before it accepted connections:\n{}",
                    server.data.display(),
                    server.logs()
                );
                None
            },
        );
        server
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    }

    /// psql with each of `commands` as a `-c`, stopping at the first error:
    /// what it printed, unaligned and without headers.
    fn psql(&self, commands: &[&str]) -> String {
        let mut args = vec![
            "exec",
            self.name.as_str(),
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
        ];
        for command in commands {
            args.extend_from_slice(&["-c", command]);
        }
        let out = shown(&args);
        assert!(
            out.status.success(),
            "psql in {}: {}\n{}",
            self.name,
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// A table of ROWS rows.
    fn fill(&self) {
        self.psql(&[
            "create table moved (n integer primary key, payload text not null)",
            "insert into moved select n, md5(n::text) from generate_series(1, 10000) as n",
        ]);
    }

    fn count(&self) -> u64 {
        let printed = self.psql(&["select count(*) from moved"]);
        printed
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("count(*) printed {printed:?}: {e}"))
    }

    /// `docker stop` (SIGINT: PostgreSQL's fast shutdown) and proof that it
    /// was clean: exit 0, the server's last word, and pg_controldata's
    /// `shut down`.
    fn stop(&self, scope: &Scope, image: &str) {
        let out = shown(&["stop", "-t", "60", &self.name]);
        assert!(out.status.success(), "docker stop: {}", text(&out.stderr));
        assert_eq!(
            docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &self.name]).trim(),
            "0",
            "{}",
            self.logs()
        );
        let logs = self.logs();
        assert!(
            logs.contains("database system is shut down"),
            "postgres in {} did not shut down cleanly:\n{logs}",
            self.name
        );
        docker_ok(&["rm", &self.name]);
        assert_eq!(
            cluster_state(scope, image, &format!("{}-state", self.what), &self.data),
            "shut down"
        );
    }

    fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        text(&out.stdout) + &text(&out.stderr)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- docker logs {} ---\n{}", self.name, self.logs());
        }
    }
}

#[test]
#[ignore = "needs docker and PostgreSQL's binaries (apt-get install postgresql): tests/docker/run"]
fn postgres_image_runs_in_scratch() {
    let scope = Scope::new("pg-image");
    let image = postgres_image();
    // FROM scratch with one ADD: the tree the script staged, nothing else.
    assert_eq!(
        docker_ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", &image]).trim(),
        "1"
    );
    let data = scope.dir("pgdata");
    std::os::unix::fs::chown(&data, Some(PG_UID), Some(PG_GID))
        .expect("give the directory to 70:70");

    initdb(&scope, &image, &data);
    let meta = fs::metadata(data.join("PG_VERSION")).expect("initdb wrote PG_VERSION");
    assert_eq!((meta.uid(), meta.gid()), (PG_UID, PG_GID));
    let server = Postgres::start(&scope, &image, "first", &data);
    server.fill();
    assert_eq!(server.count(), ROWS);
    server.stop(&scope, &image);

    let server = Postgres::start(&scope, &image, "again", &data);
    assert_eq!(server.count(), ROWS);
    server.stop(&scope, &image);
}

// ---------------------------------------------------------------------------
// The move.

/// Every entry under `dir` (itself left out): a directory as None, a file
/// as its sha256.
fn tree(dir: &Path) -> BTreeMap<String, Option<[u8; 32]>> {
    entries_under(dir, |_| false)
        .into_iter()
        .map(|(rel, path, meta)| {
            let digest = (!meta.is_dir()).then(|| {
                let bytes =
                    fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                Sha256::digest(&bytes).into()
            });
            (rel, digest)
        })
        .collect()
}

/// Wait until the engine in `node` holds the namespace's folder as it is on
/// disk: the count of files with content (the engine counts no empty file:
/// after initdb and the rows here, about 800 of 970) and every byte. Without
/// it a peer could be in sync with what the engine had indexed a second
/// before postgres's last write.
fn wait_indexed(node: &Node) {
    let dir = node.data.join(NS);
    let path = format!("/data/{NS}");
    wait_for(
        &format!(
            "{}'s engine to index every file of {}",
            node.name,
            dir.display()
        ),
        INDEX_BOUND,
        || {
            let files = files_under(&dir, |rel| rel == ".sync" || rel.ends_with(".!sync"));
            let with_content = files.iter().filter(|(_, _, meta)| meta.len() > 0).count() as u64;
            let bytes: u64 = files.iter().map(|(_, _, meta)| meta.len()).sum();
            let folder = engine_folders(node)?
                .into_iter()
                .find(|f| f["path"] == path.as_str())?;
            (folder["files"].as_u64() == Some(with_content)
                && folder["size"].as_u64() == Some(bytes))
            .then_some(())
        },
    );
}

/// `ctl path --data NS` in `node`: the host path, checked against the
/// node's bind-mounted data root.
fn data_path(node: &Node) -> PathBuf {
    let printed = node.exec_ok(&["ctl", "path", "--data", NS]);
    println!(
        "$ docker exec {} ctl path --data {NS}\n{}",
        node.name,
        printed.trim()
    );
    let data = PathBuf::from(printed.trim());
    assert_eq!(data, node.data.join(NS).join("data"));
    data
}

#[test]
#[ignore = "needs docker, the real btsync, PostgreSQL's binaries, and add --owner / path --data (issue 21): tests/docker/run"]
fn real_btsync_postgres_moves_to_a_second_node() {
    let scope = Scope::new("pg-move");
    let pg_image = postgres_image();
    let (first, second) = two_nodes(&scope);
    let (first, second) = (&first, &second);

    // Node 1: the namespace, owned by postgres's user, and its data folder.
    let out = shown(&["exec", &first.name, "ctl", "add", "--owner=70:70", NS]);
    assert!(
        out.status.success(),
        "add --owner on {}: {}",
        first.name,
        text(&out.stderr)
    );
    let key = first.exec_ok(&["ctl", "secret", NS]).trim().to_owned();
    let data1 = data_path(first);
    let meta = fs::metadata(&data1).expect("add creates the data folder");
    assert!(meta.is_dir());
    assert_eq!(
        (meta.uid(), meta.gid()),
        (PG_UID, PG_GID),
        "{}",
        data1.display()
    );
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o700,
        "{}",
        data1.display()
    );
    let held: Vec<_> = fs::read_dir(&data1)
        .expect("read the data folder")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert!(held.is_empty(), "a new data folder holds {held:?}");

    // The database, on the data folder as add made it.
    initdb(&scope, &pg_image, &data1);
    let server = Postgres::start(&scope, &pg_image, "pg-node1", &data1);
    server.fill();
    assert_eq!(server.count(), ROWS);
    server.stop(&scope, &pg_image);
    wait_indexed(first);
    let written = tree(&data1);

    // Node 2 joins with the key and the same owner, and waits for the data.
    let token = format!("--token={key}");
    let args = [
        "exec",
        &second.name,
        "ctl",
        "add",
        &token,
        "--owner=70:70",
        "--wait=600",
        NS,
    ];
    println!(
        "$ docker exec {} ctl add --token=KEY --owner=70:70 --wait=600 {NS}",
        second.name
    );
    let out = run_with_deadline(Command::new("docker").args(args), Duration::from_secs(660));
    assert!(
        out.status.success(),
        "add --wait=600 on {}: {}\n{}",
        second.name,
        out.status,
        text(&out.stderr)
    );
    let data2 = data_path(second);
    let ns2 = second.data.join(NS);

    // Nothing of the namespace is for anyone but its owner.
    let readable = find_perm(&ns2, "/o+r");
    assert!(
        readable.is_empty(),
        "find {} -perm /o+r printed:\n{readable}",
        ns2.display()
    );
    let readable = find_perm(&ns2, "/g+r");
    assert!(
        readable.is_empty(),
        "engine files are never group readable; find {} -perm /g+r printed:\n{readable}",
        ns2.display()
    );
    // Every entry of the data folder, itself included, is postgres's.
    let mut foreign: Vec<String> = entries_under(&data2, |_| false)
        .into_iter()
        .chain(std::iter::once((
            ".".to_owned(),
            data2.clone(),
            fs::symlink_metadata(&data2).expect("the data folder on node 2"),
        )))
        .filter(|(_, _, meta)| (meta.uid(), meta.gid()) != (PG_UID, PG_GID))
        .map(|(rel, _, meta)| format!("{rel} {}:{}", meta.uid(), meta.gid()))
        .collect();
    foreign.sort();
    assert!(
        foreign.is_empty(),
        "{} entries of {} are not 70:70: {:?}",
        foreign.len(),
        data2.display(),
        &foreign[..foreign.len().min(20)]
    );
    // The copy is node 1's, file for file.
    let copied = tree(&data2);
    let differing: BTreeSet<&String> = written
        .keys()
        .chain(copied.keys())
        .filter(|rel| written.get(*rel) != copied.get(*rel))
        .collect();
    assert!(
        differing.is_empty(),
        "node 2's data folder differs from node 1's in {} entries: {:?}",
        differing.len(),
        differing.iter().take(20).collect::<Vec<_>>()
    );

    // postgres starts on node 2's copy as it is, and the rows are there.
    let server = Postgres::start(&scope, &pg_image, "pg-node2", &data2);
    assert_eq!(server.count(), ROWS);
    server.stop(&scope, &pg_image);
}
