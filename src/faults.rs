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
