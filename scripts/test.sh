#!/usr/bin/env bash
# The test command: make sure an engine and the local base image exist, then run every test
# with Docker required (a missing engine fails the Docker tests instead of skipping them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-engine.sh
# A second engine, TLS and SSH only, in a network namespace of its own (tests/it/remote.rs).
bash scripts/second-engine.sh
# Tools the tests drive: tmux and script(1) for terminals, ssh-keygen for signing keys.
missing=""
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
command -v script >/dev/null 2>&1 || missing="$missing util-linux"
command -v ssh-keygen >/dev/null 2>&1 || missing="$missing openssh-client"
command -v man >/dev/null 2>&1 || missing="$missing man-db"
if [ -n "$missing" ]; then
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
export GIT_AGENT_REQUIRE_DOCKER=1
export GIT_AGENT_TEST_BASE_IMAGE="${GIT_AGENT_TEST_BASE_IMAGE:-git-agent-base:bookworm}"
# Most tests wait on the engine, not the CPU: four at a time (override with RUST_TEST_THREADS).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
# Every locked package, other platforms' too: a test reads the whole dependency graph offline.
cargo fetch --locked >/dev/null
# The engine-less local runtime is built into the test binary only (see README, "Tests").
cargo test --locked --features local-runtime "$@"
