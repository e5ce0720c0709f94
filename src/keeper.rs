//! Keeping what the engine writes into a namespace's folder owned by the
//! namespace's owner and no more open than its mode rule allows.
//!
//! The engine writes every file as its own user (root, or `BTSYNC_UID`)
//! with its own umask. A [`Keeper`] watches each folder with inotify and
//! gives every entry the engine's user owns to the folder's owner with the
//! folder's mode ([`Rule`]); [`fix_tree`] does the same once for a whole
//! tree. Entries of anyone else are never touched: a service that writes
//! into its folder as itself keeps its files as they are.
//!
//! Nothing is ever reached through a symbolic link, also while the tree
//! changes under the walk: the top is opened without following a link, and
//! everything below is reached through the open directory that holds it
//! (openat), named first with an O_PATH descriptor (no driver or FIFO is
//! ever opened) and only then opened for the change, which is made on the
//! open file after its type, owner and link count are checked on it again.
//! A name that is gone by the time it is reached (renamed, deleted) is
//! skipped without a word.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::settings::Owner;
use crate::sys::inotify::{self, Inotify};
use crate::sys::open_flags::{
    ELOOP, O_CLOEXEC, O_DIRECTORY, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK, O_PATH,
};
use crate::sys::{self, open_at};

/// What a folder's files must look like: the namespace's rule.
pub use crate::file_rule::FileRule as Rule;

/// What one walk did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixCount {
    /// Entries whose owner or mode was changed.
    pub fixed: u64,
    /// The engine's symbolic links met: never followed nor chmodded, only
    /// given to the owner themselves (lchown).
    pub skipped_links: u64,
    /// The engine's regular files with more than one name, left alone: one
    /// of the names may be outside the folder.
    pub skipped_hardlinks: u64,
    /// Entries that could not be inspected or changed (other than gone).
    pub errors: u64,
    /// What went wrong first, for the log.
    pub first_error: Option<String>,
}

