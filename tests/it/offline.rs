//! When the container engine cannot be reached, read-only commands still work from the refs
//! and say the runtime status is unknown, commands that need the engine fail with a hint and
//! change nothing; when it answers, `list` and `status` say what is wrong with a task's
//! gateway, network or workspace. And Ctrl-C ends `logs -f` with 130.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Run, TestEnv};
use crate::require_docker;

/// `git agent <args>` with `DOCKER_HOST` pointing at `host`.
fn offline(env: &TestEnv, host: &str, args: &[&str]) -> Run {
    env.agent_with(args, |c| {
        c.env("DOCKER_HOST", host);
    })
}

const REFUSED: &str = "tcp://127.0.0.1:1";

/// Wait until the engine says container `name` has exited (without asking git-agent, which
/// would bring the task's record up to date).
fn wait_exited(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("docker")
            .args(["inspect", "-f", "{{.State.Status}}", name])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() == "exited" {
            return;
        }
        assert!(Instant::now() < deadline, "{name} did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn line_of<'a>(list: &'a str, name: &str) -> &'a str {
    list.lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("{name} in\n{list}"))
}

#[test]
fn read_only_commands_work_without_the_engine() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "done",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo kept-output; echo work > work.txt",
    ])
    .ok();
    env.agent(&["sync", "done"]).ok();
    // Ends while nobody looks: its record still says running.
    env.agent(&[
        "spawn",
        "--name",
        "quick",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo bye; exit 4",
    ])
    .ok();
    wait_exited(&env.container_of("quick"));
    let before = env.snapshot();
    let refs_before = (env.task_refs("done"), env.task_refs("quick"));

    for host in [REFUSED, "unix:///nonexistent/docker.sock"] {
        let list = offline(&env, host, &["list"]).ok();
        let unknown: Vec<&str> = list
            .stderr
            .lines()
            .filter(|l| l.contains("cannot reach the container engine"))
            .collect();
        assert_eq!(unknown.len(), 1, "{list}");
        assert!(unknown[0].ends_with("runtime status unknown"), "{list}");
        assert!(unknown[0].contains(host), "{list}");
        // Not `running` as if it knew; a finished task's status is final and shown as is.
        assert!(
            line_of(&list.stdout, "quick").contains("running?"),
            "{list}"
        );
        assert!(
            line_of(&list.stdout, "done").contains("exited (0)"),
            "{list}"
        );
    }
    let json = offline(&env, REFUSED, &["list", "--json"]).ok();
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    for row in rows["tasks"].as_array().unwrap() {
        assert_eq!(row["status_checked"], false, "{json}");
    }

    let st = offline(&env, REFUSED, &["status", "quick"]).ok();
    assert!(st.stdout.contains("status:    running?"), "{st}");
    assert!(st.stdout.contains("runtime:   unknown"), "{st}");
    assert!(st.stderr.contains("runtime status unknown"), "{st}");
    let st = offline(&env, REFUSED, &["status", "quick", "--json"]).ok();
    assert!(st.stdout.contains("\"status_checked\": false"), "{st}");

    for args in [&["review", "done"][..], &["review", "--no-sync", "done"]] {
        let review = offline(&env, REFUSED, args).ok();
        assert!(review.stdout.contains("work.txt"), "{review}");
        assert!(review.stderr.contains("runtime status unknown"), "{review}");
    }
    let review = offline(&env, REFUSED, &["review", "quick"]).ok();
    assert!(review.stdout.contains("running?"), "{review}");

    let logs = offline(&env, REFUSED, &["logs", "done"]).ok();
    assert_eq!(logs.stdout, "kept-output\n", "{logs}");
    assert!(logs.stderr.contains("runtime status unknown"), "{logs}");
    // No transcript is kept while the task runs: a clear error, not an empty one.
    let logs = offline(&env, REFUSED, &["logs", "quick"]).fails();
    assert!(logs.stderr.contains("DOCKER_HOST"), "{logs}");

    // Commands that need the engine say how to reach one, and change nothing.
    for args in [
        &["spawn", "--name", "new", "-m", "x", "--", "true"][..],
        &["sync", "quick"],
        &["stop", "quick"],
        &["restart", "quick"],
        &["allow", "quick", "example.com"],
        &["shell", "quick"],
        &["rm", "quick"],
        &["purge", "--refs", "quick"],
    ] {
        let run = offline(&env, REFUSED, args).fails();
        assert!(
            run.stderr.contains("cannot reach the container engine"),
            "{args:?}: {run}"
        );
        assert!(run.stderr.contains("DOCKER_HOST"), "{args:?}: {run}");
    }
    assert_eq!(before, env.snapshot());
    assert_eq!(refs_before, (env.task_refs("done"), env.task_refs("quick")));
    assert!(env.task_refs("new").is_empty());

    // An engine that accepts connections but never answers must not hold `list`.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("tcp://{}", silent.local_addr().unwrap());
    let mut child = env
        .agent_command(&["list"])
        .env("DOCKER_HOST", &host)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    assert!(
        status.is_some_and(|s| s.success()) && took < Duration::from_secs(15),
        "list against a silent engine: {status:?} after {took:?}"
    );
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(line_of(&out, "quick").contains("running?"), "{out}");
    drop(silent);

    // With the engine back the truth is checked and recorded.
    let list = env.agent(&["list"]).ok();
    assert!(
        line_of(&list.stdout, "quick").contains("exited (4)"),
        "{list}"
    );
    assert!(!list.stderr.contains("runtime status unknown"), "{list}");
    let json = env.json(&["list", "--json"])["tasks"].clone();
    assert_eq!(json[0]["status_checked"], true);
    for t in ["done", "quick"] {
        env.agent(&["purge", "--refs", t]).ok();
    }
}

