//! Rm and purge: removing what a task used on the engine, and with `purge --refs` the task
//! itself (kept in the trash until it is emptied, see [`crate::task::trash`]).
//!
//! A task whose container is still there is synced first, so nothing the agent did since the
//! last sync is lost (unless the caller forces it). Each removal takes the task's lock and
//! first records what the engine shows (an ended run, a dead spawn) and removes what an
//! interrupted sync left. Asking the user before a bulk purge is the caller's: these
//! operations take the decision as made.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{Ctx, Event, Events, lock_task, reload};
use crate::runtime::{ContainerState, LABEL_REPO, LABEL_TASK, ObjectKind, Runtime};
use crate::sandbox::remove_objects;
use crate::task::lock::TaskLock;
use crate::task::store::Loaded;
use crate::task::{Status, TaskName, now};

/// What went wrong in an rm or a purge, beyond the engine's and the refs' own failures.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("task '{task}' was purged by another command meanwhile")]
    PurgedMeanwhile { task: String },
    #[error(
        "cannot sync task '{task}' before purging it, so its latest work would be lost: {detail}"
    )]
    CannotSync { task: String, detail: String },
    /// A failure below the operation (the task's lock, the refs, the engine), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for RemoveError {
    fn hint(&self) -> Option<String> {
        match self {
            RemoveError::PurgedMeanwhile { .. } => {
                Some("see what is left with `git agent list`".into())
            }
            RemoveError::CannotSync { task, .. } => Some(format!(
                "look at it with `git agent status {task}`; `git agent purge --force {task}` removes it anyway"
            )),
            RemoveError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            RemoveError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            RemoveError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// Remove task `task`'s container (any unique prefix of its name); its workspace volume,
/// network and refs stay. Returns the task's name.
pub async fn rm<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    task: &str,
    events: &dyn Events,
) -> Result<String, RemoveError> {
    let name = ctx.store.resolve_local(task, "rm")?.record.name;
    let lock = lock_task(ctx, &name, "rm", events).await?;
    crate::sandbox::sync::clear_leftovers(rt, &ctx.git, &ctx.repo, &name, &lock).await?;
    crate::sandbox::refresh(rt, &ctx.store, reload(ctx, &name)?).await?;
    let names = ctx.repo.object_names(&name);
    rt.remove_container(&names.container).await?;
    // Its disk warden watched only that container, and would keep the workspace in use.
    if crate::sandbox::owned_by(rt, &ctx.repo, &name, ObjectKind::Container, &names.warden).await? {
        rt.remove_container(&names.warden).await?;
    }
    // A preview goes with the task's container (it would keep the network in use).
    crate::sandbox::preview::remove(rt, &ctx.repo, &name).await?;
    ctx.store.update(&name, "rm", |r, _| {
        if matches!(r.status, Status::Running | Status::Creating) {
            r.status = Status::Stopped;
            r.reason = Some("container removed".into());
            r.finished = Some(now());
        }
        r.sandbox.container = None;
        Ok(vec![])
    })?;
    // The run is over for good: keep its connection log, remove its gateway.
    crate::sandbox::gateway::retire(rt, &ctx.store, ctx.store.resolve(&name)?, &names).await?;
    events.emit(Event::step(
        Some(&name),
        format!("removed the container of {name}"),
    ));
    Ok(name)
}

/// Work a task holds that never reached its branch, in words (`None` when all is promoted
/// or there is none).
pub fn unpromoted(ctx: &Ctx, loaded: &Loaded) -> Option<String> {
    let r = &loaded.record;
    let tip = loaded.tip();
    if tip == r.base || r.promoted.as_ref().is_some_and(|p| p.task_tip == tip) {
        return None;
    }
    let head = loaded.ref_value("head").unwrap_or(&r.base);
    let mut args = vec![
        "rev-list".to_string(),
        "--count".into(),
        head.to_string(),
        format!("^{}", r.base),
    ];
    if let Some(p) = &r.promoted {
        args.push(format!("^{}", p.task_tip));
    }
    let commits: usize = ctx
        .git
        .run(&args)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let wip = loaded.ref_value("wip").is_some()
        && r.promoted.as_ref().map(|p| p.task_tip.as_str()) != loaded.ref_value("wip");
    let mut parts = Vec::new();
    if commits > 0 {
        parts.push(format!(
            "{commits} commit{} never promoted",
            if commits == 1 { "" } else { "s" }
        ));
    }
    if wip {
        parts.push("uncommitted changes never promoted".into());
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A task a purge would take, for the caller to show (and ask about) first.
pub struct Planned {
    pub name: String,
    pub status: Status,
    /// Work never promoted (see [`unpromoted`]).
    pub unpromoted: Option<String>,
}

/// What purging `tasks` would take.
pub fn plan(ctx: &Ctx, tasks: &[Loaded]) -> Vec<Planned> {
    tasks
        .iter()
        .map(|l| Planned {
            name: l.record.name.clone(),
            status: l.record.status,
            unpromoted: unpromoted(ctx, l),
        })
        .collect()
}

/// Bring a task's work home before its workspace goes. Tasks that never ran (their spawn
/// failed or died) have nothing to bring.
async fn sync_before_purge<R: Runtime>(
    ctx: &Ctx,
    rt: &R,
    loaded: Loaded,
    lock: &TaskLock,
    force: bool,
    events: &dyn Events,
) -> Result<Loaded> {
    let never_ran = matches!(loaded.record.status, Status::Creating | Status::Failed)
        && loaded.record.started.is_none();
    let Some(container) = loaded.record.sandbox.container.clone() else {
        return Ok(loaded);
    };
    // A container already gone (an earlier purge was interrupted, or it was removed by hand)
    // has nothing left to bring: its last synced work is in the refs.
    if never_ran || rt.state(&container).await? == ContainerState::Missing {
        return Ok(loaded);
    }
    let name = loaded.record.name.clone();
    match super::sync::if_possible(rt, ctx, loaded, lock, events).await {
        Ok(l) => Ok(l),
        Err(e) if force => {
            events.emit(Event::step(
                Some(&name),
                format!("{name}: could not sync before purging ({e:#}); its unsynced work is lost"),
            ));
            ctx.store.resolve(&name)
        }
        Err(e) => Err(RemoveError::CannotSync {
            task: name,
            detail: format!("{e:#}"),
        }
        .into()),
    }
}

/// Purge one task (an exact name, or any unique prefix of an existing task's name): its
/// containers, workspace volume and network go; with `refs`, the task's refs too (kept in
/// the trash). An exact name without refs removes what an interrupted spawn left. With
/// `force`, a task whose last work cannot be synced first is purged anyway.
pub async fn purge<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    query: &str,
    refs: bool,
    force: bool,
    events: &dyn Events,
) -> Result<(), RemoveError> {
    let found = ctx.store.resolve(query).map(|l| l.record.name);
    if let Ok(name) = &found
        && crate::task::remote::is_fetched(name)
    {
        return purge_fetched(ctx, name, refs, events).await;
    }
    let (name, lock) = match found {
        Ok(name) => {
            let lock = lock_task(ctx, &name, "purge", events).await?;
            (name, Some(lock))
        }
        // An exact name without refs: clean up objects left by an interrupted spawn.
        Err(e) => match TaskName::parse(query) {
            Ok(n) => {
                let leftovers = rt
                    .containers_with(&[(LABEL_REPO, &ctx.repo.id), (LABEL_TASK, n.as_str())])
                    .await?;
                if leftovers.is_empty() {
                    return Err(e.into());
                }
                (n.to_string(), None)
            }
            Err(_) => return Err(e.into()),
        },
    };
    let loaded = match &lock {
        Some(lock) => match ctx.store.load(&name)? {
            Some(l) => {
                crate::sandbox::sync::clear_leftovers(rt, &ctx.git, &ctx.repo, &name, lock).await?;
                let l = crate::sandbox::stuck::settle(&ctx.store, l)?;
                Some(sync_before_purge(ctx, rt, l, lock, force, events).await?)
            }
            None => {
                return Err(RemoveError::PurgedMeanwhile { task: name });
            }
        },
        None => None,
    };
    // Ctrl-C before anything is removed leaves the task whole.
    crate::interrupt::checkpoint()?;
    let recorded = loaded.as_ref().map(|l| l.record.sandbox.clone());
    // By label only: the task's own objects, including those a task from before the current
    // naming scheme recorded under its old names.
    remove_objects(rt, &ctx.repo, &name, recorded.as_ref(), true, true).await?;
    crate::crash::point("purge.after-objects");
    if loaded.is_some() {
        let loaded = ctx.store.update(&name, "purge", |r, _| {
            if matches!(r.status, Status::Running | Status::Creating) {
                r.status = Status::Stopped;
                r.reason = Some("purged".into());
                r.finished = Some(now());
            }
            r.sandbox.container = None;
            r.sandbox.volume = None;
            r.sandbox.network = None;
            r.sandbox.gateway = None;
            r.sandbox.state_volume = None;
            r.sandbox.home_volume = None;
            r.sandbox.cache = None;
            Ok(vec![])
        })?;
        if refs {
            crate::crash::point("purge.before-refs");
            let work = unpromoted(ctx, &loaded);
            crate::task::trash::delete_keeping_copy(&ctx.store, &loaded)?;
            crate::task::lock::forget(&ctx.git, &name);
            if let Some(w) = work {
                events.emit(Event::step(
                    Some(&name),
                    format!("{name} held {w}; `git agent purge --undo {name}` brings it back"),
                ));
            }
        }
    }
    // The last workspace borrowing from the object cache is gone: so goes the cache.
    if let Err(e) = crate::sandbox::cache::release_if_unused(rt, &ctx.store, &ctx.repo).await {
        events.emit(Event::warning(
            None,
            format!("could not remove the unused object cache: {e:#}"),
        ));
    }
    // No task runs any more: the spare made for the next one goes too.
    let idle = async {
        let tasks = ctx.store.all()?;
        crate::sandbox::spare::retire_if_idle(rt, &ctx.repo, &tasks).await
    };
    if let Err(e) = idle.await {
        events.emit(Event::warning(
            None,
            format!("could not remove the spare network: {e:#}"),
        ));
    }
    events.emit(Event::step(
        Some(&name),
        format!("purged {name}{}", if refs { " and its refs" } else { "" }),
    ));
    Ok(())
}

/// Purge a fetched task (see [`crate::task::remote`]): it has nothing on this engine, and
/// whatever engine object its record once named is not its here, so only its refs go (the
/// next `git fetch` brings them back while the remote has them). Without `refs` there is
/// nothing to remove.
pub async fn purge_fetched(
    ctx: &Ctx,
    name: &str,
    refs: bool,
    events: &dyn Events,
) -> Result<(), RemoveError> {
    if !refs {
        events.emit(Event::step(
            Some(name),
            format!("{name} was fetched and has nothing on this engine; `git agent purge --refs {name}` removes its refs"),
        ));
        return Ok(());
    }
    let _lock = lock_task(ctx, name, "purge", events).await?;
    ctx.store.delete(name)?;
    crate::task::lock::forget(&ctx.git, name);
    events.emit(Event::step(
        Some(name),
        format!("purged {name} and its refs"),
    ));
    Ok(())
}

/// The tasks kept in the trash, each with its refs (`leaf -> oid`).
pub fn trash(ctx: &Ctx) -> Result<BTreeMap<String, BTreeMap<String, String>>, RemoveError> {
    Ok(crate::task::trash::list(&ctx.git)?)
}

/// Delete the trash copies of `task` (or of every purged task); returns the names emptied.
pub fn empty_trash(ctx: &Ctx, task: Option<&str>) -> Result<Vec<String>, RemoveError> {
    Ok(crate::task::trash::empty(&ctx.git, task)?)
}

/// Bring back a task purged with its refs.
pub fn undo(ctx: &Ctx, task: &str) -> Result<(), RemoveError> {
    Ok(crate::task::trash::restore(&ctx.store, task)?)
}

#[cfg(test)]
mod tests {
    use super::RemoveError;

    #[test]
    fn remove_errors_carry_their_hint() {
        let e: anyhow::Error = RemoveError::CannotSync {
            task: "t".into(),
            detail: "engine gone".into(),
        }
        .into();
        assert_eq!(
            e.to_string(),
            "cannot sync task 't' before purging it, so its latest work would be lost: engine gone"
        );
        assert_eq!(
            crate::error::find_hint(&e).as_deref(),
            Some(
                "look at it with `git agent status t`; `git agent purge --force t` removes it anyway"
            )
        );
        let e: anyhow::Error = RemoveError::PurgedMeanwhile { task: "t".into() }.into();
        assert_eq!(
            crate::error::find_hint(&e).as_deref(),
            Some("see what is left with `git agent list`")
        );
    }
}