impl FixCount {
    fn add(&mut self, other: &FixCount) {
        self.fixed += other.fixed;
        self.skipped_links += other.skipped_links;
        self.skipped_hardlinks += other.skipped_hardlinks;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// Names of the engine's files in the making, left alone: btsync 1.4.111
/// writes a new file as `NAME.!sync` and the new version of a file as
/// `.sync/<40 hex>.SyncTemp`, then sets their time and mode (a chmod to
/// 0644 or 0755, whatever its umask) and only then renames them into
/// place, where they are fixed. Fixed before that chmod, a file would be
/// the owner's already: the engine's chmod would widen it for good (root)
/// or fail (an engine of its own uid).
const IN_THE_MAKING: [&[u8]; 2] = [b".!sync", b".SyncTemp"];

/// How often a folder that cannot be watched whole is scanned, and a
/// missing folder looked for again.
pub const RESCAN_EVERY: Duration = Duration::from_secs(10);

/// Errors are logged at most this often (the rest are counted).
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// inotify's read buffer: hundreds of events per read.
const EVENT_BUFFER: usize = 64 * 1024;

/// What a watch reports: new names (made, renamed in), changed attributes
/// (the engine's chmod, utimes), files closed after writing, and
/// directories renamed away. Children already unlinked report nothing.
const WATCH_MASK: u32 = inotify::IN_CREATE
    | inotify::IN_MOVED_TO
    | inotify::IN_MOVED_FROM
    | inotify::IN_ATTRIB
    | inotify::IN_CLOSE_WRITE
    | inotify::IN_ONLYDIR
    | inotify::IN_EXCL_UNLINK;

const DIR_FLAGS: i32 = O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
const FILE_FLAGS: i32 = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
const NAME_FLAGS: i32 = O_PATH | O_NOFOLLOW | O_CLOEXEC;
const ENOTDIR: i32 = 20;

/// The engine's own folder at the top of every folder it serves (ID,
/// IgnoreList, StreamsList, Archive/): the engine's, left to it. Changing
/// the owner of its files stalled the first exchange with a peer for
/// minutes with 1.4.111 (measured: 0 of 300 files after 12 s, against all
/// in 11 s untouched); its umask (077) already keeps them private.
const ENGINE_STATE: &str = ".sync";

fn is_partial(name: &OsStr) -> bool {
    IN_THE_MAKING
        .iter()
        .any(|suffix| name.as_bytes().ends_with(suffix))
}

/// Renamed or deleted before we got to it, or swapped for something else
/// between two steps: skipped without a word.
fn changed_under_us(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || matches!(e.raw_os_error(), Some(ELOOP | ENOTDIR))
}

/// The path of an open directory that leads to that very directory,
/// whatever happened to its name since.
fn fd_path(dir: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

/// Fixes entries by one rule and counts what it did.
struct Fixer {
    rule: Rule,
    engine: Owner,
    count: FixCount,
}

impl Fixer {
    fn new(rule: Rule, engine: Owner) -> Fixer {
        Fixer {
            rule,
            engine,
            count: FixCount::default(),
        }
    }

    fn fail(&mut self, doing: &str, path: &Path, e: &io::Error) {
        self.count.errors += 1;
        if self.count.first_error.is_none() {
            self.count.first_error = Some(format!("cannot {doing} {}: {e}", path.display()));
        }
    }

    /// The mode an entry of the engine's must have.
    fn wanted_mode(&self, meta: &Metadata) -> u32 {
        let full = if meta.is_dir() || meta.mode() & 0o111 != 0 {
            0o777
        } else {
            0o666
        };
        full & !self.rule.umask & 0o777
    }

    fn wrong_owner(&self, meta: &Metadata) -> Option<Owner> {
        self.rule
            .owner
            .filter(|o| (meta.uid(), meta.gid()) != (o.uid, o.gid))
    }

    /// Does this entry of the engine's need a change?
    fn needs_change(&self, meta: &Metadata) -> bool {
        meta.uid() == self.engine.uid
            && (self.wrong_owner(meta).is_some() || meta.mode() & 0o7777 != self.wanted_mode(meta))
    }

    /// Fix the directory or regular file `file` is open on (at `shown`),
    /// judged by what fstat says of the open file now.
    fn fix_open(&mut self, file: &File, shown: &Path) {
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(e) => return self.fail("inspect", shown, &e),
        };
        if meta.uid() != self.engine.uid || !(meta.is_dir() || meta.is_file()) {
            return;
        }
        if meta.is_file() && meta.nlink() > 1 {
            self.count.skipped_hardlinks += 1;
            return;
        }
        if !self.needs_change(&meta) {
            return;
        }
        // chown first: it clears set-id bits, the chmod then sets the
        // mode exactly.
        if let Some(owner) = self.wrong_owner(&meta)
            && let Err(e) = std::os::unix::fs::fchown(file, Some(owner.uid), Some(owner.gid))
        {
            return self.fail("chown", shown, &e);
        }
        let mode = self.wanted_mode(&meta);
        if meta.mode() & 0o7777 != mode
            && let Err(e) = file.set_permissions(fs::Permissions::from_mode(mode))
        {
            return self.fail("chmod", shown, &e);
        }
        self.count.fixed += 1;
    }

    /// Fix the entry `name` of the open directory `dir` (at `shown`); a
    /// directory is handed back open (whoever owns it), for the caller to
    /// look inside.
    fn fix_at(&mut self, dir: BorrowedFd<'_>, shown: &Path, name: &OsStr) -> Option<File> {
        if is_partial(name) || name == ENGINE_STATE {
            return None;
        }
        let named = match open_at(dir, name, NAME_FLAGS) {
            Ok(fd) => File::from(fd),
            Err(e) if changed_under_us(&e) => return None,
            Err(e) => {
                self.fail("look at", &shown.join(name), &e);
                return None;
            }
        };
        let meta = match named.metadata() {
            Ok(meta) => meta,
            Err(e) => {
                self.fail("inspect", &shown.join(name), &e);
                return None;
            }
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            if meta.uid() == self.engine.uid {
                self.count.skipped_links += 1;
                if let Some(owner) = self.wrong_owner(&meta) {
                    // The descriptor names the link itself: what it points
                    // to is never looked up.
                    match sys::chown_named(named.as_fd(), owner.uid, owner.gid) {
                        Ok(()) => self.count.fixed += 1,
                        Err(e) if changed_under_us(&e) => {}
                        Err(e) => self.fail("chown", &shown.join(name), &e),
                    }
                }
            }
            return None;
        }
        let flags = if kind.is_dir() {
            DIR_FLAGS
        } else if kind.is_file() && self.needs_change(&meta) {
            FILE_FLAGS
        } else {
            // Not ours, right already, or a FIFO, socket or device: never opened.
            return None;
        };
        if kind.is_file() && meta.nlink() > 1 {
            self.count.skipped_hardlinks += 1;
            return None;
        }
        // Opened through `dir` again, not through `named`: a name swapped
        // since is checked again by fix_open on what was opened (O_NOFOLLOW:
        // never a link; O_NONBLOCK: never waits on a FIFO swapped in).
        let opened = match open_at(dir, name, flags) {
            Ok(fd) => File::from(fd),
            Err(e) if changed_under_us(&e) => return None,
            Err(e) => {
                self.fail("open", &shown.join(name), &e);
                return None;
            }
        };
        self.fix_open(&opened, &shown.join(name));
        kind.is_dir().then_some(opened)
    }

    /// The names in an open directory.
    fn list(&mut self, dir: &File, shown: &Path) -> Vec<OsString> {
        match fs::read_dir(fd_path(dir)) {
            Ok(listing) => listing.flatten().map(|e| e.file_name()).collect(),
            Err(e) if changed_under_us(&e) => Vec::new(),
            Err(e) => {
                self.fail("read (is /proc mounted?)", shown, &e);
                Vec::new()
            }
        }
    }
}

/// Walk the tree below `top` (itself already fixed), depth first, fixing
/// every entry. Each directory met is handed to `enter` with the key of
/// its parent and its name: `Ok(Some(key))` goes into it, `Ok(None)` does
/// not, `Err` ends the walk. Iterative, so a deep tree costs one open
/// directory per level and no stack.
fn walk<K: Copy, E>(
    fixer: &mut Fixer,
    top: File,
    shown: PathBuf,
    key: K,
    mut enter: impl FnMut(&File, K, &OsStr) -> std::result::Result<Option<K>, E>,
) -> std::result::Result<(), E> {
    struct Level<K> {
        dir: File,
        key: K,
        shown: PathBuf,
        names: std::vec::IntoIter<OsString>,
    }
    let names = fixer.list(&top, &shown).into_iter();
    let mut stack = vec![Level {
        dir: top,
        key,
        shown,
        names,
    }];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.names.next() else {
            stack.pop();
            continue;
        };
        let Some(sub) = fixer.fix_at(level.dir.as_fd(), &level.shown, &name) else {
            continue;
        };
        if let Some(key) = enter(&sub, level.key, &name)? {
            let shown = level.shown.join(&name);
            let names = fixer.list(&sub, &shown).into_iter();
            stack.push(Level {
                dir: sub,
                key,
                shown,
                names,
            });
        }
    }
    Ok(())
}

/// Fix a whole tree once: the folder `top` itself and everything below
/// it that the engine's user owns (see the module's doc). `top` missing is
/// nothing to do; `top` a symbolic link or not a directory is an error.
/// Entries that fail are counted in the answer, not an error.
pub fn fix_tree(top: &Path, rule: Rule, engine: Owner) -> Result<FixCount> {
    fix_tree_unless(top, rule, engine, &AtomicBool::new(false))
}

/// [`fix_tree`], cut short (between two directories) once `stop` is set.
fn fix_tree_unless(top: &Path, rule: Rule, engine: Owner, stop: &AtomicBool) -> Result<FixCount> {
    let dir = match fsutil::open_dir_nofollow(top) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FixCount::default()),
        Err(e) => return Err(Error::io(format!("cannot open {}", top.display()), e)),
    };
    let mut fixer = Fixer::new(rule, engine);
    fixer.fix_open(&dir, top);
    // Stopped or not, what was done is counted.
    let _ = walk(&mut fixer, dir, top.to_owned(), (), |_, _, _| {
        if stop.load(Ordering::SeqCst) {
            Err(())
        } else {
            Ok(Some(()))
        }
    });
    Ok(fixer.count)
}

