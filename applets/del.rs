use argh::FromArgs;
use syncbox::control::Waiting;
use syncbox::dispatch::{Invocation, run_applet};
use syncbox::layout::Layout;
use syncbox::name::Name;
use syncbox::ops::{self, DelRequest};

/// Unregister a namespace, then delete its folder. A namespace that is not
/// registered is not an error (safe in ExecStopPost). When init runs, the
/// files are deleted only after the engine let go of the namespace
/// (deleting them earlier would delete them on every peer).
/// A namespace declared cluster-wide is removed with --cluster only.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// unregister only; leave the folder and its files in place
    #[argh(switch)]
    keep_data: bool,
    /// return right after unregistering; init applies the change and then
    /// deletes the files itself
    #[argh(switch)]
    no_wait: bool,
    /// remove the namespace from every node of the cluster (a tombstone in
    /// the cluster registry); each node moves its copy to the cluster trash
    #[argh(switch)]
    cluster: bool,
    /// with --cluster: nodes that allow it (BTSYNC_CLUSTER_PURGE=true) delete
    /// their copy instead of keeping it in the trash
    #[argh(switch)]
    purge: bool,
    /// namespace name
    #[argh(positional)]
    namespace: String,
}

pub fn run(inv: &Invocation) -> u8 {
    run_applet(inv, |args: Args| {
        let name = Name::parse(&args.namespace)?;
        let request = DelRequest {
            name: name.clone(),
            keep_data: args.keep_data,
            cluster: args.cluster,
            purge: args.purge,
            waiting: Waiting::from_env(args.no_wait)?,
        };
        let outcome = ops::del(Layout::from_env()?, request)?;
        if let Some(note) = outcome.note(&name) {
            eprintln!("{}: {note}", inv.name);
        }
        Ok(0)
    })
}
