//! Task state in git, without an engine: compare-and-swap updates under contention.

use std::sync::{Arc, Barrier};

use git_agent::git::Git;
use git_agent::task::store::TaskStore;
use git_agent::task::{Sandbox, Status, TaskName, TaskRecord};

use crate::common::TestEnv;

fn record(name: &str, base: &str) -> TaskRecord {
    TaskRecord {
        name: name.into(),
        agent: "exec".into(),
        command: vec!["true".into()],
        base: base.into(),
        base_branch: Some("main".into()),
        dirty: false,
        status: Status::Running,
        exit_code: None,
        reason: None,
        created: 0,
        started: None,
        finished: None,
        synced: None,
        sandbox: Sandbox::default(),
        promoted: None,
        template: None,
        stack: None,
        timeout: None,
        interactive: false,
        group: None,
        restarts: 0,
        stats: None,
        network: None,
        read_only: false,
        git_readonly: false,
        prompt: "racing".into(),
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
