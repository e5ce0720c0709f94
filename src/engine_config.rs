//! The engine's config file, built from init's settings and the registry,
//! and what must be in place before the engine reads it: its storage, and
//! every folder owned by the user it runs as.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::keys::Key;
use crate::layout::Layout;
use crate::ownership::{chown_one, chown_tree_if_foreign};
use crate::registry::Entry;
use crate::settings::Settings;
use crate::sys;

/// The engine's config file: `$BTSYNC_DATA/.btsync/btsync.conf`.
pub fn config_path(layout: &Layout) -> PathBuf {
    layout.state_dir().join("btsync.conf")
}

/// The engine's own state (database, identity): `$BTSYNC_DATA/.btsync/storage`.
pub fn storage_path(layout: &Layout) -> PathBuf {
    layout.state_dir().join("storage")
}

/// The config as JSON text. It holds every key: write it with mode 0600 only.
/// In cluster mode `cluster_folders` are the registry folder and the member
/// folders with their keys: synced like namespaces, but not namespaces.
pub fn render(
    settings: &Settings,
    layout: &Layout,
    entries: &[Entry],
    cluster_folders: &[(PathBuf, Key)],
) -> String {
    let options = &settings.folders;
    let folder = |dir: PathBuf, key: &Key| {
        json!({
            "dir": dir.display().to_string(),
            "secret": key.expose(),
            "use_relay_server": options.use_relay_server,
            "use_tracker": options.use_tracker,
            "use_dht": options.use_dht,
            "search_lan": options.search_lan,
            "use_sync_trash": options.use_sync_trash,
            "known_hosts": options.known_hosts,
        })
    };
    let mut folders: Vec<Value> = entries
        .iter()
        .map(|entry| folder(layout.folder(&entry.name), &entry.key))
        .collect();
    folders.extend(
        cluster_folders
            .iter()
            .map(|(dir, key)| folder(dir.clone(), key)),
    );
    finish(settings, layout, json!({ "shared_folders": folders }))
}

/// The keys every config has, with `specific`'s added, as the text written.
fn finish(settings: &Settings, layout: &Layout, specific: Value) -> String {
    let mut config = json!({
        "device_name": settings.device_name,
        "listening_port": settings.listening_port,
        "storage_path": storage_path(layout).display().to_string(),
        "check_for_updates": false,
        "use_upnp": false,
    });
    if let (Some(all), Value::Object(more)) = (config.as_object_mut(), specific) {
        all.extend(more);
    }
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_else(|_| config.to_string());
    text.push('\n');
    text
}

/// The config for WebUI mode: no folder (btsync 1.4.111 ignores `webui`
/// while `shared_folders` lists any); the interface on loopback with this
/// node's credentials; every folder's discovery settings as
/// `folder_defaults.*`, which a folder added over the interface gets at
/// once, so it is never open to a tracker or relay the variables turn off.
pub fn render_webui(settings: &Settings, layout: &Layout, webui: &WebUi) -> String {
    let options = &settings.folders;
    let specific = json!({
        "webui": {
            "listen": webui.listen.to_string(),
            "login": webui.credentials.login(),
            "password": webui.credentials.expose_password(),
        },
        "folder_defaults.use_relay": options.use_relay_server,
        "folder_defaults.use_tracker": options.use_tracker,
        "folder_defaults.use_dht": options.use_dht,
        "folder_defaults.use_lan_broadcast": options.search_lan,
        "folder_defaults.delete_to_trash": options.use_sync_trash,
        "folder_defaults.known_hosts": options.known_hosts.join(","),
    });
    finish(settings, layout, specific)
}

/// Where the engine's interface listens and how init logs in.
pub struct WebUi {
    pub listen: std::net::SocketAddr,
    pub credentials: crate::engine_api::Credentials,
}

