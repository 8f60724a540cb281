//! Preview: run a dev server from a task's workspace (read-only) and publish its port on the
//! engine host's loopback, while the agent works or after (see [`crate::sandbox::preview`]
//! for the containers and their confinement); stop it; read its output.

use anyhow::Result;
use tokio::io::AsyncWrite;

use super::{Ctx, Event, Events, lock_task, reload};
use crate::runtime::address::Published;
use crate::runtime::select::Engine;
use crate::runtime::{ContainerState, ObjectKind, Runtime};
use crate::sandbox::preview::{self, PreviewPlan};
use crate::sandbox::spawn::Limits;
use crate::task::Status;

/// The git config key of the dev server's default command.
pub const COMMAND_KEY: &str = "agent.previewCommand";

/// What went wrong in a preview, beyond the engine's and the refs' own failures.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("no command to run the preview of task '{task}' with")]
    NoCommand { task: String },
    #[error("task '{task}' has no workspace to preview")]
    NoWorkspace { task: String },
    #[error("task '{task}' has no preview")]
    NoPreview { task: String },
    #[error("port {port} is not a port a preview can use")]
    BadPort { port: u16 },
    /// A failure below the operation (the task's lock, the refs, the engine), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

super::error::pass_on!(super::image::ImageError => PreviewError);

