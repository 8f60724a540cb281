//! `git agent rm`: arguments and rendering; the work is [`crate::ops::remove`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, Each, Stderr, resolve_all};
use crate::ops::remove;

/// Remove tasks' containers (their workspace volumes, networks and refs stay).
///
/// Several tasks are removed one after the other; one that fails is reported and the others
/// are still removed, and the command then exits 1 naming the ones that failed.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The tasks (any unique prefix of a name).
    #[arg(required = true, value_name = "TASK")]
    pub tasks: Vec<String>,
}

pub async fn run(args: RmArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    // Every name is checked before anything is removed: a typo changes nothing.
    let tasks = resolve_all(&ctx, &args.tasks, "rm")?;
    let mut each = Each::new("rm", tasks.len());
    for task in &tasks {
        let rt = match crate::ops::engine_of_task(&ctx, task).await {
            Ok(rt) => rt,
            Err(e) => {
                each.record(task, Err(e))?;
                continue;
            }
        };
        let done = remove::rm(&rt, &ctx, task, &Stderr)
            .await
            .map(drop)
            .map_err(crate::ops::OpError::into_report);
        each.record(task, done)?;
    }
    each.finish()
}
