#!/usr/bin/env bash
# syncbox benchmark: prints a table of figures, each beside an anchor
# measured in the same run on the same machine. Not a test: it asserts
# nothing about speed or size; it reports.
#
#   tests/bench/run.sh           full run (10,000 namespaces, the image built with docker)
#   tests/bench/run.sh --quick   short run for CI (fewer runs, 2,000 namespaces,
#                                image bytes from the staged build context, no docker)
#   tests/bench/run.sh --real    the real engine's figures instead (btsync 1.4.111 in
#                                docker: tests/bench/real-engine.sh; about 20 minutes);
#                                `--real owner` only its `add --owner` section,
#                                `--real flood` only the flood of cluster declarations
#   --write (with either of the first two) also writes what it measured into
#   docs/figures.md, which quotes nothing of it by hand:
#     - the block `sizes` (binary sizes, image bytes): a quick run measures
#       them as a full run does (same build, same files), so either writes
#       them; the row on the image bytes names how they were taken (staged
#       context or docker image: the same files, the same sum);
#     - the block `speed` (times, memory, counts): only a full run writes it.
#       A quick run's times come from fewer runs and 2,000 namespaces instead
#       of 10,000: another setup, so it never replaces a full run's figures.
#   Each block is replaced whole, with the date and machine of this run, by
#   tests/bench/write-block (atomic rename). Other docs quote these figures
#   only as links to the table; tests/docs.rs checks each quote against it.
#
# Everything syncbox-side runs the shipped binary: the static musl one
# rootfs/build-image puts in the image.
# init supervises the stand-in engine (tests/support/stand_in_engine.rs), so
# the init figures are init's own overhead plus its 250 ms quiet period; a
# real btsync adds its own stop and start time.
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "${1:-}" = "--real" ] && exec tests/bench/real-engine.sh "${@:2}"
quick=false
write=false
for arg in "$@"; do
  case $arg in
  --quick) quick=true ;;
  --write) write=true ;;
  *) echo "usage: tests/bench/run.sh [--quick] [--write] | --real" >&2; exit 2 ;;
  esac
done
figures="$PWD/docs/figures.md"
# Refuse before a run of minutes, not after it: the blocks must be there.
if $write; then
  for block in sizes speed; do
    grep -qx "<!-- bench:begin $block -->" "$figures" ||
      { echo "bench: $figures has no block $block to write" >&2; exit 2; }
  done
fi
if $quick; then runs=200; many=2000; adds=5; else runs=1000; many=10000; adds=20; fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need hyperfine || ! need busybox || [ ! -x /usr/bin/tini-static ] || [ ! -x /usr/bin/tini ]; then
  echo "installing benchmark anchors (hyperfine, busybox-static, tini) with apt-get" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine busybox-static tini >/dev/null
fi
target=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
cargo build --quiet --release --locked --target "$target"
cargo build --quiet --locked --example stand-in-btsync
stable_syncbox="$PWD/target/$target/release/syncbox"
engine="$PWD/target/debug/examples/stand-in-btsync"

work=$(mktemp -d /tmp/syncbox-bench.XXXXXX)
# The shipped binary is the one rootfs/build-image puts in the image (nightly
# build-std when rustup has nightly, else the stable build above): stage a
# context once and measure that binary everywhere below.
context="$work/context"
rootfs/build-image --context-only --context "$context" "$engine" 2>"$work/build.log" >/dev/null ||
  { cat "$work/build.log" >&2; exit 1; }
syncbox="$context/rootfs/bin/syncbox"
built_with=$(sed -n 's/^build-image: syncbox: [0-9]* bytes, built with \(.*\)$/\1/p' "$work/build.log")
pids=()
image=
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [ -z "$image" ] || docker rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bin" "$work/data" "$work/many"
"$syncbox" --install "$work/bin"
export BTSYNC_DATA="$work/data"

# Mean seconds of a command, measured by hyperfine without a shell.
mean() {
  hyperfine --style none --shell=none --warmup 20 --runs "$runs" \
    --export-json "$work/h.json" "$@" >/dev/null 2>&1
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$work/h.json"
}
py() { python3 -c "import sys; a = sys.argv[1:]; print($1)" "${@:2}"; }
ms() { py 'f"{float(a[0])*1000:.3f} ms"' "$1"; }
kib() { py 'f"{int(a[0])/1024:,.0f} KiB"' "$1"; }
bytes() { py 'f"{int(a[0]):,} bytes"' "$1"; }
ratio() { py 'f"{float(a[0])/float(a[1]):.2f}"' "$1" "$2"; }
now() { date +%s.%N; }
rss_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# Two tables: speed (times, memory, counts) and sizes; see --write above.
speed_rows=()
size_rows=()
cells() { printf '| %s | %s | %s | %s | %s |' "$@"; }
row() { speed_rows+=("$(cells "$@")"); }
size_row() { size_rows+=("$(cells "$@")"); }

