//! `secret --read-only`, `add --read-only --token` and `keygen`, through
//! the built binary.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Sandbox, TempDir};

const PUBLISHED_A: &str = "AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA";
const PUBLISHED_B: &str = "B3MF5NHDCWI6JTVUU2R3LYMQDAK2QCEXG";
const LEGACY_R: &str = "R3ZD4TMT6XDJQBW5V6LBVHZRSYOJSMLHQ";
const D_KEY: &str = "D3MF5NHDCWI6JTVUU2R3LYMQDAK2QCEXG";
/// What the fake btsync below answers for D_KEY.
const D_KEY_E: &str = "E3MF5NHDCWI6JTVUU2R3LYMQDAK2QCEXGAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn legacy() -> String {
    "A".repeat(32)
}

#[test]
fn secret_read_only_prints_the_read_only_form() {
    let node = Sandbox::labelled("ro-secret");
    node.syncbox_ok(&["add", &format!("--token={PUBLISHED_A}"), "published"]);
    node.syncbox_ok(&["add", &format!("--token={}", legacy()), "legacy"]);
    // The reader is another node: one node syncs one folder per key.
    let reader_node = Sandbox::labelled("ro-secret-reader");
    reader_node.syncbox_ok(&["add", &format!("--token={PUBLISHED_B}"), "reader"]);
    assert_eq!(
        node.syncbox_ok(&["secret", "--read-only", "published"]),
        format!("{PUBLISHED_B}\n")
    );
    assert_eq!(
        node.syncbox_ok(&["secret", "--read-only", "legacy"]),
        format!("{LEGACY_R}\n")
    );
    assert_eq!(
        reader_node.syncbox_ok(&["secret", "--read-only", "reader"]),
        format!("{PUBLISHED_B}\n")
    );
    // Without the switch, the key itself.
    assert_eq!(
        node.syncbox_ok(&["secret", "published"]),
        format!("{PUBLISHED_A}\n")
    );
}

