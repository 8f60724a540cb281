#!/usr/bin/env bash
# Benchmark `git agent spawn` and `git agent sync` against the floor of the same engine.
#
# For each repository size (SIZES_MB, default "10 200" MiB of packed history) this generates a
# deterministic repository, then RUNS times (default 5) measures, in the same run:
#
#   spawn                  host clock before `git agent spawn` -> the task's command running
#                          (the command prints `date +%s%N` as its first act; same kernel clock)
#   spawn_wall             wall time of the `git agent spawn` process itself
#   bundle_create          `git bundle create <file> HEAD` on the host (not part of either floor)
#   floor_stream           `docker run -i --rm --network none IMAGE` with that bundle on stdin,
#                          written to a file inside, until the container's shell prints its time
#   floor_stream_checkout  the same, plus `git clone` of the bundle inside (what spawn also does)
#   sync_noop              `git agent sync` right after spawn (nothing new)
#   sync_commit            `git agent sync` after the task committed a one-file change
#   sync_uncommitted       `git agent sync` after an uncommitted one-file change
#   follow_check           one exec of the sandbox helper's `fingerprint` (a follower's round)
#   follow_latency         an agent's commit to the task's refs, by the follower alone
#
# and prints medians, ratios spawn/floor, and a per-phase breakdown from `docker events`.
# Figures only: it never decides pass/fail. Progress goes to stderr, results to stdout.
#
# Environment:
#   SIZES_MB="10 200"   repository sizes (MiB of packed history)
#   RUNS=5              measured runs per size
#   WARMUP=1            unmeasured runs per size before the measured ones
#   BASE_IMAGE=git-agent-base:bookworm   agent.baseImage for the benchmark repositories
#   GIT_AGENT=<path>    use this binary instead of building target/release/git-agent
#   BENCH_CACHE=<dir>   keep generated repositories here and reuse them across invocations
#   SEED=1              generator seed
set -euo pipefail

SIZES_MB="${SIZES_MB:-10 200}"
RUNS="${RUNS:-5}"
WARMUP="${WARMUP:-1}"
BASE_IMAGE="${BASE_IMAGE:-git-agent-base:bookworm}"
SEED="${SEED:-1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s%N; }
# Seconds (3 decimals) between two nanosecond timestamps.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

command -v python3 >/dev/null || die "python3 is needed (repository generator and statistics)"
command -v docker >/dev/null || die "the docker CLI is needed"
if ! docker info >/dev/null 2>&1; then
  log "no container engine answers; running scripts/setup-engine.sh"
  bash "$ROOT/scripts/setup-engine.sh" >&2
fi
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  [ "$BASE_IMAGE" = git-agent-base:bookworm ] || die "base image $BASE_IMAGE is missing"
  bash "$ROOT/scripts/setup-engine.sh" >&2
fi

if [ -n "${GIT_AGENT:-}" ]; then
  BIN="$(cd "$(dirname "$GIT_AGENT")" && pwd)/$(basename "$GIT_AGENT")"
else
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) >&2 ||
    die "cargo build --release failed; to measure an existing build, set GIT_AGENT=<path to git-agent>"
  BIN="$ROOT/target/release/git-agent"
fi
[ -x "$BIN" ] || die "no git-agent binary at $BIN"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/git-agent-bench.XXXXXX")"
# `git agent` must resolve to the binary under test: a private copy, so a rebuild of
# target/release during the run cannot swap it out from under the benchmark.
BINDIR="$WORK/bin"
mkdir -p "$BINDIR"
cp "$BIN" "$BINDIR/git-agent"
export PATH="$BINDIR:$PATH"

