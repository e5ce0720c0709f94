//! Helpers for the docker tests: commands with deadlines, a cleanup scope that
//! removes every container, network, image and directory a test creates (also
//! when the test panics), image builds through rootfs/build-image, and views of
//! an image's files and of the processes inside a container, and nodes:
//! containers of an image on a bind-mounted data directory, driven through
//! `docker exec`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// Upper bound for any single docker command: a hang fails the test instead of CI.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(180);
/// How long a file may take to reach a peer before a test gives up. Mostly
/// the engines' first connection: 1.4.111 makes it in about 1.5 s or 32 s,
/// but now and then it takes minutes (seen past 180 s in a CI run, and past
/// 300 s with the two engines alone on loopback, without syncbox or
/// docker). Later changes take about 10 s. A bound, not a figure: the
/// figures are in the benchmark.
pub const SYNC_BOUND: Duration = Duration::from_secs(600);

pub fn work_dir() -> PathBuf {
    Path::new(REPO).join("target").join("docker-tests")
}

/// Run `cmd` with stdin closed; kill it and fail the test after `deadline`.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {deadline:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

pub fn docker(args: &[&str]) -> Output {
    run_with_deadline(Command::new("docker").args(args), COMMAND_DEADLINE)
}

/// Run docker and return its stdout; fail the test, showing stderr, if it fails.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fail loudly, never skip: these tests run in CI, where docker must be there.
pub fn require_docker() {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "these tests need a running docker engine (CI runs them as root via .ci/run): {}",
            text(&out.stderr).trim()
        ),
        Err(e) => panic!("these tests need docker on PATH (CI runs them via .ci/run): {e}"),
    }
}

/// Poll `check` every 100 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

static SCOPES: AtomicU32 = AtomicU32::new(0);

/// Everything one test creates; dropped (even on panic) it removes all of it.
pub struct Scope {
    prefix: String,
    pub dir: PathBuf,
    containers: RefCell<Vec<String>>,
    one_shots: std::cell::Cell<u32>,
    networks: RefCell<Vec<String>>,
    images: RefCell<Vec<String>>,
}

impl Scope {
    pub fn new(test: &str) -> Scope {
        require_docker();
        let n = SCOPES.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("sbxt-{}-{n}-{test}", std::process::id());
        let dir = work_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the test's work directory");
        Scope {
            prefix,
            dir,
            containers: RefCell::default(),
            one_shots: std::cell::Cell::new(0),
            networks: RefCell::default(),
            images: RefCell::default(),
        }
    }

