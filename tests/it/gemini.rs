//! End to end with the real Gemini CLI (on Node 22 from the npm registry), installed into the
//! agent image, talking through its task's credential vault to the scripted fake Gemini API
//! on the host; and the vault forwarding nothing of Google's API but content generation.

use serde_json::json;

use crate::common::TestEnv;
use crate::fake_gemini::{FakeGemini, Step};
use crate::opencode::{container_never_held, use_fake};
use crate::require_docker;

const KEY: &str = "AIza-gemini-real-key-for-git-agent";

/// Run by the agent's shell tool: ask the vault, with the task's own stand-in, for what the
/// Gemini definition does not forward, and write each answer's status to probe.txt.
const PROBE: &str = r#"node -e 'const b=process.env.GOOGLE_GEMINI_BASE_URL,k=process.env.GEMINI_API_KEY;(async()=>{const o=[];for(const [m,p] of [["GET","/v1beta/models"],["POST","/v1beta/models/x:countTokens"],["POST","/v1beta/files"],["POST","/v1beta/models/a:b:generateContent"],["POST","/v1beta/models/x:generateContentX"],["POST","/v1beta/tunedModels/x:generateContent"]]){const r=await fetch(b+p,{method:m,headers:{"x-goog-api-key":k,"content-type":"application/json"},body:m==="POST"?"{}":undefined});o.push(m+" "+p+" "+r.status)}require("fs").writeFileSync("probe.txt",o.join("\n")+"\n")})()'"#;

#[test]
fn gemini_cli_works_through_the_vault_and_the_work_is_promoted() {
    require_docker!();
    let env = TestEnv::new();
    let fake = FakeGemini::start_requiring_key(
        vec![
            Step::call(
                "write_file",
                json!({"file_path": "/workspace/hello.txt", "content": "hello\n"}),
            ),
            Step::call(
                "replace",
                json!({"file_path": "/workspace/hello.txt", "old_string": "hello", "new_string": "hello, world", "instruction": "Greet the world"}),
            ),
            Step::call(
                "run_shell_command",
                json!({"command": format!("echo ok > ran.txt && {PROBE}"), "description": "Record that the shell ran"}),
            ),
            Step::text("Added hello.txt and ran the shell."),
        ],
        KEY,
    );
    use_fake(&env, "gemini", &fake.base_url(crate::common::host_alias()));
    let spawn = env.agent_with(
        &[
            "spawn",
            "--agent",
            "gemini",
            "--name",
            "gm",
            "--type",
            "feat",
            "-m",
            "add a greeting file",
            "--wait",
        ],
        |c| {
            c.env("GEMINI_API_KEY", KEY);
        },
    );
    assert_eq!(spawn.code, 0, "{spawn}\n{}", fake.describe());
    assert!(!fake.overrun(), "{}", fake.describe());
    assert_eq!(fake.steps_served(), 4, "{}", fake.describe());

    // Every request reached the fake with the real key (swapped in by the vault) and only
    // at the generation endpoints; the prompt is in the first, the tools' results in the last.
    let reqs = fake.requests();
    for r in &reqs {
        assert_eq!(r.api_key(), Some(KEY), "{}", fake.describe());
        assert!(
            r.path.contains(":streamGenerateContent") || r.path.contains(":generateContent"),
            "{}",
            fake.describe()
        );
    }
    let main = fake.main_requests();
    assert!(
        main[0].path.ends_with(":streamGenerateContent?alt=sse"),
        "{}",
        main[0].path
    );
    let body = main[0].body.to_string();
    assert!(body.contains("Implement this feature") && body.contains("add a greeting file"));
    assert_eq!(main[3].function_responses().len(), 3, "{}", main[3].body);

    env.agent(&["sync", "gm"]).ok();
    let refs = env.task_refs("gm");
    let tip = refs.get("wip").or(refs.get("head")).unwrap().clone();
    let show = |f: &str| env.git(&["show", &format!("{tip}:{f}")]).ok().stdout;
    assert_eq!(show("hello.txt"), "hello, world\n");
    assert_eq!(show("ran.txt"), "ok\n");
    // The stand-in opens nothing at the vault but content generation.
    let probe = show("probe.txt");
    assert_eq!(probe.lines().count(), 6, "{probe}");
    for line in probe.lines() {
        assert!(line.ends_with(" 403"), "the vault let through: {probe}");
    }

    let st = env.json(&["status", "gm", "--json"]);
    assert_eq!(st["status"], "exited", "{st}");
    assert!(st["stats"]["input_tokens"].as_u64().unwrap() > 0, "{st}");
    assert!(st["stats"]["output_tokens"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(
        st["stats"]["final_message"],
        "Added hello.txt and ran the shell."
    );
    let logs = env.agent(&["logs", "gm"]).ok().stdout;
    for want in [
        "→ write_file ",
        "→ replace ",
        "→ run_shell_command ",
        "■ done: ",
    ] {
        assert!(logs.contains(want), "{want} missing:\n{logs}");
    }

    container_never_held(&env, "gm", "GEMINI_API_KEY", KEY);

    // `continue` resumes the CLI's latest session (kept in the task's home volume): the
    // model sees the first run's prompt with the follow-up, again through a vault.
    fake.push_steps(vec![Step::text("Second part done.")]);
    env.agent_with(
        &["continue", "gm", "-m", "now mention the albatross"],
        |c| {
            c.env("GEMINI_API_KEY", KEY);
        },
    )
    .ok();
    let st = crate::followups::ended(&env, "gm");
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

    env.agent(&["commit", "gm", "-m", "Add a greeting"]).ok();
    assert_eq!(
        env.git(&["show", "agent/gm:hello.txt"]).ok().stdout,
        "hello, world\n"
    );
}
