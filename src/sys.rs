//! Every foreign call syncbox makes, behind safe wrappers. Rust's std has no
//! kill, waitpid or prctl; std already links the C library, so the few
//! functions needed are declared here instead of pulling in the libc crate.

use std::ffi::{c_char, c_int, c_ulong};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

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

/// Reap one terminated child of this process without blocking.
/// `Ok(None)` when no child has terminated (or there are no children).
pub fn reap_any() -> io::Result<Option<(Pid, ExitStatus)>> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: status points to a live c_int for the duration of the call.
        let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
        if pid > 0 {
            return Ok(Some((pid, ExitStatus::from_raw(status))));
        }
        if pid == 0 {
            return Ok(None);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(ECHILD) => return Ok(None),
            _ if error.kind() == io::ErrorKind::Interrupted => continue,
            _ => return Err(error),
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
