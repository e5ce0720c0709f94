use argh::FromArgs;
use syncbox::control::{self, Applied, Waiting};
use syncbox::dispatch::{Invocation, parse_args, report};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::registry::{Registry, Removal, Unregistered};

/// Unregister a namespace, then delete its folder. A namespace that is not
/// registered is not an error (safe in ExecStopPost). When init runs, the
/// files are deleted only after the engine was restarted without the
/// namespace (deleting them earlier would delete them on every peer).
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// unregister only; leave the folder and its files in place
    #[argh(switch)]
    keep_data: bool,
    /// return right after unregistering; init restarts the engine and then
    /// deletes the files itself
    #[argh(switch)]
    no_wait: bool,
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
    let waiting = Waiting::from_env(args.no_wait)?;
    let registry = Registry::new(layout);
    match registry.unregister(&name, args.keep_data)? {
        Unregistered::NotRegistered => {
            // An engine may still sync it after an earlier `del --no-wait`.
            control::announce_del(registry.layout(), &name, waiting, false)?;
            eprintln!("{applet}: {name}: not registered; nothing to do");
        }
        Unregistered::FilesKept => {
            control::announce_del(registry.layout(), &name, waiting, false)?;
            eprintln!(
                "{applet}: {name}: unregistered; files kept in {}",
                folder.display()
            );
        }
        Unregistered::FilesPending
            if control::announce_del(registry.layout(), &name, waiting, true)?
                == Applied::Queued =>
        {
            eprintln!(
                "{applet}: {name}: unregistered; init deletes {} once the engine has let go",
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
