//! A config reload in flight and its proof. After HUP, btsync takes up a
//! folder added to its config by writing `.sync/ID` (20 bytes whose
//! upper-case hex names the folder's database in the storage) and opening
//! that database; it lets go of a removed folder by closing its database.
//! Both show in `/proc/ENGINE/fd`, so init knows exactly when the engine
//! serves a new namespace and when a removed one's files may go.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::keys::Key;
use crate::layout::Layout;
use crate::name::Name;
use crate::procfs::{self, FOLDER_ID_LEN};
use crate::sys::Pid;

type FolderId = [u8; FOLDER_ID_LEN];

/// What a reload must show: folders to see taken up, databases to see
/// closed.
pub struct Proof {
    /// Each with its folder (whose `.sync/ID` names the database to see
    /// open) and the id the key gives, where it is known (its database
    /// must be open too).
    adding: Vec<(Name, PathBuf, Option<FolderId>)>,
    /// Databases (file names in the storage) to see closed.
    releasing: Vec<(Name, String)>,
}

impl Proof {
    /// What moving the engine from `serving` to `target` must show, or why
    /// a reload cannot do it. An empty proof: the engine serves `target`
    /// already.
    pub fn for_change(
        layout: &Layout,
        serving: &BTreeMap<Name, Key>,
        target: &BTreeMap<Name, Key>,
    ) -> Result<Proof, String> {
        let mut adding = Vec::new();
        for (name, key) in target {
            match serving.get(name) {
                Some(old) if old == key => {}
                Some(_) => return Err(format!("the key of {name} changed")),
                None => adding.push((name.clone(), layout.folder(name), key.folder_id())),
            }
        }
        let mut releasing = Vec::new();
        for (name, key) in serving {
            if target.contains_key(name) {
                continue;
            }
            // Both the id the key gives and the one in .sync/ID (if they
            // differ, neither database may stay open): a wrong id would
            // make a database that was never open look released.
            let ids: BTreeSet<FolderId> = key
                .folder_id()
                .into_iter()
                .chain(procfs::read_folder_id(&layout.folder(name)))
                .collect();
            if ids.is_empty() {
                return Err(format!(
                    "cannot tell which database the engine keeps for {name}"
                ));
            }
            for id in ids {
                releasing.push((name.clone(), procfs::database_name(&id)));
            }
        }
        Ok(Proof { adding, releasing })
    }

    pub fn is_empty(&self) -> bool {
        self.adding.is_empty() && self.releasing.is_empty()
    }

    /// How many folders to take up and how many to let go.
    pub fn counts(&self) -> (usize, usize) {
        (self.adding.len(), self.releasing.len())
    }

    /// How many namespaces it is about: what [`Proof::lacking`] gives
    /// before the engine showed anything.
    pub fn namespaces(&self) -> usize {
        let names: BTreeSet<&Name> = self
            .adding
            .iter()
            .map(|(name, ..)| name)
            .chain(self.releasing.iter().map(|(name, _)| name))
            .collect();
        names.len()
    }

    /// The namespaces whose proof engine `pid` does not show yet. `storage`
    /// is where its databases are. Unreadable `/proc` proves nothing.
    pub fn lacking(&self, pid: Pid, storage: &Path) -> BTreeSet<Name> {
        let Ok(open) = procfs::Holds::of(pid) else {
            return self
                .adding
                .iter()
                .map(|(name, ..)| name)
                .chain(self.releasing.iter().map(|(name, _)| name))
                .cloned()
                .collect();
        };
        let is_open = |db: &str| open.holds(&storage.join(db));
        let not_up = self.adding.iter().filter(|(_, folder, by_key)| {
            let seen = procfs::read_folder_id(folder);
            !(seen.is_some_and(|id| is_open(&procfs::database_name(&id)))
                && by_key.is_none_or(|id| is_open(&procfs::database_name(&id))))
        });
        let still_held = self
            .releasing
            .iter()
            .filter(|(_, db)| is_open(db))
            .map(|(name, _)| name);
        not_up
            .map(|(name, ..)| name)
            .chain(still_held)
            .cloned()
            .collect()
    }
}

/// How long the engine may take to show the proof of a reload that takes
/// up `taking_up` folders, `folders` in all, once it was given them. 1.4.111
/// takes up a folder in tens of milliseconds, and re-reads its whole config
/// on HUP, which takes longer than linearly in the folders it lists: the
/// square term keeps a config of thousands of folders from being declared
/// stuck while the engine is still reading it.
pub fn reload_bound(taking_up: usize, folders: usize) -> Duration {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let squared = u64::try_from(folders.saturating_mul(folders)).unwrap_or(u64::MAX);
    RELOAD_BASE
        + RELOAD_PER_FOLDER_TAKEN_UP.saturating_mul(count(taking_up))
        + Duration::from_micros(squared.saturating_mul(RELOAD_MICROS_PER_FOLDER_SQUARED))
}

