//! `add` and `del` as whole operations: the registry change, the cluster
//! record, telling a running init, and (for `del`) removing the files only
//! once no engine syncs them any more. The applets only parse and print.

use std::path::PathBuf;

use crate::cluster::{self, Cluster, LocalDel};
use crate::cluster_key::choose_namespace_key;
use crate::control::{self, Applied, Disposal, Waiting};
use crate::error::{Error, Result};
use crate::file_rule::{self, RuleChange};
use crate::keys::{Access, Key};
use crate::layout::Layout;
use crate::name::Name;
use crate::registry::{ClusterUnregistered, Origin, Parking, Registry, Removal, Unregistered};
use crate::settings::{Owner, Settings};

/// What `add` was asked to do.
pub struct AddRequest {
    pub name: Name,
    /// `--token`/`--secret`/`--token-file`; `None` derives (cluster key) or
    /// generates.
    pub key: Option<Key>,
    pub read_only: bool,
    /// `--cluster`: declare it for every node.
    pub cluster: bool,
    /// `--local`: a new random key even in cluster mode, so that no other
    /// member can derive it.
    pub local: bool,
    pub waiting: Waiting,
    /// `--owner`/`--umask`; `None`: the default for a new namespace, the
    /// one it has for a registered one.
    pub rule: RuleChange,
}

/// Register a namespace (locally, or cluster-wide with a declaration) and
/// tell a running init; returns once the engine syncs it, unless told not
/// to wait.
pub fn add(layout: Layout, request: AddRequest) -> Result<()> {
    let AddRequest {
        name,
        key,
        read_only,
        cluster,
        local,
        waiting,
        rule,
    } = request;
    if let Some(owner) = rule.owner {
        refuse_an_owner_the_engine_cannot_serve(owner)?;
    }
    let registry = if local {
        add_local_only(layout, &name, key.is_some(), read_only, cluster, rule)?
    } else if cluster {
        if key.is_some() {
            return Err(Error::Usage(
                "--cluster takes no key: every node derives the same one from the cluster key"
                    .into(),
            ));
        }
        let cluster = Cluster::required(&layout, "add --cluster")?;
        let access = if read_only {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let registry = Registry::new(layout);
        let device_name = cluster::device_name_from_env();
        cluster::declare(&registry, &cluster, &name, access, rule, &device_name)?;
        registry
    } else {
        let key = choose_namespace_key(&name, key, read_only)?;
        let registry = Registry::new(layout);
        registry.add_with_rule(&name, key, rule)?;
        registry
    };
    control::announce_add(registry.layout(), &name, waiting)?;
    Ok(())
}

/// `add --local`: register `ns` with a key made here from the OS random
/// source, which no cluster member can derive (a plain `add` in cluster
/// mode derives it from the cluster key: every member can read and write
/// it). Adding it again changes nothing; a namespace registered with any
/// other key is refused.
fn add_local_only(
    layout: Layout,
    ns: &Name,
    key_given: bool,
    read_only: bool,
    cluster: bool,
    rule: RuleChange,
) -> Result<Registry> {
    let conflict = if key_given {
        Some("--token/--token-file: the key given is already local-only (unless others have it)")
    } else if read_only {
        Some("--read-only: nobody else has the read-write key of a new local key")
    } else if cluster {
        Some("--cluster: a cluster namespace is one every member derives")
    } else {
        None
    };
    if let Some(conflict) = conflict {
        return Err(Error::Usage(format!(
            "--local makes a new key of its own; it does not go with {conflict}"
        )));
    }
    let registry = Registry::new(layout);
    match registry.get(ns)? {
        Some(entry) if entry.origin == Origin::Generated && !entry.from_cluster => {
            registry.add_with_rule(ns, None, rule)?;
        }
        Some(entry) => {
            return Err(Error::Usage(format!(
                "{ns} is already registered with a {} key, so it is not local-only; nothing \
                 changed ('del {ns}' first, then 'add --local {ns}': its data is not kept)",
                entry.origin.as_str()
            )));
        }
        None => {
            let key = Key::generate().map_err(|e| Error::io("cannot generate a key", e))?;
            registry.add_with_rule(ns, Some((key, Origin::Generated)), rule)?;
        }
    }
    Ok(registry)
}

/// An engine that runs as a user (`BTSYNC_UID`) can neither read files only
/// another user may read nor write into that user's folders: a namespace
/// owned by someone else would stop syncing. Only root can serve any owner.
fn refuse_an_owner_the_engine_cannot_serve(owner: Owner) -> Result<()> {
    let engine = Settings::from_env()?.owner;
    match engine {
        Some(engine) if engine.uid != 0 && engine != owner => Err(Error::Usage(format!(
            "--owner {} cannot be served: the engine runs as {} (BTSYNC_UID), and could not read or write files only {} may touch; leave --owner out (the engine's user owns the files) or run the engine as root",
            file_rule::owner_text(owner),
            file_rule::owner_text(engine),
            file_rule::owner_text(owner),
        ))),
        _ => Ok(()),
    }
}

/// What `del` was asked to do.
pub struct DelRequest {
    pub name: Name,
    /// `--keep-data`: unregister only.
    pub keep_data: bool,
    /// `--cluster`: a tombstone for every node.
    pub cluster: bool,
    /// `--purge` (with `--cluster`): delete copies instead of trashing them.
    pub purge: bool,
    pub waiting: Waiting,
}

/// How a `del` ended, for the one line the applet prints on stderr
/// (`None` from [`DelOutcome::note`]: nothing worth saying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelOutcome {
    /// The namespace was not registered here.
    NotRegistered,
    /// Unregistered; the files stay (`--keep-data`).
    FilesKept(PathBuf),
    /// Unregistered; init deletes the files once the engine let go (`--no-wait`).
    QueuedForInit(PathBuf),
    /// Tombstoned; init deletes or trashes the local copy once the engine
    /// let go (`--cluster --no-wait`).
    ClusterQueued(Disposal),
    /// Unregistered and its files dealt with as the removal says.
    Removed(Removal),
    /// Tombstoned cluster-wide; this node had added it locally, so it stays.
    ClusterOnlyLocalKept,
    /// Tombstoned cluster-wide; this node never registered it.
    ClusterNotHere,
    /// Added here with a local `add` and declared by the cluster with the
    /// same key: this node's own claim is dropped, the namespace stays as
    /// the cluster's (a plain del would only see it added back).
    HeldForCluster,
}