# 1. has: exec to exit, against busybox's `test -d` (one stat, static binary).
"$work/bin/add" gitlab
has_one=$(mean "$work/bin/has gitlab")
test_d=$(mean "busybox test -d $work/data/gitlab")
row "\`has NS\` exec to exit" "$(ms "$has_one")" "busybox \`test -d\`: $(ms "$test_d")" "$(ratio "$has_one" "$test_d")" "<= 1.2"

# 2. Size of the static binary with every applet.
size=$(stat -c %s "$syncbox")
tini_static=$(stat -c %s /usr/bin/tini-static)
printf 'fn main() { println!("hello"); }\n' > "$work/hello.rs"
rustc --edition 2021 --target "$target" -C opt-level=s -C panic=abort -C strip=symbols \
  -o "$work/hello" "$work/hello.rs"
hello=$(stat -c %s "$work/hello")
stable_size=$(stat -c %s "$stable_syncbox")
size_row "static binary size, the image's (built with $built_with)" "$(kib "$size") ($(bytes "$size"))" "tini-static: $(kib "$tini_static") ($(bytes "$tini_static"))" "$(ratio "$size" "$tini_static")" "<= 1.0"
size_row "static binary size, stable release build" "$(kib "$stable_size") ($(bytes "$stable_size"))" "tini-static: $(kib "$tini_static") ($(bytes "$tini_static"))" "$(ratio "$stable_size" "$tini_static")" "-"
size_row "static binary size, the image's" "$(kib "$size")" "musl hello-world: $(kib "$hello")" "$(ratio "$size" "$hello")" "-"

# 3. has and list with many namespaces.
export BTSYNC_DATA="$work/many"
seq -f "ns%05g" 1 "$many" | xargs -P 4 -n 50 sh -c 'for n; do "$0" "$n"; done' "$work/bin/add"
count=$("$work/bin/list" | wc -w)
[ "$count" -eq "$many" ] || { echo "expected $many namespaces, list shows $count" >&2; exit 1; }
# The 1-namespace figure again, right beside it: machine load drifts
# during a run, and these two are compared with each other.
has_many=$(mean "$work/bin/has ns00001")
has_one_again=$(BTSYNC_DATA="$work/data" mean "$work/bin/has gitlab")
list_many=$(mean "$work/bin/list")
# busybox ls reads and sorts the same directory of registry entries.
ls_many=$(mean "busybox ls $work/many/.btsync/namespaces")
row "\`has NS\` with $many namespaces" "$(ms "$has_many")" "with 1 namespace: $(ms "$has_one_again")" "$(ratio "$has_many" "$has_one_again")" "~1.0"
row "\`list\` with $many namespaces" "$(ms "$list_many")" "busybox \`ls\` of the $many registry entries: $(ms "$ls_many")" "$(ratio "$list_many" "$ls_many")" "< 10 ms"

# 4. init: add -> engine serves the folder (config-file mode, by reload; WebUI
#    mode, the default, in 4b), and a burst of 50 adds.
export BTSYNC_DATA="$work/init" BTSYNC_BIN="$engine" STAND_IN_LOG="$work/engine.log" BTSYNC_ENGINE_API=config
mkdir "$BTSYNC_DATA"
# The anchor: the same add with no init running (registry and folder only).
add_alone=$(mean --prepare "$work/bin/del --no-wait solo" "$work/bin/add solo")
"$work/bin/del" --no-wait solo 2>/dev/null
starts() { if [ -f "$STAND_IN_LOG" ]; then grep -c '"event":"start"' "$STAND_IN_LOG" || true; else echo 0; fi; }
wait_starts() { # until the engine logged at least $1 starts (60 s at most)
  for _ in $(seq 3000); do [ "$(starts)" -ge "$1" ] && return 0; sleep 0.02; done
  echo "the engine did not start" >&2; exit 1
}
"$syncbox" add seed
"$syncbox" init >"$work/init.out" 2>"$work/init.log" &
init_pid=$!
pids+=("$init_pid")
wait_starts 1
init_rss=$(rss_kib "$init_pid" VmRSS)

