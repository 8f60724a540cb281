//! Sync while the agent works: one snapshot per sync, whatever the agent does meanwhile
//! (commits creating new object fan-out directories, uncommitted edits, `gc --auto`,
//! `repack -d`), and concurrent syncs of one task serialised so that every one succeeds.

use std::collections::BTreeMap;

use crate::common::{Run, TestEnv};
use crate::require_docker;

/// The agent: commits a new file every 0.1-0.3 s (new blobs, trees and commits, so new
/// `objects/xx` directories keep appearing, also after each repack removed the empty ones),
/// often leaves an uncommitted edit or an untracked file, and now and then packs its
/// objects. File `f<i>` holds `<i>` on its first line and sits in directory `d<i % 7>`, so a
/// commit's tree can be checked against its message `c<i>`. It stops (and the task ends) once
/// /tmp/stop exists.
pub const BUSY_AGENT: &str = r#"git config gc.auto 20
i=0
while [ ! -e /tmp/stop ]; do
  i=$((i + 1))
  mkdir -p "d$((i % 7))"
  echo "$i" > "d$((i % 7))/f$i"
  git add -A && git commit -q -m "c$i"
  case $((i % 4)) in
    1) echo "edit $i" >> "d$((i % 7))/f$i" ;;
    2) echo "untracked $i" > "u$i.txt" ;;
  esac
  case $((i % 9)) in
    3) git gc --auto -q ;;
    6) git repack -d -q ;;
    8) git repack -a -d -q ;;
  esac
  sleep "0.$((1 + i % 3))"
done
echo stopped-at-$i"#;

/// Check that `head` is a whole commit `c<n>` of the busy agent: n+1 commits, every file
/// `f1..fn` in its place with its number first, and `wip` (if any) a child of `head`.
/// Returns n.
#[track_caller]
pub fn check_snapshot(env: &TestEnv, head: &str, wip: Option<&str>) -> usize {
    let subject = env.git(&["log", "-1", "--format=%s", head]).ok().stdout;
    let n: usize = subject
        .trim()
        .strip_prefix('c')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("head {head} is not an agent commit: {subject:?}"));
    let count: usize = env
        .git(&["rev-list", "--count", head])
        .ok()
        .stdout
        .trim()
        .parse()
        .unwrap();
    assert_eq!(count, n + 1, "head {head} (c{n}) has {count} commits");
    let files = env.git(&["ls-tree", "-r", "--name-only", head]).ok().stdout;
    let files: Vec<&str> = files.lines().collect();
    for i in 1..=n {
        let path = format!("d{}/f{i}", i % 7);
        assert!(files.contains(&path.as_str()), "c{n} lacks {path}");
    }
    // Spot-check contents (the first, the last and one in the middle).
    for i in [1, n / 2 + 1, n] {
        let text = env
            .git(&["show", &format!("{head}:d{}/f{i}", i % 7)])
            .ok()
            .stdout;
        assert_eq!(text.lines().next(), Some(i.to_string().as_str()), "c{n}");
    }
    if let Some(wip) = wip {
        let parent = env.git(&["rev-parse", &format!("{wip}^")]).ok().stdout;
        assert_eq!(parent.trim(), head, "wip {wip} is not a child of head");
        env.git(&["ls-tree", "-r", wip]).ok();
    }
    n
}

fn refs_of(env: &TestEnv, task: &str) -> (String, Option<String>) {
    let refs: BTreeMap<String, String> = env.task_refs(task);
    (
        refs.get("head").cloned().expect("head after a sync"),
        refs.get("wip").cloned(),
    )
}

fn sync_ok(env: &TestEnv, task: &str) -> Run {
    let run = env.agent(&["sync", task]);
    assert_eq!(run.code, 0, "sync failed while the agent works:\n{run}");
    run
}

