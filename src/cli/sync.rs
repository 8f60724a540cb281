//! `git agent sync`: bring a task's work home into its refs.

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine, lock_task};
use crate::runtime::Runtime;
use crate::sandbox::sync::{SyncOutcome, reload_after_wait, sync};
use crate::task::lock::TaskLock;
use crate::task::store::Loaded;

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
/// command that touches the task (sync, commit, review, list, status) removes them.
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

/// Remove what interrupted syncs of `tasks` left behind (see `sandbox::sync::sweep`), for
/// commands that do not otherwise touch a task's runtime (`list`, `status`); with `orphans`,
/// also what syncs of tasks that no longer exist left. Costs one `stat` per task when there
/// is nothing to remove; never fails the command.
pub async fn sweep_leftovers<'a>(
    ctx: &Ctx,
    tasks: impl IntoIterator<Item = &'a str>,
    orphans: bool,
) {
    let mut left: Vec<String> = tasks
        .into_iter()
        .filter(|t| crate::sandbox::sync::has_leftovers(&ctx.git, t))
        .map(str::to_string)
        .collect();
    if orphans {
        for t in crate::sandbox::sync::tasks_with_leftovers(&ctx.git) {
            if !left.contains(&t) && !matches!(ctx.store.load(&t), Ok(Some(_))) {
                left.push(t);
            }
        }
    }
    if left.is_empty() {
        return;
    }
    let Ok(rt) = super::engine_for_reading().await else {
        return;
    };
    for task in left {
        let _ = crate::sandbox::sync::sweep(&rt, &ctx.git, &ctx.repo, &task).await;
    }
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
    let before = ctx.store.resolve(&args.task)?;
    let rt = engine().await?;
    let lock = lock_task(&ctx, &before.record.name, "sync").await?;
    let loaded = reload_after_wait(&ctx.store, &before)?;
    let outcome = sync(&rt, &ctx.store, loaded, ctx.bundle_limit()?, &lock).await?;
    describe(&outcome);
    Ok(0)
}
