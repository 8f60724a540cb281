//! Tasks under another OCI runtime of the engine (`agent.ociRuntime`, `--oci-runtime`):
//! gVisor's `runsc`, which scripts/setup-engine.sh installs and registers. The work comes
//! back, the task really ran in gVisor's kernel, the gateway stays its only way out, the
//! runtime survives a restart, and what is not a registered runtime's name never reaches the
//! engine or leaves anything behind.

use crate::common::{Run, TestEnv, base_image};
use crate::require_docker;
use crate::servers::{OuterServer, docker};

/// Does the engine list `runsc`? Under GIT_AGENT_REQUIRE_DOCKER=1 (CI installs it, see
/// scripts/setup-engine.sh) its absence is a failure, never a skip.
fn runsc_ready() -> bool {
    let out = docker(&[
        "info",
        "--format",
        "{{range $name, $_ := .Runtimes}}{{$name}} {{end}}",
    ]);
    let ok = out.stdout.split_whitespace().any(|r| r == "runsc");
    if !ok && std::env::var_os("GIT_AGENT_REQUIRE_DOCKER").is_some() {
        panic!(
            "GIT_AGENT_REQUIRE_DOCKER is set but the engine has no runsc runtime (run scripts/setup-engine.sh):\n{out}"
        );
    }
    ok
}

macro_rules! require_runsc {
    () => {
        require_docker!();
        if !runsc_ready() {
            eprintln!(
                "SKIPPED: the engine has no runsc runtime (scripts/setup-engine.sh registers it)"
            );
            return;
        }
    };
}

