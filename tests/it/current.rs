//! Keeping tasks current: `check` (read-only: ahead/behind, a merge computed in the object
//! database, promoted/pushed/merged, review flags) and `update` (re-basing a finished task in
//! the object database, its refs and sandbox moved together; a conflict changes nothing).

use serde_json::Value;

use crate::common::TestEnv;
use crate::require_docker;

fn rev(env: &TestEnv, r: &str) -> String {
    env.git(&["rev-parse", r]).ok().stdout.trim().to_string()
}

fn commit_on_main(env: &TestEnv, file: &str, text: &str) -> String {
    env.write(file, text);
    env.git(&["add", file]).ok();
    env.git(&["commit", "-qm", &format!("user: {file}")]).ok();
    rev(env, "main")
}

/// Every object in the repository (loose and packed), so a check can be shown to write none.
fn objects(env: &TestEnv) -> String {
    env.git(&["count-objects", "-v"]).ok().stdout
}

fn spawn_done(env: &TestEnv, name: &str, script: &str) {
    env.agent(&[
        "spawn", "--name", name, "--wait", "-m", "x", "--", "sh", "-c", script,
    ])
    .ok();
    env.agent(&["sync", name]).ok();
}

#[test]
fn check_reports_and_update_moves_a_clean_task_with_its_sandbox() {
    require_docker!();
    let env = TestEnv::new();
    env.finished_task("cur", "feature.txt");
    let main = commit_on_main(&env, "other.txt", "user\n");

    let (refs, snap, objs) = (env.task_refs("cur"), env.snapshot(), objects(&env));
    let c: Value = env.json(&["check", "cur", "--json"]);
    assert_eq!(
        (c["ahead"].as_u64(), c["behind"].as_u64()),
        (Some(1), Some(1)),
        "{c}"
    );
    assert_eq!(c["merge"]["clean"], true, "{c}");
    assert_eq!(c["compared_with"]["rev"], "refs/heads/main");
    assert_eq!(c["compared_with"]["commit"], main.as_str());
    assert_eq!(c["compared_with"]["detached"], false);
    assert!(
        c["promoted"].is_null() && c["pushed"].is_null() && c["merged"].is_null(),
        "{c}"
    );
    assert_eq!(c["running"], false);
    let text = env.agent(&["check", "cur"]).ok().stdout;
    assert!(text.contains("commits:   1 ahead, 1 behind"), "{text}");
    assert!(text.contains("merge:     clean"), "{text}");
    // Read-only: no ref, record, object or file of the user's changed.
    assert_eq!(env.task_refs("cur"), refs);
    assert_eq!(env.snapshot(), snap);
    assert_eq!(objects(&env), objs);

    let run = env.agent(&["update", "cur"]).ok();
    assert!(
        run.stdout
            .contains("updated task cur: 1 commit re-created on main"),
        "{run}"
    );
    let refs = env.task_refs("cur");
    assert_eq!(refs["base"], main);
    assert_eq!(rev(&env, &format!("{}^", refs["head"])), main);
    let changed = env
        .git(&["diff", "--name-only", &refs["base"], &refs["head"]])
        .ok()
        .stdout;
    assert_eq!(changed.trim(), "feature.txt");
    // The sandbox's branch is the re-based head, with a clean work tree.
    let inside = env.finished_exec(
        "cur",
        "cd /workspace && git -c safe.directory='*' rev-parse refs/heads/agent/cur && git -c safe.directory='*' status --porcelain && cat other.txt",
    );
    assert_eq!(inside.code, 0, "{inside}");
    assert_eq!(
        inside.stdout,
        format!("{}\nuser\n", refs["head"]),
        "{inside}"
    );
    // The update is in the task's state history, and a new sync changes nothing.
    let history = env
        .git(&["log", "--format=%s", "refs/agent/cur/state"])
        .ok()
        .stdout;
    assert!(
        history
            .lines()
            .any(|l| l.starts_with("update: 1 commit onto main")),
        "{history}"
    );
    let sync = env.agent(&["sync", "cur"]).ok();
    assert!(sync.stderr.contains("nothing new"), "{sync}");
    assert_eq!(env.task_refs("cur")["head"], refs["head"]);

    let review = env.agent(&["review", "cur"]).ok().stdout;
    assert!(
        review.contains("feature.txt") && !review.contains("other.txt"),
        "{review}"
    );
    let c: Value = env.json(&["check", "cur", "--json"]);
    assert_eq!(
        (c["ahead"].as_u64(), c["behind"].as_u64()),
        (Some(1), Some(0)),
        "{c}"
    );
    // An update with nothing new to move onto says so.
    let again = env.agent(&["update", "cur"]).ok();
    assert!(again.stdout.contains("is based on"), "{again}");

    // Promoted onto the new base; then pushed; then merged.
    env.agent(&["commit", "cur", "-m", "feature"]).ok();
    assert_eq!(rev(&env, "agent/cur^"), main);
    let c: Value = env.json(&["check", "cur", "--json"]);
    assert_eq!(c["promoted"]["branch"], "agent/cur", "{c}");
    assert!(c["pushed"].is_null() && c["merged"].is_null(), "{c}");
    let remote = env.home.path().join("remote.git");
    env.git(&["init", "-q", "--bare", remote.to_str().unwrap()])
        .ok();
    env.git(&["remote", "add", "origin", remote.to_str().unwrap()])
        .ok();
    env.agent(&["push", "cur"]).ok();
    let c: Value = env.json(&["check", "cur", "--json"]);
    assert_eq!(c["pushed"]["contains"], true, "{c}");
    assert_eq!(c["pushed"]["remote_branch"], "origin/agent/cur", "{c}");
    env.git(&["merge", "-q", "--ff-only", "agent/cur"]).ok();
    let c: Value = env.json(&["check", "cur", "--json"]);
    assert_eq!(c["merged"]["how"], "contained", "{c}");
    assert_eq!(c["merged"]["into"], "main", "{c}");
    // Promoted work is not re-based behind the user's back.
    commit_on_main(&env, "later.txt", "later\n");
    let refused = env.agent(&["update", "cur"]).fails();
    assert!(
        refused.stderr.contains("is promoted to agent/cur already"),
        "{refused}"
    );
}