# Isolated git configuration: nothing from the user's or the system's config leaks in.
export HOME="$WORK/home"
mkdir -p "$HOME"
export GIT_CONFIG_NOSYSTEM=1
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
git config --global user.name "git-agent bench"
git config --global user.email "bench@example.invalid"
git config --global init.defaultBranch main
git config --global advice.detachedHead false

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
PREFIX="bench$$"
REPOS=()
FLOORS=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
  for c in "${FLOORS[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  for r in "${REPOS[@]}"; do
    [ -d "$r" ] || continue
    for t in $(git -C "$r" for-each-ref --format='%(refname)' "refs/agent/" 2>/dev/null |
      sed -n "s,^refs/agent/\(${PREFIX}-[^/]*\)/.*,\1,p" | sort -u); do
      git -C "$r" agent purge --refs "$t" >/dev/null 2>&1 || true
    done
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# record SIZE METRIC VALUE
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"; }

# Deterministic repository: an initial commit of size*40 files (100 per directory) of
# base64-encoded PRNG bytes, then commits that each rewrite 4 random files with fresh content,
# until about SIZE MiB of (incompressible) history has been written. Built with fast-import.
# shellcheck source=benches/generate.sh
. "$(dirname "$0")/generate.sh"

packed_size() { git -C "$1" count-objects -vH | sed -n 's/^size-pack: //p' | tr -d ' '; }

# Engine events are collected by a `docker events` running in the background around each
# measured operation (the daemon keeps only a short backlog, so asking afterwards with
# --since/--until loses events when other engine users are busy).
WATCH_PID=""
watch_start() {
  WATCH_FILE="$WORK/events.$RANDOM$RANDOM"
  docker events --since "$(ts "$(now)")" \
    --format '{{.TimeNano}} {{.Type}} {{.Actor.ID}} {{with index .Actor.Attributes "name"}}{{.}}{{else}}-{{end}} {{.Action}}' \
    > "$WATCH_FILE" 2>/dev/null &
  WATCH_PID=$!
}
# watch_stop NAME: stop collecting; set EVENTS to the events of the engine objects named NAME
# or belonging to task NAME (...-NAME, ...-NAME-ws, ...-NAME-net) as "TYPE:ACTION NANOS" lines.
watch_stop() {
  sleep 0.3
  kill "$WATCH_PID" 2>/dev/null || true
  wait "$WATCH_PID" 2>/dev/null || true
  WATCH_PID=""
  EVENTS="$(awk -v n="$1" '
    function ends(s, t) { return length(s) >= length(t) && substr(s, length(s) - length(t) + 1) == t }
    function ours(s) { return s == n || ends(s, "-" n) || ends(s, "-" n "-ws") || ends(s, "-" n "-net") }
    ours($3) || ours($4) { sub(/:.*/, "", $5); print $2 ":" $5, $1 }' "$WATCH_FILE")"
  rm -f "$WATCH_FILE"
}
# ev EVENTS TYPE:ACTION [NTH]: the time of the NTH such event (default the first).
ev() { awk -v k="$2" -v nth="${3:-1}" '$1 == k && ++c == nth { print $2; exit }' <<<"$1"; }
# span SIZE METRIC FROM TO: record TO - FROM when both are known.
span() { if [ -n "$3" ] && [ -n "$4" ]; then record "$1" "$2" "$(secs "$3" "$4")"; fi; }
# Nanoseconds to seconds.nanoseconds, as `docker events --since/--until` take them.
ts() { printf '%s.%s' "${1:0:${#1}-9}" "${1: -9}"; }

# The task's first line of output: the nanosecond time its command started.
command_time() {
  local c="$1" t=""
  for _ in $(seq 1 400); do
    t="$(docker logs "$c" 2>/dev/null | head -n1 | tr -dc '0-9')"
    [ -n "$t" ] && { echo "$t"; return 0; }
    sleep 0.05
  done
  die "container $c never reported its start time"
}