#[test]
fn syncs_are_consistent_while_the_agent_commits() {
    require_docker!();
    let env = TestEnv::new();
    let user = env.user_snapshot();
    env.agent(&[
        "spawn", "--name", "busy", "-m", "x", "--", "sh", "-c", BUSY_AGENT,
    ])
    .ok();

    // Sequential syncs: each one a consistent snapshot, heads only moving forward.
    let mut last = 0;
    let mut moved = 0;
    for _ in 0..15 {
        sync_ok(&env, "busy");
        let (head, wip) = refs_of(&env, "busy");
        let n = check_snapshot(&env, &head, wip.as_deref());
        assert!(n >= last, "head went back from c{last} to c{n}");
        moved += usize::from(n > last);
        last = n;
    }
    assert!(moved >= 4, "the agent hardly committed ({moved} moves)");

    // Concurrent syncs: serialised by the task lock, every one succeeds.
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| env.agent(&["sync", "busy"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        assert_eq!(run.code, 0, "a concurrent sync failed:\n{run}");
    }
    let (head, wip) = refs_of(&env, "busy");
    let n = check_snapshot(&env, &head, wip.as_deref());
    assert!(n >= last);

    // The agent stops: its work is read from a reader container from now on. A first sync
    // takes the last work; the concurrent ones after it wait and find nothing new.
    env.docker_exec("busy", "touch /tmp/stop");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !env
        .agent(&["status", "busy"])
        .ok()
        .stdout
        .contains("exited")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    sync_ok(&env, "busy");
    let (head, wip) = refs_of(&env, "busy");
    check_snapshot(&env, &head, wip.as_deref());
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| env.agent(&["sync", "busy"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        assert_eq!(run.code, 0, "a sync of the finished task failed:\n{run}");
        assert!(run.stderr.contains("nothing new"), "{run}");
    }
    assert_eq!(refs_of(&env, "busy"), (head, wip));
    let (containers, _, _) = env.runtime_objects();
    let reader = env.names_of("busy").reader;
    assert!(
        !containers.contains(&reader),
        "a reader container was left: {containers:?}"
    );
    assert_eq!(env.user_snapshot(), user);
    env.git(&["fsck", "--no-progress"]).ok();
}

/// The host-side scratch directory of a task's syncs (see `sandbox::sync::scratch_dir`).
fn scratch(env: &TestEnv, task: &str) -> std::path::PathBuf {
    env.repo.join(".git/git-agent/tmp/sync").join(task)
}

fn has_container(env: &TestEnv, name: &str) -> bool {
    env.runtime_objects().0.iter().any(|c| c == name)
}

/// A sync killed (kill -9) at each of its crash points leaves the user's repository as it
/// was and the task's refs either old or new, never half; what it left (a reader container,
/// temp files) stays through `list` and `status` and is removed by the next command that
/// changes the task, or by `doctor --fix`, and that sync works.
#[test]
fn a_killed_sync_leaves_nothing_once_the_next_command_runs() {
    require_docker!();
    sync_crash_matrix(&TestEnv::new(), &[FINISHED, RUNNING]);
}

/// The task of [`sync_crash_matrix`] that has finished (its work is read through a reader
/// container)...
pub const FINISHED: &str = "done";
/// ... and the one that runs (its work is read by an exec).
pub const RUNNING: &str = "live";

/// The body of [`a_killed_sync_leaves_nothing_once_the_next_command_runs`], for any runtime
/// (`orchestration.rs` runs it on the engine-less one), on the tasks named in `tasks`
/// ([`FINISHED`], [`RUNNING`] or both: each half can run on its own, in parallel).
pub fn sync_crash_matrix(env: &TestEnv, tasks: &[&str]) {
    let done = tasks.contains(&FINISHED);
    let live = tasks.contains(&RUNNING);
    // A finished task (read through a reader container) and a running one (exec).
    if done {
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
            "for i in 1 2 3; do echo $i > f$i; git add -A; git commit -qm c$i; done; echo wip > w",
        ])
        .ok();
    }
    if live {
        env.agent(&[
        "spawn", "--name", "live", "-m", "x", "--", "sh", "-c",
        "head -c 20000000 /dev/urandom > big.bin; i=0; while :; do i=$((i+1)); echo $i > f$i; git add -A; git commit -qm c$i; sleep 0.3; done",
    ])
    .ok();
    }
    let user = env.user_snapshot();
    let reader = env.names_of("done").reader;
    // (point, task, the command run next: a read-only one leaves the leftovers to the sync
    // after it, `doctor --fix` removes them itself)
    let cases = [
        ("sync.after-reader", "done", "status"),
        ("sync.after-bundle", "done", "list"),
        ("sync.after-admit", "done", "sync"),
        ("sync.after-refs", "done", "status"),
        ("sync.after-reader", "done", "doctor"),
        ("sync.after-bundle", "live", "sync"),
        ("sync.after-admit", "live", "list"),
        ("sync.after-bundle", "live", "doctor"),
    ];
    for (point, task, next) in cases.into_iter().filter(|(_, t, _)| tasks.contains(t)) {
        // Forget the last sync so that this one has work to bring home.
        for leaf in ["head", "wip"] {
            env.git(&["update-ref", "-d", &format!("refs/agent/{task}/{leaf}")])
                .ok();
        }
        let before = env.task_refs(task);
        env.agent_crash_at(point, &["sync", task]);
        assert_eq!(env.user_snapshot(), user, "{point} {task}");
        let after = env.task_refs(task);
        if point == "sync.after-refs" {
            assert!(after.contains_key("head"), "{point}: {after:?}");
        } else {
            assert_eq!(after, before, "{point} {task} moved refs");
        }
        // What the killed sync left: its scratch directory and, for a finished task, the
        // reader container (proof that the point is where the test thinks it is).
        assert!(scratch(env, task).exists(), "{point} {task}");
        if task == "done" {
            assert!(has_container(env, &reader), "{point}: no reader left");
        }
        // `list`/`status` tell the truth meanwhile and change nothing; the next command that
        // changes the task (here sync), or `doctor --fix`, removes the leftovers.
        let want = if task == "done" { "exited" } else { "running" };
        match next {
            "status" => {
                let run = env.agent(&["status", task]).ok();
                assert!(run.stdout.contains(want), "{point}:\n{run}");
            }
            "list" => {
                let run = env.agent(&["list"]).ok();
                let row = run.stdout.lines().find(|l| l.contains(task));
                assert!(row.is_some_and(|r| r.contains(want)), "{point}:\n{run}");
            }
            "doctor" => {
                let run = env.agent(&["doctor", "--fix"]);
                assert!(
                    run.stdout
                        .contains(&format!("an interrupted sync or commit of task {task}")),
                    "{point}:\n{run}"
                );
                assert!(
                    !scratch(env, task).exists(),
                    "{point}: doctor --fix left temp files"
                );
                assert!(
                    !has_container(env, &reader),
                    "{point}: doctor --fix left the reader"
                );
            }
            _ => {}
        }
        if next == "status" || next == "list" {
            assert!(
                scratch(env, task).exists(),
                "{point}: {next} removed the temp files"
            );
            if task == "done" {
                assert!(
                    has_container(env, &reader),
                    "{point}: {next} removed the reader"
                );
            }
        }
        let sync = env.agent(&["sync", task]);
        assert_eq!(sync.code, 0, "{point}: the next sync failed:\n{sync}");
        assert!(env.task_refs(task).contains_key("head"), "{point}");
        assert!(
            !scratch(env, task).exists(),
            "{point} {task} (then {next}) left temp files"
        );
        assert!(
            !has_container(env, &reader),
            "{point} {task} (then {next}) left a reader container"
        );
        assert_eq!(env.user_snapshot(), user, "{point} {task}");
    }
    if done {
        killed_sync_leftovers_and_later_commands(env, &reader);
    }
    if live {
        killed_sync_of_a_running_task(env);
    }
}