/// What a [`Keeper`] does and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeeperStats {
    /// Folders in the set applied last.
    pub folders: usize,
    /// Directories watched.
    pub watches: usize,
    /// Entries changed so far (owner or mode).
    pub fixed: u64,
    /// The engine's symbolic links met (never followed nor chmodded).
    pub skipped_links: u64,
    /// The engine's files with more than one name, left alone.
    pub skipped_hardlinks: u64,
    /// Times inotify's queue overflowed (each time every folder is scanned).
    pub overflows: u64,
    /// Folders scanned every [`RESCAN_EVERY`] instead of watched: inotify
    /// refused more watches (`fs.inotify.max_user_watches`).
    pub scanning_fallback: usize,
    /// Folders that do not exist (looked for every [`RESCAN_EVERY`]).
    pub missing: usize,
    /// Entries that could not be inspected or changed.
    pub errors: u64,
    /// The last [`Keeper::set_folders`] generation fully applied: its
    /// watches are in place and its first scans done.
    pub applied: u64,
}

struct Pending {
    generation: u64,
    folders: Option<Vec<(PathBuf, Rule)>>,
}

struct Shared {
    pending: Mutex<Pending>,
    stats: Mutex<KeeperStats>,
    stop: AtomicBool,
    /// A byte is in the wake pipe (so at most one ever is).
    woken: AtomicBool,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks is whole between statements.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps the files of a set of folders owned and moded by their rules,
/// from a background thread named "keeper" that inotify wakes. Stopped
/// (thread joined, inotify closed) when dropped.
pub struct Keeper {
    shared: Arc<Shared>,
    wake: io::PipeWriter,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Start keeping no folder yet, for an engine that runs as `engine`
    /// (its uid tells its entries from everyone else's). `log` gets one
    /// line per event worth telling (a folder that cannot be watched, a
    /// failure).
    pub fn start(engine: Owner, log: impl Fn(&str) + Send + 'static) -> Result<Keeper> {
        Keeper::start_with(engine, Box::new(log), usize::MAX, RESCAN_EVERY)
    }

