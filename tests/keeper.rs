//! Issue 21, the namespace owner: what the engine writes into a folder is
//! given to the folder's owner with the folder's mode, once (`fix_tree`)
//! and live (`Keeper`), and nothing outside the folder is ever changed
//! through a link. The engine is root here (the tests make its files as
//! root), the owner 4242:4343. Needs root: chown; CI runs as root.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TempDir, running_as_root};
use syncbox::keeper::{FixCount, Keeper, KeeperStats, Rule, fix_tree};
use syncbox::settings::Owner;

const ENGINE: Owner = Owner { uid: 0, gid: 0 };
const OWNER: Owner = Owner {
    uid: 4242,
    gid: 4343,
};
const PRIVATE: Rule = Rule {
    owner: Some(OWNER),
    umask: 0o077,
};

fn skipped(test: &str) -> bool {
    if running_as_root() {
        return false;
    }
    eprintln!("{test}: SKIPPED: needs root (CI runs as root)");
    true
}

/// uid, gid and permission bits, of the entry itself (never followed).
fn state(path: &Path) -> (u32, u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

/// This process's umask (Linux shows it in /proc/self/status).
fn umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
        .expect("a Umask line")
}

/// A file made with `mode` at once, as the engine makes its own: a chmod
/// after a watched file was fixed would be the engine's own change of a
/// file that is the owner's by then, which stays. Only modes the umask
/// cuts (used where no keeper watches) are set by a chmod afterwards.
fn file(path: &Path, mode: u32) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut made = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    made.write_all(b"x").expect("write a test file");
    if mode & (umask() | 0o7000) != 0 {
        made.set_permissions(fs::Permissions::from_mode(mode))
            .expect("chmod a test file");
    }
}

fn dir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod a test dir");
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("lchown a test entry");
}

/// Poll `done` until it holds; fails at `limit` naming `what`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A keeper of an engine running as root, and the lines it logged.
fn start() -> (Keeper, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let log = lines.clone();
    let keeper = Keeper::start(ENGINE, move |line| {
        eprintln!("{line}");
        log.lock().expect("log").push(line.to_owned());
    })
    .expect("start the keeper");
    (keeper, lines)
}

/// Set the folders and wait until the keeper has them in place.
fn keep(keeper: &Keeper, folders: &[(&Path, Rule)]) -> KeeperStats {
    let generation =
        keeper.set_folders(folders.iter().map(|(p, r)| (p.to_path_buf(), *r)).collect());
    wait_until("the folders applied", Duration::from_secs(60), || {
        keeper.stats().applied >= generation
    });
    keeper.stats()
}

