#!/usr/bin/env bash
# Benchmark N concurrent `git agent spawn`s (exec agent, a command that sleeps) against N
# concurrent bare containers of the same image on the same engine, in the same run.
#
# For each N in CONCURRENCY (default "10 50") it:
#   1. starts N bare containers at once (`docker run -d --network none IMAGE sleep 600`):
#      the floor, total wall time until every `docker run` returned;
#   2. starts N `git agent spawn --name c-<i> -- sleep 600` at once: total wall time until
#      every spawn returned, how many failed (and the first failure's message), the median
#      and slowest spawn;
#   3. measures what the running tasks hold: networks, their subnets (all inside
#      agent.subnets?), containers, disk per task (workspace volumes plus the containers'
#      writable layers, from `docker system df -v` and `docker ps -s`);
#   4. stops them all (N `git agent stop` at once) and counts the networks finished tasks
#      still hold (expected: none);
# then removes everything. Prints figures and the ratio spawn/floor; never pass/fail.
#
# Environment:
#   CONCURRENCY="10 50"  how many at once, one round each
#   BASE_IMAGE=git-agent-base:bookworm   agent.baseImage of the benchmark repository
#   GIT_AGENT=<path>     use this binary instead of building target/release/git-agent
#   SUBNETS=<range>      set agent.subnets (default: git-agent's own default range)
set -euo pipefail

CONCURRENCY="${CONCURRENCY:-10 50}"
BASE_IMAGE="${BASE_IMAGE:-git-agent-base:bookworm}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

command -v python3 >/dev/null || die "python3 is needed (statistics)"
command -v docker >/dev/null || die "the docker CLI is needed"
docker info >/dev/null 2>&1 || bash "$ROOT/scripts/setup-engine.sh" >&2
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "base image $BASE_IMAGE is missing"

if [ -n "${GIT_AGENT:-}" ]; then
  BIN="$(cd "$(dirname "$GIT_AGENT")" && pwd)/$(basename "$GIT_AGENT")"
else
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) >&2 || die "cargo build --release failed"
  BIN="$ROOT/target/release/git-agent"
fi

WORK="$(mktemp -d -t git-agent-bench-XXXXXX)"
cp "$BIN" "$WORK/git-agent"
BIN="$WORK/git-agent"
export HOME="$WORK/home" GIT_CONFIG_NOSYSTEM=1 LC_ALL=C
mkdir -p "$HOME"
git config --global user.name Bench
git config --global user.email bench@example.com
git config --global init.defaultBranch main
git config --global agent.baseImage "$BASE_IMAGE"
git config --global agent.defaultAgent exec
[ -n "${SUBNETS:-}" ] && git config --global agent.subnets "$SUBNETS"
REPO="$WORK/repo"
FLOOR_LABEL="git-agent-bench-floor=$$"

