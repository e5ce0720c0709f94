//! The docs show the files under examples/ exactly, and the files are right:
//! the docker compose example is run for real by the docker suite
//! (real_btsync_readme_compose_example), the systemd units pass
//! `systemd-analyze verify`, the Kubernetes manifests parse and hold what the
//! image needs, every example names only real variables and applets, and no
//! example puts a key where `ps`, `docker inspect` or `docker volume
//! inspect` show it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;
use syncbox::keys::Key;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn repo_file(path: &str) -> String {
    let full = repo().join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The body of the first fenced block of kind `lang` after `heading`.
fn fenced_block_after(doc: &str, heading: &str, lang: &str) -> String {
    let from = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let open = format!("```{lang}\n");
    let start = doc[from..]
        .find(&open)
        .map(|i| from + i + open.len())
        .unwrap_or_else(|| panic!("no ```{lang} block after {heading:?}"));
    let end = doc[start..]
        .find("```\n")
        .map(|i| start + i)
        .expect("the block is closed");
    doc[start..end].to_owned()
}

/// The bodies of every fenced block of a markdown text.
fn fenced_blocks(doc: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(body) => blocks.push(body),
                None => current = Some(String::new()),
            }
        } else if let Some(body) = current.as_mut() {
            body.push_str(line);
        }
    }
    blocks
}

/// README.md and docs/*.md, as (path relative to the repository, text).
fn documents() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_owned()];
    let dir = repo().join("docs");
    let mut docs: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("docs/ entry").file_name())
        .filter_map(|n| n.to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = repo_file(&n);
            (n, text)
        })
        .collect()
}

/// Every file under examples/, as paths relative to the repository.
fn example_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("examples/ entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("examples"), &mut files);
    let mut names: Vec<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(repo())
                .expect("under the repository")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// The applet names the binary itself lists.
fn applets() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_syncbox"))
        .arg("--list")
        .output()
        .expect("run syncbox --list");
    assert!(out.status.success(), "syncbox --list failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn deploy_doc_shows_exactly_the_compose_example_file() {
    let deploy = repo_file("docs/deploy.md");
    let example = repo_file("examples/docker-compose.yml");
    let shown = fenced_block_after(&deploy, "## docker compose", "yaml");
    assert_eq!(
        shown, example,
        "docs/deploy.md's docker compose block differs from examples/docker-compose.yml"
    );
    // The one-shot add must wait for a healthy node, and the service using the
    // namespace for the add to succeed: the order the docker suite checks.
    assert!(example.contains("condition: service_healthy"));
    assert!(example.contains("condition: service_completed_successfully"));
}

#[test]
fn every_example_file_is_shown_exactly_where_the_docs_name_it() {
    let docs = documents();
    let files = example_files();
    assert!(files.len() >= 5, "examples/ holds only {files:?}");
    for file in &files {
        let text = repo_file(file);
        let shown_in: Vec<&str> = docs
            .iter()
            .filter(|(_, doc)| fenced_blocks(doc).contains(&text))
            .map(|(name, _)| name.as_str())
            .collect();
        assert!(
            !shown_in.is_empty(),
            "no block in README.md or docs/ shows {file} exactly"
        );
        assert!(
            docs.iter()
                .any(|(name, doc)| shown_in.contains(&name.as_str()) && doc.contains(file)),
            "{shown_in:?} show {file} but never name it"
        );
    }
}

#[test]
fn examples_name_only_real_variables_and_applets() {
    let applets = applets();
    let init_doc = repo_file("docs/init.md");
    let mut sources = String::new();
    // Modules live in subdirectories too (src/supervisor/, src/cluster/...).
    let mut dirs = vec![repo().join("src"), repo().join("applets")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("source directory") {
            let path = entry.expect("source entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&fs::read_to_string(&path).expect("source file"));
            }
        }
    }
    assert!(
        sources.contains("mod volume_plugin") && sources.contains("fn answer("),
        "not every source file was read"
    );
    let mut checked = 0;
    for file in example_files() {
        let text = repo_file(&file);
        // BTSYNC_* variables: read by the code and in the Environment table.
        for (at, _) in text.match_indices("BTSYNC_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            assert!(
                sources.contains(&format!("\"{name}\"")),
                "{file}: {name} is read nowhere in src/"
            );
            assert!(
                init_doc.contains(&format!("| `{name}` |")),
                "{file}: {name} is not in docs/init.md's Environment table"
            );
            checked += 1;
        }
        // Applets: `ctl NAME` and, inside the image, `/bin/NAME`.
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || "\"[],".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(2) {
            if pair[0] == "ctl" {
                assert!(applets.contains(pair[1]), "{file}: ctl {}", pair[1]);
                checked += 1;
            }
        }
        for word in &words {
            if let Some(name) = word.strip_prefix("/bin/")
                && name != "sh"
            {
                assert!(applets.contains(name), "{file}: /bin/{name} is no applet");
                checked += 1;
            }
        }
    }
    println!("checked {checked} variable and applet names in examples/");
    assert!(checked >= 10, "only {checked} names checked");
}

