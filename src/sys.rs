//! Every foreign call syncbox makes, behind safe wrappers. Rust's std has no
//! kill, waitpid or prctl; std already links the C library, so the few
//! functions needed are declared here instead of pulling in the libc crate.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr, c_char, c_int, c_ulong};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A process id as the kernel reports it (in init's PID namespace).
pub type Pid = i32;

/// open(2) flags std has no names for, for `OpenOptionsExt::custom_flags`.
/// Their values differ between architectures.
pub mod open_flags {
    use std::ffi::c_int;

    /// Fail (ELOOP) instead of following a symbolic link in the last component.
    #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
    pub const O_NOFOLLOW: c_int = 0o100000;
    #[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
    pub const O_NOFOLLOW: c_int = 0o400000;
    /// Fail (ENOTDIR) unless the path is a directory.
    #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
    pub const O_DIRECTORY: c_int = 0o40000;
    #[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
    pub const O_DIRECTORY: c_int = 0o200000;
    /// Never wait in open(): a FIFO opens at once instead of waiting for a
    /// writer. Reads of regular files are unaffected.
    pub const O_NONBLOCK: c_int = 0o4000;
    /// The errno of O_NOFOLLOW meeting a symbolic link.
    pub const ELOOP: i32 = 40;
    /// A descriptor that only names a file (fstat, `*at` calls with an
    /// empty path) without opening it: nothing of the file's own runs (no
    /// device driver, no FIFO), and with O_NOFOLLOW it names a link itself.
    pub const O_PATH: c_int = 0o10000000;
    /// Never make a terminal this process's controlling terminal.
    pub const O_NOCTTY: c_int = 0o400;
    /// Closed in the programs this process executes.
    pub const O_CLOEXEC: c_int = 0o2000000;
}

unsafe extern "C" {
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn prctl(option: c_int, ...) -> c_int;
    fn getppid() -> c_int;
    fn geteuid() -> u32;
    fn gethostname(name: *mut c_char, len: usize) -> c_int;
    fn openat(dirfd: c_int, path: *const c_char, flags: c_int, ...) -> c_int;
    fn fchownat(dirfd: c_int, path: *const c_char, uid: u32, gid: u32, flags: c_int) -> c_int;
    fn inotify_init1(flags: c_int) -> c_int;
    fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int;
    fn inotify_rm_watch(fd: c_int, wd: c_int) -> c_int;
    fn poll(fds: *mut PollFd, nfds: c_ulong, timeout: c_int) -> c_int;
}

const WNOHANG: c_int = 1;
const ECHILD: i32 = 10;
const ESRCH: i32 = 3;
const PR_SET_PDEATHSIG: c_int = 1;
const PR_SET_CHILD_SUBREAPER: c_int = 36;
const SIGKILL: c_int = 9;

/// How a child ended, decoded from a waitpid status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(u8),
    Signaled(i32),
}

impl ExitStatus {
    fn from_raw(status: c_int) -> ExitStatus {
        let signal = status & 0x7f;
        if signal == 0 {
            ExitStatus::Exited(((status >> 8) & 0xff) as u8)
        } else {
            ExitStatus::Signaled(signal)
        }
    }

    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The status a shell (and docker) reports: the exit code, or 128+N for signal N.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => (128 + signal).clamp(0, 255) as u8,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit status {code}"),
            ExitStatus::Signaled(signal) => {
                write!(
                    f,
                    "killed by {} (status {})",
                    signal_name(*signal),
                    self.code()
                )
            }
        }
    }
}

/// "SIGTERM" for 15, "signal 42" for anything unnamed.
pub fn signal_name(signal: i32) -> String {
    signal_hook::low_level::signal_name(signal)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("signal {signal}"))
}

