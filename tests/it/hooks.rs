//! git hooks (`git agent hooks install|uninstall|list`, the pre-push gate, the post-commit
//! trigger) and event hooks (`agent.onFinish`, `agent.onFail`, `agent.onWait`), with real git; tasks run on
//! the local runtime.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::TestEnv;
use crate::require_docker;

fn hooks_dir(env: &TestEnv) -> PathBuf {
    env.repo.join(".git/hooks")
}

fn write_hook(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Wait until `path` holds at least `lines` lines (detached commands write it).
fn lines_of(path: &Path, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let got: Vec<String> = text.lines().map(str::to_string).collect();
        if got.len() >= lines || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hooks_go_beside_the_users_hooks_and_come_out_byte_for_byte() {
    let env = TestEnv::new();
    let dir = hooks_dir(&env);
    let marker = env.home.path().join("user-hook-ran");
    // A user's post-commit with CRLF line ends (on comments: sh would read a `\r` as part of
    // a word) and no final newline, a pre-push with one.
    let post_commit = format!(
        "#!/bin/sh\n# edited on windows\r\necho ran >> '{}'\n# the end\r\n# no newline",
        marker.display()
    )
    .into_bytes();
    let pre_push = b"#!/bin/bash\n# mine\nexit 0\n".to_vec();
    write_hook(&dir.join("post-commit"), &post_commit);
    write_hook(&dir.join("pre-push"), &pre_push);
    std::fs::set_permissions(dir.join("pre-push"), std::fs::Permissions::from_mode(0o750)).unwrap();

    let run = env.agent(&["hooks", "install"]).ok();
    assert!(run.stdout.contains("post-commit: installed in"), "{run}");
    assert!(
        run.stdout
            .contains("not switched on: git config agent.hooks.prePush true"),
        "{run}"
    );
    let installed = std::fs::read(dir.join("post-commit")).unwrap();
    assert!(installed.starts_with(&post_commit));
    let text = String::from_utf8_lossy(&installed);
    assert!(text.contains("# >>> git-agent post-commit v"), "{text}");
    assert!(
        text.contains("git agent hook-run post-commit \"$@\""),
        "{text}"
    );
    let pushed = std::fs::read(dir.join("pre-push")).unwrap();

    // A second install changes nothing.
    let again = env.agent(&["hooks", "install"]).ok();
    assert!(
        again.stdout.contains("post-commit: already installed in"),
        "{again}"
    );
    assert_eq!(std::fs::read(dir.join("post-commit")).unwrap(), installed);
    assert_eq!(std::fs::read(dir.join("pre-push")).unwrap(), pushed);

    // The user's hook still runs, first; git-agent's block (switched off) changes nothing.
    env.write("a.txt", "a\n");
    env.git(&["add", "a.txt"]).ok();
    let commit = env.git(&["commit", "-qm", "a"]).ok();
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "ran\n",
        "{commit}"
    );
    assert!(!commit.stderr.contains("warning"), "{commit}");

    let list = env.agent(&["hooks", "list"]).ok();
    assert!(list.stdout.contains("pre-push"), "{list}");
    assert!(list.stdout.contains("beside your hook"), "{list}");
    assert!(
        list.stdout
            .contains("off (git config agent.hooks.prePush true)"),
        "{list}"
    );
    env.git(&["config", "agent.hooks.prePush", "true"]).ok();
    let json = env.json(&["hooks", "list", "--json"]);
    let pre = json["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hook"] == "pre-push")
        .unwrap();
    assert_eq!(pre["enabled"], true);
    assert!(pre["installed"].is_string());

    env.agent(&["hooks", "uninstall"]).ok();
    assert_eq!(std::fs::read(dir.join("post-commit")).unwrap(), post_commit);
    assert_eq!(std::fs::read(dir.join("pre-push")).unwrap(), pre_push);
    assert_eq!(mode(&dir.join("pre-push")), 0o750);
    let none = env.agent(&["hooks", "uninstall", "pre-push"]).ok();
    assert!(none.stdout.contains("pre-push: not installed in"), "{none}");
}

