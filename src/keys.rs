//! btsync keys ("secrets"): parsing, kinds, generation, and reading one
//! from a key file.
//!
//! Format facts (see the project notes): RFC 4648 base32 without padding,
//! upper case. A typed key is one type letter and 32 base32 characters (20
//! bytes); an E key carries 26 more characters (16 bytes); a pre-1.2 key is
//! 32 base32 characters with no type letter.
//!
//! Read-only keys are derived offline where the recipe is known (A -> B,
//! pre-1.2 -> R); D -> E is not public and needs the btsync binary (see
//! [`crate::read_only`]).

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::SigningKey;
use rand::TryRng;
use rand::rngs::SysRng;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::fsutil;

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

    /// The type letter that starts keys of this kind (none for pre-1.2 keys).
    pub fn letter(self) -> Option<char> {
        Some(match self {
            KeyKind::A => 'A',
            KeyKind::B => 'B',
            KeyKind::C => 'C',
            KeyKind::D => 'D',
            KeyKind::E => 'E',
            KeyKind::F => 'F',
            KeyKind::R => 'R',
            KeyKind::Legacy => return None,
        })
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
    /// The decoded base32 after the type letter: 20 bytes (36 for E).
    payload: Vec<u8>,
}

/// The read-only form of a key, as far as syncbox can compute it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOnlyForm {
    /// The key's read-only form (the key itself if it cannot write).
    Key(Key),
    /// A D key: its E form is computed by a recipe that is not public, so
    /// only the btsync binary can produce it.
    NeedsEngine,
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
/// Bytes behind the 32 base32 characters of a key body.
pub const PAYLOAD_LEN: usize = 20;
/// Ed25519 seeds are 32 bytes; btsync pads the 20 key bytes with zeros.
const ED25519_SEED_LEN: usize = 32;
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
        let payload = match kind {
            KeyKind::E => decode(&body[..BODY_LEN]).and_then(|mut first| {
                first.extend(decode(&body[BODY_LEN..])?);
                Some(first)
            }),
            _ => decode(body),
        };
        let Some(payload) = payload else {
            return Err(reject("its base32 does not decode to whole bytes"));
        };
        Ok(Key {
            text,
            kind,
            payload,
        })
    }

    /// The key a key file holds: one key, with any whitespace around it
    /// (the newline `echo` and editors add, a CRLF). Anything else, such as
    /// a second line, is refused: a file of several keys is ambiguous.
    pub fn from_file_contents(bytes: &[u8]) -> Result<Key, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| reject("it is not text"))?;
        let text = text.trim_ascii();
        if text.is_empty() {
            return Err(reject("it is empty"));
        }
        if text.contains('\n') {
            return Err(reject("it holds more than one line"));
        }
        Key::parse(text)
    }

    /// Build a key of `kind` from its decoded body.
    fn from_payload(kind: KeyKind, payload: Vec<u8>) -> Key {
        let body = BASE32_NOPAD.encode(&payload);
        let text = match kind.letter() {
            Some(letter) => format!("{letter}{body}"),
            None => body,
        };
        Key {
            text,
            kind,
            payload,
        }
    }

    /// The read-write (A) key made of these 20 bytes.
    /// For keys derived from other secrets, e.g. the cluster key.
    pub fn read_write_from(material: &[u8; PAYLOAD_LEN]) -> Key {
        Key::from_payload(KeyKind::A, material.to_vec())
    }

    /// The read-only form of this key, computed offline where the recipe is
    /// known. Keys that cannot write are their own read-only form.
    pub fn read_only_form(&self) -> ReadOnlyForm {
        match self.kind {
            KeyKind::A => ReadOnlyForm::Key(self.ed25519_read_only()),
            KeyKind::Legacy => ReadOnlyForm::Key(self.legacy_read_only()),
            KeyKind::D => ReadOnlyForm::NeedsEngine,
            KeyKind::B | KeyKind::C | KeyKind::E | KeyKind::F | KeyKind::R => {
                ReadOnlyForm::Key(self.clone())
            }
        }
    }

    /// The id btsync gives the folder of this key (what it writes into
    /// `.sync/ID`): the SHA-1 of the read-only key's 20 bytes. Seen with
    /// btsync 1.4.111 for A keys (so for their B keys too); `None` for the
    /// kinds where it was not checked.
    pub fn folder_id(&self) -> Option<[u8; PAYLOAD_LEN]> {
        let read_only = match self.kind {
            KeyKind::A => self.ed25519_read_only(),
            KeyKind::B => self.clone(),
            _ => return None,
        };
        let payload = read_only.payload.get(..PAYLOAD_LEN)?;
        Sha1::digest(payload).as_slice().try_into().ok()
    }

    /// A -> B: the 20 key bytes padded with zeros are an Ed25519 seed; the
    /// B key is the SHA-1 of its public key.
    fn ed25519_read_only(&self) -> Key {
        let mut seed = [0u8; ED25519_SEED_LEN];
        seed[..PAYLOAD_LEN].copy_from_slice(&self.payload[..PAYLOAD_LEN]);
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        Key::from_payload(KeyKind::B, Sha1::digest(public).to_vec())
    }

    /// pre-1.2 -> R: the first 20 bytes of the SHA-256 of the key bytes.
    fn legacy_read_only(&self) -> Key {
        let digest = Sha256::digest(&self.payload);
        Key::from_payload(KeyKind::R, digest[..PAYLOAD_LEN].to_vec())
    }

    /// A new read-write key: 'A' + base32 of 20 bytes from the OS CSPRNG.
    pub fn generate() -> Result<Key, std::io::Error> {
        let mut seed = [0u8; PAYLOAD_LEN];
        SysRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| std::io::Error::other(format!("the OS random source failed: {e}")))?;
        Ok(Key::read_write_from(&seed))
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

