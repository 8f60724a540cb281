#!/usr/bin/env bash
# Benchmark promotion (`git agent commit`) of long agent histories against same-run baselines.
#
# For each history length N (SIZES, default "1000 10000 100000") an exec task makes N commits
# in its sandbox (git fast-import inside the container, each commit changing one small file),
# the work is synced, and then, on the host, in the same run:
#
#   sync_noop           `git agent sync <task>` when there is nothing new (commit starts with
#                       this check)
#   commit              wall time of `git agent commit <task>` (unsigned; includes that sync
#                       check); commit_minus_sync is the promotion itself
#   commit_signed       the same with SSH commit signing (commit.gpgSign), for N <= SIGNED_MAX
#                       (a second task of the same shape)
#   floor_fast_import   `git fast-export --no-data --reference-excluded-parents base..head |
#                       git fast-import` into a scratch repository borrowing the objects: the
#                       floor for writing N commits in bulk with git's own tools
#   rebase              `git rebase --force-rebase` of the same history in a scratch worktree
#                       (what re-creating the commits by hand costs), for N <= REBASE_MAX
#   per_commit          the previous implementation (per commit: `git show`, `git commit-tree`,
#                       `git notes add`) into a scratch repository, for N <= PER_COMMIT_MAX;
#                       per_commit_extrapolated scales it linearly to N
#
# commit, floor_fast_import and rebase run REPS times each (commit again after putting the
# task's refs, its branch and the notes ref back as they were) and print their median; then
# ratios of the medians, commit_over_floor and commit_minus_sync_over_floor.
#
# Figures only: it never decides pass/fail. Progress goes to stderr, results to stdout.
#
# Environment:
#   SIZES="1000 10000 100000"   history lengths
#   REPS=3                      runs per measurement (the median is printed)
#   SIGNED_MAX=1000             largest N measured with signing (one ssh-keygen per commit)
#   REBASE_MAX=10000            largest N measured with git rebase
#   PER_COMMIT_MAX=1000         largest N measured with the per-commit loop
#   BASE_IMAGE=git-agent-base:bookworm
#   GIT_AGENT=<path>            measure this binary instead of building target/release/git-agent
set -euo pipefail

SIZES="${SIZES:-1000 10000 100000}"
REPS="${REPS:-3}"
SIGNED_MAX="${SIGNED_MAX:-1000}"
REBASE_MAX="${REBASE_MAX:-10000}"
PER_COMMIT_MAX="${PER_COMMIT_MAX:-1000}"
BASE_IMAGE="${BASE_IMAGE:-git-agent-base:bookworm}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); if (NR % 2) print v[m]; else printf "%.3f\n", (v[m] + v[m + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

command -v docker >/dev/null || die "the docker CLI is needed"
docker info >/dev/null 2>&1 || die "no container engine answers (see scripts/setup-engine.sh)"
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "base image $BASE_IMAGE is missing"

if [ -n "${GIT_AGENT:-}" ]; then
  BIN="$(cd "$(dirname "$GIT_AGENT")" && pwd)/$(basename "$GIT_AGENT")"
else
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) >&2 || die "cargo build --release failed"
  BIN="$ROOT/target/release/git-agent"
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/git-agent-promote-bench.XXXXXX")"
mkdir -p "$WORK/bin" "$WORK/home"
cp "$BIN" "$WORK/bin/git-agent"
export PATH="$WORK/bin:$PATH" HOME="$WORK/home" GIT_CONFIG_NOSYSTEM=1
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
git config --global user.name "git-agent bench"
git config --global user.email "bench@example.invalid"
git config --global init.defaultBranch main
git config --global agent.baseImage "$BASE_IMAGE"
git config --global agent.defaultAgent exec

REPO="$WORK/repo"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -d "$REPO" ]; then
    for t in $(git -C "$REPO" for-each-ref --format='%(refname)' refs/agent/ |
      sed -n 's,^refs/agent/\([^/]*\)/.*,\1,p' | sort -u); do
      git -C "$REPO" agent purge --refs "$t" >/dev/null 2>&1 || true
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

git init -q "$REPO"
echo base > "$REPO/README.md"
git -C "$REPO" add README.md
git -C "$REPO" commit -qm base

# The agent's work: N commits, each changing one of 50 small files.
make_history() {
  cat <<EOF
set -e
b=\$(git symbolic-ref HEAD)
p=\$(git rev-parse HEAD)
i=1
while [ \$i -le $1 ]; do
  printf 'commit %s\ncommitter git-agent sandbox <agent@sandbox.invalid> %d +0000\ndata <<EOM\nstep %d\nEOM\n' "\$b" \$((1700000000 + i)) \$i
  [ \$i -eq 1 ] && printf 'from %s\n' "\$p"
  printf 'M 100644 inline f%d.txt\ndata <<EOM\nline %d\nEOM\n\n' \$((i % 50)) \$i
  i=\$((i + 1))
done | git fast-import --quiet
git reset -q --hard
EOF
}

task() { # task NAME N
  log "spawning $1 ($2 commits)"
  git -C "$REPO" agent spawn --name "$1" --wait -m x -- sh -c "$(make_history "$2")" >/dev/null 2>&1
  git -C "$REPO" agent sync "$1" >/dev/null 2>&1
}

