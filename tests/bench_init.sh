#!/usr/bin/env bash
# Measure how fast init applies namespace changes (a benchmark, not a test):
#   1. add -> engine restarted latency: wall time of `add NS`, which returns
#      once init has restarted the engine with NS (10 sequential adds);
#   2. a burst of 50 concurrent adds: wall time until all returned and the
#      number of engine restarts it caused.
# Uses the stand-in engine, so the figures are init's own overhead plus the
# 250 ms quiet period; a real btsync adds its own stop/start time.
#
# Usage: tests/bench_init.sh [--release]     (no root needed)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
if [[ "${1:-}" == "--release" ]]; then profile=release; fi
cargo build --quiet $([[ $profile == release ]] && echo --release) --bin syncbox --example stand-in-btsync
syncbox="$PWD/target/$profile/syncbox"
engine="$PWD/target/$profile/examples/stand-in-btsync"

work=$(mktemp -d /tmp/syncbox-bench.XXXXXX)
init_pid=
cleanup() {
    if [[ -n "$init_pid" ]]; then kill -TERM "$init_pid" 2>/dev/null || true; wait "$init_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/data"
export BTSYNC_DATA="$work/data" BTSYNC_BIN="$engine" STAND_IN_LOG="$work/engine.log"

starts() { grep -c '"event":"start"' "$STAND_IN_LOG" 2>/dev/null || echo 0; }
now() { date +%s.%N; }

"$syncbox" add seed
"$syncbox" init 2>"$work/init.log" &
init_pid=$!
for _ in $(seq 200); do [[ $(starts) -ge 1 ]] && break; sleep 0.05; done

echo "profile: $profile   machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "1. add -> engine restarted (10 sequential adds, seconds):"
latencies=()
for i in $(seq 1 10); do
    t0=$(now); "$syncbox" add "single-$i"; t1=$(now)
    latencies+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')")
done
printf '%s\n' "${latencies[@]}" | sort -n | awk '
    { v[NR] = $1; sum += $1 }
    END { printf "   min %.3f  median %.3f  max %.3f  mean %.3f\n", v[1], (v[5] + v[6]) / 2, v[NR], sum / NR }'

before=$(starts)
t0=$(now)
adders=()
for i in $(seq -w 1 50); do "$syncbox" add "burst-$i" & adders+=($!); done
failed=0
for pid in "${adders[@]}"; do wait "$pid" || failed=$((failed + 1)); done
t1=$(now)
# init answers once it spawned the engine; the stand-in logs its start a moment later.
engine_pid=$("$syncbox" status --json | grep -o '"pid":[0-9]*' | sed -n 1p | cut -d: -f2)
for _ in $(seq 200); do grep -q "\"event\":\"start\".*\"pid\":$engine_pid," "$STAND_IN_LOG" && break; sleep 0.02; done
after=$(starts)
echo
echo "2. burst of 50 concurrent adds:"
awk -v a="$t0" -v b="$t1" -v r="$((after - before))" -v f="$failed" \
    'BEGIN { printf "   all 50 returned after %.3f s (%d failed); engine restarts: %d\n", b - a, f, r }'
echo "   engine now: $("$syncbox" status | grep '^folders' | awk '{ print $2 }') folders"
