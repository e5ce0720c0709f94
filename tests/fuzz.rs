//! Randomised bad-input testing of the parsers and of argv dispatch.
//!
//! Deterministic (a fixed seed, overridable with SYNCBOX_FUZZ_SEED) so a
//! failure can be replayed; each test prints how many inputs it tried.
//! Each parser is checked against an independent statement of its rule.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use syncbox::dispatch::{self, Applet, Invocation};
use syncbox::keys::{Key, KeyKind};
use syncbox::name::Name;

/// xorshift64*: tiny, seedable, good enough to generate test inputs.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("SYNCBOX_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_cafe_f00d_u64);
        eprintln!("fuzz seed {seed} (set SYNCBOX_FUZZ_SEED to replay)");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A string built from an alphabet biased towards the interesting
    /// characters of names and keys, with occasional arbitrary Unicode.
    fn text(&mut self, max_len: usize) -> String {
        const PIECES: &[&str] = &[
            "a", "z", "0", "9", ".", "_", "-", "/", "A", "Z", "2", "7", "1", "8", "=", " ", "\t",
            "\n", "\0", "é", "ß", "\u{202e}", "..", "--", "help", "=x",
        ];
        let len = self.below(max_len + 1);
        let mut out = String::new();
        while out.chars().count() < len {
            if self.below(16) == 0 {
                out.push(char::from_u32(self.below(0x11_0000) as u32).unwrap_or('\u{fffd}'));
            } else {
                let piece: &&str = self.pick(PIECES);
                out.push_str(piece);
            }
        }
        out
    }
}