#[test]
fn a_hook_file_git_agent_created_is_removed_and_other_languages_are_refused() {
    let env = TestEnv::new();
    let dir = hooks_dir(&env);
    let python = b"#!/usr/bin/env python3\nprint('mine')\n".to_vec();
    write_hook(&dir.join("pre-push"), &python);
    let refused = env.agent(&["hooks", "install"]).fails();
    assert!(
        refused
            .stderr
            .contains("is a #!/usr/bin/env python3 script; git-agent's block is shell"),
        "{refused}"
    );
    assert!(
        refused.stderr.contains("Hint: call `git agent hook-run"),
        "{refused}"
    );
    // Nothing was written, not even the other hook.
    assert!(!dir.join("post-commit").exists());
    assert_eq!(std::fs::read(dir.join("pre-push")).unwrap(), python);

    let run = env.agent(&["hooks", "install", "post-commit"]).ok();
    assert!(run.stdout.contains("(new file)"), "{run}");
    assert_eq!(mode(&dir.join("post-commit")), 0o755);
    assert!(
        std::fs::read_to_string(dir.join("post-commit"))
            .unwrap()
            .starts_with("#!/bin/sh\n")
    );
    env.agent(&["hooks", "uninstall", "post-commit"]).ok();
    assert!(!dir.join("post-commit").exists());
    let unknown = env.agent(&["hooks", "install", "pre-rebase"]).fails();
    assert!(
        unknown
            .stderr
            .contains("git-agent has no 'pre-rebase' hook"),
        "{unknown}"
    );
}

#[test]
fn core_hooks_path_is_honoured_relative_absolute_and_in_a_linked_worktree() {
    let env = TestEnv::new();
    env.git(&["config", "core.hooksPath", "my hooks"]).ok();
    env.agent(&["hooks", "install", "pre-push"]).ok();
    assert!(env.repo.join("my hooks/pre-push").is_file());
    assert!(!hooks_dir(&env).join("pre-push").exists());

    // A linked worktree runs hooks from its own top for a relative path, as git does.
    let wt = env.home.path().join("linked");
    env.git(&["worktree", "add", "-q", wt.to_str().unwrap()])
        .ok();
    env.agent_with(&["hooks", "install", "pre-push"], |c| {
        c.current_dir(&wt);
    })
    .ok();
    assert!(wt.join("my hooks/pre-push").is_file());

    let shared = env.home.path().join("shared-hooks");
    env.git(&["config", "core.hooksPath", shared.to_str().unwrap()])
        .ok();
    let list = env.agent(&["hooks", "list"]).ok();
    assert!(list.stdout.contains("available"), "{list}");
    env.agent(&["hooks", "install", "pre-push"]).ok();
    assert!(shared.join("pre-push").is_file());
    env.agent(&["hooks", "uninstall"]).ok();
    assert!(!shared.join("pre-push").exists());
    assert!(
        env.repo.join("my hooks/pre-push").is_file(),
        "only the active directory changes"
    );
}