/// Every entry below `top` (and `top`), never following links.
fn entries(top: &Path) -> Vec<PathBuf> {
    let mut found = vec![top.to_path_buf()];
    let mut at = 0;
    while at < found.len() {
        let here = found[at].clone();
        at += 1;
        if fs::symlink_metadata(&here).is_ok_and(|m| m.is_dir()) {
            let mut names: Vec<PathBuf> = fs::read_dir(&here)
                .map(|listing| listing.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            names.sort();
            found.extend(names);
        }
    }
    found
}

/// Is every entry of the tree (but `.!sync` ones and the engine's
/// `.sync/`) the owner's with the private mode? The first that is not, if
/// any.
fn first_unfixed(top: &Path) -> Option<(PathBuf, (u32, u32, u32))> {
    entries(top).into_iter().find_map(|path| {
        let name = path.to_string_lossy();
        if name.ends_with(".!sync")
            || name.ends_with(".SyncTemp")
            || path.components().any(|c| c.as_os_str() == ".sync")
        {
            return None;
        }
        let meta = fs::symlink_metadata(&path).ok()?;
        let mode = if meta.is_dir() || meta.mode() & 0o111 != 0 {
            0o700
        } else {
            0o600
        };
        let now = (meta.uid(), meta.gid(), meta.mode() & 0o7777);
        (now != (OWNER.uid, OWNER.gid, mode)).then_some((path, now))
    })
}

/// Wait until the whole tree is fixed; fails naming an entry that is not.
fn wait_fixed(top: &Path, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while let Some((path, now)) = first_unfixed(top) {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}: {} is {now:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Owner and mode of everything in a tree, to show it did not change.
fn snapshot(top: &Path) -> BTreeMap<PathBuf, (u32, u32, u32)> {
    entries(top)
        .into_iter()
        .map(|p| (p.clone(), state(&p)))
        .collect()
}

#[test]
fn fix_tree_gives_the_engines_entries_to_the_owner_with_the_rules_mode() {
    if skipped("fix_tree_gives_the_engines_entries_to_the_owner") {
        return;
    }
    let tmp = TempDir::new("keeper-fix");
    let top = tmp.path().join("ns");
    dir(&top, 0o755);
    file(&top.join("plain"), 0o644);
    file(&top.join("run.sh"), 0o755);
    file(&top.join("setuid"), 0o4755);
    dir(&top.join("d/e"), 0o755);
    file(&top.join("d/e/deep"), 0o644);
    dir(&top.join(".sync"), 0o755);
    file(&top.join(".sync/ID"), 0o644);
    file(&top.join("d/movie.!sync"), 0o644);
    file(&top.join(".sync/9F16EFBB6B3D53C6.SyncTemp"), 0o644);
    let made = Command::new("mkfifo").arg(top.join("fifo")).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let fifo = state(&top.join("fifo"));

    // On a thread: a FIFO opened by mistake would block the walk forever.
    let (sender, answer) = std::sync::mpsc::channel();
    let walked = top.clone();
    std::thread::spawn(move || {
        let _ = sender.send(fix_tree(&walked, PRIVATE, ENGINE));
    });
    let count = answer
        .recv_timeout(Duration::from_secs(30))
        .expect("fix_tree blocked")
        .expect("fix_tree");
    assert_eq!(count.fixed, 7, "{count:?}");
    assert_eq!(count.errors, 0, "{count:?}");
    let o = (OWNER.uid, OWNER.gid);
    for (path, mode) in [
        ("", 0o700),
        ("plain", 0o600),
        ("run.sh", 0o700),
        ("setuid", 0o700),
        ("d", 0o700),
        ("d/e", 0o700),
        ("d/e/deep", 0o600),
    ] {
        assert_eq!(state(&top.join(path)), (o.0, o.1, mode), "{path}");
    }
    // The engine's own .sync/ is the engine's: left as it is (its umask
    // keeps it private when the engine made it).
    assert_eq!(state(&top.join(".sync")), (0, 0, 0o755));
    assert_eq!(state(&top.join(".sync/ID")), (0, 0, 0o644));
    // Downloads in progress and the FIFO are left as they are.
    assert_eq!(state(&top.join("d/movie.!sync")), (0, 0, 0o644));
    assert_eq!(
        state(&top.join(".sync/9F16EFBB6B3D53C6.SyncTemp")),
        (0, 0, 0o644)
    );
    assert_eq!(state(&top.join("fifo")), fifo);
    // What is right already costs no change.
    let again = fix_tree(&top, PRIVATE, ENGINE).expect("fix_tree again");
    assert_eq!(again, FixCount::default());

    // A group-readable rule: 0640 and 0750.
    let shared = tmp.path().join("shared");
    dir(&shared.join("sub"), 0o777);
    file(&shared.join("sub/doc"), 0o666);
    file(&shared.join("tool"), 0o711);
    let group = Rule {
        owner: Some(OWNER),
        umask: 0o027,
    };
    fix_tree(&shared, group, ENGINE).expect("fix_tree 027");
    assert_eq!(state(&shared), (o.0, o.1, 0o750));
    assert_eq!(state(&shared.join("sub")), (o.0, o.1, 0o750));
    assert_eq!(state(&shared.join("sub/doc")), (o.0, o.1, 0o640));
    assert_eq!(state(&shared.join("tool")), (o.0, o.1, 0o750));

    // No owner: the engine keeps its files, only the mode is narrowed.
    let mode_only = Rule {
        owner: None,
        umask: 0o077,
    };
    let narrow = tmp.path().join("narrow");
    dir(&narrow, 0o755);
    file(&narrow.join("f"), 0o644);
    let count = fix_tree(&narrow, mode_only, ENGINE).expect("fix_tree no owner");
    assert_eq!(count.fixed, 2);
    assert_eq!(state(&narrow.join("f")), (0, 0, 0o600));
    assert_eq!(state(&narrow), (0, 0, 0o700));

    // A missing folder is nothing to do; a link as the folder is refused.
    let gone = fix_tree(&tmp.path().join("gone"), PRIVATE, ENGINE).expect("missing");
    assert_eq!(gone, FixCount::default());
    symlink(&top, tmp.path().join("link")).expect("link");
    assert!(fix_tree(&tmp.path().join("link"), PRIVATE, ENGINE).is_err());
}

#[test]
fn entries_of_other_users_links_and_hard_links_are_left_alone() {
    if skipped("entries_of_other_users_links_and_hard_links_are_left_alone") {
        return;
    }
    let tmp = TempDir::new("keeper-others");
    let top = tmp.path().join("ns");
    let outside = tmp.path().join("outside");
    dir(&top, 0o755);
    dir(&outside.join("sub"), 0o755);
    file(&outside.join("victim"), 0o644);
    file(&outside.join("linked"), 0o644);
    file(&outside.join("sub/deep"), 0o644);
    // A service's own file and directory (the engine's file inside is fixed).
    file(&top.join("service"), 0o644);
    chown(&top.join("service"), 5000, 5000);
    dir(&top.join("svcdir"), 0o755);
    file(&top.join("svcdir/engine-made"), 0o644);
    chown(&top.join("svcdir"), 5000, 5000);
    // Links to a file and to a directory outside; a hard link to a file outside.
    symlink(outside.join("victim"), top.join("to-file")).expect("link");
    symlink(&outside, top.join("to-dir")).expect("link");
    fs::hard_link(outside.join("linked"), top.join("hard")).expect("hard link");
    let before = snapshot(&outside);

    let count = fix_tree(&top, PRIVATE, ENGINE).expect("fix_tree");
    assert_eq!(count.skipped_links, 2, "{count:?}");
    assert_eq!(count.skipped_hardlinks, 1, "{count:?}");
    assert_eq!(count.errors, 0, "{count:?}");
    assert_eq!(snapshot(&outside), before, "something outside changed");
    assert_eq!(state(&top.join("service")), (5000, 5000, 0o644));
    assert_eq!(state(&top.join("svcdir")), (5000, 5000, 0o755));
    assert_eq!(
        state(&top.join("svcdir/engine-made")),
        (OWNER.uid, OWNER.gid, 0o600)
    );
    // The links themselves are the owner's (a link's mode means nothing).
    for link in ["to-file", "to-dir"] {
        let (uid, gid, _) = state(&top.join(link));
        assert_eq!((uid, gid), (OWNER.uid, OWNER.gid), "{link}");
    }
    assert_eq!(state(&top.join("hard")), (0, 0, 0o644));
}

#[test]
fn the_keeper_fixes_what_lands_in_new_directories_and_renamed_downloads() {
    if skipped("the_keeper_fixes_what_lands_in_new_directories") {
        return;
    }
    let tmp = TempDir::new("keeper-live");
    let top = tmp.path().join("ns");
    dir(&top, 0o755);
    file(&top.join("before"), 0o644);
    let (keeper, _) = start();
    let stats = keep(&keeper, &[(&top, PRIVATE)]);
    assert_eq!((stats.folders, stats.watches), (1, 1), "{stats:?}");
    // Fixed by the first scan (applied means it is done).
    assert_eq!(state(&top.join("before")), (OWNER.uid, OWNER.gid, 0o600));

    // A download still in progress is never touched; made first, so by the
    // time the rest is fixed its events were handled long ago.
    file(&top.join("pending.!sync"), 0o644);
    let mut files = 0;
    for d in 0..10 {
        for s in 0..5 {
            let here = top.join(format!("d{d}/s{s}"));
            fs::create_dir_all(&here).expect("nested new directories");
            for f in 0..40 {
                let mode = if f % 10 == 0 { 0o755 } else { 0o644 };
                let name = here.join(format!("f{f}"));
                if f % 2 == 0 {
                    let partial = here.join(format!("f{f}.!sync"));
                    file(&partial, mode);
                    fs::rename(&partial, &name).expect("rename into place");
                } else {
                    file(&name, mode);
                }
                files += 1;
            }
        }
    }
    assert_eq!(files, 2000);
    wait_fixed(&top, "all 2,000 files fixed", Duration::from_secs(120));
    assert_eq!(state(&top.join("pending.!sync")), (0, 0, 0o644));
    let stats = keeper.stats();
    assert_eq!(stats.watches, 1 + 10 + 50, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(stats.fixed >= 2000 + 60, "{stats:?}");

    // The engine narrowing or widening a fixed file of its own: fixed again.
    let redo = top.join("d0/s0/late");
    file(&redo, 0o644);
    wait_until("a late file fixed", Duration::from_secs(30), || {
        state(&redo) == (OWNER.uid, OWNER.gid, 0o600)
    });
    // A directory renamed in from outside the folder, full of files.
    let staged = tmp.path().join("staged");
    dir(&staged.join("inner"), 0o755);
    file(&staged.join("inner/x"), 0o644);
    fs::rename(&staged, top.join("d1/arrived")).expect("move a directory in");
    wait_fixed(&top, "a moved-in directory fixed", Duration::from_secs(30));
    // A directory moved within the folder keeps being watched.
    fs::rename(top.join("d2"), top.join("d3/d2-moved")).expect("move inside");
    let inside = top.join("d3/d2-moved/s1/new");
    file(&inside, 0o644);
    wait_until(
        "a file in a moved directory fixed",
        Duration::from_secs(30),
        || state(&inside) == (OWNER.uid, OWNER.gid, 0o600),
    );
    // A directory moved out is no longer watched.
    fs::rename(top.join("d4"), tmp.path().join("d4-out")).expect("move out");
    wait_until(
        "the moved-out watches dropped",
        Duration::from_secs(30),
        || keeper.stats().watches == 1 + 10 + 50 + 2 - 6,
    );
}

#[test]
fn a_burst_of_20000_files_is_all_fixed_even_past_inotifys_queue() {
    if skipped("a_burst_of_20000_files") {
        return;
    }
    let tmp = TempDir::new("keeper-burst");
    let top = tmp.path().join("ns");
    dir(&top, 0o755);
    let (keeper, _) = start();
    keep(&keeper, &[(&top, PRIVATE)]);
    // The default queue holds 16,384 events; each file makes two or three.
    for d in 0..4 {
        let here = top.join(format!("burst{d}"));
        fs::create_dir(&here).expect("dir");
        for f in 0..5000 {
            fs::write(here.join(format!("f{f}")), "x").expect("file");
        }
    }
    wait_fixed(&top, "all 20,000 files fixed", Duration::from_secs(300));
    let stats = keeper.stats();
    eprintln!("burst of 20,000 files: {stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.watches, 5, "{stats:?}");
}

/// An overflow for sure: the keeper is held in its log (told of a missing
/// folder right after the watched one is in place) while more files are
/// made than inotify's queue holds; the events lost, the overflow makes it
/// scan every folder again.
#[test]
fn events_lost_to_an_overflow_are_made_up_by_a_scan() {
    if skipped("events_lost_to_an_overflow_are_made_up_by_a_scan") {
        return;
    }
    let tmp = TempDir::new("keeper-overflow");
    let top = tmp.path().join("ns");
    dir(&top, 0o755);
    let queue: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(16384);
    // Each file makes two events (IN_CREATE, IN_CLOSE_WRITE).
    let files = (queue / 2 + 2000).max(20_000);
    assert!(
        files <= 500_000,
        "max_queued_events is {queue}: too many files to test"
    );

    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().expect("gate");
    let (entered, in_log) = std::sync::mpsc::channel();
    let entered = Mutex::new(entered);
    let waiting = gate.clone();
    let keeper = Keeper::start(ENGINE, move |line| {
        eprintln!("{line}");
        if line.contains("is missing") {
            let _ = entered.lock().expect("sender").send(());
            drop(waiting.lock());
        }
    })
    .expect("start the keeper");
    let missing = tmp.path().join("missing");
    keeper.set_folders(vec![(top.clone(), PRIVATE), (missing, PRIVATE)]);
    in_log
        .recv_timeout(Duration::from_secs(60))
        .expect("the keeper never logged the missing folder");
    assert_eq!(keeper.stats().overflows, 0);
    // In the watched top: a new directory would not be watched yet.
    for f in 0..files {
        fs::write(top.join(format!("f{f}")), "x").expect("file");
    }
    drop(held);
    wait_fixed(&top, "every file fixed", Duration::from_secs(300));
    let stats = keeper.stats();
    eprintln!("{files} files past a queue of {queue} events: {stats:?}");
    assert!(stats.overflows >= 1, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.watches, 1, "{stats:?}");
}

#[test]
fn a_directory_swapped_for_a_link_mid_walk_changes_nothing_outside() {
    if skipped("a_directory_swapped_for_a_link_mid_walk") {
        return;
    }
    let tmp = TempDir::new("keeper-swap");
    let top = tmp.path().join("ns");
    // Stands for /etc: root's, world-readable, with a directory inside.
    let outside = tmp.path().join("etc");
    dir(&outside.join("ssl"), 0o755);
    for name in ["passwd", "shadow", "ssl/key"] {
        file(&outside.join(name), 0o644);
    }
    let before = snapshot(&outside);
    dir(&top, 0o755);
    let real = top.join("real");
    let link = top.join("link");
    dir(&real.join("sub"), 0o755);
    for f in 0..50 {
        file(&real.join(format!("f{f}")), 0o644);
    }
    symlink(&outside, &link).expect("link");

    // The engine swaps `a` between a directory and a link to "/etc",
    // as fast as it can, while the keeper watches and fix_tree walks.
    let (keeper, _) = start();
    keep(&keeper, &[(&top, PRIVATE)]);
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, top) = (stop.clone(), top.clone());
        let (real, link) = (real.clone(), link.clone());
        std::thread::spawn(move || {
            let a = top.join("a");
            let mut swaps = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for from in [&real, &link] {
                    if fs::rename(from, &a).is_ok() {
                        let _ = fs::rename(&a, from);
                        swaps += 1;
                    }
                }
            }
            swaps
        })
    };
    for _ in 0..200 {
        // Hand the directory back to the engine, so each walk has work.
        for path in entries(&real) {
            let _ = std::os::unix::fs::lchown(&path, Some(0), Some(0));
        }
        fix_tree(&top, PRIVATE, ENGINE).expect("fix_tree during swaps");
    }
    stop.store(true, Ordering::SeqCst);
    let swaps = swapper.join().expect("swapper");
    assert!(swaps > 100, "only {swaps} swaps");
    assert_eq!(
        snapshot(&outside),
        before,
        "followed a link out of the folder"
    );
    drop(keeper);
    assert_eq!(
        snapshot(&outside),
        before,
        "followed a link out of the folder"
    );
}

#[test]
fn a_folder_no_longer_kept_is_no_longer_touched() {
    if skipped("a_folder_no_longer_kept_is_no_longer_touched") {
        return;
    }
    let tmp = TempDir::new("keeper-removed");
    let (gone, kept) = (tmp.path().join("gone"), tmp.path().join("kept"));
    dir(&gone.join("sub"), 0o755);
    dir(&kept, 0o755);
    let (keeper, _) = start();
    let stats = keep(&keeper, &[(&gone, PRIVATE), (&kept, PRIVATE)]);
    assert_eq!((stats.folders, stats.watches), (2, 3), "{stats:?}");
    let stats = keep(&keeper, &[(&kept, PRIVATE)]);
    assert_eq!((stats.folders, stats.watches), (1, 1), "{stats:?}");

    // Made first: had its folder still been watched, its events would be
    // handled before those of the file in the kept folder.
    file(&gone.join("new"), 0o644);
    file(&gone.join("sub/new"), 0o644);
    let marker = kept.join("marker");
    file(&marker, 0o644);
    wait_until(
        "the kept folder's file fixed",
        Duration::from_secs(30),
        || state(&marker) == (OWNER.uid, OWNER.gid, 0o600),
    );
    assert_eq!(state(&gone.join("new")), (0, 0, 0o644));
    assert_eq!(state(&gone.join("sub/new")), (0, 0, 0o644));

    // Emptied: nothing watched, nothing touched.
    let stats = keep(&keeper, &[]);
    assert_eq!((stats.folders, stats.watches), (0, 0), "{stats:?}");
}

/// CPU time (user + system) the thread named `name` of this process used.
fn thread_cpu(name: &str) -> Option<Duration> {
    let tasks = fs::read_dir("/proc/self/task").ok()?;
    for task in tasks.flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = fs::read_to_string(task.path().join("stat")).ok()?;
        // After "(comm)": state is field 3, utime 14, stime 15 (clock ticks).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on every Linux architecture syncbox runs on.
        return Some(Duration::from_millis(ticks * 10));
    }
    None
}

/// The figures of issue 21: fix_tree over 10,000 files, and how long
/// 10,000 new files take to be all fixed with the keeper running, next to
/// making them without it (rounds alternate, as the machine is shared),
/// and the CPU time the keeper's thread spent. `cargo test --release
/// --test keeper figures -- --nocapture` prints them.
#[test]
fn figures_for_10000_files() {
    if skipped("figures_for_10000_files") {
        return;
    }
    const DIRS: usize = 10;
    const PER_DIR: usize = 1000;
    const ROUNDS: usize = 3;
    let make = |top: &Path| {
        fs::create_dir(top).expect("dir");
        for d in 0..DIRS {
            let here = top.join(format!("d{d}"));
            fs::create_dir(&here).expect("dir");
            for f in 0..PER_DIR {
                fs::write(here.join(format!("f{f}")), "x").expect("file");
            }
        }
    };
    let tmp = TempDir::new("keeper-figures");
    let (plain, kept) = (tmp.path().join("plain"), tmp.path().join("kept"));
    dir(&plain, 0o755);
    dir(&kept, 0o755);
    let (keeper, _) = start();
    keep(&keeper, &[(&kept, PRIVATE)]);
    let cpu_before = thread_cpu("keeper");
    let mut lines = Vec::new();
    for round in 0..ROUNDS {
        let started = Instant::now();
        make(&plain.join(format!("r{round}")));
        let plain_made = started.elapsed();
        let base = keeper.stats().fixed;
        let started = Instant::now();
        make(&kept.join(format!("r{round}")));
        let kept_made = started.elapsed();
        let expected = base + (1 + DIRS + DIRS * PER_DIR) as u64;
        wait_until("10,000 files fixed", Duration::from_secs(300), || {
            keeper.stats().fixed >= expected
        });
        let all_fixed = started.elapsed();
        lines.push(format!(
            "made in {plain_made:.2?} without the keeper, {kept_made:.2?} with it, all fixed \
             {all_fixed:.2?} after the first was made"
        ));
    }
    let cpu = thread_cpu("keeper")
        .zip(cpu_before)
        .map(|(after, before)| format!("{:.2?}", after.saturating_sub(before)))
        .unwrap_or_else(|| "?".to_owned());
    assert!(first_unfixed(&kept).is_none());
    let stats = keeper.stats();
    assert_eq!(stats.errors, 0, "{stats:?}");
    drop(keeper);

    let top = plain.join("r0");
    let started = Instant::now();
    let count = fix_tree(&top, PRIVATE, ENGINE).expect("fix_tree");
    let walk = started.elapsed();
    assert_eq!(count.fixed as usize, 1 + DIRS + DIRS * PER_DIR);
    assert!(first_unfixed(&top).is_none());
    let started = Instant::now();
    let again = fix_tree(&top, PRIVATE, ENGINE).expect("fix_tree");
    let walk_again = started.elapsed();
    assert_eq!(again.fixed, 0);
    eprintln!(
        "figures: 10,000 files per round: {}; the keeper's thread used {cpu} of CPU for \
         {} files; fix_tree over 10,000 files: {walk:.2?} (changing each), {walk_again:.2?} \
         (nothing to change); {stats:?}",
        lines.join("; "),
        ROUNDS * DIRS * PER_DIR
    );
}

/// Set in the copy of a test that runs inside its own network namespace.
const IN_NETNS: &str = "SYNCBOX_TEST_KEEPER_IN_NETNS";

/// Run `body` with the real engine inside a network namespace of its own
/// (the test binary runs itself again, `--exact`, under `unshare -n`).
fn in_own_netns(test: &str, body: impl FnOnce(&Path)) {
    let Some(engine) = common::real_engine(test, true) else {
        return;
    };
    if std::env::var_os(IN_NETNS).is_some() {
        body(&engine);
        return;
    }
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", r#"ip link set lo up && exec "$0" "$@""#])
        .arg(std::env::current_exe().expect("test executable"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .env(common::REAL_ENGINE_VAR, &engine)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} failed in its namespace");
    assert!(stdout.contains("1 passed"), "{test} did not run");
}

/// An engine started by a test, killed (and waited for) when dropped.
struct Engine(std::process::Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two real engines sync one folder over loopback; the keeper keeps the
/// receiving one's. The engine makes a new file as `NAME.!sync` and a new
/// version as `.sync/HEX.SyncTemp`, chmods either to 0644/0755 and then
/// renames it into place: all of it must end up the owner's, private.
#[test]
fn what_the_real_engine_receives_ends_up_the_owners() {
    const TEST: &str = "what_the_real_engine_receives_ends_up_the_owners";
    in_own_netns(TEST, |bin| {
        let tmp = TempDir::new("keeper-real");
        let key = "AZCC5D2ABDEORGMUTDLLU7EMRRPB672GO";
        let ports = [55611, 55612];
        let mut engines = Vec::new();
        for (me, name) in ["a", "b"].iter().enumerate() {
            let root = tmp.path().join(name);
            dir(&root.join("data"), 0o755);
            dir(&root.join("storage"), 0o700);
            let config = serde_json::json!({
                "device_name": format!("keeper-{name}"),
                "listening_port": ports[me],
                "storage_path": root.join("storage"),
                "check_for_updates": false,
                "use_upnp": false,
                "shared_folders": [{
                    "dir": root.join("data"),
                    "secret": key,
                    "use_relay_server": false,
                    "use_tracker": false,
                    "use_dht": false,
                    "search_lan": false,
                    "use_sync_trash": true,
                    "known_hosts": [format!("127.0.0.1:{}", ports[1 - me])],
                }],
            });
            fs::write(root.join("btsync.conf"), config.to_string()).expect("config");
        }
        let (a, b) = (tmp.path().join("a/data"), tmp.path().join("b/data"));
        file(&a.join("plain"), 0o644);
        file(&a.join("tool"), 0o755);
        dir(&a.join("sub"), 0o755);
        file(&a.join("sub/deep"), 0o640);

        let (keeper, _) = start();
        keep(&keeper, &[(&b, PRIVATE)]);
        for name in ["a", "b"] {
            let root = tmp.path().join(name);
            let log = fs::File::create(root.join("engine.log")).expect("log");
            let child = Command::new(bin)
                .arg("--nodaemon")
                .arg("--config")
                .arg(root.join("btsync.conf"))
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start the engine");
            engines.push(Engine(child));
        }
        let limit = Duration::from_secs(180);
        wait_until("the files received", limit, || {
            ["plain", "tool", "sub/deep"]
                .iter()
                .all(|f| b.join(f).exists())
        });
        wait_fixed(&b, "the received files fixed", limit);
        assert_eq!(state(&b.join("tool")).2, 0o700);

        // A new version arrives through .sync/HEX.SyncTemp.
        fs::write(a.join("plain"), "version 2").expect("update");
        wait_until("the new version received", limit, || {
            fs::read_to_string(b.join("plain")).is_ok_and(|s| s == "version 2")
        });
        wait_fixed(&b, "the new version fixed", limit);
        // The engine still reads and writes its own files: one more file.
        file(&a.join("sub/after"), 0o644);
        wait_until("a later file received", limit, || {
            b.join("sub/after").exists()
        });
        wait_fixed(&b, "the later file fixed", limit);
        let stats = keeper.stats();
        eprintln!("{TEST}: {stats:?}");
        assert_eq!(stats.errors, 0, "{stats:?}");
        drop(engines);
    });
}
