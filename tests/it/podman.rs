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

/// Podman's API on TCP loopback, as its rootless user, for one test: Podman reached other
/// than through its socket. Ended (with its process group) on drop.
struct TcpPodman {
    child: std::process::Child,
    url: String,
}

impl TcpPodman {
    fn start() -> TcpPodman {
        use std::os::unix::process::CommandExt;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new("runuser")
            .args([
                "-u",
                "gitagent-podman",
                "--",
                "env",
                "HOME=/home/gitagent-podman",
                "XDG_RUNTIME_DIR=/run/gitagent-podman",
                "XDG_CONFIG_HOME=/home/gitagent-podman/.config",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "podman",
                "system",
                "service",
                "--time=0",
                &url,
            ])
            .current_dir("/")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("runuser runs podman");
        let tcp = TcpPodman { child, url };
        for _ in 0..100 {
            let up = std::process::Command::new("docker")
                .args(["-H", &tcp.url, "version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                return tcp;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("podman system service on {} did not answer", tcp.url);
    }
}

impl Drop for TcpPodman {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Only Podman's own API, on its socket, creates a network without a name server: reached
/// another way, its task networks would resolve any name through the host's resolvers. spawn
/// refuses such an engine, before making anything, until the user accepts that gap.
#[test]
fn podman_off_its_socket_is_refused_until_its_dns_gap_is_accepted() {
    if !podman() {
        eprintln!("SKIPPED: a Podman attack (run with GIT_AGENT_TEST_ENGINE=podman)");
        return;
    }
    require_docker!();
    let tcp = TcpPodman::start();
    let env = TestEnv::new();
    let before = env.snapshot();
    let spawn = || {
        env.agent_with(&["spawn", "--name", "off", "-m", "x", "--", "true"], |c| {
            c.env("DOCKER_HOST", &tcp.url);
        })
    };
    let run = spawn().fails();
    assert!(
        run.stderr.contains("name server") && run.stderr.contains("agent.allowPodmanDns true"),
        "{run}"
    );
    assert!(
        env.task_refs("off").is_empty(),
        "{:?}",
        env.task_refs("off")
    );
    let (c, v, n) = env.runtime_objects();
    assert!(
        c.is_empty() && v.is_empty() && n.is_empty(),
        "{c:?} {v:?} {n:?}"
    );
    assert_eq!(env.snapshot(), before);
    // Through its socket (the environment's DOCKER_HOST) the same repository spawns.
    env.agent(&["spawn", "--name", "on", "-m", "x", "--wait", "--", "true"])
        .ok();
}

/// Rootless Podman on cgroups v1 (or v2 without delegated controllers) accepts a container's
/// memory, CPU and process limits and sets none of them, saying so only in its own log. spawn
/// refuses such an engine, before making anything, until the user accepts it; where Podman
/// enforces them, spawn goes on.
#[test]
fn podman_that_would_not_enforce_limits_is_refused_until_accepted() {
    if !podman() {
        eprintln!("SKIPPED: a Podman attack (run with GIT_AGENT_TEST_ENGINE=podman)");
        return;
    }
    require_docker!();
    let env = TestEnv::new();
    env.git(&["config", "agent.allowUnenforcedLimits", "false"])
        .ok();
    let cgroups = docker(&["info", "--format", "{{.CgroupVersion}}"]);
    let before = env.snapshot();
    let run = env.agent(&[
        "spawn", "--name", "unbound", "-m", "x", "--wait", "--", "true",
    ]);
    // This machine's kind: rootless Podman on cgroups v1.
    if cgroups.stdout.trim() == "1" {
        assert_eq!(run.code, 1, "{run}");
        assert!(
            run.stderr.contains("cgroups v1")
                && run
                    .stderr
                    .contains("git config --global agent.allowUnenforcedLimits true"),
            "{run}"
        );
        assert!(env.task_refs("unbound").is_empty());
        let (c, v, n) = env.runtime_objects();
        assert!(
            c.is_empty() && v.is_empty() && n.is_empty(),
            "{c:?} {v:?} {n:?}"
        );
        assert_eq!(env.snapshot(), before);
        env.git(&["config", "agent.allowUnenforcedLimits", "true"])
            .ok();
        env.agent(&[
            "spawn", "--name", "unbound", "-m", "x", "--wait", "--", "true",
        ])
        .ok();
    } else {
        // Enforced (or a v2 machine without the controllers, refused as above).
        assert!(
            run.code == 0 || run.stderr.contains("allowUnenforcedLimits"),
            "{run}"
        );
    }
}
