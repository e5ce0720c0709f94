use argh::FromArgs;
use syncbox::Error;
use syncbox::dispatch::{Invocation, emit, run_applet};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::read_only::read_only_key;
use syncbox::registry::Registry;

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
    run_applet(inv, |args: Args| {
        let name = Name::parse(&args.namespace)?;
        let registry = Registry::new(Layout::from_env()?);
        let entry = registry
            .get(&name)?
            .ok_or_else(|| Error::NotRegistered(name.to_string()))?;
        let key = if args.read_only {
            read_only_key(&entry.key)?
        } else {
            entry.key
        };
        Ok(emit(&format!("{}\n", key.expose())))
    })
}