/// The most a key file may hold. A key has at most 59 characters; the
/// bound leaves room for whitespace and refuses a wrong path (a log, a disk
/// image) before it is read into memory.
pub const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The path that [`read_key_file`] takes as "standard input".
pub const STDIN_PATH: &str = "-";

/// The key in the file at `path` (`-`: standard input), for `add
/// --token-file` and the volume plugin's `token-file`: a way in that keeps
/// the key off command lines, which `ps` and `docker inspect` show.
/// The file is read as [`fsutil::read_named`] reads (links followed, no
/// FIFO, no device, at most [`MAX_KEY_FILE_BYTES`]) and must hold one key
/// ([`Key::from_file_contents`]). No error ever shows the file's content.
pub fn read_key_file(path: &Path) -> crate::error::Result<Key> {
    let shown = path.to_string_lossy();
    // A key given where its file's path belongs must not be echoed back
    // in "no such file".
    if Key::parse(shown.trim()).is_ok() {
        return Err(key_file_error(
            "key file".into(),
            "the path given is a key, not a path; write the key into a file and give that \
             file's path (or - and the key on standard input)",
        ));
    }
    let (what, bytes) = if path == Path::new(STDIN_PATH) {
        let mut bytes = Vec::new();
        let read = io::stdin()
            .lock()
            .take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut bytes);
        let what = "the key on standard input (--token-file=-)".to_owned();
        match read {
            Err(e) => return Err(key_file_error(what, &format!("cannot be read: {e}"))),
            Ok(_) if bytes.len() as u64 > MAX_KEY_FILE_BYTES => {
                return Err(key_file_error(
                    what,
                    &format!("more than {MAX_KEY_FILE_BYTES} bytes; it must hold one key"),
                ));
            }
            Ok(_) => (what, bytes),
        }
    } else {
        if shown.is_empty() {
            return Err(key_file_error("key file".into(), "no path given"));
        }
        let what = format!("key file {shown}");
        match fsutil::read_named(path, MAX_KEY_FILE_BYTES) {
            Ok(bytes) => (what, bytes),
            Err(e) => {
                let problem = match e.kind() {
                    io::ErrorKind::NotFound => "no such file".to_owned(),
                    io::ErrorKind::InvalidData => format!(
                        "{e}; give a regular file of at most {MAX_KEY_FILE_BYTES} bytes that \
                         holds one key"
                    ),
                    _ => format!("cannot be read: {e}"),
                };
                return Err(key_file_error(what, &problem));
            }
        }
    };
    Key::from_file_contents(&bytes).map_err(|e| key_file_error(what, &e.to_string()))
}

