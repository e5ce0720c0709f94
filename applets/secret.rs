use argh::FromArgs;
use syncbox::dispatch::{Invocation, emit, parse_args, report};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::read_only::read_only_key;
use syncbox::registry::Registry;
use syncbox::{Error, Result};

/// Print the key of a namespace, so another node can join it with
/// `add --token=KEY NS`. Anyone holding a read-write key can change and
/// delete the namespace's data on every node: handle it like a password.
/// With --read-only, print the key a node needs to receive the namespace
/// without being able to change it.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// print the read-only key (B for an A key, R for a pre-1.2 key, E for a
    /// D key via $BTSYNC_BIN --get-ro-secret); read-only keys print as they are
    #[argh(switch)]
    read_only: bool,
    /// namespace name
    #[argh(positional)]
    namespace: String,
}

pub fn run(inv: &Invocation) -> u8 {
    let args: Args = match parse_args(inv) {
        Ok(args) => args,
        Err(code) => return code,
    };
    match secret(args) {
        Ok(text) => emit(&format!("{text}\n")),
        Err(e) => report(inv.name, &e),
    }
}

fn secret(args: Args) -> Result<String> {
    let name = Name::parse(&args.namespace)?;
    let registry = Registry::new(Layout::from_env()?);
    let entry = registry
        .get(&name)?
        .ok_or_else(|| Error::NotRegistered(name.to_string()))?;
    if args.read_only {
        return Ok(read_only_key(&entry.key)?.expose().to_owned());
    }
    Ok(entry.key.expose().to_owned())
}
