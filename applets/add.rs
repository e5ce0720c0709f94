use std::path::PathBuf;

use argh::FromArgs;
use syncbox::Error;
use syncbox::control::Waiting;
use syncbox::dispatch::{Invocation, default_option_value, run_applet};
use syncbox::keys::{self, Key};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::ops::{self, AddRequest};
use syncbox::waiting::{self, Waited};

/// Register a namespace and create its folder under the data root. Without
/// a key, the key is derived from the cluster key (BTSYNC_CLUSTER_KEY_FILE or
/// BTSYNC_CLUSTER_KEY) when one is set, else a new read-write key is
/// generated. Adding a namespace again with no key or the same key changes
/// nothing; a different key is refused.
/// When init runs, returns once the running engine serves the namespace
/// (not once its data is here: see --wait). With --cluster, also declares
/// it for every node of the cluster.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// the namespace's btsync key (any kind; lower case is accepted)
    #[argh(option)]
    token: Option<String>,
    /// same as --token
    #[argh(option)]
    secret: Option<String>,
    /// read the key from this file instead (one key; whitespace around it
    /// is fine), or from standard input with -: the key stays off the
    /// command line, which ps and docker inspect show
    #[argh(option)]
    token_file: Option<PathBuf>,
    /// register the read-only form of the key (the one given, or the one
    /// the cluster key derives): this node receives the namespace but cannot
    /// change it on other nodes
    #[argh(switch)]
    read_only: bool,
    /// return right after registering; init applies the change shortly
    #[argh(switch)]
    no_wait: bool,
    /// then wait until the namespace's data is here (`synced`, as the wait
    /// applet tells it), at most SECONDS (--wait alone: 300): exit 1 at the
    /// timeout with what is left (the namespace stays added)
    #[argh(option)]
    wait: Option<String>,
    /// declare the namespace cluster-wide: every node whose engine syncs the
    /// cluster registry adds it too, with the key the cluster key derives
    #[argh(switch)]
    cluster: bool,
    /// namespace name: 1-64 of a-z 0-9 . _ -, starting with a letter or digit
    #[argh(positional)]
    namespace: String,
}

pub fn run(inv: &Invocation) -> u8 {
    let default_wait = waiting::DEFAULT_TIMEOUT.as_secs().to_string();
    let args = default_option_value(inv.args, "--wait", &default_wait);
    let inv = &Invocation {
        name: inv.name,
        args: &args,
    };
    run_applet(inv, |args: Args| {
        let wait = match &args.wait {
            Some(_) if args.no_wait => {
                return Err(Error::Usage(
                    "--wait and --no-wait contradict each other: give one".into(),
                ));
            }
            Some(text) => Some(waiting::parse_timeout("--wait", text)?),
            None => None,
        };
        let given = [
            args.token.is_some(),
            args.secret.is_some(),
            args.token_file.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() > 1 {
            return Err(Error::Usage(
                "give the key once: --token, --secret or --token-file, not two of them".into(),
            ));
        }
        let key = match (args.token.or(args.secret), args.token_file) {
            (Some(text), _) => Some(Key::parse(&text)?),
            (None, Some(path)) => Some(keys::read_key_file(&path)?),
            (None, None) => None,
        };
        let name = Name::parse(&args.namespace)?;
        let request = AddRequest {
            name: name.clone(),
            key,
            read_only: args.read_only,
            cluster: args.cluster,
            waiting: Waiting::from_env(args.no_wait)?,
        };
        let layout = Layout::from_env()?;
        ops::add(layout.clone(), request)?;
        let Some(timeout) = wait else {
            return Ok(0);
        };
        match waiting::until_synced(&layout, std::slice::from_ref(&name), timeout) {
            Ok(Waited::Synced) => Ok(0),
            Ok(Waited::TimedOut(states)) => Ok(waiting::report_timeout(inv.name, &states)),
            Err(e) => Err(Error::Supervisor(format!(
                "{name} is added, but its data cannot be waited for: {e}"
            ))),
        }
    })
}