#[test]
fn a_repository_file_cannot_define_or_switch_on_a_hook() {
    let env = TestEnv::new();
    let pwned = env.home.path().join("pwned");
    let evil = format!("touch '{}'\n", pwned.display());
    env.write(".git-agent/hooks/git/post-commit", &evil);
    env.write(".git-agent/hooks/post-commit", &evil);
    env.write(
        ".git-agent/config",
        "[agent \"hooks\"]\n\tpostCommit = -m pwned\n\tprePush = true\n",
    );
    env.write(".gitconfig", "[agent \"hooks\"]\n\tpostCommit = -m pwned\n");
    env.git(&["add", "."]).ok();
    env.git(&["commit", "-qm", "hostile"]).ok();
    env.agent(&["hooks", "install"]).ok();
    let body = std::fs::read_to_string(hooks_dir(&env).join("post-commit")).unwrap();
    assert!(!body.contains("pwned"), "{body}");
    let list = env.agent(&["hooks", "list"]).ok();
    assert!(
        list.stdout
            .contains("off (git config agent.hooks.postCommit review)"),
        "{list}"
    );
    assert!(
        list.stdout
            .contains("off (git config agent.hooks.prePush true)"),
        "{list}"
    );
    env.write("b.txt", "b\n");
    env.git(&["add", "b.txt"]).ok();
    env.git(&["commit", "-qm", "b"]).ok();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!pwned.exists());
    assert_eq!(
        env.json(&["list", "--json"])["tasks"]
            .clone()
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The user's own config may replace a body.
    let mine = env.home.path().join(".config/git-agent/hooks/git");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("post-commit"), "echo my own body\n").unwrap();
    env.agent(&["hooks", "install", "post-commit"]).ok();
    let body = std::fs::read_to_string(hooks_dir(&env).join("post-commit")).unwrap();
    assert!(body.contains("echo my own body"), "{body}");
}

/// A bare remote the repository pushes to.
fn bare_remote(env: &TestEnv) -> PathBuf {
    let bare = env.home.path().join("remote.git");
    env.git(&["init", "-q", "--bare", bare.to_str().unwrap()])
        .ok();
    env.git(&["remote", "add", "origin", bare.to_str().unwrap()])
        .ok();
    env.git(&["push", "-q", "origin", "main"]).ok();
    bare
}

#[test]
fn the_pre_push_gate_refuses_raw_agent_commits_and_allows_promoted_work() {
    require_docker!();
    let env = TestEnv::new();
    let bare = bare_remote(&env);
    env.finished_task("t1", "one.txt");
    env.agent(&["hooks", "install", "pre-push"]).ok();
    env.git(&["config", "agent.hooks.prePush", "true"]).ok();
    let main = env.git(&["rev-parse", "main"]).ok().stdout;

    // The agent's commit merged straight into a branch.
    env.git(&["merge", "-q", "--ff-only", "refs/agent/t1/head"])
        .ok();
    let refused = env.git(&["push", "origin", "main"]).fails();
    assert!(
        refused.stderr.contains(
            "Error: refusing to push 1 commit(s) made in a git-agent sandbox and not promoted"
        ) && refused.stderr.contains("(task t1)"),
        "{refused}"
    );
    assert!(refused.stderr.contains("git agent commit t1"), "{refused}");
    let remote_main = crate::common::TestEnv::git(
        &env,
        &["ls-remote", bare.to_str().unwrap(), "refs/heads/main"],
    )
    .ok();
    assert!(remote_main.stdout.starts_with(main.trim()), "{remote_main}");
    // A new branch holding it is refused as well.
    let refused = env
        .git(&["push", "origin", "refs/agent/t1/head:refs/heads/raw"])
        .fails();
    assert!(refused.stderr.contains("(task t1)"), "{refused}");

    // Promoted work passes.
    env.git(&["reset", "-q", "--hard", main.trim()]).ok();
    env.agent(&["commit", "t1", "-m", "one file"]).ok();
    env.git(&["push", "-q", "origin", "agent/t1"]).ok();
    env.git(&["merge", "-q", "--ff-only", "agent/t1"]).ok();
    env.git(&["push", "-q", "origin", "main"]).ok();
    // Switched off, the gate lets everything through.
    env.git(&["config", "agent.hooks.prePush", "false"]).ok();
    env.git(&["push", "-q", "origin", "refs/agent/t1/head:refs/heads/raw"])
        .ok();
}