REPO_ID=""
cleanup() {
  set +e
  if [ -n "$REPO_ID" ]; then
    docker ps -aq --filter "label=git-agent.repo=$REPO_ID" | xargs -r docker rm -f >/dev/null 2>&1
    docker volume ls -q --filter "label=git-agent.repo=$REPO_ID" | xargs -r docker volume rm -f >/dev/null 2>&1
    docker network ls -q --filter "label=git-agent.repo=$REPO_ID" | xargs -r docker network rm >/dev/null 2>&1
  fi
  docker ps -aq --filter "label=$FLOOR_LABEL" | xargs -r docker rm -f >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$REPO"
cd "$REPO"
git init -q
for i in $(seq 1 200); do printf 'line %s\n' "$i" > "file$i.txt"; done
git add . && git commit -qm initial
log "building the task image (one spawn, not measured)"
"$BIN" spawn --name warm --wait -m warm -- true >/dev/null 2>&1 || die "the warm-up spawn failed"
IMAGE="$(git show refs/agent/warm/state:task.toml | sed -n 's/^image_id = "\(.*\)"$/\1/p')"
# The repository's id on the engine, from the name of the task's workspace volume.
REPO_ID="$(git show refs/agent/warm/state:task.toml | sed -n 's/^volume = "git-agent-\([0-9a-f]*\)\.ws\.warm"$/\1/p')"
if [ -z "$IMAGE" ] || [ -z "$REPO_ID" ]; then die "cannot read the warm-up task's record"; fi
docker ps -aq --filter "label=git-agent.repo=$REPO_ID" | xargs -r docker rm -f >/dev/null 2>&1
docker volume ls -q --filter "label=git-agent.repo=$REPO_ID" | xargs -r docker volume rm -f >/dev/null 2>&1
git for-each-ref --format='delete %(refname)' refs/agent/ | git update-ref --stdin

# Run "$@" N times at once with {} replaced by the index; per-run seconds and exit codes
# go to $OUT/<i>.{time,rc,err}. Prints the total seconds.
at_once() {
  local n="$1" out="$2"; shift 2
  mkdir -p "$out"
  local start; start="$(now)"
  local i
  for i in $(seq 1 "$n"); do
    (
      s="$(now)"
      args=()
      for a in "$@"; do args+=("${a//\{\}/$i}"); done
      if "${args[@]}" >/dev/null 2>"$out/$i.err"; then rc=0; else rc=$?; fi
      e="$(now)"
      echo "$rc" > "$out/$i.rc"
      secs "$s" "$e" > "$out/$i.time"
    ) &
  done
  wait
  secs "$start" "$(now)"
}

stats() { # dir -> "median max failures"
  python3 - "$1" <<'EOF'
import os, statistics, sys
d = sys.argv[1]
ts = [float(open(os.path.join(d, f)).read()) for f in os.listdir(d) if f.endswith(".time")]
rcs = [int(open(os.path.join(d, f)).read()) for f in os.listdir(d) if f.endswith(".rc")]
print(f"{statistics.median(ts):.2f} {max(ts):.2f} {sum(1 for r in rcs if r != 0)}")
EOF
}

disk() { # -> "volumes_bytes layers_bytes"
  python3 - "$REPO_ID" <<'EOF'
import json, re, subprocess, sys
repo = sys.argv[1]
units = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
def size(s):
    m = re.match(r"([\d.]+)\s*([kKMGT]?B)", s.strip())
    return float(m.group(1)) * units[m.group(2)] if m else 0.0
vols = json.loads(subprocess.run(["docker", "system", "df", "-v", "--format", "{{json .Volumes}}"],
                                 capture_output=True, text=True).stdout or "[]")
v = sum(size(x["Size"]) for x in vols if f"git-agent.repo={repo}" in x.get("Labels", ""))
ps = subprocess.run(["docker", "ps", "-a", "-s", "--filter", f"label=git-agent.repo={repo}",
                     "--format", "{{.Size}}"], capture_output=True, text=True).stdout.split("\n")
c = sum(size(l.split(" (")[0]) for l in ps if l.strip())
print(f"{int(v)} {int(c)}")
EOF
}

human() { awk -v b="$1" 'BEGIN { if (b >= 1e6) printf "%.1f MB", b / 1e6; else printf "%.1f kB", b / 1e3 }'; }

printf '%-8s %-24s %s\n' "N" "metric" "value"
for N in $CONCURRENCY; do
  log "N=$N: floor ($N bare containers at once)"
  floor="$(at_once "$N" "$WORK/floor-$N" docker run -d --label "$FLOOR_LABEL" --network none "$IMAGE" sleep 600)"
  read -r f_med f_max f_fail < <(stats "$WORK/floor-$N")
  docker ps -aq --filter "label=$FLOOR_LABEL" | xargs -r docker rm -f >/dev/null 2>&1

  log "N=$N: $N spawns at once"
  total="$(at_once "$N" "$WORK/spawn-$N" "$BIN" spawn --name "c$N-{}" -m idle -- sleep 600)"
  read -r s_med s_max s_fail < <(stats "$WORK/spawn-$N")
  first_err=""
  for f in "$WORK/spawn-$N"/*.rc; do
    if [ "$(cat "$f")" != 0 ]; then first_err="$(grep -m1 '^Error' "${f%.rc}.err" || true)"; break; fi
  done
  nets="$(docker network ls -q --filter "label=git-agent.repo=$REPO_ID" | wc -l)"
  range="$(git config agent.subnets || echo 10.242.0.0/16)"
  outside="$(docker network ls -q --filter "label=git-agent.repo=$REPO_ID" | xargs -r docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' |
    python3 -c 'import ipaddress,sys; r=ipaddress.ip_network(sys.argv[1]); print(sum(1 for l in sys.stdin if l.strip() and not ipaddress.ip_network(l.strip()).subnet_of(r)))' "$range")"
  read -r vbytes cbytes < <(disk)
  running="$("$BIN" list --json | python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["status"] == "running"))')"

  log "N=$N: $N stops at once"
  stop_total="$(at_once "$N" "$WORK/stop-$N" "$BIN" stop --timeout 1 "c$N-{}")"
  read -r _ _ stop_fail < <(stats "$WORK/stop-$N")
  held="$(docker network ls -q --filter "label=git-agent.repo=$REPO_ID" | wc -l)"

  printf '%-8s %-24s %s\n' "$N" "floor_total" "${floor}s (median ${f_med}s, max ${f_max}s, failures $f_fail)"
  printf '%-8s %-24s %s\n' "$N" "spawn_total" "${total}s (median ${s_med}s, max ${s_max}s)"
  printf '%-8s %-24s %s\n' "$N" "spawn_failures" "$s_fail${first_err:+ (first: $first_err)}"
  printf '%-8s %-24s %s\n' "$N" "ratio spawn/floor" "$(awk -v a="$total" -v b="$floor" 'BEGIN { printf "%.1fx", a / b }')"
  printf '%-8s %-24s %s\n' "$N" "running" "$running"
  printf '%-8s %-24s %s\n' "$N" "networks (running)" "$nets ($outside outside $range)"
  printf '%-8s %-24s %s\n' "$N" "disk per task" "$(human $((vbytes / N))) volumes + $(human $((cbytes / N))) container layers"
  printf '%-8s %-24s %s\n' "$N" "stop_total" "${stop_total}s (failures $stop_fail)"
  printf '%-8s %-24s %s\n' "$N" "networks (finished)" "$held"

  # Remove this round's tasks before the next.
  docker ps -aq --filter "label=git-agent.repo=$REPO_ID" | xargs -r docker rm -f >/dev/null 2>&1
  docker volume ls -q --filter "label=git-agent.repo=$REPO_ID" | xargs -r docker volume rm -f >/dev/null 2>&1
  docker network ls -q --filter "label=git-agent.repo=$REPO_ID" | xargs -r docker network rm >/dev/null 2>&1
  git for-each-ref --format='delete %(refname)' refs/agent/ | git update-ref --stdin
done
