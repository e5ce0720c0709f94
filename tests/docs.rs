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

// ------------------------------------------------- figures the bench measures
//
// tests/bench/run.sh --write replaces the tables of docs/figures.md that it
// owns (the lines between `<!-- bench:begin NAME -->` and `<!-- bench:end
// NAME -->`). Anywhere else, a figure of those tables is quoted as a link to
// figures.md whose text is in a table verbatim, so a quote cannot outlive the
// figure it repeats. These tests compare docs with the tables; they never
// judge a speed or a size.

/// The blocks the bench owns in `figures.md`: the benchmark's name for each,
/// and its text.
const BENCH_BLOCKS: [&str; 2] = ["speed", "sizes"];

/// (name, text) of every `<!-- bench:begin NAME -->` .. `<!-- bench:end
/// NAME -->` block of a text, in order; a marker without its partner is an
/// error.
fn bench_blocks(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        if let Some(name) = marker(line, "begin") {
            if let Some((other, at, _)) = &open {
                return Err(format!(
                    "line {number}: block {name} begins inside block {other} (line {at})"
                ));
            }
            open = Some((name.to_owned(), number, String::new()));
        } else if let Some(name) = marker(line, "end") {
            match open.take() {
                Some((begun, _, body)) if begun == name => blocks.push((begun, body)),
                Some((begun, at, _)) => {
                    return Err(format!(
                        "line {number}: block {begun} (line {at}) ends as {name}"
                    ));
                }
                None => return Err(format!("line {number}: block {name} ends, never begun")),
            }
        } else if let Some((_, _, body)) = &mut open {
            body.push_str(line);
            body.push('\n');
        }
    }
    match open {
        Some((name, at, _)) => Err(format!("block {name} (line {at}) never ends")),
        None => Ok(blocks),
    }
}

/// NAME of a line `<!-- bench:KIND NAME -->`.
fn marker<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    line.strip_prefix("<!-- bench:")?
        .strip_prefix(kind)?
        .strip_prefix(' ')?
        .strip_suffix(" -->")
        .filter(|name| !name.is_empty() && !name.contains(' '))
}

/// A text with the bench's blocks left out (their markers too).
fn outside_bench_blocks(text: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in text.lines() {
        if marker(line, "begin").is_some() {
            inside = true;
        } else if marker(line, "end").is_some() {
            inside = false;
        } else if !inside {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The inline links `[text](target)` of one line: (byte range of the whole
/// link, text, target).
fn links_of_line(line: &str) -> Vec<(std::ops::Range<usize>, String, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = line[from..].find("](") {
        let middle = from + at;
        let Some(end) = line[middle + 2..].find(')').map(|e| middle + 2 + e) else {
            break;
        };
        if let Some(start) = line[from..middle].rfind('[').map(|s| from + s) {
            found.push((
                start..end + 1,
                line[start + 1..middle].to_owned(),
                line[middle + 2..end].to_owned(),
            ));
        }
        from = end + 1;
    }
    found
}

/// Does a link from the document `doc` point into docs/figures.md?
fn points_at_figures(doc: &Path, target: &str) -> bool {
    let file = target.split('#').next().unwrap_or_default();
    let in_figures = doc.file_name().is_some_and(|n| n == "figures.md");
    if file.is_empty() {
        return in_figures && target.starts_with('#');
    }
    let base = doc.parent().expect("a document lives in a directory");
    base.join(file).canonicalize().ok() == repo().join("docs/figures.md").canonicalize().ok()
}

/// A quote of a figure: a link into figures.md whose text holds a digit.
fn is_figure_quote(doc: &Path, text: &str, target: &str) -> bool {
    text.chars().any(|c| c.is_ascii_digit()) && points_at_figures(doc, target)
}

/// What is wrong with the figures the document at `doc` quotes, against the
/// bench's `tables` (the text of its blocks): a quote not in the tables, or
/// a byte count of six or more digits written outside a quote (a figure
/// copied by hand). Returns the problems and the number of quotes checked.
fn figure_problems(doc: &Path, text: &str, tables: &str) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut quotes = 0;
    let outside = outside_bench_blocks(text);
    for (number, line) in prose_lines(&outside) {
        let plain = without_code_spans(line);
        let quoted: Vec<_> = links_of_line(&plain)
            .into_iter()
            .filter(|(_, text, target)| is_figure_quote(doc, text, target))
            .collect();
        for (_, text, target) in &quoted {
            quotes += 1;
            if !tables.contains(text.as_str()) {
                problems.push(format!(
                    "{}:{number}: [{text}]({target}) is not in the bench's tables of \
                     docs/figures.md (stale? quote the table as it is now)",
                    doc.display()
                ));
            }
        }
        for (at, count) in byte_counts(&plain) {
            if count >= 100_000 && !quoted.iter().any(|(range, _, _)| range.contains(&at)) {
                problems.push(format!(
                    "{}:{number}: {count} bytes, written by hand: quote the figure as a link \
                     to the bench's table in docs/figures.md",
                    doc.display()
                ));
            }
        }
    }
    (problems, quotes)
}

/// Every `N bytes` of a line with N written in digits (commas allowed):
/// (byte offset of N, N).
fn byte_counts(line: &str) -> Vec<(usize, u64)> {
    let mut found = Vec::new();
    let bytes = line.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if !bytes[at].is_ascii_digit() {
            at += 1;
            continue;
        }
        // Digits that go on a word or a decimal ("v2", "3.5") are no count.
        let starts_number =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'.');
        let mut end = at;
        while end < bytes.len()
            && (bytes[end].is_ascii_digit()
                || (bytes[end] == b',' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)))
        {
            end += 1;
        }
        if starts_number && line[end..].starts_with(" bytes") {
            let digits: String = line[at..end].chars().filter(char::is_ascii_digit).collect();
            if let Ok(count) = digits.parse() {
                found.push((at, count));
            }
        }
        at = end;
    }
    found
}

