//! The core loop against a real engine: spawn, sync, review, commit (signed), push.

use std::process::Command;

use crate::common::TestEnv;
use crate::require_docker;

/// The command the sandbox runs: commits two files (one with spaces and non-ASCII in its
/// name), then leaves an uncommitted edit and an untracked file behind.
const WORK: &str = r#"set -e
cat > "prompt copy.txt"
printf 'agent line\n' > "naïve file.txt"
mkdir -p src && printf 'fn main() {}\n' > src/main.rs
git add -A && git commit -q -m "agent: add files" -m "Body from the agent."
printf 'more\n' >> README.md
printf 'new\n' > untracked.txt
echo finished-work"#;

#[test]
fn spawn_sync_review_commit_signed_push() {
    require_docker!();
    let env = TestEnv::new();
    let before = env.snapshot();

    // An SSH signing key made for this test, and an allowed-signers file to verify with.
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
    let remote = env.home.path().join("remote.git");
    env.git(&["init", "-q", "--bare", remote.to_str().unwrap()])
        .ok();
    env.git(&["remote", "add", "origin", remote.to_str().unwrap()])
        .ok();
    env.git(&["config", "branch.main.remote", "origin"]).ok();
    let before = {
        let mut b = before;
        b.remove("config");
        b.remove("refs");
        b
    };

    let spawn = env
        .agent(&[
            "spawn",
            "--name",
            "loop",
            "-m",
            "make the files",
            "--wait",
            "--",
            "sh",
            "-c",
            WORK,
        ])
        .ok();
    assert_eq!(spawn.stdout.trim(), "loop");
    assert!(spawn.stderr.contains("finished-work"), "{spawn}");

    let refs = env.task_refs("loop");
    assert!(
        refs.contains_key("base") && refs.contains_key("state"),
        "{refs:?}"
    );
    assert!(
        !refs.contains_key("head"),
        "no work is fetched before a sync"
    );

    let sync = env.agent(&["sync", "lo"]).ok();
    assert!(sync.stderr.contains("1 new commit"), "{sync}");
    assert!(sync.stderr.contains("uncommitted changes"), "{sync}");
    let refs = env.task_refs("loop");
    let head = refs.get("head").expect("head after sync").clone();
    let wip = refs.get("wip").expect("wip after sync").clone();
    assert_eq!(
        env.git(&["rev-parse", &format!("{wip}^")]).stdout.trim(),
        head
    );
    assert!(
        env.agent(&["sync", "loop"])
            .ok()
            .stderr
            .contains("nothing new")
    );

    // The snapshot was taken without touching the agent's own index or branch.
    let inside = env.finished_exec(
        "loop",
        "cd /workspace && git status --porcelain && git rev-parse HEAD && ls ~/.git-agent",
    );
    assert!(inside.stdout.contains(" M README.md"), "{inside}");
    assert!(inside.stdout.contains("?? untracked.txt"), "{inside}");
    assert!(inside.stdout.contains(&head), "{inside}");

    env.git(&["config", "core.quotePath", "false"]).ok();
    let names = env.agent(&["review", "loop", "--name-only"]).ok().stdout;
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README.md",
            "naïve file.txt",
            "prompt copy.txt",
            "src/main.rs",
            "untracked.txt"
        ]
    );
    let stat = env.agent(&["review", "loop", "--stat"]).ok().stdout;
    assert!(stat.contains("5 files changed"), "{stat}");
    assert!(
        !stat.contains("+agent line"),
        "--stat has no patch:\n{stat}"
    );
    let review = env.agent(&["review", "loop"]).ok().stdout;
    assert!(review.contains("exited (0)"), "{review}");
    assert!(review.contains("agent: add files"), "{review}");
    assert!(
        review.contains("finished-work"),
        "output tail is shown:\n{review}"
    );
    assert!(review.contains("+agent line"), "{review}");
    let json = env.json(&["review", "loop", "--json"]);
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["files"].as_array().unwrap().len(), 5);
    assert!(
        json["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "naïve file.txt")
    );

    // The prompt reached the command on stdin.
    let prompt = env
        .git(&["show", &format!("{head}:prompt copy.txt")])
        .ok()
        .stdout;
    assert_eq!(prompt, "make the files");

    let commit = env
        .agent(&["commit", "loop", "-m", "Finish the agent's edits"])
        .ok();
    assert_eq!(commit.stdout.trim(), "agent/loop");
    let log = env
        .git(&[
            "log",
            "--format=%an <%ae>|%cn|%s|%G?",
            "agent/loop",
            "^main",
        ])
        .ok()
        .stdout;
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "Test User <test@example.com>|Test User|Finish the agent's edits|G",
            "Test User <test@example.com>|Test User|agent: add files|G",
        ],
        "commits are the user's, signed, with the agent's message kept"
    );
    // Content is exactly the agent's snapshot.
    assert_eq!(
        env.git(&["rev-parse", "agent/loop^{tree}"]).stdout,
        env.git(&["rev-parse", &format!("{wip}^{{tree}}")]).stdout
    );
    let body = env.git(&["log", "-1", "--format=%b", "agent/loop^"]).stdout;
    assert!(body.contains("Body from the agent."));
    let note = env
        .git(&["notes", "--ref=agent", "show", "agent/loop"])
        .ok()
        .stdout;
    assert!(
        note.contains("git-agent-task: loop") && note.contains(&format!("git-agent-source: {wip}")),
        "{note}"
    );
    env.git(&["verify-commit", "agent/loop"]).ok();

    // Committing again with nothing new is an error that changes nothing.
    let again = env.agent(&["commit", "loop", "-m", "x"]).fails();
    assert!(again.stderr.contains("nothing new to commit"), "{again}");

    let push = env.agent(&["push", "loop"]).ok();
    assert!(
        push.stderr.contains("pushed agent/loop to origin"),
        "{push}"
    );
    let remote_log = Command::new("git")
        .args([
            "--git-dir",
            remote.to_str().unwrap(),
            "log",
            "--format=%an|%s",
            "agent/loop",
        ])
        .output()
        .unwrap();
    let remote_log = String::from_utf8_lossy(&remote_log.stdout);
    assert!(
        remote_log.starts_with("Test User|Finish the agent's edits\nTest User|agent: add files\n"),
        "{remote_log}"
    );

    // The user's branch, index, work tree and hooks were never touched.
    let mut after = env.snapshot();
    after.remove("config");
    after.remove("refs");
    assert_eq!(before, after);
    assert_eq!(
        env.git(&["rev-parse", "main"]).stdout,
        env.git(&["rev-parse", "HEAD"]).stdout
    );
}

