//! Restart: recreate a task's container on the current image and resume its agent's
//! conversation in the workspace it has (or, asked to, in one rebuilt from its synced work).
//!
//! Owns the order of a restart: what is checked before anything changes (the agent can
//! resume, the workspace holds the task's repository), the sync before the old container
//! goes, the safe point, and the new gateway, container, warden and prompt. The crash points
//! (`restart.after-*`) mark where a killed restart can stop. `continue` runs the same steps
//! with a follow-up prompt ([`resume`], called from [`super::followup`]). It must not print
//! or touch the terminal: attaching to an interactive restart is the caller's next step.

use anyhow::Result;

use super::{Ctx, Event, Events};
use crate::agent;
use crate::data::Search;
use crate::image::{self, ImageRequest};
use crate::runtime::subnet::Ipv4Net;
use crate::runtime::{ContainerState, ObjectKind, Runtime};
use crate::sandbox::health::{self, Workspace};
use crate::sandbox::reseed::{self, Seed};
use crate::sandbox::spawn::{Limits, Process, deliver_prompt, go, sandbox_spec, supervised};
use crate::task::lock::Lease;
use crate::task::store::Loaded;
use crate::task::{Status, now};

/// What to restart, and how.
#[derive(Debug, Clone)]
pub struct RestartRequest {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Resume attached to a terminal, even if the task ran headless.
    pub interactive: bool,
    /// Rebuild the workspace from the task's last synced work first.
    pub reseed: bool,
}

/// A restarted task.
#[derive(Debug)]
pub struct Restarted {
    pub loaded: Loaded,
    /// The task runs interactively: its command waits until the caller attaches (see
    /// [`super::attach::attach`] with `start`). A headless task's command runs already.
    pub waits_for_attach: bool,
}

/// Why a restart refused or failed; nothing was changed unless the message says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("agent '{agent}' has no command to resume with")]
    NoResumeCommand { agent: String },
    #[error("task '{task}' has no workspace left (it was purged)")]
    Purged { task: String },
    #[error("task '{task}' is still being set up by its spawn")]
    StillSpawning { task: String },
    #[error(
        "cannot sync task '{task}' before rebuilding its workspace: {detail}; nothing was changed"
    )]
    SyncBeforeReseed { task: String, detail: String },
    /// `seed` says what `--reseed` would rebuild the workspace from.
    #[error(
        "task '{task}''s workspace {workspace}; restarting would start the agent without its work, so nothing was changed"
    )]
    WorkspaceUnusable {
        task: String,
        workspace: String,
        seed: String,
    },
    /// Rebuilding the workspace failed after the old container was replaced.
    #[error("{detail}")]
    Reseed { task: String, detail: String },
    /// A failure below the operation (the task's lock, the refs, the engine), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for RestartError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RestartError::NoResumeCommand { .. } => {
                "add `resume` (or `interactive`) to its definition".into()
            }
            RestartError::Purged { task } => format!(
                "its synced work is in its refs: start a new task from it with `git agent spawn --base refs/agent/{task}/head -m \"...\"`"
            ),
            RestartError::StillSpawning { task } => format!(
                "wait for the spawn to finish, then check it with `git agent status {task}`"
            ),
            RestartError::SyncBeforeReseed { task, .. } => {
                format!("`git agent restart {task}` restarts it on the workspace it has")
            }
            RestartError::WorkspaceUnusable { task, seed, .. } => format!(
                "`git agent restart --reseed {task}` rebuilds it from {seed}, or `git agent purge {task}` removes the task"
            ),
            RestartError::Reseed { task, .. } => format!(
                "run `git agent restart --reseed {task}` again; `git agent purge {task}` removes the task"
            ),
            RestartError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            RestartError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            RestartError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// What a restarted agent is told when it resumes its conversation.
const RESTART_PROMPT: &str = "Continue the task where you left off.\n";

