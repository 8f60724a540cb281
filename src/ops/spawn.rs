//! Spawn: start one task per agent in new sandboxes, and optionally wait for them.
//!
//! A spawn runs in three steps so that a caller can act between them without this module
//! touching the terminal: [`agents`] loads and checks the agents (before the prompt is
//! read), [`prepare`] decides everything that needs no engine (names, base, prompts, gateway
//! plans, images; nothing is created but a `--dirty` commit object), the caller may edit
//! [`Prepared::prompts_mut`], and [`start`] creates the tasks, all or nothing. [`wait`]
//! follows them to their end. Attaching to an interactive task is [`super::attach`].
//!
//! Owns the order of task creation: the lease taken before any ref, the refs before any
//! engine object, the crash points `spawn.after-refs` / `spawn.after-running` (the others
//! are in [`crate::sandbox::spawn`]), and removing a whole group when one member fails.
//! It must not print, prompt or read the terminal: steps go out as events.

use std::io::Read;

use anyhow::{Context, Result};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::setup::{self, NetworkChoice};
use super::{Ctx, Event, Events};
use crate::agent::{self, Agent};
use crate::data::{PROMPTS, Search};
use crate::error::Interrupted;
use crate::git::Git;
use crate::image::{self, ImagePlan, ImageRequest};
use crate::runtime::Runtime;
use crate::sandbox::gateway::GatewayPlan;
use crate::sandbox::spawn::{Limits, StartRequest, abandon, create_record};
use crate::task::lock::Lease;
use crate::task::store::Loaded;
use crate::task::{Status, TaskName, branch_name};
use crate::template::{self, PromptTemplate, PromptVars};

/// Why a spawn refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("the exec agent needs a command to run")]
    ExecNeedsCommand,
    #[error("a command after `--` is only for the exec agent, not '{agent}'")]
    CommandOnlyForExec { agent: String },
    #[error("agent '{agent}' has no interactive command")]
    NoInteractiveCommand { agent: String },
    #[error("-i attaches one terminal, so it takes one agent")]
    InteractiveTakesOneAgent,
    #[error("unknown template '{template}'")]
    UnknownTemplate { template: String },
    #[error("a template needs a description of the task")]
    TemplateNeedsDescription,
    #[error("the repository has no commits yet")]
    NoCommits,
    #[error("a task named '{task}' already exists")]
    TaskExists { task: String },
    /// Another live spawn holds the task's lease: it is creating a task of that name.
    #[error("cannot create task '{task}': {detail}")]
    BeingCreated { task: String, detail: String },
    /// The spawn failed and removing what it created failed too for `kept`.
    #[error("spawn failed ({detail}), and removing task(s) {} failed too", kept.join(" "))]
    CleanupFailed { detail: String, kept: Vec<String> },
    /// A queued task a worker claimed could not start; it is kept, recorded as failed.
    #[error("queued task '{task}' could not start (it is kept, recorded as failed): {detail}")]
    QueuedFailed { task: String, detail: String },
    /// The spawn failed for a reason that names no fix; everything it made was removed.
    #[error("spawn failed; nothing of it was kept: {detail}")]
    Failed { detail: String },
    /// A failure below the operation (the agents, the refs, the engine), as it came: one
    /// that names its own fix, or a Ctrl-C.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for SpawnError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            SpawnError::ExecNeedsCommand => {
                "put it after `--`: git agent spawn -m \"what to do\" -- sh -c 'make test'".into()
            }
            SpawnError::CommandOnlyForExec { .. } => "drop the command, or use --agent exec".into(),
            SpawnError::NoInteractiveCommand { .. } => "run it headless (without -i)".into(),
            SpawnError::InteractiveTakesOneAgent => {
                "start the others headless, or one at a time".into()
            }
            SpawnError::UnknownTemplate { .. } => {
                "see the templates with `git agent template list`".into()
            }
            SpawnError::TemplateNeedsDescription => "pass it with -m \"...\" or -F <file>".into(),
            SpawnError::NoCommits => "commit something first; the task starts from a commit".into(),
            SpawnError::TaskExists { task } => format!(
                "choose another --name, or remove the old task with `git agent purge --refs {task}`"
            ),
            SpawnError::BeingCreated { .. } => {
                "wait for that spawn to finish (`git agent list` shows it), or choose another --name".into()
            }
            SpawnError::CleanupFailed { .. } => DOCTOR_FIX.into(),
            SpawnError::QueuedFailed { task, .. } => format!(
                "see why with `git agent status {task}`; run it again with `git agent retry {task}` once `git agent doctor` finds nothing wrong"
            ),
            SpawnError::Failed { .. } => {
                "`git agent doctor` checks the engine and lists leftovers holding its networks, volumes and containers; fix what it reports, then spawn again".into()
            }
            SpawnError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            SpawnError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            SpawnError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

