#!/usr/bin/env bash
# Real-engine figures (`tests/bench/run.sh --real`): btsync 1.4.111 in the image
# rootfs/build-image builds, containers on a docker network created with
# --internal, tracker/relay/DHT/LAN search off, peers from BTSYNC_KNOWN_HOSTS.
# Each figure is printed beside an anchor measured in the same run. It asserts
# nothing; it reports. Needs docker and root; takes about 10 minutes.
#
# Then the same two engines alone, outside docker, in a network namespace of
# their own (unshare -n, loopback only): docker's share of the figures. Last,
# issue 14: a 200 MB transfer while the receiving node applies 20 adds and 20
# dels, by reload and by restart, against the same transfer with no churn.
set -euo pipefail
cd "$(dirname "$0")/../.."

engine=${SYNCBOX_TEST_BTSYNC:-$(tests/real-engine)}
id=sbxb-$$
image=$id:bench
net=$id-net
containers=()
pids=()
work=$(mktemp -d /tmp/syncbox-bench-real.XXXXXX)
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  ((${#containers[@]} == 0)) || docker rm -f -v "${containers[@]}" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
  docker rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

py() { python3 -c "import sys; a = sys.argv[1:]; print($1)" "${@:2}"; }
now() { date +%s.%N; }
since() { py 'f"{float(a[1]) - float(a[0]):.2f}"' "$1" "$(now)"; }
median() { py 'sorted(map(float, a))[len(a) // 2]' "$@"; }
s() { py 'f"{float(a[0]):.2f} s"' "$1"; }
ratio() { py 'f"{float(a[0])/float(a[1]):.0f}"' "$1" "$2"; }
ratio2() { py 'f"{float(a[0])/float(a[1]):.2f}"' "$1" "$2"; }

rows=()
row() { rows+=("$(printf '| %s | %s | %s | %s |' "$@")"); }

# Seconds until FILE holds what REFERENCE holds (cmp), at most 300 s (or
# TRIES looks 0.05 s apart).
wait_same() {
  local t0=$1 file=$2 reference=$3 tries=${4:-6000}
  for _ in $(seq "$tries"); do
    cmp -s "$file" "$reference" && { since "$t0"; return 0; }
    sleep 0.05
  done
  echo "bench: $file never arrived" >&2
  exit 1
}
# Seconds until PATH exists, at most 300 s.
wait_exists() {
  local t0=$1 path=$2
  for _ in $(seq 6000); do
    [ -e "$path" ] && { since "$t0"; return 0; }
    sleep 0.05
  done
  echo "bench: $path never appeared" >&2
  exit 1
}
# The anchor for moving a file: `docker cp` of the same file into the
# container, outside any synced folder.
docker_cp() {
  local t0
  t0=$(now)
  docker cp "$1" "$2:/tmp/anchor" >/dev/null
  since "$t0"
}

offline=(-e BTSYNC_USE_TRACKER=false -e BTSYNC_USE_RELAY_SERVER=false -e BTSYNC_USE_DHT=false -e BTSYNC_SEARCH_LAN=false)
# node NAME KNOWN_HOSTS [docker run options...]: container $id-NAME on $work/NAME.
node() {
  local name=$id-$1 dir=$work/$1 hosts=$2
  shift 2
  mkdir -p "$dir"
  containers+=("$name")
  docker run -d --name "$name" --hostname "$name" --network "$net" -v "$dir:/data" \
    -e "BTSYNC_KNOWN_HOSTS=$hosts" "${offline[@]}" "$@" "$image" >/dev/null
  # init answers
  for _ in $(seq 300); do docker exec "$name" status >/dev/null 2>&1 && return 0; sleep 0.1; done
}
ctl() { docker exec "$1" ctl "${@:2}"; }

rootfs/build-image --tag "$image" --context "$work/context" "$engine" >/dev/null 2>"$work/build.log"
docker network create --internal "$net" >/dev/null

# 1. The first add on a fresh node, beside an add on the same node once its
#    engine runs (a restart of the real engine with one more folder).
node fresh "$id-fresh:55555"
t0=$(now); ctl "$id-fresh" add first >/dev/null; first_add=$(since "$t0")
t0=$(now); ctl "$id-fresh" add second >/dev/null; next_add=$(since "$t0")
row "first \`add\` on a fresh node (returns once the engine runs it)" "$(s "$first_add")" \
  "the next \`add\` on the same node: $(s "$next_add")" "$(py 'f"{float(a[0])/float(a[1]):.2f}"' "$first_add" "$next_add")"

# 2. Two fresh nodes: the first file, later changes each way, 50 MB.
hosts="$id-a:55555,$id-b:55555"
node a "$hosts"
node b "$hosts"
ctl "$id-a" add shared >/dev/null
key=$(docker exec "$id-a" secret shared)
ctl "$id-b" add --token="$key" shared >/dev/null
echo "first file" >"$work/small"
t0=$(now); cp "$work/small" "$work/a/shared/first"; first=$(wait_same "$t0" "$work/b/shared/first" "$work/small")
anchor=$(docker_cp "$work/small" "$id-b")
row "first file between two fresh nodes" "$(s "$first")" "\`docker cp\` of the same file: $(s "$anchor")" "$(ratio "$first" "$anchor")"
ab=() ba=()
for i in 1 2 3 4 5; do
  echo "change $i a" >"$work/small"
  t0=$(now); cp "$work/small" "$work/a/shared/change-a"; ab+=("$(wait_same "$t0" "$work/b/shared/change-a" "$work/small")")
  echo "change $i b" >"$work/small"
  t0=$(now); cp "$work/small" "$work/b/shared/change-b"; ba+=("$(wait_same "$t0" "$work/a/shared/change-b" "$work/small")")
done
anchor=$(docker_cp "$work/small" "$id-b")
row "a later change a -> b (median of 5: ${ab[*]} s)" "$(s "$(median "${ab[@]}")")" "\`docker cp\`: $(s "$anchor")" "$(ratio "$(median "${ab[@]}")" "$anchor")"
row "a later change b -> a (median of 5: ${ba[*]} s)" "$(s "$(median "${ba[@]}")")" "\`docker cp\`: $(s "$anchor")" "$(ratio "$(median "${ba[@]}")" "$anchor")"
head -c 50000000 /dev/urandom >"$work/big"
t0=$(now); cp "$work/big" "$work/a/shared/big"; big=$(wait_same "$t0" "$work/b/shared/big" "$work/big")
anchor=$(docker_cp "$work/big" "$id-b")
row "50 MB file a -> b (until b's copy is complete)" "$(s "$big")" "\`docker cp\` of the same 50 MB: $(s "$anchor")" "$(ratio "$big" "$anchor")"
docker rm -f -v "$id-fresh" "$id-a" "$id-b" >/dev/null

# 3. Cluster mode: add --cluster on one node until every node's engine has
#    loaded the namespace (its .sync/ID), beside a local add on one node.
hosts="$id-c0:55555,$id-c1:55555,$id-c2:55555"
for n in c0 c1 c2; do node "$n" "$hosts" -e "BTSYNC_CLUSTER_KEY=bench cluster key"; done
for n in c0 c1 c2; do wait_exists "$(now)" "$work/$n/.btsync/cluster/.sync/ID" >/dev/null; done
t0=$(now); ctl "$id-c0" add --cluster gitlab >/dev/null
for n in c0 c1 c2; do wait_exists "$t0" "$work/$n/gitlab/.sync/ID" >/dev/null; done
cluster=$(since "$t0")
# Again, now that the engines have met: the registry's own first contact is
# no longer part of it.
t0=$(now); ctl "$id-c1" add --cluster wiki >/dev/null
for n in c0 c1 c2; do wait_exists "$t0" "$work/$n/wiki/.sync/ID" >/dev/null; done
cluster_again=$(since "$t0")
t0=$(now); ctl "$id-c1" add local >/dev/null; local_add=$(since "$t0")
row "\`add --cluster\` until all 3 fresh nodes' engines hold the namespace" "$(s "$cluster")" \
  "a local \`add\` on one of them: $(s "$local_add")" "$(ratio "$cluster" "$local_add")"
row "a second \`add --cluster\`, the engines connected" "$(s "$cluster_again")" \
  "a local \`add\`: $(s "$local_add")" "$(ratio "$cluster_again" "$local_add")"

# 4. The engine alone, outside docker: two engines in one network namespace
#    of their own (unshare -n, loopback only), same settings, new files each
#    time as above. Where the time of a change goes is in docs/figures.md.
alone=$work/alone
mkdir -p "$alone"
read -r first_alone change_alone < <(unshare -n bash -s "$engine" "$alone" <<'SCRIPT'
set -eu
engine=$1 dir=$2
ip link set lo up 2>/dev/null || true
key=$("$engine" --generate-secret)
for n in 0 1; do
  mkdir -p "$dir/s$n" "$dir/d$n"
  cat >"$dir/c$n.json" <<JSON
{ "device_name": "n$n", "listening_port": $((40000 + n)), "storage_path": "$dir/s$n", "use_upnp": false,
  "shared_folders": [ { "secret": "$key", "dir": "$dir/d$n", "use_relay_server": false, "use_tracker": false,
    "use_dht": false, "search_lan": false, "use_sync_trash": true, "known_hosts": ["127.0.0.1:$((40001 - n))"] } ] }
JSON
  "$engine" --nodaemon --config "$dir/c$n.json" >"$dir/log$n" 2>&1 &
done
now() { date +%s.%N; }
until_same() { # at most 300 s, else "nan"
  local t0; t0=$(now)
  for _ in $(seq 6000); do
    [ "$(cat "$1" 2>/dev/null)" = "$2" ] && { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$(now)"; return; }
    sleep 0.05
  done
  echo nan
}
echo x >"$dir/d0/first"; first=$(until_same "$dir/d1/first" x)
changes=()
for i in 1 2 3 4 5; do echo "$i" >"$dir/d0/f$i"; changes+=("$(until_same "$dir/d1/f$i" "$i")"); done
kill %1 %2; wait || true
echo "$first $(python3 -c 'import sys; print(sorted(map(float, sys.argv[1:]))[2])' "${changes[@]}")"
SCRIPT
)
row "the engines alone (no docker, loopback): first file / a later change (median of 5)" \
  "$(s "$first_alone") / $(s "$change_alone")" "in docker above: $(s "$first") / $(s "$(median "${ab[@]}")")" "-"

# 5. Issue 14: what applying `add`/`del` costs a transfer in flight. Per
#    BTSYNC_APPLY mode of node a: a 200 MB file b -> a while a runs 20 `add`s
#    and then 20 `del`s of other namespaces, one after the other, each
#    returning once applied, started once a began downloading (its NAME.!sync
#    exists); the anchor is the same transfer with no churn, once before and
#    once after (their mean). a receives: its engine holds the download in
#    progress, so a restart of it cuts the transfer off until the engines
#    meet again.
#    Times from the file appearing in b's folder (a hard link of a fresh
#    random file: never half written) until a's copy equals it; the download
#    alone from a's NAME.!sync appearing.
# Seconds from T0 until DIR/NAME.!sync (or DIR/NAME) exists.
wait_download() {
  local t0=$1 dir=$2 name=$3
  for _ in $(seq 6000); do
    [ -e "$dir/$name.!sync" ] || [ -e "$dir/$name" ] && { since "$t0"; return 0; }
    sleep 0.05
  done
  echo "bench: $dir/$name never began to arrive" >&2
  exit 1
}
# churn NODE: the 40 changes; prints their seconds and the time they ended.
churn() {
  local t0 i
  t0=$(now)
  for i in $(seq -w 1 20); do ctl "$1" add "churn-$i" >/dev/null; done
  for i in $(seq -w 1 20); do ctl "$1" del "churn-$i" >/dev/null; done
  echo "$(since "$t0") $(now)"
}
# big_transfer MODE NAME [churn]: a fresh 200 MB file b -> a. Sets `total`
# and `download` (seconds) and `arrived` (when); with `churn` also
# `churn_took` (seconds) and `churn_ended` (when).
big_transfer() {
  local mode=$1 name=$2 t0 start c
  head -c 200000000 /dev/urandom >"$work/$name"
  t0=$(now)
  ln "$work/$name" "$work/$mode-b/bulk/$name"
  wait_download "$t0" "$work/$mode-a/bulk" "$name" >/dev/null
  start=$(now)
  if [ "${3:-}" = churn ]; then
    churn "$id-$mode-a" >"$work/churn-$mode" &
    c=$!
    pids+=("$c")
  fi
  total=$(wait_same "$t0" "$work/$mode-a/bulk/$name" "$work/$name" 12000)
  arrived=$(now)
  download=$(py 'f"{float(a[1]) - float(a[0]):.2f}"' "$start" "$arrived")
  if [ "${3:-}" = churn ]; then
    wait "$c"
    read -r churn_took churn_ended <"$work/churn-$mode"
  fi
}
for mode in webui reload restart; do
  hosts="$id-$mode-a:55555,$id-$mode-b:55555"
  # webui: init's default (folders over the engine's interface); reload
  # and restart: config-file mode's two ways.
  case $mode in
  webui) how=(-e BTSYNC_ENGINE_API=webui) ;;
  *) how=(-e BTSYNC_ENGINE_API=config -e "BTSYNC_APPLY=$mode") ;;
  esac
  node "$mode-a" "$hosts" "${how[@]}"
  node "$mode-b" "$hosts" "${how[@]}"
  ctl "$id-$mode-a" add bulk >/dev/null
  key=$(docker exec "$id-$mode-a" secret bulk)
  ctl "$id-$mode-b" add --token="$key" bulk >/dev/null
  # The engines' first connection (about 30 s) and their first big file
  # (which tends to be slower) are in no figure.
  head -c 50000000 /dev/urandom >"$work/warm"
  ln "$work/warm" "$work/$mode-b/bulk/warm"
  wait_same "$(now)" "$work/$mode-a/bulk/warm" "$work/warm" >/dev/null
  big_transfer "$mode" before
  before=$total before_download=$download
  big_transfer "$mode" churned churn
  busy=$total busy_download=$download busy_arrived=$arrived
  big_transfer "$mode" after
  quiet=$(py 'f"{(float(a[0]) + float(a[1])) / 2:.2f}"' "$before" "$total")
  quiet_download=$(py 'f"{(float(a[0]) + float(a[1])) / 2:.2f}"' "$before_download" "$download")
  counts=$(docker exec "$id-$mode-a" status --json |
    python3 -c 'import json,sys; s = json.load(sys.stdin); print(s["reloads"], "reloads,", s["restarts"], "restarts")')
  when=$(py '"during" if float(a[0]) < float(a[1]) else "after"' "$busy_arrived" "$churn_ended")
  row "200 MB b -> a while a applies 20 \`add\`s + 20 \`del\`s by $mode ($counts; the churn took $(s "$churn_took"), the file arrived $when it)" \
    "$(s "$busy")" "the same 200 MB with no churn (before $before s, after $total s): $(s "$quiet")" "$(ratio2 "$busy" "$quiet")"
  row "... of it the download (a's \`NAME.!sync\` appears to the copy complete), $mode" \
    "$(s "$busy_download")" "with no churn (before $before_download s, after $download s): $(s "$quiet_download")" \
    "$(ratio2 "$busy_download" "$quiet_download")"
  docker rm -f -v "$id-$mode-a" "$id-$mode-b" >/dev/null
  rm -rf "${work:?}/$mode-a" "${work:?}/$mode-b" "$work/warm" "$work/before" "$work/churned" "$work/after"
done

# 6. Issue 20: how long after a fresh node holds every file `wait` says so.
#    tests/docker/sync_state.rs joins a fresh node to 200 MiB in 4 files plus
#    500 small files, 5 times, checks every sha256 the moment `wait`
#    returns, and writes its figures here; the anchor is the transfer itself
#    (from the fresh node's `add` until its last file matched).
wait_json="$work/wait-figures.json"
SYNCBOX_TEST_BTSYNC="$engine" SYNCBOX_BENCH_OUT="$wait_json" tests/docker/run \
  real_btsync_sync_state_wait_on_a_fresh_node_returns_with_every_file >"$work/wait-test.log" 2>&1 ||
  { tail -50 "$work/wait-test.log" >&2; echo "bench: the sync-state proof failed" >&2; exit 1; }
read -r lag_median lag_max lags transfer_median < <(python3 - "$wait_json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lags = sorted(run["lag_s"] for run in r["runs"])
matched = sorted(run["all_files_matched_s"] for run in r["runs"])
print(f"{r['lag_median_s']:.1f} {r['lag_max_s']:.1f} {','.join(f'{x:.1f}' for x in lags)} {matched[len(matched) // 2]:.1f}")
PY
)
row "\`wait\` returned after the last file matched, fresh node, 200 MiB + 500 files (median of 5: $lags s; max $lag_max s; every sha256 matched when it returned, 5 of 5)" \
  "$lag_median s" "the transfer, \`add\` to last file matched (median): $transfer_median s" "$(ratio2 "$lag_median" "$transfer_median")"

echo "syncbox real-engine benchmark (btsync $("$engine" --help 2>/dev/null | head -n1 | awk '{print $NF}')) on $(nproc) cores, $(uname -srm), $(date -u +%Y-%m-%d), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| figure | real engine | anchor (same run) | ratio |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