#[test]
fn a_conflict_is_reported_and_changes_nothing() {
    require_docker!();
    let env = TestEnv::new();
    spawn_done(
        &env,
        "clash",
        "echo agent > README.md && echo keep > mine.txt && git add -A && git commit -qm agent && echo wip > wip.txt",
    );
    commit_on_main(&env, "README.md", "user\n");
    let c: Value = env.json(&["check", "clash", "--json"]);
    assert_eq!(c["merge"]["clean"], false, "{c}");
    assert_eq!(
        c["merge"]["conflicts"],
        serde_json::json!(["README.md"]),
        "{c}"
    );
    assert_eq!(c["uncommitted"], true, "{c}");
    let text = env.agent(&["check", "clash"]).ok().stdout;
    assert!(
        text.contains("conflicts in 1 file\n           README.md"),
        "{text}"
    );

    let (refs, snap) = (env.task_refs("clash"), env.snapshot());
    let record = env
        .git(&["show", "refs/agent/clash/state:task.toml"])
        .ok()
        .stdout;
    let run = env.agent(&["update", "clash"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("conflicts in 1 file"), "{run}");
    assert!(run.stderr.contains("\n  README.md\n"), "{run}");
    assert!(run.stderr.contains("nothing was changed"), "{run}");
    assert_eq!(env.task_refs("clash"), refs);
    assert_eq!(env.snapshot(), snap);
    assert_eq!(
        env.git(&["show", "refs/agent/clash/state:task.toml"])
            .ok()
            .stdout,
        record
    );
    // --onto a commit it applies on carries the uncommitted changes along.
    let side = rev(&env, "main^");
    env.git(&["branch", "side", &side]).ok();
    let run = env.agent(&["update", "clash", "--onto", "side"]);
    assert!(run.stdout.contains("is based on"), "{run}");
}

#[test]
fn update_carries_uncommitted_changes_and_refuses_a_running_task() {
    require_docker!();
    let env = TestEnv::new();
    spawn_done(
        &env,
        "wipper",
        "echo one > one.txt && git add one.txt && git commit -qm one && echo more >> one.txt && echo new > new.txt",
    );
    let main = commit_on_main(&env, "other.txt", "user\n");
    env.agent(&["update", "wipper"]).ok();
    let refs = env.task_refs("wipper");
    assert_eq!(rev(&env, &format!("{}^", refs["head"])), main);
    assert_eq!(rev(&env, &format!("{}^", refs["wip"])), refs["head"]);
    let inside = env.finished_exec(
        "wipper",
        "cd /workspace && git -c safe.directory='*' status --porcelain && cat one.txt",
    );
    assert_eq!(
        inside.stdout, " M one.txt\n?? new.txt\none\nmore\n",
        "{inside}"
    );

    env.agent(&["spawn", "--name", "busy", "-m", "x", "--", "sleep", "60"])
        .ok();
    let run = env.agent(&["update", "busy"]).fails();
    assert!(run.stderr.contains("is still running"), "{run}");
    env.agent(&["purge", "busy", "--refs", "--yes"]);
}

#[test]
fn update_runs_nothing_the_agent_planted_and_bad_refs_are_errors() {
    require_docker!();
    let env = TestEnv::new();
    let marker = env.home.path().join("pwned");
    let m = marker.display();
    // Hooks, fsmonitor and drivers that would write the marker if the host ran git in the
    // sandbox's repository (or honoured its attributes).
    spawn_done(
        &env,
        "evil",
        &format!(
            "printf '* merge=evil filter=evil\\n' > .gitattributes; echo x > x.txt; git add -A; git commit -qm evil; \
             mkdir -p .git/hooks && for h in post-checkout post-rewrite reference-transaction post-merge; do printf '#!/bin/sh\\ntouch \"{m}\" 2>/dev/null; exit 0\\n' > .git/hooks/$h; chmod +x .git/hooks/$h; done; \
             git config core.fsmonitor 'touch \"{m}\"'; git config merge.evil.driver 'touch \"{m}\"'; \
             git config filter.evil.clean 'touch \"{m}\"'"
        ),
    );
    commit_on_main(&env, "other.txt", "user\n");
    let snap = env.snapshot();
    env.agent(&["update", "evil"]).ok();
    env.agent(&["check", "evil"]).ok();
    assert!(!marker.exists(), "the host ran something the agent planted");
    assert_eq!(env.snapshot(), snap);

    // A task ref pointing at something that is no commit is a clear error.
    let blob = env
        .git(&["hash-object", "-w", "--stdin"])
        .stdout
        .trim()
        .to_string();
    let blob = if blob.is_empty() {
        rev(&env, "main:README.md")
    } else {
        blob
    };
    env.git(&["update-ref", "refs/agent/evil/head", &blob]).ok();
    let run = env.agent(&["check", "evil"]).fails();
    assert!(
        run.stderr
            .contains("refs/agent/evil/head does not name a commit"),
        "{run}"
    );
    let refs = env.task_refs("evil");
    let run = env.agent(&["update", "evil"]).fails();
    assert!(run.stderr.contains("does not name a commit"), "{run}");
    assert_eq!(env.task_refs("evil"), refs);
}

/// An exec agent that first commits a change to README.md (which the user changes too) and
/// another file; run again with a follow-up (update --agent's prompt on stdin), it does
/// `then` when README.md holds conflict markers and the prompt names that file.
fn conflicted_agent(then: &str) -> String {
    format!(
        r#"prompt="$(cat)"
if grep -q '^<<<<<<<' README.md; then
  case "$prompt" in *"- README.md"*) ;; *) echo "no file list in: $prompt" >&2; exit 9 ;; esac
  {then}
  exit
fi
echo agent > README.md && git add -A && git commit -qm agent
echo b > b.txt && git add b.txt && git commit -qm b"#
    )
}

