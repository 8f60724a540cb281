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
            run.stderr.contains("a duration like 90, 30s, 5m, 1h30m"),
            "{run}"
        );
    }
}

#[test]
fn stop_and_rm_take_several_tasks_and_report_each() {
    require_docker!();
    stop_and_rm_take_several_tasks_and_report_each_on(TestEnv::new());
}

#[cfg(feature = "local-runtime")]
#[test]
fn stop_and_rm_take_several_tasks_and_report_each_locally() {
    stop_and_rm_take_several_tasks_and_report_each_on(TestEnv::local());
}

fn stop_and_rm_take_several_tasks_and_report_each_on(env: TestEnv) {
    for name in ["one", "two", "three", "four"] {
        env.agent(&["spawn", "--name", name, "-m", "x", "--", "sleep", "300"])
            .ok();
    }
    let status = |t: &str| env.json(&["status", "--json", t]);
    // An unknown name among them changes nothing.
    let typo = env.agent(&["rm", "one", "nosuch"]).fails();
    assert!(typo.stderr.contains("nosuch"), "{typo}");
    assert!(!status("one")["sandbox"]["container"].is_null());

    // Several at once, each once.
    let rm = env.agent(&["rm", "one", "three", "one"]).ok();
    assert_eq!(
        rm.stderr.matches("removed the container of one").count(),
        1,
        "{rm}"
    );
    for t in ["one", "three"] {
        assert!(status(t)["sandbox"]["container"].is_null(), "{t}");
    }

    // One that fails does not stop the others; the summary names the failed ones.
    let stop = env.agent(&["stop", "--timeout", "0s", "one", "two", "three", "four"]);
    assert_eq!(stop.code, 1, "{stop}");
    assert!(
        stop.stderr.contains("task 'one' has no container to stop"),
        "{stop}"
    );
    assert!(
        stop.stderr
            .contains("Error: 2 of 4 tasks failed to stop: one, three"),
        "{stop}"
    );
    assert!(stop.stderr.contains("Hint:"), "{stop}");
    for t in ["two", "four"] {
        assert_eq!(status(t)["status"], "stopped", "{t}");
    }
    // One task: its own error, as before.
    let one = env.agent(&["stop", "one"]).fails();
    assert!(
        one.stderr
            .starts_with("Error: task 'one' has no container to stop"),
        "{one}"
    );
}

#[test]
fn shell_runs_one_command_with_its_arguments_as_given() {
    require_docker!();
    shell_runs_one_command_with_its_arguments_as_given_on(TestEnv::new());
}

#[cfg(feature = "local-runtime")]
#[test]
fn shell_runs_one_command_with_its_arguments_as_given_locally() {
    shell_runs_one_command_with_its_arguments_as_given_on(TestEnv::local());
}

fn shell_runs_one_command_with_its_arguments_as_given_on(env: TestEnv) {
    env.agent(&["spawn", "--name", "box", "-m", "x", "--", "sleep", "300"])
        .ok();
    let host_marker = env.home.path().join("host-pwned");
    let hostile = format!("$(touch {})", host_marker.display());
    let words = ["a;b", &hostile, "*", "`touch in-sandbox`", "x y", "--help"];
    let mut args = vec!["shell", "box", "--", "printf", "%s\\n"];
    args.extend(words);
    let run = env.agent(&args).ok();
    assert_eq!(run.stdout, format!("{}\n", words.join("\n")), "{run}");
    assert!(!host_marker.exists(), "no host shell read the arguments");
    // Nor did a shell in the sandbox.
    let seen = env.agent(&["shell", "box", "--", "ls", "-A"]).ok();
    assert!(!seen.stdout.contains("in-sandbox"), "{seen}");
    assert!(seen.stdout.contains("README.md"), "{seen}");

    // The command's status is shell's, its stderr is shown, stdin goes in.
    let failed = env.agent(&["shell", "box", "--", "sh", "-c", "echo oops >&2; exit 7"]);
    assert_eq!(failed.code, 7, "{failed}");
    assert!(failed.stderr.contains("oops"), "{failed}");
    let mut cat = env
        .agent_command(&["shell", "box", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        cat.stdin.take().unwrap().write_all(b"piped in\n").unwrap();
    }
    let out = cat.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped in\n");
    // git in it runs no hook the agent configured.
    env.agent(&[
        "shell", "box", "--", "sh", "-c",
        "mkdir -p .git/hooks && printf '#!/bin/sh\\ntouch hooked\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit",
    ])
    .ok();
    env.agent(&[
        "shell",
        "box",
        "--",
        "git",
        "-c",
        "user.name=u",
        "-c",
        "user.email=u@e",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "e",
    ])
    .ok();
    let hooked = env.agent(&["shell", "box", "--", "test", "-e", "hooked"]);
    assert_eq!(hooked.code, 1, "the agent's hook did not run: {hooked}");

    // A hostile task name is only ever a name.
    let bad = env.agent(&["shell", &hostile, "--", "true"]).fails();
    assert!(bad.stderr.contains("Error:"), "{bad}");
    assert!(!host_marker.exists());

    // A stopped task's workspace is opened in a fresh container, removed afterwards.
    env.agent(&["stop", "--timeout", "0", "box"]).ok();
    let before = env.runtime_objects().0;
    let readme = env.agent(&["shell", "box", "--", "cat", "README.md"]).ok();
    assert_eq!(readme.stdout, "# demo\n", "{readme}");
    assert_eq!(
        env.runtime_objects().0,
        before,
        "the shell's container is gone"
    );
}

/// The shapes docs/json.md documents: heading -> [(key, type)].
type Shapes = std::collections::BTreeMap<String, Vec<(String, String)>>;

fn documented_shapes() -> Shapes {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"),
    )
    .unwrap();
    let mut shapes = Shapes::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            current = Some(h.trim().to_string());
            shapes.insert(h.trim().to_string(), vec![]);
        } else if let (Some(shape), Some(row)) = (&current, line.strip_prefix("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let key = cells[0].trim_end_matches('`').to_string();
            shapes
                .get_mut(shape)
                .unwrap()
                .push((key, cells[1].to_string()));
        }
    }
    shapes
}

