//! Task state in git, without an engine: compare-and-swap updates under contention.

use std::sync::{Arc, Barrier};

use git_agent::git::Git;
use git_agent::task::store::TaskStore;
use git_agent::task::{Status, TaskName, TaskRecord};

use crate::common::TestEnv;

fn record(name: &str, base: &str) -> TaskRecord {
    TaskRecord {
        name: name.into(),
        agent: "exec".into(),
        command: vec!["true".into()],
        base: base.into(),
        base_branch: Some("main".into()),
        status: Status::Running,
        prompt: "racing".into(),
        ..Default::default()
    }
}

#[test]
fn racing_writers_never_lose_an_update() {
    let env = TestEnv::new();
    let git = Git::discover(&env.repo).unwrap();
    let base = git.resolve_commit("HEAD").unwrap();
    let store = TaskStore::open(&git).unwrap();
    store
        .create(&TaskName::parse("race").unwrap(), &record("race", &base))
        .unwrap();

    const WRITERS: usize = 4;
    const UPDATES: usize = 15;
    let barrier = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let git = git.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                // Each writer has its own store (own git processes), like a separate process.
                let store = TaskStore::open(&git).unwrap();
                barrier.wait();
                for i in 0..UPDATES {
                    store
                        .update("race", &format!("writer {w} update {i}"), |r, _| {
                            r.synced = Some(r.synced.unwrap_or(0) + 1);
                            Ok(vec![])
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let loaded = store.load("race").unwrap().unwrap();
    assert_eq!(
        loaded.record.synced,
        Some((WRITERS * UPDATES) as i64),
        "a counter update was lost"
    );
    let history = store.history(&loaded).unwrap();
    assert_eq!(
        history.len(),
        WRITERS * UPDATES + 1,
        "every update is one commit in the chain"
    );
    for w in 0..WRITERS {
        for i in 0..UPDATES {
            let msg = format!("writer {w} update {i}");
            assert!(history.iter().any(|(_, m)| *m == msg), "missing {msg}");
        }
    }
}

#[test]
fn creating_a_task_twice_is_refused_and_changes_nothing() {
    let env = TestEnv::new();
    let git = Git::discover(&env.repo).unwrap();
    let base = git.resolve_commit("HEAD").unwrap();
    let store = TaskStore::open(&git).unwrap();
    let name = TaskName::parse("twice").unwrap();
    store.create(&name, &record("twice", &base)).unwrap();
    let refs = env.task_refs("twice");
    let err = store.create(&name, &record("twice", &base)).unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    assert_eq!(refs, env.task_refs("twice"));
    store.delete("twice").unwrap();
    assert!(env.task_refs("twice").is_empty());
}

/// Plain git in the test's repository, outside git-agent and its test helpers, fed `input`.
fn plain_git(env: &TestEnv, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .current_dir(&env.repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args([
            "-c",
            "user.name=future",
            "-c",
            "user.email=future@example.invalid",
        ])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Write a task's state the way a git-agent of another version would have, with plain git:
/// `task.toml` as given (`BASE` replaced by HEAD), its base at HEAD.
fn craft_task(env: &TestEnv, name: &str, task_toml: &str) {
    let base = plain_git(env, &["rev-parse", "HEAD"], b"");
    let record = plain_git(
        env,
        &["hash-object", "-w", "--stdin"],
        task_toml.replace("BASE", &base).as_bytes(),
    );
    let prompt = plain_git(
        env,
        &["hash-object", "-w", "--stdin"],
        b"from another version",
    );
    let tree = plain_git(
        env,
        &["mktree"],
        format!("100644 blob {prompt}\tprompt.md\n100644 blob {record}\ttask.toml\n").as_bytes(),
    );
    let commit = plain_git(
        env,
        &["commit-tree", &tree, "-m", &format!("create {name}")],
        b"",
    );
    plain_git(
        env,
        &["update-ref", &format!("refs/agent/{name}/state"), &commit],
        b"",
    );
    plain_git(
        env,
        &["update-ref", &format!("refs/agent/{name}/base"), &base],
        b"",
    );
}

const OLD_RECORD: &str = "name = \"NAME\"\nagent = \"exec\"\ncommand = [\"true\"]\nbase = \"BASE\"\nbase_branch = \"main\"\ndirty = false\nstatus = \"exited\"\nexit_code = 0\ncreated = 1700000000\n\n[sandbox]\nimage = \"img\"\nimage_id = \"sha256:x\"\n";

/// Repositories written before records carried a schema keep working: such a record is
/// schema 1, and the next state change writes the schema.
#[test]
fn a_record_without_a_schema_reads_as_schema_1() {
    let env = TestEnv::new();
    craft_task(&env, "old", &OLD_RECORD.replace("NAME", "old"));
    let list = env.json(&["list", "--json"])["tasks"].clone();
    assert_eq!(list[0]["task"], "old", "{list}");
    assert_eq!(list[0]["status"], "exited", "{list}");
    let git = Git::discover(&env.repo).unwrap();
    let store = TaskStore::open(&git).unwrap();
    let loaded = store
        .update("old", "touch", |r, _| {
            r.synced = Some(1);
            Ok(vec![])
        })
        .unwrap();
    assert_eq!(loaded.record.prompt, "from another version");
    let written = plain_git(&env, &["show", &format!("{}:task.toml", loaded.state)], b"");
    assert!(written.starts_with("schema = 1\n"), "{written}");
}

/// A task written by a newer git-agent (a newer `task.toml` schema) is refused by `list` and
/// `status` with an error and a hint to upgrade, and nothing in the repository changes.
#[test]
fn a_record_from_a_newer_git_agent_is_refused_and_left_alone() {
    let env = TestEnv::new();
    let future = format!(
        "schema = 2\n{}\n[sandbox.future]\nkind = \"unknown to this version\"\n",
        OLD_RECORD.replace("NAME", "future")
    );
    craft_task(&env, "future", &future);
    let refs = env.task_refs("future");
    let before = env.snapshot();
    let objects = plain_git(&env, &["count-objects"], b"");
    for args in [&["list"][..], &["list", "--json"], &["status", "future"]] {
        let run = env.agent(args).fails();
        assert!(
            run.stderr
                .contains("Error: task 'future' was written by a newer git-agent (state schema 2"),
            "{args:?}:\n{run}"
        );
        assert!(
            run.stderr.contains("Hint: upgrade git-agent"),
            "{args:?}:\n{run}"
        );
    }
    assert_eq!(refs, env.task_refs("future"));
    assert_eq!(before, env.snapshot());
    assert_eq!(objects, plain_git(&env, &["count-objects"], b""));
    // Nothing else of the store writes it either.
    let git = Git::discover(&env.repo).unwrap();
    let store = TaskStore::open(&git).unwrap();
    let err = store
        .update("future", "change", |_, _| Ok(vec![]))
        .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<git_agent::task::store::StoreError>(),
            Some(git_agent::task::store::StoreError::NewerSchema { schema: 2, .. })
        ),
        "{err:#}"
    );
    assert_eq!(refs, env.task_refs("future"));
    assert_eq!(objects, plain_git(&env, &["count-objects"], b""));
}

/// Files of the state tree that a change does not name are carried into the next state, and
/// each state commit is git-agent's own bookkeeping (its identity, its parent the previous
/// state).
#[test]
fn a_state_change_keeps_the_files_it_does_not_touch() {
    let env = TestEnv::new();
    let git = Git::discover(&env.repo).unwrap();
    let base = git.resolve_commit("HEAD").unwrap();
    let store = TaskStore::open(&git).unwrap();
    let first = store
        .create(&TaskName::parse("keep").unwrap(), &record("keep", &base))
        .unwrap();
    let with = store
        .update_with("keep", "finish", Some(b"the transcript\n"), |r, _| {
            r.status = Status::Exited;
            Ok(vec![])
        })
        .unwrap();
    let later = store
        .update_files("keep", "log", &[("connections", b"a.example\n")], |r, _| {
            r.exit_code = Some(0);
            Ok(vec![])
        })
        .unwrap();
    assert_eq!(
        store.transcript(&later).unwrap().as_deref(),
        Some(&b"the transcript\n"[..])
    );
    assert_eq!(
        store.state_file(&later, "connections").unwrap().as_deref(),
        Some(&b"a.example\n"[..])
    );
    assert_eq!(store.transcript(&first).unwrap(), None);
    assert_eq!(later.record.status, Status::Exited);
    assert_eq!(later.record.exit_code, Some(0));
    assert_eq!(later.record.prompt, "racing");
    let parent = plain_git(&env, &["rev-parse", &format!("{}^", later.state)], b"");
    assert_eq!(parent, with.state);
    let who = plain_git(
        &env,
        &["log", "-1", "--format=%an <%ae>|%cn", &later.state],
        b"",
    );
    assert_eq!(who, "git-agent <git-agent@localhost>|git-agent");
    let files = plain_git(&env, &["ls-tree", "--name-only", &later.state], b"");
    assert_eq!(files, "connections\nprompt.md\ntask.toml\ntranscript");
}
