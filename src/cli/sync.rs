//! `git agent sync`: bring a task's work home into its refs.

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine, lock_task};
use crate::runtime::Runtime;
use crate::sandbox::sync::{SyncOutcome, sync};
use crate::task::lock::TaskLock;
use crate::task::store::Loaded;

/// Fetch a task's new commits and a snapshot of its uncommitted changes into refs/agent/<task>/.
///
/// The sandbox's answer is untrusted: it is size-capped (agent.maxBundleSize), verified,
/// fsck-checked, limited to the task's own refs and must descend from the task's base before
/// anything is admitted. The agent's branch and index inside the sandbox are not touched.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
}

/// Sync when the task still has a container; used by review, commit and push.
/// The caller holds the task's lock.
pub async fn sync_if_possible<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    loaded: Loaded,
    lock: &TaskLock,
) -> Result<Loaded> {
    if loaded.record.sandbox.container.is_none() {
        return Ok(loaded);
    }
    let outcome = sync(rt, &ctx.store, loaded, ctx.bundle_limit()?, lock).await?;
    describe(&outcome);
    Ok(outcome.loaded)
}

fn describe(o: &SyncOutcome) {
    let name = &o.loaded.record.name;
    if o.nothing_new() {
        eprintln!("git-agent: {name}: nothing new");
        return;
    }
    let mut parts = Vec::new();
    if o.head_moved {
        parts.push(format!(
            "{} new commit{}",
            o.new_commits,
            if o.new_commits == 1 { "" } else { "s" }
        ));
    }
    if o.wip_changed {
        parts.push(if o.has_wip {
            "uncommitted changes".to_string()
        } else {
            "uncommitted changes gone".to_string()
        });
    }
    eprintln!("git-agent: {name}: synced {}", parts.join(", "));
}

pub async fn run(args: SyncArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let name = ctx.store.resolve(&args.task)?.record.name;
    let rt = engine().await?;
    let lock = lock_task(&ctx, &name, "sync").await?;
    let loaded = ctx.store.resolve(&name)?;
    let outcome = sync(&rt, &ctx.store, loaded, ctx.bundle_limit()?, &lock).await?;
    describe(&outcome);
    Ok(0)
}
