//! `git agent shell`: an interactive shell in a task's workspace (opened by
//! [`crate::ops::attach::shell`]).

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine};

/// Open an interactive shell inside a task's sandbox, in its workspace, as the task user.
///
/// A finished task's workspace is opened in a fresh container without network. The shell
/// reads no rc or profile file (the agent could have written them: bash runs with --norc
/// --noprofile and an empty HOME), and git in it runs no hooks, fsmonitor, pager, editor,
/// external diff or filter/diff/merge driver the agent configured (command-line-scope
/// overrides through GIT_CONFIG_COUNT).
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
}

pub async fn run(args: ShellArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded = ctx.store.resolve_local(&args.task, "shell")?;
    // Said before the engine is reached: a task without a container has nothing to open.
    crate::ops::attach::shell_container(&loaded).map_err(crate::ops::OpError::into_report)?;
    let rt = engine().await?;
    let code = crate::ops::attach::shell(&rt, &ctx, &loaded, crate::cli::term::session)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    Ok(code.clamp(0, 255) as i32)
}
