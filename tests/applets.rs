//! The namespace applets (add, del, path, has, list, secret) run as built,
//! through links, `syncbox APPLET` and `ctl APPLET`.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use common::{A_KEY, ALL_WAYS, B_KEY, Sandbox, TempDir, Via};

/// The seed README's examples, verbatim where they can run as written.
#[test]
fn seed_examples() {
    let sb = Sandbox::new().with_env("BTSYNC_HOST_PATH", "/mnt/resources/sync");

    // The seed's own example token is "not a valid one" (its author says so).
    let run = sb.run(
        "ctl",
        &["add", "--token=e3hryu35qegqery4w5y164u5u", "gitlab"],
    );
    run.code(2).one_line_error();
    assert!(run.stderr.contains("invalid key"), "{run:?}");
    assert!(
        !run.stderr.contains("e3hryu35qegqery4w5y164u5u"),
        "key echoed: {run:?}"
    );
    assert!(sb.snapshot().is_empty(), "a rejected add changed state");

    sb.run("ctl", &["add", "gitlab"]).ok();
    sb.run("ctl", &["add", "star-trek"]).ok();
    assert_eq!(sb.run("ctl", &["list"]).ok().stdout, "gitlab star-trek\n");

    assert_eq!(sb.run("has", &["gitlab"]).ok().stdout, "");
    assert_eq!(
        sb.run("ctl", &["path", "gitlab"]).ok().stdout,
        "/mnt/resources/sync/gitlab\n"
    );

    sb.run("ctl", &["del", "gitlab"]).ok();
    sb.run("has", &["gitlab"]).code(1);
    assert!(!sb.folder("gitlab").exists());
    assert_eq!(sb.run("ctl", &["list"]).ok().stdout, "star-trek\n");
}

#[test]
fn every_way_of_calling_is_the_same() {
    for via in ALL_WAYS {
        let sb = Sandbox::new();
        sb.run_via(via, "has", &["gitlab"]).code(1);
        sb.run_via(via, "add", &["--token", A_KEY, "gitlab"]).ok();
        sb.run_via(via, "has", &["gitlab"]).ok();
        assert!(sb.folder("gitlab").is_dir(), "{via:?}");
        assert_eq!(sb.run_via(via, "list", &[]).ok().stdout, "gitlab\n");
        assert_eq!(
            sb.run_via(via, "secret", &["gitlab"]).ok().stdout,
            format!("{A_KEY}\n")
        );
        let container = sb.run_via(via, "path", &["--scope=container", "gitlab"]);
        assert_eq!(
            container.ok().stdout,
            format!("{}\n", sb.folder("gitlab").display())
        );
        sb.run_via(via, "del", &["gitlab"]).ok();
        sb.run_via(via, "has", &["gitlab"]).code(1);
        assert!(!sb.folder("gitlab").exists(), "{via:?}");
    }
}

#[test]
fn add_generates_a_read_write_key_and_stores_it_privately() {
    let sb = Sandbox::new();
    sb.run("add", &["gitlab"]).ok();
    let key = sb.run("secret", &["gitlab"]).ok().stdout.trim().to_owned();
    assert_eq!(key.len(), 33, "{key}");
    assert!(key.starts_with('A'));
    assert!(
        key[1..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    );

    sb.run("add", &["other"]).ok();
    let other = sb.run("secret", &["other"]).ok().stdout.clone();
    assert_ne!(other.trim(), key, "two generated keys are equal");

    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&sb.data.join(".btsync")), 0o700);
    assert_eq!(mode(&sb.entry("gitlab")), 0o600);
}

#[test]
fn add_accepts_every_key_kind_and_normalises_case() {
    let legacy = "A".repeat(32);
    let e_key = format!("E{}{}", &A_KEY[1..], "A".repeat(26));
    let cases = [
        A_KEY.to_owned(),
        B_KEY.to_owned(),
        format!("C{}", &A_KEY[1..]),
        format!("D{}", &A_KEY[1..]),
        e_key,
        format!("F{}", &A_KEY[1..]),
        "R3ZD4TMT6XDJQBW5V6LBVHZRSYOJSMLHQ".to_owned(),
        legacy,
    ];
    // A node of its own per key: B_KEY is A_KEY's read-only form, and one
    // node syncs one folder per key.
    for (i, key) in cases.iter().enumerate() {
        let sb = Sandbox::new();
        let ns = format!("ns{i}");
        sb.run("add", &["--secret", &key.to_ascii_lowercase(), &ns])
            .ok();
        assert_eq!(sb.run("secret", &[&ns]).ok().stdout, format!("{key}\n"));
    }
}

#[test]
fn add_rejects_invalid_keys_without_changing_anything() {
    let sb = Sandbox::new();
    sb.run("add", &["existing"]).ok();
    let before = sb.snapshot();
    let bad = [
        "",
        "e3hryu35qegqery4w5y164u5u",
        &A_KEY[..32].replace('A', "1"),
        &format!("{A_KEY} "),
        &format!("{}=", &A_KEY[..32]),
        &format!("X{}", &A_KEY[1..]),
        &format!("{A_KEY}AA"),
    ];
    for key in bad {
        for option in ["--token", "--secret"] {
            let run = sb.run("add", &[option, key, "gitlab"]);
            run.code(2).one_line_error();
            if key.len() > 4 {
                assert!(!run.stderr.contains(key.trim()), "key echoed: {run:?}");
            }
        }
    }
    let both = sb.run("add", &["--token", A_KEY, "--secret", A_KEY, "gitlab"]);
    both.code(2).one_line_error();
    assert_eq!(sb.snapshot(), before);
}

