//! Init's side of the keeper: which namespaces it watches, with which rule,
//! and what `status` says about it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::Supervisor;
use crate::file_rule::{self, FileRule};
use crate::keeper::Keeper;
use crate::name::Name;
use crate::registry::Entry;
use crate::settings::Owner;

/// The keeper, or why there is none (inotify refused: the engine's files
/// then keep the engine's owner, and `status` says so).
pub(super) struct Keeping {
    keeper: std::result::Result<Keeper, String>,
    engine: Owner,
    /// Namespaces whose owner this engine cannot serve, already logged.
    unservable: BTreeSet<Name>,
    /// Every registered namespace's rule, as last read.
    rules: BTreeMap<Name, FileRule>,
    /// The keeper's generation of the last set handed to it.
    handed: u64,
}

impl Keeping {
    pub(super) fn start(engine_owner: Option<Owner>) -> Keeping {
        let engine = engine_owner.unwrap_or(Owner { uid: 0, gid: 0 });
        let keeper = Keeper::start(engine, |line| log!("keeper: {line}")).map_err(|e| {
            log!("keeper: {e}; files the engine writes keep its owner and mode");
            e.to_string()
        });
        Keeping {
            keeper,
            engine,
            unservable: BTreeSet::new(),
            rules: BTreeMap::new(),
            handed: 0,
        }
    }
}

impl Supervisor {
    /// Hand the keeper the namespaces as the registry has them now: those
    /// whose rule asks for more than the engine's umask gives.
    pub(super) fn keep_folders(&mut self, entries: &[Entry]) {
        self.keeping.rules = entries.iter().map(|e| (e.name.clone(), e.rule)).collect();
        self.hand_rules_to_keeper();
    }

    /// One namespace's rule changed (`None`: it is gone).
    pub(super) fn keep_folder(&mut self, ns: &Name, rule: Option<FileRule>) {
        let before = self.keeping.rules.get(ns).copied();
        if before == rule {
            return;
        }
        match rule {
            Some(rule) => self.keeping.rules.insert(ns.clone(), rule),
            None => self.keeping.rules.remove(ns),
        };
        self.hand_rules_to_keeper();
    }

    fn hand_rules_to_keeper(&mut self) {
        let layout = self.registry.layout().clone();
        let keeping = &mut self.keeping;
        let engine = keeping.engine;
        let mut folders = Vec::new();
        let mut unservable = BTreeSet::new();
        for (name, &rule) in &keeping.rules {
            let mut rule = rule;
            // An engine running as a user cannot touch files only another
            // user may (add refuses such an owner; a cluster record can
            // still carry one): the files stay the engine's.
            if let Some(owner) = rule.owner.filter(|&o| engine.uid != 0 && o != engine) {
                if !keeping.unservable.contains(name) {
                    log!(
                        "{name}: its owner {} is not applied: the engine runs as {} (BTSYNC_UID) and could not read or write that owner's files; they stay the engine's",
                        file_rule::owner_text(owner),
                        file_rule::owner_text(engine)
                    );
                }
                unservable.insert(name.clone());
                rule = FileRule {
                    owner: None,
                    ..rule
                };
            }
            if rule.needs_keeping(engine) {
                folders.push((layout.folder(name), rule));
            }
        }
        keeping.unservable = unservable;
        if let Ok(keeper) = &keeping.keeper {
            keeping.handed = keeper.set_folders(folders);
        }
    }

    pub(super) fn keeper_json(&self) -> Value {
        match &self.keeping.keeper {
            Err(why) => json!({ "running": false, "problem": why }),
            Ok(keeper) => {
                let stats = keeper.stats();
                json!({
                    "running": true,
                    // The last change of rules is in place (watches set,
                    // first walks done): files written from now on follow it.
                    "settled": stats.applied >= self.keeping.handed,
                    "folders": stats.folders,
                    "watches": stats.watches,
                    "fixed": stats.fixed,
                    "links_given": stats.skipped_links,
                    "hard_links_left": stats.skipped_hardlinks,
                    "overflows": stats.overflows,
                    "scanned_not_watched": stats.scanning_fallback,
                    "missing": stats.missing,
                    "errors": stats.errors,
                    "owner_not_served": self.keeping.unservable.iter().map(Name::as_str).collect::<Vec<_>>(),
                })
            }
        }
    }
}
