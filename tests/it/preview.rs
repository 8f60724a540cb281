//! Previews: a dev server run from a task's workspace (read-only), reached from the host on a
//! port published on 127.0.0.1 only, while the agent works (see `git_agent::sandbox::preview`).

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::TestEnv;
use crate::require_docker;

/// A tiny HTTP server (perl is in the base image; no registry is reachable for a real dev
/// server): it first tries to write into the workspace and says how that went, then serves
/// /workspace/index.html on $PORT, read again for every request.
const SERVER: &str = r#"if touch /workspace/pwned 2>/dev/null; then echo WROTE-WORKSPACE; else echo workspace-read-only; fi; exec perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => $ENV{PORT}, Listen => 5, ReuseAddr => 1) or die "listen: $!"; print "serving\n"; $| = 1; while ($c = $s->accept) { <$c>; open my $f, "<", "/workspace/index.html"; local $/; $b = <$f> // "none"; print $c "HTTP/1.0 200 OK\r\nContent-Length: " . length($b) . "\r\n\r\n$b"; close $c }'"#;

/// A free port on the host's loopback (the engine runs on this host).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` from `host:port`: the body, or `None` when nothing answers properly.
fn get(host: &str, port: u16) -> Option<String> {
    let addr = format!("{host}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

#[track_caller]
fn wait_for_body(port: u16, want: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = None;
    while Instant::now() < deadline {
        last = get("127.0.0.1", port);
        if last.as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("the preview did not serve {want:?} within {secs}s; last: {last:?}");
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The host's own addresses other than loopback (where a port bound to all interfaces would
/// answer too).
fn other_host_addresses() -> Vec<String> {
    let out = Command::new("hostname").arg("-I").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|a| !a.contains(':') && !a.starts_with("127."))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_preview_serves_the_agents_work_as_it_changes_and_cannot_write_it() {
    require_docker!();
    let env = TestEnv::new();
    // The agent writes a page, waits for the test's go-ahead, edits it, and keeps running.
    env.agent(&[
        "spawn",
        "--name",
        "web",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo v1 > index.html; while [ ! -e /tmp/next ]; do sleep 0.2; done; echo v2 > index.html; sleep 300",
    ])
    .ok();
    let port = free_port();
    let run = env
        .agent(&[
            "preview",
            "web",
            "--port",
            &port.to_string(),
            "--cmd",
            SERVER,
        ])
        .ok();
    assert_eq!(
        run.stdout.trim(),
        format!("http://127.0.0.1:{port}/"),
        "{run}"
    );
    wait_for_body(port, "v1\n", 30);

    // The agent edits the file; the preview serves the change.
    env.docker_exec("web", "touch /tmp/next").ok();
    wait_for_body(port, "v2\n", 30);

    // The preview could not write the workspace.
    let logs = env.agent(&["preview", "logs", "web"]).ok();
    assert!(logs.stdout.contains("workspace-read-only"), "{logs}");
    assert!(!logs.stdout.contains("WROTE-WORKSPACE"), "{logs}");
    env.docker_exec("web", "test ! -e /workspace/pwned").ok();

    // The port is on 127.0.0.1 only, and only the door has one.
    let names = env.names_of("web");
    let ports = docker(&["port", &names.door]);
    assert_eq!(ports, format!("{port}/tcp -> 127.0.0.1:{port}"), "{ports}");
    assert_eq!(docker(&["port", &names.preview]), "");
    for addr in other_host_addresses() {
        assert_eq!(get(&addr, port), None, "the preview answers on {addr}");
    }
    // The preview is on the task's internal network only (its way out is the gateway), with
    // the task's confinement.
    let nets = docker(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &names.preview,
    ]);
    assert_eq!(nets.trim(), names.network, "{nets}");
    let conf = docker(&[
        "inspect",
        "-f",
        "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{range .Mounts}}{{.Name}}:{{.RW}} {{end}}",
        &names.preview,
    ]);
    assert_eq!(
        conf,
        format!(
            "1000:1000 true [ALL] [no-new-privileges] {}:false",
            names.volume
        )
    );

    // Stop removes it; a second stop says there is none.
    env.agent(&["preview", "stop", "web"]).ok();
    assert_eq!(get("127.0.0.1", port), None);
    let (containers, _, networks) = env.runtime_objects();
    assert!(!containers.contains(&names.preview) && !containers.contains(&names.door));
    assert!(!networks.contains(&names.preview_front));
    let again = env.agent(&["preview", "stop", "web"]).fails();
    assert!(again.stderr.contains("has no preview"), "{again}");

    // rm of the task removes a preview with it.
    env.agent(&[
        "preview",
        "web",
        "--port",
        &port.to_string(),
        "--cmd",
        SERVER,
    ])
    .ok();
    wait_for_body(port, "v2\n", 30);
    env.agent(&["rm", "web"]).ok();
    let (containers, _, networks) = env.runtime_objects();
    assert!(
        !containers
            .iter()
            .any(|c| *c == names.preview || *c == names.door),
        "{containers:?}"
    );
    assert!(!networks.contains(&names.preview_front), "{networks:?}");
}

#[test]
fn a_preview_needs_a_command_and_a_workspace() {
    require_docker!();
    let env = TestEnv::new();
    let run = env.agent(&["preview", "nosuch", "--port", "5173"]);
    assert_eq!(run.code, 1, "{run}");
    let env2 = &env;
    env2.finished_task("done", "a.txt");
    let run = env.agent(&["preview", "done", "--port", "5173"]).fails();
    assert!(run.stderr.contains("agent.previewCommand"), "{run}");
}