/// Send `signal` to `pid`. A process that is already gone is not an error:
/// it is about to be (or was) reaped.
pub fn send_signal(pid: Pid, signal: i32) -> io::Result<()> {
    if pid <= 0 {
        // kill() with 0 or a negative pid targets process groups; never meant here.
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: kill has no memory arguments; pid > 0 targets one process.
    if unsafe { kill(pid, signal) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(ESRCH) {
        Ok(())
    } else {
        Err(error)
    }
}

/// Is a process with this pid alive (or a zombie)? Signal 0 checks without sending.
pub fn process_exists(pid: Pid) -> bool {
    // SAFETY: as in send_signal; signal 0 only checks existence and permission.
    pid > 0
        && (unsafe { kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() != Some(ESRCH))
}

/// waitpid(pid, WNOHANG), retried on EINTR: `Ok(None)` while the child runs.
fn wait_no_hang(pid: c_int) -> io::Result<Option<(Pid, ExitStatus)>> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: status points to a live c_int for the duration of the call.
        let reaped = unsafe { waitpid(pid, &mut status, WNOHANG) };
        if reaped > 0 {
            return Ok(Some((reaped, ExitStatus::from_raw(status))));
        }
        if reaped == 0 {
            return Ok(None);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// The children that a thread of this process waits for itself (through
/// [`OwnedChild`]), by pid: running, or how it ended if [`reap_any`]
/// reaped it first. init's reaper takes every child with
/// `waitpid(-1)`; without this table a helper thread's own child (such as
/// `btsync --get-ro-secret`) would be reaped as an orphan and its waiter
/// left with ECHILD. Every spawn, wait and reap of such a child happens
/// with the table locked, so a pid is never reaped by the wrong owner.
static OWNED: Mutex<BTreeMap<Pid, OwnedSlot>> = Mutex::new(BTreeMap::new());

#[derive(Clone, Copy)]
enum OwnedSlot {
    Running,
    Exited(ExitStatus),
    /// Its owner dropped it unwaited: the reaper reaps it and forgets it.
    Abandoned,
}

fn owned_table() -> MutexGuard<'static, BTreeMap<Pid, OwnedSlot>> {
    // The table stays consistent between statements: a panic elsewhere
    // while it was locked leaves nothing half-changed.
    OWNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reap one terminated child of this process without blocking, and hand
/// it back if no thread owns it (the engine, or an orphan re-parented to
/// us). A child an [`OwnedChild`] waits for is kept for its owner.
/// `Ok(None)` when no such child has terminated (or there are no children).
pub fn reap_any() -> io::Result<Option<(Pid, ExitStatus)>> {
    let mut owned = owned_table();
    loop {
        let reaped = match wait_no_hang(-1) {
            Ok(reaped) => reaped,
            Err(error) if error.raw_os_error() == Some(ECHILD) => None,
            Err(error) => return Err(error),
        };
        let Some((pid, status)) = reaped else {
            return Ok(None);
        };
        match owned.get(&pid).copied() {
            None => return Ok(Some((pid, status))),
            Some(OwnedSlot::Abandoned) => {
                owned.remove(&pid);
            }
            Some(_) => {
                owned.insert(pid, OwnedSlot::Exited(status));
            }
        }
    }
}

/// A child process that the thread which started it waits for, even in a
/// process whose reaper takes every child (init). Its pipes are those of
/// the std `Child` it was started as; it is never waited for through std.
pub struct OwnedChild {
    pid: Pid,
    child: Child,
    waited: bool,
}

impl OwnedChild {
    /// Start `command` with its pid registered before any reaper can see it exit.
    pub fn spawn(command: &mut Command) -> io::Result<OwnedChild> {
        let mut owned = owned_table();
        let child = command.spawn()?;
        let pid = child.id() as Pid;
        owned.insert(pid, OwnedSlot::Running);
        Ok(OwnedChild {
            pid,
            child,
            waited: false,
        })
    }

    /// The child's standard output, if it was piped (once).
    fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// How the child ended, or `None` while it runs.
    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.waited {
            return Err(io::Error::other("the child was already waited for"));
        }
        let mut owned = owned_table();
        let status = match owned.get(&self.pid).copied() {
            Some(OwnedSlot::Exited(status)) => Some(status),
            _ => wait_no_hang(self.pid)?.map(|(_, status)| status),
        };
        if status.is_some() {
            owned.remove(&self.pid);
            self.waited = true;
        }
        Ok(status)
    }

    /// Wait for the child until `deadline`, polling every 10 ms (a blocking
    /// wait could not see an exit that the reaper took); `None` at the deadline.
    fn wait_until(&mut self, deadline: Instant) -> io::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait for the child until `deadline` (then SIGKILL it: `None`), and
    /// read at most `max` bytes of its piped standard output. For a child
    /// that answers in less than a pipe's capacity: the answer is read
    /// after it exits, so no reader thread is needed.
    pub fn output_until(
        &mut self,
        deadline: Instant,
        max: u64,
    ) -> io::Result<Option<(ExitStatus, Vec<u8>)>> {
        let Some(status) = self.wait_until(deadline)? else {
            let _ = self.kill_and_wait();
            return Ok(None);
        };
        let mut answer = Vec::new();
        if let Some(stdout) = self.take_stdout() {
            // Unreadable: the caller finds no answer in what it got.
            let _ = stdout.take(max).read_to_end(&mut answer);
        }
        Ok(Some((status, answer)))
    }

    /// SIGKILL the child and wait for it. Its pid cannot have been reused:
    /// an unwaited child stays a zombie, and ours is waited for only here.
    fn kill_and_wait(&mut self) -> io::Result<ExitStatus> {
        if self.waited {
            return Err(io::Error::other("the child was already waited for"));
        }
        send_signal(self.pid, SIGKILL)?;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        if self.waited {
            return;
        }
        let mut owned = owned_table();
        let done = matches!(owned.get(&self.pid), Some(OwnedSlot::Exited(_)))
            || matches!(wait_no_hang(self.pid), Ok(Some(_)));
        if done {
            owned.remove(&self.pid);
        } else {
            owned.insert(self.pid, OwnedSlot::Abandoned);
        }
    }
}

/// Make this process the reaper of its orphaned descendants, as PID 1 is.
pub fn become_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument.
    if unsafe { prctl(PR_SET_CHILD_SUBREAPER, 1 as c_ulong) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Arrange for the child started by `command` to be killed when this
/// process dies, so an engine can never outlive the init that supervises
/// it (files of a deleted namespace are only removed once no engine can
/// see them). Set after std switched uid/gid, which would clear it.
pub fn kill_child_with_parent(command: &mut Command) {
    // SAFETY: getpid via std before forking is plain Rust; the closure runs
    // in the forked child and only makes async-signal-safe system calls
    // (prctl, getppid) without allocating.
    let parent = std::process::id() as c_int;
    unsafe {
        command.pre_exec(move || {
            if prctl(PR_SET_PDEATHSIG, SIGKILL as c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if getppid() != parent {
                return Err(io::Error::other(
                    "the supervisor exited while starting the engine",
                ));
            }
            Ok(())
        });
    }
}

unsafe extern "C" {
    fn umask(mask: u32) -> u32;
}

/// Set this process's umask (its children inherit it); returns the old one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask takes a plain integer, always succeeds and touches no
    // memory of ours.
    unsafe { umask(mask & 0o777) }
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { geteuid() }
}

/// The kernel's host name (the container's name in docker).
pub fn hostname() -> io::Result<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for buffer.len() bytes; the result is
    // NUL-terminated when it fits, and the last byte is kept NUL below.
    let rc = unsafe { gethostname(buffer.as_mut_ptr().cast(), buffer.len() - 1) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    Ok(String::from_utf8_lossy(&buffer[..end]).into_owned())
}

/// A C string of a file name or path; a NUL inside (which no name read
/// from the kernel holds) is refused as InvalidInput.
fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A returned descriptor, or the errno of a failed call (-1).
fn owned_or_errno(fd: c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// openat(2): open `name`, one component (never a path with `/`, checked),
/// inside the directory `dir` is open on, so no ancestor is looked up again
/// by name. `flags` should hold O_NOFOLLOW and O_CLOEXEC. Never creates a
/// file (no O_CREAT, so no mode argument is passed).
pub fn open_at(dir: BorrowedFd<'_>, name: &OsStr, flags: c_int) -> io::Result<OwnedFd> {
    const O_CREAT: c_int = 0o100;
    const O_TMPFILE_BIT: c_int = 0o20000000;
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') || flags & (O_CREAT | O_TMPFILE_BIT) != 0 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let name = c_string(bytes)?;
    loop {
        // SAFETY: name is a NUL-terminated string alive for the call; dir
        // is an open descriptor borrowed for the call; without O_CREAT or
        // O_TMPFILE openat reads no variadic mode argument.
        let fd = unsafe { openat(dir.as_raw_fd(), name.as_ptr(), flags) };
        match owned_or_errno(fd) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Give the very file `fd` names to `uid:gid` (fchownat with an empty path).
/// For an O_PATH|O_NOFOLLOW descriptor of a symbolic link this changes the
/// link itself, never what it points to (open(2), O_PATH).
pub fn chown_named(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    const AT_SYMLINK_NOFOLLOW: c_int = 0x100;
    const AT_EMPTY_PATH: c_int = 0x1000;
    let empty: &CStr = c"";
    // SAFETY: the empty string is a static NUL-terminated C string; fd is an
    // open descriptor borrowed for the call.
    let rc = unsafe {
        fchownat(
            fd.as_raw_fd(),
            empty.as_ptr(),
            uid,
            gid,
            AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// inotify(7): the instance, its mask bits and its event records.
pub mod inotify {
    use super::*;

    pub const IN_ATTRIB: u32 = 0x4;
    pub const IN_CLOSE_WRITE: u32 = 0x8;
    pub const IN_MOVED_FROM: u32 = 0x40;
    pub const IN_MOVED_TO: u32 = 0x80;
    pub const IN_CREATE: u32 = 0x100;
    pub const IN_Q_OVERFLOW: u32 = 0x4000;
    pub const IN_IGNORED: u32 = 0x8000;
    pub const IN_ONLYDIR: u32 = 0x0100_0000;
    pub const IN_EXCL_UNLINK: u32 = 0x0400_0000;
    pub const IN_ISDIR: u32 = 0x4000_0000;
    /// The errno of a watch past `fs.inotify.max_user_watches`.
    pub const ENOSPC: i32 = 28;

    /// The size of `struct inotify_event` before its name: wd, mask,
    /// cookie, len (four 32-bit fields, on every architecture).
    const HEADER: usize = 16;

    /// One inotify instance, non-blocking and closed on exec; closed when dropped.
    pub struct Inotify {
        file: File,
    }

    impl Inotify {
        pub fn new() -> io::Result<Inotify> {
            use super::open_flags::{O_CLOEXEC, O_NONBLOCK};
            // IN_NONBLOCK and IN_CLOEXEC are O_NONBLOCK and O_CLOEXEC.
            // SAFETY: inotify_init1 takes one integer and returns a new fd.
            let fd = owned_or_errno(unsafe { inotify_init1(O_NONBLOCK | O_CLOEXEC) })?;
            Ok(Inotify {
                file: File::from(fd),
            })
        }

        /// Watch the directory at `path` (the watch descriptor; the same
        /// one again for an inode already watched, its mask replaced).
        pub fn add_watch(&self, path: &Path, mask: u32) -> io::Result<i32> {
            let path = c_string(path.as_os_str().as_bytes())?;
            // SAFETY: path is NUL-terminated and alive for the call; the fd
            // is ours and open.
            let wd = unsafe { inotify_add_watch(self.file.as_raw_fd(), path.as_ptr(), mask) };
            if wd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(wd)
            }
        }

        /// Stop a watch (the kernel then queues IN_IGNORED for it).
        pub fn rm_watch(&self, wd: i32) -> io::Result<()> {
            // SAFETY: two integers, no memory.
            if unsafe { inotify_rm_watch(self.file.as_raw_fd(), wd) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }

        /// Read queued events into `buffer` (whole records only): 0 when
        /// none is queued. `buffer` must hold one record with the longest
        /// name (16 + 256 bytes); 64 KiB takes hundreds at once.
        pub fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
            loop {
                match (&self.file).read(buffer) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }

        pub fn as_fd(&self) -> BorrowedFd<'_> {
            use std::os::fd::AsFd;
            self.file.as_fd()
        }
    }

    /// One `struct inotify_event`; `name` is empty for an event of the
    /// watched directory itself (and for IN_IGNORED, IN_Q_OVERFLOW).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Event<'a> {
        pub wd: i32,
        pub mask: u32,
        pub cookie: u32,
        pub name: &'a OsStr,
    }

    /// The records in what [`Inotify::read`] returned, parsed without any
    /// cast of the buffer: a truncated record (which the kernel never
    /// writes) ends the iteration.
    pub fn events(buffer: &[u8]) -> Events<'_> {
        Events { rest: buffer }
    }

    pub struct Events<'a> {
        rest: &'a [u8],
    }

    impl<'a> Iterator for Events<'a> {
        type Item = Event<'a>;

        fn next(&mut self) -> Option<Event<'a>> {
            let field = |at: usize| -> Option<[u8; 4]> {
                self.rest.get(at..at + 4).and_then(|b| b.try_into().ok())
            };
            let wd = i32::from_ne_bytes(field(0)?);
            let mask = u32::from_ne_bytes(field(4)?);
            let cookie = u32::from_ne_bytes(field(8)?);
            let len = u32::from_ne_bytes(field(12)?) as usize;
            let end = HEADER.checked_add(len)?;
            let Some(padded) = self.rest.get(HEADER..end) else {
                self.rest = &[];
                return None;
            };
            // The name is NUL-terminated and padded with NULs to `len`.
            let name = padded.split(|&b| b == 0).next().unwrap_or_default();
            self.rest = &self.rest[end..];
            Some(Event {
                wd,
                mask,
                cookie,
                name: OsStr::from_bytes(name),
            })
        }
    }
}

/// `struct pollfd`: the same layout on every Linux architecture.
#[repr(C)]
struct PollFd {
    fd: c_int,
    events: i16,
    revents: i16,
}

/// Wait until one of `fds` can be read, or `timeout`: for each, whether it
/// can (all false at the timeout or when a signal interrupted the wait).
/// A descriptor in error or hung up counts as readable: its read says why.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    const POLLIN: i16 = 0x1;
    let mut polled: Vec<PollFd> = fds
        .iter()
        .map(|fd| PollFd {
            fd: fd.as_raw_fd(),
            events: POLLIN,
            revents: 0,
        })
        .collect();
    // Rounded up, so a wait never ends just before what it waits for.
    let millis = timeout.as_micros().div_ceil(1000).min(c_int::MAX as u128) as c_int;
    // SAFETY: polled is a live array of polled.len() pollfd records, each
    // naming a descriptor borrowed for the call.
    let rc = unsafe { poll(polled.as_mut_ptr(), polled.len() as c_ulong, millis) };
    if rc < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(error);
    }
    Ok(polled.iter().map(|p| p.revents != 0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wait_statuses() {
        assert_eq!(ExitStatus::from_raw(0), ExitStatus::Exited(0));
        assert_eq!(ExitStatus::from_raw(3 << 8), ExitStatus::Exited(3));
        assert_eq!(ExitStatus::from_raw(255 << 8).code(), 255);
        assert_eq!(ExitStatus::from_raw(15), ExitStatus::Signaled(15));
        assert_eq!(ExitStatus::from_raw(15).code(), 143);
        // A core dump sets bit 7; the signal is still the low 7 bits.
        assert_eq!(ExitStatus::from_raw(0x80 | 11).code(), 139);
    }

    // reap_any is exercised by tests/init.rs through init: waitpid(-1) in
    // this test binary could steal the children of other unit tests.

    #[test]
    fn signals_to_gone_processes_are_harmless() {
        assert!(send_signal(0, 0).is_err());
        // pid_max is at most 2^22 on Linux, so this pid cannot exist.
        assert!(send_signal(i32::MAX - 1, 0).is_ok());
        assert!(!process_exists(i32::MAX - 1));
        assert!(process_exists(std::process::id() as Pid));
    }

    fn record(wd: i32, mask: u32, name: &[u8], padded: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&wd.to_ne_bytes());
        bytes.extend_from_slice(&mask.to_ne_bytes());
        bytes.extend_from_slice(&7u32.to_ne_bytes());
        bytes.extend_from_slice(&(padded as u32).to_ne_bytes());
        bytes.extend_from_slice(name);
        bytes.resize(bytes.len() + padded - name.len(), 0);
        bytes
    }

    #[test]
    fn inotify_records_are_parsed_and_a_truncated_one_ends_them() {
        let mut buffer = record(3, inotify::IN_CREATE, b"file.!sync", 16);
        buffer.extend(record(-1, inotify::IN_Q_OVERFLOW, b"", 0));
        buffer.extend(record(4, inotify::IN_ATTRIB, b"", 0));
        let mut truncated = record(5, inotify::IN_CREATE, b"cut", 16);
        truncated.truncate(20);
        buffer.extend(truncated);
        let parsed: Vec<_> = inotify::events(&buffer).collect();
        assert_eq!(parsed.len(), 3, "{parsed:?}");
        assert_eq!(
            (parsed[0].wd, parsed[0].mask, parsed[0].cookie),
            (3, inotify::IN_CREATE, 7)
        );
        assert_eq!(parsed[0].name, OsStr::new("file.!sync"));
        assert_eq!((parsed[1].wd, parsed[1].name), (-1, OsStr::new("")));
        assert_eq!((parsed[2].wd, parsed[2].mask), (4, inotify::IN_ATTRIB));
        assert_eq!(inotify::events(&buffer[..10]).count(), 0);
    }

    #[test]
    fn inotify_reports_a_new_file_in_a_watched_directory() {
        let root = std::env::temp_dir().join(format!("syncbox-inotify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("test dir");
        let dir = File::open(&root).expect("open the dir");
        let watcher = inotify::Inotify::new().expect("inotify_init1");
        let link = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let wd = watcher
            .add_watch(Path::new(&link), inotify::IN_CREATE | inotify::IN_ONLYDIR)
            .expect("watch through the open directory");
        let mut buffer = vec![0u8; 4096];
        assert_eq!(watcher.read(&mut buffer).expect("read"), 0, "nothing yet");
        std::fs::write(root.join("new"), "x").expect("a file");
        let ready = wait_readable(&[watcher.as_fd()], Duration::from_secs(5)).expect("poll");
        assert_eq!(ready, vec![true]);
        let read = watcher.read(&mut buffer).expect("read");
        let events: Vec<_> = inotify::events(&buffer[..read]).collect();
        assert!(
            events
                .iter()
                .any(|e| e.wd == wd && e.mask & inotify::IN_CREATE != 0 && e.name == "new"),
            "{events:?}"
        );
        // A file is refused with IN_ONLYDIR.
        let file = root.join("new");
        assert!(watcher.add_watch(&file, inotify::IN_ONLYDIR).is_err());
        watcher.rm_watch(wd).expect("rm_watch");
        std::fs::remove_dir_all(&root).expect("clean up");
    }

    #[test]
    fn host_name_is_read() {
        let name = hostname().expect("gethostname");
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("kernel hostname");
        assert_eq!(name, kernel.trim_end());
    }
}
