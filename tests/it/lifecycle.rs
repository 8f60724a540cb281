//! Task lifecycle against a real engine: list, status, logs, stop, rm, purge, and
//! interrupted spawns.

use std::time::Duration;

use crate::common::TestEnv;
use crate::require_docker;

#[test]
fn list_status_logs_stop_rm_purge() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "long",
        "-m",
        "wait a while",
        "--",
        "sh",
        "-c",
        "echo started-up; printf '\\033[2Jcleared\\n'; sleep 300",
    ])
    .ok();
    env.agent(&[
        "spawn",
        "--name",
        "short",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo hi > f; exit 3",
    ]);

    let list = env.agent(&["list"]).ok().stdout;
    let line = |name: &str| {
        list.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} in\n{list}"))
            .to_string()
    };
    assert!(line("long").contains("running"), "{list}");
    assert!(line("short").contains("exited (3)"), "{list}");
    assert!(list.lines().next().unwrap().contains("NAME"));
    let json: serde_json::Value =
        serde_json::from_str(&env.agent(&["list", "--json"]).ok().stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);

    // A prefix selects; an ambiguous or unknown one is a clear error.
    let st = env.agent(&["status", "lo"]).ok().stdout;
    assert!(
        st.contains("task:      long") && st.contains("wait a while"),
        "{st}"
    );
    assert!(
        st.contains("history:") && st.contains("running") && st.contains("create long"),
        "{st}"
    );
    env.agent(&["spawn", "--name", "longer", "-m", "x", "--", "true"])
        .ok();
    let amb = env.agent(&["status", "lon"]).fails();
    assert!(amb.stderr.contains("matches 2 tasks"), "{amb}");
    let unknown = env.agent(&["logs", "nope"]).fails();
    assert!(unknown.stderr.contains("no task named 'nope'"), "{unknown}");

    // logs: the output as emitted when piped.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = env.agent(&["logs", "long"]).ok().stdout;
        if logs.contains("cleared") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        logs.contains("started-up") && logs.contains("cleared"),
        "{logs}"
    );

    env.agent(&["stop", "long", "--timeout", "1"]).ok();
    let st: serde_json::Value =
        serde_json::from_str(&env.agent(&["status", "long", "--json"]).ok().stdout).unwrap();
    assert_eq!(st["status"], "stopped");
    // Work is still reachable after a stop: sync starts the container just long enough.
    env.docker_exec("long", "true"); // container is stopped, so this fails; that's fine
    let sync = env.agent(&["sync", "long"]).ok();
    assert!(sync.stderr.contains("nothing new"), "{sync}");

    env.agent(&["rm", "short"]).ok();
    let (containers, volumes, _) = env.runtime_objects();
    assert!(
        !containers.contains(&env.container_of("short")),
        "{containers:?}"
    );
    assert!(
        volumes.iter().any(|v| v.ends_with("-short-ws")),
        "rm keeps the workspace: {volumes:?}"
    );
    let logs = env.agent(&["logs", "short"]).fails();
    assert!(logs.stderr.contains("no container"), "{logs}");

    env.agent(&["purge", "short"]).ok();
    let (_, volumes, networks) = env.runtime_objects();
    assert!(
        !volumes.iter().any(|v| v.ends_with("-short-ws")),
        "{volumes:?}"
    );
    assert!(
        !networks.iter().any(|n| n.ends_with("-short-net")),
        "{networks:?}"
    );
    assert!(
        env.task_refs("short").contains_key("state"),
        "purge without --refs keeps the task"
    );
    env.agent(&["purge", "--refs", "short"]).ok();
    assert!(env.task_refs("short").is_empty());

    env.agent(&["purge", "--refs", "--all"]).ok();
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
    assert!(env.git(&["for-each-ref", "refs/agent/"]).stdout.is_empty());
}

/// Ctrl-C at any moment of a spawn leaves either a complete task or nothing at all: no
/// half-written refs and no orphaned runtime objects.
#[test]
fn interrupted_spawn_leaves_nothing_half_done() {
    require_docker!();
    let env = TestEnv::new();
    // Build the image first so the spawns below are quick and the signal lands mid-way.
    env.agent(&["image", "build"]).ok();
    let mut interrupted = 0;
    for (i, delay_ms) in [50u64, 150, 300, 450, 600, 800, 1100, 1500, 3000]
        .into_iter()
        .enumerate()
    {
        let name = format!("int{i}");
        let child = env
            .agent_command(&["spawn", "--name", &name, "-m", "x", "--", "sleep", "300"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let out = child.wait_with_output().unwrap();
        let refs = env.task_refs(&name);
        let (containers, volumes, networks) = env.runtime_objects();
        let mine = |v: &Vec<String>| v.iter().any(|n| n.contains(&format!("-{name}")));
        match out.status.code() {
            Some(0) => {
                assert!(refs.contains_key("state") && refs.contains_key("base"));
                let st: serde_json::Value =
                    serde_json::from_str(&env.agent(&["status", &name, "--json"]).ok().stdout)
                        .unwrap();
                assert_eq!(st["status"], "running");
            }
            code => {
                interrupted += 1;
                assert!(
                    refs.is_empty(),
                    "delay {delay_ms}ms exit {code:?}: refs left {refs:?}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    !mine(&containers) && !mine(&volumes) && !mine(&networks),
                    "delay {delay_ms}ms: orphans {containers:?} {volumes:?} {networks:?}"
                );
            }
        }
    }
    eprintln!("interrupted {interrupted} of 9 spawns");
}