impl super::OpError for PreviewError {
    fn hint(&self) -> Option<String> {
        match self {
            PreviewError::NoCommand { task } => Some(format!(
                "say how the dev server starts: `git agent preview {task} --port <port> --cmd '<command>'`, or set it once with `git config {COMMAND_KEY} '<command>'`"
            )),
            PreviewError::NoWorkspace { task } => Some(format!(
                "see its state with `git agent status {task}`; `git agent review {task}` shows the work it brought home"
            )),
            PreviewError::NoPreview { task } => Some(format!(
                "start one with `git agent preview {task} --port <port>`"
            )),
            PreviewError::BadPort { .. } => Some("use a port from 1 to 65535".into()),
            PreviewError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            PreviewError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            PreviewError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct PreviewRequest {
    pub task: String,
    pub port: u16,
    /// The port on the engine's host; `None`: the same as `port`.
    pub host_port: Option<u16>,
    /// Where the engine publishes it (see [`published_on`]).
    pub published: Published,
    /// The image to run the dev server in; `None`: the task's.
    pub image: Option<String>,
    /// The dev server's command; `None`: `agent.previewCommand`.
    pub cmd: Option<String>,
}

/// Where `rt` publishes a preview's port: a local engine on its loopback, a remote one on
/// the address the user reaches it by (see [`EngineAddress::published`]).
///
/// [`EngineAddress::published`]: crate::runtime::address::EngineAddress::published
pub fn published_on(rt: &Engine) -> Result<Published> {
    match rt {
        Engine::Docker(d) => d.address().published(),
        #[cfg(feature = "local-runtime")]
        _ => Ok(Published::loopback()),
    }
}

/// A started preview.
#[derive(Debug, Clone)]
pub struct Started {
    pub task: String,
    pub url: String,
    /// Whether it reaches out through the task's gateway (a live run) or not at all.
    pub through_gateway: bool,
}

/// Start (or replace) task `req.task`'s preview.
pub async fn start<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    req: &PreviewRequest,
    events: &dyn Events,
) -> Result<Started, PreviewError> {
    let name = ctx.store.resolve_local(&req.task, "preview")?.record.name;
    if req.port == 0 || req.host_port == Some(0) {
        return Err(PreviewError::BadPort { port: 0 });
    }
    let cmd = match req.cmd.clone().or_else(|| {
        ctx.config
            .get(COMMAND_KEY)
            .filter(|c| !c.trim().is_empty())
            .map(str::to_string)
    }) {
        Some(c) => c,
        None => return Err(PreviewError::NoCommand { task: name }),
    };
    let door_image = {
        let plan = crate::image::gateway_plan(&ctx.config)?;
        super::image::ensure(rt, &plan, events).await?;
        plan.tag
    };
    // Under the task's lock: a stop or rm cannot take the network away meanwhile.
    let _lock = lock_task(ctx, &name, "preview", events).await?;
    let loaded = reload(ctx, &name)?;
    let names = ctx.repo.object_names(&name);
    let workspace = loaded
        .record
        .sandbox
        .volume
        .clone()
        .unwrap_or(names.volume.clone());
    if workspace != names.volume
        || !crate::sandbox::owned_by(rt, &ctx.repo, &name, ObjectKind::Volume, &workspace).await?
    {
        return Err(PreviewError::NoWorkspace { task: name });
    }
    let live = matches!(loaded.record.status, Status::Running | Status::Creating);
    let task_network = match &loaded.record.sandbox.network {
        Some(n)
            if live
                && crate::sandbox::owned_by(rt, &ctx.repo, &name, ObjectKind::Network, n)
                    .await? =>
        {
            Some(n.clone())
        }
        _ => None,
    };
    let plan = PreviewPlan {
        image: req.image.clone().unwrap_or_else(|| {
            let s = &loaded.record.sandbox;
            if s.image_id.is_empty() {
                s.image.clone()
            } else {
                s.image_id.clone()
            }
        }),
        cmd,
        port: req.port,
        host_port: req.host_port.unwrap_or(req.port),
        published: req.published.clone(),
        limits: Limits::from_config(&ctx.config)?,
        door_image,
        task_network: task_network.clone(),
        task_subnet: loaded
            .record
            .sandbox
            .subnet
            .as_deref()
            .and_then(crate::runtime::subnet::Ipv4Net::parse),
        subnets: crate::sandbox::network::SubnetRange::from_config(&ctx.config)?,
        oci_runtime: loaded.record.oci_runtime.clone(),
    };
    crate::sandbox::oci::check(rt, plan.oci_runtime.as_deref()).await?;
    let url = preview::start(rt, &ctx.repo, &name, &plan).await?;
    events.emit(Event::step(
        Some(&name),
        format!("preview of {name} at {url}"),
    ));
    Ok(Started {
        task: name,
        url,
        through_gateway: task_network.is_some(),
    })
}

/// Stop and remove task `task`'s preview. Returns the task's name.
pub async fn stop<R: Runtime>(rt: &R, ctx: &Ctx, task: &str) -> Result<String, PreviewError> {
    let name = ctx.store.resolve_local(task, "preview stop")?.record.name;
    let _lock = lock_task(ctx, &name, "preview stop", &super::NoEvents).await?;
    if !preview::remove(rt, &ctx.repo, &name).await? {
        return Err(PreviewError::NoPreview { task: name });
    }
    // A run that ended while the preview was on its network could not give the network
    // back then (it was in use); it goes now.
    let loaded = reload(ctx, &name)?;
    let names = ctx.repo.object_names(&name);
    let live = matches!(loaded.record.status, Status::Running | Status::Creating);
    if !live
        && loaded.record.sandbox.network.is_none()
        && crate::sandbox::owned_by(rt, &ctx.repo, &name, ObjectKind::Network, &names.network)
            .await?
    {
        rt.remove_network(&names.network).await.ok();
    }
    Ok(name)
}

/// Copy task `task`'s preview output (the dev server's stdout and stderr, untrusted) to
/// `out`, following it when asked.
pub async fn logs<R: Runtime, W: AsyncWrite + Unpin + Send>(
    rt: &R,
    ctx: &Ctx,
    task: &str,
    follow: bool,
    out: &mut W,
) -> Result<(), PreviewError> {
    let name = ctx.store.resolve_local(task, "preview logs")?.record.name;
    if preview::state(rt, &ctx.repo, &name).await? == ContainerState::Missing {
        return Err(PreviewError::NoPreview { task: name });
    }
    let names = ctx.repo.object_names(&name);
    rt.logs(&names.preview, follow, None, out).await?;
    Ok(())
}
