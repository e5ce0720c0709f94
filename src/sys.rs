//! Every foreign call syncbox makes, behind safe wrappers. Rust's std has no
//! kill, waitpid or prctl; std already links the C library, so the few
//! functions needed are declared here instead of pulling in the libc crate.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_ulong};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
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
}

unsafe extern "C" {
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn prctl(option: c_int, ...) -> c_int;
    fn getppid() -> c_int;
    fn geteuid() -> u32;
    fn gethostname(name: *mut c_char, len: usize) -> c_int;
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

    #[test]
    fn host_name_is_read() {
        let name = hostname().expect("gethostname");
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("kernel hostname");
        assert_eq!(name, kernel.trim_end());
    }
}
