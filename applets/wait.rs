use argh::FromArgs;
use syncbox::dispatch::{Invocation, run_applet};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::waiting::{self, Waited};

/// Wait until every named namespace holds the data: exit 0 once each is
/// `synced` (every online peer completed an exchange with this node since
/// the folder was added or the engine started, and nothing is left to
/// download), 1 at the timeout (each namespace's state printed) or when
/// init cannot tell (not running, or config-file mode), 2 on bad input.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// give up after this many seconds (default 300)
    #[argh(option)]
    timeout: Option<String>,
    /// namespace names
    #[argh(positional)]
    namespaces: Vec<String>,
}

pub fn run(inv: &Invocation) -> u8 {
    run_applet(inv, |args: Args| {
        if args.namespaces.is_empty() {
            return Err(syncbox::Error::Usage(
                "name at least one namespace to wait for".into(),
            ));
        }
        let names = args
            .namespaces
            .iter()
            .map(|n| Name::parse(n))
            .collect::<Result<Vec<Name>, _>>()?;
        let timeout = match &args.timeout {
            Some(text) => waiting::parse_timeout("--timeout", text)?,
            None => waiting::DEFAULT_TIMEOUT,
        };
        match waiting::until_synced(&Layout::from_env()?, &names, timeout)? {
            Waited::Synced => Ok(0),
            Waited::TimedOut(states) => Ok(waiting::report_timeout(inv.name, &states)),
        }
    })
}
