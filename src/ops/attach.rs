//! Attach: connect the caller's terminal to a running interactive task's session.
//!
//! Owns what must hold before attaching (the task has a container, runs interactively, is
//! running) and what the session's end means for the task. The terminal itself (raw mode,
//! the detach keys, copying bytes) is the runtime's business ([`Runtime::attach_terminal`]);
//! what to tell the user afterwards is the caller's. This module must not print.

use anyhow::Result;

use super::Ctx;
use crate::runtime::{ContainerState, Runtime};
use crate::task::store::Loaded;

/// Why a task cannot be attached to.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("task '{task}' has no container")]
    NoContainer { task: String, hint: String },
    #[error("task '{task}' runs headless; there is no session to attach to")]
    Headless { task: String, hint: String },
    #[error("task '{task}' is not running")]
    NotRunning { task: String, hint: String },
}

impl AttachError {
    fn no_container(task: &str) -> AttachError {
        AttachError::NoContainer {
            task: task.to_string(),
            hint: format!("start it again with `git agent restart {task}`"),
        }
    }

    fn headless(task: &str) -> AttachError {
        AttachError::Headless {
            task: task.to_string(),
            hint: format!(
                "follow its output with `git agent logs -f {task}`, or resume it interactively with `git agent restart -i {task}`"
            ),
        }
    }

    fn not_running(task: &str) -> AttachError {
        AttachError::NotRunning {
            task: task.to_string(),
            hint: format!("resume its session with `git agent restart {task}`"),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> &str {
        match self {
            AttachError::NoContainer { hint, .. }
            | AttachError::Headless { hint, .. }
            | AttachError::NotRunning { hint, .. } => hint,
        }
    }
}

/// How an attached session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// The user detached; the task goes on.
    Detached,
    /// The task's command ended, with this exit status.
    Ended(i64),
}

/// Attach to `loaded`'s session; `ready` runs once the terminal is attached: for a task
/// whose command was held back for the caller (an interactive spawn or restart), that is
/// [`start_command`], so nothing the command prints is missed.
pub async fn attach<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    loaded: &Loaded,
    ready: impl std::future::Future<Output = Result<()>> + Send,
) -> Result<Attached> {
    let name = loaded.record.name.clone();
    let container = loaded
        .record
        .sandbox
        .container
        .clone()
        .ok_or_else(|| AttachError::no_container(&name))?;
    if !loaded.record.interactive {
        return Err(AttachError::headless(&name).into());
    }
    if rt.state(&container).await? != ContainerState::Running {
        return Err(AttachError::not_running(&name).into());
    }
    rt.attach_terminal(&container, ready).await?;
    match rt.state(&container).await? {
        ContainerState::Running => Ok(Attached::Detached),
        _ => {
            let l = crate::sandbox::refresh(rt, &ctx.store, ctx.store.resolve(&name)?).await?;
            Ok(Attached::Ended(l.record.exit_code.unwrap_or(0)))
        }
    }
}

/// Start the command of a task that waits for its caller to attach (see [`attach`]).
pub async fn start_command<R: Runtime>(rt: &R, loaded: &Loaded) -> Result<()> {
    let container = loaded
        .record
        .sandbox
        .container
        .as_deref()
        .unwrap_or_default();
    crate::sandbox::spawn::go(rt, container).await
}
