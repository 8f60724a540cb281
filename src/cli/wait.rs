//! `git agent wait`: block until tasks have ended; the waiting is [`crate::ops::wait`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine_for_reading};
use crate::ops::{self, OpError};

/// Wait until every named task has ended (queued tasks too).
///
/// Exits 0 when every task exited 0, else 1 with a line per task that did not (on stderr);
/// 130 on Ctrl-C (the tasks go on).
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The tasks (any unique prefix of a name).
    #[arg(required = true)]
    pub tasks: Vec<String>,
    /// Print how each task ended as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: WaitArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let rt = engine_for_reading().await.ok();
    let waited = ops::wait::run(rt.as_ref(), &ctx, &args.tasks)
        .await
        .map_err(OpError::into_report)?;
    if args.json {
        super::json::print(&serde_json::json!({ "tasks": waited.ended }))?;
    }
    for e in waited.ended.iter().filter(|e| !e.ok()) {
        let how = match (e.status.as_str(), e.exit_code) {
            ("exited", Some(c)) => format!("exited with status {c}"),
            (s, _) => s.to_string(),
        };
        let why = e
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        eprintln!("git-agent: task {} {how}{why}", e.task);
    }
    if waited.interrupted {
        eprintln!("git-agent: stopped waiting; the tasks go on");
    }
    Ok(waited.exit_code())
}
