//! The queue: `add`, `serve` with workers, `wait`, `--after` chains, and attacks on the
//! registry of repositories (real engine, exec agents).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestEnv;
use crate::require_docker;

/// `git agent add` of an exec task running `script`, in `dir` (the env's repository by
/// default). Returns the task's name.
pub(crate) fn add(env: &TestEnv, dir: &Path, name: &str, script: &str, extra: &[&str]) -> String {
    let mut args = vec!["add", "--name", name, "--network", "none", "-m", "x"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    let run = env
        .agent_with(&args, |c| {
            c.current_dir(dir);
        })
        .ok();
    assert_eq!(run.stdout.trim(), name, "{run}");
    name.to_string()
}

/// A second repository in the same HOME (so the same registry).
pub(crate) fn second_repo(env: &TestEnv) -> PathBuf {
    let dir = env.home.path().join("second repo");
    std::fs::create_dir_all(&dir).unwrap();
    let git = |args: &[&str]| {
        let r = Command::new("git")
            .current_dir(&dir)
            .env("HOME", env.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(args)
            .output()
            .unwrap();
        assert!(r.status.success(), "{r:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(dir.join("f.txt"), "x\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    dir
}

/// `serve` in the background.
fn serve(env: &TestEnv, args: &[&str]) -> std::process::Child {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    env.agent_command(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child, within: Duration) -> (i32, String) {
    let start = Instant::now();
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve did not finish in {within:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn record(env: &TestEnv, dir: &Path, task: &str) -> serde_json::Value {
    let run = env
        .agent_with(&["status", "--json", task], |c| {
            c.current_dir(dir);
        })
        .ok();
    serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()
}

fn state_messages(env: &TestEnv, dir: &Path, task: &str) -> Vec<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .env("HOME", env.home.path())
        .args(["log", "--format=%s", &format!("refs/agent/{task}/state")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn purge_all(env: &TestEnv, dir: &Path, tasks: &[String]) {
    let _ = tasks;
    // The other repository's engine objects (TestEnv's own cleanup covers its repository).
    let git = git_agent::git::Git::discover(dir).unwrap();
    let filter = format!(
        "label=git-agent.repo={}",
        git_agent::sandbox::RepoId::of(&git).id
    );
    let _ = env;
    for (list, rm) in [
        (vec!["ps", "-aq"], vec!["rm", "-f"]),
        (vec!["volume", "ls", "-q"], vec!["volume", "rm", "-f"]),
        (vec!["network", "ls", "-q"], vec!["network", "rm"]),
    ] {
        let out = Command::new("docker")
            .args(&list)
            .args(["--filter", &filter])
            .output()
            .unwrap();
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("docker").args(&rm).arg(id).output();
        }
    }
}

#[test]
fn two_workers_drain_six_tasks_from_two_repositories_two_at_a_time() {
    require_docker!();
    let env = TestEnv::new();
    let other = second_repo(&env);
    let mut here = Vec::new();
    let mut there = Vec::new();
    for i in 0..3 {
        here.push(add(&env, &env.repo, &format!("a{i}"), "sleep 2", &[]));
        there.push(add(&env, &other, &format!("b{i}"), "sleep 2", &[]));
    }
    // Queued, with their places.
    let list = env.json(&["list", "--json"])["tasks"].clone();
    let positions: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["task"].as_str().unwrap().to_string(),
                r["queue_position"].clone(),
            )
        })
        .collect();
    // Newest first, as list sorts, even within one second of the clock.
    assert_eq!(
        positions,
        [
            ("a2".to_string(), serde_json::json!(3)),
            ("a1".to_string(), serde_json::json!(2)),
            ("a0".to_string(), serde_json::json!(1)),
        ]
    );
    let text = env.agent(&["list"]).ok();
    assert!(text.stdout.contains("queued #2"), "{text}");

    let containers: Vec<String> = here
        .iter()
        .map(|t| env.container_of(t))
        .chain(there.iter().map(|t| {
            let git = git_agent::git::Git::discover(&other).unwrap();
            git_agent::sandbox::RepoId::of(&git)
                .object_names(t)
                .container
        }))
        .collect();
    let server = serve(&env, &["--workers", "2", "--once"]);
    let mut most = 0;
    let start = Instant::now();
    let mut server = Some(server);
    let mut result = None;
    while start.elapsed() < Duration::from_secs(80) {
        let out = Command::new("docker")
            .args(["ps", "--format", "{{.Names}}"])
            .output()
            .unwrap();
        let running = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|n| containers.iter().any(|c| c == n))
            .count();
        most = most.max(running);
        if let Some(status) = server.as_mut().unwrap().try_wait().unwrap() {
            let out = server.take().unwrap().wait_with_output().unwrap();
            result = Some((
                status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let (code, stderr) = result.expect("serve --once finished");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(most <= 2, "{most} tasks ran at once:\n{stderr}");
    assert!(most >= 1, "no task was seen running:\n{stderr}");
    for t in &here {
        let r = record(&env, &env.repo, t);
        assert_eq!(
            (r["status"].as_str(), r["exit_code"].as_i64()),
            (Some("exited"), Some(0)),
            "{t}: {r}"
        );
    }
    for t in &there {
        let r = record(&env, &other, t);
        assert_eq!(r["status"].as_str(), Some("exited"), "{t}: {r}");
    }
    assert!(stderr.contains("0 task(s) still queued"), "{stderr}");
    purge_all(&env, &other, &there);
}

#[test]
fn two_servers_run_each_task_once_and_a_dead_claim_is_run_again() {
    require_docker!();
    let env = TestEnv::new();
    let tasks: Vec<String> = (0..3)
        .map(|i| add(&env, &env.repo, &format!("t{i}"), "sleep 1", &[]))
        .collect();
    // A worker killed right after its claim leaves a claim nobody holds.
    let dead = add(&env, &env.repo, "dead", "true", &[]);
    env.agent_crash_at("queue.after-claim", &["run-queued", &dead]);
    let r = env.json(&["list", "--json"])["tasks"].clone();
    let row = r
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task"] == "dead")
        .unwrap()
        .clone();
    assert_eq!(
        row["status"], "queued",
        "a dead claim shows as queued: {row}"
    );

    let one = serve(&env, &["--workers", "2", "--once"]);
    let two = serve(&env, &["--workers", "2", "--once"]);
    let (c1, e1) = finish(one, Duration::from_secs(80));
    let (c2, e2) = finish(two, Duration::from_secs(80));
    assert_eq!((c1, c2), (0, 0), "{e1}\n{e2}");
    for t in tasks.iter().chain([&dead]) {
        let r = record(&env, &env.repo, t);
        assert_eq!(r["status"].as_str(), Some("exited"), "{t}: {r}\n{e1}\n{e2}");
        let claims = state_messages(&env, &env.repo, t)
            .iter()
            .filter(|m| *m == "claim")
            .count();
        let expected = if *t == dead { 2 } else { 1 };
        assert_eq!(claims, expected, "{t} was claimed {claims} times");
        let starts = state_messages(&env, &env.repo, t)
            .iter()
            .filter(|m| *m == "start queued task")
            .count();
        assert_eq!(starts, 1, "{t} started {starts} times");
    }
}

#[test]
fn a_killed_server_leaves_its_running_task_to_run_once() {
    require_docker!();
    let env = TestEnv::new();
    let t = add(&env, &env.repo, "long", "sleep 3", &[]);
    let mut server = serve(&env, &["--workers", "1"]);
    let start = Instant::now();
    loop {
        let r = record(&env, &env.repo, &t);
        if r["status"] == "running" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "never ran: {r}");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let (code, stderr) = finish(serve(&env, &["--once"]), Duration::from_secs(40));
    assert_eq!(code, 0, "{stderr}");
    let run = env.agent(&["wait", &t]);
    assert_eq!(run.code, 0, "{run}");
    let starts = state_messages(&env, &env.repo, &t)
        .iter()
        .filter(|m| *m == "start queued task")
        .count();
    assert_eq!(starts, 1, "the running task was started again");
}

#[test]
fn after_chains_and_wait_exit_codes() {
    require_docker!();
    let env = TestEnv::new();
    let parent = add(
        &env,
        &env.repo,
        "parent",
        "echo p > p.txt && git add p.txt && git commit -qm p",
        &[],
    );
    let child = add(
        &env,
        &env.repo,
        "child",
        "test -f p.txt",
        &["--after", "parent"],
    );
    let bad = add(&env, &env.repo, "bad", "exit 3", &[]);
    let orphan = add(&env, &env.repo, "orphan", "true", &["--after", "bad"]);
    let cancelled = add(&env, &env.repo, "cancelled", "true", &[]);
    let stop = env.agent(&["stop", &cancelled]).ok();
    assert!(stop.stderr.contains("cancelled queued task"), "{stop}");

    let (code, stderr) = finish(serve(&env, &["--once"]), Duration::from_secs(80));
    assert_eq!(code, 0, "{stderr}");
    let ok = env.agent(&["wait", &parent, &child]);
    let child_log =
        std::fs::read_to_string(env.repo.join(format!(".git/git-agent/serve/{child}.log")))
            .unwrap_or_default();
    assert_eq!(
        ok.code, 0,
        "{ok}\n{stderr}\n--- child's worker log\n{child_log}"
    );
    let head = env.task_refs(&parent)["head"].clone();
    assert_eq!(
        env.task_refs(&child)["base"],
        head,
        "the child starts on its parent's work"
    );

    let failed = env.agent(&["wait", "--json", &parent, &bad, &orphan]);
    assert_eq!(failed.code, 1, "{failed}");
    assert!(
        failed.stderr.contains("task bad exited with status 3"),
        "{failed}"
    );
    assert!(
        failed.stderr.contains(
            "task orphan failed: not run: task 'bad' it starts after exited with status 3"
        ),
        "{failed}"
    );
    let r = record(&env, &env.repo, &cancelled);
    assert_eq!(r["status"], "stopped");
    // A queued task is purged without an engine object.
    let q = add(&env, &env.repo, "later", "true", &[]);
    env.agent(&["purge", "--force", "--refs", &q]).ok();
    assert!(env.task_refs(&q).is_empty());
}

#[test]
fn registry_entries_only_say_where_to_look() {
    let env = TestEnv::new();
    let registry = env.home.path().join(".local/state/git-agent/repos");
    std::fs::create_dir_all(&registry).unwrap();
    // Not a repository; a repository whose config would run a command if git-agent ran git
    // there beyond discovery; a path that does not exist.
    let plain = env.home.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let evil = env.home.path().join("evil");
    std::fs::create_dir_all(&evil).unwrap();
    let marker = env.home.path().join("pwned");
    let git = |dir: &Path, args: &[&str]| {
        Command::new("git")
            .current_dir(dir)
            .env("HOME", env.home.path())
            .args(args)
            .output()
            .unwrap()
    };
    git(&evil, &["init", "-q"]);
    for (k, v) in [
        ("core.fsmonitor", format!("touch {}", marker.display())),
        ("core.pager", format!("touch {}", marker.display())),
        ("core.hooksPath", "/nonexistent".to_string()),
    ] {
        git(&evil, &["config", k, &v]);
    }
    for (i, p) in [plain.as_path(), evil.as_path(), Path::new("/nonexistent/x")]
        .iter()
        .enumerate()
    {
        std::fs::write(
            registry.join(format!("{:032x}", i + 1)),
            p.as_os_str().as_encoded_bytes(),
        )
        .unwrap();
    }
    // A queued task whose record was edited to a status git-agent does not know.
    add(&env, &env.repo, "weird", "true", &[]);
    let script = r#"set -e
        t=$(git show refs/agent/weird/state:task.toml | sed 's/^status = "queued"/status = "bogus"/' | git hash-object -w --stdin)
        p=$(git show refs/agent/weird/state:prompt.md | git hash-object -w --stdin)
        tree=$(printf '100644 blob %s\tprompt.md\n100644 blob %s\ttask.toml\n' "$p" "$t" | git mktree)
        c=$(git commit-tree -p refs/agent/weird/state -m tamper "$tree")
        git update-ref refs/agent/weird/state "$c""#;
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(&env.repo)
        .env("HOME", env.home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (code, stderr) = finish(serve(&env, &["--once"]), Duration::from_secs(30));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !marker.exists(),
        "a command from a registered directory ran"
    );
    assert!(stderr.contains("not a git repository"), "{stderr}");
    assert!(stderr.contains("does not name this repository"), "{stderr}");
    assert!(stderr.contains("skipping task weird"), "{stderr}");
    // The entry of a path that is gone is forgotten; the others stay (and are skipped again).
    assert!(!registry.join(format!("{:032x}", 3)).exists(), "{stderr}");
    assert!(registry.join(format!("{:032x}", 1)).exists());
    assert!(registry.join(format!("{:032x}", 2)).exists());
    assert!(stderr.contains("0 task(s) still queued"), "{stderr}");
}

/// SIGTERM: the server stops claiming, says what it left, and exits 0; the task it started
/// runs on as an ordinary task, the others stay queued. `spawn --after` a task that has not
/// ended queues the new task for a server.
#[test]
fn a_stopped_server_says_what_it_left_and_spawn_after_a_running_task_queues() {
    require_docker!();
    let env = TestEnv::new();
    let long = add(&env, &env.repo, "long", "sleep 60", &[]);
    let next = add(&env, &env.repo, "next", "true", &[]);
    let server = serve(&env, &["--workers", "1"]);
    let start = Instant::now();
    while record(&env, &env.repo, &long)["status"] != "running" {
        assert!(start.elapsed() < Duration::from_secs(40), "never ran");
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: a signal to the server this test started.
    assert_eq!(unsafe { libc::kill(server.id() as i32, libc::SIGTERM) }, 0);
    let stopping = Instant::now();
    let (code, stderr) = finish(server, Duration::from_secs(30));
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the server waited for its task"
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("left running"), "{stderr}");
    assert!(stderr.contains("long"), "{stderr}");
    assert!(stderr.contains("1 task(s) still queued"), "{stderr}");
    assert_eq!(
        record(&env, &env.repo, &long)["status"],
        "running",
        "{stderr}"
    );
    assert_eq!(record(&env, &env.repo, &next)["status"], "queued");

    // The parent has not ended: the new task is queued for a server, not refused or run.
    let run = env
        .agent(&[
            "spawn",
            "--after",
            &long,
            "--name",
            "then",
            "--network",
            "none",
            "-m",
            "x",
            "--",
            "true",
        ])
        .ok();
    assert!(run.stderr.contains("queueing the task"), "{run}");
    let then = record(&env, &env.repo, "then");
    assert_eq!(then["status"], "queued", "{then}");
    env.agent(&["stop", &long]).ok();
}

#[test]
fn doctor_fix_releases_a_dead_claim_and_leaves_a_live_one() {
    require_docker!();
    let env = TestEnv::new();
    let git = git_agent::git::Git::discover(&env.repo).unwrap();
    // Whether the record as stored holds a claim (`status --json` shows a dead claim as
    // queued without recording it).
    let claimed = |task: &str| -> bool {
        let text = env
            .git(&["show", &format!("refs/agent/{task}/state:task.toml")])
            .ok()
            .stdout;
        let record: toml::Table = text.parse().expect("the record is TOML");
        record.contains_key("claim")
    };
    // Two workers killed right after their claims: both claims are left to nobody...
    let dead = add(&env, &env.repo, "dead", "echo ran > ran.txt", &[]);
    env.agent_crash_at("queue.after-claim", &["run-queued", &dead]);
    let live = add(&env, &env.repo, "live", "true", &[]);
    env.agent_crash_at("queue.after-claim", &["run-queued", &live]);
    assert!(claimed(&dead) && claimed(&live));
    // ...but this process holds the second one's lease, as a worker still starting it does.
    let lease = git_agent::task::lock::Lease::take(&git, &live).unwrap();

    let fix = env.agent(&["doctor", "--fix"]);
    assert!(!claimed(&dead), "the dead claim stayed:\n{fix}");
    assert!(
        state_messages(&env, &env.repo, &dead)
            .first()
            .is_some_and(|m| m == "requeue: its claimer died"),
        "{:?}",
        state_messages(&env, &env.repo, &dead)
    );
    assert!(
        claimed(&live),
        "doctor --fix took a live worker's claim:\n{fix}"
    );
    assert_eq!(
        state_messages(&env, &env.repo, &live)
            .iter()
            .filter(|m| m.starts_with("requeue"))
            .count(),
        0
    );

    // The next server runs the released task (and not the one a live worker holds).
    let (code, stderr) = finish(serve(&env, &["--once"]), Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let r = record(&env, &env.repo, &dead);
    assert_eq!(r["status"], "exited", "{r}\n{stderr}");
    assert_eq!(r["exit_code"], 0, "{r}");
    let starts = |t: &str| {
        state_messages(&env, &env.repo, t)
            .iter()
            .filter(|m| *m == "start queued task")
            .count()
    };
    assert_eq!(starts(&dead), 1);
    assert_eq!(starts(&live), 0, "a task whose claimer lives was run again");
    drop(lease);
}
