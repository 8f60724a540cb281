//! Read-only git for agents: `git agent spawn --git-readonly` or `agent.gitReadOnly`.
//!
//! The guards live in the image (`hooks/`, copied to `/usr/local/lib/git-agent/hooks/` by
//! the final layer) and are switched on per task by one environment variable,
//! [`ENV`]`=1`, in the container's spec. The sandbox helper's `supervise` then, before it
//! starts the agent,
//! - puts `/usr/local/lib/git-agent/readonly-bin` (a `git` that refuses mutating commands
//!   and runs the real git otherwise) first on the agent's `PATH`, for every agent;
//! - adds `git-readonly claude-hook` as a Claude Code `PreToolUse` hook on `Bash` to
//!   `~/.claude/settings.json` (other settings are kept), so the model is told why;
//! - copies `codex-readonly-git.rules` into `~/.codex/rules/` (Codex execpolicy).
//!
//! Only the agent's process gets the wrapper: the helper's own `receive`/`emit` (which
//! write refs in the sandbox) and `git agent shell` run the real git. These guards keep an
//! honest agent from committing, switching branches or rewriting history; they are not a
//! boundary (an agent can always run `/usr/bin/git` or edit `.git`). The boundary stays on
//! the host: the task's work only comes back through the checked bundle of `sync`.

use anyhow::Result;

use crate::git::Config;

/// The container environment variable that switches the guards on.
pub const ENV: &str = "GIT_AGENT_GIT_READONLY";
/// The git config key that makes read-only git the default for new tasks.
pub const CONFIG_KEY: &str = "agent.gitReadOnly";

/// Whether a new task runs with read-only git: `--git-readonly`/`--no-git-readonly` when
/// given, else `agent.gitReadOnly` (a git boolean), else off.
pub fn enabled(flag: Option<bool>, config: &Config) -> Result<bool> {
    if let Some(on) = flag {
        return Ok(on);
    }
    config.bool(CONFIG_KEY, false)
}

/// git's booleans: a key without a value is true.
/// Add the switch to a task's environment when the task runs with read-only git.
pub fn add_env(env: &mut Vec<String>, on: bool) {
    if on {
        env.push(format!("{ENV}=1"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_overrides_the_config() {
        let on = Config::from_pairs(&[("agent.gitreadonly", "yes")]);
        let off = Config::from_pairs(&[]);
        assert!(enabled(None, &on).unwrap());
        assert!(!enabled(None, &off).unwrap());
        assert!(!enabled(Some(false), &on).unwrap());
        assert!(enabled(Some(true), &off).unwrap());
        assert!(enabled(None, &Config::from_pairs(&[("agent.gitreadonly", "")])).unwrap());
        let bad = Config::from_pairs(&[("agent.gitreadonly", "maybe")]);
        assert!(
            enabled(None, &bad)
                .unwrap_err()
                .to_string()
                .contains("agent.gitReadOnly")
        );
    }

    #[test]
    fn the_switch_is_one_variable() {
        let mut env = vec!["A=1".to_string()];
        add_env(&mut env, false);
        assert_eq!(env, ["A=1"]);
        add_env(&mut env, true);
        assert_eq!(env, ["A=1", "GIT_AGENT_GIT_READONLY=1"]);
    }
}
