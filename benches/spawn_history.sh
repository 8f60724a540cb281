#!/usr/bin/env bash
# Spawn against repository size: does a task cost a checkout or a history?
#
# For each size (SIZES_MB, default "10 200"; add 1024 with BENCH_LARGE=1) this generates a
# deterministic repository (the generator of spawn_sync.sh), then RUNS times (default 5),
# interleaved in one run, measures:
#
#   spawn               host clock before `git agent spawn` -> the task's command running
#                       (the command prints `date +%s%N` first), object cache warm (another
#                       task of the repository keeps it)
#   spawn_cold          the same with no cache on the engine (the first spawn fills it); one
#                       per run, after the cache was released
#   bare                `docker run --rm --network none IMAGE` until its shell prints the time
#   bare_checkout       the same plus a checkout of the work tree from a volume holding the
#                       history (read-only), i.e. the floor of any design that ships no history
#   approach.<name>     wall time of each script in APPROACHES (how competing tools get a
#                       repository into a sandbox; they end with a command run on a new branch
#                       and include removing what they made)
#
# and prints medians, min and max, and ratios against bare_checkout and bare measured in the
# same run, plus the growth of each from the smallest to the largest size. Figures only: it
# never decides pass/fail. Progress goes to stderr, results to stdout.
#
# Environment:
#   SIZES_MB="10 200"   repository sizes (MiB of packed history)
#   BENCH_LARGE=1       also 1024 MiB (generating it takes about 2 minutes, the cold spawn
#                       and the approaches that copy history take a minute or more each)
#   RUNS=5              measured runs per size
#   WARMUP=1            unmeasured runs per size
#   BASE_IMAGE=git-agent-base:bookworm   agent.baseImage of the benchmark repositories
#   GIT_AGENT=<path>    use this binary instead of building target/release/git-agent
#   APPROACHES=<dir>    the approach scripts (default ../shared/bench/approaches beside the
#                       checkout); SKIP_APPROACHES="tsk-style ..." leaves some out
#   BENCH_CACHE=<dir>   keep generated repositories here and reuse them
#   SEED=1              generator seed
#   SETTLE=1            seconds of quiet before each measured operation, so that what the
#                       previous one left running (a cold spawn's cache fill, a container's
#                       removal) does not land on the next one's clock; the same for every
#                       metric
set -euo pipefail

SIZES_MB="${SIZES_MB:-10 200}"
[ "${BENCH_LARGE:-0}" = 1 ] && SIZES_MB="$SIZES_MB 1024"
RUNS="${RUNS:-5}"
WARMUP="${WARMUP:-1}"
BASE_IMAGE="${BASE_IMAGE:-git-agent-base:bookworm}"
SEED="${SEED:-1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APPROACHES="${APPROACHES:-$ROOT/../shared/bench/approaches}"
SKIP_APPROACHES="${SKIP_APPROACHES:-}"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s%N; }
settle() { sleep "${SETTLE:-1}"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

command -v python3 >/dev/null || die "python3 is needed (repository generator and statistics)"
docker info >/dev/null 2>&1 || die "no container engine answers (scripts/setup-engine.sh starts one)"
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "base image $BASE_IMAGE is missing"

if [ -n "${GIT_AGENT:-}" ]; then
  BIN="$(cd "$(dirname "$GIT_AGENT")" && pwd)/$(basename "$GIT_AGENT")"
else
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) >&2 ||
    die "cargo build --release failed; set GIT_AGENT=<path to git-agent> to measure an existing build"
  BIN="$ROOT/target/release/git-agent"
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/git-agent-bench.XXXXXX")"
BINDIR="$WORK/bin"
mkdir -p "$BINDIR"
cp "$BIN" "$BINDIR/git-agent"
export PATH="$BINDIR:$PATH"
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
VOLUMES=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for r in "${REPOS[@]}"; do
    [ -d "$r" ] || continue
    for t in $(git -C "$r" for-each-ref --format='%(refname)' "refs/agent/" 2>/dev/null |
      sed -n "s,^refs/agent/\(${PREFIX}-[^/]*\)/.*,\1,p" | sort -u); do
      git -C "$r" agent purge --refs "$t" >/dev/null 2>&1 || true
    done
  done
  for v in "${VOLUMES[@]}"; do docker volume rm -f "$v" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"; }

# The generator shared with spawn_sync.sh (benches/generate.sh): size*40 files of base64 text, then
# commits rewriting 4 random files until about SIZE MiB of history exist.
# shellcheck source=benches/generate.sh
. "$(dirname "$0")/generate.sh"

# The task's first line of output: the nanosecond time its command started.
command_time() {
  local c="$1" t=""
  for _ in $(seq 1 2000); do
    t="$(docker logs "$c" 2>/dev/null | head -n1 | tr -dc '0-9')"
    [ -n "$t" ] && { echo "$t"; return 0; }
    sleep 0.05
  done
  die "container $c never reported its start time"
}

# spawn_task REPO TASK: spawn, print the seconds to the command running.
spawn_task() {
  local repo="$1" task="$2" t0 c tc
  settle
  t0="$(now)"
  git -C "$repo" agent spawn --agent exec --name "$task" -m bench -- sh -c 'date +%s%N; exec sleep 600' \
    >/dev/null 2>"$WORK/spawn.err" || { cat "$WORK/spawn.err" >&2; die "spawn failed"; }
  c="$(docker ps --filter "label=git-agent.task=$task" --format "{{.Names}}" | grep "\.task\.$task$" | head -n1)"
  [ -n "$c" ] || die "no running container for task $task"
  tc="$(command_time "$c")"
  secs "$t0" "$tc"
}

