//! Follow-ups against the real engine: `retry` starts a new task from an old one's record
//! (linked both ways), `continue` sends a follow-up to a task whose run ended (with exec, and
//! with the real Claude Code against the fake model API, resuming its conversation).

use std::process::Command;

use serde_json::json;

use crate::common::TestEnv;
use crate::fake_anthropic::{FakeAnthropic, Step};
use crate::require_docker;

/// Wait until the task's run has ended; returns its `status --json`.
#[track_caller]
pub(crate) fn ended(env: &TestEnv, task: &str) -> serde_json::Value {
    let mut st = serde_json::Value::Null;
    for _ in 0..300 {
        st = env.json(&["status", task, "--json"]);
        if st["status"] != "running" && st["status"] != "creating" {
            return st;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("task {task} did not end: {st}");
}

/// The file at the task's synced tip.
fn file_at_tip(env: &TestEnv, task: &str, file: &str) -> String {
    env.agent(&["sync", task]).ok();
    let refs = env.task_refs(task);
    let tip = refs.get("wip").or(refs.get("head")).expect("synced work");
    env.git(&["show", &format!("{tip}:{file}")]).ok().stdout
}

/// The exec command of these tests: keep the prompt (stdin) in the next free `round-<n>.txt`
/// and commit it; `exit 3` makes the first task's run fail.
const ROUND: &str = "n=$(ls round-*.txt 2>/dev/null | wc -l); cat > round-$n.txt && git add -A && git commit -qm \"round $n\"";

#[test]
fn retry_starts_from_the_record_links_both_ways_and_takes_base_and_prompt() {
    require_docker!();
    let env = TestEnv::new();
    let first = env.agent(&[
        "spawn",
        "--name",
        "first",
        "--timeout",
        "5m",
        "--read-only",
        "--wait",
        "-m",
        "the first words",
        "--",
        "sh",
        "-c",
        &format!("{ROUND}; exit 3"),
    ]);
    assert_eq!(first.code, 3, "{first}");
    let old = ended(&env, "first");
    assert_eq!(old["exit_code"], 3);

    // A retry of the failed task: same base, prompt, agent, command and settings.
    let retry = env.json(&["retry", "first", "--json"]);
    assert_eq!(retry["task"], "first-retry", "{retry}");
    assert_eq!(retry["retry_of"], "first");
    let new = ended(&env, "first-retry");
    assert_eq!(new["retry_of"], "first");
    for field in [
        "base",
        "agent",
        "command",
        "timeout",
        "read_only",
        "network",
        "stack",
    ] {
        assert_eq!(new[field], old[field], "{field}");
    }
    assert_eq!(new["prompt"], "the first words");
    assert_eq!(
        file_at_tip(&env, "first-retry", "round-0.txt"),
        "the first words"
    );
    let text = env.agent(&["status", "first-retry"]).ok().stdout;
    assert!(text.contains("retry of:  first\n"), "{text}");
    let text = env.agent(&["status", "first"]).ok().stdout;
    assert!(text.contains("retried:   as first-retry\n"), "{text}");
    let rows = env.json(&["list", "--json"])["tasks"].clone();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task"] == "first-retry")
        .unwrap();
    assert_eq!(row["retry_of"], "first");

    // From a newer base, with a new prompt and name.
    env.write("NEWS.md", "news\n");
    env.git(&["add", "NEWS.md"]).ok();
    env.git(&["commit", "-qm", "news"]).ok();
    let head = env
        .git(&["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let second = env
        .agent(&[
            "retry",
            "first",
            "--base",
            "HEAD",
            "-m",
            "other words",
            "--name",
            "second",
        ])
        .ok();
    assert_eq!(second.stdout.trim(), "second");
    let st = ended(&env, "second");
    assert_eq!(st["base"], head.as_str());
    assert_eq!(st["prompt"], "other words");
    assert_eq!(file_at_tip(&env, "second", "round-0.txt"), "other words");
    assert_eq!(file_at_tip(&env, "second", "NEWS.md"), "news\n");
    let old = env.json(&["status", "first", "--json"]);
    assert_eq!(old["retried_as"], json!(["first-retry", "second"]));

    // A task fetched from another clone is retried from its refs alone.
    let other = TestEnv::new();
    other
        .git(&[
            "fetch",
            "-q",
            env.repo.to_str().unwrap(),
            "refs/agent/first/*:refs/agent/first/*",
        ])
        .ok();
    let fetched = other.agent(&["retry", "first", "--name", "there"]).ok();
    assert_eq!(fetched.stdout.trim(), "there");
    let st = ended(&other, "there");
    assert_eq!(st["retry_of"], "first");
    assert_eq!(
        file_at_tip(&other, "there", "round-0.txt"),
        "the first words"
    );

    // A task purged with its refs cannot be retried: the hint says how to bring it back.
    env.agent(&["purge", "--refs", "--force", "first"]).ok();
    let refused = env.agent(&["retry", "first"]).fails();
    assert!(
        refused.stderr.contains("was purged with --refs")
            && refused.stderr.contains("git agent purge --undo first"),
        "{refused}"
    );
}

#[test]
fn continue_runs_the_exec_agent_again_with_the_follow_up_as_data() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "cont",
        "--wait",
        "-m",
        "round zero",
        "--",
        "sh",
        "-c",
        ROUND,
    ])
    .ok();
    ended(&env, "cont");
    env.agent(&["sync", "cont"]).ok();
    let first_head = env.task_refs("cont")["head"].clone();

    // Hostile text: if any shell saw it as code, files would appear (in the workspace or on
    // the host); as data it is kept byte for byte.
    let canary = env.home.path().join("host-canary");
    let hostile = format!(
        "$(touch injected-1) `touch injected-2` '; touch injected-3; ' \"; touch {0} #\n$(touch {0})\n-- --help\n",
        canary.display()
    );
    let cont = env.json(&["continue", "cont", "-m", &hostile, "--json"]);
    assert_eq!(cont["task"], "cont");
    assert_eq!(cont["status"], "running");
    assert_eq!(cont["followups"], 1);
    let st = ended(&env, "cont");
    assert_eq!(st["exit_code"], 0, "{st}");
    assert_eq!(st["followups"], 1);
    assert_eq!(st["prompt"], "round zero", "prompt.md stays the original");
    // The second run saw the first run's files and the new prompt; its commit came home on
    // the same branch, on top of the first run's.
    assert_eq!(file_at_tip(&env, "cont", "round-0.txt"), "round zero");
    assert_eq!(file_at_tip(&env, "cont", "round-1.txt"), hostile);
    let head = env.task_refs("cont")["head"].clone();
    env.git(&["merge-base", "--is-ancestor", &first_head, &head])
        .ok();
    let files = env.git(&["ls-tree", "--name-only", &head]).ok().stdout;
    assert!(!files.contains("injected"), "{files}");
    assert!(!canary.exists(), "the follow-up ran on the host");
    let kept = env
        .git(&["show", "refs/agent/cont/state:followup-1.md"])
        .ok()
        .stdout;
    assert_eq!(kept, hostile);
    let text = env.agent(&["status", "cont"]).ok().stdout;
    assert!(text.contains("followups: 1 "), "{text}");

    // A running task is refused, with the commands that end its run.
    env.agent(&["spawn", "--name", "busy", "-m", "x", "--", "sleep", "600"])
        .ok();
    let refused = env.agent(&["continue", "busy", "-m", "more"]).fails();
    assert!(
        refused.stderr.contains("task 'busy' is still running")
            && refused.stderr.contains("git agent stop busy"),
        "{refused}"
    );
    let st = env.json(&["status", "busy", "--json"]);
    assert_eq!(st["status"], "running", "the refusal changed nothing");
    assert!(st.get("followups").is_none(), "{st}");
    env.agent(&["stop", "busy"]).ok();
    // No follow-up is no request.
    let empty = env.agent(&["continue", "cont", "-m", " "]).fails();
    assert!(
        empty.stderr.contains("the follow-up prompt is empty"),
        "{empty}"
    );
}

/// The real Claude Code resumes its conversation: the fake model API sees the first run's
/// turns in the follow-up's request.
#[test]
fn continue_resumes_claude_codes_conversation() {
    require_docker!();
    let env = TestEnv::new();
    let fake = FakeAnthropic::start(vec![
        Step::tool(
            "Write",
            json!({"file_path": "/workspace/one.txt", "content": "one\n"}),
        ),
        Step::text("First part done."),
    ]);
    crate::claude::use_fake(&env, &fake);
    let key = |c: &mut Command| {
        c.env("ANTHROPIC_API_KEY", "sk-ant-test-key-for-git-agent");
    };
    env.agent_with(
        &[
            "spawn",
            "--agent",
            "claude",
            "--name",
            "talk",
            "-m",
            "remember the word pelican",
            "--wait",
        ],
        key,
    )
    .ok();
    fake.push_steps(vec![
        Step::tool(
            "Write",
            json!({"file_path": "/workspace/two.txt", "content": "two\n"}),
        ),
        Step::text("Second part done."),
    ]);
    let cont = env
        .agent_with(
            &["continue", "talk", "-m", "now write the albatross file"],
            key,
        )
        .ok();
    assert_eq!(cont.stdout.trim(), "talk");
    let st = ended(&env, "talk");
    assert_eq!(st["exit_code"], 0, "{st}");
    assert_eq!(st["followups"], 1);
    assert_eq!(st["restarts"], 0, "a follow-up is not counted as a restart");
    let main = fake.main_requests();
    assert_eq!(main.len(), 4, "{}", fake.describe());
    // The resumed conversation carries the first run's prompt and the follow-up.
    let resumed = main[2].body.to_string();
    assert!(resumed.contains("pelican"), "{resumed}");
    assert!(resumed.contains("albatross"), "{resumed}");
    assert!(!resumed.contains("Continue the task"), "{resumed}");
    assert_eq!(file_at_tip(&env, "talk", "one.txt"), "one\n");
    assert_eq!(file_at_tip(&env, "talk", "two.txt"), "two\n");
}