impl DelOutcome {
    pub fn note(&self, name: &Name) -> Option<String> {
        Some(match self {
            DelOutcome::NotRegistered => format!("{name}: not registered; nothing to do"),
            DelOutcome::FilesKept(folder) => {
                format!("{name}: unregistered; files kept in {}", folder.display())
            }
            DelOutcome::QueuedForInit(folder) => format!(
                "{name}: unregistered; init deletes {} once the engine has let go",
                folder.display()
            ),
            DelOutcome::ClusterQueued(disposal) => format!(
                "{name}: removed from the cluster; init {} once the engine has let go",
                match disposal {
                    Disposal::Delete => "deletes the local copy",
                    Disposal::Trash => "moves the local copy to the cluster trash",
                }
            ),
            DelOutcome::Removed(Removal::Trashed(path)) => {
                format!("{name}: files moved to {}", path.display())
            }
            DelOutcome::Removed(Removal::Readded) => {
                format!("{name}: added again meanwhile; files kept")
            }
            DelOutcome::Removed(Removal::NotADirectory(path)) => format!(
                "{name}: unregistered; {} is not a directory, left in place",
                path.display()
            ),
            DelOutcome::Removed(
                Removal::Deleted | Removal::NoFolder | Removal::NotPending | Removal::Reparked(_),
            ) => {
                return None;
            }
            DelOutcome::ClusterOnlyLocalKept => format!(
                "{name}: removed from the cluster; this node registered it with a local 'add', \
                 so it stays here ('del {name}' removes it here)"
            ),
            DelOutcome::HeldForCluster => format!(
                "{name}: this node's own 'add' is withdrawn, but the cluster declares {name}, \
                 so it stays here as the cluster's ('del --cluster {name}' removes it from \
                 every node)"
            ),
            DelOutcome::ClusterNotHere => {
                format!("{name}: removed from the cluster (it is not registered on this node)")
            }
        })
    }
}

