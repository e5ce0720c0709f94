use argh::FromArgs;
use syncbox::cluster::{self, Cluster};
use syncbox::control::{self, Applied, Disposal, Waiting};
use syncbox::dispatch::{Invocation, parse_args, report};
use syncbox::error::Error;
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::registry::{ClusterUnregistered, Registry, Removal, Unregistered};

/// Unregister a namespace, then delete its folder. A namespace that is not
/// registered is not an error (safe in ExecStopPost). When init runs, the
/// files are deleted only after the engine was restarted without the
/// namespace (deleting them earlier would delete them on every peer).
/// A namespace declared cluster-wide is removed with --cluster only.
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
    /// remove the namespace from every node of the cluster (a tombstone in
    /// the cluster registry); each node moves its copy to the cluster trash
    #[argh(switch)]
    cluster: bool,
    /// with --cluster: every node deletes its copy instead of keeping it in
    /// the trash
    #[argh(switch)]
    purge: bool,
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
    if args.purge && !args.cluster {
        return Err(Error::Usage(
            "--purge goes with --cluster (a local del deletes the files anyway)".into(),
        ));
    }
    if args.cluster && args.keep_data {
        return Err(Error::Usage(
            "--cluster and --keep-data do not go together: every node moves its copy to \
             the cluster trash (kept BTSYNC_TRASH_DAYS)"
                .into(),
        ));
    }
    let layout = Layout::from_env()?;
    let waiting = Waiting::from_env(args.no_wait)?;
    if args.cluster {
        return del_cluster(applet, layout, &name, waiting, args.purge);
    }
    let folder = layout.folder(&name);
    let cluster = Cluster::from_env(&layout)?;
    let registry = Registry::new(layout);
    if let Some(cluster) = cluster {
        let entry = registry.get(&name)?;
        if cluster::refuses_local_del(&cluster, entry.as_ref(), &name)? {
            return Err(Error::ClusterDeclared(name.to_string()));
        }
    }
    match registry.unregister(&name, args.keep_data)? {
        Unregistered::NotRegistered => {
            // An engine may still sync it after an earlier `del --no-wait`.
            control::announce_del(registry.layout(), &name, waiting, None)?;
            eprintln!("{applet}: {name}: not registered; nothing to do");
        }
        Unregistered::FilesKept => {
            control::announce_del(registry.layout(), &name, waiting, None)?;
            eprintln!(
                "{applet}: {name}: unregistered; files kept in {}",
                folder.display()
            );
        }
        Unregistered::FilesPending
            if control::announce_del(
                registry.layout(),
                &name,
                waiting,
                Some(Disposal::Delete),
            )? == Applied::Queued =>
        {
            eprintln!(
                "{applet}: {name}: unregistered; init deletes {} once the engine has let go",
                folder.display()
            );
        }
        Unregistered::FilesPending => {
            let removal = registry.remove_files(&name)?;
            explain(applet, &name, removal);
        }
    }
    Ok(())
}

/// `del --cluster`: a tombstone for every node, then this node's own copy
/// goes the way every other node's does.
fn del_cluster(
    applet: &str,
    layout: Layout,
    name: &Name,
    waiting: Waiting,
    purge: bool,
) -> syncbox::Result<()> {
    let cluster = Cluster::required(&layout, "del --cluster")?;
    let registry = Registry::new(layout);
    let device_name = cluster::device_name_from_env();
    let disposal = if purge {
        Disposal::Delete
    } else {
        Disposal::Trash
    };
    match cluster::tombstone(&registry, &cluster, name, purge, &device_name)? {
        ClusterUnregistered::LocalOnly => eprintln!(
            "{applet}: {name}: removed from the cluster; this node registered it with a \
             local 'add', so it stays here ('del {name}' removes it here)"
        ),
        ClusterUnregistered::NotRegistered => eprintln!(
            "{applet}: {name}: removed from the cluster (it is not registered on this node)"
        ),
        ClusterUnregistered::Parked => {
            match control::announce_del(registry.layout(), name, waiting, Some(disposal))? {
                Applied::Queued => eprintln!(
                    "{applet}: {name}: removed from the cluster; init {} once the engine has let go",
                    match disposal {
                        Disposal::Delete => "deletes the local copy",
                        Disposal::Trash => "moves the local copy to the cluster trash",
                    }
                ),
                Applied::Done | Applied::NoInit => {
                    let removal = match disposal {
                        Disposal::Delete => registry.remove_files(name)?,
                        Disposal::Trash => registry.trash_files(name)?,
                    };
                    explain(applet, name, removal);
                }
            }
        }
    }
    Ok(())
}

fn explain(applet: &str, name: &Name, removal: Removal) {
    match removal {
        Removal::Deleted | Removal::NoFolder | Removal::NotPending => {}
        Removal::Trashed(path) => {
            eprintln!("{applet}: {name}: files moved to {}", path.display());
        }
        Removal::Readded => {
            eprintln!("{applet}: {name}: added again meanwhile; files kept");
        }
        Removal::NotADirectory(path) => {
            eprintln!(
                "{applet}: {name}: unregistered; {} is not a directory, left in place",
                path.display()
            );
        }
    }
}
