#!/usr/bin/env bash
# A first task end to end in a throwaway repository: spawn, sync, review, commit.
set -euo pipefail
image="${GIT_AGENT_BASE_IMAGE:-}"
if [ -z "$image" ]; then
  if docker image inspect git-agent-base:bookworm >/dev/null 2>&1; then
    image=git-agent-base:bookworm
  else
    image=debian:bookworm-slim
  fi
fi
repo="$(mktemp -d /tmp/git-agent-demo.XXXXXX)"
# Bulk purge asks on a terminal and needs --yes elsewhere; a failure is said, not hidden.
trap 'cd /; git -C "$repo" agent purge --refs --all --yes >/dev/null || echo "demo: the demo task could not be removed" >&2; rm -rf "$repo"' EXIT
cd "$repo"
git init -q -b main
git config user.name "${GIT_AUTHOR_NAME:-git-agent demo}"
git config user.email "${GIT_AUTHOR_EMAIL:-demo@example.com}"
git config agent.baseImage "$image"
printf '# demo\n' > README.md
git add README.md && git commit -q -m "initial"
set -x
git agent spawn --name demo --wait -m "add a greeting" -- \
  sh -c 'echo "hello from the sandbox" > hello.txt && git add hello.txt && git commit -q -m "Add hello.txt" && echo done'
git agent list
git agent review demo
git agent commit demo
git log --oneline agent/demo
