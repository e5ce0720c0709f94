#!/usr/bin/env bash
# syncbox benchmark: prints a table of figures, each beside an anchor
# measured in the same run on the same machine. Not a test: it asserts
# nothing about speed; it reports.
#
#   tests/bench/run.sh           full run (10,000 namespaces)
#   tests/bench/run.sh --quick   short run for CI (fewer runs, 2,000 namespaces)
set -euo pipefail
cd "$(dirname "$0")/../.."

quick=false
[ "${1:-}" = "--quick" ] && quick=true
if $quick; then runs=200; many=2000; else runs=1000; many=10000; fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need hyperfine || ! need busybox || [ ! -x /usr/bin/tini-static ]; then
  echo "installing benchmark anchors (hyperfine, busybox-static, tini) with apt-get" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine busybox-static tini >/dev/null
fi
target=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
cargo build --quiet --release --locked --target "$target"
syncbox="$PWD/target/$target/release/syncbox"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/data" "$work/many"
"$syncbox" --install "$work/bin"
export BTSYNC_DATA="$work/data"

# Mean seconds of a command, measured by hyperfine without a shell.
mean() {
  hyperfine --style none --shell=none --warmup 20 --runs "$runs" \
    --export-json "$work/h.json" "$@" >/dev/null 2>&1
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$work/h.json"
}
ms() { python3 -c "print(f'{float(\"$1\")*1000:.3f} ms')"; }
kb() { python3 -c "print(f'{int(\"$1\")/1024:.0f} KiB')"; }
ratio() { python3 -c "print(f'{float(\"$1\")/float(\"$2\"):.2f}')"; }

rows=()
row() { rows+=("$(printf '| %s | %s | %s | %s | %s |' "$@")"); }

# 1. has: exec to exit, against busybox's `test -d` (one stat, static binary).
"$work/bin/add" gitlab
has_one=$(mean "$work/bin/has gitlab")
test_d=$(mean "busybox test -d $work/data/gitlab")
row "\`has NS\` exec to exit" "$(ms "$has_one")" "busybox \`test -d\`: $(ms "$test_d")" "$(ratio "$has_one" "$test_d")" "<= 1.2"

# 2. Size of the static binary with every applet.
size=$(stat -c %s "$syncbox")
tini=$(stat -c %s /usr/bin/tini-static)
printf 'fn main() { println!("hello"); }\n' > "$work/hello.rs"
rustc --edition 2021 --target "$target" -C opt-level=s -C panic=abort -C strip=symbols \
  -o "$work/hello" "$work/hello.rs"
hello=$(stat -c %s "$work/hello")
row "static binary size" "$(kb "$size")" "tini-static: $(kb "$tini")" "$(ratio "$size" "$tini")" "<= 1.0"
row "static binary size" "$(kb "$size")" "musl hello-world: $(kb "$hello")" "$(ratio "$size" "$hello")" "-"

# 3. has and list with many namespaces.
export BTSYNC_DATA="$work/many"
seq -f "ns%05g" 1 "$many" | xargs -P 4 -n 50 sh -c 'for n; do "$0" "$n"; done' "$work/bin/add"
count=$("$work/bin/list" | wc -w)
[ "$count" -eq "$many" ] || { echo "expected $many namespaces, list shows $count" >&2; exit 1; }
has_many=$(mean "$work/bin/has ns00001")
list_many=$(mean "$work/bin/list")
row "\`has NS\` with $many namespaces" "$(ms "$has_many")" "with 1 namespace: $(ms "$has_one")" "$(ratio "$has_many" "$has_one")" "~1.0"
row "\`list\` with $many namespaces" "$(ms "$list_many")" "busybox \`test -d\`: $(ms "$test_d")" "$(ratio "$list_many" "$test_d")" "< 10 ms"

echo "syncbox benchmark ($($quick && echo quick || echo full) run) on $(nproc) cores, $(uname -srm), $(date -u +%Y-%m-%d)"
echo "| figure | syncbox | anchor (same run) | ratio | goal |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
