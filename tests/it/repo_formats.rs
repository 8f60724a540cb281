//! Where git-agent runs: any directory of a work tree or a linked worktree, acting on one
//! task store; and the repositories it cannot work in (SHA-256, reftable, bare, a git dir,
//! spawn in a shallow clone), refused at once with a true message, changing nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Run, TestEnv, hex};
use crate::require_docker;

/// `git agent <args>` run from `dir`.
fn agent_in(env: &TestEnv, dir: &Path, args: &[&str]) -> Run {
    env.agent_with(args, |c| {
        c.current_dir(dir);
    })
}

/// Every file under `root` (the work tree and its git dir) with its content: what a refused
/// command must leave exactly as it was.
fn tree_snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), hex(&std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

/// Each command a user might try, in a repository where a task named `t` would live.
const COMMANDS: &[&[&str]] = &[
    &["list"],
    &["list", "--json"],
    &["status", "t"],
    &["spawn", "--name", "t", "-m", "x", "--", "true"],
    &["sync", "t"],
    &["review", "t"],
    &["commit", "t", "-m", "x"],
    &["logs", "t"],
    &["push", "t"],
    &["commit-push", "t", "-m", "x"],
    &["shell", "t"],
    &["attach", "t"],
    &["allow", "t", "example.com"],
    &["restart", "t"],
    &["stop", "t"],
    &["rm", "t"],
    &["purge", "--refs", "t"],
    &["doctor"],
];

/// Run every command in `dir`; each must fail at once with `want` in its error and a hint,
/// and leave every file under `root` as it was.
#[track_caller]
fn all_refused(env: &TestEnv, dir: &Path, root: &Path, want: &str, hint: &str) {
    let before = tree_snapshot(root);
    for args in COMMANDS {
        let run = agent_in(env, dir, args).fails();
        assert!(run.stderr.contains(want), "{args:?}: {run}");
        let h = run
            .stderr
            .lines()
            .find(|l| l.starts_with("Hint: "))
            .unwrap();
        assert!(h.contains(hint), "{args:?}: {run}");
        assert_eq!(
            before,
            tree_snapshot(root),
            "{args:?} changed the repository"
        );
    }
}

#[test]
fn sha256_and_reftable_repositories_are_refused_with_a_way_out() {
    let env = TestEnv::new();
    let home = env.home.path();
    for (dir, flag, want, hint) in [
        (
            "sha256",
            "--object-format=sha256",
            "SHA-256 object ids",
            "git init --object-format=sha1",
        ),
        (
            "reftable",
            "--ref-format=reftable",
            "stores its refs as reftable",
            "--ref-format=files",
        ),
    ] {
        let repo = home.join(dir);
        env.git(&["init", "-q", flag, repo.to_str().unwrap()]).ok();
        std::fs::write(repo.join("f"), "x\n").unwrap();
        env.git(&["-C", repo.to_str().unwrap(), "add", "f"]).ok();
        env.git(&["-C", repo.to_str().unwrap(), "commit", "-qm", "one"])
            .ok();
        std::fs::create_dir_all(repo.join("sub")).unwrap();
        all_refused(&env, &repo, &repo, want, hint);
        all_refused(&env, &repo.join("sub"), &repo, want, hint);
    }
    // The hint for reftable works: a files-format clone is a repository git-agent runs in.
    let clone = home.join("converted");
    env.git(&[
        "clone",
        "-q",
        "--ref-format=files",
        home.join("reftable").to_str().unwrap(),
        clone.to_str().unwrap(),
    ])
    .ok();
    agent_in(&env, &clone, &["list"]).ok();
    // So does the one for SHA-256: a SHA-1 copy by fast-export.
    let copy = home.join("sha1-copy");
    env.git(&["init", "-q", "--object-format=sha1", copy.to_str().unwrap()])
        .ok();
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' fast-export --all | git -C '{}' fast-import --quiet && git -C '{}' checkout -q main",
            home.join("sha256").display(),
            copy.display(),
            copy.display()
        ))
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap();
    assert!(export.success());
    agent_in(&env, &copy, &["list"]).ok();
}

