//! Read-only git for agents (`spawn --git-readonly`): the guard script `hooks/git-readonly`
//! as a Claude Code PreToolUse hook and as a `git` wrapper, checked with `sh` on the host
//! against many command strings, then end to end in a real sandbox.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{Run, TestEnv};
use crate::require_docker;

fn guard() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/git-readonly")
}

/// Run the guard as Claude Code does: the hook's JSON on stdin.
fn hook(input: &str) -> Run {
    let mut child = Command::new("sh")
        .arg(guard())
        .arg("claude-hook")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn bash_call(command: &str) -> String {
    serde_json::json!({
        "session_id": "s",
        "transcript_path": "/tmp/t.jsonl",
        "cwd": "/workspace",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": "run it"},
    })
    .to_string()
}

const ALLOWED: &[&str] = &[
    "git status",
    "git status --short && git diff --stat",
    "git log --oneline -5 | head -3",
    "git -C sub -c color.ui=never log --format='%H %s' 2>/dev/null > /tmp/out",
    "git --no-pager diff HEAD~1 -- src/",
    "git show HEAD:README.md",
    "git blame -L 1,5 README.md",
    "git grep -n 'commit' -- '*.rs'",
    "git ls-files -z | xargs -0 wc -l",
    "git rev-parse --abbrev-ref HEAD",
    "git cat-file -p HEAD",
    "git describe --tags --always",
    "git shortlog -sn",
    "git branch",
    "git branch -a --contains HEAD",
    "git branch --show-current",
    "git branch -vv",
    "git branch --list 'feat/*'",
    "git tag",
    "git tag -l 'v*'",
    "git tag --contains HEAD",
    "git remote -v",
    "git remote show origin",
    "git config --get user.name",
    "git config user.email",
    "git config --list --show-origin",
    "git config get core.editor",
    "git stash list",
    "git worktree list",
    "git show-ref --heads",
    "git for-each-ref --format='%(refname)' refs/heads",
    "git merge-base HEAD main",
    "git name-rev HEAD",
    "git help log",
    "git --version",
    "git version",
    "git commit -h",
    "FOO=1 LC_ALL=C git log -1",
    "echo \"$(git rev-parse HEAD)\"",
    "cd /workspace; (git status; git log -1) | cat",
    "bash -lc 'git status && git diff'",
    "grep -rn 'git push' docs/",
    "echo 'git commit -am x' > notes.txt",
    "cat <<'EOF' > msg.txt\ngit commit -m done\nEOF\ngit status",
    "# git commit -am x\ngit status",
    "ls -la && cargo test",
];

const BLOCKED: &[(&str, &str)] = &[
    ("git commit -am x", "git commit -am x"),
    ("git add -A", "git add -A"),
    ("git add . && git commit -m 'wip'", "git add ."),
    ("git status; git reset --hard HEAD~1", "git reset --hard"),
    ("git checkout -b topic", "git checkout -b topic"),
    ("git switch main", "git switch main"),
    ("git restore README.md", "git restore README.md"),
    ("git rm old.txt", "git rm old.txt"),
    ("git mv a b", "git mv a b"),
    ("git merge topic", "git merge topic"),
    ("git rebase -i main", "git rebase -i main"),
    ("git cherry-pick abc123", "git cherry-pick abc123"),
    ("git revert HEAD", "git revert HEAD"),
    ("git push origin main", "git push origin main"),
    ("git fetch", "git fetch"),
    ("git pull --rebase", "git pull --rebase"),
    ("git stash", "git stash"),
    ("git stash pop", "git stash pop"),
    ("git tag v1.0", "git tag v1.0"),
    ("git tag -a v1 -m release", "git tag -a v1"),
    ("git tag -d v1", "git tag -d v1"),
    ("git branch topic", "git branch topic"),
    ("git branch -D old", "git branch -D old"),
    ("git branch -m new-name", "git branch -m new-name"),
    ("git config user.name bot", "git config user.name"),
    ("git config --unset core.editor", "git config --unset"),
    ("git update-ref refs/heads/x HEAD", "git update-ref"),
    ("git gc --prune=now", "git gc --prune=now"),
    ("git clean -fdx", "git clean -fdx"),
    ("git am < patch.mbox", "git am"),
    ("git apply fix.patch", "git apply fix.patch"),
    ("git notes add -m x", "git notes add"),
    ("git worktree add ../other", "git worktree add"),
    ("git submodule update --init", "git submodule update"),
    ("git init", "git init"),
    ("git -C /workspace commit --amend", "git commit --amend"),
    ("git -c user.name=x commit -m y", "commit"),
    ("git -c alias.ci=commit ci -m y", "alias.ci=commit"),
    ("LC_ALL=C git commit -m x", "git commit"),
    ("env GIT_DIR=.git git commit -m x", "git commit"),
    ("cd sub && /usr/bin/git commit -m x", "git commit"),
    ("echo \"$(git stash)\"", "git stash"),
    ("echo `git commit -m x`", "git commit"),
    ("(cd sub; git checkout main)", "git checkout main"),
    ("{ git add x; }", "git add x"),
    ("bash -c \"git commit -am 'x'\"", "git commit"),
    ("sh -ec 'git push'", "git push"),
    ("eval git commit -m x", "git commit"),
    ("timeout 60 git fetch origin", "git fetch origin"),
    ("nohup git gc &", "git gc"),
    ("find . -name '*.orig' -exec git rm {} \\;", "git rm"),
    ("ls | xargs git add", "git add"),
    ("true || git commit -m x", "git commit"),
    ("git status\ngit commit -m x", "git commit"),
    ("git-commit -m x", "git commit"),
];

#[test]
fn the_hook_allows_reading_git_and_other_commands() {
    for cmd in ALLOWED {
        let run = hook(&bash_call(cmd));
        assert_eq!(run.code, 0, "{cmd:?} should be allowed:\n{run}");
        assert_eq!(run.stderr, "", "{cmd:?}");
    }
}

#[test]
fn the_hook_blocks_mutating_git_with_the_reason_on_stderr() {
    for (cmd, shown) in BLOCKED {
        let run = hook(&bash_call(cmd));
        assert_eq!(run.code, 2, "{cmd:?} should be blocked:\n{run}");
        assert!(
            run.stderr.contains("read-only git"),
            "{cmd:?}: the reason names the mode:\n{run}"
        );
        assert!(
            run.stderr.contains(shown),
            "{cmd:?}: the reason names the command ({shown:?}):\n{run}"
        );
        assert!(
            run.stderr.contains("leave your changes uncommitted"),
            "{cmd:?}: the reason says what to do instead:\n{run}"
        );
        assert_eq!(run.stdout, "", "{cmd:?}: nothing on stdout");
    }
}

#[test]
fn the_hook_ignores_other_tools_and_reports_unreadable_input_without_blocking() {
    let write = serde_json::json!({
        "tool_name": "Write",
        "tool_input": {"file_path": "/workspace/x", "content": "git commit -am x"},
    });
    assert_eq!(hook(&write.to_string()).code, 0);
    // JSON escapes in the command are decoded before it is read.
    let escaped = r#"{"tool_name":"Bash","tool_input":{"command":"git status \u0026\u0026 git \u0063ommit -m \"\u00e9\""}}"#;
    let run = hook(escaped);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("git commit -m é"), "{run}");
    // Exit 1 is a non-blocking error for Claude Code: shown to the user, call not blocked.
    let run = hook("not json");
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("cannot read the hook input"), "{run}");
}

