use argh::FromArgs;
use serde_json::Value;
use syncbox::control;
use syncbox::dispatch::{Invocation, emit, run_applet};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::registry::Registry;
use syncbox::trash_limit;
use syncbox::waiting;

/// Show what init is doing: the engine's pid, uptime, restart count,
/// folders and last exit, and in cluster mode the registry's declarations,
/// tombstones, ignored files and last reconcile. Exits 1 when no init runs
/// on the data directory.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// print init's status as JSON
    #[argh(switch)]
    json: bool,
    /// only this namespace's sync state (WebUI mode; `unknown` otherwise)
    #[argh(positional)]
    namespace: Option<String>,
}

pub fn run(inv: &Invocation) -> u8 {
    run_applet(inv, |args: Args| {
        if let Some(ns) = &args.namespace {
            return namespace_status(inv, &Name::parse(ns)?, args.json);
        }
        let Some(status) = control::query_status(&Layout::from_env()?)? else {
            return Ok(no_init(inv));
        };
        Ok(if args.json {
            emit(&format!("{status}\n"))
        } else {
            emit(&render(&status))
        })
    })
}

/// No init answers on this data directory: say so; exit status 1.
fn no_init(inv: &Invocation) -> u8 {
    eprintln!(
        "{}: init is not running on this data directory (no control socket)",
        inv.name
    );
    1
}