# floor SIZE REPO BUNDLE IMAGE MEASURE(0/1)
floor() {
  local size="$1" repo="$2" bundle="$3" image="$4" m="$5" c t0 tc
  local -A scripts=(
    [floor_stream]='cat > /tmp/b.bundle; date +%s%N'
    [floor_stream_checkout]='cat > /tmp/b.bundle && git clone -q /tmp/b.bundle /tmp/w && date +%s%N'
  )
  for metric in floor_stream floor_stream_checkout; do
    c="$PREFIX-floor-$RANDOM$RANDOM"
    FLOORS+=("$c")
    [ "$m" = 1 ] && watch_start
    t0="$(now)"
    tc="$(docker run -i --rm --name "$c" --network none "$image" sh -c "${scripts[$metric]}" < "$bundle")"
    local t1
    t1="$(now)"
    [ "$m" = 1 ] || continue
    record "$size" "$metric" "$(secs "$t0" "$tc")"
    local e
    watch_stop "$c"
    e="$EVENTS"
    span "$size" "$metric.cli_to_create" "$t0" "$(ev "$e" container:create)"
    span "$size" "$metric.container_start" "$(ev "$e" container:create)" "$(ev "$e" container:start)"
    span "$size" "$metric.start_to_done" "$(ev "$e" container:start)" "$tc"
  done
}

# spawn_and_sync SIZE REPO TASK MEASURE(0/1)
spawn_and_sync() {
  local size="$1" repo="$2" task="$3" m="$4" t0 t1 tc c e
  [ "$m" = 1 ] && watch_start
  t0="$(now)"
  git -C "$repo" agent spawn --agent exec --name "$task" -m "benchmark" -- sh -c 'date +%s%N; exec sleep 600' >/dev/null 2>"$WORK/spawn.err" ||
    { cat "$WORK/spawn.err" >&2; die "spawn failed"; }
  t1="$(now)"
  # The task's own container (its disk warden carries the same task label).
  c="$(docker ps --filter "label=git-agent.task=$task" --format '{{.Names}}' | grep -F ".task.$task" | head -n1)"
  [ -n "$c" ] || die "no running container for task $task"
  tc="$(command_time "$c")"
  if [ "$m" = 1 ]; then
    record "$size" spawn "$(secs "$t0" "$tc")"
    record "$size" spawn_wall "$(secs "$t0" "$t1")"
    watch_stop "$task"
    e="$EVENTS"
    span "$size" spawn.before_engine_objects "$t0" "$(ev "$e" network:create)"
    span "$size" spawn.network_volume_create "$(ev "$e" network:create)" "$(ev "$e" container:create)"
    span "$size" spawn.container_start "$(ev "$e" container:create)" "$(ev "$e" container:start)"
    span "$size" spawn.exec_prompt "$(ev "$e" container:exec_create 1)" "$(ev "$e" container:exec_die 1)"
    span "$size" spawn.exec_receive "$(ev "$e" container:exec_create 2)" "$(ev "$e" container:exec_die 2)"
    span "$size" spawn.receive_to_command "$(ev "$e" container:exec_die 2)" "$tc"
  fi

  # sync_one METRIC: time `git agent sync` and split it at the sandbox's emit exec.
  sync_one() {
    local metric="$1" s0 s1
    [ "$m" = 1 ] && watch_start
    s0="$(now)"
    git -C "$repo" agent sync "$task" 2>"$WORK/sync.err" || { cat "$WORK/sync.err" >&2; die "sync failed"; }
    s1="$(now)"
    [ "$m" = 1 ] || return 0
    record "$size" "$metric" "$(secs "$s0" "$s1")"
    local se
    watch_stop "$task"
    se="$EVENTS"
    span "$size" "$metric.host_before_emit" "$s0" "$(ev "$se" container:exec_create)"
    span "$size" "$metric.sandbox_emit" "$(ev "$se" container:exec_create)" "$(ev "$se" container:exec_die)"
    span "$size" "$metric.host_admit" "$(ev "$se" container:exec_die)" "$s1"
  }
  sync_one sync_noop
  docker exec -w /workspace "$c" sh -c 'echo "change $(date +%s%N)" >> d000/f000.txt && git commit -qam "one-file change"'
  sync_one sync_commit
  docker exec -w /workspace "$c" sh -c 'echo "change $(date +%s%N)" >> d000/f001.txt'
  sync_one sync_uncommitted
  grep -q 'synced uncommitted changes' "$WORK/sync.err" || die "the uncommitted change was not synced: $(cat "$WORK/sync.err")"

  # The follower's cheap check: one exec of the helper's `fingerprint`.
  local f0
  f0="$(now)"
  docker exec "$c" /usr/local/bin/git-agent-sandbox fingerprint >/dev/null || die "fingerprint failed"
  [ "$m" = 1 ] && record "$size" follow_check "$(secs "$f0" "$(now)")"
  # Live work: with a follower (agent.followInterval, default 3s), from the agent's commit
  # to the commit in the task's refs without any command.
  git -C "$repo" config agent.follow true
  git -C "$repo" agent sync --follow "$task" >/dev/null
  local waited=0
  until git -C "$repo" agent status --json "$task" | grep -q '"following": true'; do
    sleep 0.1; waited=$((waited + 1)); [ "$waited" -lt 100 ] || die "no follower for $task"
  done
  # Past its first round (which starts at once), so the change waits for a round as it would.
  sleep 1
  local tip
  f0="$(now)"
  tip="$(docker exec -w /workspace "$c" sh -c 'echo "change $(date +%s%N)" >> d000/f002.txt && git commit -qam "followed change" && git rev-parse HEAD')"
  waited=0
  until [ "$(git -C "$repo" rev-parse -q --verify "refs/agent/$task/head")" = "$tip" ]; do
    sleep 0.05; waited=$((waited + 1)); [ "$waited" -lt 1200 ] || die "the follower did not bring $tip home"
  done
  [ "$m" = 1 ] && record "$size" follow_latency "$(secs "$f0" "$(now)")"
  git -C "$repo" config agent.follow false

  git -C "$repo" agent purge --refs "$task" 2>/dev/null
}