/// `git-readonly check ...` and the wrapper share one decision.
#[test]
fn the_wrapper_refuses_mutating_git_and_runs_the_real_git_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(guard(), bin.join("git")).unwrap();
    let repo = dir.path().join("repo");
    let real = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::fs::create_dir(&repo).unwrap();
    real(&["init", "-q", "-b", "main"]);
    real(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@e",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "one",
    ]);
    let head = real(&["rev-parse", "HEAD"]);
    let wrapped = |script: &str| {
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(&repo)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let run = wrapped("git log --format=%s && git branch --show-current");
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stdout, "one\nmain\n");
    let run = wrapped(
        "git -c user.name=t -c user.email=t@e commit --allow-empty -m two; echo rc=$?; git checkout -q -b x; echo rc=$?",
    );
    assert!(run.stdout.contains("rc=1\nrc=1\n"), "{run}");
    assert!(run.stderr.contains("`git commit"), "{run}");
    assert!(run.stderr.contains("read-only git"), "{run}");
    assert_eq!(real(&["rev-parse", "HEAD"]), head, "nothing was committed");
    assert_eq!(real(&["branch", "--show-current"]), "main\n");

    let check = |args: &[&str]| {
        Command::new("sh")
            .arg(guard())
            .arg("check")
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(check(&["status"]), Some(0));
    assert_eq!(check(&["-C", "x", "log"]), Some(0));
    assert_eq!(check(&["push"]), Some(1));
    assert_eq!(
        check(&["frobnicate"]),
        Some(1),
        "unknown commands are refused"
    );
}

