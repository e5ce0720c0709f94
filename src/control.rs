//! How `add`, `del`, `status` and `health` talk to a running init: a unix
//! socket at `$BTSYNC_DATA/.btsync/control.sock`. A socket bound to a path
//! is reached through the file system, so it works from `docker exec`, from
//! another PID or network namespace and from another container that mounts
//! the same data directory; nothing depends on init being pid 1 where the
//! caller runs.
//!
//! Protocol: one request line, one reply line.
//! ```text
//! add NS wait|nowait            -> ok | queued | error MESSAGE
//! del NS wait|nowait|purge|trash -> ok | queued | error MESSAGE
//! status                        -> one line of JSON
//! sync                          -> one line of JSON: each namespace's sync state
//! ```
//! `wait` replies once the running engine reflects the registry's state of
//! NS (for `del`: once no engine that knows NS is running). `purge` is
//! `del --no-wait`: init replies at once and deletes the folder itself when
//! the engine has let go of it; `trash` (`del --cluster --no-wait`) moves it
//! into the cluster trash instead. Requests carry names only, never keys.
//!
//! No socket, or a socket nobody listens on (init was killed), means no init
//! runs: the applets then work on the registry alone. The engine cannot
//! outlive init (it gets SIGKILL when init dies), so that is safe for `del`.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::name::Name;
use crate::server;
use crate::settings::parse_seconds;

pub const APPLY_TIMEOUT_VAR: &str = "BTSYNC_APPLY_TIMEOUT";
pub const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest request line init reads; a name is at most 64 characters.
const MAX_REQUEST: u64 = 256;
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

pub fn socket_path(layout: &Layout) -> PathBuf {
    layout.state_dir().join("control.sock")
}

fn init_lock_path(layout: &Layout) -> PathBuf {
    layout.state_dir().join("init.lock")
}

/// Whether an applet waits for the running engine to reflect its change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Wait at most this long (`BTSYNC_APPLY_TIMEOUT`, default 30 s).
    Upto(Duration),
    /// `--no-wait`: tell init and return.
    No,
}

impl Waiting {
    /// `--no-wait`, or the timeout from `BTSYNC_APPLY_TIMEOUT`. Call this
    /// before changing anything: a malformed variable is bad input (exit 2).
    pub fn from_env(no_wait: bool) -> Result<Waiting> {
        let timeout = match std::env::var(APPLY_TIMEOUT_VAR) {
            Ok(text) if !text.is_empty() => parse_seconds(APPLY_TIMEOUT_VAR, &text)?,
            _ => DEFAULT_APPLY_TIMEOUT,
        };
        Ok(if no_wait {
            Waiting::No
        } else {
            Waiting::Upto(timeout)
        })
    }
}

/// What became of a change an applet announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// No init runs on this data directory: the registry is all there is.
    NoInit,
    /// The running engine reflects the change (for `del`: no engine knows
    /// the namespace any more, its files may go).
    Done,
    /// `--no-wait`: init has the change and applies it shortly.
    Queued,
}

/// Tell a running init that `ns` was added (call after `Registry::add`).
pub fn announce_add(layout: &Layout, ns: &Name, waiting: Waiting) -> Result<Applied> {
    let mode = match waiting {
        Waiting::Upto(_) => "wait",
        Waiting::No => "nowait",
    };
    let reply = request(layout, &format!("add {ns} {mode}"), waiting)?;
    interpret(reply, || {
        format!(
            "{ns} is registered, but the running engine has not picked it up within {}; \
             see the container log (docker logs) for why",
            show_timeout(waiting)
        )
    })
}

/// What becomes of a removed namespace's folder once the engine let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposal {
    /// Deleted (`del`, `del --cluster --purge`).
    Delete,
    /// Moved into the cluster trash (`del --cluster`).
    Trash,
}

/// Tell a running init that `ns` was unregistered (call after
/// `Registry::unregister`). With `files` and `Waiting::No`, init deletes
/// or trashes the folder itself once the engine has let go of it; with
/// waiting, the caller does it when this returns `Done` or `NoInit`.
pub fn announce_del(
    layout: &Layout,
    ns: &Name,
    waiting: Waiting,
    files: Option<Disposal>,
) -> Result<Applied> {
    let mode = match (waiting, files) {
        (Waiting::Upto(_), _) => "wait",
        (Waiting::No, Some(Disposal::Delete)) => "purge",
        (Waiting::No, Some(Disposal::Trash)) => "trash",
        (Waiting::No, None) => "nowait",
    };
    let reply = request(layout, &format!("del {ns} {mode}"), waiting)?;
    interpret(reply, || {
        format!(
            "{ns} is unregistered, but the running engine has not let go of it within {}; \
             its files were kept (deleting them now would delete them on every peer). \
             Run the same 'del' again to finish",
            show_timeout(waiting)
        )
    })
}

