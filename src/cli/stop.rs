//! `git agent stop`: arguments and rendering; the work is [`crate::ops::stop`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, Each, Stderr, resolve_all};

/// Stop tasks' containers (their workspaces and refs stay).
///
/// Several tasks are stopped one after the other; one that fails is reported and the others
/// are still stopped, and the command then exits 1 naming the ones that failed.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// The tasks (any unique prefix of a name).
    #[arg(required = true, value_name = "TASK")]
    pub tasks: Vec<String>,
    /// How long to wait for a task to exit before killing it (e.g. 10, 30s, 2m; 0 kills at
    /// once).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::duration::parse_secs_or_zero)]
    pub timeout: u64,
}

pub async fn run(args: StopArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    // Every name is checked before anything is stopped: a typo changes nothing.
    let tasks = resolve_all(&ctx, &args.tasks, "stop")?;
    let timeout = i32::try_from(args.timeout).unwrap_or(i32::MAX);
    let mut each = Each::new("stop", tasks.len());
    for task in &tasks {
        // Each on its own engine: one that does not answer fails only its own tasks.
        let rt = match crate::ops::engine_of_task(&ctx, task).await {
            Ok(rt) => rt,
            Err(e) => {
                each.record(task, Err(e))?;
                continue;
            }
        };
        let done = crate::ops::stop::run(&rt, &ctx, task, timeout, &Stderr)
            .await
            .map(drop)
            .map_err(crate::ops::OpError::into_report);
        each.record(task, done)?;
    }
    each.finish()
}
