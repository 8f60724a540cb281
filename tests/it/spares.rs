//! Spares: while a task of the repository runs, one task network and its gateway are kept
//! started ahead, and the next spawn claims them (see `sandbox::spare`). Checked here: the
//! claimed gateway enforces the claiming task's own policy (not the one of the task whose
//! spawn made the spare), the next spare is made, spares go with the last running task and
//! never outlive `purge`, a broken spare is neither claimed nor left behind, two spawns at
//! once never share one, and `agent.spareGateway false` makes none.

use std::process::Command;

use crate::common::{Run, TestEnv};
use crate::require_docker;
use crate::servers::OuterServer;

fn docker(args: &[&str]) -> Run {
    let out = Command::new("docker").args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The repository's spare gateways (unclaimed) and spare networks.
fn spares(env: &TestEnv) -> (Vec<String>, Vec<String>) {
    let (containers, _, networks) = env.runtime_objects();
    let prefix = format!("git-agent-{}.", env.repo_id());
    (
        containers
            .into_iter()
            .filter(|c| c.starts_with(&format!("{prefix}spare.")))
            .collect(),
        networks
            .into_iter()
            .filter(|n| n.starts_with(&format!("{prefix}sparenet.")))
            .collect(),
    )
}

fn label(container: &str, key: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
        container,
    ])
    .stdout
    .trim()
    .to_string()
}

/// The probe of the way out: two hosts through the proxy.
fn probe() -> String {
    crate::servers::proxy_probe(&[("one", "one.test"), ("two", "two.test")], None)
}

fn wait_exited(container: &str) {
    let out = Command::new("timeout")
        .args(["120", "docker", "wait", container])
        .output()
        .unwrap();
    assert!(out.status.success(), "{container} did not end");
}

/// The first spawn makes a spare; the second claims it (its gateway is the spare, renamed,
/// its record names the spare's network) and the claimed gateway lets it reach exactly what
/// its own policy allows, which is not what the first task's allows. A new spare is made.
/// When the last running task ends, no spare remains; `doctor` finds nothing wrong.
#[test]
fn the_next_spawn_claims_the_spare_with_its_own_policy_and_spares_go_with_the_last_task() {
    require_docker!();
    let env = TestEnv::new();
    let outside = OuterServer::start("spare", &["one.test", "two.test"], "hello from the outside");
    env.git(&["config", "agent.egressNetwork", &outside.network])
        .ok();
    env.git(&["config", "agent.allowAddress", &outside.ip()])
        .ok();
    env.git(&["config", "agent.allowPort", "8000"]).ok();
    env.agent(&[
        "spawn", "--name", "first", "--allow", "one.test", "-m", "x", "--", "sleep", "600",
    ])
    .ok();
    let (made, nets) = spares(&env);
    assert_eq!(made.len(), 1, "one spare after a spawn: {made:?}");
    assert_eq!(nets.len(), 1, "{nets:?}");
    let id = label(&made[0], "git-agent.spare");
    assert!(nets[0].ends_with(&id), "{nets:?} {id}");
    // The attack: a running task tries to reach the spare that the next task will get (to
    // feed it requests before its policy arrives). Its own network has no route there.
    let spare_ip = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            nets[0]
        ),
        &made[0],
    ])
    .stdout
    .trim()
    .to_string();
    assert!(!spare_ip.is_empty());
    let reach = docker(&[
        "exec",
        &env.container_of("first"),
        "perl",
        "-MIO::Socket::INET",
        "-e",
        &format!(
            "print IO::Socket::INET->new(PeerAddr => \"{spare_ip}:3128\", Timeout => 3) ? \"REACHED\" : \"refused\""
        ),
    ]);
    assert_eq!(reach.stdout.trim(), "refused", "{reach}");

    let script = probe();
    let run = env.agent(&[
        "spawn", "--name", "second", "--allow", "two.test", "-m", "x", "--wait", "--", "perl",
        "-e", &script,
    ]);
    assert_eq!(run.code, 0, "{run}");
    let logs = env.agent(&["logs", "second"]).ok().stdout;
    assert!(logs.contains("two: HTTP/1.0 200 OK +body"), "{logs}");
    assert!(logs.contains("one: HTTP/1.1 403"), "{logs}");
    // It ran on the spare's network, and its connections were recorded as any task's.
    let net = env
        .git(&["show", "refs/agent/second/state:connections"])
        .ok()
        .stdout;
    assert!(net.contains("one.test") && net.contains("denied"), "{net}");
    let status = env.agent(&["status", "second"]).ok().stdout;
    assert!(
        !status.contains(&nets[0]),
        "its run ended and gave the network back: {status}"
    );
    // A new spare was made for the next spawn, and the claimed one is gone with the run.
    let (after, after_nets) = spares(&env);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0], made[0]);
    assert!(!after_nets.contains(&nets[0]), "{after_nets:?}");

    // A spawn that claims while another runs: its gateway is the spare, under its name.
    let spare_id = label(&after[0], "git-agent.spare");
    env.agent(&["spawn", "--name", "third", "-m", "x", "--", "sleep", "600"])
        .ok();
    let gw = env.names_of("third").gateway;
    assert_eq!(label(&gw, "git-agent.spare"), spare_id);
    let third_net = env.network_of("third").unwrap();
    assert!(third_net.ends_with(&spare_id), "{third_net}");
    let doctor = env.agent(&["doctor"]);
    assert!(!doctor.stdout.contains("spare"), "{doctor}");

    // Purging one of two running tasks leaves the other's network and gateway alone.
    env.agent(&["purge", "--refs", "first"]).ok();
    let (containers, _, networks) = env.runtime_objects();
    assert!(containers.contains(&gw), "{containers:?}");
    assert!(networks.contains(&third_net), "{networks:?}");
    // The last running task stops: its network goes, and so does the spare.
    env.agent(&["stop", "--timeout", "1", "third"]).ok();
    let (containers, _, networks) = env.runtime_objects();
    assert_eq!(
        spares(&env),
        (vec![], vec![]),
        "{containers:?} {networks:?}"
    );
    assert!(networks.is_empty(), "{networks:?}");
    assert!(!containers.contains(&gw), "{containers:?}");
}