fn key_file_error(what: String, problem: &str) -> Error {
    Error::KeyFile {
        what,
        problem: problem.to_owned(),
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

    /// Each rejected input, with a note of what is wrong with it.
    fn rejected_inputs() -> Vec<(String, &'static str)> {
        let body = &A_KEY[1..];
        vec![
            (
                "e3hryu35qegqery4w5y164u5u".into(),
                "the seed's example token",
            ),
            (String::new(), "empty"),
            ("A".into(), "type letter only"),
            (A_KEY[..31].into(), "31 characters"),
            (format!("{A_KEY}A"), "34 characters"),
            (format!("{}{}", e_key(), "A"), "60 characters"),
            (e_key()[..58].into(), "58 characters"),
            (format!("{A_KEY}{A_KEY}"), "66 characters"),
            (format!("G{body}"), "unknown type letter G"),
            (format!("Z{body}"), "unknown type letter Z"),
            (format!("2{body}"), "digit as type letter"),
            (format!("E{body}"), "E key of 33 characters"),
            (format!("A{}", &e_key()[1..]), "A key of 59 characters"),
            (format!("A{}0", &body[..31]), "digit 0 (not base32)"),
            (format!("A{}1", &body[..31]), "digit 1 (not base32)"),
            (format!("A{}8", &body[..31]), "digit 8 (not base32)"),
            (format!("A{}9", &body[..31]), "digit 9 (not base32)"),
            (format!("A{}-", &body[..31]), "base64url character"),
            (format!("A{}+", &body[..31]), "base64 character"),
            (format!("A{}/", &body[..31]), "base64 character"),
            (
                format!("A{}=", &body[..31]),
                "padding instead of the last character",
            ),
            (format!("{}=", &A_KEY[..32]), "padding"),
            (format!("{A_KEY}="), "trailing padding"),
            (format!("{A_KEY}======"), "full RFC 4648 padding"),
            (format!("{}===", &A_KEY[..30]), "padding"),
            (format!(" {A_KEY}"), "leading space"),
            (format!("{A_KEY} "), "trailing space"),
            (format!("{A_KEY}\n"), "trailing newline"),
            (format!("{A_KEY}\r\n"), "trailing CRLF"),
            (format!("\t{A_KEY}"), "leading tab"),
            (format!("{} {}", &A_KEY[..16], &A_KEY[16..]), "inner space"),
            (format!("{}\0{}", &A_KEY[..16], &A_KEY[17..]), "NUL byte"),
            (format!("A{}Ａ", &body[..31]), "full-width letter"),
            ("é".repeat(16), "non-ASCII"),
        ]
    }

    #[test]
    fn rejects_malformed_keys() {
        for (text, why) in rejected_inputs() {
            assert!(
                Key::parse(&text).is_err(),
                "{text:?} ({why}) should be rejected"
            );
        }
    }

    #[test]
    fn rejections_say_what_was_expected_and_never_echo_the_key() {
        for (text, why) in rejected_inputs() {
            let msg = Key::parse(&text).unwrap_err().to_string();
            assert!(msg.contains("expected a btsync key"), "{why}: {msg}");
            // Any 8 consecutive characters of the input would leak part of it.
            let leaked = text
                .as_bytes()
                .windows(8)
                .filter_map(|w| std::str::from_utf8(w).ok())
                .find(|w| msg.contains(w));
            assert_eq!(leaked, None, "{why}: {msg}");
        }
    }

    #[test]
    fn whitespace_and_padding_are_named_in_the_error() {
        let cases = [
            (format!("{A_KEY} "), "whitespace at position 34"),
            (
                format!("{}={}", &A_KEY[..10], &A_KEY[11..]),
                "padding '=' at position 11",
            ),
            (
                format!("{}8{}", &A_KEY[..5], &A_KEY[6..]),
                "the character '8' at position 6",
            ),
        ];
        for (text, expected) in cases {
            let msg = Key::parse(&text).unwrap_err().to_string();
            assert!(msg.contains(expected), "{msg}");
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
    fn a_key_file_holds_one_key_with_any_whitespace_around_it() {
        let lower = A_KEY.to_ascii_lowercase();
        for contents in [
            A_KEY.to_owned(),
            format!("{A_KEY}\n"),
            format!("{A_KEY}\r\n"),
            format!("  {A_KEY}\t\n\n"),
            format!("\n{lower}\n"),
        ] {
            let key = Key::from_file_contents(contents.as_bytes())
                .unwrap_or_else(|e| panic!("{contents:?}: {e}"));
            assert_eq!(key.expose(), A_KEY);
        }
    }

    #[test]
    fn a_key_file_with_anything_else_is_refused_without_echoing_it() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "it is empty"),
            (b" \n\t\r\n".to_vec(), "it is empty"),
            (
                format!("{A_KEY}\n{B_KEY}\n").into_bytes(),
                "more than one line",
            ),
            (
                format!("{A_KEY}\r\n\r\n{A_KEY}").into_bytes(),
                "more than one line",
            ),
            (format!("{A_KEY} {B_KEY}").into_bytes(), "whitespace"),
            (
                format!("GITLAB_KEY={A_KEY}\n").into_bytes(),
                "character '_'",
            ),
            (
                format!("{}\u{fffd}\n", &A_KEY[..32]).into_bytes(),
                "non-ASCII",
            ),
            ([A_KEY.as_bytes(), &[0xff, b'\n']].concat(), "not text"),
            (b"e3hryu35qegqery4w5y164u5u\n".to_vec(), "the character '1'"),
            (format!("{}\n", &A_KEY[..31]).into_bytes(), "31 characters"),
        ];
        for (contents, expected) in cases {
            let message = Key::from_file_contents(&contents).unwrap_err().to_string();
            assert!(message.contains(expected), "{contents:?}: {message}");
            assert!(message.contains("expected a btsync key"), "{message}");
            let leaked = contents
                .windows(8)
                .filter_map(|w| std::str::from_utf8(w).ok())
                .find(|w| message.contains(w));
            assert_eq!(leaked, None, "{message}");
        }
    }

    /// A directory of its own under the temp dir, removed at the end.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("syncbox-keys-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch dir");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn key_files_are_read_through_links_and_never_wait_on_a_fifo() {
        let scratch = Scratch::new("file");
        // Kubernetes mounts a Secret's key as a link into a hidden directory.
        let data = scratch.0.join("..data");
        std::fs::create_dir_all(&data).expect("data dir");
        std::fs::write(data.join("key"), format!("{A_KEY}\n")).expect("key file");
        let link = scratch.0.join("key");
        std::os::unix::fs::symlink("..data/key", &link).expect("link");
        assert_eq!(read_key_file(&link).expect("read").expose(), A_KEY);

        let fifo = scratch.0.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        // On a thread, so that a regression fails instead of hanging.
        let (sender, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(read_key_file(&fifo).map_err(|e| e.to_string()));
        });
        let read = answer
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO blocked");
        let message = read.unwrap_err();
        assert!(message.contains("not a regular file"), "{message}");
    }

    #[test]
    fn key_file_errors_name_the_file_and_never_its_key() {
        let scratch = Scratch::new("errors");
        let big = scratch.0.join("big");
        let mut contents = format!("{A_KEY}\n").into_bytes();
        contents.resize(MAX_KEY_FILE_BYTES as usize + 1, b' ');
        std::fs::write(&big, &contents).expect("big file");
        let fits = scratch.0.join("fits");
        contents.truncate(MAX_KEY_FILE_BYTES as usize);
        std::fs::write(&fits, &contents).expect("file at the bound");
        assert_eq!(read_key_file(&fits).expect("at the bound").expose(), A_KEY);
        let missing = scratch.0.join("missing");
        let cases = [
            (big.clone(), "too big"),
            (missing.clone(), "no such file"),
            (scratch.0.clone(), "not a regular file"),
            ("/dev/zero".into(), "not a regular file"),
            (A_KEY.into(), "the path given is a key"),
            (format!("{A_KEY}\n").into(), "the path given is a key"),
            ("".into(), "no path given"),
        ];
        for (path, expected) in cases {
            let error = read_key_file(&path).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{error}");
            let message = error.to_string();
            assert!(message.contains(expected), "{path:?}: {message}");
            assert!(!message.contains(&A_KEY[1..9]), "{message}");
        }
        let message = read_key_file(&missing).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("key file {}: ", missing.display())),
            "{message}"
        );
    }

    fn read_only_of(text: &str) -> String {
        match Key::parse(text).unwrap().read_only_form() {
            ReadOnlyForm::Key(key) => key.expose().to_owned(),
            ReadOnlyForm::NeedsEngine => panic!("{text}: needs the engine"),
        }
    }

    #[test]
    fn a_to_b_matches_the_published_pair() {
        assert_eq!(read_only_of(A_KEY), B_KEY);
        assert_eq!(read_only_of(&A_KEY.to_ascii_lowercase()), B_KEY);
    }

    #[test]
    fn a_to_b_matches_an_independent_implementation() {
        // Computed with Python's `cryptography` (Ed25519), hashlib and base64.
        let pairs = [
            (
                "A3YU7QPZZJIDMMZDEH3YWCZEY75J3OZHB",
                "BZH73GNW4OKONMZFB24CISS6M5BERFYWO",
            ),
            (
                "A5ZDMD7TF2DBYNR4FEKUBNFWOBFFEL55A",
                "BU4ASOXSU7L33DXJINTBAWZ4GWODRLPOH",
            ),
        ];
        for (a, b) in pairs {
            assert_eq!(read_only_of(a), b, "{a}");
        }
    }

    #[test]
    fn legacy_to_r_matches_the_note() {
        assert_eq!(read_only_of(&"A".repeat(32)), R_KEY);
    }

    #[test]
    fn keys_that_cannot_write_are_their_own_read_only_form() {
        for text in [
            B_KEY.to_owned(),
            format!("C{}", &A_KEY[1..]),
            e_key(),
            format!("F{}", &A_KEY[1..]),
            R_KEY.to_owned(),
        ] {
            assert_eq!(read_only_of(&text), text);
        }
    }

    #[test]
    fn d_keys_need_the_engine() {
        let d = Key::parse(&format!("D{}", &A_KEY[1..])).unwrap();
        assert_eq!(d.read_only_form(), ReadOnlyForm::NeedsEngine);
    }

    fn random_bytes(len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        SysRng.try_fill_bytes(&mut bytes).unwrap();
        bytes
    }

    /// Property: every key syncbox renders, of every kind, parses back to
    /// itself, also from lower case.
    #[test]
    fn every_rendered_key_parses_back() {
        let kinds = [
            (KeyKind::A, PAYLOAD_LEN, 33),
            (KeyKind::B, PAYLOAD_LEN, 33),
            (KeyKind::C, PAYLOAD_LEN, 33),
            (KeyKind::D, PAYLOAD_LEN, 33),
            (KeyKind::E, PAYLOAD_LEN + 16, 59),
            (KeyKind::F, PAYLOAD_LEN, 33),
            (KeyKind::R, PAYLOAD_LEN, 33),
            (KeyKind::Legacy, PAYLOAD_LEN, 32),
        ];
        for _ in 0..200 {
            for (kind, payload_len, text_len) in kinds {
                let key = Key::from_payload(kind, random_bytes(payload_len));
                assert_eq!(key.expose().len(), text_len);
                assert_eq!(Key::parse(key.expose()).as_ref(), Ok(&key));
                let lower = key.expose().to_ascii_lowercase();
                assert_eq!(Key::parse(&lower).as_ref(), Ok(&key));
            }
        }
    }

    /// Property: generated keys validate as A keys, and their read-only form
    /// is a valid B key that is the same every time and differs per key.
    #[test]
    fn generated_keys_validate_and_derive_deterministically() {
        let mut seen_b = std::collections::HashSet::new();
        for _ in 0..300 {
            let a = Key::generate().unwrap();
            assert_eq!(Key::parse(a.expose()).as_ref(), Ok(&a));
            let b = read_only_of(a.expose());
            assert_eq!(read_only_of(a.expose()), b);
            let parsed = Key::parse(&b).unwrap();
            assert_eq!(parsed.kind(), KeyKind::B);
            assert_eq!(read_only_of(&b), b);
            assert!(seen_b.insert(b), "two keys gave the same read-only key");
        }
    }

    /// Property: legacy keys derive valid, deterministic R keys.
    #[test]
    fn legacy_keys_derive_deterministically() {
        for _ in 0..300 {
            let legacy = Key::from_payload(KeyKind::Legacy, random_bytes(PAYLOAD_LEN));
            let r = read_only_of(legacy.expose());
            assert_eq!(read_only_of(legacy.expose()), r);
            assert_eq!(Key::parse(&r).unwrap().kind(), KeyKind::R);
        }
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