#[test]
fn add_read_only_registers_the_read_only_form() {
    let node = Sandbox::labelled("ro-add");
    let lower_a = PUBLISHED_A.to_ascii_lowercase();
    node.syncbox_ok(&[
        "add",
        "--read-only",
        &format!("--token={lower_a}"),
        "gitlab",
    ]);
    node.syncbox_ok(&["add", "--read-only", "--secret", &legacy(), "old"]);
    assert_eq!(
        node.syncbox_ok(&["secret", "gitlab"]),
        format!("{PUBLISHED_B}\n")
    );
    assert_eq!(node.syncbox_ok(&["secret", "old"]), format!("{LEGACY_R}\n"));
    let listing = node.syncbox_ok(&["list", "--json"]);
    assert!(listing.contains("\"access\":\"read-only\""), "{listing}");
    assert!(!listing.contains("\"access\":\"read-write\""), "{listing}");
    // Idempotent: the same read-only key again changes nothing; the
    // read-write key is a different key and is refused.
    node.syncbox_ok(&[
        "add",
        "--read-only",
        &format!("--token={PUBLISHED_A}"),
        "gitlab",
    ]);
    node.syncbox_ok(&["add", &format!("--token={PUBLISHED_B}"), "gitlab"]);
    let refused = node.syncbox(&["add", &format!("--token={PUBLISHED_A}"), "gitlab"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(
        node.syncbox_ok(&["secret", "gitlab"]),
        format!("{PUBLISHED_B}\n")
    );
}

/// A stand-in for btsync that answers `--get-ro-secret D...` like the real
/// one: an E key on stdout.
fn fake_btsync(dir: &TempDir, script_body: &str) -> std::path::PathBuf {
    let path = dir.write("btsync", format!("#!/bin/sh\n{script_body}\n").as_bytes());
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
    path
}

#[test]
fn d_keys_get_their_e_key_from_btsync() {
    let bin = TempDir::new("fake-btsync");
    let answering = fake_btsync(
        &bin,
        r#"[ "$1" = --get-ro-secret ] || exit 3
echo "E${2#D}AAAAAAAAAAAAAAAAAAAAAAAAAA""#,
    );
    let node = Sandbox::labelled("ro-engine").with_env("BTSYNC_BIN", &answering);
    node.syncbox_ok(&["add", &format!("--token={D_KEY}"), "encrypted"]);
    assert_eq!(
        node.syncbox_ok(&["secret", "--read-only", "encrypted"]),
        format!("{D_KEY_E}\n")
    );
    node.syncbox_ok(&["add", "--read-only", &format!("--token={D_KEY}"), "mirror"]);
    assert_eq!(
        node.syncbox_ok(&["secret", "mirror"]),
        format!("{D_KEY_E}\n")
    );
}

#[test]
fn without_a_working_btsync_d_keys_fail_clearly_and_change_nothing() {
    let bin = TempDir::new("bad-btsync");
    // Each fake repeats the key, as a real binary might in its messages.
    let failing = fake_btsync(&bin, r#"echo "bad key $2" >&2; echo "$2"; exit 1"#);
    let babbling = fake_btsync(&bin, r#"echo "not a key: $2""#);
    let missing = bin.path().join("no-such-btsync");
    let node = Sandbox::labelled("ro-missing");
    node.syncbox_ok(&["add", &format!("--token={D_KEY}"), "encrypted"]);
    let snapshot = node.snapshot_with_lock();
    for (bin_path, problem) in [
        (&missing, "no such file"),
        (&failing, "failed"),
        (&babbling, "did not print an E key"),
    ] {
        let node = node.with_env("BTSYNC_BIN", bin_path);
        for args in [
            &["secret", "--read-only", "encrypted"][..],
            &["add", "--read-only", &format!("--token={D_KEY}"), "mirror"],
        ] {
            let refused = node.syncbox(args);
            let context = format!("{bin_path:?} {args:?}: {refused:?}");
            assert_eq!(refused.code, 1, "{context}");
            assert!(refused.stderr.contains(problem), "{context}");
            assert!(refused.stderr.contains("BTSYNC_BIN"), "{context}");
            assert!(!refused.stderr.contains(&D_KEY[1..]), "{context}");
            assert!(refused.stdout.is_empty(), "{context}");
            assert_eq!(node.snapshot_with_lock(), snapshot, "{context}");
        }
    }
}

#[test]
fn keygen_prints_a_fresh_valid_read_write_key() {
    let node = Sandbox::labelled("keygen");
    let first = node.syncbox_ok(&["keygen"]);
    let second = node.syncbox_ok(&["keygen"]);
    assert_ne!(first, second);
    for printed in [&first, &second] {
        let key = printed.strip_suffix('\n').expect("one line");
        assert_eq!(key.len(), 33, "{key}");
        assert!(key.starts_with('A'), "{key}");
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
            "{key}"
        );
        // syncbox accepts what it generates.
        node.syncbox_ok(&[
            "add",
            &format!("--token={key}"),
            &format!("ns-{}", &key[1..9].to_ascii_lowercase()),
        ]);
    }
    assert_eq!(node.syncbox_ok(&["list"]).split_whitespace().count(), 2);
    let refused = node.syncbox(&["keygen", "extra"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stdout.is_empty());
}

#[test]
fn keygen_output_works_as_a_cluster_key_file() {
    let node = Sandbox::labelled("keygen-cluster");
    let secrets = TempDir::new("keygen-secrets");
    let key_file = secrets.write("cluster.key", node.syncbox_ok(&["keygen"]).as_bytes());
    let clustered = node.with_env("BTSYNC_CLUSTER_KEY_FILE", &key_file);
    clustered.syncbox_ok(&["add", "gitlab"]);
    assert!(
        node.syncbox_ok(&["list", "--json"])
            .contains("\"key_origin\":\"cluster\"")
    );
}
