//! Interactive sessions: attaching the caller's terminal to a running interactive task's
//! session, and a shell in a task's workspace.
//!
//! Owns what must hold before attaching (the task has a container, runs interactively, is
//! running), what the session's end means for the task, and where a shell runs (a finished
//! task's own container is never started again). The terminal itself (raw mode,
//! the detach keys, copying bytes) is the runtime's business ([`Runtime::attach_terminal`]);
//! what to tell the user afterwards is the caller's. This module must not print.

use anyhow::Result;

use super::Ctx;
use crate::runtime::{ContainerState, Runtime, Terminal};
use crate::task::store::Loaded;

/// Why a task cannot be attached to.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("task '{task}' has no container")]
    NoContainer { task: String },
    #[error("task '{task}' runs headless; there is no session to attach to")]
    Headless { task: String },
    #[error("task '{task}' is not running")]
    NotRunning { task: String },
    /// A failure below the operation (the refs, the engine, the terminal), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for AttachError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            AttachError::NoContainer { task } => {
                format!("start it again with `git agent restart {task}`")
            }
            AttachError::Headless { task } => format!(
                "follow its output with `git agent logs -f {task}`, or resume it interactively with `git agent restart -i {task}`"
            ),
            AttachError::NotRunning { task } => {
                format!("resume its session with `git agent restart {task}`")
            }
            AttachError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            AttachError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            AttachError::Other(e) => Ok(e),
            other => Err(other),
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
///
/// `open` gives the terminal session (see [`crate::runtime::Terminal`]) once the checks have
/// passed, with a guard (the caller's raw mode) that is dropped as soon as the session ends.
pub async fn attach<R: Runtime, G>(
    rt: &R,
    ctx: &Ctx,
    loaded: &Loaded,
    open: impl FnOnce() -> Result<(G, Terminal)>,
    ready: impl std::future::Future<Output = Result<()>> + Send,
) -> Result<Attached, AttachError> {
    let name = loaded.record.name.clone();
    let container = loaded
        .record
        .sandbox
        .container
        .clone()
        .ok_or_else(|| AttachError::NoContainer { task: name.clone() })?;
    if !loaded.record.interactive {
        return Err(AttachError::Headless { task: name });
    }
    if rt.state(&container).await? != ContainerState::Running {
        return Err(AttachError::NotRunning { task: name });
    }
    {
        let (_guard, terminal) = open()?;
        rt.attach_terminal(&container, terminal, ready).await?;
    }
    match rt.state(&container).await? {
        ContainerState::Running => Ok(Attached::Detached),
        _ => {
            // Recorded under the task's lock: the end gives back the run's gateway and
            // network, which a restart from elsewhere may have just made anew.
            let _lock = super::lock_task(ctx, &name, "attach", &super::NoEvents).await?;
            let l = crate::sandbox::refresh(rt, &ctx.store, super::reload(ctx, &name)?).await?;
            Ok(Attached::Ended(l.record.exit_code.unwrap_or(0)))
        }
    }
}

/// Start the command of a task that waits for its caller to attach (see [`attach`]), and
/// its follower: an interactive task's work comes home while the user works with it, as a
/// headless one's does. (A follower that cannot start is not worth a message over the
/// user's session: `git agent status` says whether one runs.)
pub async fn start_command<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    loaded: &Loaded,
) -> Result<(), AttachError> {
    let container = loaded
        .record
        .sandbox
        .container
        .as_deref()
        .unwrap_or_default();
    crate::sandbox::spawn::go(rt, container).await?;
    super::follow::start_quietly(ctx, &loaded.record.name, &super::NoEvents);
    Ok(())
}

