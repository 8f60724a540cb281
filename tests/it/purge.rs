//! `purge` protects work: bulk removal asks or needs --yes, --dry-run changes nothing, a
//! task's latest work is synced before its workspace goes, purged refs go to a trash that
//! `--undo` restores, and a purge killed at any point completes when run again.

use crate::common::TestEnv;
use crate::require_docker;

fn all_refs(env: &TestEnv) -> String {
    env.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
        .stdout
}

#[test]
fn bulk_purge_asks_lists_unpromoted_work_and_can_be_undone() {
    require_docker!();
    let env = TestEnv::new();
    env.finished_task("kept", "a.txt");
    env.finished_task("done", "b.txt");
    env.agent(&["commit", "done"]).ok();
    let before_refs = all_refs(&env);
    let before_objects = env.runtime_objects();
    let kept_head = env.task_refs("kept")["head"].clone();

    // Not on a terminal and no --yes: refused, nothing changed.
    let refused = env.agent(&["purge", "--all", "--refs"]).fails();
    assert!(refused.stderr.contains("--dry-run"), "{refused}");
    assert!(
        refused
            .stderr
            .contains("1 of them holding work never promoted"),
        "{refused}"
    );
    assert_eq!(all_refs(&env), before_refs);
    assert_eq!(env.runtime_objects(), before_objects);

    // --dry-run names each task and the work never promoted; changes nothing.
    let dry = env.agent(&["purge", "--all", "--refs", "--dry-run"]).ok();
    let kept_line = dry.stdout.lines().find(|l| l.starts_with("kept")).unwrap();
    assert!(kept_line.contains("1 commit never promoted"), "{dry}");
    let done_line = dry.stdout.lines().find(|l| l.starts_with("done")).unwrap();
    assert!(!done_line.contains("never promoted"), "{dry}");
    assert_eq!(all_refs(&env), before_refs);
    assert_eq!(env.runtime_objects(), before_objects);

    // On a terminal, "n" keeps everything.
    let mut no = env.pty_command("purge --all --refs");
    no.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = no.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let answered = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&answered.stdout);
    assert!(text.contains("[y/N]"), "{text}");
    assert!(text.contains("nothing was purged"), "{text}");
    assert_eq!(all_refs(&env), before_refs);

    // --yes purges all, says which held unpromoted work, and keeps a copy.
    let gone = env.agent(&["purge", "--all", "--refs", "--yes"]).ok();
    assert!(
        gone.stderr.contains("kept held 1 commit never promoted"),
        "{gone}"
    );
    assert!(env.task_refs("kept").is_empty());
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
    assert!(
        env.git(&["rev-parse", "--verify", "agent/done"]).code == 0,
        "promoted branches are kept"
    );
    let trash = env.agent(&["purge", "--list-trash"]).ok();
    assert!(
        trash.stdout.contains("kept") && trash.stdout.contains("done"),
        "{trash}"
    );

    // --undo brings the task back with its work; commit then still works.
    env.agent(&["purge", "--undo", "kept"]).ok();
    assert_eq!(env.task_refs("kept")["head"], kept_head);
    let st = env.json(&["status", "kept", "--json"]);
    assert_eq!(st["task"], "kept");
    env.agent(&["commit", "kept"]).ok();
    assert_eq!(env.git(&["show", "agent/kept:a.txt"]).stdout.trim(), "kept");
    // Undo twice, or onto a task that exists, is refused with a hint.
    env.agent(&["purge", "--undo", "kept"]).fails();

    // Emptying the trash needs --yes off a terminal too.
    env.agent(&["purge", "--empty-trash"]).fails();
    env.agent(&["purge", "--empty-trash", "--yes"]).ok();
    assert!(
        env.agent(&["purge", "--list-trash"])
            .ok()
            .stdout
            .trim()
            .is_empty()
    );
}

/// The agent's latest commit, made after the last sync, survives a purge: purge syncs first.
#[test]
fn purge_syncs_the_latest_work_before_removing_the_workspace() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "late",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo late > late.txt && git add late.txt && git commit -qm late && sleep 300",
    ])
    .ok();
    // Wait for the agent's commit inside the sandbox (not synced by anyone yet).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !env
        .docker_exec("late", "git log --format=%s -1")
        .stdout
        .contains("late")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never committed"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!env.task_refs("late").contains_key("head"));
    env.agent(&["purge", "--refs", "late"]).ok();
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
    env.agent(&["purge", "--undo", "late"]).ok();
    let head = env.task_refs("late")["head"].clone();
    assert_eq!(
        env.git(&["log", "--format=%s", "-1", &head]).stdout.trim(),
        "late"
    );
}

