//! `git agent stop`: arguments and rendering; the work is [`crate::ops::stop`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, Stderr, engine};

/// Stop a task's container (its workspace and refs stay).
#[derive(Debug, Args)]
pub struct StopArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Seconds to wait for the task to exit before killing it.
    #[arg(long, default_value_t = 10)]
    pub timeout: i32,
}

pub async fn run(args: StopArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    ctx.store.resolve_local(&args.task, "stop")?;
    let rt = engine().await?;
    crate::ops::stop::run(&rt, &ctx, &args.task, args.timeout, &Stderr)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    Ok(0)
}
