use std::path::PathBuf;

use argh::FromArgs;
use syncbox::Error;
use syncbox::control::Waiting;
use syncbox::dispatch::{Invocation, run_applet};
use syncbox::keys::{self, Key};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::ops::{self, AddRequest};

/// Register a namespace and create its folder under the data root. Without
/// a key, the key is derived from the cluster key (BTSYNC_CLUSTER_KEY_FILE or
/// BTSYNC_CLUSTER_KEY) when one is set, else a new read-write key is
/// generated. Adding a namespace again with no key or the same key changes
/// nothing; a different key is refused.
/// When init runs, waits until the running engine syncs the namespace.
/// With --cluster, also declares it for every node of the cluster.
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
    /// declare the namespace cluster-wide: every node whose engine syncs the
    /// cluster registry adds it too, with the key the cluster key derives
    #[argh(switch)]
    cluster: bool,
    /// namespace name: 1-64 of a-z 0-9 . _ -, starting with a letter or digit
    #[argh(positional)]
    namespace: String,
}

pub fn run(inv: &Invocation) -> u8 {
    run_applet(inv, |args: Args| {
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
        let request = AddRequest {
            name: Name::parse(&args.namespace)?,
            key,
            read_only: args.read_only,
            cluster: args.cluster,
            waiting: Waiting::from_env(args.no_wait)?,
        };
        ops::add(Layout::from_env()?, request)?;
        Ok(0)
    })
}