/// The OCI runtime a container was created under, as the engine recorded it.
fn runtime_of(container: &str) -> String {
    docker(&["inspect", "-f", "{{.HostConfig.Runtime}}", container])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// A probe run as the task: gVisor's kernel banner, a request through the gateway, a direct
/// connection past it and a DNS lookup. Replies are read after `select` says they are
/// there: the runsc of Debian bookworm, on the host network stack, fails a blocking read of
/// a socket with nothing in it yet (see README, "A stronger boundary: gVisor").
fn probe(server_ip: &str) -> String {
    format!(
        r#"use IO::Socket::INET; use IO::Select; $| = 1;
print "kernel: ", `dmesg 2>&1 | head -1`;
sub slurp {{ my ($s) = @_; my $all = ""; my $sel = IO::Select->new($s);
  while ($sel->can_read(10)) {{ my $n = sysread($s, my $b, 65536); last unless $n; $all .= $b; }} return $all; }}
my $p = IO::Socket::INET->new(PeerAddr => "git-agent-gateway:3128", Timeout => 5) or die "no gateway: $!";
print $p "GET http://gvisor.test:8000/ HTTP/1.0\r\nHost: gvisor.test\r\n\r\n";
print "via-gateway: ", (slurp($p) =~ /hello from outside gvisor/ ? "BODY" : "nothing"), "\n";
my $d = IO::Socket::INET->new(PeerAddr => "{server_ip}:8000", Timeout => 3);
print "direct: ", ($d ? "CONNECTED" : "failed"), "\n";
print "dns: ", (gethostbyname("gvisor.test") ? "RESOLVED" : "failed"), "\n";
"#
    )
}

#[test]
fn under_gvisor_the_work_comes_back_and_the_gateway_is_still_the_only_way_out() {
    require_runsc!();
    let env = TestEnv::new();
    let outside = OuterServer::start("gvisor", &["gvisor.test"], "hello from outside gvisor");
    env.git(&["config", "agent.egressNetwork", &outside.network])
        .ok();
    env.git(&["config", "agent.allowAddress", &outside.ip()])
        .ok();
    env.git(&["config", "agent.allowPort", "8000"]).ok();
    // The user's setting (no flag): every task of this repository runs under gVisor.
    env.git(&["config", "agent.ociRuntime", "runsc"]).ok();
    env.write("probe.pl", &probe(&outside.ip()));
    env.git(&["add", "probe.pl"]).ok();
    env.git(&["commit", "-qm", "probe"]).ok();

    let run = env
        .agent(&[
            "spawn",
            "--name",
            "gv",
            "--allow",
            "gvisor.test",
            "--timeout",
            "2m",
            "-m",
            "x",
            "--wait",
            "--",
            "sh",
            "-c",
            "perl probe.pl && echo work > gvisor.txt && git add gvisor.txt && git commit -qm 'work under gvisor'",
        ])
        .ok();
    // gVisor's own kernel printed its banner: the task did not run on the host's kernel.
    assert!(run.stderr.contains("Starting gVisor"), "{run}");
    assert!(run.stderr.contains("via-gateway: BODY"), "{run}");
    assert!(run.stderr.contains("direct: failed"), "{run}");
    assert!(run.stderr.contains("dns: failed"), "{run}");
    assert!(outside.log().contains("REQUEST GET"), "{}", outside.log());

    assert_eq!(runtime_of(&env.names_of("gv").container), "runsc");
    let status = env.json(&["status", "gv", "--json"]);
    assert_eq!(status["oci_runtime"], "runsc", "{status}");

    env.agent(&["sync", "gv"]).ok();
    let commit = env.agent(&["commit", "gv", "-m", "Work from gVisor"]).ok();
    assert_eq!(commit.stdout.trim(), "agent/gv");
    assert_eq!(
        env.git(&["show", "agent/gv:gvisor.txt"]).ok().stdout,
        "work\n"
    );
}

#[test]
fn restart_keeps_the_runtime_and_no_warden_joins_a_gvisor_task() {
    require_runsc!();
    let env = TestEnv::new();
    // History goes in as a bundle over exec stdin, and the command starts on the host's `go`
    // (the image's fifo, which runsc cannot open: the helper waits on a file instead).
    env.git(&["config", "agent.objectCache", "false"]).ok();
    env.agent(&[
        "spawn",
        "--name",
        "keep",
        "--oci-runtime",
        "runsc",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "sleep 300",
    ])
    .ok();
    let names = env.names_of("keep");
    let first = docker(&["inspect", "-f", "{{.Id}}", &names.container])
        .ok()
        .stdout;
    assert_eq!(runtime_of(&names.container), "runsc");
    env.agent(&["restart", "keep"]).ok();
    let second = docker(&["inspect", "-f", "{{.Id}}", &names.container])
        .ok()
        .stdout;
    assert_ne!(first, second, "restart recreates the container");
    assert_eq!(runtime_of(&names.container), "runsc");
    // Only the task's code runs under gVisor: git-agent's gateway stays on the default.
    assert_eq!(runtime_of(&names.gateway), "runc");
    assert!(
        env.docker_exec("keep", "dmesg | head -1")
            .stdout
            .contains("Starting gVisor")
    );
    // The disk warden would share the task's PID namespace, which under runsc is the host's
    // (see the next test): none is made.
    let (containers, _, _) = env.runtime_objects();
    assert!(
        !containers.contains(&names.warden),
        "a warden joined a gVisor task: {containers:?}"
    );
    env.agent(&["stop", "keep"]).ok();
}

/// The attack the warden guard stops: a container put into the PID namespace of a runsc
/// container lands in the host's, where it sees (and as root with KILL could kill) every
/// process of the machine. The engine adapter refuses to make a warden there.
#[test]
fn a_warden_is_never_put_into_a_gvisor_containers_pid_namespace() {
    require_runsc!();
    let task = format!("ga-test-gvisor-task-{}", std::process::id());
    docker(&[
        "run",
        "-d",
        "--name",
        &task,
        "--runtime",
        "runsc",
        "--network",
        "none",
        &base_image(),
        "sleep",
        "120",
    ])
    .ok();
    // What the engine hands out as that container's PID namespace holds this test's process.
    let looked = docker(&[
        "run",
        "--rm",
        "--pid",
        &format!("container:{task}"),
        "--network",
        "none",
        &base_image(),
        "test",
        "-d",
        &format!("/proc/{}", std::process::id()),
    ]);
    assert_eq!(
        looked.code, 0,
        "the engine's runsc PID namespace is no longer the host's: {looked}"
    );

    let warden = format!("ga-test-gvisor-warden-{}", std::process::id());
    let refused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use git_agent::runtime::Runtime;
            let rt = git_agent::runtime::docker::DockerRuntime::connect().await?;
            rt.create_warden(&git_agent::runtime::WardenSpec {
                name: warden.clone(),
                image: base_image(),
                cmd: vec!["sleep".into(), "1".into()],
                labels: Default::default(),
                task: task.clone(),
                mounts: vec![],
                hardening: git_agent::sandbox::warden_hardening(),
            })
            .await
        });
    let exists = docker(&["inspect", &warden]).code == 0;
    docker(&["rm", "-f", &task]);
    docker(&["rm", "-f", &warden]);
    let err = refused.expect_err("a warden was made in a runsc container's PID namespace");
    assert!(
        format!("{err:#}").contains("refusing to join the PID namespace"),
        "{err:#}"
    );
    assert!(!exists, "the refused warden exists");
}

