//! Remote engines: git-agent driving a Docker engine that shares neither the host's file
//! system paths nor its network, over mutual TLS (`tcp://`) and over SSH (`ssh://`).
//!
//! The engine is `scripts/second-engine.sh`'s: a second dockerd in a network namespace of its
//! own, listening only on tcp://10.77.0.2:2376 with --tlsverify, with an sshd beside it. The
//! host's engine is not touched: every test checks that none of its task's objects are there.
//! The first test to need the engine brings it up (once per test binary; the script is
//! idempotent and serialised) and warms its images, which the tests then share.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{BIN, Run, TestEnv};
use crate::fake_anthropic::{FakeAnthropic, Step};

const STATE: &str = "/var/lib/git-agent-second";
/// The engine's address, and the host's on the link to it (the engine's containers reach
/// servers the tests run on the host there).
const ENGINE_IP: &str = "10.77.0.2";
const HOST_SIDE_IP: &str = "10.77.0.1";
pub(crate) const TLS_HOST: &str = "tcp://10.77.0.2:2376";
const SSH_HOST: &str = "ssh://root@10.77.0.2";

pub(crate) fn certs() -> String {
    format!("{STATE}/certs/client")
}

/// Bring the second engine up (once), or say why it cannot be: a failure under
/// `GIT_AGENT_REQUIRE_DOCKER=1`, a skip otherwise.
pub(crate) fn second_engine() -> bool {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let up = UP.get_or_init(|| {
        if !crate::common::docker_ready() {
            return Err("no host engine".into());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/second-engine.sh");
        let out = Command::new("bash")
            .arg(&script)
            .env("GIT_AGENT_TEST_BASE_IMAGE", crate::common::base_image())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed:\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        warm_up();
        Ok(())
    });
    match up {
        Ok(()) => true,
        Err(why) if std::env::var_os("GIT_AGENT_REQUIRE_DOCKER").is_some() => {
            panic!("GIT_AGENT_REQUIRE_DOCKER is set but the second engine is not up: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: no second engine ({why})");
            false
        }
    }
}

macro_rules! require_second_engine {
    () => {
        if !second_engine() {
            return;
        }
    };
}

/// Build the images every test here needs once, on the second engine, before tests build
/// them side by side: the exec task's image and the gateway's (a first spawn builds both).
fn warm_up() {
    let env = TestEnv::new();
    let run = tls(
        &env,
        &["spawn", "--name", "warm", "--wait", "-m", "x", "--", "true"],
    );
    assert_eq!(run.code, 0, "warming the second engine up failed:\n{run}");
    tls(&env, &["purge", "warm", "--force"]);
    Remote::new(&env).cleanup();
}

/// The TLS settings of the second engine on a command.
fn with_tls(c: &mut Command) {
    c.env("DOCKER_HOST", TLS_HOST)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs());
}

/// The SSH settings: its URL, and an `ssh` that uses the key and pinned host key the script
/// made (first on PATH, as a user's ~/.ssh/config would be).
fn with_ssh(env: &TestEnv, c: &mut Command) {
    c.env("DOCKER_HOST", SSH_HOST).env(
        "PATH",
        format!(
            "{STATE}/bin:{}:/usr/local/bin:/usr/bin:/bin",
            env.bin_dir.display()
        ),
    );
}

/// `git agent <args>` against the second engine over TLS.
fn tls(env: &TestEnv, args: &[&str]) -> Run {
    env.agent_with(args, with_tls)
}

/// `git agent <args>` against the second engine over SSH.
fn ssh(env: &TestEnv, args: &[&str]) -> Run {
    env.agent_with(args, |c| with_ssh(env, c))
}

/// The docker CLI on the second engine.
fn remote_docker(args: &[&str]) -> Output {
    let mut c = Command::new("docker");
    with_tls(&mut c);
    c.args(args).output().expect("docker runs")
}

fn lines(out: Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A test repository's objects on the second engine, removed when the test ends.
struct Remote<'a> {
    env: &'a TestEnv,
}

impl<'a> Remote<'a> {
    fn new(env: &'a TestEnv) -> Remote<'a> {
        Remote { env }
    }

    /// (containers, volumes, networks) of the repository on the second engine.
    fn objects(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let filter = format!("label=git-agent.repo={}", self.env.repo_id());
        (
            lines(remote_docker(&[
                "ps",
                "-a",
                "--filter",
                &filter,
                "--format",
                "{{.Names}}",
            ])),
            lines(remote_docker(&[
                "volume",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}}",
            ])),
            lines(remote_docker(&[
                "network",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}}",
            ])),
        )
    }

    fn cleanup(&self) {
        let (containers, volumes, networks) = self.objects();
        for c in containers {
            remote_docker(&["rm", "-f", &c]);
        }
        for v in volumes {
            remote_docker(&["volume", "rm", "-f", &v]);
        }
        for n in networks {
            remote_docker(&["network", "rm", &n]);
        }
    }
}

