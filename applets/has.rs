use argh::FromArgs;
use syncbox::dispatch::{Invocation, parse_args, report};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::registry::Registry;

/// Exit 0 if the namespace is registered, 1 if it is not, 2 if the name is
/// invalid. Prints nothing.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// namespace name
    #[argh(positional)]
    namespace: String,
}

pub fn run(inv: &Invocation) -> u8 {
    let args: Args = match parse_args(inv) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let found = Name::parse(&args.namespace)
        .map_err(syncbox::Error::from)
        .and_then(|name| Registry::new(Layout::from_env()?).contains(&name));
    match found {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => report(inv.name, &e),
    }
}