fn no_trace(env: &TestEnv, task: &str) {
    assert!(env.task_refs(task).is_empty(), "{:?}", env.task_refs(task));
    let (c, v, n) = env.runtime_objects();
    assert!(
        c.is_empty() && v.is_empty() && n.is_empty(),
        "{c:?} {v:?} {n:?}"
    );
}

#[test]
fn an_unknown_runtime_is_refused_with_the_engines_list_and_nothing_is_made() {
    require_docker!();
    let env = TestEnv::new();
    let before = env.snapshot();
    let spawn = |extra: &[&str]| -> Run {
        let mut args = vec!["spawn", "--name", "nope", "-m", "x"];
        args.extend_from_slice(extra);
        args.extend(["--", "true"]);
        env.agent(&args).fails()
    };
    let run = spawn(&["--oci-runtime", "no-such-runtime"]);
    assert!(
        run.stderr
            .contains("no OCI runtime named 'no-such-runtime'")
            && run.stderr.contains("runc"),
        "{run}"
    );
    assert!(
        run.stderr.contains("--add-runtime runsc=/usr/bin/runsc"),
        "{run}"
    );
    no_trace(&env, "nope");
    assert_eq!(env.snapshot(), before);
    // From the user's config the same.
    env.git(&["config", "agent.ociRuntime", "no-such-runtime"])
        .ok();
    let run = spawn(&[]);
    assert!(run.stderr.contains("'no-such-runtime'"), "{run}");
    no_trace(&env, "nope");
}

#[test]
fn a_runtime_is_a_name_never_a_path_or_options() {
    require_docker!();
    let env = TestEnv::new();
    for hostile in [
        "../../bin/sh",
        "runc --foo",
        "/usr/bin/runsc",
        "--privileged",
        "runc\nx",
    ] {
        for cmd in ["spawn", "add"] {
            let run = env
                .agent(&[
                    cmd,
                    "--name",
                    "evil",
                    &format!("--oci-runtime={hostile}"),
                    "-m",
                    "x",
                    "--",
                    "true",
                ])
                .fails();
            assert!(
                run.stderr.contains("never a path or options"),
                "{hostile:?}: {run}"
            );
            no_trace(&env, "evil");
        }
        env.git(&["config", "agent.ociRuntime", hostile]).ok();
        let run = env
            .agent(&["spawn", "--name", "evil", "-m", "x", "--", "true"])
            .fails();
        assert!(
            run.stderr.contains("agent.ociRuntime"),
            "{hostile:?}: {run}"
        );
        no_trace(&env, "evil");
    }
}

