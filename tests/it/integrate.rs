//! Integration (issue 12, item 4) against a real engine and real git: partial review and
//! commit by pathspec (the rest promoted later), `git agent merge` with the user's signing and
//! hooks (merge, --squash, --rebase, refusals, a conflict left to git), and `review --compare`
//! of a group of attempts. Attack: files named like options or holding a newline go through
//! partial commits and a squash merge without reaching a command line.

use std::process::Command;

use crate::common::TestEnv;
use crate::require_docker;

/// An SSH signing key in the test's HOME, used by the user's git for every commit.
fn sign_with_ssh(env: &TestEnv) {
    let key = env.home.path().join("signing key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = env.home.path().join("allowed_signers");
    std::fs::write(&allowed, format!("test@example.com {pubkey}")).unwrap();
    env.git(&["config", "gpg.format", "ssh"]).ok();
    env.git(&["config", "user.signingKey", key.to_str().unwrap()])
        .ok();
    env.git(&[
        "config",
        "gpg.ssh.allowedSignersFile",
        allowed.to_str().unwrap(),
    ])
    .ok();
    env.git(&["config", "commit.gpgSign", "true"]).ok();
}

fn rev(env: &TestEnv, r: &str) -> String {
    env.git(&["rev-parse", r]).ok().stdout.trim().to_string()
}

fn tree_files(env: &TestEnv, r: &str) -> Vec<String> {
    env.git(&["ls-tree", "-r", "-z", "--name-only", r])
        .ok()
        .stdout
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A pathspec promotes only its paths' changes (commits left empty are dropped, the note says
/// it was partial), another pathspec and then a full commit promote the rest on top, and the
/// branch ends with exactly the task's tree. Files named like options, or with a newline in
/// their name, travel as data: nothing runs, and a squash merge brings them in.
#[test]
fn partial_review_and_commit_then_the_rest_with_hostile_names() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "part",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "set -e
mkdir -p a b
echo a1 > a/x && echo b1 > b/y && git add -A && git commit -qm both
echo a2 > a/x && git add -A && git commit -qm 'only a'
echo opt > './--exec=touch pwned' && echo n > ./-n && echo nl > \"$(printf 'new\\nline')\"
git add -A && git commit -qm hostile
echo b2 > b/y",
    ])
    .ok();
    env.agent(&["sync", "part"]).ok();
    let wip = env.task_refs("part")["wip"].clone();

    // review -- a shows a's changes only, in the text and in JSON.
    let stat = env
        .agent(&["review", "part", "--stat", "--", "a"])
        .ok()
        .stdout;
    assert!(stat.contains("a/x"), "{stat}");
    assert!(!stat.contains("b/y") && !stat.contains("pwned"), "{stat}");
    let json = env.json(&["review", "part", "--json", "--", "a"]);
    let files: Vec<&str> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["a/x"]);

    // commit -- a: two commits (both, only a), a/x only; the rest is dropped; no message
    // needed, as the uncommitted change is outside the pathspec.
    let base = rev(&env, "main");
    env.agent(&["commit", "part", "--", "a"]).ok();
    assert_eq!(
        env.git(&["log", "--format=%s", &format!("{base}..agent/part")])
            .ok()
            .stdout
            .trim(),
        "only a\nboth"
    );
    let files = tree_files(&env, "agent/part");
    assert!(files.contains(&"a/x".to_string()), "{files:?}");
    assert!(!files.iter().any(|f| f.starts_with("b/") || f == "-n"));
    assert_eq!(env.git(&["show", "agent/part~1:a/x"]).ok().stdout, "a1\n");
    let note = env
        .git(&["notes", "--ref=agent", "show", "agent/part"])
        .ok()
        .stdout;
    assert!(note.contains("git-agent-pathspec: [\"a\"]"), "{note}");
    let status = env.agent(&["status", "part"]).ok().stdout;
    assert!(status.contains(" (partial: a)"), "{status}");
    // Nothing more in that pathspec.
    let again = env.agent(&["commit", "part", "--", "a"]).fails();
    assert!(
        again
            .stderr
            .contains("Error: task 'part' has no changes to commit in a"),
        "{again}"
    );

    // Another pathspec that looks like an option is only a path.
    env.agent(&["commit", "part", "--", "-n"]).ok();
    assert_eq!(
        env.git(&["log", "-1", "--format=%s", "agent/part"])
            .ok()
            .stdout
            .trim(),
        "hostile"
    );
    assert_eq!(env.git(&["show", "agent/part:-n"]).ok().stdout, "n\n");
    assert!(
        !tree_files(&env, "agent/part")
            .iter()
            .any(|f| f.contains("pwned"))
    );

    // The rest: b's changes, the other hostile files, and the uncommitted change with its
    // message; the branch's tree is the task's.
    env.agent(&["commit", "part", "-m", "rest"]).ok();
    assert_eq!(
        rev(&env, "agent/part^{tree}"),
        rev(&env, &format!("{wip}^{{tree}}"))
    );
    let subjects = env
        .git(&["log", "--format=%s", &format!("{base}..agent/part")])
        .ok()
        .stdout;
    assert_eq!(
        subjects.trim(),
        "rest\nhostile\nboth\nhostile\nonly a\nboth",
        "each replay keeps only what was not promoted"
    );
    let note = env
        .git(&["notes", "--ref=agent", "show", "agent/part"])
        .ok()
        .stdout;
    assert!(!note.contains("git-agent-pathspec"), "{note}");
    let status = env.agent(&["status", "part"]).ok().stdout;
    assert!(!status.contains("partial"), "{status}");
    let done = env.agent(&["commit", "part", "-m", "again"]).fails();
    assert!(done.stderr.contains("nothing new to commit"), "{done}");

    // A squash merge brings the odd names in as files; nothing ran.
    env.agent(&["merge", "part", "--squash", "--no-edit"]).ok();
    let files = tree_files(&env, "HEAD");
    for f in ["--exec=touch pwned", "-n", "new\nline", "a/x", "b/y"] {
        assert!(files.contains(&f.to_string()), "{f:?} in {files:?}");
    }
    assert!(!env.repo.join("pwned").exists());
    assert_eq!(
        std::fs::read_to_string(env.repo.join("new\nline")).unwrap(),
        "nl\n"
    );
}

