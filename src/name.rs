//! Namespace names: `[a-z0-9][a-z0-9._-]{0,63}`.
//!
//! A name becomes a directory under the data root and a file name in the
//! registry, so the rule keeps out everything that could escape the root
//! (`/`, `..`), hide (`.x`), look like an option (`-x`) or clash on a
//! case-insensitive host file system.

use std::fmt;

pub const MAX_LEN: usize = 64;
pub const RULE: &str =
    "a namespace is 1-64 characters of a-z 0-9 . _ -, starting with a letter or digit";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// The rejected input, escaped so control characters cannot garble a terminal.
    shown: String,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid namespace {}: {RULE}", self.shown)
    }
}

impl std::error::Error for NameError {}

impl Name {
    pub fn parse(input: &str) -> Result<Name, NameError> {
        if is_valid(input) {
            Ok(Name(input.to_owned()))
        } else {
            let mut shown: String = input.chars().take(MAX_LEN + 8).collect();
            if shown.len() < input.len() {
                shown.push('…');
            }
            Err(NameError {
                shown: format!("{shown:?}"),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_valid(input: &str) -> bool {
    let bytes = input.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    bytes.len() <= MAX_LEN
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_names_and_edges() {
        for ok in [
            "gitlab",
            "star-trek",
            "a",
            "0",
            "a.b_c-d",
            "help",
            &"x".repeat(64),
        ] {
            assert!(Name::parse(ok).is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let long = "x".repeat(65);
        for bad in [
            "", ".", "..", "../etc", "a/b", "Gitlab", "a b", "a\0b", "-rf", ".btsync", "_x", "é",
            &long, "a\n",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn error_states_the_rule_and_escapes_input() {
        let msg = Name::parse("a\nb").unwrap_err().to_string();
        assert!(msg.contains("a-z 0-9"), "{msg}");
        assert!(msg.contains("\\n"), "{msg}");
        assert!(!msg.contains('\n'));
    }
}