/// Ask a running init for its status (JSON); `None` when no init runs.
pub fn query_status(layout: &Layout) -> Result<Option<Value>> {
    match request(layout, "status", Waiting::Upto(CONNECTION_TIMEOUT * 2))? {
        Reply::NoInit => Ok(None),
        Reply::Line(line) => serde_json::from_str(&line)
            .map(Some)
            .map_err(|_| Error::Supervisor(format!("init sent an unreadable status: {line:?}"))),
        Reply::TimedOut | Reply::Closed => Err(Error::Supervisor(
            "init does not answer on its control socket".into(),
        )),
    }
}

/// Every namespace's sync state as init knows it: `{"mode": "webui" |
/// "config", "namespaces": {NS: {"state": ..., ...}}, "count": N}`;
/// `None` when no init runs.
pub fn query_sync(layout: &Layout) -> Result<Option<Value>> {
    match request(layout, "sync", Waiting::Upto(CONNECTION_TIMEOUT * 2))? {
        Reply::NoInit => Ok(None),
        Reply::Line(line) => serde_json::from_str(&line).map(Some).map_err(|_| {
            Error::Supervisor(format!("init sent an unreadable sync state: {line:?}"))
        }),
        Reply::TimedOut | Reply::Closed => Err(Error::Supervisor(
            "init does not answer on its control socket".into(),
        )),
    }
}

enum Reply {
    NoInit,
    Line(String),
    TimedOut,
    Closed,
}

fn show_timeout(waiting: Waiting) -> String {
    match waiting {
        Waiting::Upto(t) => format!("{}s ({APPLY_TIMEOUT_VAR})", t.as_secs_f64()),
        Waiting::No => "the time allowed".into(),
    }
}

fn interpret(reply: Reply, timed_out: impl Fn() -> String) -> Result<Applied> {
    match reply {
        Reply::NoInit => Ok(Applied::NoInit),
        Reply::Line(line) => match line.as_str() {
            "ok" => Ok(Applied::Done),
            "queued" => Ok(Applied::Queued),
            other => Err(Error::Supervisor(match other.strip_prefix("error ") {
                Some(message) => format!("init: {message}"),
                None => format!("init sent an unexpected reply: {other:?}"),
            })),
        },
        Reply::TimedOut => Err(Error::Supervisor(timed_out())),
        Reply::Closed => Err(Error::Supervisor(format!(
            "init closed the connection before answering (was it stopped?): {}",
            timed_out()
        ))),
    }
}

fn request(layout: &Layout, line: &str, waiting: Waiting) -> Result<Reply> {
    let path = socket_path(layout);
    let mut stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(Reply::NoInit);
        }
        // No init can bind a path longer than a socket address allows.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Ok(Reply::NoInit),
        Err(e) => {
            return Err(Error::io(
                format!("cannot reach init through {}", path.display()),
                e,
            ));
        }
    };
    let read_timeout = match waiting {
        Waiting::Upto(t) => t.max(Duration::from_millis(1)),
        Waiting::No => CONNECTION_TIMEOUT * 5,
    };
    let talk = (|| -> io::Result<Option<String>> {
        stream.set_write_timeout(Some(CONNECTION_TIMEOUT))?;
        stream.set_read_timeout(Some(read_timeout))?;
        stream.write_all(format!("{line}\n").as_bytes())?;
        let mut reply = String::new();
        let read = BufReader::new(&stream)
            .take(1 << 20)
            .read_line(&mut reply)?;
        Ok((read > 0).then(|| reply.trim_end().to_owned()))
    })();
    match talk {
        Ok(Some(reply)) => Ok(Reply::Line(reply)),
        Ok(None) => Ok(Reply::Closed),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(Reply::TimedOut)
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Reply::Closed),
        Err(e) => Err(Error::io("cannot talk to init", e)),
    }
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// The engine should reflect the registry's state of the namespace.
    /// `added` tells whether the client added (true) or removed it.
    Apply {
        ns: Name,
        added: bool,
        mode: Mode,
    },
    Status,
    /// Every namespace's sync state (WebUI mode; `unknown` otherwise).
    Sync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Wait,
    NoWait,
    /// `del --no-wait`: init deletes the files once the engine let go.
    Purge,
    /// `del --cluster --no-wait`: init moves them into the cluster trash.
    Trash,
}

/// A request read from a client, to be answered with [`Request::reply`].
/// The reply is handed to the connection's own thread, which writes it: the
/// thread that answers (init's main loop) never waits on a client.
pub struct Request {
    pub ask: Ask,
    reply: mpsc::Sender<String>,
}

impl Request {
    /// Send the one reply line. A client that gave up waiting is not an error.
    pub fn reply(self, line: &str) {
        let _ = self.reply.send(line.to_owned());
    }
}

