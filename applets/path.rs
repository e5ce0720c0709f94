use std::str::FromStr;

use argh::FromArgs;
use syncbox::Error;
use syncbox::dispatch::{Invocation, emit, run_applet};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::registry::Registry;

/// Print the path of a namespace's folder: on the host (default, for
/// `docker run -v $(ctl path NS):...`) or inside this container.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// host (needs BTSYNC_HOST_PATH) or container; default host
    #[argh(option, default = "Scope::Host")]
    scope: Scope,
    /// namespace name
    #[argh(positional)]
    namespace: String,
}

enum Scope {
    Host,
    Container,
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Scope, String> {
        match text {
            "host" => Ok(Scope::Host),
            "container" => Ok(Scope::Container),
            _ => Err("--scope must be host or container".into()),
        }
    }
}

pub fn run(inv: &Invocation) -> u8 {
    run_applet(inv, |args: Args| {
        let name = Name::parse(&args.namespace)?;
        let registry = Registry::new(Layout::from_env()?);
        if !registry.contains(&name)? {
            return Err(Error::NotRegistered(name.to_string()));
        }
        let layout = registry.layout();
        let path = match args.scope {
            Scope::Container => layout.folder(&name),
            Scope::Host => layout.host_folder(&name).ok_or(Error::HostPathUnknown)?,
        };
        Ok(emit(&format!("{}\n", path.display())))
    })
}
