//! btsync keys ("secrets"): parsing, kinds and generation.
//!
//! Format facts (see the project notes): RFC 4648 base32 without padding,
//! upper case. A typed key is one type letter and 32 base32 characters (20
//! bytes); an E key carries 26 more characters (16 bytes); a pre-1.2 key is
//! 32 base32 characters with no type letter.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use rand::TryRng;
use rand::rngs::SysRng;

/// What holding a key lets a node do with the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Change and delete the folder's data on every peer.
    ReadWrite,
    /// Receive the folder; local changes are not sent.
    ReadOnly,
    /// Store the folder encrypted, without being able to read it.
    Encrypted,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadWrite => "read-write",
            Access::ReadOnly => "read-only",
            Access::Encrypted => "encrypted",
        }
    }
}

/// The kinds of key btsync has issued, by their first letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `A`: read-write.
    A,
    /// `B`: read-only, derived from an A key.
    B,
    /// `C`: one-time read-only (obsolete).
    C,
    /// `D`: read-write that can also feed encrypted peers.
    D,
    /// `E`: read-only that can decrypt, derived from a D key.
    E,
    /// `F`: encrypted read-only.
    F,
    /// `R`: pre-1.0 read-only.
    R,
    /// No letter: pre-1.2 read-write secret.
    Legacy,
}

impl KeyKind {
    pub fn access(self) -> Access {
        match self {
            KeyKind::A | KeyKind::D | KeyKind::Legacy => Access::ReadWrite,
            KeyKind::B | KeyKind::C | KeyKind::E | KeyKind::R => Access::ReadOnly,
            KeyKind::F => Access::Encrypted,
        }
    }

    fn from_letter(letter: u8) -> Option<KeyKind> {
        Some(match letter {
            b'A' => KeyKind::A,
            b'B' => KeyKind::B,
            b'C' => KeyKind::C,
            b'D' => KeyKind::D,
            b'E' => KeyKind::E,
            b'F' => KeyKind::F,
            b'R' => KeyKind::R,
            _ => return None,
        })
    }
}

/// A key that passed validation, stored in its canonical (upper-case) form.
///
/// `Debug` is redacted on purpose: keys must never reach logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    text: String,
    kind: KeyKind,
}

/// Why a key was rejected. Never contains the key itself: a rejected key may
/// be a real secret with a typo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    problem: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid key: {}; expected a btsync key: a type letter (A B C D F R) and 32 base32 \
             characters (A-Z 2-7), an E key of 59 characters, or a 32-character pre-1.2 key",
            self.problem
        )
    }
}

impl std::error::Error for KeyError {}

fn reject(problem: impl Into<String>) -> KeyError {
    KeyError {
        problem: problem.into(),
    }
}

const BODY_LEN: usize = 32;
const E_EXTRA_LEN: usize = 26;

impl Key {
    /// Validate `input` as any kind of btsync key. Lower case is accepted and
    /// upper-cased; anything else (whitespace, padding, other alphabets) is not.
    pub fn parse(input: &str) -> Result<Key, KeyError> {
        if !input.is_ascii() {
            return Err(reject("it contains non-ASCII characters"));
        }
        let text = input.to_ascii_uppercase();
        let bytes = text.as_bytes();
        if let Some(pos) = bytes.iter().position(|b| !is_base32_char(*b)) {
            let what = match bytes[pos] {
                b'=' => "padding '='".to_owned(),
                b if b.is_ascii_whitespace() => "whitespace".to_owned(),
                b if b.is_ascii_graphic() => format!("the character '{}'", b as char),
                _ => "a control character".to_owned(),
            };
            return Err(reject(format!(
                "it contains {what} at position {}",
                pos + 1
            )));
        }
        let kind = match bytes.len() {
            BODY_LEN => KeyKind::Legacy,
            n if n == 1 + BODY_LEN || n == 1 + BODY_LEN + E_EXTRA_LEN => {
                let kind = KeyKind::from_letter(bytes[0]).ok_or_else(|| {
                    reject(format!("'{}' is not a key type letter", bytes[0] as char))
                })?;
                if (kind == KeyKind::E) != (n == 1 + BODY_LEN + E_EXTRA_LEN) {
                    return Err(reject(format!(
                        "a {}-character key cannot be of type '{}'",
                        n, bytes[0] as char
                    )));
                }
                kind
            }
            n => return Err(reject(format!("it has {n} characters"))),
        };
        let body = if kind == KeyKind::Legacy {
            &text[..]
        } else {
            &text[1..]
        };
        let decodes = match kind {
            KeyKind::E => {
                decode(&body[..BODY_LEN]).is_some() && decode(&body[BODY_LEN..]).is_some()
            }
            _ => decode(body).is_some(),
        };
        if !decodes {
            return Err(reject("its base32 does not decode to whole bytes"));
        }
        Ok(Key { text, kind })
    }