/// Does `value` have type `ty` (the grammar of docs/json.md)? `absent` is the caller's.
fn has_type(
    value: &serde_json::Value,
    ty: &str,
    shapes: &Shapes,
    at: &str,
    errors: &mut Vec<String>,
) -> bool {
    ty.split(" or ").any(|alt| {
        let alt = alt.trim();
        match alt {
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            "null" => value.is_null(),
            "absent" => false,
            _ => {
                if let Some(item) = alt.strip_prefix("array of ") {
                    let Some(items) = value.as_array() else {
                        return false;
                    };
                    for (i, v) in items.iter().enumerate() {
                        check_shape(v, item, shapes, &format!("{at}[{i}]"), errors);
                    }
                    true
                } else {
                    assert!(
                        shapes.contains_key(alt),
                        "docs/json.md: unknown type '{alt}' at {at}"
                    );
                    // Not an object: another alternative (`or null`) may fit.
                    if !value.is_object() {
                        return false;
                    }
                    check_shape(value, alt, shapes, at, errors);
                    true
                }
            }
        }
    })
}

/// Check `value` against documented shape `shape`: every key documented, every documented
/// key present (unless it may be absent) with its type.
fn check_shape(
    value: &serde_json::Value,
    shape: &str,
    shapes: &Shapes,
    at: &str,
    errors: &mut Vec<String>,
) {
    let keys = &shapes[shape];
    let Some(obj) = value.as_object() else {
        errors.push(format!("{at}: not an object ({shape})"));
        return;
    };
    for k in obj.keys() {
        if !keys.iter().any(|(d, _)| d == k) {
            errors.push(format!("{at}.{k}: not documented in '{shape}'"));
        }
    }
    for (k, ty) in keys {
        match obj.get(k) {
            None if ty.contains("absent") => {}
            None => errors.push(format!("{at}.{k}: missing ({shape})")),
            Some(v) => {
                if !has_type(v, ty, shapes, &format!("{at}.{k}"), errors) {
                    errors.push(format!("{at}.{k}: {v} is not {ty}"));
                }
            }
        }
    }
}

#[test]
fn every_json_output_follows_the_documented_schema() {
    require_docker!();
    every_json_output_follows_the_documented_schema_on(TestEnv::new());
}

#[cfg(feature = "local-runtime")]
#[test]
fn every_json_output_follows_the_documented_schema_locally() {
    every_json_output_follows_the_documented_schema_on(TestEnv::local());
}

