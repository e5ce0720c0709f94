//! Which engine init runs: its name and version, from the first line
//! `--help` prints (`BitTorrent Sync 1.4.111`). syncbox relies on facts
//! seen with particular versions (the config keys, `.sync/ID`, reload by
//! HUP); init logs what it runs at start and `status` shows it, so a user
//! of another version knows that nothing proved it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys::OwnedChild;

/// The versions syncbox's tests run (CI, with the vendor's build).
pub const PROVEN: &[(&str, &str)] = &[("BitTorrent Sync", "1.4.111")];

/// `--help` prints at once; this only keeps a wedged binary from holding init.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// More than a help text; reading stops there.
const MAX_ANSWER: u64 = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// "BitTorrent Sync", "Resilio Sync", ...
    pub name: String,
    /// "1.4.111"; `None` when the line shows none.
    pub version: Option<String>,
}

impl EngineInfo {
    /// Is this a version syncbox's tests run?
    pub fn proven(&self) -> bool {
        self.version
            .as_deref()
            .is_some_and(|version| PROVEN.contains(&(self.name.as_str(), version)))
    }

    /// "BitTorrent Sync 1.4.111", for the log.
    pub fn describe(&self) -> String {
        match &self.version {
            Some(version) => format!("{} {version}", self.name),
            None => format!("{} (no version shown)", self.name),
        }
    }
}

/// Name and version from the first non-empty line of `--help`: the words
/// before the first one that looks like a version (digits and dots).
pub fn parse_banner(text: &str) -> Option<EngineInfo> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let is_version = |word: &&str| {
        word.contains('.')
            && word.starts_with(|c: char| c.is_ascii_digit())
            && word.chars().all(|c| c.is_ascii_digit() || c == '.')
    };
    let at = words.iter().position(is_version);
    let name_words = &words[..at.unwrap_or(words.len())];
    if name_words.is_empty() {
        return None;
    }
    Some(EngineInfo {
        name: name_words.join(" "),
        version: at.map(|i| words[i].to_owned()),
    })
}

/// Run `BIN --help` and read its banner; `Err` says why nothing is known.
pub fn identify(bin: &Path) -> Result<EngineInfo, String> {
    let mut command = Command::new(bin);
    command
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = OwnedChild::spawn(&mut command).map_err(|e| format!("cannot run it: {e}"))?;
    let answer = match child.output_until(Instant::now() + ANSWER_TIMEOUT, MAX_ANSWER) {
        Ok(Some((_, answer))) => answer,
        Ok(None) => {
            return Err(format!(
                "'--help' did not answer within {} seconds",
                ANSWER_TIMEOUT.as_secs()
            ));
        }
        Err(e) => return Err(format!("cannot wait for it: {e}")),
    };
    parse_banner(&String::from_utf8_lossy(&answer))
        .ok_or_else(|| "'--help' printed no name and version".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners_give_name_and_version() {
        let real = "BitTorrent Sync 1.4.111\nUsage:\n\t  btsync [ options ... ]\n";
        let info = parse_banner(real).expect("1.4.111's banner");
        assert_eq!(info.name, "BitTorrent Sync");
        assert_eq!(info.version.as_deref(), Some("1.4.111"));
        assert!(info.proven());
        let resilio = parse_banner("\nResilio Sync 2.7.3 (1381)\n").expect("a 2.x banner");
        assert_eq!(resilio.describe(), "Resilio Sync 2.7.3");
        assert!(!resilio.proven());
        let old = parse_banner("BitTorrent Sync 1.3.106").expect("1.3");
        assert!(!old.proven());
        let bare = parse_banner("Some Engine\n").expect("no version");
        assert_eq!(bare.version, None);
        assert_eq!(bare.describe(), "Some Engine (no version shown)");
        assert!(parse_banner("").is_none());
        assert!(parse_banner("1.2.3 only").is_none());
    }
}
