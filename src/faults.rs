//! Fault injection for the crash tests, compiled into debug builds only.
//!
//! With `SYNCBOX_CRASH_AT=N`, the N-th crash point a process passes aborts
//! it on the spot (no destructors, no cleanup: on-disk state is left exactly
//! as a `kill -9` at that step would leave it). Release builds contain
//! neither the hook nor the variable's name.

#[cfg(debug_assertions)]
pub fn crash_point(step: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PASSED: AtomicU64 = AtomicU64::new(0);
    let Some(target) = std::env::var("SYNCBOX_CRASH_AT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    if PASSED.fetch_add(1, Ordering::SeqCst) + 1 == target {
        eprintln!("crash point {target}: {step}");
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn crash_point(_step: &str) {}

/// For the race tests: with `SYNCBOX_PAUSE_AT=STEP` and
/// `SYNCBOX_PAUSE_FILE=PATH`, the process that reaches `step` creates
/// `PATH.here` and waits (up to a minute) until `PATH` exists. That holds a
/// process at one exact point, as a SIGSTOP at the right instant or a
/// starved machine would. Debug builds only.
#[cfg(debug_assertions)]
pub fn pause_point(step: &str) {
    if std::env::var("SYNCBOX_PAUSE_AT").ok().as_deref() != Some(step) {
        return;
    }
    let Some(release) = std::env::var_os("SYNCBOX_PAUSE_FILE").map(std::path::PathBuf::from) else {
        return;
    };
    let mut here = release.clone().into_os_string();
    here.push(".here");
    let _ = std::fs::write(&here, step);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !release.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn pause_point(_step: &str) {}
