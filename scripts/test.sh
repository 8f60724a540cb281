#!/usr/bin/env bash
# The test command: make sure an engine and the local base image exist, then run every test
# with Docker required (a missing engine fails the Docker tests instead of skipping them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-engine.sh
export GIT_AGENT_REQUIRE_DOCKER=1
export GIT_AGENT_TEST_BASE_IMAGE="${GIT_AGENT_TEST_BASE_IMAGE:-git-agent-base:bookworm}"
cargo test --locked "$@"
