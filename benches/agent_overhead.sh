#!/usr/bin/env bash
# What git-agent adds to a headless run, and what an image build costs cold and warm.
#
#   bash benches/agent_overhead.sh            # RUNS=7 by default
#
# Prints figures only (medians over RUNS, measured in the same run):
#   build_cold   `git agent image build` of an image whose last layer is new (the engine's
#                cache holds the layers before it; a project layer with a fresh marker)
#   build_warm   the same command again: must not rebuild anything (no build steps run)
#   direct       `docker run --rm <image> sh -c 'echo done'` (the floor)
#   git_agent    `git agent spawn --wait -- sh -c 'echo done'` with the same image and command
#                (includes the task's internal network and its egress gateway sidecar)
#   overhead     git_agent - direct (target: under 1 s)
set -euo pipefail
RUNS="${RUNS:-7}"
BASE_IMAGE="${BASE_IMAGE:-git-agent-base:bookworm}"
root="$(cd "$(dirname "$0")/.." && pwd)"
docker info >/dev/null 2>&1 || bash "$root/scripts/setup-engine.sh"
if [ -z "${GIT_AGENT:-}" ]; then
  (cd "$root" && cargo build --release -q)
  GIT_AGENT="$root/target/release/git-agent"
fi
work="$(mktemp -d /tmp/git-agent-overhead.XXXXXX)"
cleanup() { (cd "$work/repo" 2>/dev/null && git agent purge --refs --all >/dev/null 2>&1) || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/bin" "$work/home" "$work/repo"
cp "$GIT_AGENT" "$work/bin/git-agent"
export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1 PATH="$work/bin:$PATH"
git config --global user.name bench
git config --global user.email bench@example.com
cd "$work/repo"
git init -q -b main
git config agent.baseImage "$BASE_IMAGE"
git config agent.defaultAgent exec
echo bench > README.md && git add . && git commit -qm init

now() { date +%s%N; }
secs() { python3 -c "import sys; print(f'{int(sys.argv[1])/1e9:.3f}')" "$1"; }
median() { python3 -c "import sys,statistics; print(f'{statistics.median(float(x) for x in sys.argv[1:]):.3f}')" "$@"; }

mkdir -p .git-agent/dockerfiles
echo "RUN echo marker-$$-$(now)" > .git-agent/dockerfiles/project.dockerfile
t0=$(now); git agent image build --agent exec >/dev/null 2>"$work/cold.log"; t1=$(now)
build_cold=$(secs $((t1 - t0)))
t0=$(now); tag=$(git agent image build --agent exec 2>"$work/warm.log" | cut -d' ' -f1); t1=$(now)
build_warm=$(secs $((t1 - t0)))
steps_warm=$(grep -c '^Step ' "$work/warm.log" || true)

# Warm up: the first spawn builds the egress gateway's image (once per base image).
git agent spawn --name warmup --wait -m x -- true >/dev/null 2>&1
git agent purge --refs warmup >/dev/null 2>&1
direct=(); agent=()
for i in $(seq 1 "$RUNS"); do
  t0=$(now); docker run --rm "$tag" sh -c 'echo done' >/dev/null; t1=$(now)
  direct+=("$(secs $((t1 - t0)))")
  t0=$(now); git agent spawn --name "o$i" --wait -m x -- sh -c 'echo done' >/dev/null 2>&1; t1=$(now)
  agent+=("$(secs $((t1 - t0)))")
  git agent purge --refs "o$i" >/dev/null 2>&1
done
d=$(median "${direct[@]}"); a=$(median "${agent[@]}")
echo "# git-agent headless overhead and image builds  $(date -u +%Y-%m-%dT%H:%MZ)  cores=$(nproc)  runs=$RUNS (medians)"
echo "build_cold=${build_cold}s (new last layer) build_warm=${build_warm}s (build steps run: ${steps_warm})"
echo "direct=${d}s git_agent=${a}s overhead=$(python3 -c "print(f'{$a-$d:.3f}')")s (x$(python3 -c "print(f'{$a/$d:.2f}')"))"
