//! The cluster key: one secret shared by every node, from which each node
//! derives the same key for the same namespace name, with no coordination.
//!
//! The derivation is a public contract (docs/keys.md, "Cluster key"); changing it
//! would split every cluster, so a new recipe needs a new version label:
//!
//! ```text
//! key(NS) = 'A' + base32(HMAC-SHA256(key = cluster key bytes minus one final '\n',
//!                                    message = "syncbox/namespace/v1/" + NS)[0..20])
//! registry key = 'A' + base32(HMAC-SHA256(same key, "syncbox/registry/v1")[0..20])
//! cluster id   = hex(HMAC-SHA256(same key, "syncbox/cluster-id/v1")[0..8])
//! ```
//!
//! The three messages never collide (only namespace messages end in a
//! name after a '/'), and HMAC outputs under different messages reveal
//! nothing about each other or the key: the cluster id can be public.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::keys::{Key, PAYLOAD_LEN};
use crate::name::Name;
use crate::read_only::read_only_key;
use crate::registry::Origin;

/// A path to a file holding the cluster key (preferred: fits docker and
/// Kubernetes secrets, and keeps the key out of `docker inspect`).
pub const CLUSTER_KEY_FILE_VAR: &str = "BTSYNC_CLUSTER_KEY_FILE";
/// The cluster key itself.
pub const CLUSTER_KEY_VAR: &str = "BTSYNC_CLUSTER_KEY";
/// Shorter cluster keys are refused: they are too easy to guess.
pub const MIN_CLUSTER_KEY_CHARS: usize = 16;
/// A key file is one line; reading stops past this, so a wrong path such
/// as /dev/zero fails instead of filling memory.
const MAX_CLUSTER_KEY_FILE: u64 = 64 * 1024;
/// Versioned so that a future recipe can never collide with this one.
const NAMESPACE_LABEL: &str = "syncbox/namespace/v1/";
/// The label of the cluster registry folder's key (cluster mode).
const REGISTRY_LABEL: &str = "syncbox/registry/v1";
/// The label of a member folder's key, followed by the member's device id.
const MEMBER_LABEL: &str = "syncbox/member/v1/";
/// The label of the public cluster id written into registry records.
const CLUSTER_ID_LABEL: &str = "syncbox/cluster-id/v1";
/// Bytes of the cluster id (16 hex digits).
const CLUSTER_ID_BYTES: usize = 8;

/// The cluster key's bytes. `Debug` is redacted: it is the master secret
/// of every namespace it derives.
#[derive(Clone)]
pub struct ClusterKey {
    bytes: Vec<u8>,
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl ClusterKey {
    /// The cluster key from `BTSYNC_CLUSTER_KEY_FILE` (when set) or else
    /// `BTSYNC_CLUSTER_KEY`; `None` when neither is set. A variable that is
    /// set but empty is an error, not "unset": silently falling back to a
    /// random key would split the cluster.
    pub fn from_env() -> Result<Option<ClusterKey>> {
        if let Some(path) = std::env::var_os(CLUSTER_KEY_FILE_VAR) {
            if path.is_empty() {
                return Err(env_error(
                    CLUSTER_KEY_FILE_VAR,
                    "is empty; set it to the path of the cluster key file, or unset it",
                ));
            }
            // A relative path would make the key depend on the working
            // directory of whoever runs the applet.
            if !std::path::Path::new(&path).is_absolute() {
                return Err(env_error(
                    CLUSTER_KEY_FILE_VAR,
                    &format!("{} is not an absolute path", path.to_string_lossy()),
                ));
            }
            let cannot_read = |problem: String| {
                env_error(
                    CLUSTER_KEY_FILE_VAR,
                    &format!("cannot read {}: {problem}", path.to_string_lossy()),
                )
            };
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|file| file.take(MAX_CLUSTER_KEY_FILE + 1).read_to_end(&mut bytes))
                .map_err(|e| cannot_read(e.to_string()))?;
            if bytes.len() as u64 > MAX_CLUSTER_KEY_FILE {
                return Err(cannot_read(format!(
                    "it is larger than {} KiB, too large for a key file",
                    MAX_CLUSTER_KEY_FILE / 1024
                )));
            }
            return ClusterKey::from_bytes(bytes)
                .map(Some)
                .map_err(|problem| env_error(CLUSTER_KEY_FILE_VAR, &problem));
        }
        match std::env::var_os(CLUSTER_KEY_VAR) {
            Some(value) => ClusterKey::from_bytes(OsString::into_vec(value))
                .map(Some)
                .map_err(|problem| env_error(CLUSTER_KEY_VAR, &problem)),
            None => Ok(None),
        }
    }

