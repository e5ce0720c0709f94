use argh::FromArgs;
use syncbox::cluster::{self, Cluster};
use syncbox::cluster_key::choose_namespace_key;
use syncbox::control::{self, Waiting};
use syncbox::dispatch::{Invocation, parse_args, report};
use syncbox::keys::{Access, Key};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::registry::Registry;
use syncbox::{Error, Result};

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
    /// register the read-only form of the key (of --token, or of the one the
    /// cluster key derives): this node receives the namespace but cannot
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
    let args: Args = match parse_args(inv) {
        Ok(args) => args,
        Err(code) => return code,
    };
    match add(args) {
        Ok(()) => 0,
        Err(e) => report(inv.name, &e),
    }
}

fn add(args: Args) -> Result<()> {
    let name = Name::parse(&args.namespace)?;
    let key_text = match (args.token, args.secret) {
        (Some(_), Some(_)) => {
            return Err(Error::Usage(
                "give the key once: --token or --secret, not both".into(),
            ));
        }
        (token, secret) => token.or(secret),
    };
    let key = key_text.as_deref().map(Key::parse).transpose()?;
    let waiting = Waiting::from_env(args.no_wait)?;
    let layout = Layout::from_env()?;
    if args.cluster {
        if key.is_some() {
            return Err(Error::Usage(
                "--cluster takes no key: every node derives the same one from the cluster key"
                    .into(),
            ));
        }
        let cluster = Cluster::required(&layout, "add --cluster")?;
        let access = if args.read_only {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let registry = Registry::new(layout);
        cluster::declare(
            &registry,
            &cluster,
            &name,
            access,
            &cluster::device_name_from_env(),
        )?;
        control::announce_add(registry.layout(), &name, waiting)?;
        return Ok(());
    }
    let key = choose_namespace_key(&name, key, args.read_only)?;
    let registry = Registry::new(layout);
    registry.add_from(&name, key)?;
    control::announce_add(registry.layout(), &name, waiting)?;
    Ok(())
}
