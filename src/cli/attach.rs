//! `git agent attach` and `git agent restart`: interactive sessions and resuming them.
//!
//! Parses the arguments and renders; what attaching and restarting do is
//! [`crate::ops::attach`] and [`crate::ops::restart`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, Stderr, engine, out};
use crate::ops::attach::{Attached, start_command};
use crate::ops::restart::RestartRequest;
use crate::runtime::Runtime;
use crate::task::store::Loaded;

/// Connect your terminal to a running task's agent session. Detach with Ctrl-P Ctrl-Q; the
/// task keeps running and `attach` reconnects.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
}

/// Recreate a task's container on the current image and resume the agent's previous
/// conversation (its sessions are kept in the task's home volume). The workspace is kept.
///
/// A new gateway and network come with the new container (with the task's recorded domains),
/// so `restart` is also the repair for a gateway that died or a network that went missing.
/// The workspace is checked first, without running anything the agent wrote: when its volume
/// is gone or holds no task repository (a spawn that died before delivering it, a volume the
/// engine lost), `restart` refuses and changes nothing; `--reseed` then rebuilds it.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Resume attached to your terminal, even if the task ran headless.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Rebuild the workspace from the task's last synced work (`refs/agent/<task>/head`, else
    /// its base, with the uncommitted snapshot restored as uncommitted changes), then restart.
    /// A workspace that still holds the repository is synced first and replaced only when
    /// that sync succeeds. Also brings back a task left `creating` by a spawn that died.
    #[arg(long)]
    pub reseed: bool,
}

/// Attach the terminal to `loaded`'s session (`ready` runs once attached) and say how the
/// session ended; returns the command's exit code.
pub async fn attach<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    loaded: &Loaded,
    ready: impl std::future::Future<Output = Result<()>> + Send,
) -> Result<i32> {
    let name = &loaded.record.name;
    match crate::ops::attach::attach(rt, ctx, loaded, crate::cli::term::session, ready).await? {
        Attached::Detached => {
            eprintln!(
                "\r\ngit-agent: detached from {name}; reattach with `git agent attach {name}`"
            );
            Ok(0)
        }
        Attached::Ended(code) => {
            eprintln!("\r\ngit-agent: task {name} ended (status {code})");
            Ok(code.clamp(0, 255) as i32)
        }
    }
}

pub async fn run_attach(args: AttachArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded = ctx.store.resolve(&args.task)?;
    let rt = engine().await?;
    attach(&rt, &ctx, &loaded, async { Ok(()) }).await
}

pub async fn run_restart(args: RestartArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    ctx.store.resolve(&args.task)?;
    let rt = engine().await?;
    let request = RestartRequest {
        task: args.task,
        interactive: args.interactive,
        reseed: args.reseed,
    };
    let restarted = crate::ops::restart::run(&rt, &ctx, &request, &Stderr).await?;
    let name = &restarted.loaded.record.name;
    out(name)?;
    if restarted.waits_for_attach {
        let loaded = &restarted.loaded;
        return attach(&rt, &ctx, loaded, start_command(&rt, loaded)).await;
    }
    eprintln!("git-agent: task {name} restarted; follow it with `git agent logs -f {name}`");
    Ok(0)
}