#[test]
fn update_agent_hands_a_conflict_to_the_agent_which_resolves_it() {
    require_docker!();
    let env = TestEnv::new();
    spawn_done(
        &env,
        "fixes",
        &conflicted_agent(
            "printf 'user\\nagent\\n' > README.md && git add -A && git commit -qm resolved",
        ),
    );
    let main = commit_on_main(&env, "README.md", "user\n");
    let snap = env.snapshot();
    let run = env.agent(&["update", "fixes", "--agent"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .contains("its agent resolved the conflicts in 1 file"),
        "{run}"
    );
    // The user's branches, index and work tree are as they were.
    assert_eq!(env.snapshot(), snap);
    let refs = env.task_refs("fixes");
    assert_eq!(refs.get("base"), Some(&main));
    let tip = refs
        .get("wip")
        .or(refs.get("head"))
        .expect("the task has work")
        .clone();
    assert_eq!(
        env.git(&["show", &format!("{tip}:README.md")]).ok().stdout,
        "user\nagent\n"
    );
    assert_eq!(
        env.git(&["show", &format!("{tip}:b.txt")]).ok().stdout,
        "b\n"
    );
    // The agent got one follow-up, and the work now merges cleanly.
    let status = env.json(&["status", "fixes", "--json"]);
    assert_eq!(status["followups"], 1, "{status}");
    let c: Value = env.json(&["check", "fixes", "--json"]);
    assert_eq!(c["merge"]["clean"], true, "{c}");
    env.agent(&["merge", "fixes"]).ok();
    assert_eq!(
        std::fs::read_to_string(env.repo.join("README.md")).unwrap(),
        "user\nagent\n"
    );
}

#[test]
fn update_agent_puts_the_task_back_when_the_agent_gives_up() {
    require_docker!();
    let env = TestEnv::new();
    spawn_done(
        &env,
        "stuck",
        &conflicted_agent("echo 'cannot' >&2; exit 3"),
    );
    commit_on_main(&env, "README.md", "user\n");
    let (refs, snap) = (env.task_refs("stuck"), env.snapshot());
    let run = env.agent(&["update", "stuck", "--agent"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("conflicts in 1 file"), "{run}");
    assert!(
        run.stderr
            .contains("the agent did not resolve it: the agent's run exited with 3"),
        "{run}"
    );
    assert_eq!(env.snapshot(), snap);
    let now = env.task_refs("stuck");
    for leaf in ["base", "head", "wip"] {
        assert_eq!(now.get(leaf), refs.get(leaf), "{leaf}");
    }
    // Its workspace has its old work again: a plain update still reports the conflict, and
    // a sync brings back exactly the work it had.
    env.agent(&["sync", "stuck"]).ok();
    let synced = env.task_refs("stuck");
    assert_eq!(synced.get("head"), refs.get("head"));
    assert_eq!(synced.get("base"), refs.get("base"));
    let run = env.agent(&["update", "stuck"]);
    assert_eq!(run.code, 1, "{run}");
}