impl Drop for Remote<'_> {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The host's engine has none of the repository's objects; the second one has its task's.
#[track_caller]
fn only_on_the_second_engine(env: &TestEnv, remote: &Remote, task: &str) {
    let (c, v, n) = env.runtime_objects();
    assert!(
        c.is_empty() && v.is_empty() && n.is_empty(),
        "the host's engine has the task's objects: {c:?} {v:?} {n:?}"
    );
    let (c, v, _) = remote.objects();
    let names = env.names_of(task);
    assert!(c.contains(&names.container), "{c:?}");
    assert!(v.contains(&names.volume), "{v:?}");
}

/// Spawn an exec task that commits, sync, review and merge it on the host: the loop every
/// user runs, against the engine `run` talks to.
fn core_loop(env: &TestEnv, run: &dyn Fn(&[&str]) -> Run, task: &str) {
    let spawn = run(&[
        "spawn",
        "--name",
        task,
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo remote > far.txt && git add far.txt && git commit -qm 'far away'",
    ]);
    assert_eq!(spawn.code, 0, "{spawn}");
    let sync = run(&["sync", task]);
    assert_eq!(sync.code, 0, "{sync}");
    let review = run(&["review", task]);
    assert_eq!(review.code, 0, "{review}");
    assert!(review.stdout.contains("+remote"), "{review}");
    let logs = run(&["logs", task]);
    assert_eq!(logs.code, 0, "{logs}");
    let merge = run(&["merge", task]);
    assert_eq!(merge.code, 0, "{merge}");
    assert_eq!(
        std::fs::read_to_string(env.repo.join("far.txt")).unwrap(),
        "remote\n"
    );
    assert_eq!(
        env.git(&["log", "-1", "--format=%s"]).ok().stdout.trim(),
        "far away"
    );
}

