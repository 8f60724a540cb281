//! Agents, templates and credentials as data; multi-agent groups and timeouts with the exec
//! agent against a real engine.

use crate::common::TestEnv;
use crate::require_docker;

#[test]
fn agents_list_their_origin_and_bad_definitions_name_file_and_field() {
    let env = TestEnv::new();
    let out = env.agent(&["agents"]).ok().stdout;
    for name in ["claude", "codex", "opencode", "gemini", "exec"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}:\n{out}"));
        assert!(line.ends_with("built-in"), "{line}");
    }
    // The user's own definitions (a repository's need `git agent trust`: tests/it/trust.rs).
    let user = env.home.path().join(".config/git-agent/agents");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(
        user.join("mine.toml"),
        "description = \"mine\"\nheadless = [\"my-agent\"]\nprompt = \"stdin\"\noutput = \"text\"\n",
    )
    .unwrap();
    std::fs::write(user.join("broken.toml"), "description = \"b\"\nheadless = [\"x\"]\nprompt = \"stdin\"\noutput = \"text\"\ncolour = 1\n").unwrap();
    let out = env.agent(&["agents"]).ok().stdout;
    assert!(
        out.lines()
            .any(|l| l.starts_with("mine") && l.contains("user (")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("broken") && l.contains("invalid") && l.contains("colour")),
        "{out}"
    );
    let e = env
        .agent(&["spawn", "--agent", "broken", "-m", "x"])
        .fails();
    assert!(
        e.stderr.contains("broken.toml") && e.stderr.contains("colour"),
        "{e}"
    );
    let e = env
        .agent(&["spawn", "--agent", "nosuch", "-m", "x"])
        .fails();
    assert!(e.stderr.contains("unknown agent 'nosuch'"), "{e}");
}

#[test]
fn agents_json_lists_each_definition_with_origin_and_whether_it_loads() {
    let env = TestEnv::new();
    let user = env.home.path().join(".config/git-agent/agents");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(
        user.join("mine.toml"),
        "description = \"mine\"\nheadless = [\"my-agent\"]\nprompt = \"stdin\"\noutput = \"text\"\n",
    )
    .unwrap();
    std::fs::write(user.join("broken.toml"), "colour = 1\n").unwrap();
    let doc = env.json(&["agents", "--json"]);
    assert_eq!(doc["schema"], 1);
    let agents = doc["agents"].as_array().unwrap();
    let find = |n: &str| {
        agents
            .iter()
            .find(|a| a["name"] == n)
            .unwrap_or_else(|| panic!("{n}: {doc}"))
    };
    let exec = find("exec");
    assert_eq!(exec["origin"], "built-in");
    assert_eq!(exec["loads"], true);
    assert!(exec["error"].is_null());
    assert!(exec["description"].is_string());
    let mine = find("mine");
    assert_eq!(mine["description"], "mine");
    assert!(
        mine["origin"].as_str().unwrap().starts_with("user ("),
        "{mine}"
    );
    let broken = find("broken");
    assert_eq!(broken["loads"], false);
    assert!(broken["description"].is_null());
    assert!(
        broken["origin"].as_str().unwrap().starts_with("user ("),
        "{broken}"
    );
    assert!(
        broken["error"].as_str().unwrap().contains("colour"),
        "{broken}"
    );
}

#[test]
fn agents_without_credentials_are_refused_before_anything_is_created() {
    let env = TestEnv::new();
    let before = env.snapshot();
    let e = env
        .agent(&["spawn", "--agent", "claude", "--name", "nokey", "-m", "x"])
        .fails();
    assert!(
        e.stderr.contains("no credentials for agent 'claude'"),
        "{e}"
    );
    assert!(e.stderr.contains("git agent auth claude"), "{e}");
    assert_eq!(before, env.snapshot());
    assert!(env.task_refs("nokey").is_empty());
    // A key stored with `auth` is found afterwards, and the store is private.
    let stored = env.agent_with(&["auth", "claude"], |c| {
        c.stdin(std::process::Stdio::piped());
    });
    assert_eq!(stored.code, 1, "empty stdin stores nothing: {stored}");
    let mut child = env
        .agent_command(&["auth", "claude"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"sk-test-123\n")
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    let path = env.home.path().join(".config/git-agent/credentials.toml");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let status = env.agent(&["auth", "claude", "--status"]).ok().stdout;
    assert!(
        status.contains("ANTHROPIC_API_KEY") && status.contains("git-agent store"),
        "{status}"
    );
}

#[test]
fn templates_list_show_and_render_into_the_prompt() {
    let env = TestEnv::new();
    let list = env.agent(&["template", "list"]).ok().stdout;
    for t in [
        "feat",
        "fix",
        "refactor",
        "test",
        "doc",
        "review",
        "commit-msg",
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(t) && l.ends_with("built-in")),
            "{t}:\n{list}"
        );
    }
    env.write(".git-agent/templates/fix.md", "---\ndescription: our fix\n---\nFIX in {{ repository }} on {{ branch }}: {{ description }}\n");
    let list = env.agent(&["template", "list"]).ok().stdout;
    assert!(
        list.lines()
            .any(|l| l.starts_with("fix") && l.contains("our fix") && l.contains("repository (")),
        "{list}"
    );
    let show = env.agent(&["template", "show", "fix"]).ok().stdout;
    assert!(show.contains("FIX in {{ repository }}"), "{show}");
    env.agent(&["template", "show", "nope"]).fails();
    env.write(".git-agent/templates/typo.md", "Do {{ descripton }}\n");
    let e = env
        .agent(&["spawn", "--type", "typo", "-m", "x", "--", "cat"])
        .fails();
    assert!(e.stderr.contains("cannot render template 'typo'"), "{e}");

    require_docker!();
    let run = env
        .agent(&[
            "spawn",
            "--name",
            "tmpl",
            "--type",
            "fix",
            "-m",
            "the login crashes",
            "--wait",
            "--",
            "cat",
        ])
        .ok();
    assert!(
        run.stderr
            .contains("FIX in my repo ü on agent/tmpl: the login crashes"),
        "{run}"
    );
    let st = env.json(&["status", "tmpl", "--json"]);
    assert_eq!(st["template"], "fix");
    assert!(st["prompt"].as_str().unwrap().starts_with("FIX in"), "{st}");
}