/// How often `/proc/ENGINE/fd` is looked at while a reload is in flight:
/// each look reads a link per file the engine holds, several per folder.
pub fn look_interval(folders: usize) -> Duration {
    Duration::from_millis(10)
        + Duration::from_micros(20).saturating_mul(u32::try_from(folders).unwrap_or(u32::MAX))
}

const RELOAD_BASE: Duration = Duration::from_secs(3);
const RELOAD_PER_FOLDER_TAKEN_UP: Duration = Duration::from_millis(100);
const RELOAD_MICROS_PER_FOLDER_SQUARED: u64 = 10;

/// A HUP sent (or, in WebUI mode, folders being given), waiting for the
/// engine to show it took the new config.
pub struct Reload {
    pub pid: Pid,
    pub sent: Instant,
    pub deadline: Instant,
    /// The registry generation the new config was written from.
    pub generation: u64,
    /// What the engine serves once the reload is proven.
    pub folders: BTreeMap<Name, Key>,
    pub proof: Proof,
    /// The namespaces whose change it applies, for the log.
    pub changed: BTreeSet<Name>,
    /// WebUI mode: folders still to give over the interface, a few per
    /// loop turn; the proof is looked at once all are given, and the
    /// deadline runs from then.
    pub to_give: VecDeque<(Name, Key)>,
    /// How many namespaces lacked proof when the deadline last came: fewer
    /// the next time means the engine is still taking them up, and it is
    /// given more time rather than restarted.
    pub lacking_at_deadline: usize,
    /// When `/proc/ENGINE/fd` is next looked at.
    pub next_look: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::parse(text).expect("name")
    }

    fn key(byte: u8) -> Key {
        Key::read_write_from(&[byte; FOLDER_ID_LEN])
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("syncbox-reload-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn the_bound_grows_with_what_the_engine_takes_up_and_holds() {
        assert_eq!(
            reload_bound(1, 1),
            Duration::from_millis(3100) + Duration::from_micros(10)
        );
        assert_eq!(reload_bound(100, 3000), Duration::from_secs(3 + 10 + 90));
        assert!(reload_bound(usize::MAX, usize::MAX) > Duration::from_secs(3));
    }

    #[test]
    fn a_changed_key_cannot_be_reloaded_and_nothing_changed_needs_no_proof() {
        let layout = Layout::new(scratch("plan"), None);
        let serving = BTreeMap::from([(name("a"), key(1))]);
        let proof = Proof::for_change(&layout, &serving, &serving).expect("same config");
        assert!(proof.is_empty());
        let rekeyed = BTreeMap::from([(name("a"), key(2))]);
        let refused = Proof::for_change(&layout, &serving, &rekeyed).err();
        assert_eq!(refused.as_deref(), Some("the key of a changed"));
        let both = BTreeMap::from([(name("a"), key(1)), (name("b"), key(3))]);
        let proof = Proof::for_change(&layout, &serving, &both).expect("one added");
        assert_eq!(proof.counts(), (1, 0));
        let proof = Proof::for_change(&layout, &both, &serving).expect("one removed");
        assert_eq!(proof.counts(), (0, 1));
    }

    /// This test process plays the engine: the proof is what it holds open.
    #[test]
    fn proof_is_the_database_the_folder_id_names_being_open_or_closed() {
        let root = scratch("proof");
        let layout = Layout::new(root.clone(), None);
        let storage = root.join("storage");
        std::fs::create_dir_all(&storage).expect("storage");
        let storage = std::fs::canonicalize(&storage).expect("canonical storage");
        let pid = std::process::id() as Pid;
        let (ns, ns_key) = (name("new"), key(7));
        let id = ns_key.folder_id().expect("A keys have a known folder id");
        let database = storage.join(procfs::database_name(&id));

        let before = BTreeMap::new();
        let after = BTreeMap::from([(ns.clone(), ns_key.clone())]);
        let adding = Proof::for_change(&layout, &before, &after).expect("add");
        let lacking_new = BTreeSet::from([ns.clone()]);
        assert_eq!(
            adding.lacking(pid, &storage),
            lacking_new,
            "no .sync/ID yet"
        );
        let folder = layout.folder(&ns);
        std::fs::create_dir_all(folder.join(".sync")).expect(".sync");
        std::fs::write(folder.join(".sync/ID"), id).expect("write ID");
        assert_eq!(
            adding.lacking(pid, &storage),
            lacking_new,
            "database not open"
        );
        let held = std::fs::File::create(&database).expect("open the database");
        assert!(adding.lacking(pid, &storage).is_empty(), "taken up");

        let removing = Proof::for_change(&layout, &after, &before).expect("remove");
        assert_eq!(removing.lacking(pid, &storage), lacking_new, "still open");
        drop(held);
        assert!(removing.lacking(pid, &storage).is_empty(), "let go");
        // No such process: nothing is proven.
        assert_eq!(removing.lacking(Pid::MAX, &storage), lacking_new);
        let _ = std::fs::remove_dir_all(&root);
    }
}
