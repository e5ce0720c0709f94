//! The README shows the example files under examples/ exactly: the docker
//! compose example is run for real by the docker suite
//! (real_btsync_readme_compose_example), so the README must not drift from it.

use std::fs;
use std::path::Path;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The body of the first fenced block of kind `lang` after `heading`.
fn fenced_block_after(readme: &str, heading: &str, lang: &str) -> String {
    let from = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no heading {heading:?}"));
    let open = format!("```{lang}\n");
    let start = readme[from..]
        .find(&open)
        .map(|i| from + i + open.len())
        .unwrap_or_else(|| panic!("no ```{lang} block after {heading:?}"));
    let end = readme[start..]
        .find("```\n")
        .map(|i| start + i)
        .expect("the block is closed");
    readme[start..end].to_owned()
}

#[test]
fn readme_shows_exactly_the_compose_example_file() {
    let readme = repo_file("README.md");
    let example = repo_file("examples/docker-compose.yml");
    let shown = fenced_block_after(&readme, "### docker compose", "yaml");
    assert_eq!(
        shown, example,
        "README's docker compose block differs from examples/docker-compose.yml"
    );
    // The one-shot add must wait for a healthy node, and the service using the
    // namespace for the add to succeed: the order the docker suite checks.
    assert!(example.contains("condition: service_healthy"));
    assert!(example.contains("condition: service_completed_successfully"));
}
