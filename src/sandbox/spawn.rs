//! Creating a task: refs first (so the task is visible and removable from the start), then
//! the network, volume and container, then the repository: checked out of the repository's
//! object cache on the engine (see [`super::cache`]), or, with the cache off, streamed in as
//! a bundle of the base's whole history.

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;

use super::gateway::{self, GatewayPlan};
use super::{HELPER, RepoId, remove_objects};
use crate::error::{hinted, sanitize};
use crate::git::Git;
use crate::image::TASK_USER;
use crate::interrupt::{abandon_on_interrupt, checkpoint};
use crate::runtime::{ContainerState, ExecOutcome, Runtime, SandboxSpec, VolumeMount, WardenSpec};
use crate::task::store::{Loaded, TaskStore};
use crate::task::{Sandbox, Status, TaskName, TaskRecord, branch_name, now, ref_name};

/// Resource limits for a task's container.
#[derive(Debug, Clone)]
pub struct Limits {
    pub pids: i64,
    pub memory: i64,
    pub nano_cpus: i64,
    /// Most bytes the task may keep in its workspace, home, helper state and /tmp together
    /// (`agent.diskLimit`, 10g; 0 turns the check off). Docker's volumes have no size limit
    /// on common storage drivers, so the sandbox helper measures and stops the task itself.
    pub disk: u64,
}

/// Default of `agent.diskLimit`.
pub const DISK_LIMIT: u64 = 10 << 30;

impl Limits {
    /// `agent.pidsLimit` (512), `agent.memory` (4g), `agent.cpus` (2), `agent.diskLimit` (10g).
    pub fn from_config(config: &crate::git::Config) -> Result<Limits> {
        let bad = |key: &str, v: &str| {
            hinted(
                format!("bad value '{v}' for {key}"),
                format!("set a positive number: git config {key} <n>"),
            )
        };
        let pids = match config.get("agent.pidsLimit") {
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("agent.pidsLimit", v))?,
            None => 512,
        };
        let nano_cpus = match config.get("agent.cpus") {
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|c| *c > 0.0)
                .map(|c| (c * 1e9) as i64)
                .ok_or_else(|| bad("agent.cpus", v))?,
            None => 2_000_000_000,
        };
        Ok(Limits {
            pids,
            memory: config.size("agent.memory", 4 << 30)? as i64,
            nano_cpus,
            disk: config.size("agent.diskLimit", DISK_LIMIT)?,
        })
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub name: TaskName,
    pub agent: String,
    /// The words the sandbox runs (`{prompt}`/`{prompt_file}` are substituted inside it).
    pub command: Vec<String>,
    /// Environment of the task's process (agent settings, credentials, base URL).
    pub env: Vec<String>,
    pub prompt: String,
    pub template: Option<String>,
    pub stack: String,
    pub timeout: Option<u64>,
    pub interactive: bool,
    pub group: Option<String>,
    /// Keep the task user's home in a volume (agent sessions survive `restart`).
    pub home_volume: bool,
    pub base: String,
    pub base_branch: Option<String>,
    pub dirty: bool,
    pub image: String,
    pub image_id: String,
    pub limits: Limits,
    /// Where the task's network gets its subnet (`agent.subnets`).
    pub subnets: super::network::SubnetRange,
    /// The task's gateway: its image, the outer network it joins, and its setup. The
    /// gateway's environment for the agent is already part of `env`.
    pub gateway: GatewayPlan,
    pub gateway_image: String,
    pub outer_network: String,
    pub read_only: bool,
    /// Run with the read-only git guards (see [`crate::guard`]).
    pub git_readonly: bool,
    /// Borrow history from the repository's object cache (`agent.objectCache`) instead of
    /// streaming it into the task.
    pub object_cache: bool,
    /// Claim a spare network and gateway made ahead, and make the next one once the
    /// command runs (`agent.spareGateway`, see [`super::spare`]).
    pub spare: bool,
    /// The task this one retries, if any (`git agent retry`).
    pub retry_of: Option<String>,
    /// Service containers started on the task's network before its command (see
    /// [`super::services`]).
    pub services: Vec<super::services::Service>,
    /// The engine the task runs on, by name (`None`: the environment's).
    pub engine: Option<String>,
    /// The engine's OCI runtime for the task's container (see [`super::oci`]), already
    /// checked against the engine's.
    pub oci_runtime: Option<String>,
}

