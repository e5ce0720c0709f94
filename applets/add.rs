use argh::FromArgs;
use syncbox::control::{self, Waiting};
use syncbox::dispatch::{Invocation, parse_args, report};
use syncbox::keys::Key;
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::registry::Registry;
use syncbox::{Error, Result};

/// Register a namespace and create its folder under the data root. Without
/// a key a new read-write key is generated. Adding a namespace again with no
/// key or the same key changes nothing; a different key is refused.
/// When init runs, waits until the running engine syncs the namespace.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// the namespace's btsync key (any kind; lower case is accepted)
    #[argh(option)]
    token: Option<String>,
    /// same as --token
    #[argh(option)]
    secret: Option<String>,
    /// return right after registering; init applies the change shortly
    #[argh(switch)]
    no_wait: bool,
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
    let registry = Registry::new(Layout::from_env()?);
    registry.add(&name, key)?;
    control::announce_add(registry.layout(), &name, waiting)?;
    Ok(())
}