/// `status NS`: one line (or its JSON) of the namespace's sync state.
fn namespace_status(inv: &Invocation, ns: &Name, json: bool) -> syncbox::Result<u8> {
    let layout = Layout::from_env()?;
    if !Registry::new(layout.clone()).contains(ns)? {
        return Err(syncbox::Error::NotRegistered(ns.to_string()));
    }
    let Some(sync) = control::query_sync(&layout)? else {
        return Ok(no_init(inv));
    };
    let state = &sync["namespaces"][ns.as_str()];
    Ok(if json {
        emit(&format!("{state}\n"))
    } else {
        let mode = if sync["mode"] == "webui" {
            ""
        } else {
            " (config-file mode: the engine tells nothing of its state)"
        };
        emit(&format!("{}{mode}\n", waiting::describe(ns, state)))
    })
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
        None if state == "idle" => text
            .push_str("engine:   idle, not running: nothing to sync (the first add starts it)\n"),
        None => text.push_str(&format!(
            "engine:   {state}, next start in {}\n",
            seconds(&engine["retry_in_seconds"])
        )),
    }
    match (engine["name"].as_str(), engine["version"].as_str()) {
        (Some(name), version) => text.push_str(&format!(
            "version:  {name} {}{}\n",
            version.unwrap_or("(no version shown)"),
            if engine["proven"] == true {
                " (the version syncbox's tests run)"
            } else {
                " (not a version syncbox's tests run: see docs/image.md)"
            }
        )),
        (None, _) => text.push_str("version:  unknown (see init's log)\n"),
    }
    text.push_str(&format!(
        "restarts: {} for changes, {} after crashes\n",
        status["restarts"], status["crashes"]
    ));
    if let Some(apply) = status["apply"].as_str() {
        text.push_str(&format!(
            "apply:    {apply}; {} reloads, {} fell back to a restart\n",
            status["reloads"], status["reload_fallbacks"]
        ));
    }
    // The lists of the reply are samples; the counts are complete.
    let count = |value: &Value, shown: usize| value.as_u64().map_or(shown as u64, |n| n);
    let more = |total: u64, shown: usize| {
        if total > shown as u64 {
            format!(" (and {} more)", total - shown as u64)
        } else {
            String::new()
        }
    };
    let folder_count = count(&engine["folder_count"], folders.len());
    text.push_str(&format!(
        "folders:  {folder_count} {}{}\n",
        folders.join(" "),
        more(folder_count, folders.len())
    ));
    let not_served: Vec<&str> = engine["not_served"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !not_served.is_empty() {
        text.push_str(&format!(
            "not served: {} (in the engine's config, never seen served; see init's log)\n",
            not_served.join(" ")
        ));
    }
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
    let keeper = &status["keeper"];
    match keeper["running"].as_bool() {
        Some(true) => text.push_str(&format!(
            "keeper:   {} folders with an owner or umask watched, {} entries given to their owner{}\n",
            keeper["folders"].as_u64().unwrap_or(0),
            keeper["fixed"].as_u64().unwrap_or(0),
            match keeper["errors"].as_u64().unwrap_or(0) {
                0 => String::new(),
                n => format!(", {n} errors (see init's log)"),
            }
        )),
        Some(false) => text.push_str(&format!(
            "keeper:   not running ({}): the engine's files keep its owner\n",
            keeper["problem"].as_str().unwrap_or("?")
        )),
        None => {}
    }
    let cluster = &status["cluster"];
    if cluster.is_object() {
        let names = |list: &Value| -> Vec<String> {
            list.as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            let by = r["device_name"].as_str().unwrap_or("?");
                            format!("{} ({by})", r["name"].as_str().unwrap_or("?"))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let declared = names(&cluster["declared"]);
        let removed = names(&cluster["removed"]);
        text.push_str(&format!(
            "cluster:  id {}, device {}, registry {}, read {} ago\n",
            cluster["cluster_id"].as_str().unwrap_or("?"),
            cluster["device"].as_str().unwrap_or("?"),
            cluster["registry"].as_str().unwrap_or("?"),
            seconds(&cluster["last_scan_seconds_ago"])
        ));
        let declared_count = count(&cluster["declared_count"], declared.len());
        text.push_str(&format!(
            "declared: {declared_count} {}{}\n",
            declared.join(" "),
            more(declared_count, declared.len())
        ));
        let removed_count = count(&cluster["removed_count"], removed.len());
        text.push_str(&format!(
            "removed:  {removed_count} {}{}\n",
            removed.join(" "),
            more(removed_count, removed.len())
        ));
        if let Some(ignored) = cluster["ignored"].as_array().filter(|a| !a.is_empty()) {
            let ignored_count = count(&cluster["ignored_count"], ignored.len());
            text.push_str(&format!("ignored:  {ignored_count} file(s)"));
            for item in ignored.iter().take(5) {
                text.push_str(&format!(
                    "; {} ({})",
                    item["file"].as_str().unwrap_or("?"),
                    item["reason"].as_str().unwrap_or("?")
                ));
            }
            text.push('\n');
        }
        if let Some(forged) = cluster["forged"].as_array().filter(|a| !a.is_empty()) {
            let files: Vec<&str> = forged.iter().filter_map(Value::as_str).collect();
            let forged_count = count(&cluster["forged_count"], files.len());
            text.push_str(&format!(
                "forged:   {forged_count} record(s) under this device id that it did not write, not applied: {}{}\n",
                files.join(" "),
                more(forged_count, files.len())
            ));
        }
        let trash = &cluster["trash"];
        if trash.is_object() {
            let max_bytes = trash["max_bytes"].as_u64().map_or(String::new(), |b| {
                format!(", at most {}", trash_limit::size_text(b))
            });
            let bytes = trash["bytes"].as_u64().map_or(String::new(), |b| {
                format!(", {}", trash_limit::size_text(b))
            });
            text.push_str(&format!(
                "trash:    {} of at most {} copies{bytes}{max_bytes}; purge tombstones {}\n",
                trash["copies"].as_u64().unwrap_or(0),
                trash["max_copies"].as_u64().unwrap_or(0),
                if cluster["purge"].as_str() == Some("honoured") {
                    "delete here (BTSYNC_CLUSTER_PURGE on)"
                } else {
                    "go to the trash here"
                },
            ));
            let waiting = trash["removals_waiting_count"].as_u64().unwrap_or(0);
            if waiting > 0 {
                text.push_str(&format!(
                    "removals waiting: {waiting}: {}\n",
                    trash["why"].as_str().unwrap_or("the cluster trash is full")
                ));
            }
        }
        let adds = &cluster["adds"];
        let adds_waiting = adds["waiting"].as_u64().unwrap_or(0);
        if adds_waiting > 0 {
            text.push_str(&format!(
                "adds waiting: {adds_waiting}: {}\n",
                if adds["cap_reached"] == true {
                    format!(
                        "a member declared more than this node takes from one member ({}, BTSYNC_CLUSTER_MAX_NAMESPACES)",
                        adds["max_namespaces"].as_u64().unwrap_or(0)
                    )
                } else {
                    format!(
                        "taken {} at a time, once the engine took the last ones (BTSYNC_CLUSTER_ADD_STEP)",
                        adds["step"].as_u64().unwrap_or(0)
                    )
                }
            ));
        }
        let last = &cluster["last_reconcile"];
        if last.is_null() {
            text.push_str("last reconcile: no changes yet\n");
        } else {
            let changes: Vec<&str> = last["changes"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            text.push_str(&format!(
                "last reconcile: {} ago: {}\n",
                seconds(&last["seconds_ago"]),
                changes.join(", ")
            ));
        }
        if let Some(failures) = cluster["failures"].as_array().filter(|a| !a.is_empty()) {
            for failure in failures {
                text.push_str(&format!(
                    "not added: {}: {}\n",
                    failure["name"].as_str().unwrap_or("?"),
                    failure["problem"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    // An empty list leaves "folders:  0 "; no line ends in a space.
    text.lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

fn duration(total: u64) -> String {
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}