fn figures_md() -> PathBuf {
    repo().join("docs").join("figures.md")
}

#[test]
fn the_bench_writes_its_tables_into_figures_md() {
    let figures = read(&figures_md());
    let blocks = bench_blocks(&figures).unwrap_or_else(|e| panic!("docs/figures.md: {e}"));
    let names: Vec<&str> = blocks.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, BENCH_BLOCKS, "the bench's blocks in docs/figures.md");
    let bench = read(&repo().join("tests/bench/run.sh"));
    for (name, body) in &blocks {
        assert!(
            bench.contains(&format!("write-block \"$figures\" {name}")),
            "tests/bench/run.sh does not write the block {name}"
        );
        assert!(
            body.starts_with("Measured on "),
            "block {name} does not say when it was measured:\n{body}"
        );
        assert!(
            body.contains("\n| figure | syncbox | anchor (same run) | ratio | goal |\n"),
            "block {name} holds no table of the bench's:\n{body}"
        );
    }
}

#[test]
fn every_figure_the_docs_quote_is_in_the_benchs_tables() {
    let figures = read(&figures_md());
    let blocks = bench_blocks(&figures).unwrap_or_else(|e| panic!("docs/figures.md: {e}"));
    let tables: String = blocks.into_iter().map(|(_, body)| body).collect();
    let mut problems = Vec::new();
    let mut quotes = 0;
    for doc in documents() {
        let (found, checked) = figure_problems(&doc, &read(&doc), &tables);
        problems.extend(found);
        quotes += checked;
    }
    println!("checked {quotes} quoted figures in README.md and docs/");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // docs/image.md alone quotes four.
    assert!(quotes >= 4, "only {quotes} quoted figures found");
}

#[test]
fn the_figure_checker_finds_stale_and_hand_copied_figures() {
    let doc = repo().join("docs").join("image.md");
    let tables = "| static binary size | 614 KiB (628,984 bytes) | tini-static |\n";
    let text = "syncbox is [628,984 bytes](figures.md#sizes) now.\n\
        It was [502,008 bytes](figures.md#sizes) once.\n\
        The image adds 502,329 bytes; the README stays under 15,000 bytes.\n\
        `123,456 bytes` in code, and a [link](figures.md) with no figure.\n\
        ```\n999,999 bytes\n```\n\
        <!-- bench:begin sizes -->\n| 777,777 bytes |\n<!-- bench:end sizes -->\n";
    let (problems, quotes) = figure_problems(&doc, text, tables);
    assert_eq!(quotes, 2, "{problems:#?}");
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains(":2: [502,008 bytes]"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].contains(":3: 502329 bytes, written by hand"),
        "{}",
        problems[1]
    );
    // A link elsewhere is not a quote of the table.
    let (problems, quotes) =
        figure_problems(&doc, "[628,984 bytes](keys.md) [1 step](init.md)\n", tables);
    assert_eq!((problems.len(), quotes), (1, 0), "{problems:#?}");
    assert_eq!(
        byte_counts("1,086,112 bytes, 12 bytes, v2,000 bytes, 3.5 bytes"),
        vec![(0, 1_086_112), (17, 12)]
    );
    assert!(bench_blocks("<!-- bench:begin a -->\n").is_err());
    assert!(bench_blocks("<!-- bench:end a -->\n").is_err());
    assert!(bench_blocks("<!-- bench:begin a -->\n<!-- bench:end b -->\n").is_err());
}

/// tests/bench/write-block, as the bench runs it: replaces one block with
/// stdin and keeps every other byte; refuses a file without the block.
#[test]
fn write_block_replaces_only_its_block_and_refuses_a_file_without_it() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("syncbox-write-block-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("figures.md");
    let before = "# Figures\n<!-- bench:begin speed -->\nold speed\n<!-- bench:end speed -->\n\
        between\n<!-- bench:begin sizes -->\nold\nsizes\n<!-- bench:end sizes -->\ntail";
    fs::write(&file, before).expect("write");
    let write = |name: &str, block: &str| {
        let mut child = Command::new(repo().join("tests/bench/write-block"))
            .arg(&file)
            .arg(name)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tests/bench/write-block");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(block.as_bytes())
            .expect("feed the block");
        child.wait_with_output().expect("wait")
    };
    let out = write("sizes", "| new | table |");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        read(&file),
        before.replace("old\nsizes\n", "| new | table |\n")
    );
    for (name, why) in [
        ("nothing", "no such block"),
        ("speed ", "a name with a space"),
    ] {
        let unchanged = read(&file);
        let out = write(name, "x\n");
        assert_eq!(out.status.code(), Some(2), "{why}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{why}: {stderr}");
        assert_eq!(read(&file), unchanged, "{why}: the file changed");
    }
    let entries: Vec<_> = fs::read_dir(&dir).expect("list").collect();
    assert_eq!(entries.len(), 1, "a temporary file was left: {entries:?}");
    let _ = fs::remove_dir_all(&dir);
}
