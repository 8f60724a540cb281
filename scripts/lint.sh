#!/usr/bin/env bash
# Lint what is not Rust: shell scripts, the read-only guard (Perl and its JavaScript part) and
# the gateway (Python). Installs the linters it lacks (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v perlcritic >/dev/null 2>&1 || need+=(libperl-critic-perl)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v pyflakes3 >/dev/null 2>&1 || need+=(python3-pyflakes)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
shellcheck scripts/*.sh benches/*.sh .ci/run dockerfiles/git-agent-sandbox
# hooks/git-readonly is a sh preamble that starts the Perl after `#!perl` (perl -x).
sed -n '/^#!perl$/,$p' hooks/git-readonly | perlcritic --quiet --severity 4 -
perl -c -x hooks/git-readonly 2>&1 | grep -q 'syntax OK'
sed '/^#!perl$/,$d' hooks/git-readonly | shellcheck -s sh -
node --check hooks/git-readonly-claude.js
pyflakes3 dockerfiles/git-agent-gateway
echo "lint: ok"
