use argh::FromArgs;
use serde_json::{Value, json};
use syncbox::dispatch::{Invocation, emit, run_applet};
use syncbox::layout::Layout;
use syncbox::registry::Registry;

/// Print the registered namespaces, sorted, space-separated on one line.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// print a JSON array of {name, container_path, host_path, access, key_origin,
    /// declared}; never keys
    #[argh(switch)]
    json: bool,
}

pub fn run(inv: &Invocation) -> u8 {
    run_applet(inv, |args: Args| Ok(emit(&render(args.json)?)))
}

fn render(as_json: bool) -> syncbox::Result<String> {
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
    let items: Vec<Value> = registry
        .entries()?
        .iter()
        .map(|entry| {
            json!({
                "name": entry.name.as_str(),
                "container_path": layout.folder(&entry.name).display().to_string(),
                "host_path": layout.host_folder(&entry.name).map(|p| p.display().to_string()),
                "access": entry.key.access().as_str(),
                "key_origin": entry.origin.as_str(),
                "declared": if entry.from_cluster { "cluster" } else { "local" },
            })
        })
        .collect();
    Ok(format!("{}\n", Value::Array(items)))
}
