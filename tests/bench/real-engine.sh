#!/usr/bin/env bash
# Real-engine figures (`tests/bench/run.sh --real`): btsync 1.4.111 in the image
# rootfs/build-image builds, containers on a docker network created with
# --internal, tracker/relay/DHT/LAN search off, peers from BTSYNC_KNOWN_HOSTS.
# Each figure is printed beside an anchor measured in the same run. It asserts
# nothing; it reports. Needs docker and root; takes about 10 minutes.
#
# Then the same two engines alone, outside docker, in a network namespace of
# their own (unshare -n, loopback only): docker's share of the figures. Then
# issue 14: a 200 MB transfer while the receiving node applies 20 adds and 20
# dels, by reload and by restart, against the same transfer with no churn.
# Last, `add --owner`: 10,000 small files arriving into a namespace with an
# owner, beside the same into one without.
#
#   tests/bench/real-engine.sh          every section
#   tests/bench/real-engine.sh owner    only the last (about 10 minutes)
#   tests/bench/real-engine.sh flood    only issue 27's flood of cluster
#                                       declarations (tests/bench/cluster-flood.sh;
#                                       also run, after the table, by a full run)
set -euo pipefail
cd "$(dirname "$0")/../.."
only=${1:-}
case $only in
"" | owner) ;;
flood) exec tests/bench/cluster-flood.sh "${@:2}" ;;
*) echo "usage: tests/bench/real-engine.sh [owner | flood [N ...]]" >&2; exit 2 ;;
esac

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

# Sections 1 to 6 (their `fi` is before section 7).
if [ -z "$only" ]; then

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

fi

# 7. `add --owner`: 10,000 small files (100 folders of 100, a few bytes
#    each) arriving on node b from node a, into a namespace without an owner
#    and into one with `--owner=70:70`, alternately (without, with, without,
#    with, ...), RUNS times each. Every namespace is fresh (its own key) and
#    fully indexed by a's engine before b's `add` (getsyncfolders counts all
#    10,000 files). Times from b's `add --token=KEY [--owner=70:70]` (which
#    returns once applied) until all 10,000 files are in b's folder, and for
#    the owner: until every entry of the namespace but the engine's .sync/ is 70:70
#    with no group or other permission bit (what init's keeper does). The
#    engines' first connection is in no figure (a warm-up file first).
# engine_files NODE NS: the files NODE's engine counts in /data/NS (its
#   interface's getsyncfolders, asked inside the container's network
#   namespace with the credentials of its config), or -1.
engine_files() {
  local pid
  pid=$(docker top "$1" -eo pid,args | awk '$2 == "/bin/btsync" { print $1; exit }')
  [ -n "$pid" ] || { echo -1; return; }
  python3 - "$pid" "/data/$2" <<'PY'
import json, re, subprocess, sys
pid, path = sys.argv[1], sys.argv[2]
try:
    args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    config = args[args.index(b"--config") + 1].decode()
    webui = json.load(open(f"/proc/{pid}/root{config}"))["webui"]
    base = f"http://{webui['listen']}/gui/"
    def curl(*a):
        return subprocess.run(["nsenter", "-t", pid, "-n", "curl", "-s", "--max-time", "10",
                               "-u", f"{webui['login']}:{webui['password']}", *a],
                              capture_output=True, text=True, check=True).stdout
    page = curl("-i", "-X", "POST", base + "token.html")
    cookie = re.search(r"(?im)^set-cookie:\s*([^;\r\n]+)", page).group(1)
    token = re.search(r"id='token'[^>]*>([^<]*)<", page).group(1)
    folders = json.loads(curl("-b", cookie, f"{base}?token={token}&action=getsyncfolders&discovery=1"))
    print(next(f["files"] for f in folders["folders"] if f["path"] == path))
except Exception:
    print(-1)
PY
}
# arrive T0 DIR COUNT [owner]: seconds from T0 until DIR holds COUNT files
#   (.sync and NAME.!sync left out), and with `owner` also until every entry
#   of DIR, DIR and .sync included, is 70:70 with mode & 077 == 0: "FILES
#   OWNED" (OWNED is "-" without `owner`). At most 600 s.
arrive() {
  python3 - "$@" <<'PY'
import os, stat, sys, time
t0, top, count = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
owner = len(sys.argv) > 4
files_at = owned_at = None
while time.time() - t0 < 600:
    files, foreign = 0, 0
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath == top and ".sync" in dirnames:
            # The engine's own .sync/ stays the engine's (docs/services.md).
            dirnames.remove(".sync")
        for name in dirnames + filenames + ([] if dirpath != top else ["."]):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                foreign += 1
                continue
            if owner and (st.st_uid != 70 or st.st_gid != 70 or (not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077)):
                foreign += 1
            if stat.S_ISREG(st.st_mode) and not name.endswith(".!sync") \
                    and not os.path.relpath(path, top).startswith(".sync"):
                files += 1
    now = time.time()
    if files == count and files_at is None:
        files_at = now - t0
    if files == count and foreign == 0 and owner:
        owned_at = now - t0
    if files_at is not None and (owned_at is not None or not owner):
        print(f"{files_at:.2f} {owned_at:.2f}" if owner else f"{files_at:.2f} -")
        sys.exit(0)
    time.sleep(0.1)
sys.exit(f"bench: {top}: {files} of {count} files, {foreign} entries not 70:70 or readable by others after 600 s")
PY
}
# small_files DIR [owner]: the 10,000 files, as 70:70 with `owner`.
small_files() {
  python3 - "$@" <<'PY'
import os, sys
top, owner = sys.argv[1], len(sys.argv) > 2
for d in range(100):
    folder = os.path.join(top, f"d{d:03}")
    os.mkdir(folder)
    if owner:
        os.chown(folder, 70, 70)
    for f in range(100):
        path = os.path.join(folder, f"f{f:03}")
        with open(path, "w") as out:
            out.write(f"{d}/{f}\n")
        if owner:
            os.chown(path, 70, 70)
PY
}
RUNS=${SYNCBOX_BENCH_OWNER_RUNS:-2}
hosts="$id-o-a:55555,$id-o-b:55555"
node o-a "$hosts"
node o-b "$hosts"
ctl "$id-o-a" add warm >/dev/null
key=$(docker exec "$id-o-a" secret warm)
ctl "$id-o-b" add --token="$key" warm >/dev/null
echo warm >"$work/o-a/warm/first"
wait_exists "$(now)" "$work/o-b/warm/first" >/dev/null
order=()
for i in $(seq "$RUNS"); do order+=("plain$i" "owned$i"); done
for ns in "${order[@]}"; do
  case $ns in
  owned*) ctl "$id-o-a" add --owner=70:70 "$ns" >/dev/null; small_files "$work/o-a/$ns" owner ;;
  *) ctl "$id-o-a" add "$ns" >/dev/null; small_files "$work/o-a/$ns" ;;
  esac
