//! Who owns a namespace's files and who else may read them: the rule init
//! applies to what the engine writes (`add --owner`, `--umask`).
//!
//! btsync 1.4 carries a file's content, its modification time and its
//! executable bit between nodes, nothing else: each node's copy belongs to
//! the engine's user and gets the engine's umask. Init runs the engine with
//! umask 077, so nothing the engine writes is readable by group or others;
//! a namespace with an owner, or a wider umask, has its engine-written files
//! given to the owner and chmodded by init's keeper.

use crate::settings::Owner;
use crate::user_db::Problem;

/// The umask init runs the engine with, and a namespace's by default.
pub const DEFAULT_UMASK: u32 = 0o077;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRule {
    /// The user and group the engine's files are given to; `None`: they
    /// stay the engine's (root, or `BTSYNC_UID`).
    pub owner: Option<Owner>,
    /// Permission bits taken away from what the engine writes: group and
    /// other bits only (the owner always keeps read and write).
    pub umask: u32,
}

impl Default for FileRule {
    fn default() -> FileRule {
        FileRule {
            owner: None,
            umask: DEFAULT_UMASK,
        }
    }
}

impl FileRule {
    pub fn dir_mode(&self) -> u32 {
        0o777 & !self.umask
    }

    /// A regular file's mode: executable when the engine made it so (the
    /// one permission btsync carries between nodes).
    pub fn file_mode(&self, executable: bool) -> u32 {
        let base = if executable { 0o777 } else { 0o666 };
        base & !self.umask
    }

    /// Does init have anything to do beyond what the engine's own umask
    /// gives? Only then does the keeper watch the folder.
    pub fn needs_keeping(&self, engine: Owner) -> bool {
        self.owner.is_some_and(|owner| owner != engine) || self.umask != DEFAULT_UMASK
    }
}

/// What `add --owner/--umask` asks for: what is given changes, the rest
/// stays as the namespace has it (the default for a new one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleChange {
    pub owner: Option<Owner>,
    pub umask: Option<u32>,
}

impl RuleChange {
    pub fn over(self, base: FileRule) -> FileRule {
        FileRule {
            owner: self.owner.or(base.owner),
            umask: self.umask.unwrap_or(base.umask),
        }
    }
}

impl From<FileRule> for RuleChange {
    /// A whole rule (a cluster declaration's): owner and umask both set,
    /// "no owner" included.
    fn from(rule: FileRule) -> RuleChange {
        RuleChange {
            owner: rule.owner,
            umask: Some(rule.umask),
        }
    }
}

/// `--umask`: octal, group and other bits only (`077`, `027`, `022`, `0`).
pub fn parse_umask(text: &str) -> Result<u32, Problem> {
    let digits = text.trim();
    let value = (!digits.is_empty() && digits.len() <= 4)
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .ok_or_else(|| format!("{text:?} is not an octal umask such as 077 or 027"))?;
    if value > 0o777 {
        return Err(format!("{text:?} is not an octal umask such as 077 or 027"));
    }
    if value & 0o700 != 0 {
        return Err(format!(
            "{text:?} takes permissions from the owner; a namespace's umask takes only group and other bits (077, 027, 022)"
        ));
    }
    Ok(value)
}

/// The umask as the registry and cluster records write it: `"077"`.
pub fn umask_text(umask: u32) -> String {
    format!("{umask:03o}")
}

/// An owner as the registry and cluster records write it: `"70:70"`.
pub fn owner_text(owner: Owner) -> String {
    format!("{}:{}", owner.uid, owner.gid)
}

/// The written form back: numbers only (names are resolved once, where
/// `add` ran, so that every node gives the files the same ids).
pub fn parse_owner_text(text: &str) -> Option<Owner> {
    let (uid, gid) = text.split_once(':')?;
    let number = |t: &str| {
        (!t.is_empty() && t.len() <= 10 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u32>().ok())
            .flatten()
            .filter(|&id| id != u32::MAX)
    };
    Some(Owner {
        uid: number(uid)?,
        gid: number(gid)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umasks_take_group_and_other_bits_only() {
        assert_eq!(parse_umask("077"), Ok(0o077));
        assert_eq!(parse_umask("027"), Ok(0o027));
        assert_eq!(parse_umask("0"), Ok(0));
        assert_eq!(parse_umask("0022"), Ok(0o022));
        for bad in ["", "8", "0777", "177", "1077", "abc", "-1", "00000"] {
            assert!(parse_umask(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(umask_text(0o27), "027");
        assert_eq!(parse_umask(&umask_text(0o7)), Ok(0o7));
    }

    #[test]
    fn modes_follow_the_umask_and_the_executable_bit() {
        let rule = FileRule::default();
        assert_eq!(
            (rule.dir_mode(), rule.file_mode(false), rule.file_mode(true)),
            (0o700, 0o600, 0o700)
        );
        let shared = FileRule {
            owner: None,
            umask: 0o027,
        };
        assert_eq!(
            (
                shared.dir_mode(),
                shared.file_mode(false),
                shared.file_mode(true)
            ),
            (0o750, 0o640, 0o750)
        );
    }

    #[test]
    fn owner_text_round_trips_numbers_only() {
        let owner = Owner { uid: 70, gid: 71 };
        assert_eq!(parse_owner_text(&owner_text(owner)), Some(owner));
        for bad in [
            "70",
            "70:",
            ":70",
            "a:b",
            "70:71:72",
            "4294967295:0",
            "+7:7",
        ] {
            assert_eq!(parse_owner_text(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keeping_is_needed_only_beyond_the_engine_umask() {
        let engine = Owner { uid: 0, gid: 0 };
        assert!(!FileRule::default().needs_keeping(engine));
        let own = |uid| FileRule {
            owner: Some(Owner { uid, gid: uid }),
            umask: DEFAULT_UMASK,
        };
        assert!(!own(0).needs_keeping(engine));
        assert!(own(70).needs_keeping(engine));
        let wide = FileRule {
            owner: None,
            umask: 0o022,
        };
        assert!(wide.needs_keeping(engine));
    }
}