#[test]
fn dirty_spawn_carries_uncommitted_changes_without_touching_the_index() {
    require_docker!();
    let env = TestEnv::new();
    // A same-size edit right after a commit.
    env.write("same.txt", "aaaa\n");
    env.git(&["add", "same.txt"]).ok();
    env.git(&["commit", "-q", "-m", "same"]).ok();
    env.write("same.txt", "bbbb\n");
    env.write("README.md", "# demo\nedited, not committed\n");
    env.write("new dir/untracked é.txt", "untracked\n");
    env.write("ignored.log", "ignored\n");
    env.git(&["add", "README.md"]).ok(); // one staged change as well
    let before = env.snapshot();

    let run = env
        .agent(&[
            "spawn",
            "--name",
            "dirty",
            "--dirty",
            "--wait",
            "--",
            "sh",
            "-c",
            "cat README.md same.txt; ls -a . 'new dir'; test ! -e ignored.log && echo no-ignored",
        ])
        .ok();
    assert!(run.stderr.contains("edited, not committed"), "{run}");
    assert!(run.stderr.contains("untracked é.txt"), "{run}");
    assert!(run.stderr.contains("no-ignored"), "{run}");
    assert!(run.stderr.contains("bbbb"), "{run}");
    assert_eq!(
        before,
        env.snapshot(),
        "the user's index and work tree are unchanged"
    );

    let base = env.task_refs("dirty")["base"].clone();
    let subject = env.git(&["log", "-1", "--format=%s", &base]).stdout;
    assert!(subject.contains("spawn --dirty"), "{subject}");
    assert_eq!(
        env.git(&["rev-parse", &format!("{base}^")]).stdout,
        env.git(&["rev-parse", "HEAD"]).stdout
    );
    let status = env.json(&["status", "dirty", "--json"]);
    assert_eq!(status["dirty"], true);
    assert_eq!(status["status"], "exited");
}

