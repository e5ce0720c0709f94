//! Cluster keys, end to end: the built binary on separate data directories
//! (one per simulated node). Vectors come from an independent Python
//! implementation (docs/keys.md, "Cluster key").

mod common;

use common::{Sandbox, TempDir};

const STAPLE: &str = "correct horse battery staple";
const STAPLE_GITLAB: &str = "A3YU7QPZZJIDMMZDEH3YWCZEY75J3OZHB";
const STAPLE_STAR_TREK: &str = "A5ZDMD7TF2DBYNR4FEKUBNFWOBFFEL55A";
const STAPLE_GITLAB_READ_ONLY: &str = "BZH73GNW4OKONMZFB24CISS6M5BERFYWO";
const PUBLISHED_A: &str = "AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA";

#[test]
fn nodes_sharing_a_cluster_key_file_agree_on_every_namespace_key() {
    let secrets = TempDir::new("cluster-secrets");
    let key_file = secrets.write("cluster.key", format!("{STAPLE}\n").as_bytes());
    let nodes = [Sandbox::labelled("one"), Sandbox::labelled("two")];
    for node in &nodes {
        let node = node.with_env("BTSYNC_CLUSTER_KEY_FILE", &key_file);
        node.syncbox_ok(&["add", "gitlab"]);
        node.syncbox_ok(&["add", "star-trek"]);
    }
    for node in &nodes {
        assert_eq!(
            node.syncbox_ok(&["secret", "gitlab"]),
            format!("{STAPLE_GITLAB}\n")
        );
        assert_eq!(
            node.syncbox_ok(&["secret", "star-trek"]),
            format!("{STAPLE_STAR_TREK}\n")
        );
    }
}

#[test]
fn the_variable_and_the_file_give_the_same_keys() {
    let secrets = TempDir::new("cluster-secrets");
    let key_file = secrets.write("cluster.key", format!("{STAPLE}\n").as_bytes());
    let from_file = Sandbox::labelled("file");
    let from_var = Sandbox::labelled("var");
    from_file
        .with_env("BTSYNC_CLUSTER_KEY_FILE", &key_file)
        .syncbox_ok(&["add", "gitlab"]);
    from_var
        .with_env("BTSYNC_CLUSTER_KEY", STAPLE)
        .syncbox_ok(&["add", "gitlab"]);
    assert_eq!(
        from_file.syncbox_ok(&["secret", "gitlab"]),
        from_var.syncbox_ok(&["secret", "gitlab"])
    );
}

#[test]
fn a_different_cluster_key_gives_different_keys() {
    let first = Sandbox::labelled("first");
    let second = Sandbox::labelled("second");
    first
        .with_env("BTSYNC_CLUSTER_KEY", STAPLE)
        .syncbox_ok(&["add", "gitlab"]);
    second
        .with_env("BTSYNC_CLUSTER_KEY", "correct horse battery stapler")
        .syncbox_ok(&["add", "gitlab"]);
    let first_key = first.syncbox_ok(&["secret", "gitlab"]);
    let second_key = second.syncbox_ok(&["secret", "gitlab"]);
    assert_eq!(first_key, format!("{STAPLE_GITLAB}\n"));
    assert_ne!(first_key, second_key);
    assert!(
        second_key.starts_with('A') && second_key.len() == 34,
        "{second_key}"
    );
}

#[test]
fn the_file_wins_over_the_variable() {
    let secrets = TempDir::new("cluster-secrets");
    let key_file = secrets.write("cluster.key", STAPLE.as_bytes());
    let node = Sandbox::labelled("both");
    node.with_env("BTSYNC_CLUSTER_KEY_FILE", &key_file)
        .with_env("BTSYNC_CLUSTER_KEY", "some other cluster key entirely")
        .syncbox_ok(&["add", "gitlab"]);
    assert_eq!(
        node.syncbox_ok(&["secret", "gitlab"]),
        format!("{STAPLE_GITLAB}\n")
    );
}

