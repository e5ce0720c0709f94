//! README.md and docs/*.md link to each other by file and by heading: a
//! moved or renamed section must not leave a dead link behind. Every relative
//! link must name a file or directory of the repository, and every `#anchor`
//! a heading of its target, spelt as GitHub spells anchors.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every docs/*.md, sorted.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![repo().join("README.md")];
    let dir = repo().join("docs");
    let mut more: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// The lines of a markdown text that are prose, not inside a fenced block.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push((number + 1, line));
        }
    }
    lines
}

/// A line with its inline code spans blanked out: `[x](y)` inside backticks
/// is code, not a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else {
            out.push(if in_code { ' ' } else { c });
        }
    }
    out
}

/// GitHub's anchor for a heading's text: lower case, markup and punctuation
/// dropped (letters, digits, '-' and '_' stay), each space a '-'.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor a markdown text defines: one per heading, with GitHub's
/// `-1`, `-2` suffixes for repeated headings.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = anchor_of(&line[hashes..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of the inline links `[text](target)` in a markdown text, with
/// their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            found.push((number, after[..end].to_owned()));
            rest = &after[end..];
        }
    }
    found
}

/// What is wrong with each relative link of the document at `path` (whose
/// text is `text`): a missing file, or an anchor its target does not define.
fn broken_links(path: &Path, text: &str) -> Vec<String> {
    let mut broken = Vec::new();
    let base = path.parent().expect("a document lives in a directory");
    for (line, target) in links(text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((file, anchor)) => (file, Some(anchor)),
            None => (target.as_str(), None),
        };
        let where_ = format!("{}:{line}: ({target})", path.display());
        let (target_path, target_text) = if file.is_empty() {
            (path.to_path_buf(), Some(text.to_owned()))
        } else {
            let resolved = base.join(file);
            if !resolved.exists() {
                broken.push(format!("{where_}: no such file {}", resolved.display()));
                continue;
            }
            let text = resolved
                .extension()
                .is_some_and(|e| e == "md")
                .then(|| read(&resolved));
            (resolved, text)
        };
        let Some(anchor) = anchor else { continue };
        match target_text {
            Some(t) if anchors(&t).contains(anchor) => {}
            Some(_) => broken.push(format!(
                "{where_}: {} has no heading with anchor #{anchor}",
                target_path.display()
            )),
            None => broken.push(format!(
                "{where_}: an anchor into {}, which is not markdown",
                target_path.display()
            )),
        }
    }
    broken
}

#[test]
fn every_relative_link_and_anchor_in_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        checked += links(&text).len();
        broken.extend(broken_links(&doc, &text));
    }
    println!("checked {checked} links in README.md and docs/");
    assert!(checked > 20, "the link scan found only {checked} links");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_front_door_that_maps_every_doc() {
    let readme = read(&repo().join("README.md"));
    assert!(
        readme.len() <= 15_000,
        "README.md is {} bytes; the reference belongs in docs/",
        readme.len()
    );
    // The quick start is on the first screen.
    let quick_start = readme
        .lines()
        .position(|l| l == "## Quick start")
        .expect("README has a Quick start");
    assert!(quick_start < 30, "Quick start starts on line {quick_start}");
    for doc in documents().iter().skip(1) {
        let name = doc.file_name().and_then(|n| n.to_str()).expect("utf-8");
        assert!(
            readme.contains(&format!("](docs/{name})")),
            "README's map of the docs does not link docs/{name}"
        );
    }
}

#[test]
fn anchors_are_spelt_as_github_spells_them() {
    assert_eq!(anchor_of("Quick start"), "quick-start");
    assert_eq!(
        anchor_of("The derivation (a stable contract)"),
        "the-derivation-a-stable-contract"
    );
    assert_eq!(anchor_of("status and health"), "status-and-health");
    assert_eq!(
        anchor_of("path [--scope=host|container] NS"),
        "path---scopehostcontainer-ns"
    );
    assert_eq!(
        anchor_of("On-disk layout and safety"),
        "on-disk-layout-and-safety"
    );
    assert_eq!(anchor_of("`docker run`"), "docker-run");
    let text = "# A\n## Same\n```\n# not a heading\n```\n## Same\n";
    let expected: BTreeSet<String> = ["a", "same", "same-1"].map(String::from).into();
    assert_eq!(anchors(text), expected);
}

#[test]
fn the_checker_finds_broken_links() {
    let doc = repo().join("docs").join("example.md");
    let text = "# Title\n\
        [ok](#title) [ok](../README.md#quick-start) [ok](init.md)\n\
        [gone](nowhere.md) [bad anchor](#nothing) [bad](keys.md#no-such-heading)\n\
        `[code](nowhere.md)` and [web](https://example.com/x#y)\n\
        ```\n[fenced](nowhere-either.md)\n```\n";
    let broken = broken_links(&doc, text);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(
        broken[0].contains("(nowhere.md): no such file"),
        "{}",
        broken[0]
    );
    assert!(broken[1].contains("no heading with anchor #nothing"));
    assert!(broken[2].contains("#no-such-heading"));
}
