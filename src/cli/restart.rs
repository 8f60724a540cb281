//! `git agent restart`: recreate a task's container and resume its agent. Parses the
//! arguments and renders; the work is [`crate::ops::restart`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, Stderr, out};
use crate::ops::attach::start_command;
use crate::ops::restart::RestartRequest;

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

pub async fn run(args: RestartArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded = ctx.store.resolve_local(&args.task, "restart")?;
    let rt = crate::ops::engine_of(&ctx, &loaded.record).await?;
    let request = RestartRequest {
        task: args.task,
        interactive: args.interactive,
        reseed: args.reseed,
    };
    let restarted = crate::ops::restart::run(&rt, &ctx, &request, &Stderr)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    let name = &restarted.loaded.record.name;
    out(name)?;
    if restarted.waits_for_attach {
        let loaded = &restarted.loaded;
        return super::attach::attach(&rt, &ctx, loaded, start_command(&rt, &ctx, loaded)).await;
    }
    eprintln!("git-agent: task {name} restarted; follow it with `git agent logs -f {name}`");
    Ok(0)
}