    /// Take the key as given, minus one final newline (the one `echo` and
    /// editors add to a key file). Too short a key is refused with a reason
    /// that never contains the key.
    pub fn from_bytes(mut bytes: Vec<u8>) -> std::result::Result<ClusterKey, String> {
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        // Characters for text; bytes for a key file that is not UTF-8.
        let length = std::str::from_utf8(&bytes).map_or(bytes.len(), |text| text.chars().count());
        if length < MIN_CLUSTER_KEY_CHARS {
            return Err(format!(
                "the cluster key has {length} characters; it needs at least \
                 {MIN_CLUSTER_KEY_CHARS} (e.g. the output of 'keygen')"
            ));
        }
        Ok(ClusterKey { bytes })
    }

    /// The read-write key of namespace `ns`: the same on every node that
    /// holds this cluster key, different for every name.
    pub fn namespace_key(&self, ns: &Name) -> Key {
        self.derive_key(&[NAMESPACE_LABEL.as_bytes(), ns.as_str().as_bytes()])
    }

    /// The read-write key of the cluster registry folder that every node's
    /// engine syncs in cluster mode.
    pub fn registry_key(&self) -> Key {
        self.derive_key(&[REGISTRY_LABEL.as_bytes()])
    }

    /// The read-write key of the member folder of `device` (its 16-hex
    /// device id): the folder that member writes its own records into, so
    /// that a flood in one member's folder never queues another's.
    pub fn member_key(&self, device: &str) -> Key {
        self.derive_key(&[MEMBER_LABEL.as_bytes(), device.as_bytes()])
    }