#[test]
fn timeout_stops_the_run_and_records_why() {
    require_docker!();
    let env = TestEnv::new();
    let run = env.agent(&[
        "spawn",
        "--name",
        "slow",
        "--timeout",
        "2s",
        "--wait",
        "-m",
        "x",
        "--",
        "sleep",
        "60",
    ]);
    assert_eq!(run.code, 124, "{run}");
    assert!(run.stderr.contains("timed out after 2s"), "{run}");
    let st = env.json(&["status", "slow", "--json"]);
    assert_eq!(st["reason"], "timed out after 2s");
    assert_eq!(st["exit_code"], 124);
}

#[test]
fn several_agents_start_a_group_reviewed_side_by_side() {
    require_docker!();
    let env = TestEnv::new();
    let run = env
        .agent(&[
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
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        ["race-exec-1", "race-exec-2"]
    );
    let review = env.agent(&["review", "race"]).ok().stdout;
    assert!(review.contains("group race: 2 attempts"), "{review}");
    assert!(
        review.contains("== race-exec-1") && review.contains("== race-exec-2"),
        "{review}"
    );
    assert_eq!(review.matches("who.txt | 1 +").count(), 2, "{review}");
    for t in ["race-exec-1", "race-exec-2"] {
        let head = env.task_refs(t)["head"].clone();
        assert_eq!(
            env.git(&["show", &format!("{head}:who.txt")]).stdout.trim(),
            t
        );
        let st = env.json(&["status", t, "--json"]);
        assert_eq!(st["group"], "race");
    }
}

/// The Codex and OpenCode images build (from npm, during the image build) and their CLIs run
/// as the task user. (A full offline run of those agents needs a fake of their model APIs,
/// which this suite does not have yet.)
#[test]
fn codex_and_opencode_images_run_their_clis_as_the_task_user() {
    require_docker!();
    let env = TestEnv::new();
    env.git(&[
        "config",
        "agent.extraCaCerts",
        "/etc/ssl/certs/ca-certificates.crt",
    ])
    .ok();
    for (agent, cli, expect) in [
        ("codex", "codex", "codex-cli 0.169.0"),
        ("opencode", "opencode", "1.18.33"),
    ] {
        let built = env.agent(&["image", "build", "--agent", agent]).ok();
        let tag = built.stdout.split_whitespace().next().unwrap().to_string();
        let dry = env
            .agent(&["image", "build", "--agent", agent, "--dry-run"])
            .ok()
            .stdout;
        assert!(
            dry.contains(&format!("# --- layer: agent ({agent}: built-in)")),
            "{dry}"
        );
        let out = std::process::Command::new("docker")
            .args([
                "run",
                "--rm",
                &tag,
                "sh",
                "-c",
                &format!("id -un && {cli} --version"),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with("agent\n"), "{text}");
        assert!(text.contains(expect), "{agent}: {text}");
    }
}

/// Changing only the project layer rebuilds only from there: every trusted layer comes from
/// the engine's cache, the project steps run (sandboxed), and an unchanged image is not
/// rebuilt at all.
#[test]
fn project_layer_change_rebuilds_only_from_there() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["image", "build", "--agent", "exec", "--verbose"])
        .ok();
    let again = env
        .agent(&["image", "build", "--agent", "exec", "--verbose"])
        .ok();
    assert!(
        !again.stderr.contains("Step 1/"),
        "an unchanged image is not rebuilt:\n{again}"
    );
    let marker = format!("project-step-{}", std::process::id());
    env.write(
        ".git-agent/dockerfiles/project.dockerfile",
        &format!("RUN echo {marker}\n"),
    );
    let b = env
        .agent(&["image", "build", "--agent", "exec", "--verbose"])
        .ok();
    let (stage, rest) = b
        .stderr
        .split_once("project step(s)")
        .unwrap_or_else(|| panic!("no project steps:\n{}", b.stderr));
    // Every trusted RUN step before the project layer came from the cache (the stage's
    // own label is metadata and may be new).
    let runs: Vec<&str> = stage
        .split("\nStep ")
        .filter(|s| s.contains(" : RUN "))
        .collect();
    assert!(!runs.is_empty(), "{}", b.stderr);
    for r in runs {
        assert!(
            r.contains("Using cache") && !r.contains("Running in"),
            "a step before the project layer ran again:\n{r}\n\n{}",
            b.stderr
        );
    }
    assert!(!stage.contains(&marker), "{}", b.stderr);
    // The project step ran, then the final layer was applied.
    let ran = rest
        .find(&format!("\n{marker}\n"))
        .expect("the step's output");
    assert!(
        rest[ran..].contains("Successfully tagged git-agent:"),
        "{}",
        b.stderr
    );
    let again = env
        .agent(&["image", "build", "--agent", "exec", "--verbose"])
        .ok();
    assert!(
        !again.stderr.contains("project step(s)") && !again.stderr.contains("Step 1/"),
        "an unchanged image with a project layer is not rebuilt:\n{again}"
    );
}
