//! `git agent hooks install|uninstall|list` and the hidden `git agent hook-run <hook>` that
//! git-agent's blocks in the git hook files call: arguments and rendering; the work is
//! [`crate::ops::hooks`] and [`crate::ops::gate`].

use std::io::Read;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::out;
use crate::git::Git;
use crate::ops::OpError;
use crate::ops::hooks::{self, HookState};

/// Manage git-agent's blocks in this repository's git hooks.
///
/// Each block goes at the end of the hook file git runs (in `core.hooksPath` when it is set,
/// else the repository's `hooks/` directory), after what the file already holds: the user's
/// own hook runs first and git-agent's block after it (an `exit` in the user's part ends the
/// hook before it). `uninstall` restores the files byte for byte and removes files git-agent
/// created. A hook does something only when switched on in git config: the pre-push gate with
/// `agent.hooks.prePush=true`, the post-commit trigger with `agent.hooks.postCommit=<template
/// or git agent add options>`, the commit-message helper with
/// `agent.hooks.prepareCommitMsg=true` (or `spawn` options). The blocks' bodies are built in and can be replaced
/// in `~/.config/git-agent/hooks/git/<hook>`, never from the repository.
#[derive(Debug, Args)]
pub struct HooksArgs {
    #[command(subcommand)]
    pub action: HooksAction,
}

#[derive(Debug, Subcommand)]
pub enum HooksAction {
    /// Add git-agent's block to hook files (every hook when none is named).
    Install {
        /// pre-push, post-commit, prepare-commit-msg.
        hooks: Vec<String>,
    },
    /// Take git-agent's block out of hook files, restoring them as they were.
    Uninstall {
        /// pre-push, post-commit, prepare-commit-msg.
        hooks: Vec<String>,
    },
    /// Show each hook: where its file is, whether git-agent's block is in it, whether it is on.
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: HooksArgs) -> Result<i32> {
    let git = Git::discover(&std::env::current_dir()?)?;
    let config = git.agent_config()?;
    match args.action {
        HooksAction::Install { hooks: names } => {
            let kinds = hooks::select(&names).map_err(OpError::into_report)?;
            let changes = hooks::install(&git, &config, &kinds).map_err(OpError::into_report)?;
            for c in &changes {
                let what = match c.what {
                    "unchanged" => "already installed in",
                    "updated" => "updated in",
                    _ => "installed in",
                };
                let new = if c.what == "created" {
                    " (new file)"
                } else {
                    ""
                };
                out(format!("{}: {what} {}{new}", c.hook, c.path.display()))?;
                if !c.enabled {
                    let kind = kinds.iter().find(|k| k.name == c.hook).expect("asked for");
                    out(format!("  not switched on: {}", switch_on(kind.key)))?;
                }
            }
        }
        HooksAction::Uninstall { hooks: names } => {
            let kinds = hooks::select(&names).map_err(OpError::into_report)?;
            let changes = hooks::uninstall(&git, &config, &kinds).map_err(OpError::into_report)?;
            for c in &changes {
                let what = match c.what {
                    "removed" => "removed",
                    "restored" => "removed from",
                    _ => "not installed in",
                };
                out(format!("{}: {what} {}", c.hook, c.path.display()))?;
            }
        }
        HooksAction::List { json } => {
            let states = hooks::list(&git, &config).map_err(OpError::into_report)?;
            if json {
                super::json::print(&serde_json::json!({ "hooks": states }))?;
            } else {
                for s in &states {
                    out(describe(s))?;
                }
            }
        }
    }
    Ok(0)
}

fn switch_on(key: &str) -> String {
    match key {
        "agent.hooks.postCommit" => format!("git config {key} review"),
        _ => format!("git config {key} true"),
    }
}

fn describe(s: &HookState) -> String {
    let installed = match &s.installed {
        Some(v) => format!("installed (v{v})"),
        None => "available".to_string(),
    };
    let user = if s.user_hook {
        ", beside your hook"
    } else {
        ""
    };
    let on = if s.enabled {
        format!("on ({})", s.key)
    } else {
        format!("off ({})", switch_on(s.key))
    };
    format!(
        "{:<19} {installed}{user}, {on}: {}",
        s.hook,
        s.path.display()
    )
}

/// Run git-agent's part of a git hook (called by its block in the hook file).
#[derive(Debug, Args)]
pub struct HookRunArgs {
    /// The hook git runs.
    pub hook: String,
    /// The hook's arguments, as git passed them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub async fn run_hook(args: HookRunArgs) -> Result<i32> {
    let git = Git::discover(&std::env::current_dir()?)?;
    let config = git.agent_config()?;
    let nested = std::env::var_os("GIT_AGENT_NESTED").is_some();
    match args.hook.as_str() {
        "pre-push" => {
            if !config.bool("agent.hooks.prePush", false)? {
                return Ok(0);
            }
            let mut stdin = String::new();
            std::io::stdin().read_to_string(&mut stdin)?;
            let pushed = crate::ops::gate::parse(&stdin);
            let remote = args.args.first().map(String::as_str).unwrap_or_default();
            let ctx = super::Ctx::open()?;
            crate::ops::gate::check(&ctx, remote, &pushed).map_err(OpError::into_report)?;
            Ok(0)
        }
        "post-commit" => {
            // Never fails the commit: a problem is a warning.
            if let Err(e) = hooks::post_commit(&git, &config, nested) {
                eprintln!("git-agent: warning: no task was queued on this commit: {e:#}");
            }
            Ok(0)
        }
        "prepare-commit-msg" => {
            // Never fails the commit: the message stays as it was.
            if let Err(e) = crate::ops::draft_msg::run(&git, &config, nested, &args.args) {
                eprintln!("git-agent: warning: no commit message was drafted: {e:#}");
            }
            Ok(0)
        }
        other => Err(hooks::HooksError::Unknown {
            name: other.to_string(),
        }
        .into_report()),
    }
}