const DOCTOR_FIX: &str = "`git agent doctor --fix` finds and removes what the spawn left behind";

/// What to spawn, once the agents are chosen (see [`agents`]) and the prompt is read.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    /// The agents, one task each (from [`agents`]).
    pub agents: Vec<Agent>,
    /// What the `exec` agent runs.
    pub command: Vec<String>,
    /// The prompt as the user gave it (the description, with a template).
    pub description: String,
    /// A prompt template the description fills in.
    pub template: Option<String>,
    /// The task's name; with several agents, the group's. Generated when none.
    pub name: Option<String>,
    /// Start from this revision instead of HEAD.
    pub base: Option<String>,
    /// Carry the work tree's uncommitted changes in as one commit.
    pub dirty: bool,
    /// Language stack of the image (default: agent.stack, else detected).
    pub stack: Option<String>,
    /// Stop the run after this many seconds.
    pub timeout: Option<u64>,
    /// The task's command waits for the caller to attach a terminal.
    pub interactive: bool,
    pub network: NetworkChoice,
    /// A read-only root file system (else agent.readOnlyRoot).
    pub read_only: bool,
    /// The read-only git guards on or off (else agent.gitReadOnly).
    pub git_readonly: Option<bool>,
    /// The engine's OCI runtime for the tasks' code (else agent.ociRuntime; see
    /// [`crate::sandbox::oci`]).
    pub oci_runtime: Option<String>,
}

/// A spawn decided but not started: nothing is created yet.
pub struct Prepared {
    agents: Vec<Agent>,
    names: Vec<TaskName>,
    group: TaskName,
    prompts: Vec<String>,
    /// The template recorded with the tasks (a retry records its old task's, its prompt
    /// already rendered).
    pub(super) template: Option<String>,
    plans: Vec<ImagePlan>,
    gateways: Vec<(Vec<String>, GatewayPlan)>,
    command: Vec<String>,
    base: String,
    pub(super) base_branch: Option<String>,
    pub(super) dirty: bool,
    timeout: Option<u64>,
    interactive: bool,
    read_only: bool,
    git_readonly: bool,
    /// The OCI runtime chosen (a name; checked against the engine's when the spawn starts).
    oci_runtime: Option<String>,
    /// Set when this starts a queued task that a worker has claimed (see [`super::queue`]):
    /// the worker's lease and the task's group.
    claimed: Option<(Lease, Option<String>)>,
    /// The task these retry (`git agent retry`), recorded with them at creation.
    pub(super) retry_of: Option<String>,
    /// The engine the tasks go to, by name (see [`super::placement`]); `None`: the
    /// environment's.
    pub engine: Option<String>,
}

impl Prepared {
    /// The tasks the spawn will create, in order.
    pub fn names(&self) -> &[TaskName] {
        &self.names
    }

    /// Each task's prompt (rendered from the template, if any), for the caller to change
    /// before [`start`].
    pub fn prompts_mut(&mut self) -> &mut [String] {
        &mut self.prompts
    }
}

/// Tasks that were started, in order.
#[derive(Debug)]
pub struct SpawnResult {
    pub tasks: Vec<Loaded>,
    /// The (one) task is interactive: its command waits until the caller attaches (see
    /// [`super::attach::attach`] with `start`).
    pub waits_for_attach: bool,
}

/// What [`wait`] saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Waited {
    /// Each task that ended and its exit status, in order.
    pub exits: Vec<(String, i64)>,
    /// The caller was interrupted (Ctrl-C) while waiting; the tasks keep running.
    pub interrupted: bool,
}

impl Waited {
    /// The process exit code a waiting command ends with: 130 when interrupted, else the
    /// first task's non-zero status (0..=255), else 0.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            return 130;
        }
        self.exits
            .iter()
            .map(|(_, c)| (*c).clamp(0, 255) as i32)
            .find(|c| *c != 0)
            .unwrap_or(0)
    }
}