/// A spare whose gateway does not run is not claimed: the spawn makes its own network and
/// removes the broken spare. `doctor` names one (made broken again) and `--fix` removes it.
#[test]
fn a_broken_spare_is_not_claimed_and_doctor_fix_removes_one() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "keep", "-m", "x", "--", "sleep", "600"])
        .ok();
    let (made, nets) = spares(&env);
    assert_eq!(made.len(), 1, "{made:?}");
    docker(&["kill", &made[0]]);
    env.agent(&["spawn", "--name", "next", "-m", "x", "--", "sleep", "600"])
        .ok();
    let names = env.names_of("next");
    assert_eq!(
        env.network_of("next").as_deref(),
        Some(names.network.as_str())
    );
    assert_eq!(label(&names.gateway, "git-agent.spare"), "");
    let (now, now_nets) = spares(&env);
    assert!(
        !now.contains(&made[0]) && !now_nets.contains(&nets[0]),
        "{now:?} {now_nets:?}"
    );
    assert_eq!(now.len(), 1, "a new spare: {now:?}");

    docker(&["kill", &now[0]]);
    let doctor = env.agent(&["doctor"]);
    assert!(doctor.stdout.contains(&now[0]), "{doctor}");
    let fix = env.agent(&["doctor", "--fix"]);
    assert!(fix.code == 0 || fix.code == 1, "{fix}");
    assert_eq!(spares(&env), (vec![], vec![]), "{fix}");
    // The tasks' own objects are untouched.
    let (containers, _, networks) = env.runtime_objects();
    assert!(containers.contains(&names.gateway), "{containers:?}");
    assert!(networks.contains(&names.network), "{networks:?}");

    // A spare cut short while it was made (its network, no gateway yet) is reported, and
    // goes with the last running task.
    let half = format!("git-agent-{}.sparenet.00c0ffee", env.repo_id());
    let made = docker(&[
        "network",
        "create",
        "--internal",
        "--label",
        &format!("git-agent.repo={}", env.repo_id()),
        "--label",
        "git-agent.spare=00c0ffee",
        &half,
    ]);
    assert_eq!(made.code, 0, "{made}");
    let doctor = env.agent(&["doctor"]);
    assert!(doctor.stdout.contains(&half), "{doctor}");
    for t in ["keep", "next"] {
        env.agent(&["stop", "--timeout", "1", t]).ok();
    }
    let (containers, _, networks) = env.runtime_objects();
    assert!(networks.is_empty(), "{networks:?}");
    assert!(
        !containers.iter().any(|c| c.contains(".spare.")),
        "{containers:?}"
    );
}

