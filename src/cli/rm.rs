//! `git agent rm`: arguments and rendering; the work is [`crate::ops::remove`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, Stderr, engine};
use crate::ops::remove;

/// Remove a task's container (its workspace volume, network and refs stay).
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
}

pub async fn run(args: RmArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    ctx.store.resolve_local(&args.task, "rm")?;
    let rt = engine().await?;
    remove::rm(&rt, &ctx, &args.task, &Stderr)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    Ok(0)
}
