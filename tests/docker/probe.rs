//! A throw-away program the docker tests install as /bin/btsync when they test
//! the image itself rather than the engine: built by the tests with rustc as a
//! dynamically linked, a static or a `-C prefer-dynamic` binary, so the
//! library collection of rootfs/build-image meets every case.
//!
//! `probe` prints `probe ok` and its arguments; `probe --sleep SECONDS` stays
//! up so a container has something to run while the tests `docker exec` it;
//! `probe --write FILE TEXT` writes TEXT into FILE (a container writing
//! through a volume).

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
    println!("probe ok {}", args.join(" "));
}