/// Load the agents a spawn names (comma-separated entries; none: `exec` when a command is
/// given, else agent.defaultAgent, else claude) and check that they can run as asked.
/// Refuses a shallow clone first: a task's work could never come back to it.
pub fn agents(
    ctx: &Ctx,
    names: &[String],
    command: &[String],
    interactive: bool,
) -> Result<Vec<Agent>, SpawnError> {
    // Before any ref or engine object: a shallow clone's task could never send work back.
    ctx.git.require_full_history()?;
    let search = Search::new(&ctx.git.dir);
    let names: Vec<String> = if !names.is_empty() {
        names.iter().map(|a| a.trim().to_string()).collect()
    } else if !command.is_empty() {
        vec!["exec".into()]
    } else {
        vec![super::image::default_agent(ctx)]
    };
    let agents: Vec<Agent> = names
        .iter()
        .map(|n| agent::load(&search, n))
        .collect::<Result<_>>()?;
    for a in &agents {
        if a.is_exec() && command.is_empty() {
            return Err(SpawnError::ExecNeedsCommand);
        }
        if !a.is_exec() && !command.is_empty() {
            return Err(SpawnError::CommandOnlyForExec {
                agent: a.name.clone(),
            });
        }
        if interactive && !a.is_exec() && a.def.interactive.is_empty() {
            return Err(SpawnError::NoInteractiveCommand {
                agent: a.name.clone(),
            });
        }
    }
    if interactive && agents.len() > 1 {
        return Err(SpawnError::InteractiveTakesOneAgent);
    }
    Ok(agents)
}

/// Decide everything a spawn needs before the engine: the template, the base (with
/// `--dirty`, a commit of the uncommitted changes on it), the task names (refused when
/// taken), the gateway plans, the prompts and the images. A refused or unrenderable
/// repository file stops the spawn here, with nothing created.
pub fn prepare(ctx: &Ctx, req: SpawnRequest, events: &dyn Events) -> Result<Prepared, SpawnError> {
    prepare_for(ctx, req, true, events)
}

/// [`prepare`]; `new_names` refuses names of existing tasks (a claimed queued task exists).
fn prepare_for(
    ctx: &Ctx,
    req: SpawnRequest,
    new_names: bool,
    events: &dyn Events,
) -> Result<Prepared, SpawnError> {
    let search = Search::new(&ctx.git.dir);
    let template = match &req.template {
        Some(t) => Some(template::parse(&search.find(PROMPTS, t)?.ok_or_else(
            || SpawnError::UnknownTemplate {
                template: t.clone(),
            },
        )?)?),
        None => None,
    };
    if template.is_some() && req.description.trim().is_empty() {
        return Err(SpawnError::TemplateNeedsDescription);
    }
    let base_rev = req.base.clone().unwrap_or_else(|| "HEAD".into());
    let mut base = ctx.git.resolve_commit(&base_rev).map_err(|e| {
        if req.base.is_none() {
            SpawnError::NoCommits
        } else {
            SpawnError::Other(e)
        }
    })?;
    let base_branch = match &req.base {
        None => ctx.git.current_branch(),
        Some(b) => ctx
            .git
            .ref_value(&format!("refs/heads/{b}"))?
            .map(|_| b.clone()),
    };
    let group = match &req.name {
        Some(n) => TaskName::parse(n)?,
        None => TaskName::generate(&req.description, random_u16()),
    };
    let agent_names: Vec<String> = req.agents.iter().map(|a| a.name.clone()).collect();
    let names: Vec<TaskName> = task_names(group.as_str(), &agent_names)
        .iter()
        .map(|n| TaskName::parse(n))
        .collect::<Result<_>>()?;
    for n in names.iter().filter(|_| new_names) {
        if ctx.store.load(n.as_str())?.is_some() {
            return Err(SpawnError::TaskExists {
                task: n.to_string(),
            });
        }
    }
    let gateways: Vec<(Vec<String>, GatewayPlan)> = req
        .agents
        .iter()
        .map(|a| setup::gateway_plan(ctx, &search, a, &req.network, events))
        .collect::<Result<_, setup::SetupError>>()?;
    let read_only = setup::read_only_root(ctx, req.read_only)?;
    let mut dirty = false;
    if req.dirty {
        if let Some(c) = dirty_commit(&ctx.git, &base)? {
            base = c;
            dirty = true;
        } else {
            events.emit(Event::step(
                None,
                format!("--dirty: no uncommitted changes; starting from {base_rev}"),
            ));
        }
    }
    let prompts = render_prompts(ctx, &req, template.as_ref(), &names, &base, &base_branch)?;

    // Compose every image before touching the engine: a refused or unrenderable repository
    // file stops the spawn with nothing created.
    let plans: Vec<ImagePlan> = req
        .agents
        .iter()
        .map(|agent| {
            image::plan(&ImageRequest {
                root: &ctx.git.dir,
                config: &ctx.config,
                search: &search,
                agent,
                stack: req.stack.as_deref(),
            })
        })
        .collect::<Result<_>>()?;
    for line in setup::repository_files(ctx, &search, &req.agents, template.as_ref(), &plans)? {
        events.emit(Event::step(None, format!("using {line}")));
    }
    let git_readonly = crate::guard::enabled(req.git_readonly, &ctx.config)?;
    let oci_runtime = crate::sandbox::oci::choose(req.oci_runtime.as_deref(), &ctx.config)?;
    Ok(Prepared {
        agents: req.agents,
        names,
        group,
        prompts,
        template: req.template,
        plans,
        gateways,
        command: req.command,
        base,
        base_branch,
        dirty,
        timeout: req.timeout,
        interactive: req.interactive,
        read_only,
        git_readonly,
        oci_runtime,
        claimed: None,
        retry_of: None,
        engine: None,
    })
}

