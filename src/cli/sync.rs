//! `git agent sync`: bring a task's work home into its refs, once or (`--follow`) for as
//! long as the task runs.

use anyhow::Result;
use clap::Args;

use super::{Ctx, out};
use crate::ops::follow::{Ended, Started};

/// Fetch a task's new commits and a snapshot of its uncommitted changes into refs/agent/<task>/.
///
/// The sandbox's answer is untrusted: it is size-capped (agent.maxBundleSize), verified,
/// fsck-checked, limited to the task's own refs and must descend from the task's base before
/// anything is admitted. The agent's branch and index inside the sandbox are not touched.
///
/// The work is one snapshot even while the agent keeps committing: its branch and HEAD are
/// read once, and the new commits and the uncommitted changes (a commit whose parent is the
/// commit the agent's HEAD was on) are taken from that moment. Syncs of one task run one at
/// a time; a sync that waited for another starts from what that one brought home. A sync
/// interrupted even by kill -9 leaves a reader container or temp files at most, and the next
/// command that changes the task (sync, commit, review, restart, stop, rm, purge) or `git
/// agent doctor --fix` removes them; `list` and `status` change nothing.
///
/// A running task is followed: a background git-agent process (started by `spawn` for a
/// headless task and by `restart`) looks at the task every agent.followInterval (3s) with a
/// cheap check inside the sandbox and syncs when the work changed, so `list`, `status` and
/// `review` show fresh changes. It gives way to your own commands, ends with the task's run
/// (after a last sync), and writes to .git/git-agent/follow/<task>.log. `status` says whether
/// a task is followed; `sync --follow` follows one again. `git config agent.follow false`
/// switches following off.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Follow the task in the background until its run ends (does nothing when it is
    /// followed already).
    #[arg(long, conflicts_with = "follow_here")]
    pub follow: bool,
    /// Follow the task in this process (what the background follower runs).
    #[arg(long, hide = true)]
    pub follow_here: bool,
}

pub async fn run(args: SyncArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let task = ctx.store.resolve_local(&args.task, "sync")?.record.name;
    if args.follow {
        let started =
            crate::ops::follow::start(&ctx, &task).map_err(crate::ops::OpError::into_report)?;
        match started {
            Started::Started(log) => out(format!(
                "following task {task} in the background (log: {})",
                log.display()
            ))?,
            Started::AlreadyFollowed(log) => out(format!(
                "task {task} is followed already (log: {})",
                log.display()
            ))?,
        }
        return Ok(0);
    }
    let rt = crate::ops::engine_of_task(&ctx, &task).await?;
    if args.follow_here {
        let ended = crate::ops::follow::run(&rt, &ctx, &task, &super::Stderr)
            .await
            .map_err(crate::ops::OpError::into_report)?;
        let why = match ended {
            Ended::AlreadyFollowed => "another follower follows it; this one ends",
            Ended::RunEnded => "its run ended; following ends",
            Ended::Removed => "it was removed; following ends",
            Ended::Off => "following was switched off (agent.follow=false)",
            Ended::RepositoryGone => "its repository is gone; following ends",
        };
        eprintln!("git-agent: {task}: {why}");
        return Ok(0);
    }
    crate::ops::sync::run(&rt, &ctx, &args.task, &super::Stderr)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    Ok(0)
}
