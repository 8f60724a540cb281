//! `git agent commit-push`: `commit`, then `push`, in one step.

use anyhow::Result;
use clap::Args;

use super::push::PushOpts;
use super::{Ctx, out};

/// Commit a task's work, then push it.
#[derive(Debug, Args)]
pub struct CommitPushArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Message for the commit of the agent's uncommitted changes.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    #[command(flatten)]
    pub push: PushOpts,
    /// Commit only the changes to these paths (after `--`; see `git agent commit`).
    #[arg(last = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

pub async fn run(args: CommitPushArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let done = super::commit::commit(&ctx, &args.task, args.message, true, &args.paths).await?;
    super::push::push(&ctx, &done.task, &args.push)?;
    out(done.branch)?;
    Ok(0)
}
