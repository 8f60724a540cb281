//! Stop: end a task's run, keeping its container, workspace and refs.
//!
//! Records how the run ended (an end the engine shows but no command recorded yet goes in
//! first, with its transcript), retires the task's gateway and removes what an interrupted sync
//! left. Never removes the container or the workspace (that is `rm` and `purge`).

use anyhow::Result;

use super::{Ctx, Event, Events, lock_task, reload};
use crate::runtime::{ContainerState, Runtime};
use crate::task::{Status, now};

/// What went wrong in a stop, beyond the engine's and the refs' own failures.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("task '{task}' has no container to stop")]
    NoContainer { task: String },
    /// A failure below the operation (the task's lock, the refs, the engine), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for StopError {
    fn hint(&self) -> Option<String> {
        match self {
            StopError::NoContainer { task } => {
                Some(format!("see its state with `git agent status {task}`"))
            }
            StopError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            StopError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            StopError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// Stop task `task` (any unique prefix of its name), giving it `timeout` seconds before it is
/// killed. Returns the task's name.
pub async fn run<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    task: &str,
    timeout: i32,
    events: &dyn Events,
) -> Result<String, StopError> {
    let name = ctx.store.resolve_local(task, "stop")?.record.name;
    let lock = lock_task(ctx, &name, "stop", events).await?;
    let loaded = reload(ctx, &name)?;
    if loaded.record.status == Status::Queued {
        // Nothing runs yet: cancelled in its record (a worker claiming it meanwhile wins
        // the compare-and-swap, and the task is stopped as a running one next time).
        let mut cancelled = false;
        ctx.store
            .update(&name, "stop: cancelled while queued", |r, _| {
                cancelled = r.status == Status::Queued;
                if cancelled {
                    r.status = Status::Stopped;
                    r.reason = Some("cancelled while queued".into());
                    r.finished = Some(now());
                }
                Ok(vec![])
            })?;
        if cancelled {
            events.emit(Event::step(
                Some(&name),
                format!("cancelled queued task {name}"),
            ));
            return Ok(name);
        }
    }
    let Some(container) = loaded.record.sandbox.container.clone() else {
        return Err(StopError::NoContainer { task: name });
    };
    crate::sandbox::sync::clear_leftovers(rt, &ctx.git, &ctx.repo, &name, &lock).await?;
    // A run that already ended is recorded as it ended (with its output), not as stopped.
    crate::sandbox::refresh(rt, &ctx.store, loaded).await?;
    let was = rt.state(&container).await?;
    rt.stop(&container, timeout).await?;
    let after = rt.state(&container).await?;
    ctx.store.update(&name, "stop", |r, _| {
        if matches!(r.status, Status::Running | Status::Creating) {
            r.status = if was == ContainerState::Running {
                Status::Stopped
            } else {
                Status::Exited
            };
            if let ContainerState::Exited(c) = after {
                r.exit_code = Some(c);
            }
            r.reason = Some("stopped by the user".into());
            r.finished = Some(now());
        }
        Ok(vec![])
    })?;
    let names = ctx.repo.object_names(&name);
    crate::sandbox::gateway::retire(rt, &ctx.store, ctx.store.resolve(&name)?, &names).await?;
    events.emit(Event::step(Some(&name), format!("stopped {name}")));
    Ok(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stop_error_carries_its_hint() {
        let e: anyhow::Error = super::StopError::NoContainer { task: "t".into() }.into();
        assert_eq!(e.to_string(), "task 't' has no container to stop");
        assert_eq!(
            crate::error::find_hint(&e.context("stop failed")).as_deref(),
            Some("see its state with `git agent status t`")
        );
    }
}