/// Write the task's refs (status `creating`). Separate from [`start`] so the caller can clean
/// up after an interruption at any point.
pub fn create_record(store: &TaskStore, req: &StartRequest, repo: &RepoId) -> Result<Loaded> {
    store.create(&req.name, &record_for(req, repo))
}

/// The record of a task being created (status `creating`) for `req`.
pub fn record_for(req: &StartRequest, repo: &RepoId) -> TaskRecord {
    let names = repo.object_names(req.name.as_str());
    TaskRecord {
        name: req.name.to_string(),
        agent: req.agent.clone(),
        command: req.command.clone(),
        base: req.base.clone(),
        base_branch: req.base_branch.clone(),
        dirty: req.dirty,
        status: Status::Creating,
        exit_code: None,
        reason: None,
        created: now(),
        started: None,
        finished: None,
        synced: None,
        sandbox: Sandbox {
            image: req.image.clone(),
            image_id: req.image_id.clone(),
            container: Some(names.container),
            volume: Some(names.volume),
            network: Some(names.network),
            subnet: None,
            home_volume: req.home_volume.then_some(names.home_volume),
            gateway: Some(names.gateway),
            state_volume: req.read_only.then_some(names.state_volume),
            cache: req.object_cache.then(|| super::cache::volume_name(repo)),
        },
        network: Some(req.gateway.policy.clone()),
        read_only: req.read_only,
        promoted: None,
        template: req.template.clone(),
        stack: Some(req.stack.clone()),
        timeout: req.timeout,
        interactive: req.interactive,
        group: req.group.clone(),
        restarts: 0,
        stats: None,
        git_readonly: req.git_readonly,
        changes: None,
        prompt: req.prompt.clone(),
        retry_of: req.retry_of.clone(),
        engine: req.engine.clone(),
        oci_runtime: req.oci_runtime.clone(),
        // Fields later commands fill in (merge, ...).
        ..Default::default()
    }
}

/// The container's command: the sandbox helper supervising the task's own command.
pub fn supervised(
    command: &[String],
    timeout: Option<u64>,
    borrow: Option<(&str, &str)>,
    autostart: Option<&str>,
) -> Vec<String> {
    let mut cmd = vec![HELPER.to_string(), "supervise".into()];
    if let Some(t) = timeout {
        cmd.push("--timeout".into());
        cmd.push(t.to_string());
    }
    if let Some((oid, branch)) = borrow {
        cmd.extend(["--borrow".into(), oid.to_string(), branch.to_string()]);
    }
    if let Some(endpoints) = autostart {
        cmd.extend(["--autostart".into(), endpoints.to_string()]);
    }
    cmd.push("--".into());
    cmd.extend(command.iter().cloned());
    cmd
}

/// What runs in a task's container.
pub struct Process<'a> {
    pub image_id: &'a str,
    pub cmd: Vec<String>,
    pub env: &'a [String],
    pub home_volume: bool,
    pub tty: bool,
    pub read_only: bool,
    /// The object cache volume the workspace borrows from (mounted read-only).
    pub cache: Option<&'a str>,
    /// The engine's OCI runtime (the task's, see [`super::oci`]); `None`: the default.
    pub oci_runtime: Option<&'a str>,
    /// The names it finds on its network (see [`task_hosts`]).
    pub hosts: crate::runtime::Hosts,
    /// Its fixed address there ([`super::network::task_address`]); `None`: any.
    pub address: Option<std::net::Ipv4Addr>,
}

/// The names a task's container finds on its network: its gateway and its services, at their
/// fixed addresses in `subnet` (none when the subnet is not known: then the engine's name
/// server is asked, where there is one).
pub fn task_hosts(
    subnet: Option<&crate::runtime::subnet::Ipv4Net>,
    services: &[super::services::Service],
) -> crate::runtime::Hosts {
    let mut hosts = super::gateway::hosts(subnet);
    hosts.extend(super::services::hosts(subnet, services));
    hosts
}