#[test]
fn bare_repositories_and_git_dirs_get_a_true_message() {
    let env = TestEnv::new();
    let bare = env.home.path().join("bare.git");
    env.git(&["clone", "-q", "--bare", ".", bare.to_str().unwrap()])
        .ok();
    all_refused(
        &env,
        &bare,
        &bare,
        "is a bare repository; git-agent needs a work tree",
        "worktree add",
    );
    // The hint works: a worktree of the bare repository is one git-agent runs in.
    let tree = env.home.path().join("bare tree");
    env.git(&[
        "-C",
        bare.to_str().unwrap(),
        "worktree",
        "add",
        "-q",
        tree.to_str().unwrap(),
        "main",
    ])
    .ok();
    agent_in(&env, &tree, &["list"]).ok();
    // Inside the .git directory of an ordinary repository.
    let before = env.user_snapshot();
    let gitdir = env.repo.join(".git");
    for dir in [gitdir.clone(), gitdir.join("refs")] {
        let run = agent_in(&env, &dir, &["list"]).fails();
        assert!(
            run.stderr
                .contains("inside the git directory, not in a work tree"),
            "{run}"
        );
        assert!(
            run.stderr.contains(&format!("cd {}", env.repo.display())),
            "{run}"
        );
    }
    assert_eq!(before, env.user_snapshot());
    // Outside any repository the old message is the true one.
    let nowhere = env.home.path().join("nowhere");
    std::fs::create_dir_all(&nowhere).unwrap();
    let run = agent_in(&env, &nowhere, &["list"]).fails();
    assert!(run.stderr.contains("not a git repository"), "{run}");
    // ... unless git is told where the repository and its work tree are.
    env.agent_with(&["list"], |c| {
        c.current_dir(&nowhere)
            .env("GIT_DIR", &gitdir)
            .env("GIT_WORK_TREE", &env.repo);
    })
    .ok();
}

/// A shallow clone cannot send a task's work back (the bundle needs the base's history):
/// spawn refuses before creating anything; commands that only read keep working.
#[test]
fn spawn_refuses_a_shallow_clone_and_reading_commands_work() {
    let env = TestEnv::new();
    env.write("second.txt", "2\n");
    env.git(&["add", "second.txt"]).ok();
    env.git(&["commit", "-qm", "second"]).ok();
    let shallow = env.home.path().join("shallow");
    env.git(&[
        "clone",
        "-q",
        "--depth",
        "1",
        &format!("file://{}", env.repo.display()),
        shallow.to_str().unwrap(),
    ])
    .ok();
    let before = tree_snapshot(&shallow);
    for args in [
        &["spawn", "--name", "t", "-m", "x", "--", "true"][..],
        &["spawn", "--name", "t", "--wait", "-m", "x", "--", "true"],
        &["spawn", "-m", "x", "--agent", "exec,exec", "--", "true"],
    ] {
        let run = agent_in(&env, &shallow, args).fails();
        assert!(run.stderr.contains("shallow clone"), "{run}");
        assert!(run.stderr.contains("git fetch --unshallow"), "{run}");
        assert_eq!(before, tree_snapshot(&shallow), "{args:?}");
    }
    let refs = agent_in(&env, &shallow, &["list", "--json"]).ok();
    let refs_json: serde_json::Value = serde_json::from_str(&refs.stdout).unwrap();
    assert_eq!(refs_json["tasks"], serde_json::json!([]), "{refs}");
    agent_in(&env, &shallow, &["list"]).ok();
    let st = agent_in(&env, &shallow, &["status", "t"]).fails();
    assert!(st.stderr.contains("no task"), "{st}");
    // The hint works: once unshallowed, spawn gets past the check (the engine is another
    // matter, so only the refusal is checked here).
    Command::new("git")
        .args([
            "-C",
            shallow.to_str().unwrap(),
            "fetch",
            "-q",
            "--unshallow",
        ])
        .env("HOME", env.home.path())
        .status()
        .unwrap();
    let run = agent_in(
        &env,
        &shallow,
        &["spawn", "--name", "t", "-m", "x", "--", "true"],
    );
    assert!(!run.stderr.contains("shallow"), "{run}");
    agent_in(&env, &shallow, &["purge", "--refs", "t"]).ok();
}