#[test]
fn the_systemd_units_add_before_start_and_del_after_stop() {
    let node = repo_file("examples/systemd/btsync.service");
    assert!(node.contains("ExecStart=/usr/bin/docker run --rm --name btsync"));
    assert!(node.contains("syncbox:latest"));
    let service = repo_file("examples/systemd/gitlab.service");
    for line in [
        "Requires=btsync.service",
        "After=btsync.service",
        // The key on standard input, from a file only root reads.
        "ExecStartPre=/bin/sh -c 'exec /usr/bin/docker exec -i btsync \\",
        // ...and gitlab starts only once this node holds the data.
        "    ctl add --wait=600 --token-file=- gitlab < /etc/syncbox/gitlab.key'",
        "TimeoutStartSec=infinity",
        "ExecStopPost=/usr/bin/docker exec btsync ctl del gitlab",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "gitlab.service lacks {line:?}"
        );
    }
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let in_ci = std::env::var_os("CI").is_some();
    let have = |tool: &str| Path::new(tool).exists();
    for (tool, why) in [
        (
            "/usr/bin/systemd-analyze",
            "systemd-analyze is not installed",
        ),
        (
            "/usr/bin/docker",
            "the units run /usr/bin/docker, which verify requires to exist",
        ),
    ] {
        if !have(tool) {
            assert!(!in_ci, "CI must check the systemd units: {why}");
            println!("SKIPPED: systemd units not verified: {why}");
            return;
        }
    }
    let units: Vec<PathBuf> = example_files()
        .iter()
        .filter(|f| f.ends_with(".service"))
        .map(|f| repo().join(f))
        .collect();
    assert_eq!(units.len(), 2, "{units:?}");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and only warns: any line is a finding.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
    println!("systemd-analyze verify: {} units, no findings", units.len());
}

fn manifest(file: &str) -> Value {
    let text = repo_file(file);
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"))
}

/// `value[key][key]...`, failing with the path when something is missing.
fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    let mut v = value;
    for (i, key) in path.iter().enumerate() {
        v = match key.parse::<usize>() {
            Ok(n) => v.get(n),
            Err(_) => v.get(*key),
        }
        .unwrap_or_else(|| panic!("no {}", path[..=i].join(".")));
    }
    v
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{} is not a string", path.join(".")))
}

/// The entry of a list of `{name: ...}` maps with that name.
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_sequence()
        .and_then(|items| {
            items
                .iter()
                .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
        })
        .unwrap_or_else(|| panic!("no entry named {name}"))
}

#[test]
fn the_kubernetes_daemonset_runs_the_image_as_a_node() {
    let ds = manifest("examples/kubernetes/btsync-daemonset.yaml");
    assert_eq!(text(&ds, &["apiVersion"]), "apps/v1");
    assert_eq!(text(&ds, &["kind"]), "DaemonSet");
    let pod = at(&ds, &["spec", "template", "spec"]);
    let labels = at(&ds, &["spec", "template", "metadata", "labels"]);
    assert_eq!(at(&ds, &["spec", "selector", "matchLabels"]), labels);
    assert_eq!(at(pod, &["hostNetwork"]).as_bool(), Some(true));
    let containers = at(pod, &["containers"]);
    let node = named(containers, "btsync");
    assert!(text(node, &["image"]).ends_with("/syncbox:latest"));
    // The image's own health applet, exec form: the image has no shell.
    let probe = at(node, &["livenessProbe", "exec", "command"]);
    assert_eq!(probe, &Value::from(vec!["/bin/health"]));
    // /data is the node's hostPath, and BTSYNC_HOST_PATH names that path.
    let mount = named(at(node, &["volumeMounts"]), "data");
    assert_eq!(text(mount, &["mountPath"]), "/data");
    let host = text(named(at(pod, &["volumes"]), "data"), &["hostPath", "path"]);
    let env = at(node, &["env"]);
    assert_eq!(text(named(env, "BTSYNC_HOST_PATH"), &["value"]), host);
    assert_eq!(
        text(
            named(env, "BTSYNC_DEVICE_NAME"),
            &["valueFrom", "fieldRef", "fieldPath"]
        ),
        "spec.nodeName"
    );
    // The image's BTSYNC_LISTEN_PORT default.
    let ports = at(node, &["ports"]).as_sequence().expect("a port list");
    let protocols: BTreeSet<&str> = ports
        .iter()
        .inspect(|p| assert_eq!(at(p, &["containerPort"]).as_u64(), Some(55555)))
        .map(|p| text(p, &["protocol"]))
        .collect();
    assert_eq!(protocols, BTreeSet::from(["TCP", "UDP"]));
}

