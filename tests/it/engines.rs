//! Several engines at once: tasks placed by free room against per-engine limits, each task
//! on the engine its record names, `list` spanning them, and an engine that does not answer
//! affecting only its own tasks. The second engine is `scripts/second-engine.sh`'s (a dockerd
//! in its own network namespace, reached only over TCP with mutual TLS).

use std::process::Command;

use crate::common::TestEnv;
use crate::remote::{TLS_HOST, certs, second_engine};
use crate::require_docker;
use crate::servers::docker;

/// Task containers of this test's repository running on the second engine.
fn remote_tasks(env: &TestEnv) -> Vec<String> {
    let out = Command::new("docker")
        .env("DOCKER_HOST", TLS_HOST)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs())
        .args([
            "ps",
            "--filter",
            &format!("label=git-agent.repo={}", env.repo_id()),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    running_tasks(&String::from_utf8_lossy(&out.stdout))
}

fn host_tasks(env: &TestEnv) -> Vec<String> {
    let out = docker(&[
        "ps",
        "--filter",
        &format!("label=git-agent.repo={}", env.repo_id()),
        "--format",
        "{{.Names}}",
    ]);
    running_tasks(&out.stdout)
}

fn running_tasks(names: &str) -> Vec<String> {
    let mut tasks: Vec<String> = names
        .lines()
        .filter_map(|n| n.split_once(".task.").map(|(_, t)| t.to_string()))
        .collect();
    tasks.sort();
    tasks
}

#[test]
fn six_tasks_spread_over_two_engines_with_a_limit_of_three_each() {
    require_docker!();
    if !second_engine() {
        return;
    }
    let env = TestEnv::new();
    for (k, v) in [
        ("agent.engine.here.url", "unix:///var/run/docker.sock"),
        ("agent.engine.here.limit", "3"),
        ("agent.engine.there.url", TLS_HOST),
        ("agent.engine.there.certPath", &certs()),
        ("agent.engine.there.limit", "3"),
    ] {
        env.git(&["config", k, v]).ok();
    }
    let names: Vec<String> = (1..=6).map(|i| format!("t{i}")).collect();
    // Whatever happens, nothing stays on either engine.
    struct Purge<'a>(&'a TestEnv);
    impl Drop for Purge<'_> {
        fn drop(&mut self) {
            for i in 1..=7 {
                self.0.agent(&["purge", "--refs", "-y", &format!("t{i}")]);
            }
        }
    }
    let _purge = Purge(&env);
    for n in &names {
        env.agent(&["spawn", "--name", n, "-m", "x", "--", "sleep", "300"])
            .ok();
    }
    let here = host_tasks(&env);
    let there = remote_tasks(&env);
    assert_eq!(here.len(), 3, "on this engine: {here:?}, there: {there:?}");
    assert_eq!(
        there.len(),
        3,
        "on the second engine: {there:?}, here: {here:?}"
    );
    let mut all: Vec<String> = here.iter().chain(&there).cloned().collect();
    all.sort();
    assert_eq!(all, names, "each task runs once, on one engine");

    // A seventh finds no room: refused with the way out, and nothing of it is left.
    let refused = env
        .agent(&["spawn", "--name", "t7", "-m", "x", "--", "sleep", "300"])
        .fails();
    assert!(
        refused.stderr.contains("every engine is at its limit")
            && refused.stderr.contains("git agent add"),
        "{}",
        refused.stderr
    );
    assert!(env.task_refs("t7").is_empty(), "the refused task left refs");

    // `list` spans both engines: six running tasks.
    let list = env.agent(&["list"]).ok();
    for n in &names {
        let line = list
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n));
        assert!(
            line.is_some_and(|l| l.contains("running")),
            "{n} is not listed as running:\n{}",
            list.stdout
        );
    }

    // Where each runs, in the table and in JSON.
    for n in &names {
        let engine = if there.contains(n) { "there" } else { "here" };
        let line = list
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .unwrap();
        assert!(line.trim_end().ends_with(engine), "{line}");
    }
    let json = env.json(&["list", "--json"]);
    for t in json["tasks"].as_array().unwrap() {
        let n = t["task"].as_str().unwrap().to_string();
        let engine = if there.contains(&n) { "there" } else { "here" };
        assert_eq!(t["engine"], engine, "{t}");
    }

    // Each command finds a task's engine from its record: a shell command on a task of the
    // second engine runs there, and stopping it frees room for a new task there.
    let remote = &there[0];
    let shell = env
        .agent(&["shell", remote, "--", "cat", "/etc/hostname"])
        .ok();
    let id = shell.stdout.trim().to_string();
    assert!(!id.is_empty());
    assert!(
        docker(&["inspect", &env.names_of(remote).container]).code != 0,
        "the task's container is on this engine too"
    );
    env.agent(&["stop", "--timeout", "0", remote]).ok();
    env.agent(&["spawn", "--name", "t7", "-m", "x", "--", "sleep", "300"])
        .ok();
    assert!(
        remote_tasks(&env).contains(&"t7".to_string()),
        "the freed room on the second engine was not used: {:?}",
        remote_tasks(&env)
    );

    // The second engine stops answering (its address now leads nowhere): only its tasks
    // are unchecked, with the engine named; this engine's tasks are checked as usual.
    let dead = env
        .agent_with(&["list"], |c| {
            c.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "agent.engine.there.url")
                .env("GIT_CONFIG_VALUE_0", "tcp://127.0.0.1:9");
        })
        .ok();
    assert!(
        dead.stderr.contains("engine 'there'"),
        "the unreachable engine is not named: {}",
        dead.stderr
    );
    for n in there.iter().filter(|n| *n != remote) {
        let line = dead
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n.as_str()))
            .unwrap_or_default();
        assert!(
            line.contains("running?"),
            "{n} is not shown unchecked: {line}"
        );
    }
    for n in &here {
        let line = dead
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n.as_str()))
            .unwrap_or_default();
        assert!(line.contains("running"), "{n}: {line}\n{}", dead.stdout);
    }

    for n in names.iter().chain(std::iter::once(&"t7".to_string())) {
        env.agent(&["purge", "--refs", "-y", n]).ok();
    }
    assert!(host_tasks(&env).is_empty());
    assert!(remote_tasks(&env).is_empty());
}
