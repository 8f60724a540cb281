//! `git agent push`: push a task's promoted branch with the user's git and credential
//! helpers, as `git push` would. The work is done by [`crate::ops::push`].

use anyhow::Result;
use clap::Args;

use super::Ctx;
use crate::ops::OpError;
use crate::ops::push::{PushError, PushRequest, Pushed};

/// Push branch agent/<task> with your git and credential helpers.
///
/// Works like `git push`: the remote's messages (where forges print the link to open a pull
/// request) show on stderr; a missing remote, a rejected push (with the remote's reason) and
/// an unreachable remote are told apart. Never forces.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    #[command(flatten)]
    pub push: PushOpts,
}

/// How to push (shared by `push` and `commit-push`).
#[derive(Debug, Args, Clone, Default)]
pub struct PushOpts {
    /// Remote to push to (default: the base branch's remote, else remote.pushDefault, else
    /// the only remote, else origin).
    #[arg(long)]
    pub remote: Option<String>,
    /// Make the remote branch the upstream of agent/<task> (branch.agent/<task>.remote and
    /// .merge), as `git push -u`. Default: agent.pushSetUpstream (false).
    #[arg(short = 'u', long = "set-upstream", overrides_with = "no_set_upstream")]
    pub set_upstream: bool,
    /// Do not set the upstream, whatever agent.pushSetUpstream says.
    #[arg(long = "no-set-upstream")]
    pub no_set_upstream: bool,
    /// Also push the provenance notes (refs/notes/agent) in the same push, atomically when
    /// the remote supports it; never forced. Default: agent.pushNotes (false).
    #[arg(long, overrides_with = "no_notes")]
    pub notes: bool,
    /// Do not push the notes, whatever agent.pushNotes says.
    #[arg(long = "no-notes")]
    pub no_notes: bool,
}

impl PushOpts {
    fn request(&self, task: &str) -> PushRequest {
        PushRequest {
            task: task.to_string(),
            remote: self.remote.clone(),
            set_upstream: decided(self.set_upstream, self.no_set_upstream),
            notes: decided(self.notes, self.no_notes),
        }
    }
}

/// A `--x` / `--no-x` pair: `Some` when either was given, `None` to use the configured default.
fn decided(yes: bool, no: bool) -> Option<bool> {
    if no {
        Some(false)
    } else if yes {
        Some(true)
    } else {
        None
    }
}

/// Push a task's branch, showing what the remote said (where forges print the link to open
/// a pull request), also when the push failed.
pub(super) fn push(ctx: &Ctx, task: &str, opts: &PushOpts) -> Result<Pushed> {
    let pushed = crate::ops::push::run(ctx, &opts.request(task)).map_err(|e: PushError| {
        if let Some(m) = e.remote_messages() {
            eprint!("{m}");
        }
        e.into_report()
    })?;
    eprint!("{}", pushed.remote_messages);
    eprintln!(
        "git-agent: pushed {}{} to {}{}",
        pushed.branch,
        if pushed.notes { " and its notes" } else { "" },
        pushed.remote,
        if pushed.upstream {
            " (upstream set)"
        } else {
            ""
        }
    );
    Ok(pushed)
}

pub async fn run(args: PushArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    push(&ctx, &args.task, &args.push)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_flags_decide_or_leave_it_to_config() {
        assert_eq!(decided(false, false), None);
        assert_eq!(decided(true, false), Some(true));
        assert_eq!(decided(false, true), Some(false));
        let opts = PushOpts {
            remote: Some("up".into()),
            set_upstream: true,
            no_notes: true,
            ..PushOpts::default()
        };
        let req = opts.request("t");
        assert_eq!(req.task, "t");
        assert_eq!(req.remote.as_deref(), Some("up"));
        assert_eq!(req.set_upstream, Some(true));
        assert_eq!(req.notes, Some(false));
    }
}