#[test]
fn event_hooks_fire_once_with_hostile_values_kept_out_of_the_command() {
    require_docker!();
    let env = TestEnv::new();
    let log = env.home.path().join("events.log");
    let pwned = env.home.path().join("pwned");
    let record = format!(
        "printf '%s|%s|%s|%s\\n' \"$GIT_AGENT_EVENT\" \"$GIT_AGENT_TASK\" \"$GIT_AGENT_STATUS\" \"$GIT_AGENT_EXIT_CODE\" >> '{}'",
        log.display()
    );
    env.git(&["config", "agent.onFinish", &record]).ok();
    env.git(&["config", "agent.onFail", &record]).ok();
    env.agent(&["spawn", "--name", "ok", "--wait", "-m", "x", "--", "true"])
        .ok();
    // A run whose output and exit are the agent's: shell code in them stays data.
    let hostile = format!(
        "echo \"\\$(touch {p})\"; echo '`touch {p}`'; exit 7",
        p = pwned.display()
    );
    env.agent(&[
        "spawn", "--name", "bad.1", "--wait", "-m", "x", "--", "sh", "-c", &hostile,
    ]);
    // Every command that looks at the tasks afterwards leaves the events alone.
    for _ in 0..2 {
        env.agent(&["sync", "ok"]).ok();
        env.agent(&["list"]).ok();
        env.agent(&["status", "bad.1"]).ok();
    }
    let mut got = lines_of(&log, 2);
    std::thread::sleep(Duration::from_millis(500));
    got = lines_of(&log, got.len() + 1)
        .into_iter()
        .take(10)
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, vec!["fail|bad.1|exited|7", "finish|ok|exited|0"]);
    assert!(!pwned.exists());
}

/// An agent that waits for input twice: the first episode announced twice (one episode), then
/// closed, then a second one; its messages carry shell code and a terminal escape.
const WAITING_AGENT: &str = r#"git-agent-sandbox wait-notify 'which database? $(touch PWNED)'
sleep 4
git-agent-sandbox wait-notify 'asked again'
sleep 3
git-agent-sandbox wait-notify --done
sleep 2
git-agent-sandbox wait-notify "$(printf 'second\033[2J')"
sleep 4"#;

#[test]
fn on_wait_fires_once_per_waiting_episode_with_the_task_in_its_environment() {
    require_docker!();
    let env = TestEnv::new();
    env.git(&["config", "agent.follow", "true"]).ok();
    env.git(&["config", "agent.followInterval", "1s"]).ok();
    let log = env.home.path().join("events.log");
    let pwned = env.home.path().join("pwned");
    let record = format!(
        "printf '%s|%s|%s|%s\\n' \"$GIT_AGENT_EVENT\" \"$GIT_AGENT_TASK\" \"$GIT_AGENT_STATUS\" \"$GIT_AGENT_REASON\" >> '{}'",
        log.display()
    );
    env.git(&["config", "agent.onWait", &record]).ok();
    env.git(&["config", "agent.onFinish", &record]).ok();
    let script = WAITING_AGENT.replace("PWNED", &pwned.display().to_string());
    env.agent(&[
        "spawn", "--name", "asks", "-m", "x", "--", "sh", "-c", &script,
    ])
    .ok();
    let run = env.agent(&["wait", "asks"]);
    assert_eq!(run.code, 0, "{run}");
    // The follower records the end (and fires onFinish) after its last round.
    let got = lines_of(&log, 3);
    std::thread::sleep(Duration::from_millis(1500));
    let got_later = lines_of(&log, got.len() + 1);
    let follow_log = std::fs::read_to_string(env.repo.join(".git/git-agent/follow/asks.log"))
        .unwrap_or_default();
    assert_eq!(
        got_later,
        vec![
            format!(
                "wait|asks|running|which database? $(touch {})",
                pwned.display()
            ),
            "wait|asks|running|second [2J".to_string(),
            "finish|asks|exited|".to_string(),
        ],
        "follower's log:\n{follow_log}"
    );
    assert!(!pwned.exists());
    // Each episode is one recorded change of the task's state.
    let waits = env
        .git(&["log", "--format=%s", "refs/agent/asks/state"])
        .ok()
        .stdout
        .lines()
        .filter(|m| *m == "wait for input")
        .count();
    assert_eq!(waits, 2);
}