#[test]
fn uncommitted_only_work_is_promoted_with_the_users_message() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "wip-only",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo changed > README.md",
    ])
    .ok();
    let sync = env.agent(&["sync", "wip-only"]).ok();
    assert!(
        sync.stderr.contains("uncommitted changes") && !sync.stderr.contains("new commit"),
        "{sync}"
    );
    let refs = env.task_refs("wip-only");
    assert!(
        !refs.contains_key("head") || refs["head"] == refs["base"],
        "{refs:?}"
    );

    // No terminal and no -m: a clear error, nothing created.
    let e = env.agent(&["commit", "wip-only"]).fails();
    assert!(e.stderr.contains("no commit message"), "{e}");
    assert_eq!(
        env.git(&["rev-parse", "-q", "--verify", "agent/wip-only"])
            .code,
        1
    );

    env.agent(&["commit", "wip-only", "-m", "Use the agent's README"])
        .ok();
    assert_eq!(
        env.git(&["show", "agent/wip-only:README.md"]).stdout,
        "changed\n"
    );
    assert_eq!(
        env.git(&["log", "--format=%s", "main..agent/wip-only"])
            .stdout
            .trim(),
        "Use the agent's README"
    );
}

#[test]
fn nothing_to_commit_and_rejected_push_are_clear_errors() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "idle", "--wait", "-m", "x", "--", "true"])
        .ok();
    let e = env.agent(&["commit", "idle"]).fails();
    assert!(e.stderr.contains("no changes to commit"), "{e}");

    env.agent(&[
        "spawn",
        "--name",
        "pushy",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo a > a && git add a && git commit -qm a",
    ])
    .ok();
    env.agent(&["commit", "pushy"]).ok();
    let remote = env.home.path().join("remote.git");
    env.git(&["init", "-q", "--bare", remote.to_str().unwrap()])
        .ok();
    env.git(&["remote", "add", "origin", remote.to_str().unwrap()])
        .ok();
    // Someone else already pushed a different agent/pushy.
    env.git(&["push", "-q", "origin", "main:refs/heads/agent/pushy"])
        .ok();
    env.git(&["commit", "-q", "--allow-empty", "-m", "other"])
        .ok();
    env.git(&["push", "-q", "origin", "main:refs/heads/agent/pushy"])
        .ok();
    let before = env.snapshot();
    let e = env.agent(&["push", "pushy"]).fails();
    assert!(e.stderr.contains("rejected"), "{e}");
    assert_eq!(before, env.snapshot());
}

/// Without -m, `commit` asks for the message in the user's editor (through a real pty).
#[test]
fn commit_asks_the_editor_for_a_message() {
    require_docker!();
    if which::which("script").is_err() {
        eprintln!("SKIPPED: util-linux `script` is not installed");
        return;
    }
    let env = TestEnv::new();
    // Same size as "# demo\n", written within the second of checkout: the sandbox's
    // snapshot must still see it.
    env.agent(&[
        "spawn",
        "--name",
        "ed",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo edited > README.md",
    ])
    .ok();
    let editor = env.home.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\ngrep -q 'uncommitted changes of task ed' \"$1\" || exit 9\nprintf 'Message from the editor\\n\\n# a comment line\\n' > \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = env
        .pty_command("commit ed")
        .env("GIT_EDITOR", &editor)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let msg = env
        .git(&["log", "-1", "--format=%B", "agent/ed"])
        .ok()
        .stdout;
    assert_eq!(msg.trim_end(), "Message from the editor");
}

#[test]
fn commit_push_promotes_and_pushes_in_one_step() {
    require_docker!();
    let env = TestEnv::new();
    let remote = env.home.path().join("elsewhere.git");
    env.git(&["init", "-q", "--bare", remote.to_str().unwrap()])
        .ok();
    env.git(&["remote", "add", "upstream", remote.to_str().unwrap()])
        .ok();
    env.git(&["remote", "add", "other", remote.to_str().unwrap()])
        .ok();
    env.agent(&[
        "spawn",
        "--name",
        "cp",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo one > one && git add one && git commit -qm one && echo two > two",
    ])
    .ok();
    // Two remotes and no upstream: git-agent will not guess.
    let e = env.agent(&["commit-push", "cp", "-m", "two"]).fails();
    assert!(e.stderr.contains("--remote"), "{e}");
    // The commit happened before the push failed; pushing again completes it.
    assert_eq!(
        env.git(&["rev-list", "--count", "main..agent/cp"])
            .stdout
            .trim(),
        "2"
    );
    let again = env
        .agent(&["commit-push", "cp", "-m", "two", "--remote", "upstream"])
        .ok();
    assert!(again.stderr.contains("already committed"), "{again}");
    assert_eq!(
        env.git(&["rev-list", "--count", "main..agent/cp"])
            .stdout
            .trim(),
        "2"
    );
    let remote_tip = Command::new("git")
        .args([
            "--git-dir",
            remote.to_str().unwrap(),
            "rev-parse",
            "agent/cp",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&remote_tip.stdout),
        env.git(&["rev-parse", "agent/cp"]).stdout
    );
}