/// Prepare the start of a queued task that this process claimed, holding its `lease`: the
/// record's agent, command, pinned base, rendered prompt and queued options, checked again
/// as a spawn checks them (a repository file may have changed since it was added).
pub fn prepare_claimed(
    ctx: &Ctx,
    loaded: &Loaded,
    lease: Lease,
    events: &dyn Events,
) -> Result<Prepared, SpawnError> {
    let r = &loaded.record;
    let q = r.queue.clone().unwrap_or_default();
    let request = SpawnRequest {
        agents: agents(ctx, std::slice::from_ref(&r.agent), &r.command, false)?,
        command: r.command.clone(),
        description: q.description.clone(),
        template: r.template.clone(),
        name: Some(r.name.clone()),
        base: Some(r.base.clone()),
        dirty: false,
        stack: q.stack.clone(),
        timeout: r.timeout,
        interactive: false,
        network: NetworkChoice {
            profile: q.profile.clone(),
            allow: q.allow.clone(),
            allow_address: q.allow_address.clone(),
        },
        read_only: q.read_only,
        git_readonly: q.git_readonly,
        oci_runtime: q.oci_runtime.clone(),
    };
    let mut p = prepare_for(ctx, request, false, events)?;
    p.prompts = vec![r.prompt.clone()];
    p.base_branch = r.base_branch.clone();
    p.dirty = r.dirty;
    p.claimed = Some((lease, r.group.clone()));
    Ok(p)
}

/// The records `git agent add` writes for a prepared spawn: one `queued` task per agent,
/// with the base pinned and the prompt rendered (see [`super::queue::add`]).
pub fn queued_records(
    p: &Prepared,
    spawn: &crate::task::queue::QueuedSpawn,
    after: Option<&str>,
) -> Vec<crate::task::TaskRecord> {
    let group = (p.names.len() > 1).then(|| p.group.to_string());
    p.agents
        .iter()
        .zip(&p.names)
        .zip(&p.prompts)
        .map(|((agent, name), prompt)| crate::task::TaskRecord {
            name: name.to_string(),
            agent: agent.name.clone(),
            command: if agent.is_exec() {
                p.command.clone()
            } else {
                Vec::new()
            },
            base: p.base.clone(),
            base_branch: p.base_branch.clone(),
            dirty: p.dirty,
            status: Status::Queued,
            created: crate::task::now(),
            template: p.template.clone(),
            stack: spawn.stack.clone(),
            timeout: p.timeout,
            group: group.clone(),
            read_only: p.read_only,
            git_readonly: p.git_readonly,
            oci_runtime: p.oci_runtime.clone(),
            prompt: prompt.clone(),
            queue: Some(spawn.clone()),
            after: after.map(str::to_string),
            ..Default::default()
        })
        .collect()
}

/// Each task's prompt: the description, or the template filled in for that task.
fn render_prompts(
    ctx: &Ctx,
    req: &SpawnRequest,
    template: Option<&PromptTemplate>,
    names: &[TaskName],
    base: &str,
    base_branch: &Option<String>,
) -> Result<Vec<String>> {
    let Some(t) = template else {
        return Ok(vec![req.description.clone(); names.len()]);
    };
    let repository = ctx
        .git
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    names
        .iter()
        .map(|n| {
            template::render(
                t,
                &PromptVars {
                    description: req.description.clone(),
                    repository: repository.clone(),
                    base: base.to_string(),
                    base_branch: base_branch.clone().unwrap_or_default(),
                    branch: branch_name(n.as_str()),
                    task: n.to_string(),
                },
            )
        })
        .collect()
}

