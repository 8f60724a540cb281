//! End to end with the real Claude Code CLI, installed from npm into the agent image during
//! the build, talking to the scripted fake Anthropic API (`fake_anthropic`) on the host.

use std::process::Command;

use serde_json::json;

use crate::common::TestEnv;
use crate::fake_anthropic::{FakeAnthropic, Step};
use crate::require_docker;

const KEY: &str = "sk-ant-test-key-for-git-agent";

/// Configure `env` so the claude image builds here (npm behind the TLS-inspecting proxy needs
/// the host's CA bundle) and the agent talks to `fake`.
pub(crate) fn use_fake(env: &TestEnv, fake: &FakeAnthropic) {
    env.git(&[
        "config",
        "agent.extraCaCerts",
        "/etc/ssl/certs/ca-certificates.crt",
    ])
    .ok();
    env.git(&[
        "config",
        "agent.claude.baseUrl",
        &fake.base_url(crate::common::host_alias()),
    ])
    .ok();
}

#[test]
fn claude_code_edits_files_and_the_work_is_promoted() {
    require_docker!();
    let env = TestEnv::new();
    let fake = FakeAnthropic::start_requiring_key(
        vec![
            Step::tool(
                "Write",
                json!({"file_path": "/workspace/hello.txt", "content": "hello\n"}),
            ),
            Step::tool(
                "Edit",
                json!({"file_path": "/workspace/hello.txt", "old_string": "hello", "new_string": "hello, world"}),
            ),
            Step::tool(
                "Bash",
                json!({"command": "echo ok > ran.txt", "description": "Record that the shell ran"}),
            ),
            Step::text("Added hello.txt and ran the shell."),
        ],
        KEY,
    );
    use_fake(&env, &fake);
    let spawn = env.agent_with(
        &[
            "spawn",
            "--agent",
            "claude",
            "--name",
            "cc",
            "--type",
            "feat",
            "-m",
            "add a greeting file",
            "--wait",
        ],
        |c| {
            c.env("ANTHROPIC_API_KEY", KEY);
        },
    );
    assert_eq!(spawn.code, 0, "{spawn}\n{}", fake.describe());
    assert!(!fake.overrun(), "{}", fake.describe());
    assert_eq!(fake.steps_served(), 4, "{}", fake.describe());

    // The prompt rendered from the `feat` template reached the model, with the real key.
    let first = &fake.main_requests()[0];
    assert_eq!(first.api_key(), Some(KEY));
    let body = first.body.to_string();
    assert!(body.contains("Implement this feature"), "{body}");
    assert!(
        body.contains("add a greeting file") && body.contains("agent/cc"),
        "{body}"
    );

    env.agent(&["sync", "cc"]).ok();
    let tip = {
        let refs = env.task_refs("cc");
        refs.get("wip").or(refs.get("head")).unwrap().clone()
    };
    assert_eq!(
        env.git(&["show", &format!("{tip}:hello.txt")]).ok().stdout,
        "hello, world\n"
    );
    assert_eq!(
        env.git(&["show", &format!("{tip}:ran.txt")]).ok().stdout,
        "ok\n"
    );

    let st = env.json(&["status", "cc", "--json"]);
    assert_eq!(st["status"], "exited");
    assert!(st["stats"]["turns"].as_u64().unwrap() >= 4, "{st}");
    assert!(st["stats"]["input_tokens"].as_u64().unwrap() > 0, "{st}");
    assert!(st["stats"]["output_tokens"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(
        st["stats"]["final_message"],
        "Added hello.txt and ran the shell."
    );
    let list = env.agent(&["list"]).ok().stdout;
    assert!(list.contains("tokens"), "{list}");

    let logs = env.agent(&["logs", "cc"]).ok().stdout;
    assert!(
        logs.contains("→ Write") && logs.contains("→ Edit") && logs.contains("→ Bash"),
        "{logs}"
    );
    assert!(logs.contains("■ done"), "{logs}");
    let raw = env.agent(&["logs", "--raw", "cc"]).ok().stdout;
    assert!(
        raw.lines().any(|l| l.contains("\"type\":\"result\"")),
        "{raw}"
    );

    // The key is not in the kept transcript; promotion goes to a bare remote as the user.
    assert!(!raw.contains(KEY));
    let remote = env.home.path().join("remote.git");
    env.git(&["init", "-q", "--bare", remote.to_str().unwrap()])
        .ok();
    env.git(&["remote", "add", "origin", remote.to_str().unwrap()])
        .ok();
    env.agent(&["commit-push", "cc", "-m", "Add a greeting"])
        .ok();
    let show = Command::new("git")
        .args([
            "--git-dir",
            remote.to_str().unwrap(),
            "show",
            "agent/cc:hello.txt",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&show.stdout), "hello, world\n");
    let author = Command::new("git")
        .args([
            "--git-dir",
            remote.to_str().unwrap(),
            "log",
            "-1",
            "--format=%an",
            "agent/cc",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&author.stdout).trim(), "Test User");
}

/// `restart` recreates the container and resumes the conversation: the agent's session lives
/// in the task's home volume, so the model sees the earlier turns again.
#[test]
fn restart_resumes_the_previous_conversation() {
    require_docker!();
    let env = TestEnv::new();
    let fake = FakeAnthropic::start(vec![
        Step::tool(
            "Write",
            json!({"file_path": "/workspace/one.txt", "content": "one\n"}),
        ),
        Step::text("First part done."),
    ]);
    use_fake(&env, &fake);
    let key = |c: &mut Command| {
        c.env("ANTHROPIC_API_KEY", KEY);
    };
    env.agent_with(
        &[
            "spawn",
            "--agent",
            "claude",
            "--name",
            "again",
            "-m",
            "remember the word pelican",
            "--wait",
        ],
        key,
    )
    .ok();
    let first_container = Command::new("docker")
        .args(["inspect", "-f", "{{.Id}}", &env.container_of("again")])
        .output()
        .unwrap();
    fake.push_steps(vec![
        Step::tool(
            "Write",
            json!({"file_path": "/workspace/two.txt", "content": "two\n"}),
        ),
        Step::text("Second part done."),
    ]);
    let restarted = env.agent_with(&["restart", "again"], key).ok();
    assert_eq!(restarted.stdout.trim(), "again");
    let second_container = Command::new("docker")
        .args(["inspect", "-f", "{{.Id}}", &env.container_of("again")])
        .output()
        .unwrap();
    assert_ne!(
        first_container.stdout, second_container.stdout,
        "a new container"
    );
    assert!(
        fake.wait_for(4, std::time::Duration::from_secs(90), |r| r.is_main()),
        "{}",
        fake.describe()
    );
    // The resumed conversation carries the first run's prompt and the new instruction.
    let resumed = fake.main_requests()[2].body.to_string();
    assert!(resumed.contains("pelican"), "{resumed}");
    assert!(resumed.contains("Continue the task"), "{resumed}");
    let mut st = serde_json::Value::Null;
    for _ in 0..100 {
        st = env.json(&["status", "again", "--json"]);
        if st["status"] == "exited" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(st["status"], "exited", "{st}");
    assert_eq!(st["restarts"], 1);
    env.agent(&["sync", "again"]).ok();
    let refs = env.task_refs("again");
    let tip = refs.get("wip").or(refs.get("head")).unwrap().clone();
    assert_eq!(
        env.git(&["show", &format!("{tip}:one.txt")]).ok().stdout,
        "one\n"
    );
    assert_eq!(
        env.git(&["show", &format!("{tip}:two.txt")]).ok().stdout,
        "two\n"
    );
}

/// `commit` without -m asks the task's agent for a draft (headless, in the sandbox, with the
/// `commit-msg` template) and opens it in the editor, where the user accepts it. The agent
/// planted Claude Code hooks in its home and its workspace first: the draft runs in a fresh
/// container without either, so nothing the agent wrote runs, and the task's own container
/// is never started again.
#[test]
fn commit_message_is_drafted_by_the_agent() {
    require_docker!();
    if which::which("script").is_err() {
        eprintln!("SKIPPED: util-linux `script` is not installed");
        return;
    }
    let env = TestEnv::new();
    // Hook output reaches the model as context: "PLANTED-42" in any request means it ran.
    let hook = json!({"type": "command", "command": "echo PLANTED-$((6*7))"});
    let hooks = json!({"hooks": {
        "SessionStart": [{"hooks": [hook.clone()]}],
        "UserPromptSubmit": [{"hooks": [hook.clone()]}],
        "Stop": [{"hooks": [hook]}],
    }})
    .to_string();
    let plant = format!(
        "mkdir -p /home/agent/.claude /workspace/.claude && printf '%s' '{hooks}' > /home/agent/.claude/settings.json && cp /home/agent/.claude/settings.json /workspace/.claude/settings.json"
    );
    let fake = FakeAnthropic::start(vec![
        Step::tool("Bash", json!({"command": plant, "description": "plant"})),
        Step::tool(
            "Write",
            json!({"file_path": "/workspace/notes.txt", "content": "notes\n"}),
        ),
        Step::text("Wrote notes."),
        Step::text("Add notes.txt\n\nKeep the meeting notes next to the code."),
    ]);
    use_fake(&env, &fake);
    env.agent_with(
        &[
            "spawn",
            "--agent",
            "claude",
            "--name",
            "msg",
            "-m",
            "write notes",
            "--wait",
        ],
        |c| {
            c.env("ANTHROPIC_API_KEY", KEY);
        },
    )
    .ok();
    let started_at = || {
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.State.StartedAt}}",
                &env.container_of("msg"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let started_before = started_at();
    let run_requests = fake.main_requests().len();
    // The "editor" accepts the draft as it is, after checking it was offered.
    let editor = env.home.path().join("accept.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\ngrep -q '^Add notes.txt' \"$1\" || exit 9\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = env
        .pty_command("commit msg")
        .env("GIT_EDITOR", &editor)
        .env("ANTHROPIC_API_KEY", KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        fake.describe()
    );
    let requests = fake.main_requests();
    let asked = requests.last().expect("a draft request").body.to_string();
    assert!(asked.contains("Write a git commit message"), "{asked}");
    // The draft saw the planted files only as diff text, never ran them.
    assert!(asked.contains("PLANTED-$((6*7))"), "{asked}");
    for r in &requests[run_requests..] {
        assert!(
            !r.body.to_string().contains("PLANTED-42"),
            "a planted hook ran: {}",
            r.body
        );
    }
    assert_eq!(
        started_at(),
        started_before,
        "the task's container ran again"
    );
    let msg = env
        .git(&["log", "-1", "--format=%B", "agent/msg"])
        .ok()
        .stdout;
    assert_eq!(
        msg.trim_end(),
        "Add notes.txt\n\nKeep the meeting notes next to the code."
    );
}

/// `spawn -i` with Claude Code's real terminal UI in tmux: the prompt reaches the agent with no
/// first-run dialog in the way, it works against the fake API through the vault, Ctrl-P
/// Ctrl-Q detaches and leaves it running, `attach` finds the same session (a follow-up typed
/// there is answered in the same conversation), and the work comes home by itself.
#[test]
fn interactive_claude_code_in_a_terminal_detaches_reattaches_and_its_work_comes_home() {
    require_docker!();
    if which::which("tmux").is_err() {
        assert!(
            std::env::var_os("GIT_AGENT_REQUIRE_DOCKER").is_none(),
            "tmux is needed for the interactive Claude Code test"
        );
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    let env = TestEnv::new();
    let fake = FakeAnthropic::start_requiring_key(
        vec![
            Step::tool(
                "Write",
                json!({"file_path": "/workspace/hello.txt", "content": "hello\n"}),
            ),
            Step::text("Wrote hello.txt as asked."),
            Step::tool(
                "Edit",
                json!({"file_path": "/workspace/hello.txt", "old_string": "hello", "new_string": "hello again"}),
            ),
            Step::text("Changed the greeting too."),
        ],
        KEY,
    );
    use_fake(&env, &fake);
    env.git(&["config", "agent.follow", "true"]).ok();
    env.git(&["config", "agent.followInterval", "1s"]).ok();
    env.agent(&["image", "build", "--agent", "claude"]).ok();

    let sock = env.home.path().join("tmux.sock");
    let tmux = |args: &[&str]| {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let session = std::cell::Cell::new("cc");
    let screen = || tmux(&["capture-pane", "-p", "-t", session.get()]);
    let wait_for = |needle: &str, secs: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if screen().contains(needle) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!(
            "the screen never showed {needle:?}:\n{}\n{}",
            screen(),
            fake.describe()
        );
    };
    let cmd = |args: &str| {
        format!(
            "cd '{}' && HOME='{}' GIT_CONFIG_NOSYSTEM=1 ANTHROPIC_API_KEY='{KEY}' {} {args}; echo EXITED-$?; sleep 120",
            env.repo.display(),
            env.home.path().display(),
            crate::common::BIN
        )
    };
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "cc",
        "-x",
        "120",
        "-y",
        "40",
        &cmd("spawn -i --agent claude --name tui -m 'add a greeting file'"),
    ]);
    // The prompt went straight to the agent, which wrote the file and said so.
    wait_for("Wrote hello.txt as asked.", 180);
    assert_eq!(fake.steps_served(), 2, "{}", fake.describe());
    let first = &fake.main_requests()[0];
    assert_eq!(first.api_key(), Some(KEY), "the vault put the real key in");
    assert!(
        first.body.to_string().contains("add a greeting file"),
        "{}",
        fake.describe()
    );
    // The follower brings the work home while the session is still open.
    let came_home = |want: &str| {
        (0..160).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let refs = env.task_refs("tui");
            refs.get("wip")
                .or(refs.get("head"))
                .is_some_and(|tip| env.git(&["show", &format!("{tip}:hello.txt")]).stdout == want)
        })
    };
    assert!(came_home("hello\n"), "the work did not come home");

    tmux(&["send-keys", "-t", "cc", "C-p", "C-q"]);
    wait_for("EXITED-0", 30);
    let st = env.json(&["status", "tui", "--json"]);
    assert_eq!(
        st["status"], "running",
        "detaching leaves the agent running"
    );

    session.set("again");
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "again",
        "-x",
        "120",
        "-y",
        "40",
        &cmd("attach tui"),
    ]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    tmux(&["send-keys", "-t", "again", "-l", "now change the greeting"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    tmux(&["send-keys", "-t", "again", "Enter"]);
    wait_for("Changed the greeting too.", 120);
    assert_eq!(fake.steps_served(), 4, "{}", fake.describe());
    // The same conversation: the follow-up request carries the first exchange.
    let last = fake.main_requests().last().unwrap().body.to_string();
    assert!(
        last.contains("add a greeting file") && last.contains("now change the greeting"),
        "{last}"
    );
    assert!(
        came_home("hello again\n"),
        "the second change did not come home"
    );
    let _ = tmux(&["kill-server"]);
}