latencies=()
for i in $(seq 1 "$adds"); do
  t0=$(now); "$work/bin/add" "single-$i"; t1=$(now)
  latencies+=("$(py 'float(a[1]) - float(a[0])' "$t0" "$t1")")
done
read -r add_mean add_max < <(py 'f"{sum(map(float, a))/len(a)} {max(map(float, a))}"' "${latencies[@]}")
row "\`add NS\` -> engine serves NS, reloaded (mean of $adds; max $(ms "$add_max"))" "$(ms "$add_mean")" \
  "\`add\` with no init: $(ms "$add_alone")" "$(ratio "$add_mean" "$add_alone")" "< 1 s"

reloads() { if [ -f "$STAND_IN_LOG" ]; then grep -c '"event":"reload"' "$STAND_IN_LOG" || true; else echo 0; fi; }
before=$(( $(starts) + $(reloads) ))
for i in $(seq -w 1 50); do "$work/bin/add" "burst-$i" & adders+=($!); done
failed=0
for pid in "${adders[@]}"; do wait "$pid" || failed=$((failed + 1)); done
[ "$failed" -eq 0 ] || { echo "$failed of the 50 concurrent adds failed" >&2; exit 1; }
# init answers once it spawned the engine; the stand-in logs its start a moment later.
engine_pid=$("$syncbox" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["engine"]["pid"])')
for _ in $(seq 3000); do grep -q "\"pid\":$engine_pid[,}]" "$STAND_IN_LOG" && break; sleep 0.02; done
burst=$(( $(starts) + $(reloads) - before ))
row "engine reloads or restarts for 50 concurrent \`add\`s" "$burst" "one per add, unbatched: 50" "$(ratio "$burst" 50)" "<= 2"
init_hwm=$(rss_kib "$init_pid" VmHWM)
# Anchors of section 6: the same questions to an init with a few local namespaces.
health_few=$(mean "$work/bin/health")
status_few=$(mean "$work/bin/status --json")
kill -TERM "$init_pid"; wait "$init_pid" || true
pids=()

# 4b. add until the engine serves the folder and del until it let go of it:
#     WebUI mode (init's default: folders over the engine's interface)
#     against config-file mode by reload and by restart, with the stand-in
#     and, when it can run here (root, tests/real-engine), the real btsync
#     1.4.111 offline (own network namespace, no discovery).
apply_latency() { # DATA BIN MODE WRAPPER... -> "add_mean add_max del_mean del_max" seconds of $adds each
  local data=$1 bin=$2 mode=$3; shift 3
  local api=config apply=$mode
  [ "$mode" = webui ] && { api=webui; apply=reload; }
  mkdir -p "$data"
  BTSYNC_DATA="$data" "$syncbox" add base >/dev/null
  BTSYNC_DATA="$data" BTSYNC_BIN="$bin" BTSYNC_APPLY="$apply" BTSYNC_ENGINE_API="$api" \
    BTSYNC_USE_TRACKER=false BTSYNC_USE_RELAY_SERVER=false BTSYNC_SEARCH_LAN=false \
    BTSYNC_KNOWN_HOSTS=127.0.0.1:1 BTSYNC_LISTEN_PORT=0 \
    "$@" sh -c 'ip link set lo up 2>/dev/null; exec "$0" init' "$syncbox" >"$data.out" 2>"$data.log" &
  local pid=$! lat=() dlat=()
  pids+=("$pid")
  for _ in $(seq 3000); do
    BTSYNC_DATA="$data" "$syncbox" status --json 2>/dev/null | grep -q '"state":"running"' && break
    sleep 0.02
  done
  for i in $(seq 1 "$adds"); do
    t0=$(now); BTSYNC_DATA="$data" "$work/bin/add" "single-$i"; t1=$(now)
    lat+=("$(py 'float(a[1]) - float(a[0])' "$t0" "$t1")")
  done
  for i in $(seq 1 "$adds"); do
    t0=$(now); BTSYNC_DATA="$data" "$syncbox" del "single-$i"; t1=$(now)
    dlat+=("$(py 'float(a[1]) - float(a[0])' "$t0" "$t1")")
  done
  kill -TERM "$pid"; wait "$pid" || true
  pids=()
  py 'f"{sum(map(float, a))/len(a)} {max(map(float, a))}"' "${lat[@]}" | tr '\n' ' '
  py 'f"{sum(map(float, a))/len(a)} {max(map(float, a))}"' "${dlat[@]}"
}
latency_rows() { # ENGINE-NAME BIN WRAPPER...
  local name=$1 bin=$2; shift 2
  local tag=${name%% *}
  read -r webui_add webui_add_max webui_del webui_del_max < <(apply_latency "$work/$tag-webui" "$bin" webui "$@")
  read -r reload_add reload_add_max reload_del reload_del_max < <(apply_latency "$work/$tag-reload" "$bin" reload "$@")
  read -r restart_add restart_add_max restart_del restart_del_max < <(apply_latency "$work/$tag-restart" "$bin" restart "$@")
  row "\`add NS\` until $name serves NS, WebUI mode (mean of $adds; max $(ms "$webui_add_max"))" "$(ms "$webui_add")" \
    "config-file mode by reload: $(ms "$reload_add") (max $(ms "$reload_add_max"))" "$(ratio "$webui_add" "$reload_add")" "< 0.5 s"
  row "\`add NS\` until $name serves NS, config-file mode by reload (mean of $adds; max $(ms "$reload_add_max"))" "$(ms "$reload_add")" \
    "by restart: $(ms "$restart_add") (max $(ms "$restart_add_max"))" "$(ratio "$reload_add" "$restart_add")" "< 0.5 s"
  row "\`del NS\` until $name let go of NS, WebUI mode (mean of $adds; max $(ms "$webui_del_max"))" "$(ms "$webui_del")" \
    "config-file mode by reload: $(ms "$reload_del") (max $(ms "$reload_del_max"))" "$(ratio "$webui_del" "$reload_del")" "-"
}
latency_rows "the stand-in" "$engine" env
real_engine=
if [ "$(id -u)" = 0 ] && need unshare && real=$(tests/real-engine 2>/dev/null); then
  real_engine=$real
  latency_rows "btsync 1.4.111" "$real" unshare -n