/// Why a shell cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("task '{task}' has no container, so there is no workspace to open")]
    NoWorkspace { task: String },
    /// A failure below the operation (the engine, the terminal), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for ShellError {
    fn hint(&self) -> Option<String> {
        match self {
            ShellError::NoWorkspace { task } => Some(format!(
                "its synced work is in its refs: `git agent review {task}`"
            )),
            ShellError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            ShellError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            ShellError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// The container whose workspace a shell opens; refused, without asking the engine, when
/// the task has none (it was removed).
pub fn shell_container(loaded: &Loaded) -> Result<&str, ShellError> {
    loaded
        .record
        .sandbox
        .container
        .as_deref()
        .ok_or_else(|| ShellError::NoWorkspace {
            task: loaded.record.name.clone(),
        })
}

/// The container a shell runs in, and whether it was started for it (and is to be removed
/// after). A finished task's own container is not started again (whatever the agent left in
/// it would run): its workspace is opened in a fresh container, without network.
async fn shell_target<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    loaded: &Loaded,
) -> Result<(String, bool), ShellError> {
    let name = &loaded.record.name;
    let container = shell_container(loaded)?.to_string();
    Ok(match rt.state(&container).await? {
        ContainerState::Running => (container, false),
        ContainerState::Missing => {
            return Err(ShellError::NoWorkspace { task: name.clone() });
        }
        _ => (
            crate::sandbox::sync::start_reader_as(
                rt,
                &ctx.store,
                loaded,
                ctx.repo.object_names(name).shell,
            )
            .await?,
            true,
        ),
    })
}

/// Run `command` (a program and its arguments, passed as they are: no shell reads them, on
/// the host or in the sandbox) in `loaded`'s workspace the way [`shell`] opens a shell: as
/// the task user, reading no rc file, with git's code-running settings off. `stdin` is
/// copied in (none: the command reads EOF), its stdout copied to `stdout`; returns its exit
/// status and the first 64 KiB of its stderr (untrusted bytes). Ctrl-C abandons it.
pub async fn run_command<R, I, W>(
    rt: &R,
    ctx: &Ctx,
    loaded: &Loaded,
    command: &[String],
    stdin: Option<I>,
    stdout: &mut W,
) -> Result<crate::runtime::ExecOutcome, ShellError>
where
    R: Runtime,
    I: tokio::io::AsyncRead + Unpin + Send,
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    let (container, started) = shell_target(rt, ctx, loaded).await?;
    let mut cmd = vec![
        crate::sandbox::HELPER.to_string(),
        "shell".into(),
        "--".into(),
    ];
    cmd.extend(command.iter().cloned());
    let ran =
        crate::interrupt::abandon_on_interrupt(rt.exec(&container, &cmd, stdin, stdout, u64::MAX))
            .await;
    if started {
        rt.remove_container(&container).await.ok();
    }
    Ok(ran?)
}

/// Run the sandbox helper's shell in `loaded`'s workspace, attached to the terminal, and
/// return its exit status. A running task's container is used; a finished task's workspace
/// is opened in a fresh container without network, removed again afterwards. Ctrl-C from
/// outside (the terminal is raw, so Ctrl-C itself goes to the shell) ends the session.
/// `open` gives the terminal session as for [`attach`].
pub async fn shell<R: Runtime, G>(
    rt: &R,
    ctx: &Ctx,
    loaded: &Loaded,
    open: impl FnOnce() -> Result<(G, Terminal)>,
) -> Result<i64, ShellError> {
    let (container, started) = shell_target(rt, ctx, loaded).await?;
    let cmd = [crate::sandbox::HELPER.to_string(), "shell".into()];
    let code = match open() {
        Ok((guard, terminal)) => {
            let code = crate::interrupt::abandon_on_interrupt(
                rt.exec_interactive(&container, &cmd, terminal),
            )
            .await;
            drop(guard);
            code
        }
        Err(e) => Err(e),
    };
    if started {
        rt.remove_container(&container).await.ok();
    }
    Ok(code?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_render_with_the_command_that_helps() {
        let task = || "fix".to_string();
        let e: anyhow::Error = AttachError::Headless { task: task() }.into();
        assert_eq!(
            crate::error::render(&e),
            [
                "Error: task 'fix' runs headless; there is no session to attach to",
                "Hint: follow its output with `git agent logs -f fix`, or resume it interactively with `git agent restart -i fix`",
            ]
        );
        let e =
            anyhow::Error::from(AttachError::NotRunning { task: task() }).context("attach failed");
        assert_eq!(
            crate::error::find_hint(&e).as_deref(),
            Some("resume its session with `git agent restart fix`")
        );
        let e: anyhow::Error = ShellError::NoWorkspace { task: task() }.into();
        assert_eq!(
            crate::error::find_hint(&e).as_deref(),
            Some("its synced work is in its refs: `git agent review fix`")
        );
    }
}
