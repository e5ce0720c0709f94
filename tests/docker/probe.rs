//! A throw-away program the docker tests install as /bin/btsync when they test
//! the image itself rather than the engine: built by the tests with rustc as a
//! dynamically linked, a static or a `-C prefer-dynamic` binary, so the
//! library collection of rootfs/build-image meets every case.
//!
//! `probe` prints `probe ok` and its arguments; `probe --sleep SECONDS` stays
//! up so a container has something to run while the tests `docker exec` it;
//! `probe --write FILE TEXT` writes TEXT into FILE (a container writing
//! through a volume); `probe --list DIR` prints `SIZE FNV PATH` for every
//! file under DIR (what a container sees through a volume; FNV-1a 64 of the
//! content in hex, as the image has no tools and the probe no crates), the
//! engine's `.sync/` and its `*.!sync` partial files left out.

use std::path::Path;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, seconds] = args.as_slice()
        && flag == "--sleep"
    {
        let seconds = seconds.parse().unwrap_or(60);
        std::thread::sleep(Duration::from_secs(seconds));
        return;
    }
    if let [flag, file, text] = args.as_slice()
        && flag == "--write"
    {
        if let Err(e) = std::fs::write(file, text) {
            eprintln!("probe: cannot write {file}: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let [flag, dir] = args.as_slice()
        && flag == "--list"
    {
        let root = Path::new(dir);
        if let Err(e) = list(root, root) {
            eprintln!("probe: cannot list {dir}: {e}");
            std::process::exit(1);
        }
        return;
    }
    println!("probe ok {}", args.join(" "));
}

fn list(root: &Path, dir: &Path) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if rel == ".sync" || rel.ends_with(".!sync") {
            continue;
        }
        if entry.file_type()?.is_dir() {
            list(root, &path)?;
        } else {
            let bytes = std::fs::read(&path)?;
            println!("{} {:016x} {rel}", bytes.len(), fnv1a(&bytes));
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
