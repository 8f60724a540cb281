//! `git agent attach` and `git agent restart`: interactive sessions and resuming them.

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine, out};
use crate::agent;
use crate::data::Search;
use crate::error::hinted;
use crate::image::{self, ImageRequest};
use crate::runtime::{ContainerState, Runtime};
use crate::sandbox::health::{self, Workspace};
use crate::sandbox::reseed::{self, Seed};
use crate::sandbox::spawn::{Limits, Process, deliver_prompt, go, sandbox_spec, supervised};
use crate::task::lock::Lease;
use crate::task::store::Loaded;
use crate::task::{Status, now};

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

/// Attach to a task's container; `ready` runs once attached (e.g. starting the agent).
pub async fn attach_to<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    loaded: &Loaded,
    ready: impl std::future::Future<Output = Result<()>> + Send,
) -> Result<i32> {
    let name = loaded.record.name.clone();
    let container = loaded.record.sandbox.container.clone().ok_or_else(|| {
        hinted(
            format!("task '{name}' has no container"),
            format!("start it again with `git agent restart {name}`"),
        )
    })?;
    if !loaded.record.interactive {
        return Err(hinted(
            format!("task '{name}' runs headless; there is no session to attach to"),
            format!(
                "follow its output with `git agent logs -f {name}`, or resume it interactively with `git agent restart -i {name}`"
            ),
        ));
    }
    if rt.state(&container).await? != ContainerState::Running {
        return Err(hinted(
            format!("task '{name}' is not running"),
            format!("resume its session with `git agent restart {name}`"),
        ));
    }
    {
        // Raw only while attached: what follows is ordinary output.
        let (_raw, terminal) = crate::cli::term::session()?;
        rt.attach_terminal(&container, terminal, ready).await?;
    }
    match rt.state(&container).await? {
        ContainerState::Running => {
            eprintln!(
                "\r\ngit-agent: detached from {name}; reattach with `git agent attach {name}`"
            );
            Ok(0)
        }
        _ => {
            let l = crate::sandbox::refresh(rt, &ctx.store, ctx.store.resolve(&name)?).await?;
            let code = l.record.exit_code.unwrap_or(0);
            eprintln!("\r\ngit-agent: task {name} ended (status {code})");
            Ok(code.clamp(0, 255) as i32)
        }
    }
}

pub async fn run_attach(args: AttachArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded = ctx.store.resolve(&args.task)?;
    let rt = engine().await?;
    attach_to(&rt, &ctx, &loaded, async { Ok(()) }).await
}

