//! `git agent attach`: connect the terminal to a task's interactive session. Parses the
//! arguments and renders; what attaching does is [`crate::ops::attach`].

use anyhow::Result;
use clap::Args;

use super::Ctx;
use crate::ops::OpError;
use crate::ops::attach::{AttachError, Attached};
use crate::runtime::Runtime;
use crate::task::store::Loaded;

/// Connect your terminal to a running task's agent session. Detach with Ctrl-P Ctrl-Q; the
/// task keeps running and `attach` reconnects.
///
/// A headless task has no session to join: its output is followed instead, rendered as
/// `git agent logs -f` renders it, until the run ends (Ctrl-C stops following; the task runs
/// on).
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// For a headless task: its output exactly as the agent emitted it.
    #[arg(long)]
    pub raw: bool,
}

/// Attach the terminal to `loaded`'s session (`ready` runs once attached) and say how the
/// session ended; returns the command's exit code.
pub async fn attach<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    loaded: &Loaded,
    ready: impl std::future::Future<Output = Result<(), AttachError>> + Send,
) -> Result<i32> {
    let name = &loaded.record.name;
    let ready = async { ready.await.map_err(OpError::into_report) };
    let attached = crate::ops::attach::attach(rt, ctx, loaded, crate::cli::term::session, ready)
        .await
        .map_err(OpError::into_report)?;
    match attached {
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

pub async fn run(args: AttachArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded = ctx.store.resolve_local(&args.task, "attach")?;
    if !loaded.record.interactive {
        eprintln!(
            "git-agent: task {} runs headless: following its output (Ctrl-C stops following; the task runs on)",
            loaded.record.name
        );
        return super::logs::run(super::logs::LogsArgs {
            task: loaded.record.name.clone(),
            follow: true,
            tail: None,
            raw: args.raw,
        })
        .await;
    }
    let rt = crate::ops::engine_of(&ctx, &loaded.record).await?;
    attach(&rt, &ctx, &loaded, async { Ok(()) }).await
}
