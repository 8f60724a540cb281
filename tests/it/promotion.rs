//! Promotion as one transaction (kill -9 at every point of `commit`, adopting a branch an
//! interrupted commit left, concurrent commits), commits re-created as the user whatever
//! branch the agent used, and `push` behaving like `git push`.

use std::collections::BTreeSet;
#[cfg(feature = "local-runtime")]
use std::io::Write;
#[cfg(feature = "local-runtime")]
use std::path::Path;
#[cfg(feature = "local-runtime")]
use std::process::{Command, Stdio};

use crate::common::{Run, TestEnv};
use crate::require_docker;

/// Committed work on the task's branch, then uncommitted work on top.
const WORK: &str = "set -e
echo one > one && git add one && git commit -qm 'agent one'
echo two > two && git add two && git commit -qm 'agent two'
echo dirty >> README.md";

/// The commit points of a promotion, in the order they are reached.
const COMMIT_POINTS: &[&str] = &[
    "commit.quarantine-written",
    "commit.objects-moved",
    "commit.before-refs",
    "commit.after-refs",
];

fn rev(env: &TestEnv, r: &str) -> Option<String> {
    let run = env.git(&["rev-parse", "-q", "--verify", r]);
    (run.code == 0).then(|| run.stdout.trim().to_string())
}

