//! init's `status` reply: what the engine, the apply loop and cluster mode
//! are doing, as one JSON object.

use std::time::Instant;

use serde_json::{Value, json};

use super::cluster_sync::ClusterSync;
use super::{AfterStop, Engine, Supervisor};
use crate::engine_info::EngineInfo;
use crate::name::Name;
use crate::settings::Apply;

/// `status` lists at most this many of the engine's folders (and counts all).
const STATUS_FOLDERS: usize = 1000;

impl Supervisor {
    pub(super) fn status_json(&self) -> Value {
        let now = Instant::now();
        let (state, engine) = match &self.engine {
            Engine::Up(engine) => ("running", Some(engine)),
            Engine::Stopping {
                engine,
                then: AfterStop::Restart,
                ..
            } => ("restarting", Some(engine)),
            Engine::Stopping { engine, .. } => ("stopping", Some(engine)),
            Engine::Down { .. } => ("waiting", None),
            Engine::Idle { .. } => ("idle", None),
        };
        let retry_in = match &self.engine {
            Engine::Down { retry_at } => Some(retry_at.saturating_duration_since(now).as_secs()),
            _ => None,
        };
        json!({
            "init": {
                "pid": std::process::id(),
                "uptime_seconds": now.duration_since(self.born).as_secs(),
                "subreaper": self.subreaper,
            },
            "engine": {
                "name": self.engine_info.as_ref().ok().map(|i| i.name.as_str()),
                "version": self.engine_info.as_ref().ok().and_then(|i| i.version.as_deref()),
                // Is it a version syncbox's tests run (docs/image.md)?
                "proven": self.engine_info.as_ref().is_ok_and(EngineInfo::proven),
                "state": state,
                "pid": engine.map(|e| e.pid),
                "uptime_seconds": engine.map(|e| now.duration_since(e.started).as_secs()),
                // Bounded like every list of the reply (names are at most
                // 64 bytes): the reply stays far below the protocol's 1 MiB.
                "folders": engine.map(|e| {
                    e.folders
                        .keys()
                        .filter(|ns| !e.unserved.contains(*ns))
                        .take(STATUS_FOLDERS)
                        .map(Name::as_str)
                        .collect::<Vec<_>>()
                }),
                "folder_count": engine.map(|e| e.folders.len() - e.unserved.len()),
                // In the engine's config, but never seen served when an
                // `add` waited for it.
                "not_served": engine.map(|e| {
                    e.unserved.iter().take(STATUS_FOLDERS).map(Name::as_str).collect::<Vec<_>>()
                }),
                "retry_in_seconds": retry_in,
            },
            // How the engine gets its folders: "webui" (sync state known)
            // or "config".
            "engine_api": self.engine_api_mode(),
            "starts": self.starts,
            "restarts": self.restarts,
            "apply": if self.settings.apply == Apply::Reload && self.reload_unsupported {
                "restart (the engine does not survive HUP)"
            } else {
                self.settings.apply.as_str()
            },
            "reloads": self.reloads,
            "reload_fallbacks": self.reload_fallbacks,
            "reloading": self.reload.is_some(),
            "crashes": self.crashes,
            "changes_pending": self.pending.is_some(),
            "cluster": self.cluster.as_ref().map(ClusterSync::status_json),
            // Who owns what the engine writes (docs/services.md).
            "keeper": self.keeper_json(),
            "last_exit": self.last_exit.as_ref().map(|e| json!({
                "status": e.status.code(),
                "description": e.status.to_string(),
                "seconds_ago": now.duration_since(e.at).as_secs(),
            })),
        })
    }
}
