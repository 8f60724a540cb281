#!/usr/bin/env bash
# Install git-agent (binary, man pages, shell completions), make sure a container engine answers, and run a
# first task end to end. Set GIT_AGENT_SKIP_ENGINE=1 to leave the engine alone and
# GIT_AGENT_SKIP_DEMO=1 to skip the demo task.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo install --locked --path . --root "${CARGO_HOME:-$HOME/.cargo}"
man_dir="${CARGO_HOME:-$HOME/.cargo}/share/man/man1"
install -d "$man_dir"
install -m 0644 man/*.1 "$man_dir/"
echo "install: man pages in $man_dir (found by man through ${CARGO_HOME:-$HOME/.cargo}/bin on PATH)" >&2
# Shell completions, where each shell looks for them (bash-completion loads `git-agent` both for
# `git-agent` and, through git's own completion, for `git agent`).
agent="${CARGO_HOME:-$HOME/.cargo}/bin/git-agent"
bash_dir="${BASH_COMPLETION_USER_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion}/completions"
zsh_dir="${XDG_DATA_HOME:-$HOME/.local/share}/zsh/site-functions"
fish_dir="${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions"
install -d "$bash_dir" "$zsh_dir" "$fish_dir"
"$agent" completion bash >"$bash_dir/git-agent"
"$agent" completion zsh >"$zsh_dir/_git-agent"
"$agent" completion fish >"$fish_dir/git-agent.fish"
echo "install: completions in $bash_dir, $zsh_dir (add it to fpath) and $fish_dir" >&2
if [ "${GIT_AGENT_SKIP_ENGINE:-0}" != 1 ] && ! docker info >/dev/null 2>&1; then
  bash scripts/setup-engine.sh
fi
if [ "${GIT_AGENT_SKIP_DEMO:-0}" != 1 ]; then
  PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" bash scripts/demo.sh
fi
