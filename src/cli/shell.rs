//! `git agent shell`: an interactive shell in a task's workspace, or one command run there
//! (both by [`crate::ops::attach`]).

use anyhow::Result;
use clap::Args;

use super::Ctx;

/// Open an interactive shell inside a task's sandbox, in its workspace, as the task user.
///
/// A finished task's workspace is opened in a fresh container without network. The shell
/// reads no rc or profile file (the agent could have written them: bash runs with --norc
/// --noprofile and an empty HOME), and git in it runs no hooks, fsmonitor, pager, editor,
/// external diff or filter/diff/merge driver the agent configured (command-line-scope
/// overrides through GIT_CONFIG_COUNT).
///
/// With `-- <command> [args]`, that one command runs there instead, the same way, and `shell`
/// exits with its status: `git agent shell fix -- cargo test`. The command and its
/// arguments are passed as they are, read by no shell on the host or in the sandbox (write
/// `-- sh -c '...'` for one). Its output goes to stdout, its stderr (up to 64 KiB) to stderr
/// when it ends; standard input is passed in unless it is a terminal.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// A command to run instead of a shell (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(args: ShellArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded = ctx.store.resolve_local(&args.task, "shell")?;
    // Said before the engine is reached: a task without a container has nothing to open.
    crate::ops::attach::shell_container(&loaded).map_err(crate::ops::OpError::into_report)?;
    let rt = crate::ops::engine_of(&ctx, &loaded.record).await?;
    if !args.command.is_empty() {
        return run_one(&rt, &ctx, &loaded, &args.command).await;
    }
    let code = crate::ops::attach::shell(&rt, &ctx, &loaded, crate::cli::term::session)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    Ok(code.clamp(0, 255) as i32)
}

/// `shell <task> -- <command>`: its exit status is the command's (clamped to 0..=255).
async fn run_one(
    rt: &crate::runtime::select::Engine,
    ctx: &Ctx,
    loaded: &crate::task::store::Loaded,
    command: &[String],
) -> Result<i32> {
    use tokio::io::AsyncWriteExt;
    let stdin = (!super::term::stdin_is_tty()).then(tokio::io::stdin);
    let mut stdout = tokio::io::stdout();
    let ran = crate::ops::attach::run_command(rt, ctx, loaded, command, stdin, &mut stdout).await;
    stdout.flush().await.ok();
    let ran = ran.map_err(crate::ops::OpError::into_report)?;
    let mut stderr = tokio::io::stderr();
    stderr.write_all(&ran.stderr).await?;
    stderr.flush().await?;
    Ok(ran.exit_code.clamp(0, 255) as i32)
}