    /// A name unique to this test run: `sbxt-PID-N-TEST-what`.
    pub fn unique(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    pub fn container(&self, what: &str) -> String {
        let name = self.unique(what);
        self.containers.borrow_mut().push(name.clone());
        name
    }

    /// Remove a container named elsewhere (e.g. by docker-compose) at the end.
    pub fn adopt_container(&self, name: &str) {
        self.containers.borrow_mut().push(name.to_owned());
    }

    /// `docker run --rm` a one-shot container of `image` with no network,
    /// named and registered like every other (a hung client must not leave an
    /// anonymous container behind).
    pub fn run_once(
        &self,
        options: &[&str],
        image: &str,
        entrypoint: &str,
        args: &[&str],
    ) -> Output {
        let n = self.one_shots.get();
        self.one_shots.set(n + 1);
        let name = self.container(&format!("once{n}"));
        let mut all = vec!["run", "--rm", "--name", &name, "--network", "none"];
        all.extend_from_slice(options);
        all.extend_from_slice(&["--entrypoint", entrypoint, image]);
        all.extend_from_slice(args);
        docker(&all)
    }

    pub fn network(&self, what: &str) -> String {
        let name = self.unique(what);
        docker_ok(&["network", "create", "--internal", &name]);
        self.networks.borrow_mut().push(name.clone());
        name
    }

    /// An image tag that this scope removes at the end.
    pub fn image_tag(&self, what: &str) -> String {
        let tag = format!("{}:test", self.unique(what));
        self.images.borrow_mut().push(tag.clone());
        tag
    }

    /// A fresh directory under this test's work directory.
    pub fn dir(&self, what: &str) -> PathBuf {
        let dir = self.dir.join(what);
        fs::create_dir_all(&dir).expect("create a test directory");
        dir
    }

    /// Build the image with rootfs/build-image and `btsync` as /bin/btsync.
    pub fn build_image(&self, what: &str, btsync: &Path) -> String {
        let out = self.try_build_image(what, btsync, &[]);
        assert!(
            out.status.success(),
            "rootfs/build-image failed ({}):\n{}",
            out.status,
            text(&out.stderr)
        );
        let tag = text(&out.stdout).trim().to_owned();
        assert_eq!(tag, format!("{}:test", self.unique(what)));
        tag
    }

    pub fn try_build_image(&self, what: &str, btsync: &Path, env: &[(&str, &str)]) -> Output {
        let tag = self.image_tag(what);
        let context = self.dir.join(format!("context-{what}"));
        let mut cmd = Command::new(Path::new(REPO).join("rootfs/build-image"));
        cmd.arg("--tag")
            .arg(&tag)
            .arg("--context")
            .arg(&context)
            .arg(btsync)
            // cargo test points LD_LIBRARY_PATH at Rust's own libraries; a user
            // running the script has no such thing.
            .env_remove("LD_LIBRARY_PATH")
            .envs(env.iter().copied());
        run_with_deadline(&mut cmd, Duration::from_secs(900))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        for name in self.containers.borrow().iter() {
            let _ = docker(&["rm", "-f", "-v", name]);
        }
        for name in self.networks.borrow().iter() {
            let _ = docker(&["network", "rm", name]);
        }
        for tag in self.images.borrow().iter() {
            let _ = docker(&["rmi", "-f", tag]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Remove the image `tag` when this test process exits, whether the tests
/// passed, failed or the binary was killed: for an image built once and
/// shared by every test of the run, which no one test's Scope may remove.
/// The watcher runs in the background of a shell that exits at once, so it
/// outlives this process and is nobody's zombie.
pub fn remove_image_at_exit(tag: &str) {
    let pid = std::process::id().to_string();
    let watcher = Command::new("sh")
        .args([
            "-c",
            r#"(tail --pid="$0" -f /dev/null; docker rmi -f "$1" >/dev/null 2>&1) &"#,
            &pid,
            tag,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the watcher that removes a shared image");
    assert!(watcher.success(), "the image watcher did not start");
}

/// Build tests/docker/probe.rs with rustc; `flags` choose how it links.
/// Built once per kind and test process; tests running in parallel share it.
pub fn probe(kind: &str, flags: &[&str]) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(binary) = built.get(kind) {
        return binary.clone();
    }
    let out_dir = work_dir().join("probes");
    fs::create_dir_all(&out_dir).expect("create the probe directory");
    let binary = out_dir.join(format!("probe-{kind}-{}", std::process::id()));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let mut cmd = Command::new(rustc);
    cmd.args(["--edition", "2024", "-O", "-o"])
        .arg(&binary)
        .args(flags)
        .arg(Path::new(REPO).join("tests/docker/probe.rs"));
    let out = run_with_deadline(&mut cmd, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "rustc {kind} probe failed: {}",
        text(&out.stderr)
    );
    built.insert(kind.to_owned(), binary.clone());
    binary
}

/// The stand-in engine (tests/stand_in_engine.rs), which `cargo test` builds as
/// the example `stand-in-btsync`: an ordinary dynamically linked binary.
pub fn stand_in_engine() -> PathBuf {
    let deps = std::env::current_exe().expect("path of the test binary");
    let profile_dir = deps
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/PROFILE/deps");
    let engine = profile_dir.join("examples").join("stand-in-btsync");
    assert!(
        engine.is_file(),
        "{} is missing: cargo test builds it from tests/stand_in_engine.rs",
        engine.display()
    );
    engine
}

/// What `ldd` says `binary` loads: the loader and every library, as absolute
/// paths. Empty for a static binary.
pub fn ldd_paths(binary: &Path) -> Vec<String> {
    let out = Command::new("ldd")
        .arg(binary)
        .env("LC_ALL", "C")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run ldd");
    let listing = text(&out.stdout) + &text(&out.stderr);
    if listing.contains("not a dynamic executable") || listing.contains("statically linked") {
        return Vec::new();
    }
    assert!(out.status.success(), "ldd {}: {listing}", binary.display());
    listing
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=> ") {
                Some((_, resolved)) => resolved,
                None => line,
            };
            let path = path.split(" (").next().unwrap_or(path);
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

/// One entry of a tar listing: its kind and mode (`drwxrwxrwt`, `lrwxrwxrwx`,
/// ...), owner, and the link target for a symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mode: String,
    pub owner: String,
    pub link: Option<String>,
}

/// Every path of `image` as `docker export` shows it, minus the files docker
/// itself puts into every container (found by exporting an empty scratch
/// image the same way, so no list of docker's own files is assumed here).
pub fn image_files(scope: &Scope, image: &str) -> BTreeMap<String, Entry> {
    let reference_dir = scope.dir("reference-context");
    fs::write(reference_dir.join("marker"), "").expect("write the marker");
    fs::write(
        reference_dir.join("Dockerfile"),
        "FROM scratch\nCOPY marker /marker\nENTRYPOINT [\"/marker\"]\n",
    )
    .expect("write the reference Dockerfile");
    let reference = scope.image_tag("reference");
    let build = run_with_deadline(
        Command::new("docker")
            .args([
                "build",
                "--no-cache",
                "--network",
                "none",
                "-q",
                "-t",
                &reference,
            ])
            .arg(&reference_dir)
            .env("DOCKER_BUILDKIT", "0"),
        COMMAND_DEADLINE,
    );
    assert!(
        build.status.success(),
        "reference build: {}",
        text(&build.stderr)
    );
    let docker_own = exported(scope, &reference, "reference");
    let mut files = exported(scope, image, "image");
    for (path, _) in docker_own.iter().filter(|(path, _)| *path != "marker") {
        if let Some(entry) = files.get(path)
            && !entry.mode.starts_with('d')
        {
            files.remove(path);
        }
    }
    // Directories docker creates (dev/, proc/, sys/, ...) go unless the image
    // has something in them.
    for (path, entry) in &docker_own {
        if entry.mode.starts_with('d')
            && !files
                .keys()
                .any(|p| p.starts_with(path.as_str()) && p != path && !docker_own.contains_key(p))
        {
            files.remove(path);
        }
    }
    files
}

fn exported(scope: &Scope, image: &str, what: &str) -> BTreeMap<String, Entry> {
    let container = scope.container(&format!("export-{what}"));
    docker_ok(&["create", "--name", &container, image]);
    let tarball = scope.dir("exports").join(format!("{what}.tar"));
    docker_ok(&["export", "-o", &tarball.to_string_lossy(), &container]);
    docker_ok(&["rm", "-v", &container]);
    let out = run_with_deadline(
        Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&tarball),
        COMMAND_DEADLINE,
    );
    assert!(out.status.success(), "tar -tvf: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|line| {
            // mode uid/gid size date time name[ -> target]
            let fields: Vec<&str> = line.split_whitespace().collect();
            let rest = fields.get(5..).unwrap_or_default().join(" ");
            let (name, link) = match rest.split_once(" -> ") {
                Some((name, target)) => (name.to_owned(), Some(target.to_owned())),
                None => (rest, None),
            };
            let name = name
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned();
            let entry = Entry {
                mode: fields.first().copied().unwrap_or_default().to_owned(),
                owner: fields.get(1).copied().unwrap_or_default().to_owned(),
                link,
            };
            (name, entry)
        })
        .collect()
}

/// The applet names the image's syncbox installs, from the binary itself.
pub fn applets(scope: &Scope, image: &str) -> BTreeSet<String> {
    let out = scope.run_once(&[], image, "/bin/syncbox", &["--list"]);
    assert!(
        out.status.success(),
        "syncbox --list: {}",
        text(&out.stderr)
    );
    text(&out.stdout).lines().map(str::to_owned).collect()
}

/// Host pid and uid of every process in `container` whose command is `program`.
/// Waits until `container` runs exactly one btsync again, under a pid other
/// than `old` (init restarted it), and returns its host pid.
pub fn wait_engine_replaced(container: &str, old: u32, what: &str) -> u32 {
    wait_for(what, Duration::from_secs(60), || {
        match processes(container, "/bin/btsync").as_slice() {
            [(new, _)] if *new != old => Some(*new),
            _ => None,
        }
    })
}

pub fn processes(container: &str, program: &str) -> Vec<(u32, u32)> {
    let out = docker(&["top", container, "-eo", "pid,uid,args"]);
    if !out.status.success() {
        return Vec::new();
    }
    text(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pid = fields.next()?.parse().ok()?;
            let uid = fields.next()?.parse().ok()?;
            (fields.next()? == program).then_some((pid, uid))
        })
        .collect()
}

/// The one running engine's host pid; waits for it to be there.
pub fn engine_pid(container: &str) -> u32 {
    wait_for(
        &format!("exactly one /bin/btsync in {container}"),
        Duration::from_secs(30),
        || match processes(container, "/bin/btsync").as_slice() {
            [(pid, _)] => Some(*pid),
            _ => None,
        },
    )
}

/// The config the engine with host pid `pid` runs with, read through /proc
/// (the tests run as root): its `--config FILE` argument, parsed.
pub fn engine_config(pid: u32) -> Option<serde_json::Value> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let file = args.iter().skip_while(|a| *a != "--config").nth(1)?;
    let bytes = fs::read(format!("/proc/{pid}/root{file}")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `getsyncfolders` of the engine `pid`'s interface (as `webui` of its
/// config gives it), asked the way src/engine_api.rs asks: a token from
/// `POST /gui/token.html` with its `GUID` cookie, then the call.
fn interface_folders(pid: u32, webui: &serde_json::Value) -> Option<serde_json::Value> {
    let listen = webui["listen"].as_str()?;
    let user = format!(
        "{}:{}",
        webui["login"].as_str()?,
        webui["password"].as_str()?
    );
    let jar = std::env::temp_dir().join(format!("sbxt-cookies-{}-{pid}", std::process::id()));
    let curl = |args: &[&str]| -> Option<String> {
        let target = pid.to_string();
        let out = Command::new("nsenter")
            .args([
                "-t",
                &target,
                "-n",
                "curl",
                "-s",
                "--max-time",
                "10",
                "-u",
                &user,
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| text(&out.stdout))
    };
    let jar_path = jar.to_str()?;
    let page = curl(&[
        "-c",
        jar_path,
        "-X",
        "POST",
        &format!("http://{listen}/gui/token.html"),
    ]);
    let token = page.as_deref().and_then(|page| {
        let after = &page[page.find("id='token'")?..];
        let start = after.find('>')? + 1;
        let end = after[start..].find('<')? + start;
        Some(after[start..end].to_owned())
    });
    let listed = token.and_then(|token| {
        curl(&[
            "-b",
            jar_path,
            &format!("http://{listen}/gui/?token={token}&action=getsyncfolders"),
        ])
    });
    let _ = fs::remove_file(&jar);
    let listed: serde_json::Value = serde_json::from_str(&listed?).ok()?;
    Some(listed.get("folders")?.clone())
}

/// Every file under `root` (not following links) with its path relative to
/// `root` and its metadata, leaving out each entry whose relative path
/// `skip` names (a directory skipped is not entered).
pub fn files_under(
    root: &Path,
    skip: impl Fn(&str) -> bool,
) -> Vec<(String, PathBuf, fs::Metadata)> {
    entries_under(root, skip)
        .into_iter()
        .filter(|(_, _, meta)| !meta.is_dir())
        .collect()
}

/// `files_under`, directories included (each one before what it holds).
pub fn entries_under(
    root: &Path,
    skip: impl Fn(&str) -> bool,
) -> Vec<(String, PathBuf, fs::Metadata)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if skip(&rel) {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(path.clone());
            }
            out.push((rel, path, meta));
        }
    }
    out
}

/// The `dir` of every shared folder in an engine config.
pub fn config_dirs(config: &serde_json::Value) -> Vec<String> {
    config["shared_folders"]
        .as_array()
        .map(|folders| {
            folders
                .iter()
                .filter_map(|f| f["dir"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The pid a process has inside its container (the last NSpid field), from
/// its pid on the host.
pub fn pid_in_container(host_pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{host_pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------
// Nodes: containers of an image running init (or another entrypoint) on a
// bind-mounted data directory.

pub const REAL_ENGINE_VAR: &str = "SYNCBOX_TEST_BTSYNC";

/// The engine under test and whether it is the stand-in (the real engine,
/// named by SYNCBOX_TEST_BTSYNC, keeps no log).
pub fn engine_under_test() -> (PathBuf, bool) {
    match std::env::var_os(REAL_ENGINE_VAR) {
        Some(real) if !real.is_empty() => (real.into(), false),
        _ => (stand_in_engine(), true),
    }
}

/// A scope named `label` and an image of the engine under test built in it;
/// true when that engine is the stand-in.
pub fn engine_image(label: &str) -> (Scope, String, bool) {
    let scope = Scope::new(label);
    let (engine, stand_in) = engine_under_test();
    let image = scope.build_image(label, &engine);
    (scope, image, stand_in)
}

/// The stand-in's records (JSON lines in .btsync/storage/stand-in.log).
pub fn stand_in_events(data: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(data.join(".btsync/storage/stand-in.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The folders the stand-in was given: over its interface (WebUI mode),
/// else in the config of its last start.
pub fn given_folders(events: &[serde_json::Value]) -> Vec<String> {
    let over_the_interface: Vec<String> = events_named(events, "api")
        .filter(|e| e["action"] == "addsyncfolder" && e["status"] == 200)
        .filter_map(|e| e["folder"].as_str().map(str::to_owned))
        .collect();
    if !over_the_interface.is_empty() {
        return over_the_interface;
    }
    events_named(events, "start")
        .last()
        .and_then(|start| start["folders"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

pub fn events_named<'e>(
    events: &'e [serde_json::Value],
    name: &str,
) -> impl Iterator<Item = &'e serde_json::Value> {
    events.iter().filter(move |e| e["event"] == name)
}

pub struct Node {
    pub name: String,
    pub data: PathBuf,
}

impl Node {
    /// `docker run -d` the image with a bind-mounted data directory.
    pub fn start(scope: &Scope, image: &str, what: &str, network: &str, extra: &[&str]) -> Node {
        Node::start_with(scope, image, what, network, extra, &[])
    }

    /// `start`, with `command` as the arguments after the image.
    pub fn start_with(
        scope: &Scope,
        image: &str,
        what: &str,
        network: &str,
        extra: &[&str],
        command: &[&str],
    ) -> Node {
        let name = scope.container(what);
        let data = scope.dir(&format!("data-{what}"));
        let volume = format!("{}:/data", data.display());
        let host_path = format!("BTSYNC_HOST_PATH={}", data.display());
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--hostname",
            &name,
            "--network",
            network,
            "-v",
            &volume,
            "-e",
            &host_path,
        ];
        // CI runs the suites once more with SYNCBOX_TEST_ENGINE_API=config
        // (init's fallback mode); a test's own `extra` still wins.
        let engine_api = std::env::var("SYNCBOX_TEST_ENGINE_API")
            .ok()
            .map(|mode| format!("BTSYNC_ENGINE_API={mode}"));
        if let Some(setting) = &engine_api {
            args.extend_from_slice(&["-e", setting]);
        }
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(command);
        docker_ok(&args);
        Node { name, data }
    }

    /// `count` nodes `node0`.. on `network` that know each other
    /// (BTSYNC_KNOWN_HOSTS) and do not search the LAN; `extra` as in `start`.
    /// Also the known hosts, in node order.
    pub fn peers(
        scope: &Scope,
        image: &str,
        network: &str,
        count: usize,
        extra: &[&str],
    ) -> (Vec<Node>, Vec<String>) {
        Node::peers_each(scope, image, network, count, extra, |_| &[])
    }

    /// [`Node::peers`] with options of its own for node `i`: `own(i)`.
    pub fn peers_each(
        scope: &Scope,
        image: &str,
        network: &str,
        count: usize,
        extra: &[&str],
        own: impl Fn(usize) -> &'static [&'static str],
    ) -> (Vec<Node>, Vec<String>) {
        let names: Vec<String> = (0..count)
            .map(|i| scope.unique(&format!("node{i}")))
            .collect();
        let known_hosts: Vec<String> = names.iter().map(|n| format!("{n}:55555")).collect();
        let known_hosts_env = format!("BTSYNC_KNOWN_HOSTS={}", known_hosts.join(","));
        let mut options = extra.to_vec();
        options.extend_from_slice(&["-e", &known_hosts_env, "-e", "BTSYNC_SEARCH_LAN=false"]);
        let nodes = (0..count)
            .map(|i| {
                let mut options = options.clone();
                options.extend_from_slice(own(i));
                Node::start(scope, image, &format!("node{i}"), network, &options)
            })
            .collect();
        (nodes, known_hosts)
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    }

    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "docker exec {} {}: {}\n{}",
            self.name,
            args.join(" "),
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `exec_ok` of an applet run with --json: what it printed.
    pub fn exec_json(&self, args: &[&str]) -> serde_json::Value {
        let printed = self.exec_ok(args);
        serde_json::from_str(&printed)
            .unwrap_or_else(|e| panic!("{} {args:?} printed no JSON ({e}): {printed}", self.name))
    }

    pub fn engine_config(&self) -> (u32, serde_json::Value) {
        wait_for(
            &format!("the engine's config in {}", self.name),
            Duration::from_secs(30),
            || {
                let pid = engine_pid(&self.name);
                engine_config(pid).map(|config| (pid, config))
            },
        )
    }

    /// What the node's engine itself says it runs: each folder's dir and
    /// key, sorted. Config-file mode: its config's `shared_folders`. WebUI
    /// mode: its interface's folder list, asked from inside the engine's
    /// network namespace (nsenter, curl) with the credentials of its config.
    pub fn engine_folders(&self) -> Vec<(String, String)> {
        // Asked again of whichever engine runs now: one restarted meanwhile
        // has another pid (and another port).
        let folders = wait_for(
            &format!("{}'s engine to list its folders", self.name),
            Duration::from_secs(30),
            || {
                let pid = processes(&self.name, "/bin/btsync").first()?.0;
                let config = engine_config(pid)?;
                match config.get("webui") {
                    None => Some(config["shared_folders"].clone()),
                    Some(webui) => interface_folders(pid, webui),
                }
            },
        );
        let mut listed: Vec<(String, String)> = folders
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let dir = f.get("dir").or_else(|| f.get("path"));
                (
                    dir.and_then(|d| d.as_str()).unwrap_or_default().to_owned(),
                    f["secret"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        listed.sort();
        listed
    }

    /// The folders (`/data/...`, sorted) the node's engine serves: in
    /// config-file mode its config's `shared_folders`; in WebUI mode (no
    /// folder in the config) each folder whose `.sync/ID` names a database
    /// the engine holds open, from `/proc` on the host.
    pub fn served_dirs(&self) -> Vec<String> {
        let (pid, config) = self.engine_config();
        let mut dirs = if config.get("webui").is_none() {
            config_dirs(&config)
        } else {
            let open: BTreeSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|fds| {
                    fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
                        .filter_map(|target| Some(target.file_name()?.to_str()?.to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let mut candidates = vec![".btsync/cluster".to_owned()];
            if let Ok(entries) = fs::read_dir(&self.data) {
                candidates.extend(
                    entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .filter(|name| !name.starts_with('.')),
                );
            }
            candidates
                .into_iter()
                .filter(|name| {
                    syncbox::procfs::read_folder_id(&self.data.join(name))
                        .is_some_and(|id| open.contains(&syncbox::procfs::database_name(&id)))
                })
                .map(|name| format!("/data/{name}"))
                .collect()
        };
        dirs.sort();
        dirs
    }

    /// Wait until init says it is idle (nothing to sync) and no engine
    /// process is left in the container.
    pub fn wait_idle(&self, what: &str) {
        wait_for(what, Duration::from_secs(60), || {
            let out = self.exec(&["status", "--json"]);
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (status["engine"]["state"] == "idle" && processes(&self.name, "/bin/btsync").is_empty())
                .then_some(())
        });
    }

    pub fn wait_healthy(&self, what: &str) {
        wait_for(what, Duration::from_secs(60), || {
            (self.inspect("{{.State.Health.Status}}") == "healthy").then_some(())
        });
    }

    /// The stand-in never saw a file of a folder it synced disappear.
    pub fn assert_nothing_vanished(&self) {
        let events = stand_in_events(&self.data);
        assert_eq!(events_named(&events, "vanished").count(), 0, "{events:?}");
    }

    pub fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        text(&out.stdout) + &text(&out.stderr)
    }

    pub fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "-f", format, &self.name])
            .trim()
            .to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- docker logs {} ---\n{}", self.name, self.logs());
        }
    }
}

// ---------------------------------------------------------------------------
// The volume plugin: a node serving it, and a FROM-scratch image to mount its
// volumes in.

pub const PLUGINS_DIR: &str = "/run/docker/plugins";

/// A node serving the volume plugin under a driver name unique to this test
/// run (the socket's file name), and what Docker made with it. Dropped
/// before the scope, it removes the containers using its volumes, then the
/// volumes (through the plugin, which still runs), then its socket.
pub struct PluginNode {
    pub node: Node,
    pub driver: String,
    pub socket: PathBuf,
    users: RefCell<Vec<String>>,
    volumes: RefCell<Vec<String>>,
}

impl PluginNode {
    pub fn start(
        scope: &Scope,
        image: &str,
        what: &str,
        network: &str,
        extra: &[&str],
    ) -> PluginNode {
        let driver = scope.unique(&format!("{what}-driver"));
        let socket = Path::new(PLUGINS_DIR).join(format!("{driver}.sock"));
        fs::create_dir_all(PLUGINS_DIR).expect("create /run/docker/plugins");
        let plugins = format!("{PLUGINS_DIR}:{PLUGINS_DIR}");
        let variable = format!("BTSYNC_VOLUME_PLUGIN={}", socket.display());
        let mut options = vec!["-v", &plugins, "-e", &variable];
        options.extend_from_slice(extra);
        let node = Node::start(scope, image, what, network, &options);
        let plugin = PluginNode {
            node,
            driver,
            socket,
            users: Default::default(),
            volumes: Default::default(),
        };
        // Not waiting for the engine: the real one exits while it has no
        // folder, and the first create starts it again.
        wait_for(
            &format!("{} to serve {}", plugin.node.name, plugin.socket.display()),
            Duration::from_secs(60),
            || plugin.socket.exists().then_some(()),
        );
        plugin
    }

    /// A volume name unique to this run, removed at the end.
    pub fn volume(&self, scope: &Scope, what: &str) -> String {
        let name = scope.unique(what);
        self.volumes.borrow_mut().push(name.clone());
        name
    }

    /// `name` is gone from Docker already. Docker asks every volume driver
    /// it ever used about a name it does not know, and waits out each one
    /// whose socket is gone (it never forgets a driver): removing only what
    /// exists keeps the cleanup fast.
    pub fn forget(&self, name: &str) {
        self.volumes.borrow_mut().retain(|v| v != name);
    }

    /// A container name that is removed before the volumes.
    pub fn user(&self, scope: &Scope, what: &str) -> String {
        let name = scope.container(what);
        self.users.borrow_mut().push(name.clone());
        name
    }

    pub fn has(&self, ns: &str) -> bool {
        self.node.exec(&["has", ns]).status.code() == Some(0)
    }

    /// `docker volume create -d DRIVER -o token=KEY VOLUME`.
    pub fn create_with_token(&self, volume: &str, key: &str) {
        let token = format!("token={key}");
        docker_ok(&["volume", "create", "-d", &self.driver, "-o", &token, volume]);
    }
}

impl Drop for PluginNode {
    fn drop(&mut self) {
        for name in self.users.borrow().iter() {
            let _ = docker(&["rm", "-f", name]);
        }
        for name in self.volumes.borrow().iter() {
            let _ = docker(&["volume", "rm", "-f", name]);
        }
        park_driver(&self.socket);
    }
}

/// The daemon's own API socket, which answers any plugin request with a
/// quick 404.
pub const DAEMON_SOCKET: &str = "/run/docker.sock";

/// Leave the driver's socket name pointing at the daemon's own socket:
/// dockerd keeps asking every volume driver it ever used about names it
/// does not know (also for each anonymous volume of every `docker run`),
/// and waits ~15 s for one whose socket is gone, machine-wide, until it
/// restarts. A 404 from its own API fails that at once. The name is never
/// used again (unique per run): dockerd keeps its connection to its own
/// API open, so a later plugin on the same name would not be reached. The
/// link is a few bytes in /run (tmpfs) and does nothing once dockerd
/// restarts.
pub fn park_driver(socket: &Path) {
    let _ = fs::remove_file(socket);
    if Path::new(DAEMON_SOCKET).exists() {
        let _ = std::os::unix::fs::symlink(DAEMON_SOCKET, socket);
    }
}

/// An image whose /bin/btsync is the static probe: `--write FILE TEXT`,
/// `--sleep SECONDS`, `--list DIR` (run with `--entrypoint /bin/btsync`).
pub fn writer_image(scope: &Scope) -> String {
    scope.build_image(
        "writer",
        &probe("static", &["--target", "x86_64-unknown-linux-musl"]),
    )
}

/// `find ROOT -perm MODE`: what it printed, one path a line.
pub fn find_perm(root: &Path, mode: &str) -> String {
    let out = run_with_deadline(
        Command::new("find").arg(root).args(["-perm", mode]),
        COMMAND_DEADLINE,
    );
    assert!(
        out.status.success(),
        "find {}: {}",
        root.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}