fn every_json_output_follows_the_documented_schema_on(env: TestEnv) {
    let shapes = documented_shapes();
    // Every command with --json has its document.
    let mut with_json = Vec::new();
    fn walk(cmd: &clap::Command, path: String, out: &mut Vec<String>) {
        if cmd.get_arguments().any(|a| a.get_id() == "json") {
            out.push(path.clone());
        }
        for sub in cmd.get_subcommands() {
            let p = if path.is_empty() {
                sub.get_name().to_string()
            } else {
                format!("{path} {}", sub.get_name())
            };
            walk(sub, p, out);
        }
    }
    walk(
        &<git_agent::cli::Cli as clap::CommandFactory>::command(),
        String::new(),
        &mut with_json,
    );
    for c in &with_json {
        assert!(
            shapes.contains_key(c),
            "`{c} --json` is not documented in docs/json.md"
        );
    }
    for must in ["list", "status", "review", "check", "wait", "doctor"] {
        assert!(with_json.iter().any(|c| c == must), "{must} has --json");
    }

    env.agent(&[
        "spawn",
        "--name",
        "race",
        "--agent",
        "exec,exec",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo \"$GIT_AGENT_TASK\" > who.txt && git add who.txt && git commit -qm who",
    ])
    .ok();
    env.finished_task("solo", "solo.txt");
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("list", vec!["list", "--json"]),
        (
            "list",
            vec!["list", "--json", "--status", "exited", "--reverse"],
        ),
        ("status", vec!["status", "--json", "solo"]),
        ("review", vec!["review", "--json", "solo"]),
        ("review group", vec!["review", "--json", "race"]),
        (
            "review compare",
            vec!["review", "--compare", "--json", "race"],
        ),
        ("check", vec!["check", "--json", "solo"]),
        ("wait", vec!["wait", "--json", "solo", "race-exec-1"]),
        ("doctor", vec!["doctor", "--json"]),
        ("hooks list", vec!["hooks", "list", "--json"]),
        ("gc", vec!["gc", "--json"]),
        ("retry", vec!["retry", "--json", "solo"]),
        ("image list", vec!["image", "list", "--json"]),
        // Dry: other runs share this engine and its images.
        ("image prune", vec!["image", "prune", "--dry-run", "--json"]),
        ("agents", vec!["agents", "--json"]),
    ];
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (shape, args) in &runs {
        let run = env.agent(args);
        let doc: serde_json::Value =
            serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{run}"));
        assert_eq!(doc["schema"], 1, "{args:?}: {run}");
        assert!(
            run.stdout.trim_start().starts_with("{\n  \"schema\""),
            "schema comes first: {run}"
        );
        check_shape(&doc, shape, &shapes, &args.join(" "), &mut errors);
        seen.insert(*shape);
    }
    assert!(
        errors.is_empty(),
        "outputs differ from docs/json.md:\n{}",
        errors.join("\n")
    );
    // `continue` needs an agent that can resume; its document is checked by shape only.
    for doc in shapes.keys().filter(|k| with_json.contains(k)) {
        assert!(
            seen.contains(doc.as_str()) || doc == "continue",
            "`{doc} --json` is not exercised here"
        );
    }
    // One key names a task everywhere.
    let list = env.json(&["list", "--json"]);
    let names: Vec<&str> = list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{list}");
    let created: Vec<i64> = list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["created"].as_i64().unwrap())
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {names:?} {created:?}"
    );
    assert_eq!(env.json(&["status", "--json", "solo"])["task"], "solo");
}

#[test]
fn list_filters_quiet_names_and_totals() {
    require_docker!();
    list_filters_quiet_names_and_totals_on(TestEnv::new());
}

#[cfg(feature = "local-runtime")]
#[test]
fn list_filters_quiet_names_and_totals_locally() {
    list_filters_quiet_names_and_totals_on(TestEnv::local());
}

fn list_filters_quiet_names_and_totals_on(env: TestEnv) {
    env.finished_task("first", "a.txt");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.agent(&["spawn", "--name", "second", "-m", "x", "--", "sleep", "300"])
        .ok();
    let q = env.agent(&["list", "-q"]).ok();
    assert_eq!(q.stdout, "second\nfirst\n", "newest first: {q}");
    assert_eq!(
        env.agent(&["list", "-q", "--reverse"]).ok().stdout,
        "first\nsecond\n"
    );
    assert_eq!(
        env.agent(&["list", "-q", "--status", "exited"]).ok().stdout,
        "first\n"
    );
    assert_eq!(
        env.agent(&["list", "-q", "--status", "running,exited"])
            .ok()
            .stdout,
        "second\nfirst\n"
    );
    assert_eq!(
        env.agent(&["list", "-q", "--agent", "claude"]).ok().stdout,
        ""
    );
    assert_eq!(
        env.agent(&["list", "-q", "--since", "@0", "--agent", "exec"])
            .ok()
            .stdout
            .lines()
            .count(),
        2
    );
    assert_eq!(
        env.agent(&["list", "-q", "--since", "2999-01-01"])
            .ok()
            .stdout,
        ""
    );
    let bad = env.agent(&["list", "--status", "done"]);
    assert_eq!(bad.code, 2, "{bad}");
    assert!(bad.stderr.contains("use one of creating, running"), "{bad}");
    let totals = env.json(&["list", "--json"])["totals"].clone();
    assert_eq!(totals["tasks"], 2, "{totals}");
    assert_eq!(
        totals["costed_tasks"], 0,
        "exec tasks report no cost: {totals}"
    );
    let text = env.agent(&["list", "--totals"]).ok().stdout;
    assert!(text.trim_end().ends_with("total: 2 tasks"), "{text}");
    // A name is printed as the refs hold it, one per line: -q output feeds xargs.
    env.agent(&["stop", "--timeout", "0", "second"]).ok();
}
