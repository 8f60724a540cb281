//! `git agent shell`: an interactive shell in a task's workspace.

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine};
use crate::error::hinted;
use crate::runtime::{ContainerState, Runtime};

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
    let loaded = ctx.store.resolve(&args.task)?;
    let name = loaded.record.name.clone();
    let no_container = || {
        hinted(
            format!("task '{name}' has no container, so there is no workspace to open"),
            format!("its synced work is in its refs: `git agent review {name}`"),
        )
    };
    let container = loaded
        .record
        .sandbox
        .container
        .clone()
        .ok_or_else(no_container)?;
    let rt = engine().await?;
    // A finished task's own container is not started again (whatever the agent left in it
    // would run): its workspace is opened in a fresh container, without network.
    let (container, started) = match rt.state(&container).await? {
        ContainerState::Running => (container, false),
        ContainerState::Missing => return Err(no_container()),
        _ => (
            crate::sandbox::sync::start_reader_as(
                &rt,
                &ctx.store,
                &loaded,
                ctx.repo.object_names(&name).shell,
            )
            .await?,
            true,
        ),
    };
    let cmd = [crate::sandbox::HELPER.to_string(), "shell".into()];
    // SIGINT from outside (the terminal is raw, so Ctrl-C itself goes to the shell) ends
    // the session: the fresh container is removed and the command exits 130.
    let (raw, terminal) = crate::cli::term::session()?;
    let code =
        crate::interrupt::abandon_on_interrupt(rt.exec_interactive(&container, &cmd, terminal))
            .await;
    drop(raw);
    if started {
        rt.remove_container(&container).await.ok();
    }
    Ok(code?.clamp(0, 255) as i32)
}
