//! Read-only keys for any key: offline where the recipe is known (see
//! [`Key::read_only_form`]), and through `btsync --get-ro-secret` for D keys,
//! whose E form only btsync knows how to compute.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::keys::{Key, KeyKind, ReadOnlyForm};
use crate::sys::OwnedChild;

/// Names the btsync binary; unset or empty means [`DEFAULT_ENGINE_BIN`].
pub const ENGINE_BIN_VAR: &str = "BTSYNC_BIN";
pub const DEFAULT_ENGINE_BIN: &str = "/bin/btsync";

/// btsync answers at once; this only keeps a wedged binary from hanging `add`.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(30);
/// A longer answer is not a key; reading stops there.
const MAX_ANSWER: u64 = 4096;

/// The read-only key that goes with `key`.
pub fn read_only_key(key: &Key) -> Result<Key> {
    match key.read_only_form() {
        ReadOnlyForm::Key(read_only) => Ok(read_only),
        ReadOnlyForm::NeedsEngine => ask_engine(key),
    }
}

fn engine_bin() -> Result<PathBuf> {
    match std::env::var_os(ENGINE_BIN_VAR) {
        Some(path) if !path.is_empty() => {
            crate::settings::absolute_engine_bin(&path.to_string_lossy())
        }
        _ => Ok(PathBuf::from(DEFAULT_ENGINE_BIN)),
    }
}

/// Run `btsync --get-ro-secret KEY`. btsync takes the key only on its
/// command line; syncbox itself never prints it, and never shows btsync's
/// output in errors (it may repeat the key).
fn ask_engine(key: &Key) -> Result<Key> {
    let bin = engine_bin()?;
    let unavailable = |problem: String| Error::ReadOnlyUnavailable {
        bin: bin.clone(),
        problem,
    };
    if !bin.is_file() {
        return Err(unavailable("there is no such file".to_owned()));
    }
    let mut command = Command::new(&bin);
    command
        .arg("--get-ro-secret")
        .arg(key.expose())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Owned: inside init, whose reaper takes every other child, this
    // thread still gets the exit status of its own.
    let mut child =
        OwnedChild::spawn(&mut command).map_err(|e| unavailable(format!("cannot run it: {e}")))?;
    // The answer is one line: read after the child exits; polling keeps a
    // wedged binary from hanging `add`.
    let (status, answer) = match child.output_until(Instant::now() + ENGINE_TIMEOUT, MAX_ANSWER) {
        Ok(Some(done)) => done,
        Ok(None) => {
            return Err(unavailable(format!(
                "it did not answer within {} seconds",
                ENGINE_TIMEOUT.as_secs()
            )));
        }
        Err(e) => return Err(unavailable(format!("cannot wait for it: {e}"))),
    };
    // Not UTF-8: the check below reports "no E key".
    let answer = String::from_utf8(answer).unwrap_or_default();
    if !status.success() {
        return Err(unavailable(format!("'--get-ro-secret' failed ({status})")));
    }
    let read_only = answer
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .and_then(|line| Key::parse(line).ok())
        .filter(|k| k.kind() == KeyKind::E)
        .ok_or_else(|| unavailable("'--get-ro-secret' did not print an E key".to_owned()))?;
    Ok(read_only)
}
