//! `wait`: until every named namespace is `synced` by the rule of
//! [`crate::sync_state`], asking init (which reads the engine at most once
//! a second, whoever asks) once a second.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::control;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::name::Name;
use crate::registry::Registry;

/// How often init is asked.
const POLL: Duration = Duration::from_secs(1);

/// How long `wait` and `add --wait` wait when not told.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// `--timeout=SECONDS` of `wait`, `--wait=SECONDS` of `add`: a usage error
/// (exit 2) naming `option` when it is not a number of seconds.
pub fn parse_timeout(option: &'static str, text: &str) -> Result<Duration> {
    crate::settings::parse_seconds(option, text).map_err(|e| match e {
        Error::Env { problem, .. } => Error::Usage(format!("{option}: {problem}")),
        other => other,
    })
}

/// How a wait ended (an error is neither).
pub enum Waited {
    /// Every namespace is `synced`.
    Synced,
    /// The time ran out: each namespace with its last state.
    TimedOut(Vec<(Name, Value)>),
}

/// Wait until every one of `names` is `synced`, or `timeout` passes.
pub fn until_synced(layout: &Layout, names: &[Name], timeout: Duration) -> Result<Waited> {
    let registry = Registry::new(layout.clone());
    for ns in names {
        if !registry.contains(ns)? {
            return Err(Error::Usage(format!(
                "{ns}: no such namespace (see 'list'); nothing to wait for"
            )));
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let Some(reply) = control::query_sync(layout)? else {
            return Err(Error::Supervisor(
                "init is not running on this data directory: nothing syncs, so nothing to wait for"
                    .into(),
            ));
        };
        if reply["mode"] != "webui" {
            return Err(Error::Supervisor(
                "init runs the engine in config-file mode, where the engine tells nothing of \
                 its sync state (start init with BTSYNC_ENGINE_API=webui)"
                    .into(),
            ));
        }
        let states: Vec<(Name, Value)> = names
            .iter()
            .map(|ns| (ns.clone(), reply["namespaces"][ns.as_str()].clone()))
            .collect();
        if states.iter().all(|(_, state)| state["state"] == "synced") {
            return Ok(Waited::Synced);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Waited::TimedOut(states));
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

/// At a timeout: one line per namespace on stderr, prefixed by `applet`;
/// the exit status (1).
pub fn report_timeout(applet: &str, states: &[(Name, Value)]) -> u8 {
    for (ns, state) in states {
        eprintln!("{applet}: {}", describe(ns, state));
    }
    1
}

/// One line for a namespace's state: `gitlab: syncing, 3 files (1,024 bytes)
/// left, 1 of 2 peers online, last sync 1796200562`.
pub fn describe(ns: &Name, state: &Value) -> String {
    let word = state["state"].as_str().unwrap_or("unknown");
    let mut parts = vec![word.to_owned()];
    if let (Some(files), Some(bytes)) = (state["files_left"].as_u64(), state["bytes_left"].as_u64())
    {
        parts.push(format!("{files} files ({bytes} bytes) left"));
    }
    match (
        state["peers_online"].as_u64(),
        state["peers_known"].as_u64(),
    ) {
        (Some(0), _) | (None, _) if word == "unknown" => parts.push("no peer online".into()),
        (Some(online), Some(known)) => parts.push(format!("{online} of {known} peers online")),
        _ => {}
    }
    if let Some(at) = state["last_sync"].as_u64() {
        parts.push(format!("last completed sync at {at} (unix time)"));
    }
    format!("{ns}: {}", parts.join(", "))
}