pub async fn run_restart(args: RestartArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let name = ctx.store.resolve(&args.task)?.record.name;
    let lock = super::lock_task(&ctx, &name, "restart").await?;
    let loaded = super::reload(&ctx, &name)?;
    let search = Search::new(&ctx.git.dir);
    let agent = agent::load(&search, &loaded.record.agent)?;
    let interactive = args.interactive || loaded.record.interactive;
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
        return Err(hinted(
            format!("agent '{}' has no command to resume with", agent.name),
            "add `resume` (or `interactive`) to its definition",
        ));
    }
    let rt = engine().await?;
    let names = ctx.repo.object_names(&name);
    if loaded.record.sandbox.volume.is_none() {
        return Err(hinted(
            format!("task '{name}' has no workspace left (it was purged)"),
            format!(
                "its synced work is in its refs: start a new task from it with `git agent spawn --base refs/agent/{name}/head -m \"...\"`"
            ),
        ));
    }
    if Lease::held(&ctx.git, &name)? {
        return Err(hinted(
            format!("task '{name}' is still being set up by its spawn"),
            format!("wait for the spawn to finish, then check it with `git agent status {name}`"),
        ));
    }
    let plan = image::plan(&ImageRequest {
        root: &ctx.git.dir,
        config: &ctx.config,
        search: &search,
        agent: &agent,
        stack: loaded.record.stack.as_deref(),
    })?;
    let image_id = super::image::ensure(&rt, &plan).await?;
    // What the engine has of the task, before anything changes.
    let found = health::check(&rt, &loaded).await?;
    // Sync what the old container has before replacing it. A sync that succeeds proves the
    // workspace holds the task's branch; otherwise a look into it (see health::workspace)
    // tells an unreachable workspace from an empty one. A missing volume is never synced or
    // looked into: mounting it would make the engine create it, empty.
    // Only a running container is synced before the look: syncing a stopped one records
    // what it finds, and a restart that refuses must change nothing.
    let live = found.volume == Some(true) && found.container == Some(ContainerState::Running);
    let synced = if live {
        Some(crate::ops::sync::if_possible(&rt, &ctx, loaded.clone(), &lock, &super::Stderr).await)
    } else {
        None
    };
    let (loaded, workspace) = match synced {
        Some(Ok(l)) => (l, Workspace::Ready),
        _ if found.volume != Some(true) => (loaded, Workspace::Missing),
        other => {
            let mut probe = loaded.clone();
            probe.record.sandbox.image_id = image_id.clone();
            let workspace = health::workspace(&rt, &ctx.store, &probe).await?;
            let other = match other {
                None if workspace == Workspace::Ready => Some(
                    crate::ops::sync::if_possible(&rt, &ctx, loaded.clone(), &lock, &super::Stderr)
                        .await
                        .map(|_| ()),
                ),
                Some(r) => Some(r.map(|_| ())),
                None => None,
            };
            if let Some(Err(e)) = other {
                if workspace == Workspace::Ready && args.reseed {
                    return Err(hinted(
                        format!(
                            "cannot sync task '{name}' before rebuilding its workspace: {e:#}; nothing was changed"
                        ),
                        format!("`git agent restart {name}` restarts it on the workspace it has"),
                    ));
                }
                if workspace == Workspace::Ready {
                    eprintln!("git-agent: could not sync before restarting: {e:#}");
                }
            }
            (ctx.store.resolve(&name)?, workspace)
        }
    };
    if workspace != Workspace::Ready && !args.reseed {
        return Err(hinted(
            format!(
                "task '{name}''s workspace {}; restarting would start the agent without its work, so nothing was changed",
                workspace.describe()
            ),
            format!(
                "`git agent restart --reseed {name}` rebuilds it from {}, or `git agent purge {name}` removes the task",
                Seed::of(&loaded).describe()
            ),
        ));
    }
    for problem in found.problems(loaded.record.status) {
        if problem != "workspace volume missing" {
            eprintln!("git-agent: task {name}: {problem}; the restart replaces it");
        }
    }
    let seed = Seed::of(&loaded);
    // The last safe point: after this the old container is replaced.
    crate::interrupt::checkpoint()?;
    rt.remove_container(&names.container).await?;
    crate::crash::point("restart.after-remove");
    // A new run gets a new gateway (and new stand-in tokens) with the recorded policy.
    let loaded = crate::sandbox::gateway::retire(&rt, &ctx.store, loaded, &names).await?;
    if args.reseed {
        reseed::fresh_volume(&rt, &ctx.repo, &name).await?;
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
    if loaded.record.network.is_none() {
        // A task from before egress control ran on a plain network: give it an internal one.
        rt.remove_network(&names.network).await?;
    }
    if !rt.network_exists(&names.network).await? {
        rt.create_network(&names.network, &ctx.repo.labels(&name), true)
            .await?;
    }
    let (mut env, gw_plan, gw) =
        super::spawn::fresh_gateway(&ctx, &rt, &agent, policy, &name).await?;
    crate::guard::add_env(&mut env, loaded.record.git_readonly);
    let limits = Limits::from_config(&ctx.config)?;
    let home = loaded.record.sandbox.home_volume.is_some();
    let spec = sandbox_spec(
        &ctx.repo,
        &name,
        Process {
            image_id: &image_id,
            cmd: supervised(&command, loaded.record.timeout),
            env: &env,
            home_volume: home,
            tty: interactive,
            read_only: loaded.record.read_only,
        },
        &limits,
    );
    let id = rt.create_container(&spec).await?;
    rt.start(&id).await?;
    crate::crash::point("restart.after-create");
    if args.reseed {
        reseed::deliver(&rt, &ctx.git, &id, &name, &seed)
            .await
            .map_err(|e| {
                hinted(
                    format!("{e:#}"),
                    format!("run `git agent restart --reseed {name}` again; `git agent purge {name}` removes the task"),
                )
            })?;
        crate::crash::point("restart.after-deliver");
        eprintln!(
            "git-agent: task {name}'s workspace was rebuilt from {}",
            seed.describe()
        );
    }
    let warden = crate::sandbox::spawn::create_warden(
        &rt,
        &ctx.repo,
        &name,
        &id,
        &crate::sandbox::spawn::WardenRequest {
            image: &crate::image::gateway_plan(&ctx.config)?.tag,
            disk: limits.disk,
            home_volume: home,
            state_volume: loaded.record.read_only,
        },
    )
    .await?;
    crate::sandbox::spawn::start_warden(&rt, &id, warden.as_deref()).await?;
    deliver_prompt(&rt, &id, "Continue the task where you left off.\n").await?;
    let loaded = ctx.store.update(&name, "restart", |r, _| {
        r.status = Status::Running;
        r.exit_code = None;
        r.reason = None;
        r.finished = None;
        r.started = Some(now());
        r.interactive = interactive;
        r.restarts += 1;
        r.sandbox.container = Some(id.clone());
        r.sandbox.image = plan.tag.clone();
        r.sandbox.image_id = image_id.clone();
        r.sandbox.gateway = Some(gw.clone());
        r.network = Some(gw_plan.policy.clone());
        Ok(vec![])
    })?;
    out(&name)?;
    // The task is set up: other commands may change it again while it runs.
    drop(lock);
    if interactive {
        return attach_to(&rt, &ctx, &loaded, go(&rt, &id)).await;
    }
    go(&rt, &id).await?;
    eprintln!("git-agent: task {name} restarted; follow it with `git agent logs -f {name}`");
    Ok(0)
}