/// The engine-side description of a task's container.
pub fn sandbox_spec(
    repo: &RepoId,
    task: &str,
    process: Process<'_>,
    limits: &Limits,
) -> SandboxSpec {
    let Process {
        image_id,
        cmd,
        env,
        home_volume,
        tty,
        read_only,
        cache,
        oci_runtime,
        hosts,
        address,
    } = process;
    let names = repo.object_names(task);
    let mut env = env.to_vec();
    env.push(format!("GIT_AGENT_TASK={task}"));
    env.push(format!("GIT_AGENT_BRANCH={}", branch_name(task)));
    if tty {
        env.push("TERM=xterm-256color".into());
    }
    if limits.disk > 0 {
        env.push(format!(
            "GIT_AGENT_DISK_LIMIT={}",
            limits.disk.div_ceil(1024)
        ));
    }
    let mut mounts = vec![VolumeMount::new(&names.volume, super::WORKSPACE)];
    if home_volume {
        // Keeps agent sessions across restarts.
        mounts.push(VolumeMount::new(
            &names.home_volume,
            format!("/home/{TASK_USER}"),
        ));
    }
    if read_only {
        mounts.push(VolumeMount::new(&names.state_volume, super::STATE_DIR));
    }
    if let Some(volume) = cache {
        mounts.push(super::cache::task_mount(volume));
        env.push(super::cache::task_env());
    }
    SandboxSpec {
        name: names.container.clone(),
        image: image_id.to_string(),
        cmd,
        env,
        labels: repo.labels(task),
        mounts,
        working_dir: super::WORKSPACE.into(),
        network: Some(names.network.clone()),
        tty,
        hardening: super::task_hardening(limits, read_only),
        oci_runtime: oci_runtime.map(str::to_string),
        hosts,
        address,
    }
}

/// Put the prompt where the supervised command reads it (an upload, not an exec), with the
/// marker `prompt-in` after it in the same archive: a command that starts by itself waits
/// for that marker.
async fn upload_prompt<R: Runtime>(rt: &R, id: &str, prompt: &str) -> Result<()> {
    let file = |name: &str, data: &[u8]| crate::runtime::Upload {
        name: name.into(),
        data: data.to_vec(),
        mode: 0o600,
        owner: u64::from(crate::image::TASK_UID),
    };
    let files = [file("prompt", prompt.as_bytes()), file("prompt-in", b"")];
    rt.upload(id, super::STATE_DIR, &files)
        .await
        .context("could not deliver the prompt into the sandbox")
}

