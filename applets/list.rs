use argh::FromArgs;
use serde_json::{Value, json};
use syncbox::dispatch::{Invocation, emit, run_applet};
use syncbox::file_rule;
use syncbox::layout::Layout;
use syncbox::registry::Registry;

/// Print the registered namespaces, sorted, space-separated on one line.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// print a JSON array of {name, container_path, host_path, access, key_origin,
    /// declared, owner, umask, sync}; never keys
    #[argh(switch)]
    json: bool,
}

pub fn run(inv: &Invocation) -> u8 {
    run_applet(inv, |args: Args| Ok(emit(&render(inv.name, args.json)?)))
}

fn render(applet: &str, as_json: bool) -> syncbox::Result<String> {
    let registry = Registry::new(Layout::from_env()?);
    if !as_json {
        let names = registry.names()?;
        if names.is_empty() {
            return Ok(String::new());
        }
        let line: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        return Ok(format!("{}\n", line.join(" ")));
    }
    let layout = registry.layout();
    // Each namespace's sync state, when an init runs (null otherwise, or
    // when it does not answer: `list` works on the registry alone).
    let sync = syncbox::control::query_sync(layout).ok().flatten();
    let sync_of = |name: &syncbox::name::Name| {
        sync.as_ref()
            .map_or(Value::Null, |s| s["namespaces"][name.as_str()].clone())
    };
    let mut items = Vec::new();
    for name in registry.names()? {
        let container_path = layout.folder(&name).display().to_string();
        let host_path = layout.host_folder(&name).map(|p| p.display().to_string());
        match registry.get(&name) {
            Ok(Some(entry)) => items.push(json!({
                "name": name.as_str(),
                "container_path": container_path,
                "host_path": host_path,
                "access": entry.key.access().as_str(),
                "key_origin": entry.origin.as_str(),
                "declared": if entry.from_cluster { "cluster" } else { "local" },
                // "UID:GID", or null: the engine's user.
                "owner": entry.rule.owner.map(file_rule::owner_text),
                "umask": file_rule::umask_text(entry.rule.umask),
                "sync": sync_of(&name),
            })),
            // Deleted between the listing and the read: simply gone.
            Ok(None) => {}
            // One damaged entry must not hide the others: it is listed
            // with what its name tells and what is wrong, and reported.
            Err(e) => match e.damage() {
                Some(damage) => {
                    eprintln!("{applet}: {e}");
                    items.push(json!({
                        "name": name.as_str(),
                        "container_path": container_path,
                        "host_path": host_path,
                        "damaged": damage,
                    }));
                }
                None => return Err(e),
            },
        }
    }
    Ok(format!("{}\n", Value::Array(items)))
}