    /// A public fingerprint of the cluster key (16 lower-case hex digits),
    /// written into every registry record so that a record copied from
    /// another cluster is recognised and ignored. It reveals nothing about
    /// the key.
    pub fn cluster_id(&self) -> String {
        let digest = self.mac(&[CLUSTER_ID_LABEL.as_bytes()]);
        digest[..CLUSTER_ID_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn derive_key(&self, message: &[&[u8]]) -> Key {
        let digest = self.mac(message);
        let mut material = [0u8; PAYLOAD_LEN];
        material.copy_from_slice(&digest[..PAYLOAD_LEN]);
        Key::read_write_from(&material)
    }

    fn mac(&self, message: &[&[u8]]) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.bytes).expect("HMAC accepts keys of any length");
        for part in message {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// The key `add` registers for `ns`: the `given` one, else the one the
/// cluster key derives, else `None` (the registry generates one). With
/// `read_only`, its read-only form. Nothing is written here, so every error
/// leaves the node as it was.
pub fn choose_namespace_key(
    ns: &Name,
    given: Option<Key>,
    read_only: bool,
) -> Result<Option<(Key, Origin)>> {
    let (key, origin) = match given {
        Some(key) => (key, Origin::Given),
        None => match ClusterKey::from_env()? {
            Some(cluster) => (cluster.namespace_key(ns), Origin::Cluster),
            None if read_only => {
                return Err(Error::Usage(format!(
                    "--read-only needs the key to derive from: give --token=KEY (e.g. what \
                     'secret {ns}' prints on a read-write node), or set {CLUSTER_KEY_FILE_VAR}"
                )));
            }
            None => return Ok(None),
        },
    };
    let key = if read_only { read_only_key(&key)? } else { key };
    Ok(Some((key, origin)))
}

fn env_error(var: &'static str, problem: &str) -> Error {
    Error::Env {
        var,
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed with Python's hmac, hashlib and base64 modules (see docs/keys.md).
    const STAPLE: &[u8] = b"correct horse battery staple";
    const STAPLE_GITLAB: &str = "A3YU7QPZZJIDMMZDEH3YWCZEY75J3OZHB";
    const STAPLE_STAR_TREK: &str = "A5ZDMD7TF2DBYNR4FEKUBNFWOBFFEL55A";
    const STAPLE_TWO_NEWLINES_GITLAB: &str = "A77ZB7UBG4FH7HTZADV5AAVEKZSKNYJVW";
    const HEX16_GITLAB: &str = "A3WKHGNS7CSHFLCMLHXACMSSRTGYRBT2C";

    fn derive(cluster: &[u8], ns: &str) -> String {
        let cluster = ClusterKey::from_bytes(cluster.to_vec()).unwrap();
        let ns = Name::parse(ns).unwrap();
        cluster.namespace_key(&ns).expose().to_owned()
    }

    #[test]
    fn matches_the_published_vectors() {
        assert_eq!(derive(STAPLE, "gitlab"), STAPLE_GITLAB);
        assert_eq!(derive(STAPLE, "star-trek"), STAPLE_STAR_TREK);
        assert_eq!(derive(b"0123456789abcdef", "gitlab"), HEX16_GITLAB);
    }

    #[test]
    fn exactly_one_final_newline_is_ignored() {
        assert_eq!(
            derive(b"correct horse battery staple\n", "gitlab"),
            STAPLE_GITLAB
        );
        assert_eq!(
            derive(b"correct horse battery staple\n\n", "gitlab"),
            STAPLE_TWO_NEWLINES_GITLAB
        );
    }

    #[test]
    fn registry_key_and_cluster_id_match_the_published_vectors() {
        // Computed with Python's hmac, hashlib and base64 modules (see docs/keys.md).
        let staple = ClusterKey::from_bytes(STAPLE.to_vec()).unwrap();
        assert_eq!(
            staple.registry_key().expose(),
            "AYYVRHAIW65KJOFMV7MHTSBKGNHGQM2ZL"
        );
        assert_eq!(staple.cluster_id(), "925124d2a45407c2");
        let hex16 = ClusterKey::from_bytes(b"0123456789abcdef\n".to_vec()).unwrap();
        assert_eq!(
            hex16.registry_key().expose(),
            "AF7UKIB43RGPR27VVLOPURDGSNSLCWXBP"
        );
        assert_eq!(hex16.cluster_id(), "29197a090f0bd0c4");
        assert_eq!(
            staple.member_key("00000000000000ee").expose(),
            "A7WNKIHQ2NQFGT3KSXTE66E6QM2HSRZMQ"
        );
        assert_eq!(
            hex16.member_key("925124d2a45407c2").expose(),
            "AGGGILP53WO5BUVCTVPKDOUROILESQ7I6"
        );
        // The registry is never a namespace's folder, whatever its name.
        for ns in ["registry", "v1", "cluster-id"] {
            assert_ne!(derive(STAPLE, ns), staple.registry_key().expose());
        }
    }

    #[test]
    fn derived_keys_are_valid_read_write_keys() {
        let key = Key::parse(&derive(STAPLE, "gitlab")).unwrap();
        assert_eq!(key.kind(), crate::keys::KeyKind::A);
    }

    #[test]
    fn short_keys_are_refused_without_echoing_them() {
        for short in [&b""[..], b"\n", b"fifteen-chars!!", b"fifteen-chars!!\n"] {
            let problem = ClusterKey::from_bytes(short.to_vec()).unwrap_err();
            assert!(problem.contains("at least 16"), "{problem}");
            if short.len() > 1 {
                assert!(!problem.contains("fifteen"), "{problem}");
            }
        }
        // Sixteen characters, some of them multi-byte, are enough; fifteen are not.
        assert!(ClusterKey::from_bytes("ééééééééééééééé".into()).is_err());
        assert!(ClusterKey::from_bytes("éééééééééééééééé".into()).is_ok());
        // A key file that is not UTF-8 is measured in bytes.
        assert!(ClusterKey::from_bytes(vec![0xff; 15]).is_err());
        assert!(ClusterKey::from_bytes(vec![0xff; 16]).is_ok());
    }

    #[test]
    fn debug_is_redacted() {
        let cluster = ClusterKey::from_bytes(STAPLE.to_vec()).unwrap();
        assert!(!format!("{cluster:?}").contains("staple"));
    }
}
