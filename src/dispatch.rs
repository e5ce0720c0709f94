//! The applet table's machinery: busybox-style dispatch on argv[0], the
//! `syncbox` and `ctl` multiplexers, and the conventions every applet shares
//! (argument parsing, error reporting, exit codes).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::ExitCode;

use argh::{EarlyExit, FromArgs};

use crate::error::Error;

/// One entry of the applet table.
pub struct Applet {
    pub name: &'static str,
    pub summary: &'static str,
    pub run: fn(&Invocation) -> u8,
}

/// How an applet was called: the name to use in messages and its arguments.
pub struct Invocation<'a> {
    pub name: &'a str,
    pub args: &'a [String],
}

/// Exit status for "no such applet", as shells use for "command not found".
pub const NOT_FOUND: u8 = 127;
/// Exit status for bad usage or invalid input.
pub const USAGE: u8 = 2;

const MULTIPLEXER: &str = "syncbox";
const CTL: &str = "ctl";

/// Entry point of the binary: pick the applet from argv[0] and run it.
pub fn main(applets: &[Applet]) -> ExitCode {
    let mut argv = std::env::args_os().map(lossy);
    let argv0 = argv.next().unwrap_or_default();
    let args: Vec<String> = argv.collect();
    ExitCode::from(run(applets, &applet_name(&argv0), &args))
}

/// The applet named by argv[0]: its basename, without the one leading '-'
/// that login shells add. Only one: a link named `--list` is no applet.
pub fn applet_name(argv0: &str) -> String {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    base.strip_prefix('-').unwrap_or(base).to_owned()
}

/// Run the applet `name` (or a multiplexer) with `args`; returns the exit status.
pub fn run(applets: &[Applet], name: &str, args: &[String]) -> u8 {
    if name == CTL {
        return multiplexer(applets, CTL, args);
    }
    if let Some(applet) = find(applets, name) {
        return (applet.run)(&Invocation { name, args });
    }
    if name.starts_with(MULTIPLEXER) {
        return multiplexer(applets, MULTIPLEXER, args);
    }
    not_found(name)
}

/// `syncbox 0.1.0`, then ` (commit HASH)` when the build knew its commit
/// (build.rs). rootfs/build-image labels the image from this line.
pub fn version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    match option_env!("SYNCBOX_COMMIT") {
        Some(commit) => format!("{MULTIPLEXER} {version} (commit {commit})"),
        None => format!("{MULTIPLEXER} {version}"),
    }
}

fn find<'t>(applets: &'t [Applet], name: &str) -> Option<&'t Applet> {
    applets.iter().find(|a| a.name == name)
}

fn not_found(name: &str) -> u8 {
    eprintln!("{name}: applet not found");
    NOT_FOUND
}

/// `syncbox ARGS` and `ctl ARGS` (`who`): the same applets and options;
/// only the usage text differs.
fn multiplexer(applets: &[Applet], who: &str, args: &[String]) -> u8 {
    let usage = || {
        if who == CTL {
            ctl_usage(applets)
        } else {
            multiplexer_usage(applets)
        }
    };
    let Some(first) = args.first() else {
        eprint!("{}", usage());
        return USAGE;
    };
    let rest = &args[1..];
    match first.as_str() {
        // `ctl help` alone is the seed's way to ask; `help` is otherwise a
        // namespace name, never an applet.
        "help" if who == CTL && rest.is_empty() => emit(&usage()),
        option @ ("--help" | "-h" | "--version" | "--list") if !rest.is_empty() => {
            usage_error(who, &format!("{option} takes no arguments"))
        }
        "--help" | "-h" => emit(&usage()),
        "--version" => emit(&format!("{}\n", version())),
        "--list" => {
            let mut names: Vec<&str> = applets.iter().map(|a| a.name).collect();
            names.push(CTL);
            names.sort_unstable();
            emit(&names.iter().map(|n| format!("{n}\n")).collect::<String>())
        }
        "--install" => match rest {
            [dir] => install(applets, who, Path::new(dir)),
            _ => usage_error(who, "--install takes exactly one directory"),
        },
        option if option.starts_with('-') => {
            usage_error(who, &format!("unknown option {option:?}"))
        }
        CTL => multiplexer(applets, CTL, rest),
        name => match find(applets, name) {
            Some(applet) => (applet.run)(&Invocation { name, args: rest }),
            None => not_found(name),
        },
    }
}

fn applet_lines(applets: &[Applet]) -> String {
    applets
        .iter()
        .map(|a| format!("  {:<8}  {}\n", a.name, a.summary))
        .collect()
}

fn ctl_usage(applets: &[Applet]) -> String {
    format!(
        "Usage: {CTL} COMMAND [ARGS...]\n   or: {CTL} --list | --install DIR | --help | --version\n\n\
         Manage the namespaces this node syncs. '{CTL} COMMAND' is the same as the bare\n\
         applet COMMAND; run '{CTL} COMMAND --help' for its options.\n\nCommands:\n{}",
        applet_lines(applets)
    )
}