/// The branch tip the task's record says it promoted, if any.
fn recorded_branch_tip(env: &TestEnv, task: &str) -> Option<String> {
    let toml = env
        .git(&["show", &format!("refs/agent/{task}/state:task.toml")])
        .ok()
        .stdout;
    let v: toml::Value = toml::from_str(&toml).unwrap();
    v.get("promoted")
        .and_then(|p| p.get("branch_tip"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
}

/// Objects no ref reaches (reflogs ignored).
fn unreachable(env: &TestEnv) -> BTreeSet<String> {
    env.git(&["fsck", "--unreachable", "--no-reflogs", "--no-progress"])
        .stdout
        .lines()
        .map(str::to_string)
        .collect()
}

/// Quarantines and half-copied objects a promotion may leave in `.git`.
fn leftovers(env: &TestEnv) -> Vec<String> {
    let mut out = Vec::new();
    let git = env.repo.join(".git");
    if let Ok(d) = std::fs::read_dir(git.join("git-agent/tmp")) {
        out.extend(
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("promote-")),
        );
    }
    let walk = walkdir(&git.join("objects"));
    out.extend(walk.into_iter().filter(|n| n.contains("tmp_git-agent")));
    out
}

fn walkdir(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(d) = std::fs::read_dir(dir) {
        for e in d.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[track_caller]
fn assert_fsck_clean(env: &TestEnv) {
    let fsck = env.git(&["fsck", "--no-progress", "--no-dangling"]);
    assert_eq!(fsck.code, 0, "{fsck}");
    assert!(!fsck.stdout.contains("missing"), "{fsck}");
}

/// kill -9 at every point of `commit`, three times each: the user's repository is
/// untouched, branch and record agree, no quarantine or stray object stays once the next
/// command ran, and `commit` again completes with the task's tree. Then a branch an
/// interrupted commit left (branch written, record not) is adopted, and one the user made
/// is refused.
#[test]
fn commit_killed_at_any_point_leaves_old_or_new_and_reruns() {
    require_docker!();
    commit_crash_matrix(&TestEnv::new());
}

/// The body of [`commit_killed_at_any_point_leaves_old_or_new_and_reruns`], for any runtime
/// (`orchestration.rs` runs it on the engine-less one).
pub fn commit_crash_matrix(env: &TestEnv) {
    env.agent(&[
        "spawn", "--name", "tx", "--wait", "-m", "x", "--", "sh", "-c", WORK,
    ])
    .ok();
    env.agent(&["sync", "tx"]).ok();
    // No container: every commit below promotes without a sync (fast, and no engine race).
    env.agent(&["rm", "tx"]).ok();
    let old_state = env.task_refs("tx")["state"].clone();
    let wip = env.task_refs("tx")["wip"].clone();
    let wip_tree = rev(env, &format!("{wip}^{{tree}}")).unwrap();
    let restore = || {
        env.git(&["update-ref", "refs/agent/tx/state", &old_state])
            .ok();
        env.git(&["update-ref", "-d", "refs/heads/agent/tx"]).ok();
    };

    for rep in 0..3 {
        for (i, point) in COMMIT_POINTS.iter().enumerate() {
            restore();
            let before = env.user_snapshot();
            let garbage = unreachable(env);
            let msg = format!("uncommitted work {rep} {i}");
            env.agent_crash_at(point, &["commit", "tx", "-m", &msg]);
            assert_eq!(before, env.user_snapshot(), "{point}: user's repository");
            let branch = rev(env, "refs/heads/agent/tx");
            assert_eq!(
                branch,
                recorded_branch_tip(env, "tx"),
                "{point}: branch and record disagree"
            );
            let applied = *point == "commit.after-refs";
            assert_eq!(branch.is_some(), applied, "{point}");

            // The next command (any) clears what the dead promotion left.
            env.agent(&["list"]).ok();
            assert_eq!(leftovers(env), Vec::<String>::new(), "{point}");
            if !applied {
                assert_eq!(garbage, unreachable(env), "{point}: stray objects");
            }
            assert_fsck_clean(env);

            let again = env.agent(&["commit", "tx", "-m", &msg]);
            if applied {
                let again = again.fails();
                assert!(again.stderr.contains("nothing new"), "{again}");
            } else {
                again.ok();
            }
            let tip = rev(env, "refs/heads/agent/tx").unwrap();
            assert_eq!(recorded_branch_tip(env, "tx").as_deref(), Some(&*tip));
            assert_eq!(rev(env, &format!("{tip}^{{tree}}")).unwrap(), wip_tree);
            assert_eq!(
                env.git(&["log", "-1", "--format=%B", &tip]).stdout.trim(),
                msg
            );
            assert_eq!(leftovers(env), Vec::<String>::new(), "{point}");
            assert_fsck_clean(env);
        }
    }

    // What the old code left after a kill: the branch (and its notes) without the record.
    let left = rev(env, "refs/heads/agent/tx").unwrap();
    env.git(&["update-ref", "refs/agent/tx/state", &old_state])
        .ok();
    let adopted = env
        .agent(&["commit", "tx", "-m", "uncommitted work 2 3"])
        .ok();
    assert!(adopted.stderr.contains("taken over"), "{adopted}");
    assert_eq!(rev(env, "refs/heads/agent/tx").unwrap(), left);
    assert_eq!(recorded_branch_tip(env, "tx"), Some(left));

    // A branch the user made is theirs.
    restore();
    env.git(&["branch", "agent/tx", "main"]).ok();
    let before = env.user_snapshot();
    let refused = env.agent(&["commit", "tx", "-m", "m"]).fails();
    assert!(refused.stderr.contains("already exists"), "{refused}");
    assert_eq!(before, env.user_snapshot());
    assert_eq!(rev(env, "refs/heads/agent/tx"), rev(env, "refs/heads/main"));
    assert_eq!(recorded_branch_tip(env, "tx"), None);
}

/// Every commit in `main..agent/<task>` is the user's, none of the task's raw commits is
/// reachable from it, and its tree is the task tip's.
#[track_caller]
fn assert_recreated(env: &TestEnv, task: &str) {
    let refs = env.task_refs(task);
    let tip = refs.get("wip").or(refs.get("head")).unwrap().clone();
    let branch = format!("agent/{task}");
    let committers = env
        .git(&["log", "--format=%cn <%ce>", &format!("main..{branch}")])
        .ok()
        .stdout;
    assert!(!committers.trim().is_empty(), "{task}: nothing promoted");
    for c in committers.lines() {
        assert_eq!(c, "Test User <test@example.com>", "{task}");
    }
    let raw = env
        .git(&["rev-list", &tip, "^main"])
        .ok()
        .stdout
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert!(!raw.is_empty());
    for r in raw {
        let reach = env.git(&["merge-base", "--is-ancestor", &r, &branch]);
        assert_eq!(reach.code, 1, "{task}: raw agent commit {r} is on {branch}");
    }
    assert_eq!(
        rev(env, &format!("{branch}^{{tree}}")),
        rev(env, &format!("{tip}^{{tree}}")),
        "{task}"
    );
}

/// Whatever branch or detached HEAD the agent used, every commit reaching the user's branch
/// is re-created as the user. Five concurrent commits of one task: one promotes, the others
/// wait and say there is nothing new.
#[test]
fn commits_under_the_snapshot_are_recreated_and_concurrent_commits_end_well() {
    require_docker!();
    let env = TestEnv::new();
    let tasks = [
        // (a) another branch left checked out, with uncommitted changes.
        (
            "ra",
            "set -e; git checkout -qb elsewhere; echo a > a; git add a; git commit -qm 'on another branch'; echo d >> README.md",
        ),
        // (b) its branch, then a detached HEAD with commits, and uncommitted changes.
        (
            "rb",
            "set -e; echo b > b; git add b; git commit -qm 'on its branch'; git checkout -q --detach; echo c > c; git add c; git commit -qm detached; echo d >> README.md",
        ),
        // (c) commits on its branch, resets it back, leaves changes.
        (
            "rc",
            "set -e; echo e > e; git add e; git commit -qm one; echo f > f; git add f; git commit -qm two; git reset -q --hard HEAD~2; echo g > g; git add g; git commit -qm three; echo d >> README.md",
        ),
        // (d) another branch left checked out with a clean tree: its commits still come home.
        (
            "rd",
            "set -e; git checkout -qb side; echo h > h; git add h; git commit -qm 'side work'",
        ),
        // (e) a detached HEAD with a clean tree.
        (
            "re",
            "set -e; git checkout -q --detach; echo i > i; git add i; git commit -qm 'detached work'",
        ),
    ];
    for (name, script) in tasks {
        env.agent(&[
            "spawn", "--name", name, "--wait", "-m", "x", "--", "sh", "-c", script,
        ])
        .ok();
    }
    let before = env.user_snapshot();

    // Five commits of `ra` at once, each syncing its (exited) task first.
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..5)
            .map(|_| s.spawn(|| env.agent(&["commit", "ra", "-m", "together"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = runs.iter().filter(|r| r.code == 0).count();
    assert_eq!(ok, 1, "{runs:#?}");
    for r in runs.iter().filter(|r| r.code != 0) {
        assert_eq!(r.code, 1, "{r}");
        assert!(r.stderr.contains("nothing new"), "{r}");
        assert!(r.stderr.contains("Hint: "), "{r}");
        assert!(
            !r.stderr
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == "409"),
            "{r}"
        );
    }

    env.agent(&["commit", "rb", "-m", "b work"]).ok();
    env.agent(&["commit", "rc", "-m", "c work"]).ok();
    // No uncommitted change: no message is needed and no extra commit is made.
    for (name, subject) in [("rd", "side work"), ("re", "detached work")] {
        env.agent(&["commit", name]).ok();
        let log = env
            .git(&["log", "--format=%s", &format!("main..agent/{name}")])
            .ok()
            .stdout;
        assert_eq!(log.trim(), subject, "{name}");
    }
    for (name, _) in tasks {
        assert_recreated(&env, name);
    }
    assert_eq!(before, env.user_snapshot());

    push_behaves_like_git_push(&env);
}

/// `push` against a local bare remote whose hook prints a pull-request link, as forges do.
fn push_behaves_like_git_push(env: &TestEnv) {
    let remote = env.home.path().join("forge.git");
    env.git(&["init", "-q", "--bare", remote.to_str().unwrap()])
        .ok();
    let hook = remote.join("hooks/post-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'Create a pull request for agent/ra on Forge:' >&2\necho '  https://forge.invalid/pr/new/agent/ra' >&2\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.git(&["remote", "add", "origin", remote.to_str().unwrap()])
        .ok();
    let ls_remote = |r: &str| {
        env.git(&["ls-remote", "origin", r])
            .ok()
            .stdout
            .split_whitespace()
            .next()
            .map(str::to_string)
    };

    // A missing remote is missing, not "rejected".
    let before = env.user_snapshot();
    let e = env.agent(&["push", "ra", "--remote", "nope"]).fails();
    assert!(e.stderr.contains("no remote named 'nope'"), "{e}");
    assert!(e.stderr.contains("git remote"), "{e}");
    assert!(!e.stderr.contains("rejected"), "{e}");
    // An unreachable one is unreachable.
    env.git(&["remote", "add", "gone", "/nonexistent/gone.git"])
        .ok();
    let before_gone = env.user_snapshot();
    let e = env.agent(&["push", "ra", "--remote", "gone"]).fails();
    assert!(e.stderr.contains("cannot reach remote 'gone'"), "{e}");
    assert!(!e.stderr.contains("rejected"), "{e}");
    assert_eq!(before_gone, env.user_snapshot());
    env.git(&["remote", "remove", "gone"]).ok();
    assert_eq!(before, env.user_snapshot());

    // Messages pass through, upstream set, notes travel.
    let pushed = env
        .agent(&["push", "ra", "--remote", "origin", "-u", "--notes"])
        .ok();
    assert!(
        pushed
            .stderr
            .contains("remote: Create a pull request for agent/ra on Forge:"),
        "{pushed}"
    );
    assert!(
        pushed
            .stderr
            .contains("https://forge.invalid/pr/new/agent/ra"),
        "{pushed}"
    );
    assert_eq!(
        env.git(&["config", "branch.agent/ra.remote"]).stdout.trim(),
        "origin"
    );
    assert_eq!(
        env.git(&["config", "branch.agent/ra.merge"]).stdout.trim(),
        "refs/heads/agent/ra"
    );
    assert_eq!(ls_remote("refs/heads/agent/ra"), rev(env, "agent/ra"));
    assert_eq!(ls_remote("refs/notes/agent"), rev(env, "refs/notes/agent"));

    // Killed after pushing, before the upstream is written: config untouched; push again
    // completes it.
    // (git itself updates the remote-tracking ref of what it pushed, as `git push` does.)
    let without_tracking = |mut s: std::collections::BTreeMap<String, String>| {
        let refs = s["refs"]
            .lines()
            .filter(|l| !l.starts_with("refs/remotes/origin/agent/rb "))
            .collect::<Vec<_>>()
            .join("\n");
        s.insert("refs".into(), refs);
        s
    };
    let before = without_tracking(env.user_snapshot());
    env.agent_crash_at("push.before-upstream", &["push", "rb", "-u"]);
    assert_eq!(before, without_tracking(env.user_snapshot()));
    assert_eq!(env.git(&["config", "branch.agent/rb.remote"]).code, 1);
    env.agent(&["push", "rb", "-u"]).ok();
    assert_eq!(
        env.git(&["config", "branch.agent/rb.merge"]).stdout.trim(),
        "refs/heads/agent/rb"
    );

    // A diverged remote branch: rejected, with the remote's reason.
    let other = env
        .git(&[
            "commit-tree",
            "main^{tree}",
            "-p",
            "main",
            "-m",
            "someone else's",
        ])
        .ok()
        .stdout
        .trim()
        .to_string();
    env.git(&[
        "push",
        "-q",
        "origin",
        &format!("{other}:refs/heads/agent/rc"),
    ])
    .ok();
    let before = env.user_snapshot();
    let e = env.agent(&["push", "rc"]).fails();
    assert!(e.stderr.contains("rejected"), "{e}");
    assert!(
        e.stderr.contains("fetch first") || e.stderr.contains("non-fast-forward"),
        "{e}"
    );
    assert!(!e.stderr.contains("cannot reach"), "{e}");
    assert_eq!(before, env.user_snapshot());
    assert_eq!(ls_remote("refs/heads/agent/rc"), Some(other));

    // commit-push takes the same options; the config default and its override.
    env.git(&["config", "--unset", "branch.agent/ra.remote"])
        .ok();
    env.git(&["config", "--unset", "branch.agent/ra.merge"])
        .ok();
    env.git(&["config", "agent.pushSetUpstream", "true"]).ok();
    env.agent(&[
        "commit-push",
        "ra",
        "--remote",
        "origin",
        "--no-set-upstream",
    ])
    .ok();
    assert_eq!(env.git(&["config", "branch.agent/ra.remote"]).code, 1);
    env.agent(&["commit-push", "ra", "--remote", "origin"]).ok();
    assert_eq!(
        env.git(&["config", "branch.agent/ra.remote"]).stdout.trim(),
        "origin"
    );
}

/// An agent that merges an old side of its history (a branch from a commit promoted before,
/// not the last promoted tip) gets that parent mapped to its promoted commit: no raw agent
/// commit ever goes under the user's branch.
#[test]
fn a_merge_of_old_promoted_history_is_recreated_too() {
    require_docker!();
    let env = TestEnv::new();
    let script = "set -e; echo 1 > a; git add a; git commit -qm c1; echo 2 > b; git add b; git commit -qm c2; \
        while [ ! -e /tmp/go ]; do sleep 0.1; done; \
        git checkout -qb side HEAD~1; echo s > s; git add s; git commit -qm s1; \
        git checkout -q -; git merge -q --no-ff -m merged side; sleep 300";
    env.agent(&["spawn", "--name", "om", "-m", "x", "--", "sh", "-c", script])
        .ok();
    let wait_for = |subject: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !env
            .docker_exec("om", "git log -1 --format=%s")
            .stdout
            .contains(subject)
        {
            assert!(std::time::Instant::now() < deadline, "no commit {subject}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_for("c2");
    env.agent(&["commit", "om"]).ok();
    env.docker_exec("om", "touch /tmp/go");
    wait_for("merged");
    env.agent(&["commit", "om"]).ok();
    assert_recreated(&env, "om");
    assert_eq!(
        env.git(&["rev-list", "--count", "--merges", "main..agent/om"])
            .ok()
            .stdout
            .trim(),
        "1"
    );
    assert_fsck_clean(&env);
}

/// An agent's script making `n` one-file commits with `git fast-import` (quick even for
/// thousands), then a side branch merged back: a long history with a merge in it.
#[cfg(feature = "local-runtime")]
fn long_history(n: usize) -> String {
    format!(
        r#"set -e
b=$(git symbolic-ref HEAD)
p=$(git rev-parse HEAD)
i=1
{{
while [ $i -le {n} ]; do
  printf 'commit %s\ncommitter git-agent sandbox <agent@sandbox.invalid> %d +0000\ndata <<EOM\nstep %d\n\nbody of step %d\nEOM\n' "$b" $((1700000000 + i)) $i $i
  [ $i -eq 1 ] && printf 'from %s\n' "$p"
  printf 'M 100644 inline f%d.txt\ndata <<EOM\nline %d\nEOM\n\n' $((i % 50)) $i
  i=$((i + 1))
done
}} | git fast-import --quiet
git reset -q --hard
git checkout -q -b side HEAD~7
echo side > side.txt && git add side.txt && git commit -qm 'side work'
git checkout -q -
git merge -q --no-ff -m 'merge side' side
echo made $(git rev-list --count HEAD)
"#
    )
}

/// A task `name` on the local runtime whose agent made [`long_history`]`(n)`, synced.
#[cfg(feature = "local-runtime")]
fn long_task(env: &TestEnv, name: &str, n: usize) {
    let run = env
        .agent(&[
            "spawn",
            "--name",
            name,
            "--wait",
            "-m",
            "x",
            "--",
            "sh",
            "-c",
            &long_history(n),
        ])
        .ok();
    // n commits, the side commit, the merge, and the repository's initial commit.
    assert!(run.stderr.contains(&format!("made {}", n + 3)), "{run}");
    env.agent(&["sync", name]).ok();
    // No container: commit promotes without a sync first.
    env.agent(&["rm", name]).ok();
}

/// What promotion wrote before it wrote packs, made again here with git's own tools: the
/// task's range exported and re-imported by `git fast-import` with the user as author and
/// committer (each commit on the agent's tree, its message and its parents kept), into a
/// scratch repository borrowing the user's objects. Its tip.
#[cfg(feature = "local-runtime")]
fn recreated_by_fast_import(env: &TestEnv, base: &str, head: &str, scratch: &Path) -> String {
    let export = env
        .git(&[
            "fast-export",
            "--no-data",
            "--reference-excluded-parents",
            "--signed-tags=strip",
            head,
            &format!("^{base}"),
        ])
        .ok()
        .stdout
        .into_bytes();
    let author = env.git(&["var", "GIT_AUTHOR_IDENT"]).ok().stdout;
    let committer = env.git(&["var", "GIT_COMMITTER_IDENT"]).ok().stdout;
    let mut stream = Vec::new();
    let mut i = 0;
    while i < export.len() {
        let end = export[i..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(export.len(), |p| i + p + 1);
        let line = &export[i..end];
        if let Some(n) = line.strip_prefix(b"data ") {
            let n: usize = String::from_utf8_lossy(n).trim().parse().unwrap();
            stream.extend_from_slice(line);
            stream.extend_from_slice(&export[end..end + n]);
            i = end + n;
            continue;
        }
        if line.starts_with(b"commit ") {
            stream.extend_from_slice(b"commit refs/heads/x\n");
        } else if line.starts_with(b"reset ") {
            stream.extend_from_slice(b"reset refs/heads/x\n");
        } else if line.starts_with(b"author ") {
            stream.extend_from_slice(format!("author {}\n", author.trim()).as_bytes());
        } else if line.starts_with(b"committer ") {
            stream.extend_from_slice(format!("committer {}\n", committer.trim()).as_bytes());
        } else {
            stream.extend_from_slice(line);
        }
        i = end;
    }
    import(env, scratch, &stream);
    scratch_git(env, scratch, &["rev-parse", "refs/heads/x"])
}

#[cfg(feature = "local-runtime")]
fn scratch_git(env: &TestEnv, scratch: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", env.home.path())
        .arg("--git-dir")
        .arg(scratch)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[cfg(feature = "local-runtime")]
fn import(env: &TestEnv, scratch: &Path, stream: &[u8]) {
    let mut child = Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", env.home.path())
        .arg("--git-dir")
        .arg(scratch)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stream).unwrap();
    assert!(child.wait().unwrap().success());
}

/// A few thousand agent commits with a merge, promoted in process as one pack: the branch is
/// object for object what `git fast-import` (the previous implementation) made of the same
/// range (same trees, parents, messages and the user's identity, so the same commit ids),
/// and the notes tree is the one fast-import lays out for the same notes, each note naming
/// its source commit. One pack came in, and git finds nothing wrong.
#[test]
#[cfg(feature = "local-runtime")]
fn a_long_history_is_recreated_as_fast_import_recreated_it() {
    let env = TestEnv::local();
    const N: usize = 3000;
    long_task(&env, "long", N);
    let refs = env.task_refs("long");
    let (base, head) = (refs["base"].clone(), refs["head"].clone());
    let packs_before = walkdir(&env.repo.join(".git/objects/pack")).len();

    let done = env.agent(&["commit", "long"]).ok();
    assert!(
        done.stderr
            .contains(&format!("{} commits on agent/long", N + 2)),
        "{done}"
    );
    assert!(
        !done.stderr.contains("re-creating"),
        "quick: no progress lines: {done}"
    );
    let tip = rev(&env, "refs/heads/agent/long").unwrap();
    let packs: Vec<String> = walkdir(&env.repo.join(".git/objects/pack"));
    assert_eq!(
        packs.len(),
        packs_before + 2,
        "one pack and its index: {packs:?}"
    );

    let scratch = env.home.path().join("scratch.git");
    env.git(&["init", "-q", "--bare", scratch.to_str().unwrap()])
        .ok();
    std::fs::write(
        scratch.join("objects/info/alternates"),
        format!("{}\n", env.repo.join(".git/objects").display()),
    )
    .unwrap();
    let expected = recreated_by_fast_import(&env, &base, &head, &scratch);
    assert_eq!(tip, expected, "the branch is what fast-import made");
    assert_eq!(
        env.git(&["rev-list", "--count", "--merges", &tip, &format!("^{base}")])
            .ok()
            .stdout
            .trim(),
        "1"
    );

    // The same notes laid out by fast-import give the same notes tree.
    let committer = env.git(&["var", "GIT_COMMITTER_IDENT"]).ok().stdout;
    let mut stream = format!(
        "commit refs/notes/x\ncommitter {}\ndata 0\n",
        committer.trim()
    );
    let listed = env.git(&["notes", "--ref=agent", "list"]).ok().stdout;
    assert_eq!(listed.lines().count(), N + 2);
    for l in listed.lines() {
        let (blob, commit) = l.split_once(' ').unwrap();
        stream += &format!("N {blob} {commit}\n");
    }
    stream += "\n";
    import(&env, &scratch, stream.as_bytes());
    assert_eq!(
        rev(&env, "refs/notes/agent^{tree}").unwrap(),
        scratch_git(&env, &scratch, &["rev-parse", "refs/notes/x^{tree}"]),
        "the notes tree is what fast-import lays out"
    );
    for (promoted, source) in [
        (tip.clone(), head.clone()),
        (format!("{tip}^"), format!("{head}^")),
    ] {
        let note = env
            .git(&["notes", "--ref=agent", "show", &promoted])
            .ok()
            .stdout;
        let source = rev(&env, &source).unwrap();
        assert!(
            note.contains(&format!("git-agent-source: {source}")),
            "{note}"
        );
    }
    assert_fsck_clean(&env);
    let verify = env.git(&["fsck", "--strict", "--no-dangling", "--no-progress"]);
    assert_eq!(verify.code, 0, "{verify}");
}

/// A promotion of a few thousand commits killed (SIGKILL) half-way: with its pack written in
/// the quarantine, with the pack moved into the user's object store, and right before the
/// ref transaction. Each time the user's refs, branches and notes are unchanged, and once the
/// next command ran, the object store is exactly as before (the moved pack is taken back).
/// Then the promotion completes.
#[test]
#[cfg(feature = "local-runtime")]
fn a_long_promotion_killed_half_way_leaves_nothing() {
    let env = TestEnv::local();
    const N: usize = 3000;
    long_task(&env, "long", N);
    let store = |env: &TestEnv| {
        let mut files = walkdir(&env.repo.join(".git/objects"));
        files.sort();
        files
    };
    let snapshot = env.snapshot();
    let objects = store(&env);
    for point in [
        "commit.quarantine-written",
        "commit.objects-moved",
        "commit.before-refs",
    ] {
        env.agent_crash_at(point, &["commit", "long"]);
        assert_eq!(
            snapshot["refs"],
            env.snapshot()["refs"],
            "{point}: refs, branches or notes changed"
        );
        env.agent(&["list"]).ok();
        assert_eq!(leftovers(&env), Vec::<String>::new(), "{point}");
        assert_eq!(store(&env), objects, "{point}: objects left behind");
        assert_fsck_clean(&env);
    }
    let done = env.agent(&["commit", "long"]).ok();
    assert!(
        done.stderr
            .contains(&format!("{} commits on agent/long", N + 2)),
        "{done}"
    );
    assert_eq!(
        rev(&env, "agent/long^{tree}"),
        rev(&env, "refs/agent/long/head^{tree}")
    );
    assert_fsck_clean(&env);
}
