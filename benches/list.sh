#!/usr/bin/env bash
# `list` and `status` over many tasks, next to the old per-task diff measured in the same run.
#
#   bash benches/list.sh                 # TASKS=1000 RUNS=5
#   GIT_AGENT=target/debug/git-agent bash benches/list.sh   # measure a given binary
#
# Prints medians over RUNS (seconds) and ratios, all measured in this run:
#   list_recorded      `git agent list` where every task's change summary was recorded at sync
#   list_legacy        the same over records from before summaries (one git diff-tree for all)
#   status             `git agent status <task>` among TASKS tasks
#   old_git_cost       what the old `list` spent in git alone: one `git for-each-ref` plus one
#                      `git diff --shortstat <base> <tip>` per task (the baseline)
#   floor              `git agent list` in a repository without tasks (process start, repository
#                      discovery, config; no engine request is made without tasks)
# Tasks are written straight into refs with `git fast-import` (a state commit per task with its
# task.toml and prompt, plus base and head refs); half have work (a head commit changing a
# file), half none. The container engine is asked as `list` always does (one inventory);
# the tasks have no containers.
set -euo pipefail
TASKS="${TASKS:-1000}"
RUNS="${RUNS:-5}"
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${GIT_AGENT:-}" ]; then
  (cd "$root" && cargo build --release -q)
  GIT_AGENT="$root/target/release/git-agent"
fi
work="$(mktemp -d /tmp/git-agent-list.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/home"
cp "$GIT_AGENT" "$work/bin/git-agent"
export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1 PATH="$work/bin:$PATH"
git config --global user.name bench
git config --global user.email bench@example.com

now() { date +%s%N; }
median() { python3 -c "import sys,statistics; print(f'{statistics.median(int(x) for x in sys.argv[1:])/1e9:.4f}')" "$@"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }

# make_repo DIR RECORDED: a repository with TASKS tasks; RECORDED=1 writes change summaries.
make_repo() {
  local dir="$1" recorded="$2"
  git init -q -b main "$dir"
  (cd "$dir" && seq 1 200 > file.txt && git add . && git commit -qm base)
  local base tip
  base=$(git -C "$dir" rev-parse HEAD)
  (cd "$dir" && git checkout -q -b work && seq 1 2 200 > file.txt && echo new > new.txt \
    && git add . && git commit -qm work && git checkout -q main && git branch -qD work)
  tip=$(git -C "$dir" rev-parse 'HEAD@{1}')
  local stat
  stat=$(git -C "$dir" diff --shortstat "$base" "$tip")
  python3 - "$TASKS" "$base" "$tip" "$recorded" "$stat" <<'EOF' | git -C "$dir" fast-import --quiet
import re, sys
tasks, base, tip, recorded, stat = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]
nums = {k: int(n) for n, k in re.findall(r"(\d+) (file|insertion|deletion)", stat)}
out = sys.stdout.buffer
def data(b):
    out.write(b"data %d\n" % len(b) + b + b"\n")
for i in range(tasks):
    name = f"t{i:04d}"
    has_work = i % 2 == 1
    rec = f'''schema = 1
name = "{name}"
agent = "exec"
command = ["true"]
base = "{base}"
base_branch = "main"
dirty = false
status = "exited"
exit_code = 0
created = 1700000000
interactive = false
restarts = 0
read_only = false
git_readonly = false

[sandbox]
image = "git-agent-bench"
image_id = "sha256:0"
'''
    if has_work and recorded:
        rec += f'''
[changes]
tip = "{tip}"
files = {nums.get("file", 0)}
insertions = {nums.get("insertion", 0)}
deletions = {nums.get("deletion", 0)}
'''
    out.write(f"commit refs/agent/{name}/state\ncommitter git-agent <git-agent@localhost> 1700000000 +0000\n".encode())
    data(f"create {name}".encode())
    out.write(b"M 100644 inline task.toml\n"); data(rec.encode())
    out.write(b"M 100644 inline prompt.md\n"); data(f"task {i}".encode())
    out.write(f"\nreset refs/agent/{name}/base\nfrom {base}\n\n".encode())
    if has_work:
        out.write(f"reset refs/agent/{name}/head\nfrom {tip}\n\n".encode())
EOF
}

make_repo "$work/recorded" 1
make_repo "$work/legacy" 0
git init -q -b main "$work/empty"
(cd "$work/empty" && echo x > a && git add . && git commit -qm x)

# Sanity: every task lists, and the summaries agree with git diff.
n=$(cd "$work/recorded" && git agent list --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
[ "$n" = "$TASKS" ] || { echo "list showed $n of $TASKS tasks" >&2; exit 1; }
a=$(cd "$work/recorded" && git agent list --json | python3 -c "import json,sys; print(sum(r['insertions'] for r in json.load(sys.stdin)))")
b=$(cd "$work/legacy" && git agent list --json | python3 -c "import json,sys; print(sum(r['insertions'] for r in json.load(sys.stdin)))")
[ "$a" = "$b" ] || { echo "recorded and computed summaries differ: $a vs $b" >&2; exit 1; }

old_cost() {
  local dir="$1"
  git -C "$dir" for-each-ref --format='%(refname) %(objectname)' refs/agent/ |
    awk '$1 ~ /\/base$/ {sub(/\/base$/, "", $1); base[$1]=$2} $1 ~ /\/head$/ {sub(/\/head$/, "", $1); head[$1]=$2}
         END {for (t in base) print base[t], (t in head ? head[t] : base[t])}' |
    while read -r base tip; do git -C "$dir" diff --shortstat "$base" "$tip" >/dev/null; done
}

declare -a L_REC L_LEG STATUS OLD FLOOR
for _ in $(seq 0 "$RUNS"); do   # the first round warms caches and is not counted
  t0=$(now); (cd "$work/recorded" && git agent list >/dev/null); t1=$(now); L_REC+=($((t1 - t0)))
  t0=$(now); (cd "$work/legacy" && git agent list >/dev/null); t1=$(now); L_LEG+=($((t1 - t0)))
  t0=$(now); (cd "$work/recorded" && git agent status t0500 >/dev/null); t1=$(now); STATUS+=($((t1 - t0)))
  t0=$(now); old_cost "$work/recorded"; t1=$(now); OLD+=($((t1 - t0)))
  t0=$(now); (cd "$work/empty" && git agent list >/dev/null 2>&1); t1=$(now); FLOOR+=($((t1 - t0)))
done
m() { local a=("$@"); median "${a[@]:1}"; }
list_recorded=$(m "${L_REC[@]}")
list_legacy=$(m "${L_LEG[@]}")
status=$(m "${STATUS[@]}")
old=$(m "${OLD[@]}")
floor=$(m "${FLOOR[@]}")
echo "tasks=$TASKS runs=$RUNS binary=$GIT_AGENT"
printf '%-16s %8s s\n' list_recorded "$list_recorded" list_legacy "$list_legacy" status "$status" old_git_cost "$old" floor "$floor"
echo "old_git_cost / list_recorded = $(ratio "$old" "$list_recorded")"
echo "list_legacy / list_recorded  = $(ratio "$list_legacy" "$list_recorded")"
echo "list_recorded / floor        = $(ratio "$list_recorded" "$floor")"
