//! Live work: a running task is followed by a background git-agent process that brings its
//! work home by itself (see `git_agent::ops::follow`). The test harness switches following
//! off (`agent.follow=false` in the test HOME); these tests switch it on for their repository.
//!
//! No follower outlives its test: each test waits for its followers to end, and a follower
//! whose repository is gone ends by itself.

use std::time::{Duration, Instant};

use crate::common::TestEnv;
use crate::require_docker;
use crate::sync_races::{BUSY_AGENT, check_snapshot};

fn follow_on(env: &TestEnv) {
    env.git(&["config", "agent.follow", "true"]).ok();
    env.git(&["config", "agent.followInterval", "1s"]).ok();
}

fn git(env: &TestEnv) -> git_agent::git::Git {
    git_agent::git::Git::discover(&env.repo).unwrap()
}

/// The pid of the live follower of `task`, if one follows it.
fn follower(env: &TestEnv, task: &str) -> Option<i32> {
    let git = git(env);
    if !git_agent::task::lock::Follower::held(&git, task).unwrap() {
        return None;
    }
    let stamp = std::fs::read_to_string(
        git.common_dir
            .join(format!("git-agent/locks/{task}.follow")),
    )
    .unwrap();
    stamp.split_whitespace().next()?.parse().ok()
}

/// Is process `pid` alive (not a zombie)?
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[track_caller]
fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs}s");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn row(env: &TestEnv, task: &str) -> serde_json::Value {
    let list = env.json(&["list", "--json"])["tasks"].clone();
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["task"] == task)
        .cloned()
        .unwrap_or_else(|| panic!("{task} not listed: {list}"))
}

fn task_ref(env: &TestEnv, task: &str, leaf: &str) -> Option<String> {
    env.task_refs(task).get(leaf).cloned()
}

fn files_at(env: &TestEnv, rev: &str) -> String {
    env.git(&["ls-tree", "-r", "--name-only", rev]).ok().stdout
}

fn log_of(env: &TestEnv, task: &str) -> Vec<u8> {
    std::fs::read(
        git(env)
            .common_dir
            .join(format!("git-agent/follow/{task}.log")),
    )
    .unwrap_or_default()
}

const SLOW_AGENT: &str = r#"sleep 2
echo one > one.txt && git add one.txt && git commit -qm one
sleep 2
echo two > two.txt
while [ ! -e /tmp/stop ]; do sleep 0.2; done
echo three > three.txt"#;

#[test]
fn a_running_task_s_work_comes_home_by_itself_and_following_ends_with_the_run() {
    require_docker!();
    let env = TestEnv::new();
    follow_on(&env);
    env.agent(&[
        "spawn", "--name", "live", "-m", "x", "--", "sh", "-c", SLOW_AGENT,
    ])
    .ok();
    wait_for("a follower", 15, || follower(&env, "live").is_some());
    assert_eq!(env.json(&["status", "live", "--json"])["following"], true);
    assert!(
        env.agent(&["status", "live"])
            .ok()
            .stdout
            .contains("follow:    active"),
    );

    // The commit comes home without any sync, and `list` shows it.
    wait_for("the agent's commit in list", 30, || {
        row(&env, "live")["files_changed"].as_u64() >= Some(1)
    });
    let head = task_ref(&env, "live", "head").expect("head synced");
    assert_eq!(
        env.git(&["log", "-1", "--format=%s", &head])
            .ok()
            .stdout
            .trim(),
        "one"
    );
    // Then the uncommitted file.
    wait_for("the uncommitted file in list", 30, || {
        row(&env, "live")["uncommitted"] == true
    });
    let wip = task_ref(&env, "live", "wip").expect("wip synced");
    assert!(files_at(&env, &wip).contains("two.txt"));

    // The run ends: the follower syncs one last time (the file written on the way out) and
    // ends with it.
    env.docker_exec("live", "touch /tmp/stop").ok();
    wait_for("the follower to end with the run", 45, || {
        follower(&env, "live").is_none()
    });
    let wip = task_ref(&env, "live", "wip").expect("wip synced");
    assert!(
        files_at(&env, &wip).contains("three.txt"),
        "the last sync missed the last file"
    );
    assert!(env.json(&["status", "live", "--json"])["following"].is_null());
    let sync = env.agent(&["sync", "live"]).ok();
    assert!(sync.stderr.contains("nothing new"), "{sync}");
    let log = String::from_utf8_lossy(&log_of(&env, "live")).to_string();
    assert!(log.contains("synced 1 new commit"), "{log}");
    assert!(log.contains("its run ended"), "{log}");

    // `rm` leaves no follower behind (none is started for a task without a container).
    env.agent(&["rm", "live"]).ok();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(follower(&env, "live"), None);
}