/// Make the engine's storage (and the cluster registry folder), hand them
/// and the namespace folders to the engine's owner, and write the config
/// (0600, owned by the engine).
pub fn prepare(
    settings: &Settings,
    layout: &Layout,
    entries: &[Entry],
    cluster: Option<&Cluster>,
    webui: Option<&WebUi>,
) -> Result<PathBuf> {
    let storage = storage_path(layout);
    fsutil::ensure_private_dir(&layout.state_dir())?;
    fsutil::ensure_private_dir(&storage)?;
    if let Some(cluster) = cluster {
        cluster.ensure_dir()?;
    }
    if let Some(owner) = settings.owner {
        // The engine must traverse .btsync/ to reach its config and storage,
        // but must not be able to rename or replace what init and the
        // applets keep there (registry, lock, control socket, trash): the
        // directory stays init's, its group gets traversal only (0710).
        let state = layout.state_dir();
        std::os::unix::fs::lchown(&state, Some(sys::effective_uid()), Some(owner.gid))
            .and_then(|()| fs::set_permissions(&state, fs::Permissions::from_mode(0o710)))
            .map_err(|e| {
                Error::io(
                    format!(
                        "cannot open {} to group {} for traversal",
                        state.display(),
                        owner.gid
                    ),
                    e,
                )
            })?;
        chown_tree_if_foreign(&storage, owner)?;
        if let Some(cluster) = cluster {
            // The registry may be a symbolic link to a shared directory:
            // the engine needs the directory itself.
            let registry = fs::canonicalize(cluster.dir())
                .map_err(|e| Error::io(format!("cannot resolve {}", cluster.dir().display()), e))?;
            chown_tree_if_foreign(&registry, owner)?;
            let members = cluster.members_dir();
            if members.is_dir() {
                chown_tree_if_foreign(&members, owner)?;
            }
        }
        for entry in entries {
            let folder = layout.folder(&entry.name);
            if folder.is_dir() {
                chown_tree_if_foreign(&folder, owner)?;
            }
        }
    }
    let path = config_path(layout);
    let cluster_folders = cluster.map(Cluster::engine_folders).unwrap_or_default();
    let config = match webui {
        Some(webui) => render_webui(settings, layout, webui),
        None => render(settings, layout, entries, &cluster_folders),
    };
    fsutil::write_atomic(&path, config.as_bytes(), 0o600)?;
    if let Some(owner) = settings.owner {
        chown_one(&path, &path, owner)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::Name;
    use crate::registry::Origin;
    use crate::settings::from_vars as settings;

    #[test]
    fn config_lists_every_namespace_with_its_options() {
        let layout = Layout::new(PathBuf::from("/data"), None);
        let s = settings(&[("BTSYNC_KNOWN_HOSTS", "10.0.0.2:55555")]).expect("valid");
        let key = Key::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").expect("key");
        let entries = vec![Entry {
            name: Name::parse("gitlab").expect("name"),
            key,
            origin: Origin::Given,
            added: 0,
            from_cluster: false,
            rule: Default::default(),
        }];
        let config: Value =
            serde_json::from_str(&render(&s, &layout, &entries, &[])).expect("json");
        assert_eq!(config["storage_path"], "/data/.btsync/storage");
        assert_eq!(config["listening_port"], 55555);
        assert_eq!(config["use_upnp"], false);
        assert_eq!(config["check_for_updates"], false);
        assert!(config.get("webui").is_none());
        let folder = &config["shared_folders"][0];
        assert_eq!(folder["dir"], "/data/gitlab");
        assert_eq!(folder["secret"], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(folder["known_hosts"][0], "10.0.0.2:55555");
        assert_eq!(folder["use_dht"], false);
        assert_eq!(config["shared_folders"].as_array().map(Vec::len), Some(1));

        // Cluster mode: the registry and member folders are more shared
        // folders.
        let registry = Key::parse("BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB").expect("key");
        let member = Key::parse("CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC").expect("key");
        let cluster_folders = [
            (layout.cluster_registry_dir(), registry),
            (
                layout.cluster_members_dir().join("00000000000000ee"),
                member,
            ),
        ];
        let config: Value =
            serde_json::from_str(&render(&s, &layout, &entries, &cluster_folders)).expect("json");
        let folders = config["shared_folders"].as_array().expect("folders");
        assert_eq!(folders.len(), 3);
        assert_eq!(folders[1]["dir"], "/data/.btsync/cluster");
        assert_eq!(folders[1]["secret"], "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
        assert_eq!(folders[1]["known_hosts"][0], "10.0.0.2:55555");
        assert_eq!(
            folders[2]["dir"],
            "/data/.btsync/cluster-members/00000000000000ee"
        );
        assert_eq!(folders[2]["secret"], "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC");
    }
}
