#!/usr/bin/env bash
# Make a Docker engine and the local base image available on a fresh Debian machine.
# Idempotent: does nothing that is already done. Used by .ci/run and the README.
set -euo pipefail

BASE_IMAGE="${GIT_AGENT_TEST_BASE_IMAGE:-git-agent-base:bookworm}"

log() { printf 'setup-engine: %s\n' "$*" >&2; }

engine_up() { docker info >/dev/null 2>&1; }

# gVisor's runsc, for tasks that ask for a kernel of their own (`agent.ociRuntime runsc`).
# It is registered through /etc/docker/daemon.json, which dockerd reads when it starts and
# again on SIGHUP: a running engine (other work may be using it) is reloaded, never restarted.
if ! command -v runsc >/dev/null 2>&1; then
  log "installing runsc (gVisor)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq runsc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq runsc >/dev/null; }
fi
# Debian's runsc (2022) refuses its own network stack in any network namespace where
# /proc/sys/net/core/rmem_default exists, taking it for the host's; newer kernels give every
# namespace that file. There it runs with the host kernel's network stack (`--network=host`),
# still inside the container's namespace (the task's internal network and gateway hold).
RUNSC_ARGS='[]'
if unshare -n test -e /proc/sys/net/core/rmem_default 2>/dev/null; then
  RUNSC_ARGS='["--network=host"]'
fi
runsc_changed="$(python3 - "$RUNSC_ARGS" <<'PY'
import json, os, sys
path = "/etc/docker/daemon.json"
conf = {}
if os.path.exists(path):
    with open(path) as f:
        text = f.read().strip()
    conf = json.loads(text) if text else {}
want = {"path": "/usr/bin/runsc", "runtimeArgs": json.loads(sys.argv[1])}
if conf.get("runtimes", {}).get("runsc") != want:
    conf.setdefault("runtimes", {})["runsc"] = want
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print("changed")
PY
)"
has_runsc() { docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null | grep -qw runsc; }

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
if [ -n "$runsc_changed" ] || ! has_runsc; then
  # The engine on the default socket; another dockerd beside it (own pid file) is not touched.
  log "reloading dockerd's configuration for runsc"
  kill -HUP "$(cat /var/run/docker.pid)"
  for _ in $(seq 1 20); do
    sleep 0.5
    has_runsc && break
  done
fi
has_runsc || { log "dockerd does not list runsc after a reload; see /var/log/dockerd.log"; exit 1; }
log "OCI runtimes: $(docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}')"

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
