use argh::FromArgs;
use syncbox::control;
use syncbox::dispatch::{Invocation, parse_args, report};
use syncbox::layout::Layout;

/// Exit 0 when init and the engine are running, 1 otherwise (with the
/// reason on stderr). Made for a shell-less Docker HEALTHCHECK:
/// `HEALTHCHECK CMD ["/bin/health"]`.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {}

pub fn run(inv: &Invocation) -> u8 {
    let _args: Args = match parse_args(inv) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let status = match Layout::from_env().and_then(|layout| control::query_status(&layout)) {
        Ok(status) => status,
        Err(e) => return report(inv.name, &e),
    };
    let Some(status) = status else {
        eprintln!("{}: unhealthy: init is not running", inv.name);
        return 1;
    };
    let state = status["engine"]["state"].as_str().unwrap_or("unknown");
    if state == "running" {
        0
    } else {
        eprintln!("{}: unhealthy: the engine is {state}", inv.name);
        1
    }
}