printf 'commits\tmetric\tseconds\n'
for n in $SIZES; do
  t="p$n"
  task "$t" "$n"
  base=$(git -C "$REPO" rev-parse "refs/agent/$t/base")
  head=$(git -C "$REPO" rev-parse "refs/agent/$t/head")

  log "$n: git agent sync (nothing new)"
  a=$(now)
  git -C "$REPO" agent sync "$t" >/dev/null 2>&1
  b=$(now)
  sync_ns=$((b - a))
  printf '%s\tsync_noop\t%s\n' "$n" "$(secs "$a" "$b")"

  # What commit changes, to put back before the next run.
  saved=$(git -C "$REPO" for-each-ref --format='%(refname) %(objectname)' "refs/agent/$t/" refs/notes/agent)
  commits="" minus=""
  for r in $(seq "$REPS"); do
    log "$n: git agent commit ($r/$REPS)"
    a=$(now)
    git -C "$REPO" agent commit "$t" >/dev/null 2>"$WORK/commit.err" || { cat "$WORK/commit.err" >&2; die "commit failed"; }
    b=$(now)
    commits="$commits $(secs "$a" "$b")"
    minus="$minus $(secs "$a" "$((b - sync_ns))")"
    git -C "$REPO" update-ref -d "refs/heads/agent/$t"
    git -C "$REPO" update-ref -d refs/notes/agent
    printf '%s\n' "$saved" | while read -r ref id; do git -C "$REPO" update-ref "$ref" "$id"; done
  done
  commit=$(printf '%s' "$commits" | median)
  commit_minus=$(printf '%s' "$minus" | median)
  printf '%s\tcommit\t%s\n' "$n" "$commit"
  printf '%s\tcommit_minus_sync\t%s\n' "$n" "$commit_minus"

  floors=""
  for r in $(seq "$REPS"); do
    log "$n: fast-export | fast-import floor ($r/$REPS)"
    rm -rf "$WORK/scratch"
    git init -q --bare "$WORK/scratch"
    git -C "$REPO" rev-parse --path-format=absolute --git-path objects > "$WORK/scratch/objects/info/alternates"
    a=$(now)
    git -C "$REPO" fast-export --no-data --reference-excluded-parents --signed-tags=strip \
      --refspec "$head:refs/heads/x" "$base..$head" 2>/dev/null |
      git --git-dir="$WORK/scratch" fast-import --quiet
    floors="$floors $(secs "$a" "$(now)")"
  done
  floor=$(printf '%s' "$floors" | median)
  printf '%s\tfloor_fast_import\t%s\n' "$n" "$floor"
  printf '%s\tcommit_over_floor\t%s\n' "$n" "$(ratio "$commit" "$floor")"
  printf '%s\tcommit_minus_sync_over_floor\t%s\n' "$n" "$(ratio "$commit_minus" "$floor")"

  if [ "$n" -le "$REBASE_MAX" ]; then
    rebases=""
    for r in $(seq "$REPS"); do
      log "$n: git rebase --force-rebase ($r/$REPS)"
      rm -rf "$WORK/wt"
      git -C "$REPO" worktree add -q --detach "$WORK/wt" "$head"
      a=$(now)
      git -C "$WORK/wt" rebase -q --force-rebase "$base" >/dev/null 2>&1
      rebases="$rebases $(secs "$a" "$(now)")"
      git -C "$REPO" worktree remove --force "$WORK/wt"
    done
    rebase=$(printf '%s' "$rebases" | median)
    printf '%s\trebase\t%s\n' "$n" "$rebase"
    printf '%s\tcommit_over_rebase\t%s\n' "$n" "$(ratio "$commit" "$rebase")"
  fi

  if [ "$n" -le "$PER_COMMIT_MAX" ]; then
    log "$n: per-commit loop (previous implementation)"
    rm -rf "$WORK/scratch2"
    git init -q --bare "$WORK/scratch2"
    git -C "$REPO" rev-parse --path-format=absolute --git-path objects > "$WORK/scratch2/objects/info/alternates"
    s="git --git-dir=$WORK/scratch2"
    a=$(now)
    last=$base
    for c in $($s rev-list --reverse --topo-order "$head" "^$base"); do
      msg=$($s show -s --format=%B "$c")
      last=$(printf '%s' "$msg" | $s commit-tree "$c^{tree}" -p "$last" -F -)
      $s notes --ref refs/notes/agent add -f -m "git-agent-source: $c" "$last"
    done
    b=$(now)
    printf '%s\tper_commit\t%s\n' "$n" "$(secs "$a" "$b")"
    for m in $SIZES; do
      [ "$m" -gt "$n" ] && printf '%s\tper_commit_extrapolated\t%s\n' "$m" \
        "$(awk -v a="$a" -v b="$b" -v n="$n" -v m="$m" 'BEGIN { printf "%.1f", (b - a) / 1e9 * m / n }')"
    done
  fi

  if [ "$n" -le "$SIGNED_MAX" ]; then
    task "s$n" "$n"
    [ -f "$WORK/key" ] || ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/key"
    log "$n: git agent commit, signed"
    a=$(now)
    git -C "$REPO" -c gpg.format=ssh -c user.signingKey="$WORK/key" -c commit.gpgSign=true \
      agent commit "s$n" >/dev/null 2>"$WORK/commit.err" || { cat "$WORK/commit.err" >&2; die "signed commit failed"; }
    printf '%s\tcommit_signed\t%s\n' "$n" "$(secs "$a" "$(now)")"
  fi
done
