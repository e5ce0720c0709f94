use argh::FromArgs;
use syncbox::Error;
use syncbox::dispatch::{Invocation, emit, parse_args, report};
use syncbox::keys::Key;

/// Print a fresh read-write key ('A' + 32 base32 characters, 160 bits from
/// the OS random source), like `btsync --generate-secret`. Its output also
/// makes a good cluster key: `keygen > cluster.key`.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {}

pub fn run(inv: &Invocation) -> u8 {
    let Args {} = match parse_args(inv) {
        Ok(args) => args,
        Err(code) => return code,
    };
    match Key::generate() {
        Ok(key) => emit(&format!("{}\n", key.expose())),
        Err(e) => report(inv.name, &Error::io("cannot generate a key", e)),
    }
}
