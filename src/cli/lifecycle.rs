//! `git agent stop`, `rm` and `purge`: ending a task and removing what it used.

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine};
use crate::error::hinted;
use crate::runtime::{ContainerState, Runtime};
use crate::sandbox::remove_objects;
use crate::task::{Status, now};

/// Stop a task's container (its workspace and refs stay).
#[derive(Debug, Args)]
pub struct StopArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Seconds to wait for the task to exit before killing it.
    #[arg(long, default_value_t = 10)]
    pub timeout: i32,
}

/// Remove a task's container (its workspace volume, network and refs stay).
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
}

/// Remove a task's container, workspace volume and network; with --refs, the task too.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The task (exact name, or any unique prefix of an existing task's name).
    #[arg(required_unless_present = "all")]
    pub task: Option<String>,
    /// Also delete the task's refs (refs/agent/<task>/). Promoted branches are kept.
    #[arg(long)]
    pub refs: bool,
    /// Every task of this repository.
    #[arg(long, conflicts_with = "task")]
    pub all: bool,
}

pub async fn run_stop(args: StopArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded = ctx.store.resolve(&args.task)?;
    let name = loaded.record.name.clone();
    let Some(container) = loaded.record.sandbox.container.clone() else {
        return Err(hinted(
            format!("task '{name}' has no container to stop"),
            "see its state with `git agent status`",
        ));
    };
    let rt = engine().await?;
    let was = rt.state(&container).await?;
    rt.stop(&container, args.timeout).await?;
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
    crate::sandbox::gateway::retire(&rt, &ctx.store, ctx.store.resolve(&name)?, &names).await?;
    eprintln!("git-agent: stopped {name}");
    Ok(0)
}

pub async fn run_rm(args: RmArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded =
        crate::sandbox::refresh(&engine().await?, &ctx.store, ctx.store.resolve(&args.task)?)
            .await?;
    let name = loaded.record.name.clone();
    let rt = engine().await?;
    let names = ctx.repo.object_names(&name);
    rt.remove_container(&names.container).await?;
    ctx.store.update(&name, "rm", |r, _| {
        if matches!(r.status, Status::Running | Status::Creating) {
            r.status = Status::Stopped;
            r.reason = Some("container removed".into());
            r.finished = Some(now());
        }
        r.sandbox.container = None;
        Ok(vec![])
    })?;
    // The run is over for good: keep its connection log, remove its gateway.
    crate::sandbox::gateway::retire(&rt, &ctx.store, ctx.store.resolve(&name)?, &names).await?;
    eprintln!("git-agent: removed the container of {name}");
    Ok(0)
}

async fn purge_one<R: Runtime>(ctx: &Ctx, rt: &R, query: &str, refs: bool) -> Result<()> {
    let (name, recorded) = match ctx.store.resolve(query) {
        Ok(l) => (l.record.name.clone(), Some(l.record.sandbox.clone())),
        // An exact name without refs: clean up objects left by an interrupted spawn.
        Err(e) => match crate::task::TaskName::parse(query) {
            Ok(n) => {
                let leftovers = rt
                    .containers_with(&[
                        (crate::runtime::LABEL_REPO, &ctx.repo.id),
                        (crate::runtime::LABEL_TASK, n.as_str()),
                    ])
                    .await?;
                if leftovers.is_empty() {
                    return Err(e);
                }
                (n.to_string(), None)
            }
            Err(_) => return Err(e),
        },
    };
    // By label only: the task's own objects, including those a task from before the current
    // naming scheme recorded under its old names.
    remove_objects(rt, &ctx.repo, &name, recorded.as_ref(), true, true).await?;
    if recorded.is_some() {
        if refs {
            ctx.store.delete(&name)?;
        } else {
            ctx.store.update(&name, "purge", |r, _| {
                if matches!(r.status, Status::Running | Status::Creating) {
                    r.status = Status::Stopped;
                    r.reason = Some("purged".into());
                    r.finished = Some(now());
                }
                r.sandbox.container = None;
                r.sandbox.volume = None;
                r.sandbox.network = None;
                r.sandbox.gateway = None;
                r.sandbox.state_volume = None;
                Ok(vec![])
            })?;
        }
    }
    eprintln!(
        "git-agent: purged {name}{}",
        if refs { " and its refs" } else { "" }
    );
    Ok(())
}

pub async fn run_purge(args: PurgeArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let rt = engine().await?;
    if args.all {
        for name in ctx.store.names()? {
            purge_one(&ctx, &rt, &name, args.refs).await?;
        }
        return Ok(0);
    }
    let task = args.task.expect("clap requires a task without --all");
    purge_one(&ctx, &rt, &task, args.refs).await?;
    Ok(0)
}
