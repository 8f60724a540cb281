#!/usr/bin/env bash
# Make a rootless Podman engine, serving the Docker-compatible API, available on a fresh Debian
# (bookworm) machine, with the local base image loaded; print the DOCKER_HOST that reaches it.
# Idempotent: does nothing that is already done. Used by scripts/test.sh (GIT_AGENT_TEST_PODMAN)
# and the README's "Podman" section. Run as root; Podman itself runs as an unprivileged user.
#
# What this machine needs beyond the packages (each found by trying, see the README):
# - /dev/net/tun is 0600 here (Debian's udev makes it 0666): slirp4netns, which gives the
#   rootless network namespace its way out, fails with "open(/dev/net/tun): Permission denied".
#   The Podman user alone is given access (an ACL), not everyone.
# - cgroups are hybrid (v1 controllers, hugetlb on the v2 hierarchy): crun 1.8 refuses every
#   container ("cgroups in hybrid mode not supported"), runc runs them.
# - The user's home must not be under /var/lib: Podman's rootless network namespace mounts
#   over parts of /var/lib, and `run --network <net>` then finds no network.
set -euo pipefail

PODMAN_USER="${GIT_AGENT_PODMAN_USER:-gitagent-podman}"
PODMAN_HOME="/home/$PODMAN_USER"
RUN_DIR="/run/$PODMAN_USER"
SOCKET="$RUN_DIR/podman.sock"
BASE_IMAGE="${GIT_AGENT_TEST_BASE_IMAGE:-git-agent-base:bookworm}"
# A range of ids for the user's namespace, away from the ranges useradd hands out.
SUBID_START=200000
SUBID_COUNT=65536

log() { printf 'setup-podman: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "run this as root (it installs packages and creates $PODMAN_USER)"; exit 1; }

as_user() {
  (cd / && runuser -u "$PODMAN_USER" -- env HOME="$PODMAN_HOME" XDG_RUNTIME_DIR="$RUN_DIR" \
    XDG_CONFIG_HOME="$PODMAN_HOME/.config" PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@")
}

api_up() { curl -sf --max-time 5 --unix-socket "$SOCKET" http://podman/_ping >/dev/null 2>&1; }

# Packages: podman with netavark/aardvark-dns (its network stack), slirp4netns (the rootless
# network namespace's way out), uidmap (newuidmap/newgidmap), runc (see above), acl (setfacl),
# catatonit (the init of tasks' containers).
need=()
for cmd in podman:podman newuidmap:uidmap slirp4netns:slirp4netns runc:runc setfacl:acl \
  curl:curl; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need+=("${cmd#*:}")
done
[ -x /usr/lib/podman/netavark ] || need+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || need+=(aardvark-dns)
# The init Podman runs for `init: true` containers (a recommendation of the podman package only).
[ -x /usr/libexec/podman/catatonit ] || need+=(catatonit)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

if ! id "$PODMAN_USER" >/dev/null 2>&1; then
  log "creating user $PODMAN_USER"
  useradd --system --create-home --home-dir "$PODMAN_HOME" --shell /usr/sbin/nologin "$PODMAN_USER"
fi
# System users get no subordinate ids from useradd.
if ! grep -q "^$PODMAN_USER:" /etc/subuid 2>/dev/null; then
  usermod --add-subuids "$SUBID_START-$((SUBID_START + SUBID_COUNT - 1))" "$PODMAN_USER"
fi
if ! grep -q "^$PODMAN_USER:" /etc/subgid 2>/dev/null; then
  usermod --add-subgids "$SUBID_START-$((SUBID_START + SUBID_COUNT - 1))" "$PODMAN_USER"
fi

if [ "$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)" = 0 ]; then
  log "user namespaces are disabled (user.max_user_namespaces = 0): rootless Podman cannot run"
  exit 1
fi

if [ ! -e /dev/net/tun ]; then
  mkdir -p /dev/net
  mknod -m 0600 /dev/net/tun c 10 200
fi
# Works on a device that is 0666 already, as well as on this machine's 0600 one.
setfacl -m "u:$PODMAN_USER:rw" /dev/net/tun

conf="$PODMAN_HOME/.config/containers"
install -d -o "$PODMAN_USER" -g "$PODMAN_USER" -m 0755 "$PODMAN_HOME/.config" "$conf"
write_conf() { # file content: replaced only when different
  if [ "$(cat "$1" 2>/dev/null)" != "$2" ]; then
    printf '%s\n' "$2" >"$1"
    chown "$PODMAN_USER:" "$1"
  fi
}
# The kernel's own overlayfs works in a user namespace (Linux >= 5.13); Podman 4.3 would
# otherwise pick vfs (a full copy of every layer per container).
write_conf "$conf/storage.conf" '[storage]
driver = "overlay"'
# No systemd here: cgroupfs, and events in a file instead of the journal.
write_conf "$conf/containers.conf" '[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'

install -d -o "$PODMAN_USER" -g "$PODMAN_USER" -m 0700 "$RUN_DIR"

if ! api_up; then
  # A service killed with its machine leaves its socket (and a stale pause process) behind.
  rm -f "$SOCKET"
  log "starting podman system service as $PODMAN_USER"
  as_user sh -c "nohup podman system service --time=0 unix://$SOCKET >'$PODMAN_HOME/service.log' 2>&1 &"
  for _ in $(seq 1 30); do
    api_up && break
    sleep 1
  done
  api_up || { log "the podman service did not come up; see $PODMAN_HOME/service.log"; tail -20 "$PODMAN_HOME/service.log" >&2; exit 1; }
fi
log "engine: podman $(as_user podman version --format '{{.Server.Version}}' 2>/dev/null || echo '?')"

if ! as_user podman image exists "$BASE_IMAGE"; then
  if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE is not in the Docker engine: run scripts/setup-engine.sh first"
    exit 1
  fi
  log "copying $BASE_IMAGE from Docker"
  docker save "$BASE_IMAGE" | as_user podman load -q >/dev/null
fi
log "base image: $BASE_IMAGE"
echo "DOCKER_HOST=unix://$SOCKET"
