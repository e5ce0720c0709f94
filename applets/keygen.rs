use argh::FromArgs;
use syncbox::Error;
use syncbox::dispatch::{Invocation, emit, run_applet};
use syncbox::keys::Key;

/// Print a fresh read-write key ('A' + 32 base32 characters, 160 bits from
/// the OS random source), like `btsync --generate-secret`. Its output also
/// makes a good cluster key: `keygen > cluster.key`.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {}

pub fn run(inv: &Invocation) -> u8 {
    run_applet(inv, |Args {}| {
        let key = Key::generate().map_err(|e| Error::io("cannot generate a key", e))?;
        Ok(emit(&format!("{}\n", key.expose())))
    })
}
