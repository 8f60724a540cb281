//! End to end with the real OpenCode CLI, installed from npm into the agent image, talking
//! through its task's credential vault to the scripted fake Anthropic API on the host.
//! OpenCode's provider configuration is git-agent's (OPENCODE_CONFIG_CONTENT in its built-in
//! definition): the vault as the Anthropic provider's baseURL and the stand-in as its key.

use std::process::Command;

use serde_json::json;

use crate::common::TestEnv;
use crate::fake_anthropic::{FakeAnthropic, Step};
use crate::require_docker;

const KEY: &str = "sk-ant-opencode-real-key-for-git-agent";

/// The real key is nowhere the task could read: not in its container's environment (which
/// holds the stand-in for `var` instead), not in its workspace or home volumes, not in its
/// kept output.
pub(crate) fn container_never_held(env: &TestEnv, task: &str, var: &str, key: &str) {
    let inspect = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{json .Config.Env}}",
            &env.container_of(task),
        ])
        .output()
        .unwrap();
    let vars = String::from_utf8_lossy(&inspect.stdout).to_string();
    assert!(
        !vars.contains(key),
        "the real key is in the container: {vars}"
    );
    assert!(
        vars.contains(&format!("{var}=git-agent-standin-")),
        "no stand-in for {var}: {vars}"
    );
    let found = env.finished_exec(
        task,
        &format!("grep -rlF -e '{key}' /workspace /home/agent 2>/dev/null; true"),
    );
    assert_eq!(
        found.stdout.trim(),
        "",
        "the real key was written in the task's volumes"
    );
    let raw = env.agent(&["logs", "--raw", task]).ok().stdout;
    assert!(!raw.contains(key));
}

/// Configure `env` so agent images build here (npm behind the TLS-inspecting proxy) and
/// `agent`'s vault forwards to the fake at `base_url`.
pub(crate) fn use_fake(env: &TestEnv, agent: &str, base_url: &str) {
    env.git(&[
        "config",
        "agent.extraCaCerts",
        "/etc/ssl/certs/ca-certificates.crt",
    ])
    .ok();
    env.git(&["config", &format!("agent.{agent}.baseUrl"), base_url])
        .ok();
}

#[test]
fn opencode_works_through_the_vault_and_the_work_is_promoted() {
    require_docker!();
    let env = TestEnv::new();
    let fake = FakeAnthropic::start_requiring_key(
        vec![
            Step::tool(
                "write",
                json!({"filePath": "/workspace/hello.txt", "content": "hello\n"}),
            ),
            Step::tool(
                "edit",
                json!({"filePath": "/workspace/hello.txt", "oldString": "hello", "newString": "hello, world"}),
            ),
            Step::tool(
                "bash",
                json!({"command": "echo ok > ran.txt", "description": "Record that the shell ran"}),
            ),
            Step::text("Added hello.txt and ran the shell."),
        ],
        KEY,
    );
    use_fake(
        &env,
        "opencode",
        &fake.base_url(crate::common::host_alias()),
    );
    let spawn = env.agent_with(
        &[
            "spawn",
            "--agent",
            "opencode",
            "--name",
            "oc",
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
    assert!(
        !spawn.stderr.contains("go into its container"),
        "{}",
        spawn.stderr
    );
    assert!(!fake.overrun(), "{}", fake.describe());
    assert_eq!(fake.steps_served(), 4, "{}", fake.describe());

    // Every request reached the fake with the real key, swapped in by the vault; the prompt
    // rendered from the `feat` template is in the first; each tool's result came back.
    let main = fake.main_requests();
    assert!(
        fake.requests().iter().all(|r| r.api_key() == Some(KEY)),
        "{}",
        fake.describe()
    );
    let body = main[0].body.to_string();
    assert!(body.contains("Implement this feature") && body.contains("add a greeting file"));
    assert_eq!(main[3].tool_results().len(), 3, "{}", main[3].body);

    env.agent(&["sync", "oc"]).ok();
    let refs = env.task_refs("oc");
    let tip = refs.get("wip").or(refs.get("head")).unwrap().clone();
    assert_eq!(
        env.git(&["show", &format!("{tip}:hello.txt")]).ok().stdout,
        "hello, world\n"
    );
    assert_eq!(
        env.git(&["show", &format!("{tip}:ran.txt")]).ok().stdout,
        "ok\n"
    );

    // Its JSON events are read: tokens and cost summed over its steps, readable logs.
    let st = env.json(&["status", "oc", "--json"]);
    assert_eq!(st["status"], "exited", "{st}");
    assert_eq!(st["stats"]["turns"], 4, "{st}");
    assert!(st["stats"]["input_tokens"].as_u64().unwrap() > 0, "{st}");
    assert!(st["stats"]["output_tokens"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(
        st["stats"]["final_message"],
        "Added hello.txt and ran the shell."
    );
    let logs = env.agent(&["logs", "oc"]).ok().stdout;
    for want in ["→ write ", "→ edit ", "→ bash ", "■ done"] {
        assert!(logs.contains(want), "{want} missing:\n{logs}");
    }

    container_never_held(&env, "oc", "ANTHROPIC_API_KEY", KEY);

    // `continue` resumes OpenCode's session (kept in the task's home volume): the model sees
    // the first run's prompt with the follow-up, again through a vault.
    fake.push_steps(vec![Step::text("Second part done.")]);
    env.agent_with(
        &["continue", "oc", "-m", "now mention the albatross"],
        |c| {
            c.env("ANTHROPIC_API_KEY", KEY);
        },
    )
    .ok();
    let st = crate::followups::ended(&env, "oc");
    assert_eq!(st["exit_code"], 0, "{st}");
    let main = fake.main_requests();
    assert_eq!(main.len(), 5, "{}", fake.describe());
    let resumed = main[4].body.to_string();
    assert!(
        resumed.contains("add a greeting file") && resumed.contains("albatross"),
        "{resumed}"
    );
    assert!(fake.requests().iter().all(|r| r.api_key() == Some(KEY)));
    assert_eq!(st["stats"]["final_message"], "Second part done.", "{st}");

    env.agent(&["commit", "oc", "-m", "Add a greeting"]).ok();
    assert_eq!(
        env.git(&["show", "agent/oc:hello.txt"]).ok().stdout,
        "hello, world\n"
    );
    assert_eq!(
        env.git(&["log", "-1", "--format=%an", "agent/oc"])
            .ok()
            .stdout
            .trim(),
        "Test User"
    );
}