#[test]
fn a_killed_follower_leaves_the_task_consistent_and_a_task_has_one_follower_at_most() {
    require_docker!();
    let env = TestEnv::new();
    follow_on(&env);
    env.agent(&[
        "spawn", "--name", "busy", "-m", "x", "--", "sh", "-c", BUSY_AGENT,
    ])
    .ok();
    wait_for("a follower", 15, || follower(&env, "busy").is_some());
    let first = follower(&env, "busy").unwrap();

    // A second follower exits at once; `sync --follow` starts none.
    let t = Instant::now();
    let second = env
        .agent_command(&["sync", "--follow-here", "busy"])
        .output()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another follower"));
    let again = env.agent(&["sync", "--follow", "busy"]).ok();
    assert!(again.stdout.contains("followed already"), "{again}");
    assert_eq!(follower(&env, "busy"), Some(first));

    // kill -9 while it syncs (the agent commits every few tenths of a second, so the follower
    // is in a sync most of the time), a few times over.
    wait_for("work synced", 30, || {
        task_ref(&env, "busy", "head").is_some()
    });
    for round in 0..3u64 {
        let pid = follower(&env, "busy").expect("a follower");
        std::thread::sleep(Duration::from_millis(300 + 400 * round));
        // SAFETY: a signal to a process this test's repository started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        wait_for("the follower to die", 10, || !alive(pid));
        assert_eq!(env.json(&["status", "busy", "--json"])["following"], false);
        let status = env.agent(&["status", "busy"]).ok().stdout;
        assert!(status.contains("git agent sync --follow busy"), "{status}");
        // The next manual sync works and brings a consistent snapshot.
        let sync = env.agent(&["sync", "busy"]);
        assert_eq!(
            sync.code, 0,
            "a sync after a killed follower failed:\n{sync}"
        );
        let head = task_ref(&env, "busy", "head").unwrap();
        check_snapshot(&env, &head, task_ref(&env, "busy", "wip").as_deref());
        // Followed again with one command: `sync --follow`, or `doctor --fix`, which reports
        // the task as unfollowed first.
        if round < 2 {
            let started = env.agent(&["sync", "--follow", "busy"]).ok();
            assert!(started.stdout.contains("following task busy"), "{started}");
        } else {
            let doctor = env.agent(&["doctor"]);
            assert!(
                doctor.stdout.contains("task busy runs without a follower"),
                "{doctor}"
            );
            let fixed = env.agent(&["doctor", "--fix"]);
            assert!(fixed.stdout.contains("started one"), "{fixed}");
        }
        wait_for("a new follower", 15, || follower(&env, "busy").is_some());
    }
    let head = task_ref(&env, "busy", "head").unwrap();
    wait_for("the follower to keep syncing", 30, || {
        task_ref(&env, "busy", "head").as_deref() != Some(head.as_str())
    });

    // Purge: the follower ends.
    let pid = follower(&env, "busy").unwrap();
    env.agent(&["purge", "busy"]).ok();
    wait_for("the follower to end after purge", 15, || !alive(pid));
    assert_eq!(follower(&env, "busy"), None);
}

/// A helper that prints what it likes for `fingerprint` and is the real one otherwise.
const TAMPERED_HELPER: &str = r#"set -e
mv /usr/local/bin/git-agent-sandbox /usr/local/bin/git-agent-sandbox.real
cat > /usr/local/bin/git-agent-sandbox <<'EOF'
#!/bin/sh
if [ "$1" = fingerprint ]; then
  if [ -e /tmp/huge ]; then head -c 50000000 /dev/zero | tr '\0' 'A'; exit 0; fi
  printf 'git-agent-fingerprint 1 \033]0;pwned\007\033[2J 1\n'
  exit 0
fi
exec /usr/local/bin/git-agent-sandbox.real "$@"
EOF
chmod 755 /usr/local/bin/git-agent-sandbox"#;

const STEADY_AGENT: &str = r#"i=0
while [ ! -e /tmp/stop ]; do
  i=$((i + 1))
  if [ $((i % 10)) = 0 ]; then echo "$i" > "f$i" && git add "f$i" && git commit -qm "c$i"; fi
  sleep 0.2
