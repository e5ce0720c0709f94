use argh::FromArgs;
use syncbox::dispatch::{Invocation, parse_args, report};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::registry::{Registry, Removal, Unregistered};

/// Unregister a namespace, then delete its folder. A namespace that is not
/// registered is not an error (safe in ExecStopPost).
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// unregister only; leave the folder and its files in place
    #[argh(switch)]
    keep_data: bool,
    /// namespace name
    #[argh(positional)]
    namespace: String,
}

pub fn run(inv: &Invocation) -> u8 {
    let args: Args = match parse_args(inv) {
        Ok(args) => args,
        Err(code) => return code,
    };
    match del(inv.name, args) {
        Ok(()) => 0,
        Err(e) => report(inv.name, &e),
    }
}

fn del(applet: &str, args: Args) -> syncbox::Result<()> {
    let name = Name::parse(&args.namespace)?;
    let layout = Layout::from_env()?;
    let folder = layout.folder(&name);
    let registry = Registry::new(layout);
    match registry.unregister(&name, args.keep_data)? {
        Unregistered::NotRegistered => {
            eprintln!("{applet}: {name}: not registered; nothing to do");
        }
        Unregistered::FilesKept => {
            eprintln!(
                "{applet}: {name}: unregistered; files kept in {}",
                folder.display()
            );
        }
        Unregistered::FilesPending => match registry.remove_files(&name)? {
            Removal::Deleted | Removal::NoFolder => {}
            Removal::Readded => {
                eprintln!("{applet}: {name}: added again meanwhile; files kept");
            }
            Removal::NotADirectory(path) => {
                eprintln!(
                    "{applet}: {name}: unregistered; {} is not a directory, left in place",
                    path.display()
                );
            }
        },
    }
    Ok(())
}