#[test]
fn the_core_loop_and_a_preview_over_tls_touch_only_the_remote_engine() {
    require_second_engine!();
    let env = TestEnv::new();
    let remote = Remote::new(&env);
    core_loop(&env, &|a| tls(&env, a), "far");
    only_on_the_second_engine(&env, &remote, "far");

    // doctor says which engine answered.
    let doctor = tls(&env, &["doctor"]);
    assert!(
        doctor.stdout.contains(&format!("at {TLS_HOST}")),
        "{doctor}"
    );

    // A preview is published on the engine's address, and its URL names that host: the
    // engine's loopback would be out of the user's reach.
    let port = 18000 + (std::process::id() % 1000) as u16;
    let server = format!(
        "exec perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => $ENV{{PORT}}, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) {{ <$c>; print $c \"HTTP/1.0 200 OK\\r\\n\\r\\npreview-{port}\"; close $c }}'"
    );
    let preview = tls(
        &env,
        &[
            "preview",
            "far",
            "--port",
            &port.to_string(),
            "--cmd",
            &server,
        ],
    );
    assert_eq!(preview.code, 0, "{preview}");
    assert_eq!(
        preview.stdout.trim(),
        format!("http://{ENGINE_IP}:{port}/"),
        "{preview}"
    );
    let door = env.names_of("far").door;
    let published = lines(remote_docker(&["port", &door]));
    assert_eq!(published, [format!("{port}/tcp -> {ENGINE_IP}:{port}")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = None;
    while Instant::now() < deadline {
        body = http_get(ENGINE_IP, port);
        if body.as_deref() == Some(format!("preview-{port}").as_str()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(body, Some(format!("preview-{port}")));
    assert_eq!(tls(&env, &["preview", "stop", "far"]).code, 0);

    // rm and purge clean the remote engine.
    let purge = tls(&env, &["purge", "far", "--force"]);
    assert_eq!(purge.code, 0, "{purge}");
    let (c, v, n) = remote.objects();
    assert!(
        c.is_empty() && v.iter().all(|v| v.contains("cache")) && n.is_empty(),
        "{c:?} {v:?} {n:?}"
    );
}

/// `GET /` from `host:port`: the body, when it answers 200.
fn http_get(host: &str, port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let addr = format!("{host}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

#[test]
fn the_core_loop_over_ssh_leaves_no_ssh_behind() {
    require_second_engine!();
    let env = TestEnv::new();
    let remote = Remote::new(&env);
    core_loop(&env, &|a| ssh(&env, a), "tunnel");
    only_on_the_second_engine(&env, &remote, "tunnel");

    // Every connection was an ssh child of the command; none outlives it.
    no_ssh_left();
    // The check sees them while a command runs (a follower of a running task's output),
    // and they go once the stream they carry ends, even when the command was killed.
    assert_eq!(
        ssh(
            &env,
            &["spawn", "--name", "slow", "-m", "x", "--", "sleep", "60"]
        )
        .code,
        0
    );
    let mut follow = env.agent_command(&["logs", "-f", "slow"]);
    with_ssh(&env, &mut follow);
    let mut follow = follow
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !ssh_children().is_empty()
    });
    follow.kill().ok();
    follow.wait().ok();
    assert!(seen, "no ssh child seen while a command ran");
    assert_eq!(tls(&env, &["stop", "slow"]).code, 0);
    no_ssh_left();
    assert_eq!(ssh(&env, &["purge", "tunnel", "--force"]).code, 0);
}

/// Wait (a little) until no `ssh` process to the second engine is left.
#[track_caller]
fn no_ssh_left() {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = ssh_children();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ssh processes left behind: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ssh` processes to the second engine that are still running (a connection's
/// `ssh ... docker system dial-stdio`, or a background master as bollard's own transport
/// leaves behind).
fn ssh_children() -> Vec<String> {
    let out = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let program = l.split_whitespace().next().unwrap_or("");
            (program == "ssh" || program.ends_with("/ssh")) && l.contains(ENGINE_IP)
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn claude_code_on_the_remote_engine_reaches_the_model_through_its_gateway() {
    require_second_engine!();
    const KEY: &str = "sk-ant-remote-test-key";
    let env = TestEnv::new();
    let remote = Remote::new(&env);
    let fake = FakeAnthropic::start_requiring_key(
        vec![
            Step::tool(
                "Write",
                json!({"file_path": "/workspace/far.txt", "content": "written afar\n"}),
            ),
            Step::text("Wrote far.txt."),
        ],
        KEY,
    );
    // The fake listens on the host; the engine's containers reach the host at its address on
    // the engine's link (the engine's host.docker.internal is the engine's own host).
    env.git(&[
        "config",
        "agent.extraCaCerts",
        "/etc/ssl/certs/ca-certificates.crt",
    ])
    .ok();
    env.git(&[
        "config",
        "agent.claude.baseUrl",
        &fake.base_url(HOST_SIDE_IP),
    ])
    .ok();
    let spawn = env.agent_with(
        &[
            "spawn",
            "--agent",
            "claude",
            "--name",
            "cc",
            "-m",
            "write far.txt",
            "--wait",
        ],
        |c| {
            with_tls(c);
            c.env("ANTHROPIC_API_KEY", KEY);
        },
    );
    assert_eq!(spawn.code, 0, "{spawn}\n{}", fake.describe());
    assert_eq!(fake.steps_served(), 2, "{}", fake.describe());
    // The real key reached the model (the vault swapped it in on the remote engine).
    assert_eq!(fake.main_requests()[0].api_key(), Some(KEY));
    assert_eq!(tls(&env, &["sync", "cc"]).code, 0);
    let refs = env.task_refs("cc");
    let tip = refs.get("wip").or(refs.get("head")).unwrap();
    assert_eq!(
        env.git(&["show", &format!("{tip}:far.txt")]).ok().stdout,
        "written afar\n"
    );
    only_on_the_second_engine(&env, &remote, "cc");
    assert_eq!(tls(&env, &["purge", "cc", "--force"]).code, 0);
}

#[test]
fn shell_and_attach_over_tls() {
    require_second_engine!();
    if which::which("script").is_err() || which::which("tmux").is_err() {
        assert!(
            std::env::var_os("GIT_AGENT_REQUIRE_DOCKER").is_none(),
            "tmux and util-linux `script` are needed"
        );
        return;
    }
    let env = TestEnv::new();
    let remote = Remote::new(&env);
    assert_eq!(
        tls(
            &env,
            &[
                "spawn",
                "--name",
                "sh1",
                "--wait",
                "-m",
                "x",
                "--",
                "sh",
                "-c",
                "echo hi > hi.txt"
            ]
        )
        .code,
        0
    );
    // `shell` on a real pseudo-terminal.
    let mut script = Command::new("script");
    script
        .args(["-qec", &format!("{BIN} shell sh1"), "/dev/null"])
        .current_dir(&env.repo)
        .env("HOME", env.home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    with_tls(&mut script);
    let mut child = script.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"echo inside-$((40+2)) $(id -un) $(cat hi.txt)\nexit 5\n")
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("inside-42 agent hi"), "{text}");
    assert_eq!(out.status.code(), Some(5), "{text}");

    // `spawn -i`, detach, and `attach` again, in tmux.
    let sock = env.home.path().join("tmux.sock");
    let tmux = |args: &[&str]| {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let screen_has = |session: &str, needle: &str| {
        (0..300).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            tmux(&["capture-pane", "-p", "-t", session]).contains(needle)
        })
    };
    let cmd = |args: &str| {
        format!(
            "cd '{}' && HOME='{}' GIT_CONFIG_NOSYSTEM=1 DOCKER_HOST={TLS_HOST} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={} {BIN} {args}; echo EXITED-$?; sleep 60",
            env.repo.display(),
            env.home.path().display(),
            certs(),
        )
    };
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "120",
        "-y",
        "30",
        &cmd("spawn -i --name tty -m x -- sh"),
    ]);
    assert!(
        screen_has("t", "$"),
        "{}",
        tmux(&["capture-pane", "-p", "-t", "t"])
    );
    tmux(&[
        "send-keys",
        "-t",
        "t",
        "echo inside-$((6*7)) $(tty)",
        "Enter",
    ]);
    assert!(
        screen_has("t", "inside-42 /dev/pts"),
        "{}",
        tmux(&["capture-pane", "-p", "-t", "t"])
    );
    tmux(&["send-keys", "-t", "t", "C-p", "C-q"]);
    assert!(
        screen_has("t", "EXITED-0"),
        "{}",
        tmux(&["capture-pane", "-p", "-t", "t"])
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "r",
        "-x",
        "120",
        "-y",
        "30",
        &cmd("attach tty"),
    ]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&[
        "send-keys",
        "-t",
        "r",
        "echo back-$((40+2)); exit 7",
        "Enter",
    ]);
    assert!(
        screen_has("r", "back-42"),
        "{}",
        tmux(&["capture-pane", "-p", "-t", "r"])
    );
    assert!(
        screen_has("r", "EXITED-7"),
        "{}",
        tmux(&["capture-pane", "-p", "-t", "r"])
    );
    tmux(&["kill-server"]);
    only_on_the_second_engine(&env, &remote, "tty");
}

#[test]
fn a_wrong_ca_a_missing_or_foreign_client_cert_and_a_dead_port_change_nothing() {
    require_second_engine!();
    let env = TestEnv::new();
    let remote = Remote::new(&env);
    let before = env.snapshot();
    let scratch = env.home.path().join("certs");
    let real = certs();
    let make = |name: &str, files: &[(&str, &str)]| {
        let dir = scratch.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, from) in files {
            std::fs::copy(from, dir.join(file)).unwrap();
        }
        dir
    };
    // A CA of someone else's, and a client certificate that CA signed.
    let other = scratch.join("other-ca");
    std::fs::create_dir_all(&other).unwrap();
    let sh = |script: &str| {
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(&other)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other -keyout ca-key.pem -out ca.pem 2>/dev/null \
        && openssl req -newkey rsa:2048 -nodes -subj /CN=intruder -keyout key.pem -out c.csr 2>/dev/null \
        && printf 'extendedKeyUsage=clientAuth\\n' > c.ext \
        && openssl x509 -req -in c.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 -extfile c.ext -out cert.pem 2>/dev/null",
    );
    let other = other.to_str().unwrap().to_string();
    let wrong_ca = make(
        "wrong-ca",
        &[
            ("ca.pem", &format!("{other}/ca.pem")),
            ("cert.pem", &format!("{real}/cert.pem")),
            ("key.pem", &format!("{real}/key.pem")),
        ],
    );
    let foreign_client = make(
        "foreign-client",
        &[
            ("ca.pem", &format!("{real}/ca.pem")),
            ("cert.pem", &format!("{other}/cert.pem")),
            ("key.pem", &format!("{other}/key.pem")),
        ],
    );
    let no_client = make("no-client", &[("ca.pem", &format!("{real}/ca.pem"))]);
    let spawn = ["spawn", "--name", "x", "--wait", "-m", "x", "--", "true"];
    let attempt = |host: &str, dir: &Path| {
        env.agent_with(&spawn, |c| {
            c.env("DOCKER_HOST", host)
                .env("DOCKER_TLS_VERIFY", "1")
                .env("DOCKER_CERT_PATH", dir);
        })
        .fails()
    };

    let run = attempt(TLS_HOST, &wrong_ca);
    assert!(run.stderr.contains(TLS_HOST), "{run}");
    assert!(run.stderr.contains("certificate"), "{run}");
    assert!(
        run.stderr
            .contains(&format!("{}/ca.pem", wrong_ca.display())),
        "the hint names the CA file:\n{run}"
    );

    let run = attempt(TLS_HOST, &foreign_client);
    assert!(
        run.stderr.contains("cannot reach the container engine"),
        "{run}"
    );
    assert!(run.stderr.contains("git agent doctor"), "{run}");

    let run = attempt(TLS_HOST, &no_client);
    assert!(
        run.stderr.contains("cert.pem") && run.stderr.contains("key.pem"),
        "{run}"
    );
    assert!(run.stderr.contains("DOCKER_CERT_PATH"), "{run}");

    // Nothing listens on this port of the engine's host.
    let run = attempt("tcp://10.77.0.2:2399", Path::new(&real));
    assert!(
        run.stderr
            .contains("cannot reach the container engine: tcp://10.77.0.2:2399"),
        "{run}"
    );
    assert!(run.stderr.contains("git agent doctor"), "{run}");

    // An SSH login with a host key nobody pinned (the user's own ssh settings, not the
    // test's): refused, and the hint gives the command that checks it.
    let run = env.agent_with(&spawn, |c| {
        c.env("DOCKER_HOST", SSH_HOST);
    });
    let run = run.fails();
    assert!(run.stderr.contains("Host key verification failed"), "{run}");
    assert!(
        run.stderr.contains("ssh root@10.77.0.2 docker version"),
        "{run}"
    );

    // A bad address and a Docker context that does not exist.
    let run = env
        .agent_with(&spawn, |c| {
            c.env("DOCKER_HOST", "10.77.0.2:2376");
        })
        .fails();
    assert!(run.stderr.contains("bad engine address"), "{run}");
    let run = env
        .agent_with(&spawn, |c| {
            c.env("DOCKER_CONTEXT", "nowhere");
        })
        .fails();
    assert!(
        run.stderr.contains("context 'nowhere' does not exist"),
        "{run}"
    );

    assert_eq!(env.snapshot(), before);
    assert!(env.task_refs("x").is_empty());
    let (c, v, n) = remote.objects();
    assert!(
        c.is_empty() && v.is_empty() && n.is_empty(),
        "{c:?} {v:?} {n:?}"
    );
}

/// A Docker context (as `docker context create` writes it) names the engine and its TLS
/// files; DOCKER_HOST still wins over it, as with the docker CLI.
#[test]
fn a_docker_context_names_the_remote_engine() {
    require_second_engine!();
    let env = TestEnv::new();
    let remote = Remote::new(&env);
    let config = env.home.path().join(".docker");
    let created = Command::new("docker")
        .env("DOCKER_CONFIG", &config)
        .args([
            "context",
            "create",
            "far",
            "--docker",
            &format!(
                "host={TLS_HOST},ca={0}/ca.pem,cert={0}/cert.pem,key={0}/key.pem",
                certs()
            ),
        ])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    std::fs::write(config.join("config.json"), r#"{"currentContext":"far"}"#).unwrap();
    let run = env.agent(&["spawn", "--name", "ctx", "--wait", "-m", "x", "--", "true"]);
    assert_eq!(run.code, 0, "{run}");
    only_on_the_second_engine(&env, &remote, "ctx");
    // DOCKER_HOST over the context, as with the docker CLI.
    let doctor = env.agent(&["doctor"]);
    assert!(
        doctor.stdout.contains(&format!("at {TLS_HOST}")),
        "{doctor}"
    );
    let doctor = env.agent_with(&["doctor"], |c| {
        c.env("DOCKER_HOST", "unix:///var/run/docker.sock");
    });
    assert!(
        doctor.stdout.contains("at unix:///var/run/docker.sock"),
        "{doctor}"
    );
    assert_eq!(env.agent(&["purge", "ctx", "--force"]).code, 0);
    let (c, _, _) = remote.objects();
    assert!(!c.contains(&env.names_of("ctx").container), "{c:?}");
}
