//! `git agent gc`: arguments and rendering; the work is [`crate::ops::gc`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, Stderr};
use crate::ops::gc::GcResult;

/// Prune the repository's object cache on the engine: removed when no task's workspace
/// borrows from it, else cut down to the history those tasks start from and repacked; a
/// damaged cache is rebuilt. With no task running, the repository's spare networks and
/// gateways (`agent.spareGateway`) are removed too.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: GcArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let rt = crate::ops::engine_default(&ctx).await?;
    let result = crate::ops::gc::run(&rt, &ctx, &Stderr)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    if args.json {
        super::json::print(&result)?;
        return Ok(0);
    }
    println!("{}", describe(&result));
    Ok(0)
}

fn describe(r: &GcResult) -> String {
    let tasks = |n: &usize| {
        if *n == 1 {
            "1 task".to_string()
        } else {
            format!("{n} tasks")
        }
    };
    match r {
        GcResult::None => "no object cache to collect".into(),
        GcResult::Removed { volume } => format!("removed the unused object cache {volume}"),
        GcResult::Collected { volume, tasks: n } => {
            format!(
                "collected the object cache {volume}: it keeps the history of {}",
                tasks(n)
            )
        }
        GcResult::Rebuilt { volume, tasks: n } => {
            format!("rebuilt the object cache {volume} for {}", tasks(n))
        }
    }
}
