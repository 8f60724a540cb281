//! `git agent sync`: bring a task's work home into its refs.

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine};

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
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
}

pub async fn run(args: SyncArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    ctx.store.resolve(&args.task)?;
    let rt = engine().await?;
    crate::ops::sync::run(&rt, &ctx, &args.task, &super::Stderr)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    Ok(0)
}