#[test]
fn installing_the_claude_hook_keeps_other_settings_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.json");
    let install = || {
        let out = Command::new("sh")
            .arg(guard())
            .arg("install-claude")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    install();
    let fresh: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let cmd = format!("{} claude-hook", guard().display());
    assert_eq!(
        fresh,
        serde_json::json!({"hooks": {"PreToolUse": [
            {"matcher": "Bash", "hooks": [{"type": "command", "command": cmd}]}
        ]}})
    );

    let theirs = serde_json::json!({
        "model": "opus",
        "permissions": {"allow": ["Bash(ls:*)"]},
        "hooks": {
            "PreToolUse": [{"matcher": "Write", "hooks": [{"type": "command", "command": "lint \"é\""}]}],
            "Stop": [{"hooks": [{"type": "command", "command": "notify"}]}]
        },
        "cleanupPeriodDays": 7,
        "includeCoAuthoredBy": false
    });
    std::fs::write(&file, theirs.to_string()).unwrap();
    install();
    install();
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut expected = theirs.clone();
    expected["hooks"]["PreToolUse"]
        .as_array_mut()
        .unwrap()
        .push(
            serde_json::json!({"matcher": "Bash", "hooks": [{"type": "command", "command": cmd}]}),
        );
    assert_eq!(merged, expected);

    std::fs::write(&file, "{ not json").unwrap();
    let out = Command::new("sh")
        .arg(guard())
        .arg("install-claude")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{ not json",
        "a file it cannot read is left alone"
    );
}

#[test]
fn spawn_git_readonly_refuses_commits_in_the_sandbox() {
    require_docker!();
    let env = TestEnv::new();
    // One stream: the engine keeps no order between a container's stdout and stderr.
    let script = "exec 2>&1; git status --short && git log --format=%s && echo status-ok; \
        git commit --allow-empty -m x; echo commit-rc=$?; \
        bash -lc 'git stash' 2>&1 || sh -lc 'git stash'; echo stash-rc=$?; \
        echo change >> README.md";
    let run = env
        .agent(&[
            "spawn",
            "--name",
            "ro",
            "--git-readonly",
            "--wait",
            "-m",
            "read only",
            "--",
            "sh",
            "-c",
            script,
        ])
        .ok();
    assert!(run.stderr.contains("initial\nstatus-ok"), "{run}");
    assert!(run.stderr.contains("commit-rc=1"), "{run}");
    assert!(
        run.stderr
            .contains("`git commit --allow-empty -m` is refused"),
        "{run}"
    );
    assert!(
        run.stderr.contains("`git stash` is refused"),
        "login shells too:\n{run}"
    );
    assert!(run.stderr.contains("stash-rc=1"), "{run}");

    let status = env.agent(&["status", "ro"]).ok();
    assert!(status.stdout.contains("git:       read-only"), "{status}");
    let json = env.json(&["status", "--json", "ro"]);
    assert_eq!(json["git_readonly"], true);

    // The helper's own git (sync) is not restricted: the uncommitted change comes back as
    // the snapshot, with no agent commit on top of the base.
    let sync = env.agent(&["sync", "ro"]).ok();
    assert!(sync.stderr.contains("uncommitted changes"), "{sync}");
    let refs = env.task_refs("ro");
    assert_eq!(refs.get("head"), refs.get("base"), "{refs:?}");
    assert!(refs.contains_key("wip"), "{refs:?}");

    // Without the option (and with agent.gitReadOnly unset) git is unrestricted.
    let run = env
        .agent(&[
            "spawn",
            "--name",
            "rw",
            "--wait",
            "-m",
            "x",
            "--",
            "sh",
            "-c",
            "git commit -q --allow-empty -m x && echo committed",
        ])
        .ok();
    assert!(run.stderr.contains("committed"), "{run}");
    // agent.gitReadOnly turns it on; --no-git-readonly turns it off again.
    env.git(&["config", "agent.gitReadOnly", "true"]).ok();
    let run = env.agent(&[
        "spawn",
        "--name",
        "cfg",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "git commit -q --allow-empty -m x",
    ]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("read-only git"), "{run}");
    let run = env
        .agent(&[
            "spawn",
            "--name",
            "off",
            "--no-git-readonly",
            "--wait",
            "-m",
            "x",
            "--",
            "sh",
            "-c",
            "git commit -q --allow-empty -m x && echo committed",
        ])
        .ok();
    assert!(run.stderr.contains("committed"), "{run}");
    for t in ["ro", "rw", "cfg", "off"] {
        env.agent(&["purge", "--refs", t]).ok();
    }
}

