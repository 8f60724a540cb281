//! Sync: bring a task's work home into its refs (see [`crate::sandbox::sync`] for how the
//! sandbox's answer is checked and admitted).

use anyhow::Result;

use super::{Ctx, Event, Events, lock_task};
use crate::runtime::Runtime;
use crate::sandbox::sync::{SyncOutcome, reload_after_wait, sync};
use crate::task::lock::TaskLock;
use crate::task::store::Loaded;

/// What went wrong in a sync. The checks on what the sandbox sends back, and their
/// refusals, are [`crate::sandbox::sync`]'s: their errors pass through as they came.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A failure below the operation (the task's lock, the refs, the engine, the bundle).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for SyncError {
    fn hint(&self) -> Option<String> {
        None
    }

    fn below(&self) -> Option<&anyhow::Error> {
        let SyncError::Other(e) = self;
        Some(e)
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            SyncError::Other(e) => Ok(e),
        }
    }
}

super::error::pass_on!(SyncError => super::commit::CommitError, super::restart::RestartError);

/// Sync one task (any unique prefix of its name), waiting for a command that holds it.
pub async fn run<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    task: &str,
    events: &dyn Events,
) -> Result<SyncOutcome, SyncError> {
    let before = ctx.store.resolve_local(task, "sync")?;
    let lock = lock_task(ctx, &before.record.name, "sync", events).await?;
    let loaded = reload_after_wait(&ctx.store, &before)?;
    let outcome = sync(rt, &ctx.store, loaded, ctx.bundle_limit()?, &lock, events).await?;
    events.emit(Event::step(
        Some(&outcome.loaded.record.name),
        describe(&outcome),
    ));
    Ok(outcome)
}

/// Sync when the task still has a container (review, commit, push, purge and restart bring
/// the work home first). The caller holds the task's lock.
pub async fn if_possible<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    loaded: Loaded,
    lock: &TaskLock,
    events: &dyn Events,
) -> Result<Loaded, SyncError> {
    if loaded.record.sandbox.container.is_none() {
        return Ok(loaded);
    }
    let outcome = sync(rt, &ctx.store, loaded, ctx.bundle_limit()?, lock, events).await?;
    events.emit(Event::step(
        Some(&outcome.loaded.record.name),
        describe(&outcome),
    ));
    Ok(outcome.loaded)
}

/// `<task>: synced 2 new commits, uncommitted changes`, or `<task>: nothing new`.
pub fn describe(o: &SyncOutcome) -> String {
    let name = &o.loaded.record.name;
    if o.nothing_new() {
        return format!("{name}: nothing new");
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
    format!("{name}: synced {}", parts.join(", "))
}