else
  echo "bench: no real btsync here (needs root and tests/real-engine): its add/del rows are left out" >&2
fi

# 4c. init at rest: CPU time per minute while 100 namespaces sit idle, in
#     WebUI mode (which reads the engine's state only when asked) against
#     config-file mode, each beside the engine's own CPU in the same minute.
idle_cpu() { # DATA BIN API SECONDS WRAPPER... -> "init_ms_per_min engine_ms_per_min"
  local data=$1 bin=$2 api=$3 window=$4; shift 4
  mkdir -p "$data"
  for i in $(seq -w 1 100); do BTSYNC_DATA="$data" "$syncbox" add "idle-$i" >/dev/null; done
  BTSYNC_DATA="$data" BTSYNC_BIN="$bin" BTSYNC_ENGINE_API="$api" \
    BTSYNC_USE_TRACKER=false BTSYNC_USE_RELAY_SERVER=false BTSYNC_SEARCH_LAN=false \
    BTSYNC_KNOWN_HOSTS=127.0.0.1:1 BTSYNC_LISTEN_PORT=0 \
    "$@" sh -c 'ip link set lo up 2>/dev/null; exec "$0" init' "$syncbox" >"$data.out" 2>"$data.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 3000); do
    BTSYNC_DATA="$data" "$syncbox" status --json 2>/dev/null | grep -q '"state":"running"' && break
    sleep 0.02
  done
  sleep "$idle_settle" # the engine takes up its 100 folders; then the minute at rest
  # env and unshare -n exec, and so does sh: $pid is init itself.
  local init_pid=$pid engine_pid
  engine_pid=$(BTSYNC_DATA="$data" "$syncbox" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["engine"]["pid"])')
  local tck i0 e0 i1 e1
  tck=$(getconf CLK_TCK)
  i0=$(awk '{print $14 + $15}' "/proc/$init_pid/stat"); e0=$(awk '{print $14 + $15}' "/proc/$engine_pid/stat" 2>/dev/null || echo 0)
  sleep "$window"
  i1=$(awk '{print $14 + $15}' "/proc/$init_pid/stat"); e1=$(awk '{print $14 + $15}' "/proc/$engine_pid/stat" 2>/dev/null || echo 0)
  kill -TERM "$pid"; wait "$pid" || true
  pids=()
  py 'f"{(int(a[1]) - int(a[0])) * 1000 / int(a[4]) * 60 / float(a[5]):.0f} {(int(a[3]) - int(a[2])) * 1000 / int(a[4]) * 60 / float(a[5]):.0f}"' \
    "$i0" "$i1" "$e0" "$e1" "$tck" "$window"
}
idle_window=$($quick && echo 20 || echo 60)
# For 120 s after giving folders, WebUI mode looks at them once a second (a
# first exchange that never starts is taken up again): a full run measures
# after that; a quick run from 5 s on, which includes that watch.
idle_settle=$($quick && echo 5 || echo 125)
idle_rows() { # ENGINE-NAME BIN WRAPPER...
  local name=$1 bin=$2; shift 2
  local tag=${name%% *}
  read -r webui_init webui_engine < <(idle_cpu "$work/$tag-idle-webui" "$bin" webui "$idle_window" "$@")
  read -r config_init config_engine < <(idle_cpu "$work/$tag-idle-config" "$bin" config "$idle_window" "$@")
  row "init CPU per minute, 100 idle namespaces, $name, WebUI mode (over ${idle_window} s from ${idle_settle} s after the start)" "${webui_init} ms" \
    "the engine in the same minute: ${webui_engine} ms; init in config-file mode: ${config_init} ms" "-" "-"
}
idle_rows "the stand-in" "$engine" env
[ -n "$real_engine" ] && idle_rows "btsync 1.4.111" "$real_engine" unshare -n

