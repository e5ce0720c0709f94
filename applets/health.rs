use argh::FromArgs;
use syncbox::control;
use syncbox::dispatch::{Invocation, run_applet};
use syncbox::layout::Layout;

/// Exit 0 when init runs and the engine is running, or init is idle (nothing
/// to sync, so no engine is needed); 1 otherwise (with the reason on
/// stderr), also while cluster removals wait because the cluster trash is
/// full. Made for a shell-less Docker HEALTHCHECK:
/// `HEALTHCHECK CMD ["/bin/health"]`.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {}

pub fn run(inv: &Invocation) -> u8 {
    run_applet(inv, |Args {}| {
        let Some(status) = control::query_status(&Layout::from_env()?)? else {
            eprintln!("{}: unhealthy: init is not running", inv.name);
            return Ok(1);
        };
        let state = status["engine"]["state"].as_str().unwrap_or("unknown");
        if state != "running" && state != "idle" {
            eprintln!("{}: unhealthy: the engine is {state}", inv.name);
            return Ok(1);
        }
        let trash = &status["cluster"]["trash"];
        let waiting = trash["removals_waiting_count"].as_u64().unwrap_or(0);
        if waiting > 0 {
            eprintln!(
                "{}: unhealthy: {waiting} cluster removal(s) wait: {}; empty .btsync/cluster-trash \
                 or raise the limit",
                inv.name,
                trash["why"].as_str().unwrap_or("the cluster trash is full")
            );
            return Ok(1);
        }
        Ok(0)
    })
}