log "binary: $BIN"
log "work dir: $WORK"
for size in $SIZES_MB; do
  if [ -n "${BENCH_CACHE:-}" ]; then
    mkdir -p "$BENCH_CACHE"
    repo="$(cd "$BENCH_CACHE" && pwd)/repo-${size}mb-seed$SEED"
  else
    repo="$WORK/repo-${size}mb"
  fi
  REPOS+=("$repo")
  if [ ! -f "$repo/.git/bench-complete" ]; then
    rm -rf "$repo"
    log "size=${size}MB: generating the repository"
    g0="$(now)"
    generate "$size" "$repo"
    touch "$repo/.git/bench-complete"
    log "size=${size}MB: generated in $(secs "$g0" "$(now)")s"
  fi
  git -C "$repo" config agent.baseImage "$BASE_IMAGE"
  # The built-in `exec` agent needs nothing installed: the image is base + git + helper.
  git -C "$repo" config agent.defaultAgent exec
  # Manual syncs are measured alone: no follower brings the work home before them (follow_latency
  # switches one on for its own measurement).
  git -C "$repo" config agent.follow false
  image="$(git -C "$repo" agent image build | awk '{ print $1 }')"
  [ -n "$image" ] || die "git agent image build printed no tag"
  packed="$(packed_size "$repo")"
  commits="$(git -C "$repo" rev-list --count HEAD)"
  files="$(git -C "$repo" ls-files | wc -l | tr -d ' ')"
  worktree="$(du -sh --exclude=.git "$repo" | cut -f1)"
  record "$size" meta.packed "$packed"
  record "$size" meta.commits "$commits"
  record "$size" meta.files "$files"
  record "$size" meta.worktree "$worktree"
  record "$size" meta.image "$image"
  log "size=${size}MB: packed=$packed commits=$commits files=$files worktree=$worktree image=$image"

  bundle="$WORK/floor-${size}mb.bundle"
  total=$((WARMUP + RUNS))
  for i in $(seq 1 "$total"); do
    m=0
    [ "$i" -gt "$WARMUP" ] && m=1
    log "size=${size}MB: run $i/$total$([ "$m" = 0 ] && echo ' (warm-up)')"
    b0="$(now)"
    git -C "$repo" bundle create -q "$bundle" HEAD
    [ "$m" = 1 ] && record "$size" bundle_create "$(secs "$b0" "$(now)")"
    [ "$m" = 1 ] && record "$size" meta.bundle "$(du -h "$bundle" | cut -f1)"
    # Alternate the order so drift on a noisy machine does not favour one side.
    task="$PREFIX-s${size//./_}-r$i"
    if [ $((i % 2)) = 1 ]; then
      floor "$size" "$repo" "$bundle" "$image" "$m"
      spawn_and_sync "$size" "$repo" "$task" "$m"
    else
      spawn_and_sync "$size" "$repo" "$task" "$m"
      floor "$size" "$repo" "$bundle" "$image" "$m"
    fi
  done
  rm -f "$bundle"
