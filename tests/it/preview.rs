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

/// A service image built here from the base image (no registry is reachable, so no real
/// database image can be pulled): a perl TCP server on port 7000 that answers each line with
/// `pong <line>` and the value of its SERVICE_GREETING variable. Removed on drop.
struct ServiceImage(String);

impl ServiceImage {
    fn build() -> ServiceImage {
        let tag = format!("git-agent-test-svc:{}", std::process::id());
        let dockerfile = format!(
            "FROM {}\nCMD [\"perl\", \"-MIO::Socket::INET\", \"-e\", \"$s = IO::Socket::INET->new(LocalPort => 7000, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) {{ $l = <$c>; chomp $l; print $c qq(pong $l $ENV{{SERVICE_GREETING}}\\\\n); close $c }}\"]\n",
            crate::common::base_image()
        );
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", &tag, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ServiceImage(tag)
    }
}

impl Drop for ServiceImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// The exec task's query: connect to the service by its name (retrying while it starts),
/// send a line, commit the answer.
const QUERY: &str = r#"for i in $(seq 1 50); do perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(PeerAddr => "db:7000", Timeout => 2) or exit 1; print $s "hello\n"; print scalar <$s>' > answer.txt && break; sleep 0.2; done; git add answer.txt && git commit -qm answer"#;

#[test]
fn an_exec_task_queries_a_service_the_repository_declares_and_it_goes_with_the_task() {
    require_docker!();
    let image = ServiceImage::build();
    let env = TestEnv::new();
    env.write(
        ".git-agent/services.toml",
        &format!(
            "[services.db]\nimage = \"{}\"\nenv = {{ SERVICE_GREETING = \"from-the-repo\" }}\n",
            image.0
        ),
    );
    env.git(&["add", "."]).ok();
    env.git(&["commit", "-qm", "services"]).ok();
    env.agent(&[
        "spawn", "--name", "q", "--wait", "-m", "x", "--", "sh", "-c", QUERY,
    ])
    .ok();
    env.agent(&["sync", "q"]).ok();
    let answer = env.git(&["show", "refs/agent/q/head:answer.txt"]).ok();
    assert_eq!(answer.stdout, "pong hello from-the-repo\n");
    // The run has ended: its service went with it.
    let svc = format!("git-agent-{}.svc-db.q", env.repo_id());
    let (containers, _, _) = env.runtime_objects();
    assert!(!containers.contains(&svc), "{containers:?}");
}

#[test]
fn a_service_is_confined_on_the_tasks_network_and_removed_with_the_task() {
    require_docker!();
    let image = ServiceImage::build();
    let env = TestEnv::new();
    // The user's own file declares it.
    let dir = env.home.path().join(".config/git-agent");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("services.toml"),
        format!("[services.db]\nimage = \"{}\"\n", image.0),
    )
    .unwrap();
    env.agent(&["spawn", "--name", "s", "-m", "x", "--", "sleep", "300"])
        .ok();
    let names = env.names_of("s");
    let svc = format!("git-agent-{}.svc-db.s", env.repo_id());
    let conf = docker(&[
        "inspect",
        "-f",
        "{{.Config.User}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Privileged}} [{{range $p, $b := .HostConfig.PortBindings}}{{$p}}{{end}}] [{{range .Mounts}}{{.Name}}{{end}}] {{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{join $v.Aliases \",\"}} {{end}}",
        &svc,
    ]);
    assert!(
        conf.starts_with(&format!(
            "1000:1000 [ALL] [no-new-privileges] false [] [] {}=",
            names.network
        )),
        "{conf}"
    );
    assert!(conf.contains("db"), "{conf}");
    env.docker_exec(
        "s",
        "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(PeerAddr => \"db:7000\", Timeout => 5) or die \"no service: $!\"; print $s \"x\\n\"; print scalar <$s>'",
    )
    .ok();
    env.agent(&["purge", "--yes", "s"]).ok();
    let (containers, _, networks) = env.runtime_objects();
    assert!(!containers.contains(&svc), "{containers:?}");
    assert!(!networks.contains(&names.network), "{networks:?}");
}

#[test]
fn a_repository_cannot_give_a_service_more_than_an_image_and_environment() {
    require_docker!();
    let env = TestEnv::new();
    for (extra, key) in [
        ("privileged = true", "privileged"),
        ("ports = [\"127.0.0.1:7000:7000\"]", "ports"),
        ("volumes = [\"/:/host\"]", "volumes"),
        ("cap_add = [\"NET_ADMIN\"]", "cap_add"),
        ("network_mode = \"host\"", "network_mode"),
    ] {
        env.write(
            ".git-agent/services.toml",
            &format!("[services.db]\nimage = \"redis\"\n{extra}\n"),
        );
        env.git(&["add", "."]).ok();
        env.git(&["commit", "-qm", "services"]).ok();
        let before = env.snapshot();
        let run = env
            .agent(&["spawn", "--name", "t", "-m", "x", "--", "true"])
            .fails();
        assert!(run.stderr.contains(key), "{run}");
        assert!(run.stderr.contains(".git-agent/services.toml"), "{run}");
        assert_eq!(
            env.snapshot(),
            before,
            "a refused spawn changed the repository"
        );
        let (containers, _, _) = env.runtime_objects();
        assert!(containers.is_empty(), "{containers:?}");
    }
    // An image name is no way to mount anything either.
    for image in ["/etc", "type=bind,source=/,target=/h", "redis -v /:/h"] {
        env.write(
            ".git-agent/services.toml",
            &format!("[services.db]\nimage = \"{image}\"\n"),
        );
        env.git(&["add", "."]).ok();
        env.git(&["commit", "-qm", "services"]).ok();
        let run = env
            .agent(&["spawn", "--name", "t", "-m", "x", "--", "true"])
            .fails();
        assert!(run.stderr.contains("not a plain image reference"), "{run}");
    }
}