#[test]
fn post_commit_trigger_queues_a_task() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["hooks", "install", "post-commit"]).ok();
    // The review template, run by an exec agent (no credentials in tests); the hook adds the
    // base and a description before the `--`.
    env.git(&[
        "config",
        "agent.hooks.postCommit",
        "-t review --agent exec -- true",
    ])
    .ok();
    env.write("c.txt", "c\n");
    env.git(&["add", "c.txt"]).ok();
    let started = Instant::now();
    env.git(&["commit", "-qm", "c"]).ok();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the commit waited"
    );
    let head = env
        .git(&["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = env.json(&["list", "--json"])["tasks"].clone();
        let queued =
            tasks.as_array().unwrap().iter().any(|t| {
                t["base"].as_str() == Some(head.as_str()) || t.to_string().contains(&head)
            });
        if queued {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no task was queued on {head}: {tasks}\nhook log:\n{}",
            std::fs::read_to_string(env.repo.join(".git/git-agent/hooks/post-commit.log"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_pre_push_gate_wants_review_flags_acknowledged() {
    require_docker!();
    let env = TestEnv::new();
    bare_remote(&env);
    env.finished_task("flagged", ".envrc");
    env.agent(&["hooks", "install", "pre-push"]).ok();
    env.git(&["config", "agent.hooks.prePush", "true"]).ok();
    env.agent(&["commit", "flagged", "-m", "an envrc"]).ok();
    let refused = env.git(&["push", "origin", "agent/flagged"]).fails();
    assert!(
        refused.stderr.contains(
            "refusing to push the promoted work of task flagged: review flagged 1 change(s) that were not acknowledged"
        ),
        "{refused}"
    );
    assert!(
        refused.stderr.contains("git agent review flagged --ack"),
        "{refused}"
    );
    let ack = env.agent(&["review", "flagged", "--ack", "--stat"]).ok();
    assert!(
        ack.stderr
            .contains("acknowledged the review flags of flagged"),
        "{ack}"
    );
    env.git(&["push", "-q", "origin", "agent/flagged"]).ok();
}

#[test]
fn the_message_helper_drafts_a_message_for_an_empty_one_only() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["hooks", "install", "prepare-commit-msg"]).ok();
    env.git(&[
        "config",
        "agent.hooks.prepareCommitMsg",
        "-- printf Drafted-summary\\n\\nfrom-the-sandbox",
    ])
    .ok();
    env.write("d.txt", "d\n");
    env.git(&["add", "d.txt"]).ok();
    // An empty message (as an editor would leave it) gets the draft.
    env.git(&["-c", "core.editor=true", "commit", "-q"]).ok();
    let msg = env.git(&["log", "-1", "--format=%B"]).ok().stdout;
    assert!(msg.starts_with("Drafted-summary"), "{msg}");
    // `-m` keeps the user's message; the scratch task is gone.
    env.write("e.txt", "e\n");
    env.git(&["add", "e.txt"]).ok();
    env.git(&["commit", "-qm", "mine"]).ok();
    assert_eq!(
        env.git(&["log", "-1", "--format=%B"]).ok().stdout.trim(),
        "mine"
    );
    assert_eq!(
        env.json(&["list", "--json"])["tasks"]
            .clone()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // A drafting failure leaves the message to the user.
    env.git(&["config", "agent.hooks.prepareCommitMsg", "-- false"])
        .ok();
    env.write("f.txt", "f\n");
    env.git(&["add", "f.txt"]).ok();
    let run = env
        .git(&[
            "-c",
            "core.editor=true",
            "commit",
            "-q",
            "--allow-empty-message",
        ])
        .ok();
    assert!(
        run.stderr.contains("no commit message was drafted"),
        "{run}"
    );
}
