//! Scripting: one `--json` schema, `list` filters, several tasks per command, one duration
//! syntax, `shell -- cmd`, `auth --delete`, `image list|prune`, cost totals.

use crate::common::*;
use crate::require_docker;

fn store_key(env: &TestEnv, agent: &str, var: &str, value: &str) {
    use std::io::Write;
    let mut child = env
        .agent_command(&["auth", "--var", var, agent])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn auth_delete_removes_only_the_named_credential() {
    let env = TestEnv::new();
    store_key(&env, "claude", "ANTHROPIC_API_KEY", "sk-claude\n");
    store_key(&env, "codex", "OPENAI_API_KEY", "sk-codex\n");
    let path = env.home.path().join(".config/git-agent/credentials.toml");

    let gone = env.agent(&["auth", "--delete", "claude"]).ok();
    assert!(gone.stderr.contains("deleted ANTHROPIC_API_KEY"), "{gone}");
    let status = env.agent(&["auth", "claude", "--status"]).ok().stdout;
    assert!(status.contains("not set"), "{status}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("sk-claude") && text.contains("sk-codex"),
        "{text}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the rewritten store stays private");

    // Nothing left to delete is an error that says how to look, and changes nothing.
    let again = env.agent(&["auth", "--delete", "claude"]).fails();
    assert!(
        again.stderr.contains("Error: no credential is stored"),
        "{again}"
    );
    assert!(
        again.stderr.contains("Hint:") && again.stderr.contains("auth --status"),
        "{again}"
    );
    // A variable the agent does not have stored is refused the same way.
    let var = env
        .agent(&["auth", "--delete", "--var", "NOPE", "codex"])
        .fails();
    assert!(var.stderr.contains("no NOPE is stored"), "{var}");
    assert!(std::fs::read_to_string(&path).unwrap().contains("sk-codex"));
    // --delete cannot be mixed with --status.
    assert_eq!(
        env.agent(&["auth", "--delete", "--status", "codex"]).code,
        2
    );
}

#[test]
fn durations_have_one_syntax_on_every_flag() {
    let env = TestEnv::new();
    for args in [
        &["spawn", "--timeout", "1h30x", "-m", "x", "--", "true"][..],
        &["stop", "--timeout", "soon", "t"],
        &["list", "--since", "30m1h"],
    ] {
        let run = env.agent(args);
        assert_eq!(run.code, 2, "{args:?}: {run}");
        assert!(
            run.stderr
                .contains("is not a duration like 90, 30s, 5m, 1h30m"),
            "{run}"
        );
    }
    // A bad duration setting names the key.
    env.git(&["config", "agent.syncTimeout", "1h30"]).ok();
    env.agent(&["list"]).ok();
}

#[test]
fn stop_and_rm_take_several_tasks_and_report_each() {
    require_docker!();
    let env = TestEnv::new();
    for name in ["one", "two", "three"] {
        env.agent(&["spawn", "--name", name, "-m", "x", "--", "sleep", "300"])
            .ok();
    }
    // An unknown name among them stops nothing.
    let typo = env.agent(&["stop", "one", "nosuch"]).fails();
    assert!(typo.stderr.contains("nosuch"), "{typo}");
    assert_eq!(env.json(&["status", "--json", "one"])["status"], "running");

    env.agent(&["stop", "--timeout", "0s", "one", "two", "one"])
        .ok();
    for t in ["one", "two"] {
        assert_eq!(
            env.json(&["status", "--json", t])["status"],
            "stopped",
            "{t}"
        );
    }
    assert_eq!(
        env.json(&["status", "--json", "three"])["status"],
        "running"
    );

    // rm of a running task fails; the others are still removed, and the summary names it.
    let rm = env.agent(&["rm", "one", "three", "two"]);
    assert_eq!(rm.code, 1, "{rm}");
    assert!(
        rm.stderr.contains("1 of 3 tasks failed to rm: three"),
        "{rm}"
    );
    assert!(rm.stderr.contains("Hint:"), "{rm}");
    for t in ["one", "two"] {
        let st = env.json(&["status", "--json", t]);
        assert!(st["sandbox"]["container"].is_null(), "{t}: {st}");
    }
    let st = env.json(&["status", "--json", "three"]);
    assert!(!st["sandbox"]["container"].is_null(), "{st}");
    env.agent(&["stop", "--timeout", "0", "three"]).ok();
}