/// A purge killed at any point leaves the user's repository alone, and running it again
/// completes it with nothing left behind.
#[test]
fn a_killed_purge_completes_when_run_again() {
    require_docker!();
    purge_crash_matrix(&TestEnv::new());
}

/// The body of [`a_killed_purge_completes_when_run_again`], for any runtime
/// (`orchestration.rs` runs it on the engine-less one).
pub fn purge_crash_matrix(env: &TestEnv) {
    for (i, point) in ["purge.after-objects", "purge.before-refs"]
        .iter()
        .enumerate()
    {
        let name = format!("p{i}");
        env.finished_task(&name, "f.txt");
        let user = env.user_snapshot();
        env.agent_crash_at(point, &["purge", "--refs", &name]);
        assert_eq!(env.user_snapshot(), user, "{point}");
        // The task is still there, and says what it is.
        let st = env.json(&["status", &name, "--json"]);
        assert_eq!(st["task"], name.as_str(), "{point}");
        env.agent(&["purge", "--refs", &name]).ok();
        assert!(env.task_refs(&name).is_empty(), "{point}");
        assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]), "{point}");
        env.agent(&["purge", "--undo", &name]).ok();
        assert!(env.task_refs(&name).contains_key("head"), "{point}");
        assert_eq!(env.user_snapshot(), user, "{point}");
    }
}

/// `rm` of a running task removes its container and its disk warden, so nothing keeps the
/// workspace volume in use; the workspace and refs stay.
#[test]
fn rm_of_a_running_task_leaves_no_container_behind() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "busy", "-m", "x", "--", "sleep", "300"])
        .ok();
    let names = env.names_of("busy");
    let (containers, _, _) = env.runtime_objects();
    assert!(containers.contains(&names.warden), "{containers:?}");
    env.agent(&["rm", "busy"]).ok();
    let (containers, volumes, _) = env.runtime_objects();
    assert!(
        !containers.contains(&names.container) && !containers.contains(&names.warden),
        "{containers:?}"
    );
    assert!(volumes.contains(&names.volume), "{volumes:?}");
    // The workspace is free: purge removes it at once.
    env.agent(&["purge", "--refs", "busy"]).ok();
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
}

#[cfg(feature = "local-runtime")]
#[test]
fn purge_takes_several_tasks_and_reports_each() {
    let env = TestEnv::local();
    env.finished_task("one", "one.txt");
    env.finished_task("two", "two.txt");
    env.finished_task("three", "three.txt");
    // An unknown name changes nothing.
    let typo = env
        .agent(&["purge", "--refs", "one", "no/such/task!"])
        .fails();
    assert!(typo.stderr.contains("Error:"), "{typo}");
    assert!(env.task_refs("one").contains_key("state"), "{typo}");
    // Dry run: one line per task.
    let dry = env
        .agent(&["purge", "--refs", "--dry-run", "one", "two"])
        .ok();
    assert!(
        dry.stdout.lines().any(|l| l.starts_with("one"))
            && dry.stdout.lines().any(|l| l.starts_with("two")),
        "{dry}"
    );
    assert!(env.task_refs("one").contains_key("state"));
    // Several at once, prefixes work, a name given twice is purged once.
    env.agent(&["purge", "--refs", "one", "tw", "two"]).ok();
    assert!(env.task_refs("one").is_empty() && env.task_refs("two").is_empty());
    assert!(env.task_refs("three").contains_key("state"));
    let trash = env.agent(&["purge", "--list-trash"]).ok().stdout;
    assert!(trash.contains("one") && trash.contains("two"), "{trash}");
    // --undo and --empty-trash take several too.
    env.agent(&["purge", "--undo", "one", "two"]).ok();
    assert!(env.task_refs("one").contains_key("state"));
    assert!(env.task_refs("two").contains_key("state"));
    env.agent(&["purge", "--refs", "one", "two"]).ok();
    let emptied = env.agent(&["purge", "--empty-trash", "one", "two"]).ok();
    assert!(
        emptied.stdout.contains("one") && emptied.stdout.contains("two"),
        "{emptied}"
    );
    // A failure of one is reported and the others still go; exit 1 names it.
    let failed = env.agent(&["purge", "--undo", "one", "three"]).fails();
    assert_eq!(failed.code, 1, "{failed}");
    assert!(failed.stderr.contains("failed"), "{failed}");
    env.agent(&["purge", "three"]).ok();
    assert!(
        env.task_refs("three").contains_key("state"),
        "refs kept without --refs"
    );
}