# timed_run METRIC SIZE M -- docker run args: the container prints its time last.
timed_run() {
  local metric="$1" size="$2" m="$3" t0 tc
  shift 4
  settle
  t0="$(now)"
  tc="$(docker run --rm --network none "$@" | tail -n1 | tr -dc '0-9')"
  [ "$m" = 1 ] && record "$size" "$metric" "$(secs "$t0" "$tc")"
  return 0
}

approach() {
  local name="$1" size="$2" m="$3" repo="$4" image="$5" cachevol="$6" t0 t1
  settle
  t0="$(now)"
  bash "$APPROACHES/$name.sh" "$repo" "$image" "$cachevol" >/dev/null 2>"$WORK/approach.err" ||
    { cat "$WORK/approach.err" >&2; die "approach $name failed"; }
  t1="$(now)"
  [ "$m" = 1 ] && record "$size" "approach.$name" "$(secs "$t0" "$t1")"
  return 0
}

names=()
for f in "$APPROACHES"/*.sh; do
  [ -e "$f" ] || continue
  n="$(basename "$f" .sh)"
  case " $SKIP_APPROACHES " in *" $n "*) continue ;; esac
  names+=("$n")
done
[ ${#names[@]} -gt 0 ] || log "no approach scripts in $APPROACHES; measuring git-agent and the floors only"

log "binary: $BIN"
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
  git -C "$repo" config agent.defaultAgent exec
  image="$(git -C "$repo" agent image build | awk '{ print $1 }')"
  [ -n "$image" ] || die "git agent image build printed no tag"
  record "$size" meta.packed "$(git -C "$repo" count-objects -vH | sed -n 's/^size-pack: //p' | tr -d ' ')"
  record "$size" meta.commits "$(git -C "$repo" rev-list --count HEAD)"
  record "$size" meta.worktree "$(du -sh --exclude=.git "$repo" | cut -f1)"

  # A volume holding the history as a bare repo.git: the floors' and cache-style's source.
  hist="$PREFIX-hist-${size//./_}"
  VOLUMES+=("$hist")
  docker volume create "$hist" >/dev/null
  git -C "$repo" bundle create -q - main | docker run -i --rm --network none --user 0 -v "$hist:/c" "$image" \
    sh -c 'cat > /tmp/b.bundle && git clone -q --bare /tmp/b.bundle /c/repo.git && rm /tmp/b.bundle'

  total=$((WARMUP + RUNS))
  for i in $(seq 1 "$total"); do
    m=0
    [ "$i" -gt "$WARMUP" ] && m=1
    log "size=${size}MB: run $i/$total$([ "$m" = 0 ] && echo ' (warm-up)')"
    # Cold: no task holds the cache, so this spawn fills it. It then keeps it warm.
    keeper="$PREFIX-k${size//./_}-r$i"
    t="$(spawn_task "$repo" "$keeper")"
    [ "$m" = 1 ] && record "$size" spawn_cold "$t"
    task="$PREFIX-s${size//./_}-r$i"
    t="$(spawn_task "$repo" "$task")"
    [ "$m" = 1 ] && record "$size" spawn "$t"
    timed_run bare "$size" "$m" -- "$image" sh -c 'date +%s%N'
    timed_run bare_checkout "$size" "$m" -- --user 0 -v "$hist:/c:ro" "$image" sh -c \
      'mkdir /tmp/w && GIT_INDEX_FILE=/tmp/index git --git-dir=/c/repo.git --work-tree=/tmp/w read-tree -u --reset main && date +%s%N'
    for n in "${names[@]}"; do
      approach "$n" "$size" "$m" "$repo" "$image" "$hist"
    done
    git -C "$repo" agent purge --refs "$task" >/dev/null 2>&1
    git -C "$repo" agent purge --refs "$keeper" >/dev/null 2>&1
  done
  # The engine's disk per task: the cache once, then each task's workspace.
done

python3 - "$RESULTS" "$RUNS" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" <<'PY'
import statistics, sys
from collections import defaultdict, OrderedDict
path, runs, when, cores = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
data = OrderedDict()
for line in open(path):
    size, metric, value = line.rstrip("\n").split("\t")
    data.setdefault(size, defaultdict(list))[metric].append(value)

def med(d, k):
    v = [float(x) for x in d.get(k, [])]
    return statistics.median(v) if v else float("nan")

print(f"# git-agent spawn vs history size  {when}  cores={cores}  runs={runs} (medians)")
for size, d in data.items():
    meta = {k[5:]: v[-1] for k, v in d.items() if k.startswith("meta.")}
    bc, bare = med(d, "bare_checkout"), med(d, "bare")
    print()
    print(f"size={size}MB packed={meta.get('packed')} commits={meta.get('commits')} worktree={meta.get('worktree')}")
    print(f"  {'metric':<28} {'median':>8} {'min':>8} {'max':>8}  {'/bare+co':>8} {'/bare':>7}")
    keys = [k for k in d if not k.startswith("meta.")]
    for k in keys:
        f = [float(x) for x in d[k]]
        m = statistics.median(f)
        print(f"  {k:<28} {m:>7.3f}s {min(f):>7.3f}s {max(f):>7.3f}s  x{m / bc:>7.2f} x{m / bare:>6.2f}")
sizes = list(data)
if len(sizes) >= 2:
    lo, hi = sizes[0], sizes[-1]
    print()
    print(f"growth {lo}MB -> {hi}MB (median at {hi} / median at {lo}):")
    for k in [k for k in data[hi] if not k.startswith("meta.")]:
        print(f"  {k:<28} x{med(data[hi], k) / med(data[lo], k):.2f}")
    g = med(data[hi], "spawn") / med(data[lo], "spawn")
    c = med(data[hi], "bare_checkout") / med(data[lo], "bare_checkout")
    print(f"  spawn growth beyond the checkout's own: x{g / c:.2f}")
PY