/// `list` alone leaves what a killed sync of the finished task left; `stop` and `purge`
/// remove it.
fn killed_sync_leftovers_and_later_commands(env: &TestEnv, reader: &str) {
    // `list` alone leaves the leftovers (it changes nothing); `stop`, a command that changes
    // the task, removes them.
    env.agent_crash_at("sync.after-bundle", &["sync", "done"]);
    assert!(has_container(env, reader) && scratch(env, "done").exists());
    env.agent(&["list"]).ok();
    assert!(has_container(env, reader), "list removed the reader");
    assert!(scratch(env, "done").exists(), "list removed temp files");
    env.agent(&["stop", "done"]).ok();
    assert!(!has_container(env, reader), "stop left the reader");
    assert!(!scratch(env, "done").exists(), "stop left temp files");
    // A task purged after a killed sync: the purge removes the temp files with the task.
    env.agent_crash_at("sync.after-admit", &["sync", "done"]);
    assert!(scratch(env, "done").exists());
    env.agent(&["purge", "--refs", "done"]).ok();
    assert!(
        !scratch(env, "done").exists(),
        "purge left the temp files of a killed sync"
    );
    assert!(!has_container(env, reader));
}

/// A sync killed while the running sandbox streams its work: the emit inside loses its
/// reader, and its private directory goes (with it, or with the next emit).
fn killed_sync_of_a_running_task(env: &TestEnv) {
    for leaf in ["head", "wip"] {
        env.git(&["update-ref", "-d", &format!("refs/agent/live/{leaf}")])
            .ok();
    }
    let mut child = env.agent_command(&["sync", "live"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    env.agent(&["sync", "live"]).ok();
    // Inside the running sandbox: no private directory of any emit is left.
    let inside = env.sandbox_exec("live", "ls -a \"${TMPDIR:-/tmp}\"");
    assert!(!inside.stdout.contains("git-agent-emit"), "{inside}");
    assert!(
        !env.repo
            .join(".git/git-agent/tmp/sync")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "temp files left"
    );
}

/// A sync that waits for the task's lock while the task is purged says so and changes
/// nothing: with the refs deleted (`purge --refs`) and with only the runtime removed
/// (`purge`, which keeps the refs and clears the record's container).
#[test]
fn a_sync_that_loses_to_purge_says_so() {
    use std::io::BufRead;
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "gone",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo 1 > f; git add f; git commit -qm one",
    ])
    .ok();
    let git = git_agent::git::Git::discover(&env.repo).unwrap();
    for refs in [false, true] {
        let lock = git_agent::task::lock::TaskLock::try_acquire(&git, "gone", "test")
            .unwrap()
            .expect("the lock is free");
        let mut child = env
            .agent_command(&["sync", "gone"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert!(line.contains("waiting"), "{line}");
        // What purge does to the task while the sync waits.
        if refs {
            for (leaf, _) in env.task_refs("gone") {
                env.git(&["update-ref", "-d", &format!("refs/agent/gone/{leaf}")])
                    .ok();
            }
        } else {
            let store = git_agent::task::store::TaskStore::open(&git).unwrap();
            store
                .update("gone", "purge", |r, _| {
                    r.sandbox.container = None;
                    Ok(vec![])
                })
                .unwrap();
        }
        let refs_before = env.task_refs("gone");
        drop(lock);
        let out = child.wait_with_output().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
        assert_eq!(out.status.code(), Some(1), "{rest}");
        assert!(
            rest.contains(
                "Error: task 'gone' was purged while this sync waited; nothing was changed"
            ),
            "{rest}"
        );
        assert!(rest.contains("Hint: "), "{rest}");
        assert_eq!(env.task_refs("gone"), refs_before, "refs = {refs}");
        assert!(!scratch(&env, "gone").exists());
    }
}

/// A sync whose task is purged while it reads (its reader container removed under it, its
/// refs deleted) either finished first or says that the task was purged; it never brings
/// the refs back and never leaves the engine's own error as the only explanation.
#[test]
fn a_sync_purged_while_it_runs_changes_nothing() {
    require_docker!();
    let env = TestEnv::new();
    let big = "head -c 30000000 /dev/urandom > big.bin && git add big.bin && git commit -qm big";
    env.agent(&[
        "spawn", "--name", "slow", "--wait", "-m", "x", "--", "sh", "-c", big,
    ])
    .ok();
    let child = env
        .agent_command(&["sync", "slow"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let purge = env.agent(&["purge", "--refs", "slow"]);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => eprintln!("the sync finished before the purge"),
        _ => {
            assert!(
                err.contains("Error: task 'slow' was purged while this sync ran; nothing was changed")
                    || err.contains("Error: the container of task 'slow' was removed while this sync ran (by `git agent purge` or outside git-agent); nothing was changed"),
                "{err}"
            );
            assert!(err.contains("Hint: "), "{err}");
        }
    }
    if purge.code == 0 {
        assert!(env.task_refs("slow").is_empty(), "refs came back");
    }
    assert!(
        !scratch(&env, "slow").exists(),
        "temp files left: sync {:?} {err}\npurge {purge}",
        out.status
    );
    let (containers, _, _) = env.runtime_objects();
    assert!(containers.is_empty(), "{containers:?}\n{purge}");
}

/// A task whose command ends while its own container is being read (spawn, then purge,
/// which syncs first, several at a time): the sync reads the workspace again from a reader,
/// and the purge completes with nothing left behind.
#[test]
fn a_sync_racing_the_end_of_the_task_succeeds() {
    require_docker!();
    let env = TestEnv::new();
    let runs: Vec<crate::common::Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let env = &env;
                s.spawn(move || {
                    let name = format!("end{i}");
                    env.agent(&["spawn", "--name", &name, "-m", "x", "--", "true"])
                        .ok();
                    env.agent(&["purge", "--refs", &name])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &runs {
        assert_eq!(r.code, 0, "{r}");
    }
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
}