/// Disconnect every container from a network and remove it.
fn remove_network(name: &str) {
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}} {{end}}",
            name,
        ])
        .output()
        .unwrap();
    for c in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        Command::new("docker")
            .args(["network", "disconnect", "-f", name, c])
            .output()
            .unwrap();
    }
    let rm = Command::new("docker")
        .args(["network", "rm", name])
        .output()
        .unwrap();
    assert!(rm.status.success(), "{rm:?}");
}

#[test]
fn list_and_status_report_a_dead_gateway_and_a_missing_network() {
    require_docker!();
    let env = TestEnv::new();
    for t in ["gwdead", "netgone", "fine"] {
        env.agent(&["spawn", "--name", t, "-m", "x", "--", "sleep", "300"])
            .ok();
    }
    let killed = Command::new("docker")
        .args(["kill", &env.names_of("gwdead").gateway])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");
    remove_network(&env.network_of("netgone").unwrap());

    let list = env.agent(&["list"]).ok().stdout;
    assert!(
        line_of(&list, "gwdead").contains("running (gateway down)"),
        "{list}"
    );
    assert!(
        line_of(&list, "netgone").contains("running (network missing)"),
        "{list}"
    );
    assert!(line_of(&list, "fine").contains("running "), "{list}");
    assert!(!line_of(&list, "fine").contains('('), "{list}");
    let json = env.json(&["list", "--json"])["tasks"].clone();
    let problems = |name: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|r| r["task"] == name)
            .unwrap()["problems"]
            .clone()
    };
    assert_eq!(problems("gwdead"), serde_json::json!(["gateway down"]));
    assert_eq!(problems("netgone"), serde_json::json!(["network missing"]));
    assert_eq!(problems("fine"), serde_json::json!([]));

    let st = env.agent(&["status", "gwdead"]).ok().stdout;
    assert!(
        st.contains("problem:   gateway down; fix: `git agent restart gwdead`"),
        "{st}"
    );
    let st = env.json(&["status", "netgone", "--json"]);
    assert_eq!(st["problems"][0]["problem"], "network missing");
    assert!(
        st["problems"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("git agent restart netgone"),
        "{st}"
    );
    assert_eq!(st["status_checked"], true);
    let st = env.agent(&["status", "fine"]).ok().stdout;
    assert!(!st.contains("problem:"), "{st}");

    // A lost workspace is a problem whatever the task's state.
    env.agent(&["rm", "fine"]).ok();
    let volume = env.names_of("fine").volume;
    let gone = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker ps -aq --filter volume={volume} | xargs -r docker rm -f >/dev/null; docker volume rm {volume}"
        ))
        .output()
        .unwrap();
    assert!(gone.status.success(), "{gone:?}");
    let list = env.agent(&["list"]).ok().stdout;
    assert!(
        line_of(&list, "fine").contains("workspace volume missing"),
        "{list}"
    );
    let st = env.agent(&["status", "fine"]).ok().stdout;
    assert!(
        st.contains("problem:   workspace volume missing; fix: `git agent restart --reseed fine`"),
        "{st}"
    );

    // The fix named is the fix: after it the task is reported healthy.
    env.agent(&["restart", "gwdead"]).ok();
    let list = env.agent(&["list"]).ok().stdout;
    assert!(!line_of(&list, "gwdead").contains("gateway down"), "{list}");
    for t in ["gwdead", "netgone", "fine"] {
        env.agent(&["purge", "--refs", t]).ok();
    }
}

#[test]
fn logs_follow_exits_130_on_ctrl_c() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "chatty",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo first; sleep 300",
    ])
    .ok();
    let mut child = env
        .agent_command(&["logs", "-f", "chatty"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];
    while !String::from_utf8_lossy(&seen).contains("first\n") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "logs -f ended before the first line");
        seen.extend_from_slice(&buf[..n]);
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("logs -f still running 20s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    env.agent(&["purge", "--refs", "chatty"]).ok();
}
