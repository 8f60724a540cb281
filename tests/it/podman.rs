//! Attacks that only rootless Podman opens: its containers reach the world through
//! slirp4netns, which can forward 10.0.2.2 to the host's own loopback (services bound to
//! 127.0.0.1 that trust every local caller). Run on Podman (`GIT_AGENT_TEST_ENGINE=podman`
//! with `DOCKER_HOST` at its socket, as scripts/test.sh's Podman pass does); skipped on
//! Docker, which has no such route.

use std::net::TcpListener;

use crate::common::{TestEnv, base_image, podman};
use crate::require_docker;
use crate::servers::docker;

/// slirp4netns's address for the host (its loopback, when host loopback is allowed).
const SLIRP_HOST: &str = "10.0.2.2";

/// A perl probe: each line is `name: result`.
fn probe(port: u16) -> String {
    format!(
        r#"use IO::Socket::INET;
$| = 1;
sub proxy {{ my ($raw) = @_;
  my $s = IO::Socket::INET->new(PeerAddr => "git-agent-gateway:3128", Timeout => 5) or return "no proxy: $!";
  print $s $raw; my $all = join("", <$s>); my ($l) = split(/\r?\n/, $all);
  return $all =~ /loopback-secret/ ? "$l +secret" : $l; }}
sub direct {{ my ($addr) = @_;
  my $s = IO::Socket::INET->new(PeerAddr => $addr, Timeout => 3);
  return $s ? "CONNECTED" : "failed"; }}
print "direct-slirp-host: ", direct("{SLIRP_HOST}:{port}"), "\n";
print "proxy-connect-slirp-host: ", proxy("CONNECT {SLIRP_HOST}:{port} HTTP/1.1\r\n\r\nGET / HTTP/1.0\r\n\r\n"), "\n";
print "proxy-get-slirp-host: ", proxy("GET http://{SLIRP_HOST}:{port}/ HTTP/1.0\r\nHost: {SLIRP_HOST}\r\n\r\n"), "\n";
print "proxy-get-host-name: ", proxy("GET http://host.containers.internal:{port}/ HTTP/1.0\r\nHost: host.containers.internal\r\n\r\n"), "\n";
print "proxy-connect-loopback: ", proxy("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"), "\n";
"#
    )
}

/// A service on the host's loopback only, answering a secret to whoever connects.
fn loopback_service() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn untouched(l: &TcpListener) -> bool {
    matches!(l.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn a_task_on_rootless_podman_cannot_reach_the_hosts_loopback() {
    if !podman() {
        eprintln!("SKIPPED: a Podman attack (run with GIT_AGENT_TEST_ENGINE=podman)");
        return;
    }
    require_docker!();
    let (service, port) = loopback_service();

    // The engine itself: a container on the network gateways use (it has a route out)
    // cannot reach the host's loopback through slirp4netns.
    let perl = format!(
        "use IO::Socket::INET; print IO::Socket::INET->new(PeerAddr => '{SLIRP_HOST}:{port}', Timeout => 3) ? 'CONNECTED' : 'failed'"
    );
    let run = docker(&[
        "run",
        "--rm",
        "--network",
        "bridge",
        &base_image(),
        "perl",
        "-e",
        &perl,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "failed", "{}", run.stderr);
    assert!(
        untouched(&service),
        "a container reached the host's loopback"
    );

    // A task: around its gateway, and through it even with the user opening slirp4netns's
    // host address and the port.
    let env = TestEnv::new();
    env.git(&["config", "agent.allowAddress", SLIRP_HOST]).ok();
    env.git(&["config", "agent.allowPort", &port.to_string()])
        .ok();
    let run = env.agent(&[
        "spawn",
        "--name",
        "loopback",
        "-m",
        &probe(port),
        "--wait",
        "--",
        "perl",
        "-",
    ]);
    assert_eq!(run.code, 0, "{run}");
    let logs = env.agent(&["logs", "loopback"]).ok().stdout;
    let get = |k: &str| {
        logs.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("no {k} in:\n{logs}"))
            .trim()
            .to_string()
    };
    assert_eq!(get("direct-slirp-host"), "failed", "{logs}");
    for k in [
        "proxy-connect-slirp-host",
        "proxy-get-slirp-host",
        "proxy-get-host-name",
        "proxy-connect-loopback",
    ] {
        let r = get(k);
        assert!(
            r.starts_with("HTTP/1.") && !r.contains(" 200 ") && !r.ends_with("+secret"),
            "{k}: {r}\n{logs}"
        );
    }
    assert!(untouched(&service), "a task reached the host's loopback");
}
