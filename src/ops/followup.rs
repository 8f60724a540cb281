//! Continue: send a follow-up prompt to a task whose run has ended, headless, in a fresh
//! container on the same workspace and home volume, resuming the agent's conversation.
//!
//! Owns what `continue` checks before anything changes (a prompt was given, the run has
//! ended, the spawn is done) and hands the rest to restart's machinery
//! ([`super::restart::resume`]): the sync of the old run's work, the new network and
//! gateway under the task's recorded policy, the same hardening, and the record of the
//! follow-up (`followups`, `followup-<n>.md` beside the original `prompt.md`) in the state
//! change that starts the run.
//!
//! How the agent resumes is its definition's business: `resume_headless` (Claude Code:
//! `claude -p --continue`, its sessions kept in the task's home volume), else its
//! `headless` command, which starts a new conversation in the same workspace. The exec agent
//! runs its recorded command again with the follow-up on its standard input. The follow-up
//! always reaches the sandbox as data (the sandbox helper's stdin, or the `{prompt}` word
//! substituted inside the sandbox), never on a command line. It must not print or prompt:
//! the prompt comes in the request.

use anyhow::Result;

use super::restart::{FollowUp, RestartRequest};
use super::{Ctx, Event, Events};
use crate::runtime::Runtime;
use crate::task::Status;
use crate::task::lock::Lease;
use crate::task::store::Loaded;

/// What to continue, and with what.
#[derive(Debug, Clone)]
pub struct ContinueRequest {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// The follow-up prompt.
    pub prompt: String,
}

/// A task that runs again with a follow-up.
#[derive(Debug)]
pub struct Continued {
    pub loaded: Loaded,
    /// The agent resumed its conversation (false: it started a new one in the workspace).
    pub resumed: bool,
}

/// Why a continue refused or failed; nothing was changed unless the message says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum ContinueError {
    #[error("the follow-up prompt is empty")]
    EmptyPrompt,
    #[error("task '{task}' is still running; a follow-up goes to a task whose run has ended")]
    Running { task: String },
    #[error("task '{task}' is still being set up by its spawn")]
    StillSpawning { task: String },
    /// A failure below the operation (the task's lock, the refs, the engine, the restart
    /// machinery), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for ContinueError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ContinueError::EmptyPrompt => {
                "say what to do next with -m \"...\", -F <file>, or on standard input".into()
            }
            ContinueError::Running { task } => format!(
                "wait for its end with `git agent wait {task}`, or stop it with `git agent stop {task}`; then continue it"
            ),
            ContinueError::StillSpawning { task } => format!(
                "wait for the spawn to finish, then check it with `git agent status {task}`"
            ),
            ContinueError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            ContinueError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            ContinueError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

super::error::pass_on!(super::restart::RestartError => ContinueError);

/// Send `args.prompt` to the task (see the module doc), waiting for a command that holds it.
pub async fn run<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    args: &ContinueRequest,
    events: &dyn Events,
) -> Result<Continued, ContinueError> {
    if args.prompt.trim().is_empty() {
        return Err(ContinueError::EmptyPrompt);
    }
    let name = ctx.store.resolve_local(&args.task, "continue")?.record.name;
    let lock = super::lock_task(ctx, &name, "continue", events).await?;
    let loaded = super::reload(ctx, &name)?;
    if loaded.record.status == Status::Creating && Lease::held(&ctx.git, &name)? {
        return Err(ContinueError::StillSpawning { task: name });
    }
    // A run that ended since it was last recorded is recorded now (its exit code, its
    // transcript): only then is it known whether it still runs.
    let loaded = crate::sandbox::refresh(rt, &ctx.store, loaded).await?;
    if loaded.record.status == Status::Running {
        return Err(ContinueError::Running { task: name });
    }
    let search = crate::data::Search::new(&ctx.git.dir);
    let agent = crate::agent::load(&search, &loaded.record.agent)?;
    let resumed = agent.is_exec() || !agent.def.resume_headless.is_empty();
    if !resumed {
        events.emit(Event::step(
            Some(&name),
            format!(
                "agent {} has no `resume_headless` command: it starts a new conversation in the task's workspace",
                agent.name
            ),
        ));
    }
    let restart = RestartRequest {
        task: name,
        interactive: false,
        reseed: false,
    };
    let followup = FollowUp {
        prompt: &args.prompt,
    };
    let restarted =
        super::restart::resume(rt, ctx, &restart, Some(&followup), lock, loaded, events).await?;
    Ok(Continued {
        loaded: restarted.loaded,
        resumed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_to_do() {
        let e: anyhow::Error = ContinueError::Running { task: "fix".into() }.into();
        assert_eq!(
            crate::error::render(&e),
            [
                "Error: task 'fix' is still running; a follow-up goes to a task whose run has ended",
                "Hint: wait for its end with `git agent wait fix`, or stop it with `git agent stop fix`; then continue it",
            ]
        );
        let e: anyhow::Error = ContinueError::EmptyPrompt.into();
        assert_eq!(
            crate::error::render(&e)[1],
            "Hint: say what to do next with -m \"...\", -F <file>, or on standard input"
        );
    }
}