    /// A new read-write key: 'A' + base32 of 20 bytes from the OS CSPRNG.
    pub fn generate() -> Result<Key, std::io::Error> {
        let mut seed = [0u8; 20];
        SysRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| std::io::Error::other(format!("the OS random source failed: {e}")))?;
        Ok(Key {
            text: format!("A{}", BASE32_NOPAD.encode(&seed)),
            kind: KeyKind::A,
        })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub fn access(&self) -> Access {
        self.kind.access()
    }

    /// The canonical text of the key. Only `secret` and the engine config
    /// may show it.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?}, <redacted>)", self.kind)
    }
}

fn is_base32_char(b: u8) -> bool {
    b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)
}

fn decode(text: &str) -> Option<Vec<u8>> {
    BASE32_NOPAD.decode(text.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A_KEY: &str = "AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA";
    const B_KEY: &str = "B3MF5NHDCWI6JTVUU2R3LYMQDAK2QCEXG";
    const R_KEY: &str = "R3ZD4TMT6XDJQBW5V6LBVHZRSYOJSMLHQ";

    fn e_key() -> String {
        // 16 bytes encode to 26 characters whose last two bits are zero.
        format!("E{}{}", &A_KEY[1..], BASE32_NOPAD.encode(&[7u8; 16]))
    }

    #[test]
    fn accepts_every_kind() {
        let legacy = "A".repeat(32);
        let cases: Vec<(String, KeyKind, Access)> = vec![
            (A_KEY.into(), KeyKind::A, Access::ReadWrite),
            (B_KEY.into(), KeyKind::B, Access::ReadOnly),
            (format!("C{}", &A_KEY[1..]), KeyKind::C, Access::ReadOnly),
            (format!("D{}", &A_KEY[1..]), KeyKind::D, Access::ReadWrite),
            (e_key(), KeyKind::E, Access::ReadOnly),
            (format!("F{}", &A_KEY[1..]), KeyKind::F, Access::Encrypted),
            (R_KEY.into(), KeyKind::R, Access::ReadOnly),
            (legacy, KeyKind::Legacy, Access::ReadWrite),
        ];
        for (text, kind, access) in cases {
            let key = Key::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(key.kind(), kind, "{text}");
            assert_eq!(key.access(), access, "{text}");
            assert_eq!(key.expose(), text);
        }
    }

    #[test]
    fn lower_case_is_upper_cased() {
        let key = Key::parse(&A_KEY.to_ascii_lowercase()).unwrap();
        assert_eq!(key.expose(), A_KEY);
    }

    #[test]
    fn rejects_malformed_keys() {
        let rejected = [
            "e3hryu35qegqery4w5y164u5u".to_owned(),
            String::new(),
            format!("{}=", &A_KEY[..32]),
            format!("{A_KEY}A"),
            format!(" {A_KEY}"),
            format!("{A_KEY}\n"),
            format!("G{}", &A_KEY[1..]),
            format!("A{}1", &A_KEY[1..32]),
            format!("A{}8", &A_KEY[1..32]),
            format!("E{}", &A_KEY[1..]),
            format!("A{}", &e_key()[1..]),
            format!("{}===", &A_KEY[..30]),
            "é".repeat(16),
        ];
        for text in rejected {
            assert!(Key::parse(&text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn e_key_with_nonzero_trailing_bits_is_rejected() {
        let mut text = e_key();
        text.pop();
        text.push('7');
        assert!(Key::parse(&text).is_err());
    }

    #[test]
    fn errors_never_echo_the_key() {
        let almost = &A_KEY[..31];
        let msg = Key::parse(almost).unwrap_err().to_string();
        assert!(!msg.contains(almost), "{msg}");
        assert!(msg.contains("31 characters"), "{msg}");
    }

    #[test]
    fn debug_is_redacted() {
        let key = Key::parse(A_KEY).unwrap();
        assert!(!format!("{key:?}").contains(&A_KEY[1..]));
    }

    #[test]
    fn generated_keys_are_valid_read_write_and_distinct() {
        let a = Key::generate().unwrap();
        let b = Key::generate().unwrap();
        assert_eq!(a.kind(), KeyKind::A);
        assert_eq!(a.expose().len(), 33);
        assert_eq!(Key::parse(a.expose()).unwrap(), a);
        assert_ne!(a, b);
    }
}
