//! The commit-message helper (`git agent hook-run prepare-commit-msg`, switched on by
//! `agent.hooks.prepareCommitMsg`): for the user's own commit with no message yet (not a
//! merge, squash, amend, `-m`, `-F` or template), it drafts one from the staged diff in a
//! sandbox: a short task of its own (`commit-msg` template, the diff as text, `--timeout`),
//! started and read through git-agent's own commands, then purged. The draft goes above the
//! comments git wrote; any failure leaves the message file untouched and the commit goes on.
//!
//! The task sees the diff as text only (made by the host's git with external diff and
//! textconv drivers off); the agent's answer is data: control characters are dropped and
//! it is capped. This module must not print.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::git::{Config, Git};

/// Most bytes of the staged diff shown to the agent.
const DIFF_MAX: usize = 64 << 10;
/// Most bytes of a drafted message.
const DRAFT_MAX: usize = 8 << 10;
/// Default time the draft may take (`agent.hooks.prepareCommitMsgTimeout`).
const TIMEOUT: &str = "120s";

/// The `spawn` options `agent.hooks.prepareCommitMsg` asks for: `None` when off; `true`
/// drafts with the default agent, any other value is `spawn` options separated by spaces.
pub fn options(config: &Config) -> Option<Vec<String>> {
    let v = config.get("agent.hooks.prepareCommitMsg")?.trim();
    match v.to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "off" | "0" => None,
        "true" | "yes" | "on" | "1" => Some(vec![]),
        _ => Some(v.split_whitespace().map(str::to_string).collect()),
    }
}

/// Draft a message into `file` when git gives no `source` and the file holds no message.
/// `Ok(false)`: nothing to do.
pub fn run(git: &Git, config: &Config, nested: bool, args: &[String]) -> Result<bool> {
    let (Some(file), None) = (args.first(), args.get(1).filter(|s| !s.is_empty())) else {
        return Ok(false);
    };
    let Some(extra) = options(config).filter(|_| !nested) else {
        return Ok(false);
    };
    // Relative to the top of the work tree, where git runs hooks.
    let path = git.dir.join(file);
    let current = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if current
        .lines()
        .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        return Ok(false);
    }
    let diff = git.run([
        "-c",
        "core.quotePath=false",
        "diff",
        "--cached",
        "--no-ext-diff",
        "--no-textconv",
        "--no-color",
        "--stat",
        "--patch",
    ])?;
    if diff.trim().is_empty() {
        return Ok(false);
    }
    let draft = draft(git, config, &extra, &diff)?;
    std::fs::write(&path, format!("{draft}\n{current}"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

fn capped(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Run the drafting task and return its answer.
fn draft(git: &Git, config: &Config, extra: &[String], diff: &str) -> Result<String> {
    let name = format!(
        "commit-msg-{:04x}",
        std::process::id() as u16 ^ (crate::task::now() as u16)
    );
    let dir = crate::task::lock::state_dir(git).join("tmp");
    std::fs::create_dir_all(&dir)?;
    let prompt_file = tempfile::Builder::new()
        .prefix("commit-msg-")
        .tempfile_in(&dir)?;
    let prompt = format!(
        "Write a git commit message for the staged change shown as a diff below. Answer with the commit message only: a summary line of at most 72 characters, a blank line, then a short body explaining what changed and why. Do not run git commit and do not change any file.\n\n```diff\n{}\n```\n",
        crate::error::sanitize(capped(diff, DIFF_MAX))
    );
    std::fs::write(prompt_file.path(), prompt)?;
    let timeout = config
        .get("agent.hooks.prepareCommitMsgTimeout")
        .unwrap_or(TIMEOUT);
    let me = std::env::current_exe().context("cannot find git-agent itself")?;
    let run = |args: &[&str]| -> Result<std::process::Output> {
        Command::new(&me)
            .args(args)
            .current_dir(&git.dir)
            .env_remove("GIT_INDEX_FILE")
            .env("GIT_AGENT_NESTED", "1")
            .stdin(Stdio::null())
            .output()
            .context("cannot run git-agent")
    };
    let prompt_path = prompt_file.path().to_string_lossy().into_owned();
    let (before, after): (Vec<&str>, Vec<&str>) = {
        let split = extra.iter().position(|a| a == "--").unwrap_or(extra.len());
        (
            extra[..split].iter().map(String::as_str).collect(),
            extra[split..].iter().map(String::as_str).collect(),
        )
    };
    let mut spawn = vec![
        "spawn",
        "--name",
        &name,
        "--wait",
        "--timeout",
        timeout,
        "--file",
        &prompt_path,
    ];
    spawn.extend(before);
    spawn.extend(after);
    let spawned = run(&spawn);
    let logs = run(&["logs", &name]);
    // The task is scratch: it goes whatever happened.
    let _ = run(&["purge", "--refs", "--force", &name]);
    let spawned = spawned?;
    if !spawned.status.success() {
        bail!(
            "the drafting task failed: {}",
            String::from_utf8_lossy(&spawned.stderr).trim()
        );
    }
    let logs = logs?;
    let text: String = String::from_utf8_lossy(&logs.stdout)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    let text = capped(text.trim(), DRAFT_MAX).trim().to_string();
    if text.is_empty() {
        bail!("the drafting task answered nothing");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_a_switch_or_spawn_options() {
        let o = |v: &str| options(&Config::from_pairs(&[("agent.hooks.prepareCommitMsg", v)]));
        assert_eq!(o("true"), Some(vec![]));
        assert_eq!(o("off"), None);
        assert_eq!(
            o("--agent exec -- echo hi"),
            Some(vec![
                "--agent".into(),
                "exec".into(),
                "--".into(),
                "echo".into(),
                "hi".into()
            ])
        );
        assert_eq!(options(&Config::from_pairs(&[])), None);
    }
}
