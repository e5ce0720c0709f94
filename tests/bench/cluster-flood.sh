#!/usr/bin/env bash
# Issue 27's figures (`tests/bench/run.sh --real flood`): one node under init,
# cluster mode on, N declarations appearing at once in its registry (written
# as another device's records, the cap raised to N), for N = 300, 1,000 and
# 3,000: the time until the engine serves every one (status
# `engine.folder_count`, which counts a folder once init saw its proof) and
# the engine's memory then. The anchor, measured in the same run: the same
# engine alone given the same number of folders over its WebUI interface as
# fast as one client can (curl, one request after the other), until every
# folder has its `.sync/ID`. Both run in a network namespace of their own
# (unshare -n, loopback up), tracker, relay and LAN search off: nothing
# leaves the machine. Root; about 15 minutes. It asserts nothing; it reports.
#
#   tests/bench/cluster-flood.sh [N ...]     default: 300 1000 3000
set -euo pipefail
cd "$(dirname "$0")/../.."
counts=("$@")
((${#counts[@]})) || counts=(300 1000 3000)
for n in "${counts[@]}"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "usage: tests/bench/cluster-flood.sh [N ...]" >&2; exit 2; }
done

engine=${SYNCBOX_TEST_BTSYNC:-$(tests/real-engine)}
echo "building syncbox (release)" >&2
cargo build --release --quiet
syncbox=$PWD/target/release/syncbox
work=$(mktemp -d /tmp/syncbox-bench-flood.XXXXXX)
trap 'pkill -KILL -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

py() { python3 -c "import sys; a = sys.argv[1:]; print($1)" "${@:2}"; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# The engine alone: N folders over its WebUI, one request after the other.
# Prints "SECONDS RSS_MB".
alone() {
  local n=$1 dir=$work/alone-$1
  mkdir -p "$dir/storage" "$dir/folders"
  cat >"$dir/conf.json" <<EOF
{"device_name": "alone", "listening_port": 0, "storage_path": "$dir/storage",
 "check_for_updates": false, "use_upnp": false,
 "webui": {"listen": "127.0.0.1:8888", "login": "bench", "password": "bench"}}
EOF
  # shellcheck disable=SC2016
  unshare -n sh -c '
    ip link set lo up
    "$1" --nodaemon --config "$2/conf.json" >"$2/engine.log" 2>&1 &
    engine=$!
    c="curl -s -u bench:bench -c $2/cookies -b $2/cookies"
    for _ in $(seq 100); do $c -o /dev/null http://127.0.0.1:8888/gui/ && break; sleep 0.1; done
    token=$($c -X POST http://127.0.0.1:8888/gui/token.html | sed -n "s/.*none;.>\([^<]*\)<.*/\1/p")
    $c -o /dev/null "http://127.0.0.1:8888/gui/?token=$token&action=setlicenseagreed&value=true"
    t0=$(date +%s.%N)
    for i in $(seq "$3"); do
      mkdir -p "$2/folders/f$i"
      secret=A$(head -c 20 /dev/urandom | base32 | tr -d =)
      $c -o /dev/null "http://127.0.0.1:8888/gui/?token=$token&action=addsyncfolder&path=$2/folders/f$i&secret=$secret&force=true"
    done
    while [ "$(ls "$2"/folders/*/.sync/ID 2>/dev/null | wc -l)" -lt "$3" ]; do sleep 0.1; done
    t1=$(date +%s.%N)
    echo "$(python3 -c "import sys; print(f\"{float(sys.argv[2]) - float(sys.argv[1]):.1f}\")" "$t0" "$t1") $(awk "/VmRSS/ {printf \"%.0f\", \$2 / 1024}" /proc/$engine/status)"
    kill -KILL $engine
  ' sh "$engine" "$dir" "$n"
}

# syncbox init with the cluster registry flooded. Prints "SECONDS RSS_MB
# RESTARTS RELOAD_FALLBACKS".
flood() {
  local n=$1 dir=$work/flood-$1
  mkdir -p "$dir/data"
  # shellcheck disable=SC2016
  unshare -n -p -f --mount-proc sh -c '
    ip link set lo up
    export BTSYNC_DATA=$2/data BTSYNC_BIN=$3 BTSYNC_CLUSTER_KEY="bench flood cluster key" \
      BTSYNC_CLUSTER_MAX_NAMESPACES=$4 BTSYNC_USE_TRACKER=false BTSYNC_USE_RELAY_SERVER=false \
      BTSYNC_SEARCH_LAN=false BTSYNC_USE_DHT=false BTSYNC_KNOWN_HOSTS=127.0.0.1:1 \
      BTSYNC_LISTEN_PORT=0
    syncbox=$1
    "$syncbox" init >"$2/engine.out" 2>"$2/init.log" &
    init=$!
    status() { "$syncbox" status --json 2>/dev/null; }
    field() { status | python3 -c "import json, sys; s = json.load(sys.stdin); print($1)" 2>/dev/null; }
    until [ "$(field "s[\"engine_api\"] == \"webui\" and s[\"engine\"][\"state\"] == \"running\" and not s[\"changes_pending\"]")" = True ]; do
      kill -0 $init 2>/dev/null || { echo "bench: init exited: $(tail -n1 "$2/init.log")" >&2; exit 1; }
      sleep 0.2
    done
    cluster_id=$(field "s[\"cluster\"][\"cluster_id\"]")
    python3 - "$2" "$cluster_id" "$4" <<PY
import json, os, sys, time
data, cluster, n = sys.argv[1] + "/data", sys.argv[2], int(sys.argv[3])
staging, registry = data + "/flood-staging", data + "/.btsync/cluster"
os.makedirs(staging, exist_ok=True)
now = int(time.time() * 1000)
for i in range(n):
    record = {"v": 1, "cluster": cluster, "name": f"flood-{i:04}", "state": "declared",
              "access": "read-write", "at": now, "device": "00000000000000ee",
              "device_name": "bench"}
    with open(f"{staging}/flood-{i:04}@00000000000000ee.json", "w") as f:
        json.dump(record, f)
PY
    t0=$(date +%s.%N)
    for f in "$2"/data/flood-staging/*; do mv "$f" "$2/data/.btsync/cluster/"; done
    until [ "$(field "s[\"engine\"][\"folder_count\"]")" -ge "$4" ] 2>/dev/null; do sleep 0.5; done
    t1=$(date +%s.%N)
    engine=$(field "s[\"engine\"][\"pid\"]")
    echo "$(python3 -c "import sys; print(f\"{float(sys.argv[2]) - float(sys.argv[1]):.1f}\")" "$t0" "$t1") $(awk "/VmRSS/ {printf \"%.0f\", \$2 / 1024}" /proc/$engine/status) $(field "s[\"restarts\"]") $(field "s[\"reload_fallbacks\"]")"
    kill -TERM $init; wait $init
  ' sh "$syncbox" "$dir" "$engine" "$n"
}

echo "| declarations | served by syncbox (engine RSS) | the engine alone, given them over its WebUI (RSS) | ratio | restarts, reload fallbacks |"
echo "|---|---|---|---|---|"
for n in "${counts[@]}"; do
  echo "measuring $n" >&2
  read -r alone_s alone_rss < <(alone "$n")
  read -r flood_s flood_rss restarts fallbacks < <(flood "$n")
  echo "| $(py 'f"{int(a[0]):,}"' "$n") | $flood_s s ($flood_rss MB) | $alone_s s ($alone_rss MB) | $(py 'f"{float(a[0])/float(a[1]):.2f}"' "$flood_s" "$alone_s") | $restarts, $fallbacks |"
done
