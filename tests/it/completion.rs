//! Shell completion: `git agent completion bash` sourced in a real bash, with git's own bash
//! completion, completing commands, flags and the names of real tasks for both `git-agent
//! <TAB>` and `git agent <TAB>`; and refs with shell metacharacters never reaching the
//! command line. (The module needs the `local-runtime` feature: its tasks run on the local
//! runtime.)

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::TestEnv;

/// Debian's git ships its bash completion here; it defines `__git_wrap__git_main`, which bash
/// calls for `git <TAB>`.
const GIT_COMPLETION: &str = "/usr/share/bash-completion/completions/git";

/// Complete each line (the text before the cursor) in a bash that sourced git's completion
/// (when there is one) and ours, as bash would on TAB; one result line per input line, the
/// candidates each in `<...>` (with the space a completion adds).
fn complete(env: &TestEnv, lines: &[&str]) -> Vec<String> {
    let script = env.home.path().join("git-agent.bash");
    let ours = env.agent(&["completion", "bash"]).ok();
    std::fs::write(&script, &ours.stdout).unwrap();
    let mut driver = String::new();
    if Path::new(GIT_COMPLETION).exists() {
        driver.push_str(&format!("source {GIT_COMPLETION}\n"));
    }
    driver.push_str(&format!("source '{}'\n", script.display()));
    // What bash does at TAB: split the line into COMP_WORDS, then call the function that
    // `complete -p` names for the command.
    driver.push_str(
        r#"t() {
    COMP_LINE=$1; COMP_POINT=${#COMP_LINE}; COMP_TYPE=9
    read -ra COMP_WORDS <<<"$COMP_LINE"
    [[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    local spec func
    spec=$(complete -p "${COMP_WORDS[0]}")
    func=${spec#*-F }; func=${func%% *}
    COMPREPLY=()
    "$func" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf '<%s>' "${COMPREPLY[@]}"; echo
}
"#,
    );
    for line in lines {
        driver.push_str(&format!("t '{line}'\n"));
    }
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &driver])
        .env_clear()
        .env("HOME", env.home.path())
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", env.bin_dir.display()),
        )
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .current_dir(&env.repo)
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bash failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<String> = stdout.lines().map(str::to_string).collect();
    assert_eq!(results.len(), lines.len(), "{stdout}");
    results
}

fn have_git_completion() -> bool {
    if Path::new(GIT_COMPLETION).exists() {
        return true;
    }
    eprintln!("SKIPPED (git agent part): {GIT_COMPLETION} is not installed");
    false
}

#[test]
fn bash_completes_commands_flags_and_real_task_names() {
    let env = TestEnv::local();
    env.finished_task("fix-login", "login.txt");
    env.finished_task("add-docs", "docs.txt");

    let r = complete(
        &env,
        &[
            "git-agent review ",
            "git-agent review fix",
            "git-agent rev",
            "git-agent review --st",
            "git-agent commit-push a",
            "git-agent list ",
        ],
    );
    assert!(
        r[0].contains("<fix-login>") && r[0].contains("<add-docs>"),
        "{r:?}"
    );
    assert_eq!(r[1], "<fix-login>");
    assert_eq!(r[2], "<review>");
    assert_eq!(r[3], "<--stat>");
    assert!(
        r[4].contains("<add-docs>") && !r[4].contains("fix-login"),
        "{r:?}"
    );
    // `list` takes no task: no task name is offered.
    assert!(!r[5].contains("fix-login"), "{r:?}");

    if !have_git_completion() {
        return;
    }
    // Through git's own completion: git calls our _git_agent; it asks for no space after a
    // word, so ours adds it.
    let r = complete(
        &env,
        &[
            "git agent review ",
            "git agent review add",
            "git agen",
            "git agent comm",
            "git agent review --no-s",
        ],
    );
    assert!(
        r[0].contains("<fix-login >") && r[0].contains("<add-docs >"),
        "{r:?}"
    );
    assert_eq!(r[1], "<add-docs >");
    assert_eq!(r[2], "<agent >");
    assert!(
        r[3].contains("<commit >") && r[3].contains("<commit-push >"),
        "{r:?}"
    );
    assert_eq!(r[4], "<--no-sync >");
    // `git -C <dir>`: the tasks of the repository at <dir> (here a subdirectory of it).
    std::fs::create_dir_all(env.repo.join("sub")).unwrap();
    let r = complete(&env, &["git -C sub agent logs fix"]);
    assert_eq!(r[0], "<fix-login >");
}

/// Attack: refs under refs/agent/ are written by whoever can write the repository (or by a
/// fetch), and git allows `$`, `(`, `)`, `;`, `` ` ``, `'`, `"`, `|`, `&` and `<` in ref names.
/// A completion is put on the user's command line; such a name would run at Enter (or, in a
/// careless script, at TAB). Only valid task names are ever offered, and nothing runs.
#[test]
fn a_hostile_ref_name_never_reaches_the_command_line() {
    let env = TestEnv::local();
    env.finished_task("fix-login", "login.txt");
    let head = env
        .git(&["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    // Relative to the repository, where completion runs (a ref name component has no `/`).
    let pwned = env.repo.join("pwned");
    let hostile = [
        "f$(touch${IFS}pwned)".to_string(),
        "f`touch${IFS}pwned`".to_string(),
        "f;id".to_string(),
        "f|id&".to_string(),
        "f'x\"y".to_string(),
        "f<in>out".to_string(),
        "Fix-upper".to_string(),
    ];
    for name in &hostile {
        env.git(&["update-ref", &format!("refs/agent/{name}/state"), &head])
            .ok();
    }
    // git did take every one of them: the attack is real.
    let refs = env
        .git(&["for-each-ref", "--format=%(refname)", "refs/agent/"])
        .ok()
        .stdout;
    for name in &hostile {
        assert!(refs.contains(&format!("refs/agent/{name}/state")), "{refs}");
    }

    let mut lines = vec![
        "git-agent review ",
        "git-agent review f",
        "git-agent logs F",
    ];
    let with_git = have_git_completion();
    if with_git {
        lines.extend(["git agent review ", "git agent review f"]);
    }
    let r = complete(&env, &lines);
    for (line, got) in lines.iter().zip(&r) {
        let candidates: Vec<&str> = got
            .trim_start_matches('<')
            .trim_end_matches('>')
            .split("><")
            .filter(|c| !c.starts_with('-'))
            .collect();
        for c in &candidates {
            let c = c.trim_end();
            assert!(
                c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_.".contains(ch)),
                "{line:?} offered {c:?}: {got}"
            );
        }
    }
    assert!(r[0].contains("<fix-login>"), "{r:?}");
    assert_eq!(r[1], "<fix-login>");
    assert_eq!(r[2], "<>", "no candidate at all");
    if with_git {
        assert_eq!(r[4], "<fix-login >");
    }
    assert!(!pwned.exists(), "a completion ran a command");
}
