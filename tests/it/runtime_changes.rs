//! Changes of a running task's runtime (`allow`, gateway reloads, `restart`) are serialised
//! and checked: many `allow`s at once all land in the record AND in the live gateway, a
//! reload that fails is an error with a hint, and `restart` refuses a workspace that lost the
//! task's repository (with `restart --reseed` to bring it back from the synced work).

use std::collections::BTreeMap;

use crate::common::{Run, TestEnv};
use crate::require_docker;
use crate::servers::docker;

/// Spawn a task that keeps running (an exec agent sleeping).
fn running_task(env: &TestEnv, name: &str) {
    env.agent(&["spawn", "--name", name, "-m", "x", "--", "sleep", "600"])
        .ok();
}

/// Ask the task's gateway, from inside the task, about each name: `allowed` when the proxy
/// lets a CONNECT through its policy (the name then fails to resolve: 502), `denied` when the
/// policy refuses it (403), else what happened.
fn gateway_verdicts(env: &TestEnv, task: &str, names: &[String]) -> BTreeMap<String, String> {
    let mut script = String::from(
        r#"use IO::Socket::INET; $| = 1;
sub ask { my ($n) = @_;
  my $s = IO::Socket::INET->new(PeerAddr => "git-agent-gateway:3128", Timeout => 5) or return "no-proxy";
  print $s "CONNECT $n:443 HTTP/1.1\r\n\r\n"; my $l = <$s>; $l //= "closed";
  return $l =~ / 403 / ? "denied" : $l =~ /\(resolve\)|\(connect\)| 502 / ? "allowed" : "other:$l"; }
"#,
    );
    for n in names {
        script += &format!("print \"{n}=\", ask(\"{n}\"), \"\\n\";\n");
    }
    let run = run_of(
        std::process::Command::new("docker")
            .args(["exec", "-i", &env.container_of(task), "perl", "-e", &script])
            .output()
            .unwrap(),
    );
    run.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn run_of(out: std::process::Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn gateway_running(env: &TestEnv, task: &str) -> bool {
    docker(&[
        "inspect",
        "-f",
        "{{.State.Running}}",
        &env.names_of(task).gateway,
    ])
    .stdout
    .trim()
        == "true"
}

/// 20 `allow`s of different domains at once against a running task: every one succeeds, all
/// 20 are in the record and in the live gateway's policy, and the gateway still runs.
#[test]
fn concurrent_allows_all_land_in_record_and_gateway() {
    require_docker!();
    let env = TestEnv::new();
    running_task(&env, "many");
    let domains: Vec<String> = (0..20).map(|i| format!("d{i}.example.com")).collect();
    let children: Vec<_> = domains
        .iter()
        .map(|d| {
            env.agent_command(&["allow", "many", d])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| run_of(c.wait_with_output().unwrap()))
        .collect();
    for r in &runs {
        assert_eq!(r.code, 0, "{r}");
    }
    assert!(gateway_running(&env, "many"), "the gateway died");
    let st = env.json(&["status", "--json", "many"]);
    let recorded: Vec<String> = st["network"]["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for d in &domains {
        assert!(recorded.contains(d), "{d} not recorded: {recorded:?}");
    }
    let mut names = domains.clone();
    names.push("never.example.org".into());
    let v = gateway_verdicts(&env, "many", &names);
    for d in &domains {
        assert_eq!(v.get(d).map(String::as_str), Some("allowed"), "{d}: {v:?}");
    }
    assert_eq!(v["never.example.org"], "denied", "{v:?}");
}

fn recorded_allow(env: &TestEnv, task: &str) -> Vec<String> {
    let st = env.json(&["status", "--json", task]);
    st["network"]["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Run the gateway's own helper (as the gateway's user).
fn gateway_helper(env: &TestEnv, task: &str, script: &str) -> Run {
    run_of(
        std::process::Command::new("docker")
            .args(["exec", &env.names_of(task).gateway, "sh", "-c", script])
            .output()
            .unwrap(),
    )
}

/// Whether the task's running gateway enforces exactly its recorded policy, as
/// `sandbox::health` tells `status` and `doctor`.
fn gateway_matches_record(env: &TestEnv, task: &str) -> Option<bool> {
    let git = git_agent::git::Git::discover(&env.repo).unwrap();
    let store = git_agent::task::store::TaskStore::open(&git).unwrap();
    let loaded = store.resolve(task).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let rt = git_agent::runtime::docker::DockerRuntime::connect()
                .await
                .unwrap();
            git_agent::sandbox::health::gateway_policy_matches(&rt, &loaded)
                .await
                .unwrap()
        })
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A reload the gateway cannot carry out is an error with a hint, records nothing and leaves
/// the old policy in force; a malformed or incomplete policy is refused by the gateway
/// itself; a kill at any point of `allow` is repaired by running it again; a dead gateway is
/// reported by `allow`, and `restart` brings one back that takes new domains.
#[test]
fn allow_is_checked_and_converges_after_failures_and_crashes() {
    require_docker!();
    let env = TestEnv::new();
    running_task(&env, "gw");
    env.agent(&["allow", "gw", "a.example.com"]).ok();
    let user = env.user_snapshot();
    let helper = "/usr/local/bin/git-agent-gateway";

    // The gateway's policy directory is read-only: the reload fails.
    gateway_helper(&env, "gw", "chmod 555 /etc/git-agent-gateway").ok();
    let failed = env.agent(&["allow", "gw", "b.example.com"]);
    assert_eq!(failed.code, 1, "{failed}");
    assert!(failed.stderr.contains("Error: "), "{failed}");
    assert!(failed.stderr.contains("nothing was recorded"), "{failed}");
    assert!(
        failed.stderr.contains("Hint: ") && failed.stderr.contains("git agent restart gw"),
        "{failed}"
    );
    assert!(!recorded_allow(&env, "gw").contains(&"b.example.com".to_string()));
    gateway_helper(&env, "gw", "chmod 755 /etc/git-agent-gateway").ok();
    let names = |extra: &[&str]| -> Vec<String> {
        ["a.example.com", "b.example.com"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let v = gateway_verdicts(&env, "gw", &names(&[]));
    assert_eq!(v["a.example.com"], "allowed", "{v:?}");
    assert_eq!(v["b.example.com"], "denied", "{v:?}");

    // The gateway refuses a malformed policy and an incomplete one; the old one stays.
    let before = gateway_helper(&env, "gw", &format!("{helper} policy")).ok();
    for (text, digest) in [
        ("{\"allow\": \"x\"}", sha256("{\"allow\": \"x\"}")),
        ("{\"allow\": [", sha256("{\"allow\": [\"x.example.com\"]}")),
    ] {
        let r = gateway_helper(
            &env,
            "gw",
            &format!(
                "printf '%s' '{text}' > /etc/git-agent-gateway/policy.json.{digest}; {helper} reload {digest}"
            ),
        );
        assert_eq!(r.code, 1, "{text}: {r}");
        assert!(r.stderr.contains("refused"), "{r}");
    }
    let after = gateway_helper(&env, "gw", &format!("{helper} policy")).ok();
    assert_eq!(before.stdout, after.stdout);
    assert_eq!(before.stdout.trim().len(), 64, "{before}");

    // A kill at each point of `allow`; running it again converges.
    for (i, point) in [
        "allow.after-upload",
        "allow.after-reload",
        "allow.after-record",
    ]
    .iter()
    .enumerate()
    {
        let d = format!("c{i}.example.com");
        env.agent_crash_at(point, &["allow", "gw", &d]);
        assert_eq!(env.user_snapshot(), user, "{point}");
        // Only a kill between the gateway's confirmation and the record leaves them apart.
        assert_eq!(
            gateway_matches_record(&env, "gw"),
            Some(*point != "allow.after-reload"),
            "{point}"
        );
        assert!(gateway_running(&env, "gw"), "{point}");
        let st = env.agent(&["status", "gw"]).ok();
        assert!(st.stdout.contains("running"), "{point}: {st}");
        // `status` tells when the gateway and the record disagree, and how to fix it.
        assert_eq!(
            st.stdout.contains("gateway policy differs from the record"),
            *point == "allow.after-reload",
            "{point}: {st}"
        );
        env.agent(&["allow", "gw", &d]).ok();
        assert!(recorded_allow(&env, "gw").contains(&d), "{point}");
        assert_eq!(gateway_matches_record(&env, "gw"), Some(true), "{point}");
        let v = gateway_verdicts(&env, "gw", std::slice::from_ref(&d));
        assert_eq!(v[&d], "allowed", "{point}: {v:?}");
    }

    // A missing network, then a dead gateway: `allow` says so and records nothing;
    // `restart` says what it replaces and gives the task a new network and gateway.
    let n = env.names_of("gw");
    for c in [&n.container, &n.gateway] {
        docker(&["network", "disconnect", "-f", &n.network, c]).ok();
    }
    docker(&["network", "rm", &n.network]).ok();
    let no_net = env.agent(&["allow", "gw", "d.example.com"]);
    assert_eq!(no_net.code, 1, "{no_net}");
    assert!(no_net.stderr.contains("network is missing"), "{no_net}");
    assert!(no_net.stderr.contains("git agent restart gw"), "{no_net}");
    docker(&["kill", &n.gateway]).ok();
    let dead = env.agent(&["allow", "gw", "d.example.com"]);
    assert_eq!(dead.code, 1, "{dead}");
    assert!(dead.stderr.contains("gateway is not running"), "{dead}");
    assert!(dead.stderr.contains("git agent restart gw"), "{dead}");
    assert!(!recorded_allow(&env, "gw").contains(&"d.example.com".to_string()));
    let restarted = env.agent(&["restart", "gw"]).ok();
    assert!(restarted.stderr.contains("gateway down"), "{restarted}");
    assert!(restarted.stderr.contains("network missing"), "{restarted}");
    env.agent(&["allow", "gw", "d.example.com"]).ok();
    let v = gateway_verdicts(&env, "gw", &names(&["c0.example.com", "d.example.com"]));
    assert_eq!(v["a.example.com"], "allowed", "{v:?}");
    assert_eq!(v["c0.example.com"], "allowed", "{v:?}");
    assert_eq!(v["d.example.com"], "allowed", "{v:?}");
    assert_eq!(v["b.example.com"], "denied", "{v:?}");
    assert_eq!(env.user_snapshot(), user);
}

/// The task's command: the first run commits `committed.txt` and leaves `wip.txt`
/// uncommitted; every later run (a restart) records what it finds in its workspace.
const WORKER: &str = "if [ -f committed.txt ]; then \
     echo \"seen $(cat committed.txt) $(cat wip.txt 2>/dev/null || echo no-wip) run$$\" > seen.txt; \
   else echo one > committed.txt && git add committed.txt && git commit -qm one && echo two > wip.txt; fi; \
   sleep 600";

/// Poll `script` in the task's container until it prints something (10 s at most).
fn wait_for(env: &TestEnv, task: &str, script: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = env.sandbox_exec(task, script);
        if r.code == 0 && !r.stdout.trim().is_empty() {
            return r.stdout.trim().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer from `{script}` in task {task}: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).code == 0
}

/// `restart` refuses a workspace whose volume is gone or empty (and changes nothing), names
/// `restart --reseed`, which rebuilds it from the synced head and uncommitted snapshot, and
/// the task's work continues there. A kill at any point of `restart` is repaired by the
/// command its message names, and nothing is left behind.
#[test]
fn restart_refuses_a_lost_workspace_and_reseed_brings_the_work_back() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "ws", "-m", "x", "--", "sh", "-c", WORKER])
        .ok();
    wait_for(&env, "ws", "test -f wip.txt && echo ok");
    env.agent(&["sync", "ws"]).ok();
    let refs = env.task_refs("ws");
    assert!(
        refs.contains_key("head") && refs.contains_key("wip"),
        "{refs:?}"
    );
    let user = env.user_snapshot();
    let names = env.names_of("ws");

    // The volume is lost (the engine's container and volume both gone).
    docker(&["rm", "-f", &names.container]).ok();
    docker(&["rm", "-f", &names.warden]);
    docker(&["volume", "rm", &names.volume]).ok();
    let refused = env.agent(&["restart", "ws"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("workspace is missing"), "{refused}");
    assert!(
        refused
            .stderr
            .contains("Hint: `git agent restart --reseed ws`"),
        "{refused}"
    );
    assert!(!volume_exists(&names.volume), "looking created the volume");
    assert_eq!(
        env.task_refs("ws"),
        refs,
        "a refused restart changed the task"
    );
    // The engine recreated it by name, empty and unlabelled.
    docker(&["volume", "create", &names.volume]).ok();
    let refused = env.agent(&["restart", "ws"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("workspace is empty"), "{refused}");
    assert_eq!(env.task_refs("ws"), refs);
    assert!(
        !env.runtime_objects().0.contains(&names.reader),
        "the workspace check left its container"
    );

    env.agent(&["restart", "--reseed", "ws"]).ok();
    let seen = wait_for(&env, "ws", "cat seen.txt");
    assert!(seen.starts_with("seen one two "), "{seen}");
    let status = env
        .docker_exec("ws", "git status --porcelain; git rev-parse HEAD")
        .stdout;
    assert!(
        status.contains("?? wip.txt"),
        "wip is not uncommitted: {status}"
    );
    assert!(status.contains(&refs["head"]), "{status}");
    env.agent(&["sync", "ws"]).ok();
    assert_eq!(env.task_refs("ws")["head"], refs["head"]);
    assert_eq!(env.user_snapshot(), user);

    // The running task's workspace lost its repository: refused too, nothing recorded.
    env.docker_exec("ws", "rm -rf .git").ok();
    let before = env.task_refs("ws");
    let refused = env.agent(&["restart", "ws"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("workspace is empty"), "{refused}");
    assert!(refused.stderr.contains("--reseed ws"), "{refused}");
    assert_eq!(env.task_refs("ws"), before);
    env.agent(&["restart", "--reseed", "ws"]).ok();
    let status = env
        .docker_exec("ws", "git status --porcelain; git rev-parse HEAD")
        .stdout;
    assert!(
        status.contains("?? wip.txt") && status.contains(&refs["head"]),
        "{status}"
    );

    restart_crash_matrix(&env, "ws");
}

/// Spawn `task` running [`WORKER`] and sync its work once it has made it (a commit and an
/// uncommitted file), as [`restart_crash_matrix`] needs.
#[cfg_attr(not(feature = "local-runtime"), allow(dead_code))]
pub fn worker_task(env: &TestEnv, task: &str) {
    env.agent(&["spawn", "--name", task, "-m", "x", "--", "sh", "-c", WORKER])
        .ok();
    wait_for(env, task, "test -f wip.txt && echo ok");
    env.agent(&["sync", task]).ok();
}

/// Kills at each point of `restart` of running task `task` (a [`worker_task`]): the user's
/// repository is untouched, and the command the situation calls for (its message names it)
/// completes, with the task's work there. Then `purge` leaves nothing. For any runtime
/// (`orchestration.rs` runs it on the engine-less one).
pub fn restart_crash_matrix(env: &TestEnv, task: &str) {
    let user = env.user_snapshot();
    let plain = ["restart", task];
    let reseed = ["restart", "--reseed", task];
    for (point, args) in [
        ("restart.after-remove", &plain[..]),
        ("restart.after-create", &plain[..]),
        ("restart.after-volume", &reseed[..]),
        ("restart.after-deliver", &reseed[..]),
    ] {
        env.agent_crash_at(point, args);
        assert_eq!(env.user_snapshot(), user, "{point}");
        env.agent(&["status", task]).ok();
        let again = env.agent(&plain);
        if point == "restart.after-volume" {
            // The fresh volume is still empty: restart says so and names --reseed.
            assert_eq!(again.code, 1, "{point}: {again}");
            assert!(
                again.stderr.contains(&format!("--reseed {task}")),
                "{again}"
            );
            env.agent(&reseed).ok();
        } else {
            assert_eq!(again.code, 0, "{point}: {again}");
        }
        let seen = wait_for(env, task, "cat seen.txt");
        assert!(seen.starts_with("seen one "), "{point}: {seen}");
        let st = env.json(&["status", "--json", task]);
        assert_eq!(st["status"], "running", "{point}: {st}");
    }
    env.agent(&["purge", task]).ok();
    let (c, v, n) = env.runtime_objects();
    assert!(
        c.is_empty() && v.is_empty() && n.is_empty(),
        "{c:?} {v:?} {n:?}"
    );
}

/// A spawn killed (SIGKILL: no cleanup) part-way leaves a task `creating` with whatever
/// objects it had made; `restart --reseed` brings it back from its base whatever the moment
/// (or the task was never recorded), and the task then runs on the user's files.
#[test]
fn reseed_brings_back_a_task_whose_spawn_was_killed() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["image", "build", "--agent", "exec"]).ok();
    let user = env.user_snapshot();
    let mut revived = 0;
    for (i, delay_ms) in [400u64, 900].into_iter().enumerate() {
        let name = format!("k{i}");
        let mut child = env
            .agent_command(&[
                "spawn",
                "--name",
                &name,
                "-m",
                "x",
                "--",
                "sh",
                "-c",
                "cat README.md > seen.txt; sleep 600",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(env.user_snapshot(), user);
        if env.task_refs(&name).is_empty() {
            continue;
        }
        let st = env.json(&["status", "--json", &name]);
        eprintln!("delay {delay_ms}ms: left {}", st["status"]);
        let run = env.agent(&["restart", "--reseed", &name]);
        assert_eq!(run.code, 0, "delay {delay_ms}ms: {run}");
        assert_eq!(
            wait_for(&env, &name, "cat seen.txt"),
            "# demo",
            "delay {delay_ms}ms"
        );
        revived += 1;
    }
    eprintln!("revived {revived} of 2 killed spawns");
}