#[test]
fn the_kubernetes_workload_adds_its_namespace_before_it_starts() {
    let ds = manifest("examples/kubernetes/btsync-daemonset.yaml");
    let node_host_path = text(
        named(at(&ds, &["spec", "template", "spec", "volumes"]), "data"),
        &["hostPath", "path"],
    )
    .to_owned();
    let node_image = text(
        at(&ds, &["spec", "template", "spec", "containers", "0"]),
        &["image"],
    )
    .to_owned();

    let app = manifest("examples/kubernetes/gitlab.yaml");
    assert_eq!(text(&app, &["apiVersion"]), "apps/v1");
    assert_eq!(text(&app, &["kind"]), "Deployment");
    let labels = at(&app, &["spec", "template", "metadata", "labels"]);
    assert_eq!(at(&app, &["spec", "selector", "matchLabels"]), labels);
    let pod = at(&app, &["spec", "template", "spec"]);
    let storage = named(at(pod, &["initContainers"]), "storage");
    assert_eq!(text(storage, &["image"]), node_image);
    assert_eq!(
        at(storage, &["command"]),
        &Value::from(vec![
            "/bin/add",
            "--wait=600",
            "--token-file=/run/secrets/gitlab-sync/key",
            "gitlab"
        ])
    );
    // The key file is the `key` of the Secret the header comment creates,
    // mounted read-only where the command reads it.
    let header = "kubectl create secret generic gitlab-sync --from-file=key=";
    assert!(repo_file("examples/kubernetes/gitlab.yaml").contains(header));
    let secret_mount = named(at(storage, &["volumeMounts"]), "gitlab-sync");
    assert_eq!(
        text(secret_mount, &["mountPath"]),
        "/run/secrets/gitlab-sync"
    );
    assert_eq!(at(secret_mount, &["readOnly"]).as_bool(), Some(true));
    assert_eq!(
        text(
            named(at(pod, &["volumes"]), "gitlab-sync"),
            &["secret", "secretName"]
        ),
        "gitlab-sync"
    );
    // The init container reaches the node's init through the same data root.
    let volumes = at(pod, &["volumes"]);
    let sync = named(at(storage, &["volumeMounts"]), "sync");
    assert_eq!(text(sync, &["mountPath"]), "/data");
    assert_eq!(
        text(named(volumes, "sync"), &["hostPath", "path"]),
        node_host_path
    );
    // The service mounts the namespace's folder: what `ctl path gitlab` prints.
    let gitlab = named(at(pod, &["containers"]), "gitlab");
    let data = named(at(gitlab, &["volumeMounts"]), "gitlab-data");
    assert_eq!(text(data, &["mountPath"]), "/var/opt/gitlab");
    assert_eq!(
        text(named(volumes, "gitlab-data"), &["hostPath", "path"]),
        format!("{node_host_path}/gitlab")
    );
}

#[test]
fn the_compose_example_gives_the_key_as_a_file_based_secret() {
    let compose: Value = serde_norway::from_str(&repo_file("examples/docker-compose.yml"))
        .expect("the compose example is YAML");
    let storage = at(&compose, &["services", "gitlab-storage"]);
    assert_eq!(
        at(storage, &["entrypoint"]),
        &Value::from(vec![
            "/bin/add",
            "--wait=600",
            "--token-file=/run/secrets/gitlab_key",
            "gitlab"
        ])
    );
    // Compose mounts a file-based secret at /run/secrets/NAME, swarm or not,
    // into the services that list it, and only those.
    assert_eq!(at(storage, &["secrets"]), &Value::from(vec!["gitlab_key"]));
    assert_eq!(
        text(&compose, &["secrets", "gitlab_key", "file"]),
        "/etc/syncbox/gitlab.key"
    );
    for service in ["btsync", "gitlab"] {
        let listed = at(&compose, &["services", service]).get("secrets");
        assert!(listed.is_none(), "{service} needs no key");
    }
}

