use argh::FromArgs;
use syncbox::dispatch::{Invocation, run_applet};
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
    run_applet(inv, |args: Args| {
        let name = Name::parse(&args.namespace)?;
        let registered = Registry::new(Layout::from_env()?).contains(&name)?;
        Ok(if registered { 0 } else { 1 })
    })
}
