//! Sharing tasks through a remote with plain git: pushed from one clone with the refspecs
//! `git agent share` prints, fetched into another under `refs/agent-remotes/<remote>/`,
//! listed there without runtime state, reviewed and promoted as the second clone's user; and
//! fetched records as the hostile input they are.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::TestEnv;
use crate::require_docker;

/// `git <args>` in `dir` with `input` on stdin, as the test's user; must succeed.
fn git_in(env: &TestEnv, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("git")
        .current_dir(&env.repo)
        .env("HOME", env.home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A state commit holding `toml` as task.toml and `prompt` as prompt.md (as a stranger
/// could push one).
fn state_commit(env: &TestEnv, toml: &str, prompt: &[u8]) -> String {
    let record = git_in(env, &["hash-object", "-w", "--stdin"], toml.as_bytes());
    let prompt = git_in(env, &["hash-object", "-w", "--stdin"], prompt);
    let tree = git_in(
        env,
        &["mktree"],
        format!("100644 blob {prompt}\tprompt.md\n100644 blob {record}\ttask.toml\n").as_bytes(),
    );
    git_in(env, &["commit-tree", &tree, "-m", "forged"], b"")
}

/// A plausible record of a finished exec task on `base`.
fn record(name: &str, base: &str, container: &str) -> String {
    format!(
        "schema = 1\nname = \"{name}\"\nagent = \"exec\"\ncommand = [\"true\"]\nbase = \"{base}\"\ndirty = false\nstatus = \"exited\"\nexit_code = 0\ncreated = 0\n[sandbox]\nimage = \"i\"\nimage_id = \"x\"\ncontainer = \"{container}\"\nvolume = \"{container}\"\n"
    )
}

/// Point `refs/agent-remotes/<path>/{state,base}` at `state` and `base`, in one transaction
/// per batch (as a fetch does).
fn put_fetched(env: &TestEnv, paths: &[String], state: &str, base: &str) {
    let mut input = String::new();
    for p in paths {
        input += &format!("update refs/agent-remotes/{p}/state {state}\n");
        input += &format!("update refs/agent-remotes/{p}/base {base}\n");
    }
    git_in(env, &["update-ref", "--stdin"], input.as_bytes());
}

fn docker_has(container: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "--format", "{{.Id}}", container])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A clone of `remote` as a second user, with the fetch refspecs `git agent share` prints.
fn second_clone(remote: &Path) -> TestEnv {
    let b = TestEnv::new();
    std::fs::remove_dir_all(&b.repo).unwrap();
    let parent = b.repo.parent().unwrap().to_path_buf();
    Command::new("git")
        .current_dir(&parent)
        .env("HOME", b.home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["clone", "-q"])
        .arg(remote)
        .arg(&b.repo)
        .status()
        .unwrap()
        .success()
        .then_some(())
        .expect("git clone");
    b.git(&["config", "user.name", "Bea Reviewer"]).ok();
    b.git(&["config", "user.email", "bea@example.com"]).ok();
    b
}

/// Add the fetch refspecs `git agent share origin` prints (its `git config` lines).
fn configure_fetch(env: &TestEnv) {
    let printed = env.agent(&["share", "origin"]).ok().stdout;
    let mut n = 0;
    for line in printed.lines() {
        if let Some(spec) = line
            .strip_prefix("git config --add remote.origin.fetch '")
            .and_then(|s| s.strip_suffix('\''))
        {
            env.git(&["config", "--add", "remote.origin.fetch", spec])
                .ok();
            n += 1;
        }
    }
    assert_eq!(n, 2, "{printed}");
}

#[test]
fn a_task_shared_through_a_bare_remote_is_reviewed_and_promoted_in_another_clone() {
    require_docker!();
    // Clone A runs a task, promotes it, and pushes it with plain git.
    let a = TestEnv::new();
    a.finished_task("fix-1", "fix.txt");
    a.agent(&["commit", "fix-1"]).ok();
    let remote = a.home.path().join("remote.git");
    Command::new("git")
        .args(["init", "-q", "--bare", "--initial-branch=main"])
        .arg(&remote)
        .output()
        .unwrap();
    a.git(&["remote", "add", "origin", remote.to_str().unwrap()])
        .ok();
    a.git(&["push", "-q", "origin", "main"]).ok();
    let printed = a.agent(&["share", "origin"]).ok().stdout;
    assert!(
        printed.contains(
            "git push origin 'refs/agent/*:refs/agent/*' 'refs/notes/agent:refs/notes/agent'"
        ),
        "{printed}"
    );
    a.git(&[
        "push",
        "-q",
        "origin",
        "refs/agent/*:refs/agent/*",
        "refs/notes/agent:refs/notes/agent",
    ])
    .ok();
    let a_container = a.container_of("fix-1");

    // Clone B has a task of the same name of its own, then fetches A's.
    let b = second_clone(&remote);
    b.finished_task("fix-1", "mine.txt");
    let own = b.task_refs("fix-1");
    configure_fetch(&b);
    b.git(&["fetch", "-q", "origin"]).ok();
    assert_eq!(b.task_refs("fix-1"), own, "a fetch moved B's own task");
    assert!(
        b.git(&[
            "rev-parse",
            "--verify",
            "-q",
            "refs/notes/agent-remotes/origin"
        ])
        .code
            == 0
    );

    // list: both, the fetched one marked, without runtime state.
    let rows = b.json(&["list", "--json"])["tasks"].clone();
    let rows = rows.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["task"].as_str().unwrap()).collect();
    assert_eq!(names, ["fix-1", "origin/fix-1"]);
    let fetched = &rows[1];
    assert_eq!(fetched["fetched_from"], "origin");
    assert_eq!(fetched["status"], "exited");
    assert_eq!(fetched["problems"].as_array().unwrap().len(), 0);
    assert_eq!(fetched["files_changed"], 1);
    assert_eq!(rows[0]["fetched_from"], serde_json::Value::Null);
    let list = b.agent(&["list"]).ok();
    assert!(list.stdout.contains("fetched from origin"), "{list}");
    assert!(!list.stderr.contains("warning"), "{list}");
    let status = b.agent(&["status", "origin/fix-1"]).ok();
    assert!(status.stdout.contains("fetched from origin"), "{status}");
    let doctor = b.agent(&["doctor"]);
    assert!(!doctor.stdout.contains("origin/fix-1"), "{doctor}");
    assert!(!doctor.stderr.contains("origin/fix-1"), "{doctor}");

    // review shows A's work; commit promotes it as B, with B's provenance notes.
    let review = b.agent(&["review", "origin/fix-1"]).ok();
    assert!(review.stdout.contains("fix.txt"), "{review}");
    b.agent(&["commit", "origin/fix-1"]).ok();
    let who = b
        .git(&["log", "-1", "--format=%cn <%ce>", "agent/origin/fix-1"])
        .ok()
        .stdout;
    assert_eq!(who.trim(), "Bea Reviewer <bea@example.com>");
    let note = b
        .git(&["notes", "--ref", "agent", "show", "agent/origin/fix-1"])
        .ok()
        .stdout;
    assert!(note.contains("git-agent-task: origin/fix-1"), "{note}");
    assert!(
        b.git(&["show", "agent/origin/fix-1:fix.txt"])
            .ok()
            .stdout
            .contains("fix-1")
    );
    // B's own task and branch are untouched.
    assert!(b.git(&["rev-parse", "-q", "--verify", "agent/fix-1"]).code != 0);
    b.agent(&["push", "origin/fix-1"]).ok();
    assert_eq!(
        a.git(&["ls-remote", "origin", "refs/heads/agent/origin/fix-1"])
            .ok()
            .stdout
            .split_whitespace()
            .next(),
        Some(
            b.git(&["rev-parse", "agent/origin/fix-1"])
                .ok()
                .stdout
                .trim()
        )
    );

    // The next fetch puts back the record as A wrote it (B's promotion record is gone); the
    // branch's own notes still tell B what it promoted, so a commit again changes nothing.
    let promoted = b.git(&["rev-parse", "agent/origin/fix-1"]).ok().stdout;
    b.git(&["fetch", "-q", "origin"]).ok();
    let again = b.agent(&["commit", "origin/fix-1"]).ok();
    assert!(again.stderr.contains("0 commits"), "{again}");
    assert_eq!(
        b.git(&["rev-parse", "agent/origin/fix-1"]).ok().stdout,
        promoted
    );

    // Commands that need a sandbox refuse it, saying what works instead.
    for args in [
        &["attach", "origin/fix-1"][..],
        &["shell", "origin/fix-1"],
        &["logs", "-f", "origin/fix-1"],
        &["stop", "origin/fix-1"],
        &["restart", "origin/fix-1"],
        &["sync", "origin/fix-1"],
        &["rm", "origin/fix-1"],
        &["continue", "origin/fix-1", "-m", "more"],
        &["update", "origin/fix-1"],
    ] {
        let run = b.agent(args).fails();
        assert!(
            run.stderr
                .contains("task 'origin/fix-1' was fetched from origin; it has no sandbox here"),
            "{args:?}: {run}"
        );
        assert!(
            run.stderr.contains("`git agent retry origin/fix-1`"),
            "{run}"
        );
    }
    assert!(docker_has(&a_container), "A's container was touched");

    // A fetched record naming B's own container: nothing touches it.
    let b_container = b.container_of("fix-1");
    let base = b.git(&["rev-parse", "HEAD"]).ok().stdout.trim().to_string();
    let state = state_commit(&b, &record("fix-1", &base, &b_container), b"steal");
    put_fetched(&b, &["origin/evil".to_string()], &state, &base);
    b.agent(&["stop", "origin/evil"]).fails();
    b.agent(&["purge", "--refs", "origin/evil"]).ok();
    assert!(
        docker_has(&b_container),
        "purge of a fetched task removed B's container"
    );
    assert_eq!(b.task_refs("fix-1"), own, "B's own task changed");
    b.agent(&["status", "fix-1"]).ok();

    // B retries the fetched task: a task of B's own (named from the task part), on the
    // fetched base, linked to what it retries; the fetched refs are not written.
    let fetched_refs = b
        .git(&["for-each-ref", "refs/agent-remotes/origin/fix-1/"])
        .ok()
        .stdout;
    let retry = b.agent(&["retry", "origin/fix-1"]).ok();
    assert!(retry.stdout.contains("fix-1-retry"), "{retry}");
    let st = b.json(&["status", "fix-1-retry", "--json"]);
    assert_eq!(st["retry_of"], "origin/fix-1", "{st}");
    assert!(st["fetched_from"].is_null(), "{st}");
    assert_eq!(
        b.git(&["for-each-ref", "refs/agent-remotes/origin/fix-1/"])
            .ok()
            .stdout,
        fetched_refs
    );
    b.agent(&["purge", "--refs", "fix-1-retry"]).ok();

    // purge of a fetched task removes its refs only.
    b.agent(&["purge", "--refs", "origin/fix-1"]).ok();
    let left = b
        .git(&["for-each-ref", "refs/agent-remotes/origin/fix-1/"])
        .ok()
        .stdout;
    assert!(left.is_empty(), "{left}");
    assert!(
        docker_has(&a_container),
        "purge of a fetched task removed A's container"
    );
    assert!(b.git(&["rev-parse", "--verify", "agent/origin/fix-1"]).code == 0);
}

#[test]
fn odd_fetched_records_are_refused_and_list_stays_a_ref_scan() {
    let env = TestEnv::new();
    let base = env
        .git(&["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    // A record that names a local task and a path as its own name: its refs name it.
    let good = state_commit(&env, &record("../../escape", &base, "c0ffee"), b"do it");
    put_fetched(&env, &["origin/good".to_string()], &good, &base);
    let bad_toml = state_commit(&env, "schema = 1\nname = [", b"p");
    put_fetched(&env, &["origin/bad-toml".to_string()], &bad_toml, &base);
    let newer = state_commit(
        &env,
        &record("n", &base, "c").replace("schema = 1", "schema = 9"),
        b"p",
    );
    put_fetched(&env, &["origin/newer".to_string()], &newer, &base);
    let huge = state_commit(&env, &record("h", &base, "c"), &vec![b'x'; 2 << 20]);
    put_fetched(&env, &["origin/huge".to_string()], &huge, &base);
    // Names no task can have (git allows them in refs).
    put_fetched(
        &env,
        &[
            "origin/Upper".to_string(),
            "-opt/t".to_string(),
            "origin/a;b".to_string(),
        ],
        &good,
        &base,
    );

    let run = env.agent(&["list", "--json"]).ok();
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = rows["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["task"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["origin/good"], "{run}");
    for refused in [
        "'origin/bad-toml'",
        "'origin/newer'",
        "'origin/huge'",
        "'origin/Upper'",
        "'-opt/t'",
        "'origin/a;b'",
    ] {
        assert!(
            run.stderr
                .contains(&format!("warning: fetched task {refused} is not listed")),
            "{refused}: {run}"
        );
    }
    assert!(run.stderr.contains("newer git-agent"), "{run}");
    assert!(run.stderr.contains("more than the"), "{run}");
    // Each refused one is refused by name too, with a message.
    env.agent(&["status", "origin/newer"]).fails();
    let huge = env.agent(&["review", "--no-sync", "origin/huge"]);
    assert_eq!(huge.code, 1, "{huge}");
    assert!(huge.stderr.contains("more than the"), "{huge}");
    let status = env.agent(&["status", "origin/good"]).ok();
    assert!(status.stdout.contains("origin/good"), "{status}");
    assert!(!status.stdout.contains("escape"), "{status}");
    assert!(!status.stdout.contains("c0ffee"), "{status}");

    // 1,000 fetched tasks: listed with a fixed number of git processes, not one per task.
    let many: Vec<String> = (0..1000).map(|i| format!("bulk/t{i:04}")).collect();
    put_fetched(&env, &many, &good, &base);
    let trace = env.home.path().join("trace");
    let run = env
        .agent_with(&["list", "--json"], |c| {
            c.env("GIT_TRACE", &trace);
        })
        .ok();
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rows["tasks"].as_array().unwrap().len(), 1001);
    let traced = std::fs::read_to_string(&trace).unwrap();
    let processes = traced
        .lines()
        .filter(|l| l.contains("trace: built-in:"))
        .count();
    assert!(processes < 20, "{processes} git processes:\n{traced}");

    // Purging a fetched task needs no engine: it has nothing there, only its refs go.
    env.agent_with(&["purge", "--refs", "origin/good"], |c| {
        c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    })
    .ok();
    let left = env
        .git(&["for-each-ref", "refs/agent-remotes/origin/good/"])
        .ok()
        .stdout;
    assert!(left.is_empty(), "{left}");
}