pub fn parse_ask(line: &str) -> std::result::Result<Ask, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["status"] => Ok(Ask::Status),
        ["sync"] => Ok(Ask::Sync),
        [verb @ ("add" | "del"), ns, mode] => {
            let ns = Name::parse(ns).map_err(|e| e.to_string())?;
            let mode = match (*verb, *mode) {
                (_, "wait") => Mode::Wait,
                (_, "nowait") => Mode::NoWait,
                ("del", "purge") => Mode::Purge,
                ("del", "trash") => Mode::Trash,
                _ => return Err(format!("unknown mode {mode:?}")),
            };
            Ok(Ask::Apply {
                ns,
                added: *verb == "add",
                mode,
            })
        }
        _ => Err("unknown request".into()),
    }
}

/// Proof that this process is the one init of a data directory; held for
/// init's lifetime (the lock goes away with the process).
pub struct InitClaim {
    _lock: File,
    socket: PathBuf,
}

impl Drop for InitClaim {
    fn drop(&mut self) {
        // Clients then see "no init" at once instead of a refused connection.
        let _ = fs::remove_file(&self.socket);
    }
}

/// Become the init of `layout`'s data directory and listen on the control
/// socket. A second init on the same directory is refused.
pub fn claim(layout: &Layout) -> Result<(InitClaim, UnixListener)> {
    let lock_path = init_lock_path(layout);
    let lock = crate::fsutil::open_lock_file(&lock_path)
        .map_err(|e| Error::io(format!("cannot open {}", lock_path.display()), e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::Supervisor(format!(
                "another init already runs on {} (it holds {})",
                layout.data_root().display(),
                lock_path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::io(format!("cannot lock {}", lock_path.display()), e));
        }
    }
    let socket = socket_path(layout);
    // Left over by an init that was killed; we hold the lock, so it is stale.
    match fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("cannot remove {}", socket.display()), e)),
    }
    let listener = UnixListener::bind(&socket).map_err(|e| {
        Error::io(
            format!(
                "cannot listen on {} (add/del could not reach init)",
                socket.display()
            ),
            e,
        )
    })?;
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("cannot chmod {}", socket.display()), e))?;
    Ok((
        InitClaim {
            _lock: lock,
            socket,
        },
        listener,
    ))
}

/// How init serves its control socket: a request is one short line sent
/// within a couple of seconds; a reply (`status` can be long) must be taken
/// within a few. Clients that wait for an engine restart hold a slot while
/// they wait, so there are plenty.
pub const LIMITS: server::Limits = server::Limits {
    max_clients: 64,
    request_deadline: CONNECTION_TIMEOUT,
    max_request_bytes: MAX_REQUEST,
    reply_deadline: Duration::from_secs(5),
};

/// While waiting for init's answer, look this often whether the client is
/// still there.
const HANGUP_CHECK: Duration = Duration::from_millis(250);

/// Accept clients forever, each on a thread of its own (see `server`),
/// handing each parsed request to `deliver`. Malformed requests are
/// answered here.
pub fn serve(listener: UnixListener, deliver: impl Fn(Request) + Send + Sync + 'static) {
    server::serve(listener, LIMITS, move |mut client| {
        let line = match client.read_line() {
            Ok(line) => line,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = client.write_all(format!("error {e}\n").as_bytes());
                return;
            }
            // Timed out or gone: nobody to answer.
            Err(_) => return,
        };
        let ask = match parse_ask(line.trim_end()) {
            Ok(ask) => ask,
            Err(problem) => {
                let _ = client.write_all(format!("error {problem}\n").as_bytes());
                return;
            }
        };
        let (reply, answer) = mpsc::channel();
        deliver(Request { ask, reply });
        loop {
            match answer.recv_timeout(HANGUP_CHECK) {
                Ok(line) => {
                    let _ = client.write_all(format!("{line}\n").as_bytes());
                    return;
                }
                // init let go of the request without answering (it stops).
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) if client.hung_up() => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(parse_ask("status"), Ok(Ask::Status));
        assert_eq!(
            parse_ask("add gitlab wait"),
            Ok(Ask::Apply {
                ns: Name::parse("gitlab").expect("name"),
                added: true,
                mode: Mode::Wait
            })
        );
        assert_eq!(
            parse_ask("del x purge"),
            Ok(Ask::Apply {
                ns: Name::parse("x").expect("name"),
                added: false,
                mode: Mode::Purge
            })
        );
        assert!(parse_ask("add x purge").is_err());
        assert!(parse_ask("add x trash").is_err());
        assert_eq!(
            parse_ask("del x trash"),
            Ok(Ask::Apply {
                ns: Name::parse("x").expect("name"),
                added: false,
                mode: Mode::Trash
            })
        );
        assert!(parse_ask("add ../etc wait").is_err());
        assert!(parse_ask("reboot").is_err());
    }
}