    /// [`Keeper::start`] with at most `watch_limit` watches (more fail as
    /// inotify's own limit does) and scans every `rescan_every`: the tests
    /// of the fallback, which cannot lower the system's limit.
    fn start_with(
        engine: Owner,
        log: Box<dyn Fn(&str) + Send>,
        watch_limit: usize,
        rescan_every: Duration,
    ) -> Result<Keeper> {
        let inotify = Inotify::new()
            .map_err(|e| Error::io("cannot start watching folders (inotify_init1)", e))?;
        let (woken, wake) =
            io::pipe().map_err(|e| Error::io("cannot make the keeper's wake-up pipe", e))?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                generation: 0,
                folders: None,
            }),
            stats: Mutex::new(KeeperStats::default()),
            stop: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        });
        let mut worker = Worker {
            inotify,
            engine,
            log,
            watch_limit,
            rescan_every,
            shared: shared.clone(),
            folders: HashMap::new(),
            next_id: 0,
            nodes: HashMap::new(),
            open_dirs: HashMap::new(),
            totals: FixCount::default(),
            overflows: 0,
            applied: 0,
            errors_logged: 0,
            last_error_log: None,
        };
        let thread = std::thread::Builder::new()
            .name("keeper".into())
            .spawn(move || worker.run(woken))
            .map_err(|e| Error::io("cannot start the keeper thread", e))?;
        Ok(Keeper {
            shared,
            wake,
            thread: Some(thread),
        })
    }

    /// Keep exactly these folders from now on (a path given twice: the
    /// last rule). Returns at once with the generation of this set;
    /// [`KeeperStats::applied`] reaches it once it is in place. Added
    /// folders are scanned whole and watched, removed ones are no longer
    /// watched, folders whose rule changed are scanned again. Folders must
    /// not nest.
    pub fn set_folders(&self, folders: Vec<(PathBuf, Rule)>) -> u64 {
        let generation = {
            let mut pending = locked(&self.shared.pending);
            pending.generation += 1;
            pending.folders = Some(folders);
            pending.generation
        };
        self.wake_up();
        generation
    }

    /// What the keeper does and did so far.
    pub fn stats(&self) -> KeeperStats {
        locked(&self.shared.stats).clone()
    }

    fn wake_up(&self) {
        if !self.shared.woken.swap(true, Ordering::SeqCst) {
            // The thread is gone (EPIPE) only if it panicked: nothing to wake.
            let _ = (&self.wake).write(&[1]);
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.woken.store(false, Ordering::SeqCst);
        self.wake_up();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Just added: set up next.
    New,
    /// Every directory watched; `top` is the top's watch.
    Watched { top: i32 },
    /// Scanned whole at `next`, then every RESCAN_EVERY.
    Fallback { next: Instant },
    /// Not there (or not openable): looked for again at `next`.
    Missing { next: Instant },
}

struct Folder {
    top: PathBuf,
    rule: Rule,
    state: State,
}

/// A watched directory: where it is, as its parent's watch and its name
/// there (`None` for a folder's top).
struct Node {
    folder: u64,
    parent: Option<i32>,
    name: OsString,
    children: HashMap<OsString, i32>,
}

/// A watched directory kept open, and its path for messages.
struct OpenDir {
    dir: File,
    shown: PathBuf,
}

/// At most this many watched directories are kept open between events.
const OPEN_DIRS: usize = 64;

/// Why a walk with watches stopped.
enum WatchStop {
    /// inotify's limit of watches: the folder falls back to scanning.
    NoSpace,
    /// The keeper is being stopped: a long walk is not finished.
    Stopping,
}

/// Stop a walk when the keeper is being stopped.
fn go_on(stop: &AtomicBool) -> std::result::Result<(), WatchStop> {
    if stop.load(Ordering::SeqCst) {
        Err(WatchStop::Stopping)
    } else {
        Ok(())
    }
}

/// The keeper thread's state.
struct Worker {
    inotify: Inotify,
    engine: Owner,
    log: Box<dyn Fn(&str) + Send>,
    watch_limit: usize,
    rescan_every: Duration,
    shared: Arc<Shared>,
    folders: HashMap<u64, Folder>,
    next_id: u64,
    nodes: HashMap<i32, Node>,
    open_dirs: HashMap<i32, Arc<OpenDir>>,
    totals: FixCount,
    overflows: u64,
    applied: u64,
    /// Errors already told (or folded into a later line).
    errors_logged: u64,
    last_error_log: Option<Instant>,
}

impl Worker {
    fn run(&mut self, mut woken: io::PipeReader) {
        let mut buffer = vec![0u8; EVENT_BUFFER];
        while !self.shared.stop.load(Ordering::SeqCst) {
            let pending = {
                let mut pending = locked(&self.shared.pending);
                pending.folders.take().map(|f| (pending.generation, f))
            };
            if let Some((generation, folders)) = pending {
                self.apply(folders);
                self.applied = generation;
            }
            self.due_scans();
            self.publish();
            let timeout = self.next_due().map_or(self.rescan_every, |due| {
                due.saturating_duration_since(Instant::now())
            });
            let ready = match sys::wait_readable(&[self.inotify.as_fd(), woken.as_fd()], timeout) {
                Ok(ready) => ready,
                Err(e) => {
                    (self.log)(&format!("keeper: cannot wait for events: {e}"));
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if ready.get(1).copied().unwrap_or(false) {
                self.shared.woken.store(false, Ordering::SeqCst);
                let mut byte = [0u8; 1];
                let _ = woken.read(&mut byte);
            }
            if ready.first().copied().unwrap_or(false) {
                self.drain(&mut buffer);
            }
        }
        // Watches go with the inotify descriptor, closed with the worker.
    }

    /// Handle what inotify has queued (a bounded number of reads, so a
    /// stop or a new set is seen between them).
    fn drain(&mut self, buffer: &mut [u8]) {
        for _ in 0..64 {
            let read = match self.inotify.read(buffer) {
                Ok(0) => {
                    // All caught up: close the directories kept open. An
                    // open one that is deleted meanwhile keeps its inode,
                    // and the kernel drops its watch (IN_IGNORED) only once
                    // the last descriptor of it is closed.
                    self.open_dirs.clear();
                    return;
                }
                Ok(read) => read,
                Err(e) => {
                    (self.log)(&format!("keeper: cannot read inotify events: {e}"));
                    std::thread::sleep(Duration::from_secs(1));
                    return;
                }
            };
            let overflowed = self.handle(&buffer[..read]);
            if overflowed {
                self.overflows += 1;
                let watched: Vec<u64> = self
                    .folders
                    .iter()
                    .filter(|(_, f)| matches!(f.state, State::Watched { .. }))
                    .map(|(&id, _)| id)
                    .collect();
                for id in watched {
                    self.set_up(id);
                }
            }
            self.publish();
        }
    }

    fn publish(&mut self) {
        if let Some(error) = self.totals.first_error.take() {
            let now = Instant::now();
            let quiet = self
                .last_error_log
                .is_none_or(|at| now.duration_since(at) >= ERROR_LOG_EVERY);
            if quiet {
                let unsaid = self.totals.errors.saturating_sub(self.errors_logged + 1);
                let more = if unsaid > 0 {
                    format!(" ({unsaid} more failures since the last one told)")
                } else {
                    String::new()
                };
                (self.log)(&format!("keeper: {error}{more}"));
                self.errors_logged = self.totals.errors;
                self.last_error_log = Some(now);
            }
        }
        let count =
            |wanted: fn(&State) -> bool| self.folders.values().filter(|f| wanted(&f.state)).count();
        let stats = KeeperStats {
            folders: self.folders.len(),
            watches: self.nodes.len(),
            fixed: self.totals.fixed,
            skipped_links: self.totals.skipped_links,
            skipped_hardlinks: self.totals.skipped_hardlinks,
            overflows: self.overflows,
            scanning_fallback: count(|s| matches!(s, State::Fallback { .. })),
            missing: count(|s| matches!(s, State::Missing { .. })),
            errors: self.totals.errors,
            applied: self.applied,
        };
        *locked(&self.shared.stats) = stats;
    }

    /// Make the folders exactly `wanted`.
    fn apply(&mut self, wanted: Vec<(PathBuf, Rule)>) {
        let mut by_top: HashMap<PathBuf, Rule> = HashMap::new();
        let mut order = Vec::new();
        for (top, rule) in wanted {
            if by_top.insert(top.clone(), rule).is_none() {
                order.push(top);
            }
        }
        let gone: Vec<u64> = self
            .folders
            .iter()
            .filter(|(_, f)| !by_top.contains_key(&f.top))
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.forget_folder_watches(id);
            self.folders.remove(&id);
        }
        for top in order {
            let rule = by_top[&top];
            let known = self
                .folders
                .iter_mut()
                .find(|(_, f)| f.top == top)
                .map(|(&id, f)| (id, std::mem::replace(&mut f.rule, rule)));
            match known {
                Some((_, old)) if old == rule => {}
                Some((id, _)) => self.set_up(id),
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.folders.insert(
                        id,
                        Folder {
                            top,
                            rule,
                            state: State::New,
                        },
                    );
                    self.set_up(id);
                }
            }
        }
    }

    /// Watch and scan a folder whole (again): its top, then each directory
    /// before what is in it, so nothing made meanwhile is missed. Watches
    /// of directories no longer found in it are dropped.
    fn set_up(&mut self, id: u64) {
        let Some(folder) = self.folders.get(&id) else {
            return;
        };
        let (top, rule, before) = (folder.top.clone(), folder.rule, folder.state);
        if let State::Fallback { .. } = before {
            return self.scan_fallback(id);
        }
        let dir = match fsutil::open_dir_nofollow(&top) {
            Ok(dir) => dir,
            Err(e) => return self.missing(id, &top, before, e),
        };
        let mut fixer = Fixer::new(rule, self.engine);
        fixer.fix_open(&dir, &top);
        let full = self.nodes.len() >= self.watch_limit;
        let top_wd = match watch_or_error(&self.inotify, &dir, full) {
            Ok(wd) => wd,
            Err(None) => {
                self.totals.add(&fixer.count);
                return self.fall_back(id);
            }
            Err(Some(e)) => {
                self.totals.add(&fixer.count);
                return self.missing(id, &top, before, e);
            }
        };
        let old: HashSet<i32> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.folder == id)
            .map(|(&wd, _)| wd)
            .collect();
        let mut seen = HashSet::from([top_wd]);
        register(&mut self.nodes, top_wd, id, None, OsStr::new(""));
        if let Some(folder) = self.folders.get_mut(&id) {
            folder.state = State::Watched { top: top_wd };
        }
        let (inotify, nodes, limit) = (&self.inotify, &mut self.nodes, self.watch_limit);
        let stop = &self.shared.stop;
        let walked = walk(&mut fixer, dir, top, top_wd, |sub, parent, name| {
            go_on(stop)?;
            let wd = watch(inotify, sub, nodes.len() >= limit)?;
            if let Some(wd) = wd {
                register(nodes, wd, id, Some(parent), name);
                seen.insert(wd);
            }
            Ok(wd)
        });
        self.totals.add(&fixer.count);
        match walked {
            Ok(()) => {
                for wd in old.difference(&seen) {
                    self.forget_subtree(*wd);
                }
            }
            Err(WatchStop::NoSpace) => self.fall_back(id),
            Err(WatchStop::Stopping) => {}
        }
    }

    fn missing(&mut self, id: u64, top: &Path, before: State, e: io::Error) {
        if !matches!(before, State::Missing { .. }) {
            let why = if e.kind() == io::ErrorKind::NotFound {
                "is missing".to_owned()
            } else {
                format!("cannot be watched ({e})")
            };
            (self.log)(&format!(
                "keeper: {} {why}; looked for again every {:?}",
                top.display(),
                self.rescan_every
            ));
        }
        if let Some(folder) = self.folders.get_mut(&id) {
            folder.state = State::Missing {
                next: Instant::now() + self.rescan_every,
            };
        }
    }

    /// inotify refused a watch: scan the folder instead, now and every
    /// RESCAN_EVERY (said once).
    fn fall_back(&mut self, id: u64) {
        self.forget_folder_watches(id);
        let Some(folder) = self.folders.get_mut(&id) else {
            return;
        };
        folder.state = State::Fallback {
            next: Instant::now(),
        };
        let limit = fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".to_owned());
        (self.log)(&format!(
            "keeper: cannot watch every directory of {} (fs.inotify.max_user_watches = {limit}); \
             it is scanned every {:?} instead",
            folder.top.display(),
            self.rescan_every
        ));
        self.scan_fallback(id);
    }

    fn scan_fallback(&mut self, id: u64) {
        let Some(folder) = self.folders.get_mut(&id) else {
            return;
        };
        folder.state = State::Fallback {
            next: Instant::now() + self.rescan_every,
        };
        let (top, rule) = (folder.top.clone(), folder.rule);
        match fix_tree_unless(&top, rule, self.engine, &self.shared.stop) {
            Ok(count) => self.totals.add(&count),
            Err(e) => {
                self.totals.errors += 1;
                if self.totals.first_error.is_none() {
                    self.totals.first_error = Some(e.to_string());
                }
            }
        }
    }

    /// Scans and searches that are due.
    fn due_scans(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .folders
            .iter()
            .filter(|(_, f)| match f.state {
                State::Fallback { next } | State::Missing { next } => next <= now,
                State::Watched { .. } | State::New => false,
            })
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.set_up(id);
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.folders
            .values()
            .filter_map(|f| match f.state {
                State::Fallback { next } | State::Missing { next } => Some(next),
                State::Watched { .. } | State::New => None,
            })
            .min()
    }

    fn forget_folder_watches(&mut self, id: u64) {
        let wds: Vec<i32> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.folder == id)
            .map(|(&wd, _)| wd)
            .collect();
        for wd in wds {
            self.open_dirs.remove(&wd);
            if self.nodes.remove(&wd).is_some() {
                // Gone already (EINVAL) is what it should be anyway.
                let _ = self.inotify.rm_watch(wd);
            }
        }
    }

    /// Stop watching a directory and everything below it.
    fn forget_subtree(&mut self, wd: i32) {
        let mut stack = vec![wd];
        while let Some(wd) = stack.pop() {
            self.open_dirs.remove(&wd);
            let Some(node) = self.nodes.remove(&wd) else {
                continue;
            };
            unlink_from_parent(&mut self.nodes, &node, wd);
            stack.extend(node.children.values().copied());
            let _ = self.inotify.rm_watch(wd);
        }
    }

    /// The kernel dropped a watch (its directory deleted, its filesystem
    /// unmounted). A folder's top: the folder is looked for again later.
    fn dropped(&mut self, wd: i32) {
        self.open_dirs.remove(&wd);
        let Some(node) = self.nodes.remove(&wd) else {
            return;
        };
        unlink_from_parent(&mut self.nodes, &node, wd);
        let folder = node.folder;
        if let Some(f) = self.folders.get(&folder)
            && f.state == (State::Watched { top: wd })
        {
            let top = f.top.clone();
            self.forget_folder_watches(folder);
            self.missing(
                folder,
                &top,
                State::Watched { top: wd },
                io::ErrorKind::NotFound.into(),
            );
        }
    }

    /// The directory a watch is on, open: kept open from the last time
    /// while events keep coming (a descriptor stays on its directory
    /// whatever its name becomes, as the watch does; forgotten with the
    /// watch, and when the queue is drained), else opened through its
    /// folder's top and the names down to it, never following a link, so
    /// what is reached is always inside the folder. `None` if gone.
    fn open_watched(&mut self, wd: i32) -> Option<Arc<OpenDir>> {
        if let Some(open) = self.open_dirs.get(&wd) {
            return Some(open.clone());
        }
        let mut names = Vec::new();
        let mut at = wd;
        loop {
            let node = self.nodes.get(&at)?;
            match node.parent {
                Some(parent) => {
                    names.push(node.name.clone());
                    at = parent;
                }
                None => break,
            }
            if names.len() > self.nodes.len() {
                return None;
            }
        }
        let id = self.nodes.get(&at)?.folder;
        let folder = self.folders.get(&id)?;
        if folder.state != (State::Watched { top: at }) {
            return None;
        }
        let mut dir = fsutil::open_dir_nofollow(&folder.top).ok()?;
        let mut shown = folder.top.clone();
        for name in names.iter().rev() {
            dir = File::from(open_at(dir.as_fd(), name, DIR_FLAGS).ok()?);
            shown.push(name);
        }
        if self.open_dirs.len() >= OPEN_DIRS {
            self.open_dirs.clear();
        }
        let open = Arc::new(OpenDir { dir, shown });
        self.open_dirs.insert(wd, open.clone());
        Some(open)
    }

    /// Handle one read of events; true if the queue overflowed (every
    /// folder must then be scanned again).
    fn handle(&mut self, buffer: &[u8]) -> bool {
        let mut overflowed = false;
        // All of a read's events happened before any is handled, so one
        // look at a name is enough for all of them.
        let mut looked: HashSet<(i32, &OsStr)> = HashSet::new();
        for event in inotify::events(buffer) {
            if event.mask & inotify::IN_Q_OVERFLOW != 0 {
                overflowed = true;
                continue;
            }
            if event.mask & inotify::IN_IGNORED != 0 {
                self.dropped(event.wd);
                continue;
            }
            let Some(node) = self.nodes.get(&event.wd) else {
                continue;
            };
            let is_dir = event.mask & inotify::IN_ISDIR != 0;
            if event.mask & inotify::IN_MOVED_FROM != 0 {
                // A directory renamed away: forgotten here; found again
                // (and scanned) where it lands, if that is in a folder.
                if is_dir && let Some(&child) = node.children.get(event.name) {
                    self.forget_subtree(child);
                }
                continue;
            }
            let arrived = is_dir && event.mask & (inotify::IN_CREATE | inotify::IN_MOVED_TO) != 0;
            if !arrived && !looked.insert((event.wd, event.name)) {
                continue;
            }
            let id = node.folder;
            let Some(rule) = self.folders.get(&id).map(|f| f.rule) else {
                continue;
            };
            let Some(open) = self.open_watched(event.wd) else {
                continue;
            };
            let (dir, shown) = (&open.dir, &open.shown);
            let mut fixer = Fixer::new(rule, self.engine);
            if event.name.is_empty() {
                fixer.fix_open(dir, shown);
                self.totals.add(&fixer.count);
                continue;
            }
            let sub = fixer.fix_at(dir.as_fd(), shown, event.name);
            self.totals.add(&fixer.count);
            if let Some(sub) = sub {
                let known = self
                    .nodes
                    .get(&event.wd)
                    .is_some_and(|n| n.children.contains_key(event.name));
                if arrived || !known {
                    let shown = shown.join(event.name);
                    self.watch_new(id, event.wd, event.name, sub, shown);
                }
            }
        }
        overflowed
    }

    /// A directory arrived in a watched one: watch it, then scan it (what
    /// landed in it before its watch is found so).
    fn watch_new(&mut self, id: u64, parent: i32, name: &OsStr, dir: File, shown: PathBuf) {
        let Some(rule) = self.folders.get(&id).map(|f| f.rule) else {
            return;
        };
        let mut fixer = Fixer::new(rule, self.engine);
        let (inotify, nodes, limit) = (&self.inotify, &mut self.nodes, self.watch_limit);
        let stop = &self.shared.stop;
        let walked = match watch(inotify, &dir, nodes.len() >= limit) {
            Ok(None) => Ok(()),
            Ok(Some(wd)) => {
                register(nodes, wd, id, Some(parent), name);
                walk(&mut fixer, dir, shown, wd, |sub, parent, name| {
                    go_on(stop)?;
                    let wd = watch(inotify, sub, nodes.len() >= limit)?;
                    if let Some(wd) = wd {
                        register(nodes, wd, id, Some(parent), name);
                    }
                    Ok(wd)
                })
            }
            Err(stop) => Err(stop),
        };
        self.totals.add(&fixer.count);
        if let Err(WatchStop::NoSpace) = walked {
            self.fall_back(id);
        }
    }
}