# 5. Memory: init vs tini supervising the same engine with the same config.
cp "$BTSYNC_DATA/.btsync/btsync.conf" "$work/tini.conf"
before=$(starts)
/usr/bin/tini -s -- "$engine" --nodaemon --config "$work/tini.conf" >/dev/null 2>&1 &
tini_pid=$!
pids+=("$tini_pid")
wait_starts $((before + 1))
tini_rss=$(rss_kib "$tini_pid" VmRSS)
kill -TERM "$tini_pid"; wait "$tini_pid" || true
pids=()
row "init resident memory, supervising (VmRSS)" "$(kib $((init_rss * 1024)))" "tini: $(kib $((tini_rss * 1024)))" "$(ratio "$init_rss" "$tini_rss")" "-"
row "init peak resident memory after $((adds + 50)) adds (VmHWM)" "$(kib $((init_hwm * 1024)))" "tini: $(kib $((tini_rss * 1024)))" "$(ratio "$init_hwm" "$tini_rss")" "-"

# 6. status and health of a cluster node whose registry declares $many
#    namespaces (written straight into its registry folder, as the engine
#    would sync them in): the reply is bounded, so it stays quick.
#    The cap on cluster namespaces is raised to $many: the figure is about
#    a node that holds them all.
export BTSYNC_DATA="$work/cluster" BTSYNC_CLUSTER_KEY="correct horse battery staple" \
  BTSYNC_CLUSTER_MAX_NAMESPACES="$many"
mkdir -p "$BTSYNC_DATA/.btsync/cluster"
# 925124d2a45407c2 is the cluster id of that key (docs/cluster.md test vector).
python3 - "$BTSYNC_DATA/.btsync/cluster" "$many" <<'PY'
import json, sys, time
folder, count = sys.argv[1], int(sys.argv[2])
at = int(time.time() * 1000) - 60_000
for i in range(1, count + 1):
    name = f"ns{i:05d}"
    record = {"v": 1, "cluster": "925124d2a45407c2", "name": name, "state": "declared",
              "access": "read-write", "at": at, "device": "aaaaaaaaaaaaaaaa", "device_name": "bench"}
    with open(f"{folder}/{name}@aaaaaaaaaaaaaaaa.json", "w") as f:
        f.write(json.dumps(record) + "\n")
PY
"$syncbox" init >"$work/cluster-init.out" 2>"$work/cluster-init.log" &
init_pid=$!
pids+=("$init_pid")
held() { "$syncbox" status --json 2>/dev/null | python3 -c \
  'import json,sys; e=json.load(sys.stdin)["engine"]; print(e["folder_count"] if e["state"] == "running" else 0)' \
  2>/dev/null || echo 0; }