/// Hand the prompt to a running sandbox (stored for the supervised command's stdin).
pub async fn deliver_prompt<R: Runtime>(rt: &R, id: &str, prompt: &str) -> Result<()> {
    let mut sink = tokio::io::sink();
    let out = rt
        .exec(
            id,
            &[HELPER.to_string(), "prompt".into()],
            Some(prompt.as_bytes()),
            &mut sink,
            1 << 20,
        )
        .await?;
    if out.exit_code != 0 {
        bail!(
            "could not deliver the prompt into the sandbox: {}",
            sanitize(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(())
}

/// Let the supervised command start.
pub async fn go<R: Runtime>(rt: &R, id: &str) -> Result<()> {
    let mut sink = tokio::io::sink();
    let out = rt
        .exec(
            id,
            &[HELPER.to_string(), "go".into()],
            None::<&[u8]>,
            &mut sink,
            1 << 16,
        )
        .await?;
    if out.exit_code != 0 && !ended_under_go(rt, id, &out).await {
        bail!(
            "could not start the task's command ({})",
            crate::error::exit_detail(out.exit_code, &out.stderr)
        );
    }
    Ok(())
}

/// Create and start the sandbox and deliver the repository and prompt into it. The task's
/// command starts right away unless the task is interactive: then the caller attaches first
/// and calls [`go`].
pub async fn start<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    req: &StartRequest,
    repo: &RepoId,
    warn: &dyn Fn(String),
    events: &dyn crate::ops::Events,
) -> Result<Loaded> {
    let task = req.name.as_str();
    let names = repo.object_names(task);
    let labels = repo.labels(task);
    checkpoint()?;

    ensure_names_free(rt, repo, task).await?;

    let cache_volume = req.object_cache.then(|| super::cache::volume_name(repo));
    let tip = super::cache::Tip {
        refname: ref_name(task, "base"),
        oid: req.base.clone(),
    };
    let branch = branch_name(task);
    let writer = super::cache::Writer {
        image: &req.gateway_image,
        limits: &req.limits,
        events,
    };
    let bundle = match cache_volume {
        Some(_) => None,
        None => Some(start_bundle(store.git(), task)?),
    };
    // A headless command checked out from the cache starts by itself once its gateway answers
    // (see `supervise --autostart` in the sandbox helper): no exec round trip on its way.
    // (Not when the task declares services: those start after the gateway, and the host's
    // `go` waits for them.)
    let autostart = (cache_volume.is_some() && !req.interactive && req.services.is_empty())
        .then(|| gateway::endpoints(req.gateway.vault.is_some()));
    let want = super::spare::Want {
        image: &req.gateway_image,
        outer: &req.outer_network,
        subnets: &req.subnets,
    };
    // A spare made ahead (see `super::spare`): its network exists and its gateway already
    // listens there, so only the task's container starts.
    let spare = match req.spare {
        true => super::spare::claim(rt, store.git(), repo, task, &want).await?,
        false => None,
    };
    let (network, subnet, gw) = match spare {
        Some(s) => (Some(s.network), Some(s.subnet), s.gateway),
        None => {
            // The gateway is created and configured while the task's network is: only
            // attaching and starting it need that network.
            // Its subnet is picked first: the gateway is told its fixed address there with
            // the rest of its configuration.
            let picked = super::network::pick(rt, &req.subnets, &names.network).await?;
            let address = picked
                .subnet()
                .as_ref()
                .map(super::network::gateway_address);
            let (subnet, gw) = tokio::join!(
                super::network::create_picked(rt, &req.subnets, &names.network, &labels, picked),
                gateway::create(
                    rt,
                    repo,
                    task,
                    &req.gateway_image,
                    &req.outer_network,
                    &req.gateway,
                    address,
                ),
            );
            (None, subnet?, gw?)
        }
    };
    let spared = network.is_some();
    let network = network.unwrap_or_else(|| names.network.clone());
    crate::crash::point("spawn.after-network");
    checkpoint()?;
    // The gateway comes up side by side with the task's volumes and container (the task's
    // command starts only after both). No request is abandoned midway, so an interruption
    // afterwards finds every object it must remove.
    let spec = sandbox_spec(
        repo,
        task,
        Process {
            image_id: &req.image_id,
            // The checkout from the cache starts with the container (see `borrowed`).
            cmd: supervised(
                &req.command,
                req.timeout,
                cache_volume
                    .is_some()
                    .then_some((tip.oid.as_str(), branch.as_str())),
                autostart.as_deref(),
            ),
            env: &req.env,
            home_volume: req.home_volume,
            tty: req.interactive,
            read_only: req.read_only,
            cache: cache_volume.as_deref(),
            oci_runtime: req.oci_runtime.as_deref(),
            hosts: task_hosts(subnet.as_ref(), &req.services),
            address: subnet.as_ref().map(super::network::task_address),
        },
        &req.limits,
    );
    let spec = SandboxSpec {
        network: Some(network.clone()),
        ..spec
    };
    // The task's container starts once its gateway (and its services) joined the task's
    // network.
    let (attached_tx, attached_rx) = tokio::sync::oneshot::channel::<()>();
    let sandbox = async {
        if cache_volume.is_some() {
            // Before any container names the volume: the engine would make an empty one.
            super::cache::ensure(
                rt,
                store.git(),
                repo,
                std::slice::from_ref(&tip),
                &writer,
                warn,
            )
            .await?;
        }

        rt.create_volume(&names.volume, &labels).await?;
        if req.home_volume {
            rt.create_volume(&names.home_volume, &labels).await?;
        }
        if req.read_only {
            rt.create_volume(&names.state_volume, &labels).await?;
        }
        crate::crash::point("spawn.after-volume");
        checkpoint()?;
        let id = rt.create_container(&spec).await?;
        crate::crash::point("spawn.after-container");
        checkpoint()?;
        if autostart.is_some() {
            // Not while the gateway joins the same network (its outcome is the gateway's to
            // say). The prompt goes in once the container has started, while it checks out:
            // its command waits for it (see `supervise --autostart` in the sandbox helper).
            // (Not beside the start: the engine would make the start wait for the upload.)
            let _ = attached_rx.await;
            rt.start(&id).await?;
            upload_prompt(rt, &id, &req.prompt).await?;
        } else {
            // The prompt goes in before the container starts: no exec to wait for.
            upload_prompt(rt, &id, &req.prompt).await?;
            let _ = attached_rx.await;
            rt.start(&id).await?;
        }
        crate::crash::point("spawn.after-start");
        checkpoint()?;
        let from = CacheSource {
            git: store.git(),
            repo,
            tip: &tip,
            writer: &writer,
        };
        // A headless task's checkout from the cache is confirmed by the `go` that follows
        // (its command may already run by then, see `autostart`); an interactive one's here.
        // Abandoning a stream midway is safe: the sandbox just sees a truncated bundle.
        let delivery = async {
            match bundle {
                Some(bundle) => deliver_repository(rt, bundle, &id, task, events).await,
                None if req.interactive => borrowed(rt, &from, &id, task, warn).await,
                None => Ok(()),
            }
        };
        abandon_on_interrupt(delivery).await?;
        crate::crash::point("spawn.after-deliver");
        Ok::<_, anyhow::Error>(id)
    };
    // The task's services join its network (beside the gateway's start) before the task's
    // container starts: a container finds by name only the members that were there when it
    // started, on an engine that resolves names at start (see docs/kubernetes.md).
    let gw_up = async {
        let attached = match spared {
            // A spare's gateway joined its network before it started: it gets the task's
            // policy (beside the task's volumes and container being made).
            true => gateway::claim(rt, &gw, &req.gateway).await,
            false => gateway::attach(rt, &gw, subnet.as_ref()).await,
        };
        let mut tx = Some(attached_tx);
        let mut release = || {
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        };
        if attached.is_err() {
            release();
            return attached;
        }
        let services = async {
            let started = super::services::start(
                rt,
                repo,
                task,
                &req.services,
                &req.limits,
                &network,
                subnet.as_ref(),
            )
            .await;
            release();
            started
        };
        let up = async {
            match spared {
                // Asked once the command is on its way (below): its exec would compete with
                // the task's start, and the task's own wait for its way out comes first.
                true => Ok(()),
                false => gateway::start_ready(rt, &gw).await.map(|_| ()),
            }
        };
        let (services, ready) = tokio::join!(services, up);
        services?;
        ready
    };
    let (sandbox, way_out) = tokio::join!(sandbox, gw_up);
    let id = sandbox?;
    way_out?;
    crate::crash::point("spawn.after-gateway");
    checkpoint()?;
    // A headless command starts now that the repository, the prompt and its way out are in
    // place (an interactive one once the caller has attached, see [`go`]). The disk warden
    // is created and started once the command runs: it is not on the way to the command, and
    // its requests would only compete with those that are. Under autostart the command may
    // already run while `go` is on its way, and the agent can stop that exec (it runs as the
    // task's user): so there the warden comes up once `go` returns or a second has passed,
    // whichever is first, and `go` is bounded in time (see [`go_borrowed`]).
    let warden = WardenRequest {
        image: &req.gateway_image,
        disk: req.limits.disk,
        home_volume: req.home_volume,
        state_volume: req.read_only,
        oci_runtime: req.oci_runtime.as_deref(),
    };
    let warden_up = async {
        let w = create_warden(rt, repo, task, &id, &warden).await?;
        start_warden(rt, &id, w.as_deref()).await
    };
    if req.interactive {
        warden_up.await?;
    } else if cache_volume.is_some() {
        let from = CacheSource {
            git: store.git(),
            repo,
            tip: &tip,
            writer: &writer,
        };
        let started = go_borrowed(rt, &from, &id, task, warn, autostart.is_some());
        if autostart.is_some() {
            // The warden's start would compete with the checkout for the engine and the CPU:
            // it comes once `go` returns, or after WARDEN_AT_THE_LATEST should the command
            // have stopped that exec.
            let (went_tx, went_rx) = tokio::sync::oneshot::channel::<()>();
            let went = async {
                let r = started.await;
                let _ = went_tx.send(());
                r
            };
            let up = async {
                let _ = tokio::time::timeout(WARDEN_AT_THE_LATEST, went_rx).await;
                warden_up.await
            };
            let (started, up) = tokio::join!(went, up);
            started?;
            up?;
            crate::crash::point("spawn.after-go");
        } else {
            started.await?;
            crate::crash::point("spawn.after-go");
            warden_up.await?;
        }
    } else {
        go(rt, &id).await?;
        crate::crash::point("spawn.after-go");
        warden_up.await?;
    }
    if spared {
        // A spare's gateway that could not take the task's policy fails the spawn here (its
        // task, waiting on a way out that serves nothing, is removed with it).
        gateway::ready(rt, &gw).await?;
    }
    let loaded = store.update(task, "running", |r, _| {
        r.status = Status::Running;
        r.started = Some(now());
        r.sandbox.container = Some(id.clone());
        r.sandbox.network = Some(network.clone());
        r.sandbox.subnet = subnet.map(|s| s.to_string());
        Ok(vec![])
    })?;
    // The next spawn's network and gateway, made now that this one's command runs (not on
    // its way). A spare that cannot be made costs the next spawn its own, nothing more.
    if req.spare
        && let Err(e) = super::spare::ensure(rt, repo, &want).await
    {
        warn(format!(
            "could not make a spare network for the next task: {e:#}"
        ));
    }
    Ok(loaded)
}

/// Refuse to start when any of the task's object names is taken. The engine would not
/// refuse them all: a second network of a name is created beside the first (and then no
/// container can join either), and creating a volume of a taken name silently hands back the
/// old one, with whatever it holds and without the task's labels.
async fn ensure_names_free<R: Runtime>(rt: &R, repo: &RepoId, task: &str) -> Result<()> {
    let names = repo.object_names(task);
    let all = names.all();
    let found =
        futures_util::future::join_all(all.iter().map(|(kind, name)| rt.labels_of(*kind, name)))
            .await;
    for ((_, name), found) in all.iter().zip(found) {
        if found?.is_some() {
            return Err(hinted(
                format!(
                    "cannot create task {task}: {name} is already there, left by something else"
                ),
                "`git agent doctor` says what it is; `git agent doctor --fix` removes it when git-agent left it",
            ));
        }
    }
    Ok(())
}

/// Create the task's disk warden (when `agent.diskLimit` is set): the limit holds even
/// against an agent that kills or suspends the sandbox helper's own watcher. Started by
/// [`start_warden`] once the task's command runs.
pub async fn create_warden<R: Runtime>(
    rt: &R,
    repo: &RepoId,
    task: &str,
    container: &str,
    req: &WardenRequest<'_>,
) -> Result<Option<String>> {
    if req.disk == 0 || !super::oci::is_default(rt, req.oci_runtime).await? {
        // Under another OCI runtime the task's processes are in that runtime's kernel: no
        // PID namespace to join (see `oci`); the sandbox helper's own watcher keeps the limit.
        return Ok(None);
    }
    let names = repo.object_names(task);
    // A warden of an earlier run (restart) has ended with its task.
    rt.remove_container(&names.warden).await?;
    let mut volumes = vec![(&names.volume, "/watch/workspace")];
    if req.home_volume {
        volumes.push((&names.home_volume, "/watch/home"));
    }
    if req.state_volume {
        volumes.push((&names.state_volume, "/watch/state"));
    }
    let mounts = volumes
        .into_iter()
        .map(|(volume, target)| VolumeMount {
            read_only: true,
            ..VolumeMount::new(volume, target)
        })
        .collect();
    let id = rt
        .create_warden(&WardenSpec {
            name: names.warden.clone(),
            image: req.image.to_string(),
            cmd: super::warden_command(req.disk.div_ceil(1024), WARDEN_INTERVAL_SECS),
            labels: repo.labels(task),
            task: container.to_string(),
            mounts,
            hardening: super::warden_hardening(),
        })
        .await?;
    Ok(Some(id))
}

/// Start a task's disk warden made by [`create_warden`]. A task that has already ended needs
/// none (and its warden could not join the namespace that went with it).
pub async fn start_warden<R: Runtime>(rt: &R, task: &str, warden: Option<&str>) -> Result<()> {
    let Some(warden) = warden else {
        return Ok(());
    };
    match rt.start(warden).await {
        Ok(()) => Ok(()),
        Err(_) if !matches!(rt.state(task).await?, ContainerState::Running) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a task's disk warden watches, and with which image.
pub struct WardenRequest<'a> {
    /// The gateway's image (built from git-agent's own files only).
    pub image: &'a str,
    /// The limit in bytes (`agent.diskLimit`); 0 starts no warden.
    pub disk: u64,
    pub home_volume: bool,
    pub state_volume: bool,
    /// The task's OCI runtime: a warden joins only a task under the engine's default.
    pub oci_runtime: Option<&'a str>,
}

/// How often the disk warden measures.
const WARDEN_INTERVAL_SECS: u64 = 5;

/// Start `git bundle create` of the task's base. Started before the container so that git
/// counts and prepares objects while the engine creates the sandbox.
fn start_bundle(git: &Git, task: &str) -> Result<tokio::process::Child> {
    git.start_bundle(&[ref_name(task, "base")])
}

async fn deliver_repository<R: Runtime>(
    rt: &R,
    mut child: tokio::process::Child,
    id: &str,
    task: &str,
    events: &dyn crate::ops::Events,
) -> Result<()> {
    let base_ref = ref_name(task, "base");
    let stdout = child.stdout.take().expect("stdout was piped");
    let meter = crate::transfer::Meter::new(
        events,
        Some(task),
        "sending the repository to the sandbox",
        0,
    );
    let mut stdout = crate::transfer::Metered::new(stdout, meter);
    let mut sink = tokio::io::sink();
    let cmd = vec![
        HELPER.to_string(),
        "receive".into(),
        base_ref.clone(),
        branch_name(task),
    ];
    let out = rt
        .exec(id, &cmd, Some(&mut stdout), &mut sink, 1 << 20)
        .await;
    stdout.finish();
    let out = out?;
    let bundle = child.wait_with_output().await?;
    if !bundle.status.success() {
        bail!(
            "git bundle create failed: {}",
            String::from_utf8_lossy(&bundle.stderr).trim_end()
        );
    }
    if out.exit_code != 0 {
        return Err(hinted(
            format!(
                "the sandbox could not check out the repository ({})",
                crate::error::exit_detail(out.exit_code, &out.stderr)
            ),
            "check that the image has git (`git agent image build --dry-run`)",
        ));
    }
    let mut stdout = tokio::io::stdout();
    stdout.flush().await.ok();
    Ok(())
}

/// Where a task borrows its history from.
pub struct CacheSource<'a> {
    pub git: &'a Git,
    pub repo: &'a RepoId,
    /// The commit checked out (and the host ref naming it).
    pub tip: &'a super::cache::Tip,
    pub writer: &'a super::cache::Writer<'a>,
}

/// Wait for the checkout the container's supervisor made from the object cache as it
/// started (`supervise --borrow`) and confirm it (the helper's `borrowed`). A cache that
/// could not provide the base (damaged, emptied) is rebuilt, with a warning, and the checkout
/// made again with the helper's `borrow`.
pub async fn borrowed<R: Runtime>(
    rt: &R,
    from: &CacheSource<'_>,
    id: &str,
    task: &str,
    warn: &dyn Fn(String),
) -> Result<()> {
    let out = helper_exec(rt, id, &["borrowed"]).await?;
    checked_out(rt, from, id, task, warn, out).await
}

/// How long a task's disk warden waits for `go` under autostart before it starts anyway.
const WARDEN_AT_THE_LATEST: std::time::Duration = std::time::Duration::from_secs(1);

/// How long `go` may take under autostart before the run counts as started: the exec only
/// waits for the checkout, and one that does not answer was stopped by the command that
/// checkout let start (a checkout that fails starts nothing that could stop it).
const GO_UNDER_AUTOSTART: std::time::Duration = std::time::Duration::from_secs(120);

/// [`borrowed`], then let the command start, in one exec (the helper's `go --borrowed`).
async fn go_borrowed<R: Runtime>(
    rt: &R,
    from: &CacheSource<'_>,
    id: &str,
    task: &str,
    warn: &dyn Fn(String),
    autostart: bool,
) -> Result<()> {
    let exec = helper_exec(rt, id, &["go", "--borrowed"]);
    let went = if autostart {
        match tokio::time::timeout(GO_UNDER_AUTOSTART, exec).await {
            Ok(went) => went,
            // Still there: the command runs (it stopped the exec); its end is recorded from
            // the container like any run's.
            Err(_) => {
                return match rt.state(id).await? {
                    ContainerState::Running | ContainerState::Exited(_) => Ok(()),
                    other => bail!("the task's container is {other:?} after its start"),
                };
            }
        }
    } else {
        exec.await
    };
    let out = match went {
        Ok(out) => out,
        // Under autostart a command that ends at once may have stopped the container before
        // this exec came: the run is over, recorded from the container like any run's.
        Err(e) => {
            return match rt.state(id).await {
                Ok(ContainerState::Exited(_)) => Ok(()),
                _ => Err(e),
            };
        }
    };
    if ended_under_go(rt, id, &out).await {
        return Ok(());
    }
    match out.exit_code {
        0 => Ok(()),
        super::cache::BORROW_FAILED | CHECKOUT_FAILED => {
            checked_out(rt, from, id, task, warn, out).await?;
            go(rt, id).await
        }
        _ => bail!(
            "could not start the task's command ({})",
            crate::error::exit_detail(out.exit_code, &out.stderr)
        ),
    }
}

/// Did the container stop under the exec that let its command start? A command that ends
/// at once (`true`) stops the container while that exec is still on its way out (the engine
/// kills it: 137), or, when the command started by itself (autostart), while the exec was
/// being started (126). The run is over either way: what it ended with is recorded from the
/// container (see [`super::refresh`]), as for any run, so the spawn itself succeeded. A
/// checkout the host must repair (5, 6) keeps the container waiting, never stopped.
/// The engine may still report the container running for a moment after its main process
/// ended, so its state is asked a few times (about 3 s at most).
async fn ended_under_go<R: Runtime>(rt: &R, id: &str, out: &ExecOutcome) -> bool {
    if matches!(
        out.exit_code,
        0 | super::cache::BORROW_FAILED | CHECKOUT_FAILED
    ) {
        return false;
    }
    for _ in 0..30 {
        match rt.state(id).await {
            Ok(ContainerState::Exited(_)) => return true,
            Ok(ContainerState::Running) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            _ => return false,
        }
    }
    false
}

/// What the helper's `borrowed` exits with when the checkout failed for another reason than
/// the cache.
const CHECKOUT_FAILED: i64 = 6;

async fn helper_exec<R: Runtime>(rt: &R, id: &str, args: &[&str]) -> Result<ExecOutcome> {
    let mut cmd = vec![HELPER.to_string()];
    cmd.extend(args.iter().map(|a| a.to_string()));
    let mut sink = tokio::io::sink();
    rt.exec(id, &cmd, None::<&[u8]>, &mut sink, 1 << 20).await
}

/// Act on the result of a checkout from the cache: done; or the cache could not provide the
/// base, so it is rebuilt and the checkout made again; or an error.
async fn checked_out<R: Runtime>(
    rt: &R,
    from: &CacheSource<'_>,
    id: &str,
    task: &str,
    warn: &dyn Fn(String),
    mut out: ExecOutcome,
) -> Result<()> {
    if out.exit_code == super::cache::BORROW_FAILED {
        warn(format!(
            "task {task} could not check its base out of the object cache ({}); rebuilding the cache",
            crate::error::exit_detail(out.exit_code, &out.stderr)
        ));
        super::cache::rebuild(
            rt,
            from.git,
            from.repo,
            std::slice::from_ref(from.tip),
            from.writer,
        )
        .await?;
        let borrow = ["borrow", from.tip.oid.as_str(), &branch_name(task)];
        out = helper_exec(rt, id, &borrow).await?;
    }
    if out.exit_code != 0 {
        return Err(hinted(
            format!(
                "the sandbox could not check out the repository ({})",
                crate::error::exit_detail(out.exit_code, &out.stderr)
            ),
            "check that the image has git (`git agent image build --dry-run`); `git config agent.objectCache false` streams history into each task instead",
        ));
    }
    Ok(())
}

/// Undo a spawn that failed or was interrupted: runtime objects and refs go away.
pub async fn abandon<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    repo: &RepoId,
    task: &str,
) -> Result<()> {
    // Only objects labelled as this task's go: a name that another task (or anything else)
    // already owns made this spawn fail, and must not take that object with it.
    remove_objects(rt, repo, task, None, true, true).await?;
    store.delete(task)?;
    // A cache made for this spawn alone goes with it (one another task uses stays).
    super::cache::release_if_unused(rt, store, repo).await?;
    Ok(())
}

/// Run an agent's headless command once in a running sandbox with `prompt` on its stdin and
/// return its answer: the final message for structured transcripts, else its output.
pub async fn ask<R: Runtime>(
    rt: &R,
    container: &str,
    agent: &crate::agent::Agent,
    prompt: &str,
    env: &[String],
) -> Result<String> {
    let mut cmd = vec![HELPER.to_string(), "oneshot".into(), "--".into()];
    cmd.extend(agent.def.headless.iter().cloned());
    let mut out = crate::sandbox::CappedBuf::new(4 << 20);
    let res = rt
        .exec_env(
            container,
            &cmd,
            env,
            Some(prompt.as_bytes()),
            &mut out,
            u64::MAX,
        )
        .await?;
    let text = String::from_utf8_lossy(&out.bytes()).into_owned();
    if res.exit_code != 0 {
        bail!(
            "the agent exited with status {}: {}",
            res.exit_code,
            sanitize(String::from_utf8_lossy(&res.stderr).trim_end())
        );
    }
    let answer = match agent.def.output {
        crate::agent::OutputFormat::Text => text,
        format => format
            .stats(&text)
            .and_then(|s| s.final_message)
            .unwrap_or_default(),
    };
    Ok(sanitize(answer.trim()))
}
