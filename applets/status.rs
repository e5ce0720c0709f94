use argh::FromArgs;
use serde_json::Value;
use syncbox::control;
use syncbox::dispatch::{Invocation, emit, parse_args, report};
use syncbox::layout::Layout;

/// Show what init is doing: the engine's pid, uptime, restart count,
/// folders and last exit. Exits 1 when no init runs on the data directory.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// print init's status as JSON
    #[argh(switch)]
    json: bool,
}

pub fn run(inv: &Invocation) -> u8 {
    let args: Args = match parse_args(inv) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let status = match Layout::from_env().and_then(|layout| control::query_status(&layout)) {
        Ok(status) => status,
        Err(e) => return report(inv.name, &e),
    };
    let Some(status) = status else {
        eprintln!(
            "{}: init is not running on this data directory (no control socket)",
            inv.name
        );
        return 1;
    };
    if args.json {
        emit(&format!("{status}\n"))
    } else {
        emit(&render(&status))
    }
}

fn render(status: &Value) -> String {
    let engine = &status["engine"];
    let seconds = |v: &Value| v.as_u64().map(duration).unwrap_or_else(|| "-".into());
    let folders: Vec<&str> = engine["folders"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut text = format!(
        "init:     pid {}, up {}{}\n",
        status["init"]["pid"],
        seconds(&status["init"]["uptime_seconds"]),
        if status["init"]["subreaper"] == true {
            " (subreaper, not PID 1)"
        } else {
            ""
        }
    );
    let state = engine["state"].as_str().unwrap_or("unknown");
    match engine["pid"].as_i64() {
        Some(pid) => text.push_str(&format!(
            "engine:   {state}, pid {pid}, up {}\n",
            seconds(&engine["uptime_seconds"])
        )),
        None => text.push_str(&format!(
            "engine:   {state}, next start in {}\n",
            seconds(&engine["retry_in_seconds"])
        )),
    }
    text.push_str(&format!(
        "restarts: {} for changes, {} after crashes\n",
        status["restarts"], status["crashes"]
    ));
    text.push_str(&format!(
        "folders:  {} {}\n",
        folders.len(),
        folders.join(" ")
    ));
    let last = &status["last_exit"];
    if last.is_null() {
        text.push_str("last exit: none\n");
    } else {
        text.push_str(&format!(
            "last exit: {}, {} ago\n",
            last["description"].as_str().unwrap_or("?"),
            seconds(&last["seconds_ago"])
        ));
    }
    text
}

fn duration(total: u64) -> String {
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}