/// Two spawns at once with one spare: both start, on different networks and gateways; at
/// most one of them ran on the spare. With `agent.spareGateway false` no spare is made.
#[test]
fn two_spawns_never_share_a_spare_and_spares_can_be_turned_off() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "keep", "-m", "x", "--", "sleep", "600"])
        .ok();
    assert_eq!(spares(&env).0.len(), 1);
    let spawn = |name: &str| env.agent(&["spawn", "--name", name, "-m", "x", "--", "sleep", "600"]);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("a"));
        let b = s.spawn(|| spawn("b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.code, 0, "{a}");
    assert_eq!(b.code, 0, "{b}");
    let (na, nb) = (env.network_of("a").unwrap(), env.network_of("b").unwrap());
    assert_ne!(na, nb);
    let claimed = [&na, &nb]
        .iter()
        .filter(|n| n.contains(".sparenet."))
        .count();
    assert!(claimed <= 1, "{na} {nb}");
    let (ga, gb) = (env.names_of("a").gateway, env.names_of("b").gateway);
    for gw in [&ga, &gb] {
        assert_eq!(
            docker(&["inspect", "-f", "{{.State.Running}}", gw])
                .stdout
                .trim(),
            "true"
        );
    }

    for t in ["keep", "a", "b"] {
        env.agent(&["purge", "--refs", t]).ok();
    }
    assert_eq!(spares(&env), (vec![], vec![]));
    env.git(&["config", "agent.spareGateway", "false"]).ok();
    env.agent(&["spawn", "--name", "off", "-m", "x", "--", "sleep", "600"])
        .ok();
    assert_eq!(spares(&env), (vec![], vec![]));
    wait_exited_or_stop(&env, "off");
}

fn wait_exited_or_stop(env: &TestEnv, task: &str) {
    env.agent(&["stop", "--timeout", "1", task]).ok();
    wait_exited(&env.container_of(task));
}

/// The real Claude Code through a claimed spare: the spare learnt only on its claim that its
/// task has a vault, and the model API receives the real key for the stand-in.
#[test]
fn a_claimed_spare_runs_the_vault_for_the_real_claude_code() {
    use crate::fake_anthropic::{FakeAnthropic, Step};
    require_docker!();
    const KEY: &str = "sk-ant-test-key-for-a-spare";
    let env = TestEnv::new();
    let fake = FakeAnthropic::start_requiring_key(vec![Step::text("Nothing to change.")], KEY);
    crate::claude::use_fake(&env, &fake);
    env.agent(&["spawn", "--name", "keep", "-m", "x", "--", "sleep", "600"])
        .ok();
    let (made, _) = spares(&env);
    assert_eq!(made.len(), 1, "{made:?}");
    let id = label(&made[0], "git-agent.spare");
    let spawn = env.agent_with(
        &[
            "spawn",
            "--agent",
            "claude",
            "--name",
            "cc",
            "-m",
            "look around",
            "--wait",
        ],
        |c| {
            c.env("ANTHROPIC_API_KEY", KEY);
        },
    );
    assert_eq!(spawn.code, 0, "{spawn}\n{}", fake.describe());
    // The agent holds only a stand-in (see `egress::vault`): the real key reached the API
    // through the claimed gateway's vault.
    let first = &fake.main_requests()[0];
    assert_eq!(first.api_key(), Some(KEY), "{}", fake.describe());
    // It ran on the spare that the exec task's spawn made.
    let history = env
        .git(&[
            "log",
            "-p",
            "--format=",
            "refs/agent/cc/state",
            "--",
            "task.toml",
        ])
        .ok()
        .stdout;
    assert!(history.contains(&format!(".sparenet.{id}")), "{history}");
}

/// kill -9 of a spawn after it claimed a spare (at the steps where the claimed gateway is
/// the task's but the record does not name the spare's network yet, and later): the one
/// documented command, `purge --refs`, leaves nothing of it, the spare's network included.
#[test]
fn a_spawn_killed_after_claiming_a_spare_is_purged_whole() {
    require_docker!();
    let env = TestEnv::new();
    for (i, point) in [
        "spawn.after-network",
        "spawn.after-start",
        "spawn.after-gateway",
    ]
    .iter()
    .enumerate()
    {
        // A running task whose spawn made a spare for the next one.
        let keeper = format!("keep{i}");
        env.agent(&["spawn", "--name", &keeper, "-m", "x", "--", "sleep", "600"])
            .ok();
        let (made, nets) = spares(&env);
        assert_eq!(made.len(), 1, "{point}: {made:?}");
        let task = format!("cut{i}");
        env.agent_crash_at(
            point,
            &["spawn", "--name", &task, "-m", "x", "--", "sleep", "600"],
        );
        let gw = env.names_of(&task).gateway;
        assert_eq!(
            label(&gw, "git-agent.spare"),
            label_of_gone_spare(&nets[0]),
            "{point}: the spawn claimed the spare"
        );
        env.agent(&["purge", "--refs", &task]).ok();
        let (containers, _, networks) = env.runtime_objects();
        let names = env.names_of(&task);
        for (_, n) in names.all() {
            assert!(
                !containers.contains(&n.to_string()) && !networks.contains(&n.to_string()),
                "{point}: {n} left"
            );
        }
        assert!(!networks.contains(&nets[0]), "{point}: {networks:?}");
        env.agent(&["purge", "--refs", &keeper]).ok();
    }
    assert_eq!(spares(&env), (vec![], vec![]));
}

/// The spare id a spare network's name ends with.
fn label_of_gone_spare(network: &str) -> String {
    network.rsplit('.').next().unwrap().to_string()
}
