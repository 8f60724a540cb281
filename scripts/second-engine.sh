#!/usr/bin/env bash
# A second Docker engine that shares neither the host's file system paths nor its network:
# the engine of tests/it/remote.rs. It runs in a network namespace of its own, reached from
# the host over a veth pair, and listens ONLY on tcp://10.77.0.2:2376 with --tlsverify
# (a CA, a server certificate for that address and a client certificate, all made here), with
# an sshd beside it for ssh://root@10.77.0.2 (a key pair made here; the session's `docker`
# CLI talks to the engine over TLS). The host's engine is left untouched.
#
#   bash scripts/second-engine.sh        bring it up (idempotent) and copy the base image in
#   bash scripts/second-engine.sh down   stop it and remove the namespace (keeps its data)
#
# What a client needs is written to $STATE/env (DOCKER_HOST, DOCKER_TLS_VERIFY,
# DOCKER_CERT_PATH) and $STATE/ssh/config (the key and the pinned host key).
set -euo pipefail

NS=git-agent-second
STATE=/var/lib/git-agent-second
RUN=/run/git-agent-second
HOST_IF=ga2-host
NS_IF=ga2-ns
HOST_IP=10.77.0.1
ENGINE_IP=10.77.0.2
PORT=2376
BRIDGE=ga2br0
BRIDGE_CIDR=10.78.0.1/24
POOL=10.79.0.0/16
BASE_IMAGE="${GIT_AGENT_TEST_BASE_IMAGE:-git-agent-base:bookworm}"

log() { printf 'second-engine: %s\n' "$*" >&2; }
# Only the network namespace is entered (`ip netns exec` would also remount /sys, hiding the
# cgroup file systems dockerd needs).
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }

down() {
  for pidfile in "$RUN/sshd.pid" "$RUN/docker.pid"; do
    if [ -s "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
  done
  for _ in $(seq 1 30); do
    if ! { [ -s "$RUN/docker.pid" ] && kill -0 "$(cat "$RUN/docker.pid")" 2>/dev/null; }; then
      break
    fi
    sleep 1
  done
  rm -f "$RUN/docker.pid" "$RUN/sshd.pid"
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOST_IF" 2>/dev/null || true
  log "down"
}

# One run at a time (tests of several processes may ask for the engine together).
mkdir -p "$RUN"
# The daemons started below must not inherit the lock (9>&-), or it is held as long as they
# run and every later call waits forever.
exec 9>"$RUN/lock"
flock 9

if [ "${1:-up}" = down ]; then
  down
  exit 0
fi

# Packages: openssl for the certificates, sshd for ssh://, iproute2 for the namespace.
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The package must not start an sshd on the host: services stay down while it installs.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

mkdir -p "$STATE/certs" "$STATE/ssh" "$RUN"
chmod 700 "$STATE" "$STATE/ssh"

# Certificates: a CA, the server's (SAN = the engine's address) and a client's.
certs="$STATE/certs"
if [ ! -s "$certs/client/cert.pem" ]; then
  log "making certificates"
  rm -rf "$certs"
  mkdir -p "$certs/server" "$certs/client"
  (
    cd "$certs"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=git-agent test CA" \
      -keyout ca-key.pem -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$ENGINE_IP" \
      -keyout server/key.pem -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$ENGINE_IP" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile server.ext -out server/cert.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=git-agent test client" \
      -keyout client/key.pem -out client.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile client.ext -out client/cert.pem 2>/dev/null
    cp ca.pem server/ca.pem
    cp ca.pem client/ca.pem
    rm -f ./*.csr ./*.ext
  )
fi

# The namespace and its link to the host. Containers of the second engine reach the outside
# (package mirrors for image builds) through the host, masqueraded.
if ! ip netns list | grep -qw "$NS"; then
  ip netns add "$NS"
fi
if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
  ip link add "$HOST_IF" type veth peer name "$NS_IF"
  ip link set "$NS_IF" netns "$NS"
  ip addr add "$HOST_IP/24" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  in_ns ip addr add "$ENGINE_IP/24" dev "$NS_IF"
  in_ns ip link set "$NS_IF" up
  in_ns ip link set lo up
  in_ns ip route add default via "$HOST_IP"
fi
if ! in_ns ip link show "$BRIDGE" >/dev/null 2>&1; then
  in_ns ip link add "$BRIDGE" type bridge
  in_ns ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
  in_ns ip link set "$BRIDGE" up
fi
sysctl -qw net.ipv4.ip_forward=1
add_rule() {
  local table=$1 chain=$2
  shift 2
  iptables -t "$table" -C "$chain" "$@" 2>/dev/null || iptables -t "$table" -I "$chain" 1 "$@"
}
# Out through the host's default route only: not into the host engine's own networks.
out_if="$(ip -o route show default | awk '{ print $5; exit }')"
[ -n "$out_if" ] || { log "the host has no default route"; exit 1; }
add_rule nat POSTROUTING -s "$HOST_IP/24" -o "$out_if" -j MASQUERADE
add_rule filter FORWARD -i "$HOST_IF" -o "$out_if" -j ACCEPT
add_rule filter FORWARD -i "$out_if" -o "$HOST_IF" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT

engine_up() {
  docker --tlsverify --tlscacert "$certs/client/ca.pem" --tlscert "$certs/client/cert.pem" \
    --tlskey "$certs/client/key.pem" -H "tcp://$ENGINE_IP:$PORT" info >/dev/null 2>&1
}

if ! engine_up; then
  if [ -s "$RUN/docker.pid" ] && ! kill -0 "$(cat "$RUN/docker.pid")" 2>/dev/null; then
    rm -f "$RUN/docker.pid"
  fi
  log "starting the second dockerd on tcp://$ENGINE_IP:$PORT"
  in_ns nohup dockerd \
    --data-root "$STATE/docker" \
    --exec-root "$RUN/exec" \
    --pidfile "$RUN/docker.pid" \
    --bridge "$BRIDGE" \
    --default-address-pool "base=$POOL,size=24" \
    -H "tcp://$ENGINE_IP:$PORT" \
    --tlsverify \
    --tlscacert "$certs/server/ca.pem" \
    --tlscert "$certs/server/cert.pem" \
    --tlskey "$certs/server/key.pem" \
    >"$STATE/dockerd.log" 2>&1 9>&- &
  for _ in $(seq 1 60); do
    engine_up && break
    sleep 1
  done
  engine_up || {
    log "the second dockerd did not come up; see $STATE/dockerd.log"
    tail -20 "$STATE/dockerd.log" >&2
    exit 1
  }
fi

# sshd in the namespace, for ssh://root@$ENGINE_IP: only the key made here gets in, and the
# session's docker CLI (bollard runs `docker system dial-stdio` there) reaches the engine
# over TLS.
ssh_dir="$STATE/ssh"
[ -s "$ssh_dir/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$ssh_dir/host_ed25519"
[ -s "$ssh_dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C git-agent-test -f "$ssh_dir/id_ed25519"
cp "$ssh_dir/id_ed25519.pub" "$ssh_dir/authorized_keys"
chmod 600 "$ssh_dir/authorized_keys"
cat >"$ssh_dir/sshd_config" <<EOF
ListenAddress $ENGINE_IP:22
HostKey $ssh_dir/host_ed25519
PidFile $RUN/sshd.pid
AuthorizedKeysFile $ssh_dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
SetEnv DOCKER_HOST=tcp://$ENGINE_IP:$PORT DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$certs/client
EOF
printf '%s %s\n' "$ENGINE_IP" "$(cut -d' ' -f1,2 "$ssh_dir/host_ed25519.pub")" >"$ssh_dir/known_hosts"
cat >"$ssh_dir/config" <<EOF
Host $ENGINE_IP
  User root
  IdentityFile $ssh_dir/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $ssh_dir/known_hosts
  StrictHostKeyChecking yes
EOF
# A client's `ssh` that uses that configuration (tests put this directory first on PATH).
mkdir -p "$STATE/bin"
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$ssh_dir/config" >"$STATE/bin/ssh"
chmod 755 "$STATE/bin/ssh"
mkdir -p /run/sshd
if ! { [ -s "$RUN/sshd.pid" ] && kill -0 "$(cat "$RUN/sshd.pid")" 2>/dev/null; }; then
  log "starting sshd on $ENGINE_IP:22"
  in_ns /usr/sbin/sshd -f "$ssh_dir/sshd_config" 9>&-
fi

cat >"$STATE/env" <<EOF
DOCKER_HOST=tcp://$ENGINE_IP:$PORT
DOCKER_TLS_VERIFY=1
DOCKER_CERT_PATH=$certs/client
EOF

# The base image, copied from the host's engine.
remote() {
  DOCKER_HOST="tcp://$ENGINE_IP:$PORT" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$certs/client" docker "$@"
}
if ! remote image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "copying $BASE_IMAGE into the second engine"
  docker save "$BASE_IMAGE" | remote load >/dev/null
fi
log "up: tcp://$ENGINE_IP:$PORT (TLS), ssh://root@$ENGINE_IP; client settings in $STATE/env"