t0=$(now)
for _ in $(seq 1200); do [ "$(held)" -ge "$many" ] && break; sleep 0.5; done
[ "$(held)" -ge "$many" ] || { echo "the cluster node never ran with $many namespaces" >&2; exit 1; }
applied=$(py 'float(a[1]) - float(a[0])' "$t0" "$(now)")
health_many=$(mean "$work/bin/health")
status_many=$(mean "$work/bin/status --json")
status_bytes=$("$syncbox" status --json | wc -c)
kill -TERM "$init_pid"; wait "$init_pid" || true
pids=()
unset BTSYNC_CLUSTER_KEY BTSYNC_CLUSTER_MAX_NAMESPACES
row "\`health\` with $many cluster namespaces (applied in $(py 'f"{float(a[0]):.0f} s"' "$applied"))" "$(ms "$health_many")" \
  "with a few local namespaces: $(ms "$health_few")" "$(ratio "$health_many" "$health_few")" "-"
row "\`status --json\` with $many cluster namespaces ($status_bytes bytes)" "$(ms "$status_many")" \
  "with a few local namespaces: $(ms "$status_few")" "$(ratio "$status_many" "$status_few")" "-"

# 7. Image bytes beyond btsync and its libraries (the stand-in engine and the
#    glibc loader and libraries it needs stand for btsync's).
if $quick; then
  engine_bytes=$(sed -n 's/.*btsync and its [0-9]* loader\/library files: \([0-9]*\) bytes.*/\1/p' "$work/build.log")
  staged=$(find "$context/rootfs" -type f,l -printf '%s\n' | awk '{ s += $1 } END { print s }')
  extra=$((staged - engine_bytes)); how="staged context, files and links"
else
  image="syncbox-bench-$$:latest"
  rootfs/build-image --tag "$image" --syncbox "$syncbox" --context "$work/image-context" "$engine" 2>"$work/build.log" >/dev/null
  engine_bytes=$(sed -n 's/.*btsync and its [0-9]* loader\/library files: \([0-9]*\) bytes.*/\1/p' "$work/build.log")
  extra=$(sed -n 's/.*without btsync and its libraries: \([0-9]*\) bytes.*/\1/p' "$work/build.log")
  how="docker image size"
fi
# The anchor: what btsync 1.4.111 itself needs (ldd of the real engine, as
# build-image stages it) when it is here; else what the stand-in needs, glibc's
# loader and libraries too but not the same set.
if [ -n "$real_engine" ]; then
  rootfs/build-image --context-only --syncbox "$syncbox" --context "$work/real-context" "$real_engine" \
    2>"$work/real-build.log" >/dev/null || { cat "$work/real-build.log" >&2; exit 1; }
  real_bytes=$(sed -n 's/.*btsync and its [0-9]* loader\/library files: \([0-9]*\) bytes.*/\1/p' "$work/real-build.log")
  libraries=$((real_bytes - $(stat -c %s "$real_engine")))
  whose="btsync 1.4.111 needs"
else
  libraries=$((engine_bytes - $(stat -c %s "$engine")))
  whose="the stand-in engine needs (btsync 1.4.111 not here)"
fi
size_row "image bytes beyond btsync and its libraries ($how)" "$(kib "$extra") ($(bytes "$extra"))" \
  "the loader and libraries $whose: $(kib "$libraries")" "$(ratio "$extra" "$libraries")" "< 1 MiB"

mode=$($quick && echo quick || echo full)
machine="$(nproc) cores, $(uname -srm)"
load=$(cut -d' ' -f1 /proc/loadavg)
table() {
  echo "| figure | syncbox | anchor (same run) | ratio | goal |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "$@"
}
echo "syncbox benchmark ($mode run) on $machine, $(date -u +%Y-%m-%d), load $(cut -d' ' -f1-3 /proc/loadavg)"
table "${speed_rows[@]}"
echo
table "${size_rows[@]}"

$write || exit 0
flags=$($quick && echo "--quick --write" || echo "--write")
{
  echo "Measured on $(date -u +%Y-%m-%d) by \`tests/bench/run.sh $flags\` ($machine):"
  echo
  table "${size_rows[@]}"
} | tests/bench/write-block "$figures" sizes
echo "bench: wrote the block sizes of docs/figures.md" >&2
if $quick; then
  echo "bench: a quick run leaves the block speed (a full run's figures) as it is" >&2
  exit 0
fi
{
  echo "Measured on $(date -u +%Y-%m-%d) by \`tests/bench/run.sh $flags\` (full run: $runs runs a command," \
    "$many namespaces, $adds single \`add\`s; $machine, load average $load at the end):"
  echo
  table "${speed_rows[@]}"
} | tests/bench/write-block "$figures" speed
echo "bench: wrote the block speed of docs/figures.md" >&2