/// Create and start the prepared tasks: images built when missing, each task's lease taken,
/// its refs written, its sandbox started. All or nothing: when one fails, every task of the
/// spawn is removed again.
pub async fn start<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    prepared: Prepared,
    events: &dyn Events,
) -> Result<SpawnResult, SpawnError> {
    // A services file that asks for too much is refused before the engine is asked anything.
    let services =
        crate::sandbox::services::load(&ctx.git.dir, crate::data::user_config_dir().as_deref())?;
    let mut p = prepared;
    // An OCI runtime the engine does not have is refused before anything is made.
    crate::sandbox::oci::check(rt, p.oci_runtime.as_deref()).await?;
    let claimed = p.claimed.take();
    let limits = Limits::from_config(&ctx.config)?;
    let subnets = crate::sandbox::network::SubnetRange::from_config(&ctx.config)?;
    let gateway_image =
        super::image::ensure(rt, &image::gateway_plan(&ctx.config)?, events).await?;
    let outer_network = crate::sandbox::gateway::outer_network(&ctx.config);
    let group = match &claimed {
        Some((_, group)) => group.clone(),
        None => (p.names.len() > 1).then(|| p.group.to_string()),
    };
    let object_cache = crate::sandbox::cache::enabled(&ctx.config)?;
    let spare = crate::sandbox::spare::enabled(&ctx.config)?;
    let mut requests = Vec::new();
    for ((((agent, name), prompt), (env, gateway)), plan) in p
        .agents
        .iter()
        .zip(&p.names)
        .zip(p.prompts)
        .zip(p.gateways)
        .zip(p.plans)
    {
        let image_id = super::image::ensure(rt, &plan, events).await?;
        let command = if agent.is_exec() {
            p.command.clone()
        } else if p.interactive {
            agent.def.interactive.clone()
        } else {
            agent.def.headless.clone()
        };
        let mut env = env;
        crate::guard::add_env(&mut env, p.git_readonly);
        requests.push(StartRequest {
            engine: p.engine.clone(),
            name: name.clone(),
            agent: agent.name.clone(),
            command,
            env,
            prompt,
            template: p.template.clone(),
            stack: plan.stack.clone(),
            timeout: p.timeout,
            interactive: p.interactive,
            group: group.clone(),
            home_volume: !agent.is_exec(),
            base: p.base.clone(),
            base_branch: p.base_branch.clone(),
            dirty: p.dirty,
            image: plan.tag.clone(),
            image_id,
            limits: limits.clone(),
            subnets,
            gateway,
            gateway_image: gateway_image.clone(),
            outer_network: outer_network.clone(),
            read_only: p.read_only,
            git_readonly: p.git_readonly,
            object_cache,
            spare,
            retry_of: p.retry_of.clone(),
            services: services.clone(),
            oci_runtime: p.oci_runtime.clone(),
        });
    }

    // Each task's lease is held from before its refs are written until it runs or is removed
    // again: a `creating` task whose lease is free was left by a spawn that died.
    let queued = claimed.is_some();
    let leases = match claimed {
        Some((lease, _)) => vec![lease],
        None => take_leases(ctx, &p.names)?,
    };
    let mut started = Vec::new();
    for req in &requests {
        if queued {
            super::queue::record_start(ctx, req)?;
        } else {
            create_record(&ctx.store, req, &ctx.repo)?;
        }
        crate::crash::point("spawn.after-refs");
        match crate::sandbox::spawn::start(
            rt,
            &ctx.store,
            req,
            &ctx.repo,
            &|w| events.emit(Event::warning(Some(req.name.as_str()), w)),
            events,
        )
        .await
        {
            Ok(l) => {
                crate::crash::point("spawn.after-running");
                started.push(l)
            }
            Err(e) if queued => {
                // A queued task stays, recorded as failed, with what went wrong.
                super::queue::record_failed_start(rt, ctx, req.name.as_str(), &e).await;
                drop(leases);
                if e.downcast_ref::<Interrupted>().is_some() {
                    return Err(SpawnError::Other(e));
                }
                return Err(SpawnError::QueuedFailed {
                    task: req.name.to_string(),
                    detail: format!("{e:#}"),
                });
            }
            Err(e) => {
                // All or nothing: a group whose member failed is removed entirely.
                let mut kept = Vec::new();
                for r in requests.iter().take(started.len() + 1) {
                    if e.downcast_ref::<Interrupted>().is_none() {
                        events.emit(Event::step(
                            Some(r.name.as_str()),
                            format!("spawn failed; removing task {}", r.name),
                        ));
                    }
                    if let Err(c) = abandon(rt, &ctx.store, &ctx.repo, r.name.as_str()).await {
                        events.emit(Event::step(
                            Some(r.name.as_str()),
                            format!("cleanup of task {} failed too: {c:#}", r.name),
                        ));
                        kept.push(r.name.to_string());
                    }
                }
                drop(leases);
                return Err(spawn_failed(e, kept, events));
            }
        }
    }
    drop(leases);
    // A headless task's work comes home by itself while it runs (an interactive one's once
    // its command starts: see [`super::attach::start_command`]).
    if !p.interactive {
        for l in &started {
            super::follow::start_quietly(ctx, &l.record.name, events);
        }
    }
    Ok(SpawnResult {
        tasks: started,
        waits_for_attach: p.interactive,
    })
}