/// Every command from a subdirectory of the main work tree and from a linked worktree:
/// all act on the one task store of the repository.
#[test]
fn every_command_from_a_subdirectory_and_a_linked_worktree() {
    require_docker!();
    let env = TestEnv::new();
    let remote = env.home.path().join("remote.git");
    env.git(&["init", "-q", "--bare", remote.to_str().unwrap()])
        .ok();
    env.git(&["remote", "add", "origin", remote.to_str().unwrap()])
        .ok();
    env.write("src/deep/lib.txt", "lib\n");
    env.git(&["add", "."]).ok();
    env.git(&["commit", "-qm", "deep"]).ok();
    let sub = env.repo.join("src/deep");
    let linked = env.home.path().join("linked tree");
    env.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        "side",
        linked.to_str().unwrap(),
    ])
    .ok();
    let linked_sub = linked.join("src");

    // From a subdirectory: the whole loop.
    let work = "echo made > made.txt && git add made.txt && git commit -qm made && echo loose > loose.txt && echo out-put";
    agent_in(
        &env,
        &sub,
        &[
            "spawn", "--name", "fromsub", "--wait", "-m", "x", "--", "sh", "-c", work,
        ],
    )
    .ok();
    let list = agent_in(&env, &sub, &["list"]).ok();
    assert!(list.stdout.contains("fromsub"), "{list}");
    let st = agent_in(&env, &sub, &["status", "fromsub", "--json"]).ok();
    assert!(st.stdout.contains("\"base_branch\": \"main\""), "{st}");
    agent_in(&env, &sub, &["sync", "fromsub"]).ok();
    let review = agent_in(&env, &sub, &["review", "fromsub", "--name-only"]).ok();
    assert_eq!(
        review.stdout.lines().collect::<Vec<_>>(),
        ["loose.txt", "made.txt"],
        "{review}"
    );
    let logs = agent_in(&env, &sub, &["logs", "fromsub"]).ok();
    assert!(logs.stdout.contains("out-put"), "{logs}");
    let commit = agent_in(&env, &sub, &["commit", "fromsub", "-m", "from a subdir"]).ok();
    assert_eq!(commit.stdout.trim(), "agent/fromsub");
    agent_in(&env, &sub, &["push", "fromsub"]).ok();
    let pushed = env
        .git(&[
            "--git-dir",
            remote.to_str().unwrap(),
            "rev-parse",
            "agent/fromsub",
        ])
        .ok();
    assert_eq!(
        pushed.stdout,
        env.git(&["rev-parse", "agent/fromsub"]).stdout
    );

    // From the linked worktree: the same store, and a task of its own based on its branch.
    let list = agent_in(&env, &linked_sub, &["list", "--json"]).ok();
    assert!(list.stdout.contains("\"fromsub\""), "{list}");
    agent_in(&env, &linked_sub, &["status", "fromsub"]).ok();
    agent_in(&env, &linked_sub, &["review", "fromsub", "--no-sync"]).ok();
    agent_in(&env, &linked_sub, &["logs", "fromsub"]).ok();
    agent_in(
        &env,
        &linked_sub,
        &[
            "spawn",
            "--name",
            "fromlinked",
            "-m",
            "x",
            "--",
            "sleep",
            "300",
        ],
    )
    .ok();
    let st = agent_in(&env, &sub, &["status", "fromlinked", "--json"]).ok();
    assert!(st.stdout.contains("\"base_branch\": \"side\""), "{st}");
    let allow = agent_in(&env, &linked_sub, &["allow", "fromlinked", "example.com"]).ok();
    assert_eq!(allow.stdout.trim(), "example.com", "{allow}");
    agent_in(&env, &linked_sub, &["sync", "fromlinked"]).ok();
    agent_in(&env, &linked_sub, &["stop", "fromlinked"]).ok();
    agent_in(&env, &linked_sub, &["rm", "fromlinked"]).ok();
    agent_in(&env, &linked_sub, &["purge", "--refs", "fromlinked"]).ok();
    // ... which the main work tree sees at once.
    let list = agent_in(&env, &sub, &["list", "--json"]).ok();
    assert!(!list.stdout.contains("fromlinked"), "{list}");
    agent_in(&env, &linked, &["purge", "--refs", "fromsub"]).ok();
    assert!(env.task_refs("fromsub").is_empty());
    let (containers, volumes, networks) = env.runtime_objects();
    assert!(
        containers.is_empty() && volumes.is_empty() && networks.is_empty(),
        "{containers:?} {volumes:?} {networks:?}"
    );
}