#[test]
fn list_json_says_where_each_key_came_from() {
    let node = Sandbox::labelled("origins");
    node.syncbox_ok(&["add", "random"]);
    node.syncbox_ok(&["add", &format!("--token={PUBLISHED_A}"), "given"]);
    let clustered = node.with_env("BTSYNC_CLUSTER_KEY", STAPLE);
    clustered.syncbox_ok(&["add", "gitlab"]);
    clustered.syncbox_ok(&["add", "--read-only", "mirror"]);
    let listing: serde_json::Value =
        serde_json::from_str(&node.syncbox_ok(&["list", "--json"])).expect("list --json is JSON");
    let origin_and_access = |name: &str| {
        let item = listing
            .as_array()
            .and_then(|items| items.iter().find(|item| item["name"] == name))
            .unwrap_or_else(|| panic!("{name} missing from {listing}"));
        (
            item["key_origin"].as_str().unwrap_or_default().to_owned(),
            item["access"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(
        origin_and_access("random"),
        ("generated".into(), "read-write".into())
    );
    assert_eq!(
        origin_and_access("given"),
        ("given".into(), "read-write".into())
    );
    assert_eq!(
        origin_and_access("gitlab"),
        ("cluster".into(), "read-write".into())
    );
    assert_eq!(
        origin_and_access("mirror"),
        ("cluster".into(), "read-only".into())
    );
    assert!(!listing.to_string().contains(&STAPLE_GITLAB[1..]));
}

#[test]
fn an_explicit_token_wins_over_the_cluster_key() {
    let node = Sandbox::labelled("explicit");
    let clustered = node.with_env("BTSYNC_CLUSTER_KEY", STAPLE);
    clustered.syncbox_ok(&["add", &format!("--token={PUBLISHED_A}"), "gitlab"]);
    assert_eq!(
        node.syncbox_ok(&["secret", "gitlab"]),
        format!("{PUBLISHED_A}\n")
    );
    // A later add without a token derives the cluster's key, which differs:
    // that is reported as a cluster conflict and the explicit key stays.
    let refused = clustered.syncbox(&["add", "gitlab"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("cluster key"), "{refused:?}");
    assert_eq!(
        node.syncbox_ok(&["secret", "gitlab"]),
        format!("{PUBLISHED_A}\n")
    );
}

#[test]
fn adding_again_with_the_same_cluster_key_changes_nothing() {
    let node = Sandbox::labelled("again");
    let clustered = node.with_env("BTSYNC_CLUSTER_KEY", STAPLE);
    clustered.syncbox_ok(&["add", "gitlab"]);
    let entry = node.data.join(".btsync/namespaces/gitlab");
    let before = std::fs::read(&entry).expect("entry written");
    clustered.syncbox_ok(&["add", "gitlab"]);
    clustered.syncbox_ok(&["add", &format!("--token={STAPLE_GITLAB}"), "gitlab"]);
    assert_eq!(std::fs::read(&entry).expect("entry kept"), before);
}

#[test]
fn a_namespace_with_a_generated_key_is_not_silently_switched() {
    let node = Sandbox::labelled("switch");
    node.syncbox_ok(&["add", "gitlab"]);
    let generated = node.syncbox_ok(&["secret", "gitlab"]);
    let refused = node
        .with_env("BTSYNC_CLUSTER_KEY", STAPLE)
        .syncbox(&["add", "gitlab"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("nothing changed"), "{refused:?}");
    assert_eq!(node.syncbox_ok(&["secret", "gitlab"]), generated);
}

#[test]
fn read_only_nodes_get_the_b_key_of_the_cluster_key() {
    let reader = Sandbox::labelled("reader");
    reader
        .with_env("BTSYNC_CLUSTER_KEY", STAPLE)
        .syncbox_ok(&["add", "--read-only", "gitlab"]);
    assert_eq!(
        reader.syncbox_ok(&["secret", "gitlab"]),
        format!("{STAPLE_GITLAB_READ_ONLY}\n")
    );
    // The same B key a read-write node of the cluster hands out.
    let writer = Sandbox::labelled("writer");
    writer
        .with_env("BTSYNC_CLUSTER_KEY", STAPLE)
        .syncbox_ok(&["add", "gitlab"]);
    assert_eq!(
        writer.syncbox_ok(&["secret", "--read-only", "gitlab"]),
        format!("{STAPLE_GITLAB_READ_ONLY}\n")
    );
}

/// Bad cluster keys: exit 2, a message naming the variable, never the key,
/// and nothing on disk changes.
#[test]
fn bad_cluster_keys_are_refused_and_change_nothing() {
    let secrets = TempDir::new("cluster-secrets");
    let short_file = secrets.write("short.key", b"fifteen-chars!!\n");
    let empty_file = secrets.write("empty.key", b"");
    let missing_file = secrets.path().join("missing.key");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "BTSYNC_CLUSTER_KEY",
            "fifteen-chars!!".into(),
            "at least 16",
        ),
        ("BTSYNC_CLUSTER_KEY", String::new(), "at least 16"),
        (
            "BTSYNC_CLUSTER_KEY_FILE",
            path_text(&short_file),
            "at least 16",
        ),
        (
            "BTSYNC_CLUSTER_KEY_FILE",
            path_text(&empty_file),
            "at least 16",
        ),
        (
            "BTSYNC_CLUSTER_KEY_FILE",
            path_text(&missing_file),
            "cannot read",
        ),
        (
            "BTSYNC_CLUSTER_KEY_FILE",
            path_text(secrets.path()),
            "cannot read",
        ),
        ("BTSYNC_CLUSTER_KEY_FILE", String::new(), "is empty"),
        ("BTSYNC_CLUSTER_KEY_FILE", "/dev/zero".into(), "too large"),
    ];
    let node = Sandbox::labelled("bad");
    node.syncbox_ok(&["add", &format!("--token={PUBLISHED_A}"), "existing"]);
    let snapshot = node.snapshot_with_lock();
    for (var, value, problem) in cases {
        let bad = node.with_env(var, &value);
        for args in [
            &["add", "fresh"][..],
            &["add", "--read-only", "fresh"],
            &["add", "existing"],
        ] {
            let refused = bad.syncbox(args);
            let context = format!("{var}={value:?} {args:?}: {refused:?}");
            assert_eq!(refused.code, 2, "{context}");
            assert!(refused.stderr.contains(var), "{context}");
            assert!(refused.stderr.contains(problem), "{context}");
            assert_eq!(refused.stderr.lines().count(), 1, "{context}");
            assert!(!refused.stderr.contains("fifteen"), "{context}");
            assert!(refused.stdout.is_empty(), "{context}");
            assert_eq!(node.snapshot_with_lock(), snapshot, "{context}");
        }
    }
}

#[test]
fn read_only_without_any_key_to_derive_from_is_refused() {
    let node = Sandbox::labelled("nokey");
    let refused = node.syncbox(&["add", "--read-only", "gitlab"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("--token"), "{refused:?}");
    assert!(!node.data.join("gitlab").exists());
    assert_eq!(node.syncbox_ok(&["list"]), "");
}

fn path_text(path: &std::path::Path) -> String {
    path.to_str().expect("temp paths are UTF-8").to_owned()
}