/// `add --token-file`: the same key as `--token`, from a file (a link to
/// one, as Kubernetes mounts a Secret) or from standard input with `-`.
#[test]
fn add_reads_the_key_from_a_file_as_token_does() {
    let sb = Sandbox::new();
    let files = TempDir::new("key-files");
    // One node syncs one folder per key: each namespace is deleted before
    // the next one takes the same key.
    let registered_with_the_key = |ns: &str| {
        assert_eq!(sb.run("secret", &[ns]).ok().stdout, format!("{A_KEY}\n"));
        sb.run("del", &[ns]).ok();
    };
    let plain = files.write("plain.key", format!("{A_KEY}\n").as_bytes());
    sb.run(
        "add",
        &[&format!("--token-file={}", plain.display()), "plain"],
    )
    .ok();
    registered_with_the_key("plain");
    let lower = format!("  {}\r\n", A_KEY.to_ascii_lowercase());
    let crlf = files.write("crlf.key", lower.as_bytes());
    let link = files.path().join("link.key");
    symlink(&crlf, &link).expect("link");
    sb.run(
        "add",
        &["--token-file", &link.display().to_string(), "linked"],
    )
    .ok();
    registered_with_the_key("linked");
    let mut piped = sb.command(Via::Ctl, "add", &["--token-file=-", "piped"]);
    piped.stdin(fs::File::open(&plain).expect("open the key file"));
    let piped = common::Run::from(piped.output().expect("run add"));
    piped.ok();
    registered_with_the_key("piped");
    sb.run("add", &["--token", A_KEY, "given"]).ok();
    registered_with_the_key("given");
    // Its read-only form, as with --token.
    sb.run(
        "add",
        &[
            "--read-only",
            &format!("--token-file={}", plain.display()),
            "reader",
        ],
    )
    .ok();
    assert_eq!(
        sb.run("secret", &["reader"]).ok().stdout,
        format!("{B_KEY}\n")
    );
    // Nothing of the key reaches `list --json`, as with --token.
    assert!(
        !sb.run("list", &["--json"])
            .ok()
            .stdout
            .contains(&A_KEY[1..])
    );
}