/// The real Claude Code CLI with the hook installed by the sandbox helper: the model's
/// `git commit` is blocked before it runs and the model is told why; reading git works.
#[test]
fn claude_code_is_told_why_its_commit_is_blocked() {
    use crate::fake_anthropic::{FakeAnthropic, Step};
    use serde_json::json;
    require_docker!();
    const KEY: &str = "sk-ant-test-key-for-git-agent";
    let env = TestEnv::new();
    let fake = FakeAnthropic::start_requiring_key(
        vec![
            Step::tool(
                "Bash",
                json!({"command": "echo more >> README.md && git commit -am 'update readme'", "description": "Commit"}),
            ),
            Step::tool(
                "Bash",
                json!({"command": "git log --format=%s", "description": "Show history"}),
            ),
            Step::text("I left the change uncommitted."),
        ],
        KEY,
    );
    crate::claude::use_fake(&env, &fake);
    let spawn = env.agent_with(
        &[
            "spawn",
            "--agent",
            "claude",
            "--name",
            "cc-ro",
            "--git-readonly",
            "-m",
            "update the readme",
            "--wait",
        ],
        |c| {
            c.env("ANTHROPIC_API_KEY", KEY);
        },
    );
    assert_eq!(spawn.code, 0, "{spawn}\n{}", fake.describe());
    assert_eq!(fake.steps_served(), 3, "{}", fake.describe());
    let main = fake.main_requests();
    let refused = main[1].last_tool_result_text().unwrap_or_default();
    assert!(
        refused.contains("read-only git") && refused.contains("blocked `git commit -am"),
        "the hook's reason reached the model: {refused}\n{}",
        fake.describe()
    );
    let history = main[2].last_tool_result_text().unwrap_or_default();
    assert!(history.contains("initial"), "{history}");

    // The whole Bash call was blocked: no commit and not even the README change.
    env.agent(&["sync", "cc-ro"]).ok();
    let refs = env.task_refs("cc-ro");
    assert_eq!(refs.get("head"), refs.get("base"), "{refs:?}");
    assert!(!refs.contains_key("wip"), "{refs:?}");
    env.agent(&["purge", "--refs", "cc-ro"]).ok();
}

/// The settings file is rewritten by a real JSON library: the user's keys keep their order
/// and their values (numbers, escapes, non-ASCII), and files that are not a settings object
/// are refused and left byte for byte as they were.
#[test]
fn installing_the_claude_hook_keeps_order_and_refuses_what_is_not_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.json");
    let install = || {
        Command::new("sh")
            .arg(guard())
            .arg("install-claude")
            .arg(&file)
            .output()
            .unwrap()
    };
    let theirs = r#"{"zeta": 1.50, "alpha": "\u00e9\n\"", "hooks": {"Stop": []}}"#;
    std::fs::write(&file, theirs).unwrap();
    assert!(install().status.success());
    let text = std::fs::read_to_string(&file).unwrap();
    let at = |k: &str| {
        text.find(&format!("\"{k}\""))
            .unwrap_or_else(|| panic!("{k}: {text}"))
    };
    assert!(at("zeta") < at("alpha") && at("alpha") < at("hooks"));
    assert!(at("Stop") < at("PreToolUse"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["alpha"], "é\n\"");
    assert_eq!(v["zeta"], 1.5);

    for bad in [
        "[1, 2]",
        "null",
        r#"{"hooks": []}"#,
        r#"{"hooks": {"PreToolUse": {"matcher": "Bash"}}}"#,
        "{\"a\": 1,}",
    ] {
        std::fs::write(&file, bad).unwrap();
        let out = install();
        assert_eq!(out.status.code(), Some(1), "{bad}: {out:?}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).trim().is_empty(),
            "{bad}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), bad);
        assert!(!dir.path().join("settings.json.git-agent.tmp").exists());
    }
}
