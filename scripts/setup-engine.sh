#!/usr/bin/env bash
# Make a Docker engine and the local base image available on a fresh Debian machine.
# Idempotent: does nothing that is already done. Used by .ci/run and the README.
set -euo pipefail

BASE_IMAGE="${GIT_AGENT_TEST_BASE_IMAGE:-git-agent-base:bookworm}"

log() { printf 'setup-engine: %s\n' "$*" >&2; }

engine_up() { docker info >/dev/null 2>&1; }

if ! engine_up; then
  if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
  fi
  # A hand-started dockerd here comes up without its default bridge; create it first.
  if ! ip link show docker0 >/dev/null 2>&1; then
    ip link add docker0 type bridge
    ip addr add 172.17.0.1/16 dev docker0
    ip link set docker0 up
  fi
  # A dockerd killed with its machine leaves pid files behind that block a new start.
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
  fi
  log "starting dockerd"
  # Every task has its own network: give the engine room for many (256 /24 networks rather
  # than the default 31), so parallel tests and many tasks never exhaust the address pool.
  nohup dockerd --default-address-pool base=10.213.0.0/16,size=24 >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    engine_up && break
    sleep 1
  done
  engine_up || { log "dockerd did not come up; see /var/log/dockerd.log"; tail -20 /var/log/dockerd.log >&2; exit 1; }
fi
log "engine: $(docker version --format '{{.Server.Version}}')"

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq debootstrap >/dev/null
  fi
  root="$(mktemp -d /tmp/git-agent-rootfs.XXXXXX)"
  log "debootstrap bookworm into $root"
  debootstrap --variant=minbase --include=git,ca-certificates bookworm "$root" >/tmp/debootstrap.log 2>&1 \
    || { tail -30 /tmp/debootstrap.log >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
  log "imported $BASE_IMAGE"
fi
log "base image: $BASE_IMAGE"
