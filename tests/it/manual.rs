//! The manual: every page has its sections, `git-agent(1)` documents every config key the
//! code reads, every page a page points at exists, and `git agent <command> --help` opens the
//! command's page on a terminal (clap's help otherwise).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::TestEnv;

fn pages() -> Vec<(String, String)> {
    git_agent::cli::man::pages()
        .unwrap()
        .into_iter()
        .map(|(name, text)| (name, String::from_utf8(text).unwrap()))
        .collect()
}

/// A roff section's text, unescaped enough to search: from `.SH <heading>` to the next `.SH`.
fn section(page: &str, heading: &str) -> Option<String> {
    let quoted = format!(".SH \"{heading}\"");
    let plain = format!(".SH {heading}");
    let start = page.lines().position(|l| l == quoted || l == plain)?;
    Some(
        page.lines()
            .skip(start + 1)
            .take_while(|l| !l.starts_with(".SH"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fI", "")
            .replace("\\fR", ""),
    )
}

#[test]
fn every_page_has_its_sections() {
    let pages = pages();
    assert!(pages.len() > 30, "{}", pages.len());
    for (name, text) in &pages {
        for heading in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "EXAMPLES",
            "SEE ALSO",
        ] {
            let body = section(text, heading).unwrap_or_else(|| panic!("{name} has no {heading}"));
            assert!(!body.trim().is_empty(), "{name}: {heading} is empty");
        }
        let examples = section(text, "EXAMPLES").unwrap();
        assert!(examples.contains("$ git agent"), "{name}: {examples}");
    }
    let main = &pages.iter().find(|(n, _)| n == "git-agent.1").unwrap().1;
    for heading in ["CONFIGURATION", "FILES", "ENVIRONMENT", "EXIT STATUS"] {
        let body = section(main, heading).unwrap_or_else(|| panic!("git-agent.1 has no {heading}"));
        assert!(!body.trim().is_empty(), "{heading} is empty");
    }
    let exit = section(main, "EXIT STATUS").unwrap();
    for code in ["0", "1", "2", "130"] {
        assert!(
            exit.lines().any(|l| l == code),
            "exit status {code}: {exit}"
        );
    }
    let files = section(main, "FILES").unwrap();
    for dir in [
        "~/.config/git-agent/",
        ".git-agent/",
        ".git/git-agent/",
        "refs/agent/",
    ] {
        assert!(files.contains(dir), "FILES lacks {dir}: {files}");
    }
    let env = section(main, "ENVIRONMENT").unwrap();
    for var in ["DOCKER_HOST", "GIT_AGENT_COMPLETE", "MANPATH"] {
        assert!(env.contains(var), "ENVIRONMENT lacks {var}");
    }
}

/// Every `"agent.<key>"` string in the source (a literal the code reads with `config.get`,
/// `bool`, `size`, `get_all`, a `CONFIG_KEY` constant, a `format!` with the agent's name),
/// as the manual writes it: `{...}` becomes `<agent>`.
fn config_keys_in_source() -> BTreeSet<String> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    // The manual's own tables are what is checked, not evidence.
    files.retain(|f| !f.ends_with("cli/man/reference.rs"));
    // Strings that look like keys but are not: a file name agents read.
    let not_keys = ["agent.md"];
    let mut keys = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("\"agent.") {
            let rest = &text[at + 1..];
            let Some(end) = rest.find('"') else { continue };
            let key = &rest[..end];
            if !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._{}".contains(c))
                || key.ends_with('.')
                || not_keys.contains(&key)
            {
                continue;
            }
            // A placeholder is an agent's name, or an engine's (`{name}`).
            let mut normal = String::new();
            let mut in_braces: Option<String> = None;
            for c in key.chars() {
                match (c, in_braces.as_mut()) {
                    ('{', _) => in_braces = Some(String::new()),
                    ('}', Some(word)) => {
                        let engine = word == "name";
                        normal.push_str(if engine { "<name>" } else { "<agent>" });
                        in_braces = None;
                    }
                    (c, Some(word)) => word.push(c),
                    (c, None) => normal.push(c),
                }
            }
            // A key of one agent (`agent.claude.version`) is the per-agent key.
            let parts: Vec<&str> = normal.split('.').collect();
            let normal = match parts.as_slice() {
                [_, kind, key] if *kind != "hooks" => format!("agent.<agent>.{key}"),
                // So is a key of one engine (`agent.engine.big.url`).
                [_, "engine", _, key] => format!("agent.engine.<name>.{key}"),
                _ => normal.clone(),
            };
            keys.insert(normal.to_ascii_lowercase());
        }
    }
    keys
}

#[test]
fn every_config_key_the_code_reads_is_in_the_manual() {
    let keys = config_keys_in_source();
    // The scan finds what it should: keys read in several ways.
    for known in [
        "agent.baseimage",
        "agent.subnets",
        "agent.<agent>.baseurl",
        "agent.hooks.prepush",
        "agent.workers",
    ] {
        assert!(keys.contains(known), "{known} not found in {keys:?}");
    }
    let main = &pages()
        .into_iter()
        .find(|(n, _)| n == "git-agent.1")
        .unwrap()
        .1;
    let config = section(main, "CONFIGURATION").unwrap();
    let documented: BTreeSet<String> = config
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("agent."))
        .map(str::to_ascii_lowercase)
        .collect();
    let missing: Vec<&String> = keys.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "config keys the code reads but git-agent(1) does not document (add them to CONFIG in src/cli/man/reference.rs): {missing:?}"
    );
    let stale: Vec<&String> = documented.difference(&keys).collect();
    assert!(
        stale.is_empty(),
        "git-agent(1) documents keys no code reads: {stale:?}"
    );
}

