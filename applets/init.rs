use argh::FromArgs;
use syncbox::cluster::Cluster;
use syncbox::dispatch::{Invocation, run_applet};
use syncbox::layout::Layout;
use syncbox::settings::Settings;
use syncbox::supervisor;

/// Run as the container's PID 1: write the engine config from the registry
/// and the BTSYNC_* variables, run the engine ($BTSYNC_BIN, default
/// /bin/btsync) and supervise it: forward signals, reap orphans, restart it
/// when namespaces change or it crashes. Exits with the engine's status when
/// stopped (TERM/INT). With a cluster key (BTSYNC_CLUSTER_KEY_FILE or
/// BTSYNC_CLUSTER_KEY) it also syncs the cluster registry and applies the
/// namespaces declared there (add --cluster / del --cluster).
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {}

pub fn run(inv: &Invocation) -> u8 {
    run_applet(inv, |Args {}| {
        let layout = Layout::from_env()?;
        let settings = Settings::from_env()?;
        let cluster = Cluster::from_env(&layout)?;
        supervisor::run(settings, layout, cluster)
    })
}