done"#;

#[test]
fn a_hostile_fingerprint_does_not_hurt_the_host_and_a_follower_ends_with_its_repository() {
    require_docker!();
    let env = TestEnv::new();
    follow_on(&env);
    env.agent(&[
        "spawn",
        "--name",
        "fp",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        STEADY_AGENT,
    ])
    .ok();
    let c = env.container_of("fp");
    let root = std::process::Command::new("docker")
        .args(["exec", "-u", "0", &c, "sh", "-c", TAMPERED_HELPER])
        .output()
        .unwrap();
    assert!(root.status.success(), "{root:?}");
    let pid = {
        wait_for("a follower", 15, || follower(&env, "fp").is_some());
        follower(&env, "fp").unwrap()
    };
    // Control bytes, then a flood: the work still comes home (the follower syncs every round
    // when it cannot read a fingerprint) and nothing of it reaches the log.
    for step in ["true", "touch /tmp/huge"] {
        env.docker_exec("fp", step).ok();
        let head = task_ref(&env, "fp", "head");
        wait_for("work to come home", 30, || {
            let now = task_ref(&env, "fp", "head");
            now.is_some() && now != head
        });
        assert!(alive(pid), "the follower died");
    }
    let log = log_of(&env, "fp");
    assert!(!log.contains(&0x1b), "control bytes reached the log");
    let text = String::from_utf8_lossy(&log);
    assert!(!text.contains("pwned") && !text.contains("AAAA"), "{text}");
    let head = task_ref(&env, "fp", "head").unwrap();
    check_commits(&env, &head);

    // The repository goes away: the follower ends by itself.
    let dot_git = env.repo.join(".git");
    let moved = env.repo.join("gone.git");
    std::fs::rename(&dot_git, &moved).unwrap();
    let ended = Instant::now() + Duration::from_secs(15);
    while alive(pid) && Instant::now() < ended {
        std::thread::sleep(Duration::from_millis(250));
    }
    std::fs::rename(&moved, &dot_git).unwrap();
    assert!(!alive(pid), "the follower outlived its repository");
    env.docker_exec("fp", "touch /tmp/stop").ok();
}

/// Every commit of the steady agent's work is whole: `c<n>` holds f10..f<n>.
fn check_commits(env: &TestEnv, head: &str) {
    let subject = env.git(&["log", "-1", "--format=%s", head]).ok().stdout;
    let n: u32 = subject.trim().trim_start_matches('c').parse().unwrap();
    let files = files_at(env, head);
    for i in (10..=n).step_by(10) {
        assert!(
            files.lines().any(|f| f == format!("f{i}")),
            "c{n} lacks f{i}"
        );
    }
}

#[test]
fn following_off_starts_no_follower_and_sync_follow_starts_one_that_rm_ends() {
    require_docker!();
    let env = TestEnv::new();
    // The harness's default: agent.follow=false.
    env.agent(&[
        "spawn",
        "--name",
        "quiet",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "sleep 2; echo a > a.txt; exec sleep 600",
    ])
    .ok();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(follower(&env, "quiet"), None, "spawn started a follower");
    assert_eq!(
        task_ref(&env, "quiet", "wip"),
        None,
        "work came home unasked"
    );
    assert_eq!(env.json(&["status", "quiet", "--json"])["following"], false);
    let status = env.agent(&["status", "quiet"]).ok().stdout;
    assert!(
        status.contains("follow:    off (agent.follow=false"),
        "{status}"
    );
    let refused = env.agent(&["sync", "--follow", "quiet"]).fails();
    assert!(
        refused
            .stderr
            .contains("Hint: switch it on with `git config agent.follow true`"),
        "{refused}"
    );

    env.git(&["config", "agent.follow", "true"]).ok();
    env.git(&["config", "agent.followInterval", "500ms"]).ok();
    let started = env.agent(&["sync", "--follow", "quiet"]).ok();
    assert!(started.stdout.contains("following task quiet"), "{started}");
    wait_for("a follower", 15, || follower(&env, "quiet").is_some());
    wait_for("the uncommitted file", 30, || {
        task_ref(&env, "quiet", "wip").is_some_and(|w| files_at(&env, &w).contains("a.txt"))
    });
    let pid = follower(&env, "quiet").unwrap();
    env.agent(&["rm", "quiet"]).ok();
    wait_for("the follower to end after rm", 15, || !alive(pid));
    assert_eq!(follower(&env, "quiet"), None);
}