/// Runs `add ARGS` with a deadline, so that a read that blocks (a FIFO)
/// fails the test instead of hanging it.
fn add_within_deadline(sb: &Sandbox, args: &[&str]) -> common::Run {
    let mut child = sb.command(Via::Link, "add", args).spawn().expect("run add");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("wait for add").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("add {args:?} still runs after 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    common::Run::from(child.wait_with_output().expect("add's output"))
}

#[test]
fn add_refuses_two_keys_and_bad_key_files_without_changing_anything() {
    let sb = Sandbox::new();
    sb.run("add", &["existing"]).ok();
    let before = sb.snapshot();
    let files = TempDir::new("bad-key-files");
    let good = files.write("good.key", format!("{A_KEY}\n").as_bytes());
    let good = good.display().to_string();
    let near_key = format!("{}8\n", &A_KEY[..32]);
    let mut too_big = format!("{A_KEY}\n").into_bytes();
    too_big.resize(4097, b'\n');
    let fifo = files.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let path_of = |name: &str, contents: &[u8]| files.write(name, contents).display().to_string();
    let cases: Vec<(Vec<String>, String, &str)> = vec![
        (
            vec![format!("--token={A_KEY}"), format!("--token-file={good}")],
            A_KEY.into(),
            "give the key once",
        ),
        (
            vec![format!("--token-file={good}"), format!("--secret={A_KEY}")],
            A_KEY.into(),
            "give the key once",
        ),
        (
            vec!["--cluster".into(), format!("--token-file={good}")],
            A_KEY.into(),
            "--cluster takes no key",
        ),
        (
            vec![format!(
                "--token-file={}",
                files.path().join("missing").display()
            )],
            String::new(),
            "no such file",
        ),
        (
            vec![format!("--token-file={}", path_of("empty.key", b""))],
            String::new(),
            "it is empty",
        ),
        (
            vec![format!("--token-file={}", path_of("blank.key", b" \n\n"))],
            String::new(),
            "it is empty",
        ),
        (
            vec![format!(
                "--token-file={}",
                path_of("near.key", near_key.as_bytes())
            )],
            near_key.clone(),
            "invalid key",
        ),
        (
            vec![format!(
                "--token-file={}",
                path_of("seed.key", b"e3hryu35qegqery4w5y164u5u\n")
            )],
            "e3hryu35qegqery4w5y164u5u".into(),
            "invalid key",
        ),
        (
            vec![format!(
                "--token-file={}",
                path_of("two.key", format!("{A_KEY}\n{B_KEY}\n").as_bytes())
            )],
            A_KEY.into(),
            "more than one line",
        ),
        (
            vec![format!("--token-file={}", path_of("big.key", &too_big))],
            A_KEY.into(),
            "too big",
        ),
        (
            vec![format!("--token-file={}", files.path().display())],
            String::new(),
            "not a regular file",
        ),
        (
            vec![format!("--token-file={}", fifo.display())],
            String::new(),
            "not a regular file",
        ),
        (
            vec!["--token-file=/dev/zero".into()],
            String::new(),
            "not a regular file",
        ),
        // The key where its file's path belongs: not echoed as a path either.
        (
            vec![format!("--token-file={A_KEY}")],
            A_KEY.into(),
            "the path given is a key",
        ),
        // Nothing on standard input.
        (
            vec!["--token-file=-".into()],
            String::new(),
            "standard input",
        ),
    ];
    for (options, secret, expected) in &cases {
        let mut args: Vec<&str> = options.iter().map(String::as_str).collect();
        args.push("gitlab");
        let run = add_within_deadline(&sb, &args);
        run.code(2).one_line_error();
        assert!(run.stderr.contains(expected), "{options:?}: {run:?}");
        // Any 8 consecutive characters of the key would leak part of it.
        let leaked = secret
            .as_bytes()
            .windows(8)
            .filter_map(|w| std::str::from_utf8(w).ok())
            .find(|w| run.stderr.contains(w));
        assert_eq!(leaked, None, "{options:?}: {run:?}");
        assert_eq!(sb.snapshot(), before, "{options:?} changed state");
    }
}

#[test]
fn add_is_idempotent_and_refuses_a_different_key() {
    let sb = Sandbox::new();
    sb.run("add", &["--token", A_KEY, "gitlab"]).ok();
    fs::write(sb.folder("gitlab").join("data.txt"), "precious").unwrap();
    let before = sb.snapshot();

    sb.run("add", &["gitlab"]).ok();
    sb.run("add", &["--token", A_KEY, "gitlab"]).ok();
    sb.run("add", &["--token", &A_KEY.to_ascii_lowercase(), "gitlab"])
        .ok();
    assert_eq!(sb.snapshot(), before);

    let run = sb.run("add", &["--token", B_KEY, "gitlab"]);
    run.code(1).one_line_error();
    assert!(run.stderr.contains("different key"), "{run:?}");
    assert!(
        !run.stderr.contains(B_KEY) && !run.stderr.contains(A_KEY),
        "{run:?}"
    );
    assert_eq!(sb.snapshot(), before);
}

/// btsync syncs one folder per key: a second namespace with a key in use
/// (the same key, its read-only form, or the read-write key of a read-only
/// one) would never be loaded by the engine. Refused, exit 1, naming the
/// namespace that has it, nothing changed.
#[test]
fn a_key_in_use_by_another_namespace_is_refused() {
    let sb = Sandbox::new();
    sb.run("add", &["--token", A_KEY, "pg"]).ok();
    let read_only = sb
        .run("secret", &["--read-only", "pg"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert!(read_only.starts_with('B'), "{read_only}");
    let fresh = sb
        .run_via(Via::Multiplexer, "keygen", &[])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let fresh_read_only = {
        sb.run("add", &["--read-only", "--token", &fresh, "viewer"])
            .ok();
        sb.run("secret", &["viewer"]).ok().stdout.trim().to_owned()
    };
    let before = sb.snapshot();
    let lower = A_KEY.to_ascii_lowercase();
    let cases: [(&[&str], &str); 5] = [
        (&["--token", A_KEY, "pgcopy"], "pg"),
        (&["--token", &lower, "pgcopy"], "pg"),
        (&["--read-only", "--token", A_KEY, "pgcopy"], "pg"),
        (&["--token", &read_only, "pgcopy"], "pg"),
        (&["--token", &fresh, "writer"], "viewer"),
    ];
    for (args, owner) in cases {
        let run = sb.run("add", args);
        run.code(1).one_line_error();
        assert!(
            run.stderr
                .contains(&format!("is the key of namespace {owner} on this node")),
            "{args:?}: {run:?}"
        );
        for key in [A_KEY, read_only.as_str(), &fresh, &fresh_read_only] {
            assert!(!run.stderr.contains(key), "a key in the error: {run:?}");
        }
        assert_eq!(sb.snapshot(), before, "{args:?}");
    }
    // The namespace itself may be added again with its own key.
    sb.run("add", &["--token", A_KEY, "pg"]).ok();
    assert_eq!(sb.snapshot(), before);
}

const BAD_NAMES: &[&str] = &[
    "", ".", "..", "../etc", "a/b", "/etc", "Gitlab", "a b", "a\tb", "-rf", ".btsync", "_x",
    "naïve", "a\u{0}b",
];

#[test]
fn invalid_names_are_rejected_by_every_applet_and_touch_nothing() {
    let sb = Sandbox::new().with_env("BTSYNC_HOST_PATH", "/host");
    sb.run("add", &["existing"]).ok();
    let before = sb.snapshot();
    let long = "x".repeat(65);
    let names = BAD_NAMES.iter().copied().chain([long.as_str()]);
    for name in names {
        // NUL cannot be passed in argv: the OS truncates it, which
        // Command refuses; the name parser's unit tests cover it.
        if name.contains('\0') {
            continue;
        }
        for applet in ["add", "del", "has", "path", "secret"] {
            let run = sb.run(applet, &["--", name]);
            run.code(2);
            if applet == "has" {
                assert!(run.stdout.is_empty(), "{run:?}");
            }
            run.one_line_error();
            assert!(run.stderr.contains("a-z 0-9"), "rule not stated: {run:?}");
        }
    }
    assert_eq!(sb.snapshot(), before);
    assert!(!sb.root.join("etc").exists());
}

#[test]
fn help_is_a_namespace_not_a_help_trigger() {
    let sb = Sandbox::new();
    sb.run("has", &["help"]).code(1);
    sb.run("add", &["help"]).ok();
    sb.run("has", &["help"]).ok();
    assert!(sb.folder("help").is_dir());
    assert_eq!(sb.run("list", &[]).ok().stdout, "help\n");
    sb.run("del", &["help"]).ok();
    sb.run("has", &["help"]).code(1);
}

#[test]
fn every_applet_has_help() {
    let sb = Sandbox::new();
    for applet in common::APPLETS {
        for flag in ["--help", "-h"] {
            for via in ALL_WAYS {
                let run = sb.run_via(via, applet, &[flag]);
                run.ok();
                assert!(run.stdout.starts_with("Usage:"), "{applet} {flag}: {run:?}");
            }
        }
    }
    assert!(sb.snapshot().is_empty());
}

#[test]
fn bad_usage_is_one_line_and_exit_2() {
    let sb = Sandbox::new();
    let cases: &[(&str, &[&str])] = &[
        ("add", &[]),
        ("add", &["a", "b"]),
        ("add", &["--bogus", "a"]),
        ("add", &["--token"]),
        ("del", &[]),
        ("has", &[]),
        ("path", &[]),
        ("path", &["--scope=elsewhere", "a"]),
        ("secret", &[]),
        ("list", &["extra"]),
    ];
    for (applet, args) in cases {
        let run = sb.run(applet, args);
        run.code(2).one_line_error();
        assert!(run.stderr.starts_with(&format!("{applet}: ")), "{run:?}");
    }
    assert!(sb.snapshot().is_empty());
}

#[test]
fn del_of_an_absent_namespace_succeeds_with_a_note() {
    let sb = Sandbox::new();
    let run = sb.run("del", &["gitlab"]);
    run.ok();
    assert!(run.stderr.contains("not registered"), "{run:?}");
}

#[test]
fn del_keep_data_unregisters_and_keeps_files() {
    let sb = Sandbox::new();
    sb.run("add", &["gitlab"]).ok();
    fs::write(sb.folder("gitlab").join("repo.git"), "data").unwrap();
    sb.run("del", &["--keep-data", "gitlab"]).ok();
    sb.run("has", &["gitlab"]).code(1);
    assert_eq!(
        fs::read_to_string(sb.folder("gitlab").join("repo.git")).unwrap(),
        "data"
    );

    // Adding it again adopts the kept folder.
    sb.run("add", &["gitlab"]).ok();
    assert!(sb.folder("gitlab").join("repo.git").exists());
}

#[test]
fn del_removes_folder_with_contents_but_nothing_outside_the_data_root() {
    let sb = Sandbox::new();
    sb.run("add", &["gitlab"]).ok();
    let outside = sb.root.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep.txt"), "keep").unwrap();
    fs::create_dir_all(sb.folder("gitlab").join("a/b")).unwrap();
    fs::write(sb.folder("gitlab").join("a/b/file"), "x").unwrap();
    symlink(&outside, sb.folder("gitlab").join("link-out")).unwrap();

    sb.run("del", &["gitlab"]).ok();
    assert!(!sb.folder("gitlab").exists());
    assert_eq!(
        fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "keep"
    );
    let trash = sb.data.join(".btsync/trash");
    assert_eq!(fs::read_dir(&trash).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn del_leaves_a_symlink_folder_target_alone() {
    let sb = Sandbox::new();
    sb.run("add", &["gitlab"]).ok();
    let outside = sb.root.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep.txt"), "keep").unwrap();
    fs::remove_dir_all(sb.folder("gitlab")).unwrap();
    symlink(&outside, sb.folder("gitlab")).unwrap();

    let run = sb.run("del", &["gitlab"]);
    run.ok();
    assert!(run.stderr.contains("not a directory"), "{run:?}");
    sb.run("has", &["gitlab"]).code(1);
    assert_eq!(
        fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "keep"
    );
}

#[test]
fn del_never_sweeps_a_trash_directory_replaced_by_a_symlink() {
    // .btsync/ belongs to the engine's user (BTSYNC_UID), who can put a
    // symbolic link where the trash goes; del runs as root and must not
    // delete what the link points at.
    let sb = Sandbox::new();
    sb.run("add", &["gitlab"]).ok();
    let outside = sb.root.join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("keep.txt"), "keep").unwrap();
    fs::write(outside.join("dir/keep.txt"), "keep").unwrap();
    let trash = sb.data.join(".btsync/trash");
    let _ = fs::remove_dir_all(&trash);
    symlink(&outside, &trash).unwrap();

    sb.run("del", &["not-registered"]).ok();
    let _ = sb.run("del", &["gitlab"]);
    assert_eq!(
        fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "keep"
    );
    assert_eq!(
        fs::read_to_string(outside.join("dir/keep.txt")).unwrap(),
        "keep"
    );
}

#[test]
fn add_refuses_a_file_or_symlink_where_the_folder_goes() {
    let sb = Sandbox::new();
    fs::write(sb.folder("afile"), "x").unwrap();
    symlink("/", sb.folder("alink")).unwrap();
    for ns in ["afile", "alink"] {
        let run = sb.run("add", &[ns]);
        run.code(1).one_line_error();
        sb.run("has", &[ns]).code(1);
    }
}

#[test]
fn path_needs_a_registered_namespace_and_a_known_host_path() {
    let sb = Sandbox::new();
    sb.run("path", &["gitlab"]).code(1).one_line_error();
    sb.run("add", &["gitlab"]).ok();

    let run = sb.run("path", &["gitlab"]);
    run.code(1).one_line_error();
    assert!(run.stderr.contains("-e BTSYNC_HOST_PATH="), "{run:?}");
    assert!(run.stderr.contains("--scope=container"), "{run:?}");

    let container = sb.run("path", &["--scope", "container", "gitlab"]);
    assert_eq!(
        container.ok().stdout,
        format!("{}\n", sb.folder("gitlab").display())
    );

    let sb = sb.with_env("BTSYNC_HOST_PATH", "/mnt/resource");
    assert_eq!(
        sb.run("path", &["--scope=host", "gitlab"]).ok().stdout,
        "/mnt/resource/gitlab\n"
    );
    let relative = sb.with_env("BTSYNC_HOST_PATH", "mnt/resource");
    relative.run("path", &["gitlab"]).code(2).one_line_error();
}

#[test]
fn has_prints_nothing() {
    let sb = Sandbox::new();
    for ns in ["gitlab", "INVALID"] {
        let run = sb.run("has", &[ns]);
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    sb.run("has", &["gitlab"]).code(1);
    // Exit 2 (cannot answer) is the one case with a line on stderr.
    sb.run("has", &["INVALID"]).code(2).one_line_error();
    sb.run("add", &["gitlab"]).ok();
    let run = sb.run("has", &["gitlab"]);
    run.ok();
    assert!(run.stdout.is_empty() && run.stderr.is_empty(), "{run:?}");
}

#[test]
fn list_is_sorted_one_line_and_json_never_shows_keys() {
    let sb = Sandbox::new().with_env("BTSYNC_HOST_PATH", "/host");
    assert_eq!(sb.run("list", &[]).ok().stdout, "");
    assert_eq!(sb.run("list", &["--json"]).ok().stdout, "[]\n");
    for ns in ["zeta", "alpha", "mid.dle"] {
        sb.run("add", &[ns]).ok();
    }
    sb.run("add", &["--token", B_KEY, "reader"]).ok();
    sb.run("add", &["--token", &format!("F{}", &A_KEY[1..]), "vault"])
        .ok();
    assert_eq!(
        sb.run("list", &[]).ok().stdout,
        "alpha mid.dle reader vault zeta\n"
    );

    let out = sb.run("list", &["--json"]).ok().stdout.clone();
    let items: serde_json::Value = serde_json::from_str(&out).expect("list --json is JSON");
    let items = items.as_array().expect("an array");
    assert_eq!(items.len(), 5);
    let reader = items
        .iter()
        .find(|i| i["name"] == "reader")
        .expect("reader listed");
    assert_eq!(reader["access"], "read-only");
    assert_eq!(reader["host_path"], "/host/reader");
    assert_eq!(
        reader["container_path"],
        sb.folder("reader").display().to_string()
    );
    assert_eq!(reader["key_origin"], "given");
    let vault = items
        .iter()
        .find(|i| i["name"] == "vault")
        .expect("vault listed");
    assert_eq!(vault["access"], "encrypted");
    let alpha = items
        .iter()
        .find(|i| i["name"] == "alpha")
        .expect("alpha listed");
    assert_eq!(alpha["access"], "read-write");
    assert_eq!(alpha["key_origin"], "generated");

    for ns in ["zeta", "alpha", "mid.dle"] {
        let key = sb.run("secret", &[ns]).ok().stdout.trim().to_owned();
        assert!(!out.contains(&key), "list --json shows the key of {ns}");
    }
    assert!(!out.contains(&B_KEY[1..]) && !out.contains(&A_KEY[1..]));
}

#[test]
fn secret_of_an_absent_namespace_fails() {
    let sb = Sandbox::new();
    let run = sb.run("secret", &["gitlab"]);
    run.code(1).one_line_error();
}

#[test]
fn environment_errors_are_clear() {
    let sb = Sandbox::new().with_env("BTSYNC_DATA", "relative/path");
    let run = sb.run("add", &["gitlab"]);
    run.code(2).one_line_error();
    assert!(run.stderr.contains("BTSYNC_DATA"), "{run:?}");

    let missing = sb.root.join("no-such-dir");
    let sb = sb.with_env("BTSYNC_DATA", &missing);
    let run = sb.run("add", &["gitlab"]);
    run.code(2).one_line_error();
    assert!(run.stderr.contains("data root"), "{run:?}");
    assert!(!missing.exists(), "a missing data root must not be created");
    // "Cannot answer", never "not registered" or "no namespaces".
    sb.run("has", &["gitlab"]).code(2).one_line_error();
    sb.run("list", &[]).code(2).one_line_error();
}

/// Issue 16, item 1: a data root that is missing (a volume not mounted, a
/// typo) or not a directory must never read as "no namespaces". Every
/// applet that uses it refuses with exit 2 and one line naming the
/// variable and the path.
#[test]
fn every_applet_refuses_a_missing_or_non_directory_data_root() {
    let sb = Sandbox::new();
    let missing = sb.root.join("not-mounted");
    let file = sb.root.join("a-file");
    fs::write(&file, "not a directory").unwrap();
    let calls: &[&[&str]] = &[
        &["add", "gitlab"],
        &["add", "--token", A_KEY, "gitlab"],
        &["del", "gitlab"],
        &["has", "gitlab"],
        &["list"],
        &["list", "--json"],
        &["path", "--scope=container", "gitlab"],
        &["secret", "gitlab"],
        &["status"],
        &["health"],
        &["init"],
    ];
    for root in [&missing, &file] {
        let sb = sb.with_env("BTSYNC_DATA", root);
        for call in calls {
            let run = sb.syncbox(call);
            run.code(2).one_line_error();
            assert!(
                run.stderr.contains("BTSYNC_DATA") && run.stderr.contains(root.to_str().unwrap()),
                "{call:?}: {run:?}"
            );
        }
        assert!(!missing.exists(), "a missing data root must not be created");
        assert_eq!(fs::read_to_string(&file).unwrap(), "not a directory");
    }
}

/// Issue 16, item 2: the key must not depend on the working directory.
#[test]
fn a_relative_cluster_key_file_is_refused() {
    let sb = Sandbox::new();
    fs::write(
        sb.root.join("cluster.key"),
        "correct horse battery staple\n",
    )
    .unwrap();
    let sb = sb.with_env("BTSYNC_CLUSTER_KEY_FILE", "cluster.key");
    for args in [&["add", "gitlab"][..], &["add", "--cluster", "gitlab"]] {
        let out = sb
            .command(Via::Multiplexer, args[0], &args[1..])
            .current_dir(&sb.root)
            .output()
            .unwrap();
        let run = common::Run::from(out);
        run.code(2).one_line_error();
        assert!(
            run.stderr.contains("BTSYNC_CLUSTER_KEY_FILE") && run.stderr.contains("absolute"),
            "{run:?}"
        );
    }
    assert!(sb.snapshot().is_empty(), "a refused add changed state");
}

/// Issue 16, item 3: BTSYNC_BIN is an absolute path, also for the one
/// applet besides init that runs it (`secret --read-only` of a D key).
#[test]
fn a_relative_btsync_bin_is_refused() {
    let sb = Sandbox::new();
    sb.run("add", &["--token", &format!("D{}", &A_KEY[1..]), "vault"])
        .ok();
    for bin in ["btsync", "bin/btsync", "sleep"] {
        let sb = sb.with_env("BTSYNC_BIN", bin);
        let run = sb.run("secret", &["--read-only", "vault"]);
        run.code(2).one_line_error();
        assert!(
            run.stderr.contains("BTSYNC_BIN") && run.stderr.contains("absolute"),
            "{bin}: {run:?}"
        );
    }
}

/// Issue 16, item 4: one damaged entry does not blind `list --json`; it is
/// listed, marked, with only the fields its name gives, and `list` and
/// `list --json` agree (both exit 0).
#[test]
fn list_json_lists_a_damaged_entry_marked() {
    let sb = Sandbox::new().with_env("BTSYNC_HOST_PATH", "/host");
    for ns in ["alpha", "broken", "zeta"] {
        sb.run("add", &[ns]).ok();
    }
    fs::write(sb.entry("broken"), "{\"name\": \"broken\", \"secr").unwrap();
    let plain = sb.run("list", &[]);
    assert_eq!(plain.ok().stdout, "alpha broken zeta\n");
    let run = sb.run("list", &["--json"]);
    run.ok();
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(
        run.stderr.contains("broken") && run.stderr.contains("damaged"),
        "{run:?}"
    );
    let items: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let items = items.as_array().expect("an array");
    let names: Vec<&str> = items.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["alpha", "broken", "zeta"]);
    let broken = items[1].as_object().expect("an object");
    assert_eq!(broken["damaged"], "not valid JSON");
    for unknown in ["access", "key_origin", "declared"] {
        assert!(!broken.contains_key(unknown), "{unknown}: {broken:?}");
    }
    assert_eq!(broken["host_path"], "/host/broken");
    assert!(items[0].get("damaged").is_none(), "{:?}", items[0]);
}

/// Issue 16, item 9: the files of an unfinished `del` are never adopted
/// under another key (they would be pushed to another key's peers).
#[test]
fn add_with_another_key_over_an_unfinished_del_is_refused() {
    let sb = Sandbox::new();
    sb.run("add", &["--token", A_KEY, "gitlab"]).ok();
    fs::write(sb.folder("gitlab").join("f"), "old files").unwrap();
    // A `del` interrupted after unregistering, before deleting the files.
    let state = sb.data.join(".btsync");
    fs::rename(sb.entry("gitlab"), state.join("deleting/gitlab")).unwrap();
    let before = sb.snapshot();
    let other = format!("D{}", &A_KEY[1..]);
    let run = sb.run("add", &["--token", &other, "gitlab"]);
    run.code(1).one_line_error();
    assert!(
        run.stderr.contains("del gitlab") && run.stderr.contains("finish"),
        "{run:?}"
    );
    assert!(!run.stderr.contains(&A_KEY[1..]), "key echoed: {run:?}");
    assert_eq!(sb.snapshot(), before, "a refused add changed state");
    // The same key still undoes the deletion.
    sb.run("add", &["--token", A_KEY, "gitlab"]).ok();
    assert_eq!(
        fs::read_to_string(sb.folder("gitlab").join("f")).unwrap(),
        "old files"
    );
    assert_eq!(
        sb.run("secret", &["gitlab"]).ok().stdout,
        format!("{A_KEY}\n")
    );
}

/// Issue 16, item 10: a directory where a registry entry belongs is a
/// damaged entry: `add` and `del` refuse it, change nothing and say how to
/// repair it; `list --json` marks it.
#[test]
fn a_directory_in_the_registry_is_damaged_and_left_alone() {
    let sb = Sandbox::new();
    sb.run("add", &["gitlab"]).ok();
    fs::create_dir(sb.entry("web")).unwrap();
    fs::write(sb.entry("web").join("inside"), "x").unwrap();
    let before = sb.snapshot();
    for (applet, args) in [
        ("add", &["web"][..]),
        ("add", &["--token", A_KEY, "web"]),
        ("del", &["web"]),
        ("del", &["--keep-data", "web"]),
        ("secret", &["web"]),
    ] {
        let run = sb.run(applet, args);
        run.code(1).one_line_error();
        assert!(
            run.stderr.contains("namespaces/web")
                && run.stderr.contains("not a regular file")
                && run.stderr.contains("nothing changed"),
            "{applet} {args:?}: {run:?}"
        );
        assert_eq!(sb.snapshot(), before, "{applet} {args:?} changed state");
    }
    let run = sb.run("list", &["--json"]);
    run.ok();
    let items: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(items[1]["name"], "web");
    assert_eq!(items[1]["damaged"], "not a regular file");
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn a_damaged_registry_file_is_reported_not_trusted() {
    let sb = Sandbox::new();
    sb.run("add", &["good"]).ok();
    sb.run("add", &["broken"]).ok();
    fs::write(sb.entry("broken"), "{\"name\": \"broken\", \"secr").unwrap();

    let run = sb.run("secret", &["broken"]);
    run.code(1).one_line_error();
    assert!(run.stderr.contains("damaged"), "{run:?}");
    sb.run("add", &["broken"]).code(1).one_line_error();
    // Listed and marked (see list_json_lists_a_damaged_entry_marked).
    sb.run("list", &["--json"]).ok();
    // The names alone still list and `has` still answers.
    assert_eq!(sb.run("list", &[]).ok().stdout, "broken good\n");
    sb.run("has", &["broken"]).ok();
    assert_eq!(sb.run("secret", &["good"]).code, 0);
}

/// Crash leftovers are states the next command repairs.
#[test]
fn crash_leftovers_are_repaired_by_the_next_command() {
    let sb = Sandbox::new();
    sb.run("add", &["seed"]).ok();
    let state = sb.data.join(".btsync");

    // add crashed after creating the folder, before writing the entry.
    fs::create_dir(sb.folder("orphan")).unwrap();
    fs::write(sb.folder("orphan").join("f"), "kept").unwrap();
    // add crashed while writing the entry: a temporary file.
    fs::write(state.join("namespaces/.tmp.half.1234"), "{\"na").unwrap();
    sb.run("has", &["orphan"]).code(1);
    assert_eq!(sb.run("list", &[]).ok().stdout, "seed\n");
    sb.run("add", &["orphan"]).ok();
    assert_eq!(
        fs::read_to_string(sb.folder("orphan").join("f")).unwrap(),
        "kept"
    );
    assert!(
        !state.join("namespaces/.tmp.half.1234").exists(),
        "temp file not swept"
    );

    // del crashed after unregistering, before deleting the files.
    sb.run("add", &["gone"]).ok();
    fs::rename(sb.entry("gone"), state.join("deleting/gone")).unwrap();
    sb.run("has", &["gone"]).code(1);
    sb.run("del", &["gone"]).ok();
    assert!(!sb.folder("gone").exists());
    assert!(!state.join("deleting/gone").exists());

    // The same crash, then the user adds it back: the deletion is cancelled.
    sb.run("add", &["back"]).ok();
    fs::write(sb.folder("back").join("f"), "kept").unwrap();
    fs::rename(sb.entry("back"), state.join("deleting/back")).unwrap();
    sb.run("add", &["back"]).ok();
    assert!(!state.join("deleting/back").exists());
    sb.run("del", &["--keep-data", "back"]).ok();
    assert_eq!(
        fs::read_to_string(sb.folder("back").join("f")).unwrap(),
        "kept"
    );

    // del crashed after moving the folder to the trash.
    fs::create_dir_all(state.join("trash/stale.999/sub")).unwrap();
    sb.run("add", &["tmp"]).ok();
    sb.run("del", &["tmp"]).ok();
    assert_eq!(fs::read_dir(state.join("trash")).unwrap().count(), 0);
}

#[test]
fn concurrent_adds_of_distinct_names_all_land() {
    let sb = Sandbox::new();
    let names: Vec<String> = (0..50).map(|i| format!("svc-{i:02}")).collect();
    let children: Vec<_> = names
        .iter()
        .map(|ns| {
            sb.command(Via::Ctl, "add", &[ns])
                .spawn()
                .expect("spawn add")
        })
        .collect();
    for child in children {
        let status = child.wait_with_output().expect("wait add").status;
        assert!(status.success(), "{status:?}");
    }
    let listed = sb.run("list", &[]).ok().stdout.clone();
    assert_eq!(listed.trim(), names.join(" "));
    for ns in &names {
        assert!(sb.folder(ns).is_dir());
        sb.run("secret", &[ns]).ok();
    }
    assert_no_temp_files(&sb);
}

#[test]
fn concurrent_adds_of_one_name_leave_one_entry() {
    let sb = Sandbox::new();
    let children: Vec<_> = (0..50)
        .map(|_| {
            sb.command(Via::Link, "add", &["--token", A_KEY, "gitlab"])
                .spawn()
                .expect("spawn add")
        })
        .collect();
    for child in children {
        assert!(child.wait_with_output().expect("wait").status.success());
    }
    assert_eq!(sb.run("list", &[]).ok().stdout, "gitlab\n");
    assert_eq!(
        sb.run("secret", &["gitlab"]).ok().stdout,
        format!("{A_KEY}\n")
    );
    let entries = fs::read_dir(sb.data.join(".btsync/namespaces"))
        .unwrap()
        .count();
    assert_eq!(entries, 1);
}

#[test]
fn concurrent_add_and_del_of_one_name_stay_consistent() {
    let sb = Sandbox::new();
    for round in 0..5 {
        let children: Vec<_> = (0..20)
            .map(|i| {
                let applet = if i % 2 == 0 { "add" } else { "del" };
                let args: &[&str] = if applet == "add" {
                    &["--token", A_KEY, "gitlab"]
                } else {
                    &["gitlab"]
                };
                sb.command(Via::Link, applet, args).spawn().expect("spawn")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("wait");
            assert!(out.status.success(), "round {round}: {out:?}");
        }
        if sb.run("has", &["gitlab"]).code == 0 {
            assert!(
                sb.folder("gitlab").is_dir(),
                "round {round}: entry without folder"
            );
            assert_eq!(
                sb.run("secret", &["gitlab"]).ok().stdout,
                format!("{A_KEY}\n")
            );
            assert!(!sb.data.join(".btsync/deleting/gitlab").exists());
        }
        assert_no_temp_files(&sb);
    }
}

fn assert_no_temp_files(sb: &Sandbox) {
    for dir in ["namespaces", "deleting"] {
        let path = sb.data.join(".btsync").join(dir);
        if let Ok(listing) = fs::read_dir(&path) {
            for item in listing.flatten() {
                let name = item.file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with(".tmp."), "temp file left: {name}");
            }
        }
    }
}

/// Issue 21: `add --owner/--umask` give the namespace's folder and its data
/// folder their owner and mode, `path --data` prints the data folder, and
/// bad input changes nothing.
#[test]
fn add_gives_the_folders_an_owner_and_a_mode() {
    use std::os::unix::fs::MetadataExt;
    if !common::running_as_root() {
        eprintln!(
            "add_gives_the_folders_an_owner_and_a_mode: SKIPPED: needs root (CI runs as root)"
        );
        return;
    }
    let sb = Sandbox::new();
    let owned = |p: &std::path::Path| {
        let m = fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    // Without an owner: the engine's (root), and nobody else may look in.
    sb.run("add", &["plain"]).ok();
    assert_eq!(owned(&sb.folder("plain")), (0, 0, 0o700));
    // The data folder is made by path --data, not by add: a joining node
    // must hold nothing until its first exchange (docs/services.md).
    assert!(!sb.folder("plain").join("data").exists());
    sb.run("path", &["--scope=container", "--data", "plain"])
        .ok();
    assert_eq!(owned(&sb.folder("plain").join("data")), (0, 0, 0o700));

    sb.run("add", &["--owner=4242:4343", "--umask=027", "pg"])
        .ok();
    assert_eq!(owned(&sb.folder("pg")), (4242, 4343, 0o750));
    assert!(!sb.folder("pg").join("data").exists());
    let entry: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(sb.entry("pg")).unwrap()).unwrap();
    assert_eq!(entry["owner"], "4242:4343");
    assert_eq!(entry["umask"], "027");
    let printed = sb
        .run("path", &["--scope=container", "--data", "pg"])
        .ok()
        .stdout
        .clone();
    assert_eq!(
        printed.trim(),
        sb.folder("pg").join("data").to_str().unwrap()
    );
    assert_eq!(owned(&sb.folder("pg").join("data")), (4242, 4343, 0o750));

    // Added again with another owner: the folders change, the umask stays,
    // a file already there keeps its owner.
    fs::write(sb.folder("pg").join("data/mine"), "x").unwrap();
    sb.run("add", &["--owner=5000", "pg"]).ok();
    assert_eq!(owned(&sb.folder("pg")), (5000, 5000, 0o750));
    assert_eq!(owned(&sb.folder("pg").join("data")), (5000, 5000, 0o750));
    assert_eq!(owned(&sb.folder("pg").join("data/mine")).0, 0);
    let entry: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(sb.entry("pg")).unwrap()).unwrap();
    assert_eq!(
        (entry["owner"].as_str(), entry["umask"].as_str()),
        (Some("5000:5000"), Some("027"))
    );

    // Bad input: a clear line, exit 2, nothing registered or changed.
    let before = sb.snapshot();
    for args in [
        &["--owner=no-such-user-here", "new1"][..],
        &["--owner=", "new1"],
        &["--owner=70:no-such-group-here", "new1"],
        &["--umask=0777", "new1"],
        &["--umask=8", "new1"],
        &["--umask=177", "pg"],
        &["--owner=no-such-user-here", "pg"],
    ] {
        let run = sb.run("add", args);
        run.code(2).one_line_error();
        assert!(
            run.stderr.contains("--owner") || run.stderr.contains("--umask"),
            "{run:?}"
        );
    }
    assert_eq!(sb.snapshot(), before, "a refused add changed something");
    assert!(!sb.folder("new1").exists());
    assert_eq!(owned(&sb.folder("pg")), (5000, 5000, 0o750));

    // A data folder that is not a folder: path --data says so.
    fs::remove_dir(sb.folder("plain").join("data")).unwrap();
    fs::write(sb.folder("plain").join("data"), "the namespace's own file").unwrap();
    let run = sb.run("path", &["--scope=container", "--data", "plain"]);
    run.code(1).one_line_error();
    assert!(run.stderr.contains("is not a directory"), "{run:?}");
    sb.run("add", &["plain"]).ok();
    sb.run("path", &["--scope=container", "--data", "plain"])
        .code(1);
    assert_eq!(
        fs::read_to_string(sb.folder("plain").join("data")).unwrap(),
        "the namespace's own file"
    );
}

/// An engine that runs as a user cannot serve files only another user may
/// touch: such an owner is refused, the engine's own is fine.
#[test]
fn an_owner_the_engine_user_cannot_serve_is_refused() {
    let sb = Sandbox::new().with_env("BTSYNC_UID", "1000");
    let before = sb.snapshot();
    let run = sb.run("add", &["--owner=70", "pg"]);
    run.code(2).one_line_error();
    assert!(run.stderr.contains("cannot be served"), "{run:?}");
    assert_eq!(sb.snapshot(), before);
    if common::running_as_root() {
        sb.run("add", &["--owner=1000", "pg"]).ok();
    }
}
