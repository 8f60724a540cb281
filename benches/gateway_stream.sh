#!/usr/bin/env bash
# Streaming through a task's egress gateway: throughput and whether anything is buffered.
#
#   bash benches/gateway_stream.sh <gateway image>     # e.g. git-agent-gateway:0123abcd4567
#
# Sets up what a task has (an internal network, the gateway on it and on an outer network, a
# server on the outer network that the user opened with agent.allowAddress/allowPort) and
# prints:
#   direct_mb_s    a client on the outer network reading 200 MiB straight from the server
#   proxied_mb_s   a client on the internal network reading the same through the proxy
#   first_event_s  time until the first of two server-sent events, sent 2 s apart, arrives
#                  through the proxy (near 0 means no buffering; near 2 means buffered)
set -euo pipefail
image="$1"
base="${BASE_IMAGE:-git-agent-base:bookworm}"
tag="gwbench-$$"
cleanup() {
  docker rm -f "$tag-server" "$tag-gw" >/dev/null 2>&1 || true
  docker network rm "$tag-inner" "$tag-outer" >/dev/null 2>&1 || true
}
trap cleanup EXIT
docker network create "$tag-outer" >/dev/null
docker network create --internal "$tag-inner" >/dev/null
docker run -d --name "$tag-server" --network "$tag-outer" --network-alias big.test --user 65534 "$base" perl -e '
use IO::Socket::INET; $| = 1;
my $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 16, ReuseAddr => 1) or die;
while (my $c = $s->accept) {
  my $req = <$c>; while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
  if ($req =~ m{/sse}) {
    print $c "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"; $c->flush;
    print $c "data: one\n\n"; $c->flush; sleep 2; print $c "data: two\n\n"; close $c; next;
  }
  print $c "HTTP/1.0 200 OK\r\nContent-Length: 209715200\r\n\r\n";
  my $chunk = "x" x 65536; print $c $chunk for 1..3200; close $c;
}' >/dev/null
ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$tag-outer\").IPAddress}}" "$tag-server")
docker create --name "$tag-gw" --network "$tag-outer" --cap-drop ALL --security-opt no-new-privileges \
  --init "$image" >/dev/null
tmp=$(mktemp -d)
printf '{"profile":"bench","open":false,"allow":["big.test"],"ports":[8000],"addresses":["%s/32"]}\n' "$ip" >"$tmp/policy.json"
docker cp "$tmp/policy.json" "$tag-gw:/etc/git-agent-gateway/policy.json"
rm -rf "$tmp"
docker network connect --alias git-agent-gateway "$tag-inner" "$tag-gw"
docker start "$tag-gw" >/dev/null
docker exec "$tag-gw" /usr/local/bin/git-agent-gateway ready

# shellcheck disable=SC2016 # Perl source, expanded by Perl
client='
use IO::Socket::INET; use Time::HiRes qw(time);
my ($peer, $req) = @ARGV; $req =~ s/\\r/\r/g; $req =~ s/\\n/\n/g;
my $s = IO::Socket::INET->new(PeerAddr => $peer) or die "connect: $!";
print $s $req; my $t0 = time; my ($n, $buf, $first) = (0, "", undef);
while (my $r = sysread($s, $buf, 1 << 20)) { $n += $r; $first //= time - $t0 if $buf =~ /data: one/; }
printf "%.1f %.3f\n", $n / (time - $t0) / 1048576, $first // -1;'
# Requests are passed with literal \r\n (the client turns them into line ends).
direct=$(docker run --rm --network "$tag-outer" "$base" perl -e "$client" "$ip:8000" 'GET /big HTTP/1.0\r\n\r\n' | cut -d' ' -f1)
proxied=$(docker run --rm --network "$tag-inner" "$base" perl -e "$client" git-agent-gateway:3128 'GET http://big.test:8000/big HTTP/1.1\r\nHost: big.test\r\n\r\n' | cut -d' ' -f1)
first=$(docker run --rm --network "$tag-inner" "$base" perl -e "$client" git-agent-gateway:3128 'GET http://big.test:8000/sse HTTP/1.1\r\nHost: big.test\r\n\r\n' | cut -d' ' -f2)
echo "direct_mb_s=$direct proxied_mb_s=$proxied first_event_s=$first"