/// Restart a task (see the module doc), waiting for a command that holds it.
pub async fn run<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    args: &RestartRequest,
    events: &dyn Events,
) -> Result<Restarted, RestartError> {
    let name = ctx.store.resolve_local(&args.task, "restart")?.record.name;
    let lock = super::lock_task(ctx, &name, "restart", events).await?;
    let loaded = super::reload(ctx, &name)?;
    resume(rt, ctx, args, None, lock, loaded, events).await
}

/// A follow-up prompt for a resumed run (`git agent continue`, see [`super::followup`]).
pub(super) struct FollowUp<'a> {
    /// What the agent is asked next; it reaches the sandbox as data (the helper's stdin).
    pub prompt: &'a str,
}

/// The restart itself, for a task whose lock the caller holds (`loaded` read under it).
/// With a follow-up, the run is headless whatever the task was, the follow-up is its
/// prompt, and it is recorded (counted in `followups`, kept as `followup-<n>.md`) in the
/// same state change that records the new run; without one, it is a restart.
pub(super) async fn resume<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    args: &RestartRequest,
    followup: Option<&FollowUp<'_>>,
    lock: crate::task::lock::TaskLock,
    loaded: Loaded,
    events: &dyn Events,
) -> Result<Restarted, RestartError> {
    let name = loaded.record.name.clone();
    let search = Search::new(&ctx.git.dir);
    let agent = agent::load(&search, &loaded.record.agent)?;
    let interactive = followup.is_none() && (args.interactive || loaded.record.interactive);
    let command = if agent.is_exec() {
        loaded.record.command.clone()
    } else if interactive {
        if agent.def.resume.is_empty() {
            agent.def.interactive.clone()
        } else {
            agent.def.resume.clone()
        }
    } else if !agent.def.resume_headless.is_empty() {
        agent.def.resume_headless.clone()
    } else {
        agent.def.headless.clone()
    };
    if command.is_empty() {
        return Err(RestartError::NoResumeCommand {
            agent: agent.name.clone(),
        });
    }
    let names = ctx.repo.object_names(&name);
    if loaded.record.sandbox.volume.is_none() {
        return Err(RestartError::Purged { task: name });
    }
    if Lease::held(&ctx.git, &name)? {
        return Err(RestartError::StillSpawning { task: name });
    }
    let plan = image::plan(&ImageRequest {
        root: &ctx.git.dir,
        config: &ctx.config,
        search: &search,
        agent: &agent,
        stack: loaded.record.stack.as_deref(),
    })?;
    // The new run gets the task's OCI runtime: refused before anything changes when the
    // engine no longer has it.
    crate::sandbox::oci::check(rt, loaded.record.oci_runtime.as_deref()).await?;
    let image_id = super::image::ensure(rt, &plan, events).await?;
    // What the engine has of the task, before anything changes.
    let found = health::check(rt, &loaded).await?;
    // Sync what the old container has before replacing it. A sync that succeeds proves the
    // workspace holds the task's branch; otherwise a look into it (see health::workspace)
    // tells an unreachable workspace from an empty one. A missing volume is never synced or
    // looked into: mounting it would make the engine create it, empty.
    // Only a running container is synced before the look: syncing a stopped one records
    // what it finds, and a restart that refuses must change nothing.
    let live = found.volume == Some(true) && found.container == Some(ContainerState::Running);
    let synced = if live {
        Some(crate::ops::sync::if_possible(rt, ctx, loaded.clone(), &lock, events).await)
    } else {
        None
    };
    let (loaded, workspace) = match synced {
        Some(Ok(l)) => (l, Workspace::Ready),
        _ if found.volume != Some(true) => (loaded, Workspace::Missing),
        other => {
            let mut probe = loaded.clone();
            probe.record.sandbox.image_id = image_id.clone();
            let workspace = health::workspace(rt, &ctx.store, &probe).await?;
            let other = match other {
                None if workspace == Workspace::Ready => Some(
                    crate::ops::sync::if_possible(rt, ctx, loaded.clone(), &lock, events)
                        .await
                        .map(|_| ()),
                ),
                Some(r) => Some(r.map(|_| ())),
                None => None,
            };
            if let Some(Err(e)) = other {
                if workspace == Workspace::Ready && args.reseed {
                    return Err(RestartError::SyncBeforeReseed {
                        detail: format!("{e:#}"),
                        task: name,
                    });
                }
                if workspace == Workspace::Ready {
                    events.emit(Event::step(
                        Some(&name),
                        format!("could not sync before restarting: {e:#}"),
                    ));
                }
            }
            (ctx.store.resolve(&name)?, workspace)
        }
    };
    if workspace != Workspace::Ready && !args.reseed {
        return Err(RestartError::WorkspaceUnusable {
            workspace: workspace.describe().to_string(),
            seed: Seed::of(&loaded).describe(),
            task: name,
        });
    }
    for problem in found.problems(loaded.record.status) {
        if problem != "workspace volume missing" {
            events.emit(Event::step(
                Some(&name),
                format!("task {name}: {problem}; the restart replaces it"),
            ));
        }
    }
    let seed = Seed::of(&loaded);
    // The last safe point: after this the old container is replaced.
    crate::interrupt::checkpoint()?;
    rt.remove_container(&names.container).await?;
    crate::crash::point("restart.after-remove");
    // A new run gets a new gateway (and new stand-in tokens) with the recorded policy.
    let loaded = crate::sandbox::gateway::retire(rt, &ctx.store, loaded, &names).await?;
    if args.reseed {
        reseed::fresh_volume(rt, &ctx.repo, &name).await?;
        crate::crash::point("restart.after-volume");
    }
    let policy = match &loaded.record.network {
        Some(p) => p.clone(),
        None => crate::egress::resolve(
            &search,
            &ctx.config,
            &crate::egress::Request::default(),
            &crate::egress::repo::load(&ctx.git.dir)?.allow,
        )?,
    };
    // A run on a spare's network (see `sandbox::spare`) leaves it behind: the new run gets
    // a network of the task's own name.
    if let Some(old) = loaded
        .record
        .sandbox
        .network
        .as_ref()
        .filter(|n| **n != names.network)
        && crate::sandbox::owned_by(rt, &ctx.repo, &name, ObjectKind::Network, old).await?
    {
        rt.remove_network(old).await?;
    }
    if loaded.record.network.is_none() {
        // A task from before egress control ran on a plain network: give it an internal one.
        rt.remove_network(&names.network).await?;
    }
    // A finished run gave its network back: the new run gets a new one (and subnet).
    let subnet = if rt.network_exists(&names.network).await? {
        loaded.record.sandbox.subnet.clone()
    } else {
        let range = crate::sandbox::network::SubnetRange::from_config(&ctx.config)?;
        let labels = ctx.repo.labels(&name);
        crate::sandbox::network::create(rt, &range, &names.network, &labels)
            .await?
            .map(|s| s.to_string())
    };
    let net = subnet.as_deref().and_then(Ipv4Net::parse);
    // The new run gets its services afresh (those of an earlier run went with it): the old
    // ones go first, so the gateway finds its fixed address free.
    let services =
        crate::sandbox::services::load(&ctx.git.dir, crate::data::user_config_dir().as_deref())?;
    crate::sandbox::services::remove(rt, &ctx.repo, &name).await?;
    let (mut env, gw_plan, gw) =
        super::setup::fresh_gateway(ctx, rt, &agent, policy, &name, net.as_ref(), events).await?;
    crate::guard::add_env(&mut env, loaded.record.git_readonly);
    let limits = Limits::from_config(&ctx.config)?;
    crate::sandbox::services::start(
        rt,
        &ctx.repo,
        &name,
        &services,
        &limits,
        &names.network,
        net.as_ref(),
    )
    .await?;
    let home = loaded.record.sandbox.home_volume.is_some();
    let spec = sandbox_spec(
        &ctx.repo,
        &name,
        Process {
            image_id: &image_id,
            cmd: supervised(&command, loaded.record.timeout, None, None),
            env: &env,
            home_volume: home,
            tty: interactive,
            read_only: loaded.record.read_only,
            cache: loaded.record.sandbox.cache.as_deref(),
            oci_runtime: loaded.record.oci_runtime.as_deref(),
            hosts: crate::sandbox::spawn::task_hosts(net.as_ref(), &services),
            address: net.as_ref().map(crate::sandbox::network::task_address),
        },
        &limits,
    );
    crate::sandbox::cache::ensure_for_task(rt, &ctx.git, &ctx.repo, &loaded, &limits, &|w| {
        events.emit(Event::warning(Some(&name), w))
    })
    .await?;
    let id = rt.create_container(&spec).await?;
    rt.start(&id).await?;
    crate::crash::point("restart.after-create");
    if args.reseed {
        reseed::deliver(rt, &ctx.git, &id, &name, &seed)
            .await
            .map_err(|e| RestartError::Reseed {
                task: name.clone(),
                detail: format!("{e:#}"),
            })?;
        crate::crash::point("restart.after-deliver");
        events.emit(Event::step(
            Some(&name),
            format!(
                "task {name}'s workspace was rebuilt from {}",
                seed.describe()
            ),
        ));
    }
    let warden = crate::sandbox::spawn::create_warden(
        rt,
        &ctx.repo,
        &name,
        &id,
        &crate::sandbox::spawn::WardenRequest {
            image: &crate::image::gateway_plan(&ctx.config)?.tag,
            disk: limits.disk,
            home_volume: home,
            state_volume: loaded.record.read_only,
            oci_runtime: loaded.record.oci_runtime.as_deref(),
        },
    )
    .await?;
    crate::sandbox::spawn::start_warden(rt, &id, warden.as_deref()).await?;
    let prompt = followup.map_or(RESTART_PROMPT, |f| f.prompt);
    deliver_prompt(rt, &id, prompt).await?;
    // The n-th follow-up is kept beside the original prompt, under the task's lock.
    let number = loaded.record.followups + 1;
    let file = format!("followup-{number}.md");
    let files: Vec<(&str, &[u8])> = match followup {
        Some(f) => vec![(file.as_str(), f.prompt.as_bytes())],
        None => vec![],
    };
    let message = if followup.is_some() {
        format!("continue (follow-up {number})")
    } else {
        "restart".to_string()
    };
    let loaded = ctx.store.update_files(&name, &message, &files, |r, _| {
        r.status = Status::Running;
        r.exit_code = None;
        r.reason = None;
        r.finished = None;
        r.started = Some(now());
        r.interactive = interactive;
        if followup.is_some() {
            r.followups = number;
        } else {
            r.restarts += 1;
        }
        r.sandbox.container = Some(id.clone());
        r.sandbox.image = plan.tag.clone();
        r.sandbox.image_id = image_id.clone();
        r.sandbox.gateway = Some(gw.clone());
        r.sandbox.network = Some(names.network.clone());
        r.sandbox.subnet = subnet.clone();
        r.network = Some(gw_plan.policy.clone());
        Ok(vec![])
    })?;
    // The task is set up: other commands may change it again while it runs.
    drop(lock);
    if !interactive {
        go(rt, &id).await?;
        super::follow::start_quietly(ctx, &name, events);
    }
    Ok(Restarted {
        loaded,
        waits_for_attach: interactive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_render_what_was_kept_and_the_fix() {
        let e: anyhow::Error = RestartError::NoResumeCommand {
            agent: "mine".into(),
        }
        .into();
        assert_eq!(
            crate::error::render(&e),
            [
                "Error: agent 'mine' has no command to resume with",
                "Hint: add `resume` (or `interactive`) to its definition",
            ]
        );
        let e: anyhow::Error = RestartError::SyncBeforeReseed {
            task: "fix".into(),
            detail: "exit 3".into(),
        }
        .into();
        assert_eq!(
            crate::error::render(&e),
            [
                "Error: cannot sync task 'fix' before rebuilding its workspace: exit 3; nothing was changed",
                "Hint: `git agent restart fix` restarts it on the workspace it has",
            ]
        );
    }
}