done

python3 - "$RESULTS" "$RUNS" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" <<'PY'
import statistics, sys
from collections import defaultdict, OrderedDict
path, runs, when, cores = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
data = OrderedDict()
for line in open(path):
    size, metric, value = line.rstrip("\n").split("\t")
    d = data.setdefault(size, defaultdict(list))
    d[metric].append(value)

def med(d, k):
    v = [float(x) for x in d.get(k, [])]
    return statistics.median(v) if v else float("nan")

print(f"# git-agent spawn/sync benchmark  {when}  cores={cores}  runs={runs} (medians)")
for size, d in data.items():
    meta = {k[5:]: v[-1] for k, v in d.items() if k.startswith("meta.")}
    sp, fs, fc = med(d, "spawn"), med(d, "floor_stream"), med(d, "floor_stream_checkout")
    print()
    print(f"size={size}MB packed={meta.get('packed')} commits={meta.get('commits')} "
          f"files={meta.get('files')} worktree={meta.get('worktree')} bundle={meta.get('bundle')} "
          f"image={meta.get('image')}")
    print(f"  spawn_median={sp:.2f}s floor_stream={fs:.2f}s (x{sp / fs:.2f}) "
          f"floor_stream_checkout={fc:.2f}s (x{sp / fc:.2f}) "
          f"sync_commit={med(d, 'sync_commit'):.2f}s sync_uncommitted={med(d, 'sync_uncommitted'):.2f}s "
          f"sync_noop={med(d, 'sync_noop'):.2f}s follow_check={med(d, 'follow_check'):.2f}s "
          f"follow_latency={med(d, 'follow_latency'):.2f}s")
    print(f"  {'metric':<46} {'median':>8} {'min':>8} {'max':>8}  n")
    top = ["bundle_create", "spawn", "spawn_wall", "floor_stream", "floor_stream_checkout",
           "sync_noop", "sync_commit", "sync_uncommitted", "follow_check", "follow_latency"]
    keys = [k for k in d if not k.startswith("meta.")]
    rank = lambda k: (top.index(k.split(".")[0]) if k.split(".")[0] in top else len(top),
                      "." in k, keys.index(k))
    for k in sorted(keys, key=rank):
        v = d[k]
        f = [float(x) for x in v]
        indent = "    " if "." in k else ""
        name = (indent + k.split(".", 1)[1]) if "." in k else k
        print(f"  {name:<46} {statistics.median(f):>7.3f}s {min(f):>7.3f}s {max(f):>7.3f}s  {len(f)}")

sizes = list(data)
if len(sizes) >= 2:
    lo, hi = sizes[0], sizes[-1]
    parts = []
    for k in ("sync_commit", "sync_uncommitted", "sync_noop", "follow_check", "follow_latency",
              "spawn", "floor_stream_checkout"):
        parts.append(f"{k}=x{med(data[hi], k) / med(data[lo], k):.2f}")
    print()
    print(f"ratio {hi}MB/{lo}MB: " + " ".join(parts))
PY
