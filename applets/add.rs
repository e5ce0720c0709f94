use std::path::{Path, PathBuf};

use argh::FromArgs;
use syncbox::Error;
use syncbox::control::Waiting;
use syncbox::dispatch::{Invocation, default_option_value, run_applet};
use syncbox::file_rule::{self, RuleChange};
use syncbox::keys::{self, Key};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::ops::{self, AddRequest};
use syncbox::user_db;
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
    /// (and the --owner and --umask given)
    #[argh(switch)]
    cluster: bool,
    /// a new random key even when a cluster key is set: no other node can
    /// derive it (without --local, a namespace added in cluster mode is
    /// readable and writable by every member of the cluster)
    #[argh(switch)]
    local: bool,
    /// who owns the namespace's files on this node: USER[:GROUP], names
    /// from this image's /etc/passwd and /etc/group or numbers. The folder,
    /// its data folder and every file the engine writes get this owner;
    /// files a service writes keep theirs. Default: the engine's user
    #[argh(option)]
    owner: Option<String>,
    /// permission bits the engine's files never have, in octal: group and
    /// other bits only. Default 077 (only the owner can read them); 027
    /// lets the group read
    #[argh(option)]
    umask: Option<String>,
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
        let rule = RuleChange {
            owner: match &args.owner {
                Some(text) => Some(
                    user_db::owner(text, Path::new(user_db::USER_DB_DIR))
                        .map_err(|problem| Error::Usage(format!("--owner: {problem}")))?,
                ),
                None => None,
            },
            umask: match &args.umask {
                Some(text) => Some(
                    file_rule::parse_umask(text)
                        .map_err(|problem| Error::Usage(format!("--umask: {problem}")))?,
                ),
                None => None,
            },
        };
        let request = AddRequest {
            name: name.clone(),
            key,
            read_only: args.read_only,
            cluster: args.cluster,
            local: args.local,
            waiting: Waiting::from_env(args.no_wait)?,
            rule,
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
