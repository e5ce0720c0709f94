//! The applet table: the one place that lists what syncbox can be called as.
//! Each applet lives in its own file and only parses, calls the core, prints.

mod add;
mod del;
mod has;
mod health;
mod init;
mod keygen;
mod list;
mod path;
mod secret;
mod status;
mod wait;

use std::process::ExitCode;

use syncbox::dispatch::{self, Applet};

const APPLETS: &[Applet] = &[
    Applet {
        name: "add",
        summary: "register a namespace and create its folder",
        run: add::run,
    },
    Applet {
        name: "del",
        summary: "unregister a namespace and delete its folder",
        run: del::run,
    },
    Applet {
        name: "has",
        summary: "exit 0 if a namespace is registered, 1 if not",
        run: has::run,
    },
    Applet {
        name: "health",
        summary: "exit 0 if init and the engine are running (for HEALTHCHECK)",
        run: health::run,
    },
    Applet {
        name: "init",
        summary: "run btsync as PID 1 and keep it in step with the namespaces",
        run: init::run,
    },
    Applet {
        name: "keygen",
        summary: "print a fresh read-write key",
        run: keygen::run,
    },
    Applet {
        name: "list",
        summary: "print the registered namespaces",
        run: list::run,
    },
    Applet {
        name: "path",
        summary: "print the host or container path of a namespace",
        run: path::run,
    },
    Applet {
        name: "secret",
        summary: "print the key (or read-only key) of a namespace",
        run: secret::run,
    },
    Applet {
        name: "status",
        summary: "show the engine's pid, uptime, restarts and folders",
        run: status::run,
    },
    Applet {
        name: "wait",
        summary: "wait until namespaces hold the data (exit 0 once synced)",
        run: wait::run,
    },
];

fn main() -> ExitCode {
    dispatch::main(APPLETS)
}