/// merge refuses a dirty tree and a detached HEAD (changing nothing), merges with the user's
/// signing and hooks, squashes, rebases, leaves a conflict to git, and records the merge.
#[test]
fn merge_with_the_users_git_signing_and_hooks() {
    require_docker!();
    let env = TestEnv::new();
    let initial = rev(&env, "HEAD");
    env.agent(&[
        "spawn",
        "--name",
        "m",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "set -e
echo task > task.txt && git add task.txt && git commit -qm 'task file'
echo 'agent readme' > README.md && git add README.md && git commit -qm readme",
    ])
    .ok();
    env.agent(&["sync", "m"]).ok();
    sign_with_ssh(&env);
    env.write("other.txt", "user\n");
    env.git(&["add", "other.txt"]).ok();
    env.git(&["commit", "-qm", "user work"]).ok();
    let user_tip = rev(&env, "HEAD");

    // Refusals change nothing and promote nothing.
    env.write("README.md", "local edit\n");
    let dirty = env.agent(&["merge", "m", "--no-edit"]).fails();
    assert!(
        dirty
            .stderr
            .contains("Error: your work tree has changes to tracked files; nothing was merged"),
        "{dirty}"
    );
    assert!(dirty.stderr.contains("Hint: commit or stash"), "{dirty}");
    assert_eq!(rev(&env, "HEAD"), user_tip);
    assert_eq!(
        std::fs::read_to_string(env.repo.join("README.md")).unwrap(),
        "local edit\n"
    );
    assert!(env.git(&["rev-parse", "--verify", "-q", "agent/m"]).code != 0);
    env.git(&["checkout", "-q", "README.md"]).ok();
    env.git(&["checkout", "-q", "--detach"]).ok();
    let detached = env.agent(&["merge", "m", "--no-edit"]).fails();
    assert!(detached.stderr.contains("HEAD is detached"), "{detached}");
    env.git(&["checkout", "-q", "main"]).ok();

    // The user's hooks must run: they leave markers.
    let hooks = env.repo.join(".git/hooks");
    let marker = |name: &str| env.home.path().join(format!("{name}.ran"));
    for hook in ["pre-commit", "commit-msg"] {
        let path = hooks.join(hook);
        std::fs::write(
            &path,
            format!("#!/bin/sh\ntouch '{}'\n", marker(hook).display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // merge: promoted, then a signed merge commit by the user's git, its commit-msg hook run.
    let merged = env.agent(&["merge", "m", "--no-edit"]).ok();
    let head = rev(&env, "HEAD");
    assert_eq!(merged.stdout.trim(), head);
    assert_eq!(rev(&env, "HEAD^1"), user_tip);
    assert_eq!(rev(&env, "HEAD^2"), rev(&env, "agent/m"));
    env.git(&["verify-commit", "HEAD"]).ok();
    env.git(&["verify-commit", "agent/m"]).ok();
    assert!(
        marker("commit-msg").exists(),
        "the user's commit-msg hook ran"
    );
    let status = env.agent(&["status", "m"]).ok().stdout;
    assert!(
        status.contains(&format!("merged:    into main at {head} (merge)")),
        "{status}"
    );
    let list = env.agent(&["list"]).ok().stdout;
    assert!(list.contains("(merged)"), "{list}");

    // --squash: one signed commit through `git commit`, with the pre-commit hook.
    std::fs::remove_file(marker("pre-commit")).ok();
    env.git(&["checkout", "-q", "-b", "sq", &initial]).ok();
    env.agent(&["merge", "m", "--squash", "--no-edit"]).ok();
    assert_eq!(rev(&env, "HEAD^"), initial);
    assert!(env.git(&["rev-parse", "-q", "--verify", "HEAD^2"]).code != 0);
    assert_eq!(env.git(&["show", "HEAD:task.txt"]).ok().stdout, "task\n");
    env.git(&["verify-commit", "HEAD"]).ok();
    assert!(
        marker("pre-commit").exists(),
        "the user's pre-commit hook ran"
    );
    let st = env.json(&["status", "m", "--json"]);
    assert_eq!(st["merged"]["how"], "squash", "{st}");
    assert_eq!(st["merged"]["into"], "sq", "{st}");

    // --rebase: the work replayed onto the branch, signed, no merge commit.
    env.git(&["checkout", "-q", "-b", "rb", &user_tip]).ok();
    env.agent(&["merge", "m", "--rebase"]).ok();
    assert_eq!(rev(&env, "HEAD~2"), user_tip);
    assert_eq!(
        env.git(&["rev-list", "--merges", "--count", "HEAD"])
            .ok()
            .stdout
            .trim(),
        "0"
    );
    assert_eq!(
        rev(&env, "HEAD^{tree}"),
        rev(&env, "main^{tree}"),
        "the same content as the merge"
    );
    env.git(&["verify-commit", "HEAD"]).ok();

    // A conflict leaves git's own state, says how to finish or abort, and records nothing.
    env.git(&["checkout", "-q", "-b", "cf", &initial]).ok();
    env.write("README.md", "user readme\n");
    env.git(&["commit", "-qam", "user readme"]).ok();
    let cf_tip = rev(&env, "HEAD");
    let conflict = env.agent(&["merge", "m", "--no-edit"]).fails();
    assert!(
        conflict
            .stderr
            .contains("Error: merging agent/m into cf stopped with conflicts"),
        "{conflict}"
    );
    assert!(conflict.stderr.contains("git merge --abort"), "{conflict}");
    assert!(env.repo.join(".git/MERGE_HEAD").exists());
    let again = env.agent(&["merge", "m", "--no-edit"]).fails();
    assert!(again.stderr.contains("a merge is in progress"), "{again}");
    env.git(&["merge", "--abort"]).ok();
    assert_eq!(rev(&env, "HEAD"), cf_tip);
    assert_eq!(
        std::fs::read_to_string(env.repo.join("README.md")).unwrap(),
        "user readme\n"
    );
    let st = env.json(&["status", "m", "--json"]);
    assert_eq!(st["merged"]["into"], "rb", "{st}");
}

/// `review <group> --compare` shows how two attempts differ: files only in one, changed
/// differently, changed identically, as text (with range-diff) and JSON.
#[test]
fn compare_a_group_of_two_attempts() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "g",
        "--agent",
        "exec,exec",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "set -e
echo same > same.txt && echo \"$GIT_AGENT_TASK\" > who.txt
if [ \"$GIT_AGENT_TASK\" = g-exec-1 ]; then echo 1 > only1.txt; else echo 2 > only2.txt; fi
git add -A && git commit -qm work",
    ])
    .ok();
    // A textconv driver of the user's must not run on the attempts' content.
    let ran = env.home.path().join("textconv.ran");
    env.git(&[
        "config",
        "diff.conv.textconv",
        &format!("sh -c 'touch \"{}\"; cat \"$0\"'", ran.display()),
    ])
    .ok();
    std::fs::write(env.repo.join(".git/info/attributes"), "*.txt diff=conv\n").unwrap();
    let json = env.json(&["review", "g", "--compare", "--json"]);
    assert_eq!(json["group"], "g");
    assert_eq!(json["attempts"].as_array().unwrap().len(), 2);
    let pair = &json["pairs"][0];
    assert_eq!(pair["a"], "g-exec-1");
    assert_eq!(pair["b"], "g-exec-2");
    assert_eq!(pair["only_a"], serde_json::json!(["only1.txt"]));
    assert_eq!(pair["only_b"], serde_json::json!(["only2.txt"]));
    assert_eq!(pair["differing"], serde_json::json!(["who.txt"]));
    assert_eq!(pair["identical"], serde_json::json!(["same.txt"]));

    let text = env.agent(&["review", "g", "--compare"]).ok().stdout;
    assert!(text.contains("group g: 2 attempts"), "{text}");
    assert!(text.contains("== g-exec-1 vs g-exec-2"), "{text}");
    assert!(text.contains("changed differently: who.txt"), "{text}");
    assert!(text.contains("changed identically: same.txt"), "{text}");
    assert!(text.contains("commits (git range-diff):"), "{text}");
    assert!(text.contains("who.txt"), "{text}");
    // The same by naming the tasks; one task alone is refused with a hint.
    let named = env.json(&["review", "g-exec-1", "g-exec-2", "--compare", "--json"]);
    assert_eq!(named["pairs"][0]["differing"], pair["differing"]);
    assert!(!ran.exists(), "no textconv ran");
    let one = env.agent(&["review", "g-exec-1", "--compare"]).fails();
    assert!(
        one.stderr
            .contains("Error: --compare needs two or more attempts; 1 found"),
        "{one}"
    );
}