/// Wait for started tasks to end, in order, recording how each ended. A single task's
/// output is followed into `output` (ended with a newline, so what comes next starts a
/// line). Ctrl-C stops the waiting, not the tasks.
pub async fn wait<R: Runtime, W: AsyncWrite + Unpin + Send>(
    rt: &R,
    ctx: &Ctx,
    tasks: Vec<Loaded>,
    output: &mut W,
    events: &dyn Events,
) -> Result<Waited, SpawnError> {
    let single = tasks.len() == 1;
    let mut waited = Waited::default();
    let mut output = LastByte {
        out: output,
        last: b'\n',
    };
    for l in tasks {
        let name = l.record.name.clone();
        let container = l
            .record
            .sandbox
            .container
            .clone()
            .expect("a started task has a container");
        let follow = async {
            if single {
                rt.logs(&container, true, None, &mut output).await?;
                if output.last != b'\n' {
                    output.write_all(b"\n").await?;
                }
                output.flush().await?;
            }
            rt.wait(&container).await
        };
        let code = match crate::interrupt::abandon_on_interrupt(follow).await {
            Ok(code) => code,
            Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
                events.emit(Event::step(None, "stopped waiting; the tasks keep running"));
                waited.interrupted = true;
                return Ok(waited);
            }
            Err(e) => return Err(e.into()),
        };
        // Recorded under the task's lock: the run's end gives back its gateway and network,
        // which a command working on the task meanwhile (a restart) may have made anew.
        let lock = super::lock_task(ctx, &name, "spawn --wait", events).await?;
        let Some(current) = ctx.store.load(&name)? else {
            waited.exits.push((name, code));
            continue;
        };
        let loaded = crate::sandbox::refresh(rt, &ctx.store, current).await?;
        drop(lock);
        if loaded.record.status == Status::Exited {
            let stats = loaded
                .record
                .stats
                .as_ref()
                .map(|s| format!(" ({})", s.summary()))
                .unwrap_or_default();
            let why = loaded
                .record
                .reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            events.emit(Event::step(
                Some(&name),
                format!("task {name} exited with status {code}{why}{stats}"),
            ));
        }
        waited.exits.push((name, code));
    }
    Ok(waited)
}

/// Task names for a spawn: one agent gets `name`; several get `<name>-<agent>`, numbered
/// when an agent repeats.
pub fn task_names(base: &str, agents: &[String]) -> Vec<String> {
    if agents.len() == 1 {
        return vec![base.to_string()];
    }
    agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let repeats = agents.iter().filter(|x| *x == a).count() > 1;
            if repeats {
                let n = agents[..=i].iter().filter(|x| *x == a).count();
                format!("{base}-{a}-{n}")
            } else {
                format!("{base}-{a}")
            }
        })
        .collect()
}

/// Commit the work tree's uncommitted changes (tracked and untracked, not ignored) on top of
/// `base` through a temporary index; the user's index and work tree are left as they are.
fn dirty_commit(git: &Git, base: &str) -> Result<Option<String>> {
    let tmp = tempfile::NamedTempFile::new()?;
    let index = git.run(["rev-parse", "--git-path", "index"])?;
    let index = git.dir.join(index);
    if index.exists() {
        std::fs::copy(&index, tmp.path())?;
        // Keep the index's mtime: git relies on it to spot files changed in the same second
        // the index was written ("racily clean" entries).
        let modified = std::fs::metadata(&index)?.modified()?;
        std::fs::File::options()
            .write(true)
            .open(tmp.path())?
            .set_modified(modified)?;
    } else {
        std::fs::remove_file(tmp.path()).ok();
    }
    let mut add = git.command();
    add.env("GIT_INDEX_FILE", tmp.path())
        .args(["add", "-A", "--", "."]);
    crate::git::output_of(&mut add, None).context("cannot snapshot uncommitted changes")?;
    let mut write = git.command();
    write.env("GIT_INDEX_FILE", tmp.path()).args(["write-tree"]);
    let tree = String::from_utf8_lossy(&crate::git::output_of(&mut write, None)?.stdout)
        .trim()
        .to_string();
    if tree == git.run(["rev-parse", &format!("{base}^{{tree}}")])? {
        return Ok(None);
    }
    let commit = git.run_with_input(
        ["commit-tree", &tree, "-p", base, "-F", "-"],
        b"git-agent: uncommitted changes carried into the task (spawn --dirty)\n\nThis commit holds the work tree's changes that were not committed when\nthe task started. It is part of the task's base.\n",
    )?;
    Ok(Some(commit))
}