/// Watch the open directory `dir`. Added through its /proc link, which
/// leads to this very directory whatever its name is now (so IN_DONT_FOLLOW
/// is not set: it would refuse that link; IN_ONLYDIR checks what is
/// reached). `None`: it is gone; other failures count as gone too, but
/// the limit of watches (or `full`: the test's limit reached) ends the walk.
fn watch(inotify: &Inotify, dir: &File, full: bool) -> std::result::Result<Option<i32>, WatchStop> {
    if full {
        return Err(WatchStop::NoSpace);
    }
    match inotify.add_watch(&fd_path(dir), WATCH_MASK) {
        Ok(wd) => Ok(Some(wd)),
        Err(e) if e.raw_os_error() == Some(inotify::ENOSPC) => Err(WatchStop::NoSpace),
        Err(_) => Ok(None),
    }
}

/// A folder's top: `Err(None)` at the limit of watches, else why not.
fn watch_or_error(
    inotify: &Inotify,
    dir: &File,
    full: bool,
) -> std::result::Result<i32, Option<io::Error>> {
    if full {
        return Err(None);
    }
    inotify
        .add_watch(&fd_path(dir), WATCH_MASK)
        .map_err(|e| (e.raw_os_error() != Some(inotify::ENOSPC)).then_some(e))
}