/// Unregister a namespace, wait until no engine syncs it, then remove its
/// files. Deleting them while an engine still syncs the folder would make
/// every peer delete its copy.
pub fn del(layout: Layout, request: DelRequest) -> Result<DelOutcome> {
    let DelRequest {
        name,
        keep_data,
        cluster,
        purge,
        waiting,
    } = request;
    if purge && !cluster {
        return Err(Error::Usage(
            "--purge goes with --cluster (a local del deletes the files anyway)".into(),
        ));
    }
    if cluster && keep_data {
        return Err(Error::Usage(
            "--cluster and --keep-data do not go together: every node moves its copy to \
             the cluster trash (kept BTSYNC_TRASH_DAYS)"
                .into(),
        ));
    }
    if cluster {
        return del_cluster(layout, &name, waiting, purge);
    }
    let folder = layout.folder(&name);
    let cluster = Cluster::from_env(&layout)?;
    let registry = Registry::new(layout);
    if let Some(cluster) = cluster {
        let entry = registry.get(&name)?;
        match cluster::local_del(&cluster, entry.as_ref(), &name)? {
            LocalDel::Refused => return Err(Error::ClusterDeclared(name.to_string())),
            LocalDel::HandOver => {
                if cluster::hand_over(&registry, &cluster, &name)? {
                    return Ok(DelOutcome::HeldForCluster);
                }
                // Changed meanwhile: decide again from what is there now.
                let entry = registry.get(&name)?;
                if cluster::local_del(&cluster, entry.as_ref(), &name)? != LocalDel::Proceed {
                    return Err(Error::ClusterDeclared(name.to_string()));
                }
            }
            LocalDel::Proceed => {}
        }
    }
    let layout = registry.layout();
    match registry.unregister(&name, keep_data)? {
        Unregistered::NotRegistered => {
            // An engine may still sync it after an earlier `del --no-wait`.
            control::announce_del(layout, &name, waiting, None)?;
            Ok(DelOutcome::NotRegistered)
        }
        Unregistered::FilesKept => {
            control::announce_del(layout, &name, waiting, None)?;
            Ok(DelOutcome::FilesKept(folder))
        }
        Unregistered::FilesPending(parking) => {
            let removal =
                remove_when_released(&registry, &name, waiting, parking, Disposal::Delete)?;
            Ok(match removal {
                None => DelOutcome::QueuedForInit(folder),
                Some(removal) => DelOutcome::Removed(removal),
            })
        }
    }
}

/// How often a `del` asks init again when the namespace was added back and
/// parked again each time it had its answer; then it gives up, files kept.
const MAX_REASKS: usize = 20;

/// Tell init that `ns` was parked, and once init answers that no engine
/// holds it, delete or trash its files: `None` when init took the job
/// (`--no-wait`). The answer is about one parking of `ns`; if `ns` was
/// added back and parked again before the files are touched (this process
/// stalled, say), the files are left alone and init is asked again.
fn remove_when_released(
    registry: &Registry,
    ns: &Name,
    waiting: Waiting,
    mut parking: Parking,
    disposal: Disposal,
) -> Result<Option<Removal>> {
    for _ in 0..MAX_REASKS {
        match control::announce_del(registry.layout(), ns, waiting, Some(disposal))? {
            Applied::Queued => return Ok(None),
            Applied::Done | Applied::NoInit => {}
        }
        crate::faults::pause_point("del: init answered");
        let removal = match disposal {
            Disposal::Delete => registry.remove_files(ns, parking)?,
            Disposal::Trash => registry.trash_files(ns, parking)?,
        };
        match removal {
            Removal::Reparked(newer) => parking = newer,
            removal => return Ok(Some(removal)),
        }
    }
    Err(Error::Supervisor(format!(
        "{ns} was added back and deleted again {MAX_REASKS} times while this 'del' waited; \
         its files were kept. Run the same 'del' again to finish"
    )))
}

/// `del --cluster`: a tombstone for every node, then this node's own copy
/// goes the way every other node's does.
fn del_cluster(layout: Layout, name: &Name, waiting: Waiting, purge: bool) -> Result<DelOutcome> {
    let cluster = Cluster::required(&layout, "del --cluster")?;
    let registry = Registry::new(layout);
    let device_name = cluster::device_name_from_env();
    // Each node decides for itself whether a purge deletes its copy, this
    // one too: the tombstone carries the wish, BTSYNC_CLUSTER_PURGE the
    // consent.
    let disposal = if purge && Settings::from_env()?.cluster_purge {
        Disposal::Delete
    } else {
        Disposal::Trash
    };
    match cluster::tombstone(&registry, &cluster, name, purge, &device_name)? {
        ClusterUnregistered::LocalOnly => Ok(DelOutcome::ClusterOnlyLocalKept),
        ClusterUnregistered::NotRegistered => Ok(DelOutcome::ClusterNotHere),
        ClusterUnregistered::Parked(parking) => Ok(
            match remove_when_released(&registry, name, waiting, parking, disposal)? {
                None => DelOutcome::ClusterQueued(disposal),
                Some(removal) => DelOutcome::Removed(removal),
            },
        ),
    }
}