fn multiplexer_usage(applets: &[Applet]) -> String {
    format!(
        "Usage: {MULTIPLEXER} APPLET [ARGS...]\n   or: APPLET [ARGS...]   (through a link named after the applet)\n   \
         or: {MULTIPLEXER} --list | --install DIR | --help | --version\n\n\
         syncbox {} turns btsync / Resilio Sync into per-node persistent storage.\n\n\
         Applets:\n{}  {CTL:<8}  run any applet above: {CTL} COMMAND [ARGS...]\n",
        env!("CARGO_PKG_VERSION"),
        applet_lines(applets)
    )
}

/// Create `DIR/NAME -> /absolute/path/of/this/binary` for every applet.
/// Links that already resolve to this binary (also relative ones) are left
/// alone; other links are replaced atomically; anything that is not a link
/// is never touched. Every name is tried; each refusal or failure is one
/// line on stderr, and any of them makes the exit status 1.
fn install(applets: &[Applet], who: &str, dir: &Path) -> u8 {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return report(who, &Error::io("cannot find the path of this binary", e)),
    };
    let exe = fs::canonicalize(&exe).unwrap_or(exe);
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return report(
                who,
                &Error::Usage(format!("{} is not a directory", dir.display())),
            );
        }
        Err(e) => return report(who, &Error::io(format!("cannot use {}", dir.display()), e)),
    }
    let mut status = 0;
    for name in applets.iter().map(|a| a.name).chain([CTL]) {
        if let Err(e) = install_link(&exe, &dir.join(name), dir, name) {
            report(who, &e);
            status = 1;
        }
    }
    status
}

fn install_link(exe: &Path, link: &Path, dir: &Path, name: &str) -> crate::Result<()> {
    match fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if fs::canonicalize(link).ok().as_deref() == Some(exe) {
                return Ok(());
            }
            let temp = dir.join(format!(".{name}.syncbox-install"));
            let _ = fs::remove_file(&temp);
            symlink(exe, &temp)
                .and_then(|()| fs::rename(&temp, link))
                .map_err(|e| Error::io(format!("cannot replace {}", link.display()), e))
        }
        Ok(_) => Err(Error::FolderOccupied {
            path: link.to_owned(),
            problem: "exists and is not a symbolic link, so it was not replaced",
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => symlink(exe, link)
            .map_err(|e| Error::io(format!("cannot create {}", link.display()), e)),
        Err(e) => Err(Error::io(format!("cannot inspect {}", link.display()), e)),
    }
}

/// The shape of every applet: parse `T` from the arguments, run `body`, and
/// turn its error into one line on stderr and the error's exit status.
/// `body` returns the exit status (printing through [`emit`] on the way).
pub fn run_applet<T: FromArgs>(inv: &Invocation, body: impl FnOnce(T) -> crate::Result<u8>) -> u8 {
    match parse_args::<T>(inv) {
        Ok(args) => body(args).unwrap_or_else(|e| report(inv.name, &e)),
        Err(code) => code,
    }
}

/// Parse an applet's arguments with argh. `--help`/`-h` print usage and exit
/// 0; bad usage prints one line on stderr and exits 2. `help` is not a help
/// trigger: it is a valid namespace.
pub fn parse_args<T: FromArgs>(inv: &Invocation) -> Result<T, u8> {
    let args = split_long_options(inv.args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match T::from_args(&[inv.name], &args) {
        Ok(parsed) => Ok(parsed),
        Err(EarlyExit {
            output,
            status: Ok(()),
        }) => Err(emit(&output)),
        Err(EarlyExit {
            output,
            status: Err(()),
        }) => {
            let one_line = output.split_whitespace().collect::<Vec<_>>().join(" ");
            Err(usage_error(
                inv.name,
                &format!("{one_line} (see '{} --help')", inv.name),
            ))
        }
    }
}

/// argh has no option whose value may be left out (`add --wait` and
/// `add --wait=SECONDS`): a bare `option` before `--` becomes
/// `option=default`.
pub fn default_option_value(args: &[String], option: &str, default: &str) -> Vec<String> {
    let mut options_done = false;
    args.iter()
        .map(|arg| {
            options_done |= arg == "--";
            if !options_done && arg == option {
                format!("{option}={default}")
            } else {
                arg.clone()
            }
        })
        .collect()
}

/// argh only understands `--option value`; the seed documents
/// `--token="KEY"`. Split `--option=value` into two arguments, up to `--`.
fn split_long_options(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut options_done = false;
    for arg in args {
        match arg.split_once('=') {
            Some((option, value))
                if !options_done && option.starts_with("--") && option.len() > 2 =>
            {
                out.push(option.to_owned());
                out.push(value.to_owned());
            }
            _ => {
                options_done |= arg == "--";
                out.push(arg.clone());
            }
        }
    }
    out
}

fn usage_error(applet: &str, message: &str) -> u8 {
    eprintln!("{applet}: {message}");
    USAGE
}

/// Print `error` as one line prefixed by the applet name; return its exit status.
pub fn report(applet: &str, error: &Error) -> u8 {
    eprintln!("{applet}: {error}");
    error.exit_code()
}

/// Write `text` to stdout. A closed stdout (`ctl list | head -0`) is an
/// error, not a panic.
pub fn emit(text: &str) -> u8 {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 1,
        Err(e) => {
            eprintln!("cannot write to stdout: {e}");
            1
        }
    }
}

fn lossy(arg: OsString) -> String {
    arg.into_string()
        .unwrap_or_else(|raw| raw.to_string_lossy().into_owned())
}