done
for ns in "${order[@]}"; do
  for _ in $(seq 1200); do [ "$(engine_files "$id-o-a" "$ns")" = 10000 ] && break; sleep 0.5; done
  [ "$(engine_files "$id-o-a" "$ns")" = 10000 ] || { echo "bench: a's engine never indexed $ns" >&2; exit 1; }
done
plain=() owned_files=() owned=()
for ns in "${order[@]}"; do
  key=$(docker exec "$id-o-a" secret "$ns")
  t0=$(now)
  case $ns in
  owned*)
    ctl "$id-o-b" add --token="$key" --owner=70:70 "$ns" >/dev/null
    read -r files_s owned_s < <(arrive "$t0" "$work/o-b/$ns" 10000 owner)
    owned_files+=("$files_s") owned+=("$owned_s")
    ;;
  *)
    ctl "$id-o-b" add --token="$key" "$ns" >/dev/null
    read -r files_s _ < <(arrive "$t0" "$work/o-b/$ns" 10000)
    plain+=("$files_s")
    ;;
  esac
  echo "bench: $ns: ${files_s} s${owned_s:+ (owned $owned_s s)}" >&2
  owned_s=
done
keeper=$(docker exec "$id-o-b" status --json |
  python3 -c 'import json,sys; k = json.load(sys.stdin)["keeper"]; print(k["fixed"], "entries fixed,", k["overflows"], "queue overflows")')
docker rm -f -v "$id-o-a" "$id-o-b" >/dev/null
plain_m=$(median "${plain[@]}")
row "10,000 small files a -> b into a namespace with \`--owner=70:70\`, b's \`add\` until all are there and 70:70, 0600/0700 (median of $RUNS: ${owned[*]} s; b's keeper: $keeper)" \
  "$(s "$(median "${owned[@]}")")" "the same into a namespace without an owner, alternating with it (median of $RUNS: ${plain[*]} s): $(s "$plain_m")" \
  "$(ratio2 "$(median "${owned[@]}")" "$plain_m")"
row "... of it until all 10,000 files are there (owner or not), with \`--owner=70:70\` (median of $RUNS: ${owned_files[*]} s)" \
  "$(s "$(median "${owned_files[@]}")")" "without an owner: $(s "$plain_m")" "$(ratio2 "$(median "${owned_files[@]}")" "$plain_m")"

echo "syncbox real-engine benchmark (btsync $("$engine" --help 2>/dev/null | head -n1 | awk '{print $NF}')) on $(nproc) cores, $(uname -srm), $(date -u +%Y-%m-%d), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| figure | real engine | anchor (same run) | ratio |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ -z "$only" ]; then
  echo
  tests/bench/cluster-flood.sh
fi