/// Take the lease of every task the spawn creates. A lease another live spawn holds means
/// that spawn is creating a task of the same name right now.
fn take_leases(ctx: &Ctx, names: &[TaskName]) -> Result<Vec<Lease>, SpawnError> {
    let mut leases = Vec::new();
    for n in names {
        // A reader checking the lease holds it for an instant: try again briefly.
        let mut tries = 0;
        let lease = loop {
            match Lease::take(&ctx.git, n.as_str()) {
                Ok(l) => break l,
                Err(_) if tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => {
                    return Err(SpawnError::BeingCreated {
                        task: n.to_string(),
                        detail: e.to_string(),
                    });
                }
            }
        };
        // Checked again under the lease: another spawn may have created it meanwhile.
        if ctx.store.load(n.as_str())?.is_some() {
            return Err(SpawnError::TaskExists {
                task: n.to_string(),
            });
        }
        leases.push(lease);
    }
    Ok(leases)
}

/// A spawn that failed has removed what it created; say so, and what to do, when the error
/// itself names no fix. `kept` are tasks whose cleanup failed too.
fn spawn_failed(e: anyhow::Error, kept: Vec<String>, events: &dyn Events) -> SpawnError {
    if e.downcast_ref::<Interrupted>().is_some() {
        if !kept.is_empty() {
            events.emit(Event::step(None, DOCTOR_FIX));
        }
        return SpawnError::Other(e);
    }
    if !kept.is_empty() {
        return SpawnError::CleanupFailed {
            detail: format!("{e:#}"),
            kept,
        };
    }
    if crate::error::find_hint(&e).is_some() {
        return SpawnError::Other(e);
    }
    SpawnError::Failed {
        detail: format!("{e:#}"),
    }
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return (t ^ std::process::id()) as u16;
    }
    u16::from_le_bytes(b)
}