fn name_rule(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

#[test]
fn name_parser_matches_its_rule() {
    let mut rng = Rng::from_env();
    let mut tried = 0;
    let mut accepted = 0;
    for _ in 0..200_000 {
        let input = rng.text(70);
        let parsed = Name::parse(&input);
        assert_eq!(parsed.is_ok(), name_rule(&input), "{input:?}");
        if let Ok(name) = parsed {
            assert_eq!(name.as_str(), input);
            accepted += 1;
        } else {
            let msg = parsed.unwrap_err().to_string();
            assert!(!msg.contains('\n'), "multi-line error for {input:?}");
        }
        tried += 1;
    }
    eprintln!("name parser: {tried} inputs, {accepted} accepted");
    assert!(accepted > 100, "the generator never produced valid names");
}

const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn key_rule(s: &str) -> Option<KeyKind> {
    if !s.is_ascii() {
        return None;
    }
    let up = s.to_ascii_uppercase();
    let b = up.as_bytes();
    if !b.iter().all(|c| BASE32.contains(c)) {
        return None;
    }
    let kind = match (b.len(), b.first()) {
        (32, _) => KeyKind::Legacy,
        (33, Some(b'A')) => KeyKind::A,
        (33, Some(b'B')) => KeyKind::B,
        (33, Some(b'C')) => KeyKind::C,
        (33, Some(b'D')) => KeyKind::D,
        (33, Some(b'F')) => KeyKind::F,
        (33, Some(b'R')) => KeyKind::R,
        (59, Some(b'E')) => {
            // The last of 26 characters carries 2 bits that must be zero.
            let last = BASE32.iter().position(|c| *c == b[58])?;
            if last & 0b11 != 0 {
                return None;
            }
            KeyKind::E
        }
        _ => return None,
    };
    Some(kind)
}

#[test]
fn key_parser_matches_its_rule() {
    let mut rng = Rng::from_env();
    let mut tried = 0;
    let mut accepted = 0;
    for round in 0..200_000 {
        // Half the inputs are near-keys: the right length and alphabet,
        // with random damage; the rest are arbitrary text.
        let input = if round % 2 == 0 {
            let len = *rng.pick(&[31, 32, 33, 34, 58, 59, 60]);
            let mut s: String = (0..len).map(|_| *rng.pick(BASE32) as char).collect();
            if rng.below(2) == 0 {
                let lead = *rng.pick(b"ABCDEFGRXabe");
                s.replace_range(0..1, &(lead as char).to_string());
            }
            if rng.below(4) == 0 {
                let at = rng.below(s.len());
                let junk = rng.text(2);
                s.replace_range(at..at + 1, &junk);
            }
            s
        } else {
            rng.text(60)
        };
        let parsed = Key::parse(&input);
        assert_eq!(
            parsed.as_ref().ok().map(Key::kind),
            key_rule(&input),
            "{input:?}"
        );
        match parsed {
            Ok(key) => {
                accepted += 1;
                assert_eq!(key.expose(), input.to_ascii_uppercase());
                assert_eq!(Key::parse(key.expose()).as_ref(), Ok(&key));
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'));
                if input.len() >= 8 {
                    assert!(
                        !msg.contains(input.trim()),
                        "error echoes the input {input:?}"
                    );
                }
            }
        }
        tried += 1;
    }
    eprintln!("key parser: {tried} inputs, {accepted} accepted");
    assert!(accepted > 1000, "the generator never produced valid keys");
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

fn count_call(inv: &Invocation) -> u8 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    assert!(!inv.name.is_empty());
    0
}

const STUBS: &[Applet] = &[
    Applet {
        name: "add",
        summary: "stub",
        run: count_call,
    },
    Applet {
        name: "has",
        summary: "stub",
        run: count_call,
    },
];

/// Random argv[0] and arguments through the dispatcher: an applet runs only
/// when its name was really given, and every other outcome is a usage
/// error (2), not-found (127) or a multiplexer option, never a panic.
#[test]
fn dispatch_never_panics_and_routes_only_real_names() {
    in_quiet_child(
        "dispatch_never_panics_and_routes_only_real_names",
        dispatch_fuzz,
    );
}

fn dispatch_fuzz() {
    let mut rng = Rng::from_env();
    let mut tried = 0;
    let words: Vec<String> = [
        "add",
        "has",
        "ctl",
        "syncbox",
        "--list",
        "--help",
        "-h",
        "--version",
        "--",
        "help",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..50_000 {
        let argv0 = if rng.below(2) == 0 {
            format!(
                "{}{}",
                rng.pick(&["", "/bin/", "-", "./"]),
                rng.pick(&words)
            )
        } else {
            rng.text(12)
        };
        let args: Vec<String> = (0..rng.below(4))
            .map(|_| {
                if rng.below(2) == 0 {
                    rng.pick(&words).clone()
                } else {
                    rng.text(8)
                }
            })
            .collect();
        let name = dispatch::applet_name(&argv0);
        // --install would write to the file system: not for random input.
        if args.iter().any(|a| a == "--install") {
            continue;
        }
        let before = CALLS.load(Ordering::SeqCst);
        let code = dispatch::run(STUBS, &name, &args);
        let called = CALLS.load(Ordering::SeqCst) > before;
        assert_eq!(
            called,
            names_an_applet(&name, &args),
            "argv0 {argv0:?} args {args:?}"
        );
        if !called {
            assert!(
                matches!(code, 0 | 1 | 2 | 127),
                "argv0 {argv0:?} args {args:?}: {code}"
            );
        }
        tried += 1;
    }
    eprintln!("dispatch: {tried} argv vectors");
}

/// The routing rule, stated independently of the dispatcher.
fn names_an_applet(name: &str, args: &[String]) -> bool {
    let is_stub = |n: &str| STUBS.iter().any(|a| a.name == n);
    if is_stub(name) {
        true
    } else if name == "ctl" || name.starts_with("syncbox") {
        // `ctl` and `syncbox` are the same multiplexer, and `ctl` is one of
        // the names it runs: `syncbox ctl ctl add` is `add`.
        let first = args.iter().map(String::as_str).find(|a| *a != "ctl");
        first.is_some_and(is_stub)
    } else {
        false
    }
}

/// The dispatcher prints usage straight to the process's stdout, which the
/// test harness does not capture; so the test re-runs itself as a child
/// with stdout sent to /dev/null and checks that child's verdict.
fn in_quiet_child(test_name: &str, body: impl FnOnce()) {
    if std::env::var_os("SYNCBOX_FUZZ_CHILD").is_some() {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SYNCBOX_FUZZ_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("re-run the fuzz test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("dispatch:") || l.contains("panicked") || l.starts_with("argv0"))
        .collect();
    eprintln!("{}", report.join("\n"));
    assert!(out.status.success(), "fuzz child failed:\n{stderr}");
    assert!(
        stderr.contains("argv vectors"),
        "fuzz child ran nothing:\n{stderr}"
    );
}

/// Random argument vectors to the real binary's applets: whatever fails
/// must fail with a known status and leave the data root untouched.
#[test]
fn failing_commands_never_change_state() {
    let mut rng = Rng::from_env();
    let sb = common::Sandbox::new().with_env("BTSYNC_HOST_PATH", "/host");
    sb.run("add", &["--token", common::A_KEY, "gitlab"]).ok();
    let words = [
        "--token",
        "--secret",
        "--keep-data",
        "--json",
        "--scope",
        "--scope=host",
        "--",
        "-h",
        "gitlab",
        "star-trek",
        "help",
        common::A_KEY,
        common::B_KEY,
        "container",
    ];
    let mut tried = 0;
    let mut failed = 0;
    for _ in 0..600 {
        let applet = *rng.pick(&["add", "has", "path", "secret", "list", "del"]);
        let args: Vec<String> = (0..rng.below(4))
            .map(|_| {
                if rng.below(3) == 0 {
                    rng.text(6).replace('\0', "")
                } else {
                    rng.pick(&words).to_string()
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = sb.snapshot();
        let run = sb.run(applet, &args);
        tried += 1;
        if run.code != 0 {
            failed += 1;
            assert!(matches!(run.code, 1 | 2), "{applet} {args:?}: {run:?}");
            assert_eq!(
                sb.snapshot(),
                before,
                "{applet} {args:?} failed yet changed state"
            );
            if applet != "has" {
                assert_eq!(run.stderr.lines().count(), 1, "{applet} {args:?}: {run:?}");
            }
        }
    }
    eprintln!("argv to the binary: {tried} runs, {failed} failed as expected");
}