/// Where `text` puts a key for `ps`, `docker inspect` or `docker volume
/// inspect` to show: a key written out, `--token`/`--secret` given a value
/// (a variable's, too), a variable that holds a key (`$GITLAB_KEY`,
/// `BTSYNC_CLUSTER_KEY`, a Kubernetes `secretKeyRef`), a volume option
/// `token=`/`secret=`. Paths to key files (`--token-file`, `*_KEY_FILE`)
/// are fine. One line per finding.
fn key_exposures(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    // Keys written out: any run of letters and digits that parses as one.
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        if Key::parse(word).is_ok() {
            found.push(format!("a key written out ({} characters)", word.len()));
        }
    }
    // --token=..., --token ..., --secret=...: but not --token-file.
    for option in ["--token", "--secret"] {
        for (at, _) in text.match_indices(option) {
            let next = text[at + option.len()..].chars().next();
            if next.is_none_or(|c| c == '=' || c.is_whitespace() || c == '"' || c == '\'') {
                found.push(format!("{option} given a value"));
            }
        }
    }
    // Volume options: `-o token=KEY`, `token: KEY` in driver_opts. A YAML
    // key whose value is a mapping (Kubernetes' `secret: {secretName: ..}`
    // volume) gives no value.
    for option in ["token", "secret"] {
        for (at, _) in text.match_indices(option) {
            let before = text[..at].chars().next_back();
            let rest = &text[at + option.len()..];
            let starts_word = before.is_none_or(|c| !is_word(c) && c != '-');
            let given = match rest.strip_prefix(':') {
                Some(value) => {
                    let value = value.trim_start_matches([' ', '\t']);
                    !(value.is_empty() || value.starts_with(['\n', '{', '#']))
                }
                None => rest.starts_with('='),
            };
            if starts_word && given {
                found.push(format!("volume option {option} given a value"));
            }
        }
    }
    // Variables that hold a key: $NAME, ${NAME...}, $(NAME) with KEY, TOKEN
    // or SECRET in NAME, unless NAME names a file.
    for (at, _) in text.match_indices('$') {
        let name: String = text[at + 1..]
            .trim_start_matches(['{', '('])
            .chars()
            .take_while(|c| is_word(*c))
            .collect();
        let upper = name.to_ascii_uppercase();
        let holds_key = ["KEY", "TOKEN", "SECRET"].iter().any(|w| upper.contains(w));
        if holds_key && !upper.ends_with("_FILE") {
            found.push(format!("${name}: a variable that holds a key"));
        }
    }
    for (at, _) in text.match_indices("BTSYNC_CLUSTER_KEY") {
        if !text[at..].starts_with("BTSYNC_CLUSTER_KEY_FILE") {
            found.push("BTSYNC_CLUSTER_KEY: the cluster key in the environment".into());
        }
    }
    if text.contains("secretKeyRef") {
        found.push("secretKeyRef: a Secret in an environment variable".into());
    }
    found
}

#[test]
fn the_key_exposure_check_finds_what_the_examples_once_did() {
    // Lines the examples held before `add --token-file`, and more.
    let exposed = [
        r#"entrypoint: ["/bin/add", "--token=${GITLAB_KEY}", "gitlab"]"#,
        "ExecStartPre=/usr/bin/docker exec btsync ctl add --token=${GITLAB_KEY} gitlab",
        r#"command: ["/bin/add", "--token=$(GITLAB_KEY)", "gitlab"]"#,
        "valueFrom: {secretKeyRef: {name: gitlab-sync, key: key}}",
        "    driver_opts:\n      token: ${GITLAB_KEY}",
        "    driver_opts:\n      secret: \"$KEY\"",
        "docker volume create -d syncbox -o token=$K gitlab",
        "docker exec btsync ctl add --secret \"$K\" gitlab",
        "docker exec btsync ctl add --token AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA gitlab",
        "ExecStart=/usr/bin/docker run -e KEY=ahraxzogomz7b7vifl5jk7vrh5urqvhma syncbox",
        "      BTSYNC_CLUSTER_KEY: correct horse battery staple",
        "EnvironmentFile=/etc/syncbox/gitlab.env\nExecStart=/bin/add --token=${KEY} ns",
    ];
    for line in exposed {
        assert!(!key_exposures(line).is_empty(), "not caught: {line}");
    }
    let safe = [
        r#"entrypoint: ["/bin/add", "--token-file=/run/secrets/gitlab_key", "gitlab"]"#,
        "      token-file: /run/secrets/syncbox/gitlab.key",
        "ctl add --token-file=- gitlab < /etc/syncbox/gitlab.key",
        "      BTSYNC_CLUSTER_KEY_FILE: /run/secrets/cluster.key",
        "        - {name: gitlab-sync, secret: {secretName: gitlab-sync}}",
        "        - name: gitlab-sync\n          secret:\n            secretName: gitlab-sync",
        "secrets: [gitlab_key]",
        "image: ${SYNCBOX_IMAGE:-syncbox:latest}",
    ];
    for line in safe {
        assert_eq!(key_exposures(line), Vec::<String>::new(), "{line}");
    }
}

#[test]
fn no_example_puts_a_key_on_a_command_line_or_in_the_environment() {
    let files = example_files();
    assert!(files.len() >= 5, "examples/ holds only {files:?}");
    let exposed: Vec<String> = files
        .iter()
        .map(|file| (file, key_exposures(&repo_file(file))))
        .filter(|(_, found)| !found.is_empty())
        .map(|(file, found)| format!("{file}: {}", found.join("; ")))
        .collect();
    assert!(exposed.is_empty(), "{}", exposed.join("\n"));
}