/// Record where a watched directory is (again: a directory watched already
/// gets its watch back from the kernel, and may have moved).
fn register(
    nodes: &mut HashMap<i32, Node>,
    wd: i32,
    folder: u64,
    parent: Option<i32>,
    name: &OsStr,
) {
    let children = match nodes.remove(&wd) {
        Some(old) => {
            unlink_from_parent(nodes, &old, wd);
            old.children
        }
        None => HashMap::new(),
    };
    if let Some(parent) = parent
        && let Some(p) = nodes.get_mut(&parent)
    {
        p.children.insert(name.to_owned(), wd);
    }
    nodes.insert(
        wd,
        Node {
            folder,
            parent,
            name: name.to_owned(),
            children,
        },
    );
}

fn unlink_from_parent(nodes: &mut HashMap<i32, Node>, node: &Node, wd: i32) {
    if let Some(parent) = node.parent.and_then(|p| nodes.get_mut(&p))
        && parent.children.get(&node.name) == Some(&wd)
    {
        parent.children.remove(&node.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_of(mode: u32, dir: bool) -> Metadata {
        let root = std::env::temp_dir().join(format!("syncbox-keeper-mode-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("test dir");
        let path = root.join("x");
        if dir {
            fs::create_dir(&path).expect("dir");
        } else {
            fs::write(&path, "x").expect("file");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        let meta = fs::symlink_metadata(&path).expect("meta");
        fs::remove_dir_all(&root).expect("clean up");
        meta
    }

    /// A keeper of an engine that runs as this test (so no root is
    /// needed: rules without an owner only chmod), with at most `limit`
    /// watches and scans every 50 ms; and its log.
    fn small_keeper(limit: usize) -> (Keeper, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = lines.clone();
        let engine = Owner {
            uid: sys::effective_uid(),
            gid: 0,
        };
        let keeper = Keeper::start_with(
            engine,
            Box::new(move |line: &str| locked(&log).push(line.to_owned())),
            limit,
            Duration::from_millis(50),
        )
        .expect("start");
        (keeper, lines)
    }

    const NARROW: Rule = Rule {
        owner: None,
        umask: 0o077,
    };

    fn test_dir(label: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("syncbox-keeper-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("test dir");
        root
    }

    fn made(path: &Path) {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .expect("a test file");
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).expect("meta").mode() & 0o7777
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 30 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn apply(keeper: &Keeper, folders: &[(&Path, Rule)]) -> KeeperStats {
        let generation =
            keeper.set_folders(folders.iter().map(|(p, r)| (p.to_path_buf(), *r)).collect());
        wait_until("applied", || keeper.stats().applied >= generation);
        keeper.stats()
    }

    fn said(log: &Mutex<Vec<String>>, what: &str) -> usize {
        locked(log).iter().filter(|l| l.contains(what)).count()
    }

    #[test]
    fn a_folder_past_the_limit_of_watches_is_scanned_instead() {
        let root = test_dir("fallback");
        let top = root.join("ns");
        for d in ["a", "b", "c/d"] {
            fs::create_dir_all(top.join(d)).expect("dirs");
        }
        made(&top.join("c/d/early"));
        let (keeper, log) = small_keeper(3);
        let stats = apply(&keeper, &[(&top, NARROW)]);
        assert_eq!(
            (stats.scanning_fallback, stats.watches),
            (1, 0),
            "{stats:?}"
        );
        assert_eq!(mode(&top.join("c/d/early")), 0o600, "scanned at once");
        // Found by a later scan, without a watch.
        made(&top.join("c/d/late"));
        wait_until("the late file fixed", || {
            mode(&top.join("c/d/late")) == 0o600
        });
        let scans_later = keeper.stats().fixed;
        made(&top.join("later"));
        wait_until("more scans", || keeper.stats().fixed > scans_later);
        assert_eq!(said(&log, "cannot watch every directory"), 1, "{log:?}");
        drop(keeper);
        fs::remove_dir_all(&root).expect("clean up");
    }

    #[test]
    fn a_missing_folder_is_kept_once_it_appears_and_a_new_rule_rescans() {
        let root = test_dir("missing");
        let top = root.join("ns");
        let (keeper, log) = small_keeper(usize::MAX);
        let stats = apply(&keeper, &[(&top, NARROW)]);
        assert_eq!((stats.folders, stats.missing), (1, 1), "{stats:?}");
        fs::create_dir(&top).expect("the folder appears");
        made(&top.join("f"));
        wait_until("the folder kept", || {
            let stats = keeper.stats();
            stats.missing == 0 && stats.watches == 1 && mode(&top.join("f")) == 0o600
        });
        assert_eq!(said(&log, "is missing"), 1, "{log:?}");
        // The engine widening a file it still owns (no owner in the rule):
        // narrowed again.
        fs::set_permissions(top.join("f"), fs::Permissions::from_mode(0o644)).expect("chmod");
        wait_until("the file narrowed again", || mode(&top.join("f")) == 0o600);

        // A wider rule: everything is scanned again at once.
        let group = Rule {
            owner: None,
            umask: 0o027,
        };
        apply(&keeper, &[(&top, group)]);
        assert_eq!(mode(&top.join("f")), 0o640);
        assert_eq!(mode(&top), 0o750);

        // Deleted: looked for again (said once more).
        fs::remove_dir_all(&top).expect("delete the folder");
        wait_until("the folder missing", || keeper.stats().missing == 1);
        assert_eq!(keeper.stats().watches, 0);
        assert_eq!(said(&log, "is missing"), 2, "{log:?}");
        drop(keeper);
        fs::remove_dir_all(&root).expect("clean up");
    }

    #[test]
    fn modes_follow_the_umask_and_the_execute_bits() {
        let engine = Owner { uid: 0, gid: 0 };
        let private = Fixer::new(
            Rule {
                owner: None,
                umask: 0o077,
            },
            engine,
        );
        let group = Fixer::new(
            Rule {
                owner: None,
                umask: 0o027,
            },
            engine,
        );
        assert_eq!(private.wanted_mode(&meta_of(0o644, false)), 0o600);
        assert_eq!(private.wanted_mode(&meta_of(0o744, false)), 0o700);
        assert_eq!(private.wanted_mode(&meta_of(0o4755, false)), 0o700);
        assert_eq!(private.wanted_mode(&meta_of(0o755, true)), 0o700);
        assert_eq!(group.wanted_mode(&meta_of(0o600, false)), 0o640);
        assert_eq!(group.wanted_mode(&meta_of(0o601, false)), 0o750);
        assert_eq!(group.wanted_mode(&meta_of(0o2700, true)), 0o750);
        assert!(is_partial(OsStr::new("movie.mkv.!sync")));
        assert!(is_partial(OsStr::new(
            "9F16EFBB6B3D53C60D6849035BACFDADB6766E62.SyncTemp"
        )));
        assert!(!is_partial(OsStr::new("movie.mkv")));
        assert!(!is_partial(OsStr::new("movie.mkv.SyncOld")));
    }
}