/// Passes writes through to `out`, remembering the last byte written (so the task's output
/// can be ended with a newline before what follows it).
struct LastByte<W> {
    out: W,
    last: u8,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for LastByte<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.out).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            this.last = buf[n - 1];
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.out).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.out).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{NoEvents, OpError};

    #[test]
    fn names_for_several_agents_group() {
        assert_eq!(task_names("fix", &["claude".into()]), ["fix"]);
        assert_eq!(
            task_names("fix", &["claude".into(), "codex".into()]),
            ["fix-claude", "fix-codex"]
        );
        assert_eq!(
            task_names("fix", &["claude".into(), "claude".into(), "codex".into()]),
            ["fix-claude-1", "fix-claude-2", "fix-codex"]
        );
    }

    /// A repository with one commit, and its operations context.
    fn repo() -> (tempfile::TempDir, Ctx) {
        let tmp = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .current_dir(tmp.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(tmp.path().join("README.md"), "# demo\n").unwrap();
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "initial"]);
        let ctx = Ctx::open_at(tmp.path()).unwrap();
        (tmp, ctx)
    }

    fn request(ctx: &Ctx, command: &[&str]) -> SpawnRequest {
        let command: Vec<String> = command.iter().map(|c| c.to_string()).collect();
        SpawnRequest {
            agents: agents(ctx, &[], &command, false).unwrap(),
            command,
            description: "fix the tests".into(),
            template: None,
            name: Some("fix".into()),
            base: None,
            dirty: false,
            stack: None,
            timeout: None,
            interactive: false,
            network: NetworkChoice::default(),
            read_only: false,
            git_readonly: None,
            oci_runtime: None,
        }
    }

    fn refusal(e: SpawnError) -> (String, Vec<String>) {
        let kind = format!("{e:?}");
        (kind, crate::error::render(&e.into_report()))
    }

    #[test]
    fn prepare_decides_names_and_prompts_and_reports_its_steps() {
        let (_tmp, ctx) = repo();
        let mut req = request(&ctx, &["sh", "-c", "make test"]);
        assert_eq!(req.agents.len(), 1);
        assert!(req.agents[0].is_exec(), "a command means the exec agent");
        req.dirty = true;
        req.network.allow_address = vec!["10.1.2.3".into()];
        let events = crate::ops::events::Collected::default();
        let mut prepared = prepare(&ctx, req, &events).unwrap();
        assert_eq!(
            prepared
                .names()
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>(),
            ["fix"]
        );
        assert_eq!(prepared.prompts_mut(), ["fix the tests"]);
        assert!(!prepared.dirty, "a clean work tree adds no commit");
        assert_eq!(
            events.take(),
            vec![
                Event::step(
                    None,
                    "note: the task may reach these non-public addresses (agent.allowAddress, --allow-address): 10.1.2.3/32"
                ),
                Event::step(None, "--dirty: no uncommitted changes; starting from HEAD"),
            ]
        );

        std::fs::write(ctx.git.dir.join("new.txt"), "x\n").unwrap();
        let mut req = request(&ctx, &["true"]);
        req.dirty = true;
        let prepared = prepare(&ctx, req, &NoEvents).unwrap();
        assert!(prepared.dirty);
        assert_ne!(prepared.base, ctx.git.resolve_commit("HEAD").unwrap());
        assert!(events.take().is_empty());
    }

    #[test]
    fn refusals_are_typed_and_carry_their_hint() {
        let (_tmp, ctx) = repo();
        let (kind, lines) = refusal(agents(&ctx, &["exec".into()], &[], false).unwrap_err());
        assert_eq!(kind, "ExecNeedsCommand");
        assert_eq!(
            lines,
            [
                "Error: the exec agent needs a command to run",
                "Hint: put it after `--`: git agent spawn -m \"what to do\" -- sh -c 'make test'",
            ]
        );
        let two = ["exec".to_string(), "exec".to_string()];
        let (kind, _) = refusal(agents(&ctx, &two, &["sh".into()], true).unwrap_err());
        assert_eq!(kind, "InteractiveTakesOneAgent");

        let mut req = request(&ctx, &["true"]);
        req.template = Some("no-such-template".into());
        let (kind, lines) = refusal(prepare(&ctx, req, &NoEvents).err().unwrap());
        assert_eq!(kind, r#"UnknownTemplate { template: "no-such-template" }"#);
        assert_eq!(
            lines.last().unwrap(),
            "Hint: see the templates with `git agent template list`"
        );

        let mut req = request(&ctx, &["true"]);
        req.template = Some("fix".into());
        req.description = " ".into();
        let (kind, _) = refusal(prepare(&ctx, req, &NoEvents).err().unwrap());
        assert_eq!(kind, "TemplateNeedsDescription");

        // A taken name is refused with the command that frees it.
        let (kind, lines) = refusal(SpawnError::TaskExists { task: "fix".into() });
        assert!(kind.starts_with("TaskExists"), "{kind}");
        assert_eq!(
            lines,
            [
                "Error: a task named 'fix' already exists",
                "Hint: choose another --name, or remove the old task with `git agent purge --refs fix`",
            ]
        );
    }

    #[test]
    fn a_failure_that_names_a_fix_keeps_it_and_one_that_does_not_gets_doctor() {
        let hinted = crate::error::hinted("engine said no", "do this");
        let e = spawn_failed(hinted, vec![], &NoEvents).into_report();
        assert_eq!(crate::error::find_hint(&e).as_deref(), Some("do this"));
        assert!(e.downcast_ref::<SpawnError>().is_none());

        let e = spawn_failed(anyhow::anyhow!("boom"), vec![], &NoEvents).into_report();
        assert_eq!(
            crate::error::render(&e)[0],
            "Error: spawn failed; nothing of it was kept: boom"
        );
        let events = crate::ops::events::Collected::default();
        let e = spawn_failed(
            anyhow::anyhow!("boom"),
            vec!["a".into(), "b".into()],
            &events,
        )
        .into_report();
        assert_eq!(
            crate::error::render(&e),
            [
                "Error: spawn failed (boom), and removing task(s) a b failed too",
                &format!("Hint: {DOCTOR_FIX}"),
            ]
        );
        let e =
            spawn_failed(anyhow::Error::new(Interrupted), vec!["a".into()], &events).into_report();
        assert!(crate::error::is_interrupted(&e));
        assert_eq!(events.take(), vec![Event::step(None, DOCTOR_FIX)]);
    }

    #[test]
    fn waiting_ends_with_the_first_failure_or_130() {
        let w = |exits: &[i64], interrupted| Waited {
            exits: exits.iter().map(|c| ("t".to_string(), *c)).collect(),
            interrupted,
        };
        assert_eq!(w(&[], false).exit_code(), 0);
        assert_eq!(w(&[0, 3, 7], false).exit_code(), 3);
        assert_eq!(w(&[0, 300], false).exit_code(), 255);
        assert_eq!(w(&[-1, 2], false).exit_code(), 2);
        assert_eq!(w(&[0], true).exit_code(), 130);
    }
}