#[test]
fn every_page_a_page_names_exists() {
    let pages = pages();
    let ours: BTreeSet<String> = pages
        .iter()
        .map(|(n, _)| n.trim_end_matches(".1").to_string())
        .collect();
    let have_man = which::which("man").is_ok();
    for (name, text) in &pages {
        let see_also = git_agent::cli::man::see_also_of(text);
        assert!(!see_also.is_empty(), "{name}");
        let own = name.trim_end_matches(".1");
        for reference in &see_also {
            let (page, section) = reference
                .trim_end_matches(')')
                .split_once('(')
                .unwrap_or_else(|| panic!("{name}: {reference:?} has no section"));
            assert_ne!(page, own, "{name} points at itself");
            if page.starts_with("git-agent") {
                assert!(
                    ours.contains(page),
                    "{name} names {reference}, which does not exist"
                );
            } else if have_man {
                let found = Command::new("man")
                    .args(["-w", section, page])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(
                    found.success(),
                    "{name} names {reference}: man -w finds no such page"
                );
            }
        }
        // Every page named anywhere on the page (the main page's command list, too).
        let plain = text.replace("\\-", "-");
        for (at, _) in plain.match_indices("git-agent-") {
            let rest = &plain[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(rest.len());
            if rest[end..].starts_with("(1)") {
                let page = &rest[..end];
                assert!(
                    ours.contains(page),
                    "{name} names {page}(1), which does not exist"
                );
            }
        }
    }
    // The main page lists its commands and never itself.
    let main = &pages.iter().find(|(n, _)| n == "git-agent.1").unwrap().1;
    assert!(!main.replace("\\-", "-").contains("git-agent(1)"));
    assert!(main.contains("git\\-agent\\-commit(1)"));
}

/// A MANPATH holding the repository's generated pages (man wants them in `man1/`).
fn manpath(env: &TestEnv) -> PathBuf {
    let root = env.home.path().join("manpath");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("man"),
        root.join("man1"),
    )
    .unwrap();
    root
}

/// `line` run by bash on a pseudo-terminal (util-linux `script`), so stdout is a terminal.
fn on_terminal(env: &TestEnv, line: &str, manpath: &Path) -> String {
    let out = Command::new("script")
        .args(["-qec", line, "/dev/null"])
        .env_clear()
        .env("HOME", env.home.path())
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", env.bin_dir.display()),
        )
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .env("TERM", "dumb")
        .env("MANPATH", manpath)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .env("PAGER", "cat")
        .env("GIT_PAGER", "cat")
        .current_dir(&env.repo)
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    // man formats bold for a terminal as overstrike (`N\bN`): keep the last of each pair.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        match c {
            '\u{8}' => {
                text.pop();
            }
            '\r' => {}
            c => text.push(c),
        }
    }
    text
}

#[test]
fn command_help_opens_the_commands_page_on_a_terminal() {
    if which::which("man").is_err() || which::which("script").is_err() {
        eprintln!("SKIPPED: `man` or `script` is not installed");
        return;
    }
    let env = TestEnv::new();
    let manpath = manpath(&env);
    let page = |s: &str| s.contains("GIT-AGENT-COMMIT") || s.contains("git-agent-commit(1)");

    // Through git, as a user types it: the page, with the sections only it has.
    let shown = on_terminal(&env, "git agent commit --help", &manpath);
    assert!(page(&shown), "{shown}");
    assert!(
        shown.contains("EXAMPLES") && shown.contains("SEE ALSO"),
        "{shown}"
    );
    assert!(!shown.contains("Usage: git agent commit"), "{shown}");
    // `help <command>` and an alias open the same way.
    let shown = on_terminal(&env, "git agent help commit", &manpath);
    assert!(page(&shown), "{shown}");
    let shown = on_terminal(&env, "git-agent run --help", &manpath);
    assert!(
        shown.contains("GIT-AGENT-SPAWN") || shown.contains("git-agent-spawn(1)"),
        "{shown}"
    );

    // `-h` stays clap's short help, even on a terminal.
    let short = on_terminal(&env, "git agent commit -h", &manpath);
    assert!(short.contains("Usage: git agent commit"), "{short}");
    assert!(!page(&short), "{short}");

    // No page installed: clap's long help.
    let empty = env.home.path().join("no-pages");
    std::fs::create_dir_all(empty.join("man1")).unwrap();
    let long = on_terminal(&env, "git agent commit --help", &empty);
    assert!(long.contains("Usage: git agent commit"), "{long}");

    // Not a terminal (a pipe, a script): clap's long help, never a pager.
    let piped = env.agent_with(&["commit", "--help"], |c| {
        c.env("MANPATH", &manpath).env("MANPAGER", "cat");
    });
    assert_eq!(piped.code, 0, "{piped}");
    assert!(piped.stdout.contains("Usage: git agent commit"), "{piped}");
    assert!(!page(&piped.stdout), "{piped}");
}