/// The engine-less test runtime runs processes on the host: it refuses any OCI runtime.
#[cfg(feature = "local-runtime")]
#[test]
fn the_local_runtime_refuses_an_oci_runtime() {
    let env = TestEnv::local();
    let run = env
        .agent(&[
            "spawn",
            "--name",
            "loc",
            "--oci-runtime",
            "runsc",
            "-m",
            "x",
            "--",
            "true",
        ])
        .fails();
    assert!(run.stderr.contains("under no OCI runtime"), "{run}");
    assert!(env.task_refs("loc").is_empty());
}

/// The real Claude Code CLI (Node.js) under gVisor: its requests reach the fake model API
/// only through the gateway, whose vault puts the real key in; its edits come back.
#[test]
fn claude_code_works_under_gvisor_through_the_vault() {
    require_runsc!();
    use crate::fake_anthropic::{FakeAnthropic, Step};
    const KEY: &str = "sk-ant-test-key-for-gvisor";
    let env = TestEnv::new();
    let fake = FakeAnthropic::start_requiring_key(
        vec![
            Step::tool(
                "Bash",
                serde_json::json!({"command": "dmesg | head -1 > kernel.txt", "description": "Look at the kernel"}),
            ),
            Step::text("Done."),
        ],
        KEY,
    );
    crate::claude::use_fake(&env, &fake);
    env.git(&["config", "agent.ociRuntime", "runsc"]).ok();
    let spawn = env.agent_with(
        &[
            "spawn", "--agent", "claude", "--name", "cg", "-m", "look", "--wait",
        ],
        |c| {
            c.env("ANTHROPIC_API_KEY", KEY);
        },
    );
    assert_eq!(spawn.code, 0, "{spawn}\n{}", fake.describe());
    assert_eq!(fake.steps_served(), 2, "{}", fake.describe());
    assert_eq!(fake.main_requests()[0].api_key(), Some(KEY));
    env.agent(&["sync", "cg"]).ok();
    let refs = env.task_refs("cg");
    let tip = refs.get("wip").or(refs.get("head")).unwrap().clone();
    let kernel = env.git(&["show", &format!("{tip}:kernel.txt")]).ok().stdout;
    assert!(kernel.contains("Starting gVisor"), "{kernel}");
}

#[test]
fn doctor_names_a_task_whose_runtime_the_engine_no_longer_has() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "add",
        "--name",
        "held",
        "--oci-runtime",
        "runc",
        "-m",
        "x",
        "--",
        "true",
    ])
    .ok();
    let healthy = env.agent(&["doctor"]);
    assert!(!healthy.stdout.contains("OCI runtime"), "{healthy}");
    // As if the engine had lost the runtime the task was started under: the record now names
    // one the engine does not have.
    let script = r#"set -e
        t=$(git show refs/agent/held/state:task.toml | sed 's/^oci_runtime = "runc"/oci_runtime = "gone-runtime"/' | git hash-object -w --stdin)
        git show refs/agent/held/state:task.toml | grep -q '^oci_runtime = "runc"'
        tree=$(git ls-tree refs/agent/held/state | awk -v t="$t" -F'\t' '$2 == "task.toml" { split($1, a, " "); print a[1] " " a[2] " " t "\t" $2; next } { print }' | git mktree)
        c=$(git commit-tree -p refs/agent/held/state -m tamper "$tree")
        git update-ref refs/agent/held/state "$c""#;
    env.git(&["-c", "alias.x=!sh -c", "x", script]).ok();
    let doctor = env.agent(&["doctor"]);
    let all = format!("{}{}", doctor.stdout, doctor.stderr);
    assert!(
        all.contains("task held runs under the OCI runtime 'gone-runtime'")
            && all.contains("runc")
            && all.contains("git agent purge held"),
        "{doctor}"
    );
}
