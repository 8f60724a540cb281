//! `git agent spawn`: start one task per agent in new sandboxes.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{Ctx, engine, out, term};
use crate::agent::{self, Agent, credentials};
use crate::data::{PROMPTS, Search};
use crate::error::{Interrupted, hinted};
use crate::git::Git;
use crate::image::{self, ImageRequest};
use crate::runtime::Runtime;
use crate::sandbox::gateway::{AgentAccess, GatewayPlan};
use crate::sandbox::spawn::{Limits, SpawnRequest, abandon, create_record, go, start};
use crate::task::lock::Lease;
use crate::task::{Status, TaskName, branch_name};
use crate::template::{self, PromptVars};

/// Start a task: an agent in a sandboxed container, working on a private copy of the
/// repository.
///
/// The task starts from HEAD (or --base) and works on branch agent/<name> inside the sandbox.
/// The prompt comes from -m, -F, or standard input when that is piped; with --type it fills
/// in a prompt template (see `git agent template list`). The agent runs headless without
/// permission prompts (the sandbox protects you), or attached to your terminal with -i.
/// The `exec` agent runs the command given after `--` instead of an AI agent, with the
/// prompt on its standard input. Prints each task's name on stdout.
///
/// A shallow clone is refused before anything is created: the task's work comes back as a
/// bundle built on the full history of its base (`git fetch --unshallow` first).
#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// Name of the task (lowercase letters, digits, '-', '_', '.'); generated when omitted.
    /// With several agents, the name of the group: tasks are named <name>-<agent>.
    #[arg(long)]
    pub name: Option<String>,
    /// The agent(s) that do the work, comma-separated (`claude,codex` or `claude,claude`
    /// starts one task per entry). Default: `exec` when a command follows `--`, else
    /// agent.defaultAgent, else claude.
    #[arg(long, value_delimiter = ',')]
    pub agent: Vec<String>,
    /// The prompt: what the agent should do.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Read the prompt from a file ('-' for standard input).
    #[arg(
        short = 'F',
        long = "file",
        value_name = "FILE",
        conflicts_with = "message"
    )]
    pub file: Option<PathBuf>,
    /// Fill in this prompt template with the prompt as its description (feat, fix, refactor,
    /// test, doc, review, or your own).
    #[arg(short = 't', long = "type", value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Open the rendered prompt in your editor before the task starts.
    #[arg(long)]
    pub edit: bool,
    /// Start from this revision instead of HEAD.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Carry uncommitted changes (tracked and untracked, not ignored) in as one commit.
    #[arg(long)]
    pub dirty: bool,
    /// Language stack of the image (default: agent.stack, else detected from the repository).
    #[arg(long)]
    pub stack: Option<String>,
    /// Stop the run after this long (e.g. 90s, 30m, 2h) and record why.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<u64>,
    /// Attach your terminal to the agent's session (detach with Ctrl-P Ctrl-Q).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Network profile: none, api (the default: only the agent's model API), dev (plus the
    /// common package registries), open (every host), or your own (default: agent.network).
    #[arg(long, value_name = "PROFILE")]
    pub network: Option<String>,
    /// Also let the task reach this domain and its subdomains (repeatable; *.example.com
    /// for subdomains only).
    #[arg(long, value_name = "DOMAIN")]
    pub allow: Vec<String>,
    /// Also let the task reach this non-public address or network (e.g. a service on your
    /// LAN: 10.1.2.3 or 10.1.0.0/16; repeatable; default: agent.allowAddress). Every other
    /// loopback, private, link-local or metadata address stays refused, whatever the profile.
    #[arg(long, value_name = "IP[/LEN]")]
    pub allow_address: Vec<String>,
    /// Make the container's root file system read-only (the workspace, home and /tmp stay
    /// writable; default: agent.readOnlyRoot).
    #[arg(long)]
    pub read_only: bool,
    /// Stream the task's output and exit with its exit status.
    #[arg(long, conflicts_with = "interactive")]
    pub wait: bool,
    /// Allow the agent only read-only git (status, log, diff, ...): a git wrapper first on
    /// its PATH, a Claude Code hook and Codex rules refuse commit, checkout, reset, push and
    /// the like (default: agent.gitReadOnly). A seatbelt for the agent, not a boundary.
    #[arg(long, overrides_with = "no_git_readonly")]
    pub git_readonly: bool,
    /// Let the agent run any git command, even when agent.gitReadOnly is set.
    #[arg(long, overrides_with = "git_readonly")]
    pub no_git_readonly: bool,
    /// The command the `exec` agent runs.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Parse `90`, `90s`, `30m`, `2h` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        _ => (t, 1),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n * mult),
        _ => Err(format!("'{text}' is not a duration like 90s, 30m or 2h")),
    }
}

fn read_prompt(args: &SpawnArgs) -> Result<String> {
    if let Some(m) = &args.message {
        return Ok(m.clone());
    }
    if let Some(f) = &args.file {
        if f.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            return Ok(s);
        }
        return std::fs::read_to_string(f).map_err(|e| {
            hinted(
                format!("cannot read the prompt file {}: {e}", f.display()),
                "check the path given to -F",
            )
        });
    }
    if !term::stdin_is_tty() && !args.interactive {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the prompt from standard input")?;
        return Ok(s);
    }
    Ok(String::new())
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

/// Let the user edit `text` in their editor; returns the edited text.
pub fn edit_text(git: &Git, text: &str, file_prefix: &str) -> Result<String> {
    if !term::stdin_is_tty() {
        return Err(hinted(
            "--edit needs a terminal for the editor",
            "drop --edit, or run the command in a terminal",
        ));
    }
    term::edit_in_editor(git, text, file_prefix, ".md", || {
        hinted(
            "the editor failed; nothing was started",
            "check core.editor / GIT_EDITOR",
        )
    })
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

/// The environment a task's agent runs with (its fixed settings), and how it reaches its
/// model API: its credentials and API base URL, which go to the task's gateway.
pub fn agent_env(ctx: &Ctx, agent: &Agent) -> Result<(Vec<String>, AgentAccess)> {
    let env: Vec<String> = agent
        .def
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let upstream = ctx
        .config
        .get(&format!("agent.{}.baseUrl", agent.name))
        .map(str::to_string)
        .or_else(|| {
            let var = agent.def.base_url_env.as_ref()?;
            std::env::var(var).ok().filter(|v| !v.is_empty())
        })
        .or_else(|| agent.def.api_url.clone());
    let access = AgentAccess {
        credentials: credentials::resolve(agent)?,
        base_url_env: agent.def.base_url_env.clone(),
        upstream,
        api_domains: agent.def.api_domains.clone(),
        routes: vault_routes(agent),
    };
    Ok((env, access))
}

/// The repository-provided files a spawn uses, one line each (path relative to the work
/// tree and what it is), so the user sees what a repository contributes.
pub fn repository_files(
    ctx: &Ctx,
    search: &Search,
    agents: &[Agent],
    template: Option<&template::PromptTemplate>,
    plans: &[image::ImagePlan],
) -> Result<Vec<String>> {
    use crate::data::{Origin, STACKS};
    let root = &ctx.git.dir;
    let rel = |p: &std::path::Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let mut lines = std::collections::BTreeSet::new();
    for a in agents {
        if let Origin::Repository(p) = &a.origin {
            lines.insert(format!("{} (trusted repository file)", rel(p)));
        }
    }
    if let Some(Origin::Repository(p)) = template.map(|t| &t.origin) {
        lines.insert(format!("{} (from the repository)", rel(p)));
    }
    let repo = crate::egress::repo::load(root)?;
    if !repo.allow.is_empty() {
        lines.insert(format!(
            "{} (from the repository): allows {}",
            crate::egress::repo::FILE,
            repo.allow.join(", ")
        ));
    }
    for plan in plans {
        if plan.layers.iter().any(|l| l.name == "project") {
            lines.insert(
                ".git-agent/dockerfiles/project.dockerfile (from the repository)".to_string(),
            );
        }
        if let Some(f) = search.find(STACKS, &plan.stack)?
            && let Origin::Repository(p) = &f.origin
        {
            lines.insert(format!("{} (trusted repository file)", rel(p)));
        }
    }
    Ok(lines.into_iter().collect())
}

/// What the vault forwards for `agent`: its definition's `api_methods`/`api_paths`, each
/// defaulting when the definition names none.
fn vault_routes(agent: &Agent) -> crate::egress::vault::Routes {
    let mut routes = crate::egress::vault::Routes::default();
    if !agent.def.api_methods.is_empty() {
        routes.methods = agent.def.api_methods.clone();
    }
    if !agent.def.api_paths.is_empty() {
        routes.paths = agent.def.api_paths.clone();
    }
    routes
}

/// The gateway setup of a task: its egress policy and, for its agent's API, the vault.
pub fn gateway_plan(
    ctx: &Ctx,
    search: &Search,
    agent: &Agent,
    profile: Option<&str>,
    allow: &[String],
    allow_address: &[String],
) -> Result<(Vec<String>, GatewayPlan)> {
    let repo = crate::egress::repo::load(&ctx.git.dir)?;
    let policy = crate::egress::resolve(
        search,
        &ctx.config,
        &crate::egress::Request {
            profile,
            allow,
            allow_address,
        },
        &repo.allow,
    )?;
    if !policy.addresses.is_empty() {
        eprintln!(
            "git-agent: note: the task may reach these non-public addresses (agent.allowAddress, --allow-address): {}",
            policy.addresses.join(", ")
        );
    }
    run_plan(ctx, agent, policy)
}

/// One run of `agent` under `policy`: its environment (its settings plus what the gateway
/// hands it: proxy, stand-ins, the vault's URL) and its gateway's setup.
pub fn run_plan(
    ctx: &Ctx,
    agent: &Agent,
    policy: crate::egress::NetworkPolicy,
) -> Result<(Vec<String>, GatewayPlan)> {
    let (mut env, access) = agent_env(ctx, agent)?;
    let plan = GatewayPlan::new(policy, &access)?;
    if let Some(w) = &plan.warning {
        eprintln!("git-agent: warning: agent {}: {w}", agent.name);
    }
    env.extend(plan.env.iter().cloned());
    Ok((env, plan))
}

/// Give a task a new gateway under `policy` (any old one is removed), with fresh stand-ins:
/// for a restarted run, or a one-off agent command of a finished task. The task's network
/// must exist. Returns the run's environment, the plan, and the gateway's id.
pub async fn fresh_gateway<R: Runtime>(
    ctx: &Ctx,
    rt: &R,
    agent: &Agent,
    policy: crate::egress::NetworkPolicy,
    task: &str,
) -> Result<(Vec<String>, GatewayPlan, String)> {
    use crate::sandbox::gateway;
    rt.remove_container(&ctx.repo.object_names(task).gateway)
        .await?;
    let (env, plan) = run_plan(ctx, agent, policy)?;
    let image = super::image::ensure(rt, &image::gateway_plan(&ctx.config)?).await?;
    let id = gateway::start(
        rt,
        &ctx.repo,
        task,
        &image,
        &gateway::outer_network(&ctx.config),
        &plan,
    )
    .await?;
    Ok((env, plan, id))
}

/// `--read-only`, else `agent.readOnlyRoot`.
pub fn read_only_root(ctx: &Ctx, flag: bool) -> Result<bool> {
    if flag {
        return Ok(true);
    }
    ctx.config.bool("agent.readOnlyRoot", false)
}

pub async fn run(args: SpawnArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    // Before any ref or engine object: a shallow clone's task could never send work back.
    ctx.git.require_full_history()?;
    let search = Search::new(&ctx.git.dir);
    let agent_names: Vec<String> = if !args.agent.is_empty() {
        args.agent.iter().map(|a| a.trim().to_string()).collect()
    } else if !args.command.is_empty() {
        vec!["exec".into()]
    } else {
        vec![
            ctx.config
                .get("agent.defaultAgent")
                .unwrap_or("claude")
                .to_string(),
        ]
    };
    let agents: Vec<Agent> = agent_names
        .iter()
        .map(|n| agent::load(&search, n))
        .collect::<Result<_>>()?;
    for a in &agents {
        if a.is_exec() && args.command.is_empty() {
            return Err(hinted(
                "the exec agent needs a command to run",
                "put it after `--`: git agent spawn -m \"what to do\" -- sh -c 'make test'",
            ));
        }
        if !a.is_exec() && !args.command.is_empty() {
            return Err(hinted(
                format!(
                    "a command after `--` is only for the exec agent, not '{}'",
                    a.name
                ),
                "drop the command, or use --agent exec",
            ));
        }
        if args.interactive && !a.is_exec() && a.def.interactive.is_empty() {
            return Err(hinted(
                format!("agent '{}' has no interactive command", a.name),
                "run it headless (without -i)",
            ));
        }
    }
    if args.interactive && agents.len() > 1 {
        return Err(hinted(
            "-i attaches one terminal, so it takes one agent",
            "start the others headless, or one at a time",
        ));
    }
    if args.edit && agents.len() > 1 {
        return Err(hinted(
            "--edit works on one task's prompt",
            "spawn the agents one at a time to edit each prompt",
        ));
    }
    let description = read_prompt(&args)?;
    let template = match &args.template {
        Some(t) => Some(template::parse(&search.find(PROMPTS, t)?.ok_or_else(
            || {
                hinted(
                    format!("unknown template '{t}'"),
                    "see the templates with `git agent template list`",
                )
            },
        )?)?),
        None => None,
    };
    if template.is_some() && description.trim().is_empty() {
        return Err(hinted(
            "a template needs a description of the task",
            "pass it with -m \"...\" or -F <file>",
        ));
    }
    let base_rev = args.base.clone().unwrap_or_else(|| "HEAD".into());
    let mut base = ctx.git.resolve_commit(&base_rev).map_err(|e| {
        if args.base.is_none() {
            hinted(
                "the repository has no commits yet",
                "commit something first; the task starts from a commit",
            )
        } else {
            e
        }
    })?;
    let base_branch = match &args.base {
        None => ctx.git.current_branch(),
        Some(b) => ctx
            .git
            .ref_value(&format!("refs/heads/{b}"))?
            .map(|_| b.clone()),
    };
    let group_name = match &args.name {
        Some(n) => TaskName::parse(n)?,
        None => TaskName::generate(&description, random_u16()),
    };
    let names: Vec<TaskName> = task_names(group_name.as_str(), &agent_names)
        .iter()
        .map(|n| TaskName::parse(n))
        .collect::<Result<_>>()?;
    for n in &names {
        if ctx.store.load(n.as_str())?.is_some() {
            return Err(hinted(
                format!("a task named '{n}' already exists"),
                format!(
                    "choose another --name, or remove the old task with `git agent purge --refs {n}`"
                ),
            ));
        }
    }
    let gateways: Vec<(Vec<String>, GatewayPlan)> = agents
        .iter()
        .map(|a| {
            gateway_plan(
                &ctx,
                &search,
                a,
                args.network.as_deref(),
                &args.allow,
                &args.allow_address,
            )
        })
        .collect::<Result<_>>()?;
    let read_only = read_only_root(&ctx, args.read_only)?;
    let mut dirty = false;
    if args.dirty {
        if let Some(c) = dirty_commit(&ctx.git, &base)? {
            base = c;
            dirty = true;
        } else {
            eprintln!("git-agent: --dirty: no uncommitted changes; starting from {base_rev}");
        }
    }
    let repository = ctx
        .git
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut prompts = Vec::new();
    for n in &names {
        let prompt = match &template {
            Some(t) => template::render(
                t,
                &PromptVars {
                    description: description.clone(),
                    repository: repository.clone(),
                    base: base.clone(),
                    base_branch: base_branch.clone().unwrap_or_default(),
                    branch: branch_name(n.as_str()),
                    task: n.to_string(),
                },
            )?,
            None => description.clone(),
        };
        let prompt = if args.edit {
            edit_text(&ctx.git, &prompt, "AGENT_PROMPT")?
        } else {
            prompt
        };
        prompts.push(prompt);
    }

    // Compose every image before touching the engine: a refused or unrenderable repository
    // file stops the spawn with nothing created.
    let plans: Vec<image::ImagePlan> = agents
        .iter()
        .map(|agent| {
            image::plan(&ImageRequest {
                root: &ctx.git.dir,
                config: &ctx.config,
                search: &search,
                agent,
                stack: args.stack.as_deref(),
            })
        })
        .collect::<Result<_>>()?;
    for line in repository_files(&ctx, &search, &agents, template.as_ref(), &plans)? {
        eprintln!("git-agent: using {line}");
    }

    let rt = engine().await?;
    let limits = Limits::from_config(&ctx.config)?;
    let gateway_image = super::image::ensure(&rt, &image::gateway_plan(&ctx.config)?).await?;
    let outer_network = crate::sandbox::gateway::outer_network(&ctx.config);
    let git_readonly = crate::guard::enabled(
        (args.git_readonly || args.no_git_readonly).then_some(args.git_readonly),
        &ctx.config,
    )?;
    let mut requests = Vec::new();
    for ((((agent, name), prompt), (env, gateway)), plan) in agents
        .iter()
        .zip(&names)
        .zip(prompts)
        .zip(gateways)
        .zip(plans)
    {
        let image_id = super::image::ensure(&rt, &plan).await?;
        let command = if agent.is_exec() {
            args.command.clone()
        } else if args.interactive {
            agent.def.interactive.clone()
        } else {
            agent.def.headless.clone()
        };
        let mut env = env;
        crate::guard::add_env(&mut env, git_readonly);
        requests.push(SpawnRequest {
            name: name.clone(),
            agent: agent.name.clone(),
            command,
            env,
            prompt,
            template: args.template.clone(),
            stack: plan.stack.clone(),
            timeout: args.timeout,
            interactive: args.interactive,
            group: (names.len() > 1).then(|| group_name.to_string()),
            home_volume: !agent.is_exec(),
            base: base.clone(),
            base_branch: base_branch.clone(),
            dirty,
            image: plan.tag.clone(),
            image_id,
            limits: limits.clone(),
            gateway,
            gateway_image: gateway_image.clone(),
            outer_network: outer_network.clone(),
            read_only,
            git_readonly,
        });
    }

    // Each task's lease is held from before its refs are written until it runs or is removed
    // again: a `creating` task whose lease is free was left by a spawn that died.
    let leases = take_leases(&ctx, &names)?;
    let mut started = Vec::new();
    for req in &requests {
        create_record(&ctx.store, req, &ctx.repo)?;
        crate::crash::point("spawn.after-refs");
        match start(&rt, &ctx.store, req, &ctx.repo).await {
            Ok(l) => {
                crate::crash::point("spawn.after-running");
                started.push(l)
            }
            Err(e) => {
                // All or nothing: a group whose member failed is removed entirely.
                let mut kept = Vec::new();
                for r in requests.iter().take(started.len() + 1) {
                    if e.downcast_ref::<Interrupted>().is_none() {
                        eprintln!("git-agent: spawn failed; removing task {}", r.name);
                    }
                    if let Err(c) = abandon(&rt, &ctx.store, &ctx.repo, r.name.as_str()).await {
                        eprintln!("git-agent: cleanup of task {} failed too: {c:#}", r.name);
                        kept.push(r.name.to_string());
                    }
                }
                drop(leases);
                return Err(spawn_failed(e, &kept));
            }
        }
    }
    drop(leases);
    for l in &started {
        out(&l.record.name)?;
    }
    if args.interactive {
        let l = &started[0];
        let container = l.record.sandbox.container.clone().unwrap_or_default();
        return super::attach::attach_to(&rt, &ctx, l, go(&rt, &container)).await;
    }
    if !args.wait {
        for l in &started {
            eprintln!(
                "git-agent: task {0} is running; follow it with `git agent logs -f {0}`",
                l.record.name
            );
        }
        return Ok(0);
    }
    let mut worst = 0;
    for l in started {
        let name = l.record.name.clone();
        let container = l
            .record
            .sandbox
            .container
            .clone()
            .expect("a started task has a container");
        let single = requests.len() == 1;
        let follow = async {
            if single {
                let mut stderr = LastByte {
                    out: tokio::io::stderr(),
                    last: b'\n',
                };
                rt.logs(&container, true, None, &mut stderr).await?;
                if stderr.last != b'\n' {
                    eprintln!();
                }
            }
            rt.wait(&container).await
        };
        let code = match crate::interrupt::abandon_on_interrupt(follow).await {
            Ok(code) => code,
            Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
                eprintln!("git-agent: stopped waiting; the tasks keep running");
                return Ok(130);
            }
            Err(e) => return Err(e),
        };
        let loaded = crate::sandbox::refresh(&rt, &ctx.store, l).await?;
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
            eprintln!("git-agent: task {name} exited with status {code}{why}{stats}");
        }
        if worst == 0 {
            worst = code.clamp(0, 255) as i32;
        }
    }
    Ok(worst)
}

/// Take the lease of every task the spawn creates. A lease another live spawn holds means
/// that spawn is creating a task of the same name right now.
fn take_leases(ctx: &Ctx, names: &[TaskName]) -> Result<Vec<Lease>> {
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
                    return Err(hinted(
                        format!("cannot create task '{n}': {e}"),
                        "wait for that spawn to finish (`git agent list` shows it), or choose another --name",
                    ));
                }
            }
        };
        // Checked again under the lease: another spawn may have created it meanwhile.
        if ctx.store.load(n.as_str())?.is_some() {
            return Err(hinted(
                format!("a task named '{n}' already exists"),
                format!(
                    "choose another --name, or remove the old task with `git agent purge --refs {n}`"
                ),
            ));
        }
        leases.push(lease);
    }
    Ok(leases)
}

/// A spawn that failed has removed what it created; say so, and what to do, when the error
/// itself names no fix. `kept` are tasks whose cleanup failed too.
fn spawn_failed(e: anyhow::Error, kept: &[String]) -> anyhow::Error {
    let doctor = "`git agent doctor --fix` finds and removes what the spawn left behind";
    if e.downcast_ref::<Interrupted>().is_some() {
        if !kept.is_empty() {
            eprintln!("git-agent: {doctor}");
        }
        return e;
    }
    if !kept.is_empty() {
        return hinted(
            format!(
                "spawn failed ({e:#}), and removing task(s) {} failed too",
                kept.join(" ")
            ),
            doctor,
        );
    }
    if crate::error::find_hint(&e).is_some() {
        return e;
    }
    hinted(
        format!("spawn failed; nothing of it was kept: {e:#}"),
        "`git agent doctor` checks the engine and lists leftovers holding its networks, volumes and containers; fix what it reports, then spawn again",
    )
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
/// can be ended with a newline before git-agent's own message).
struct LastByte<W> {
    out: W,
    last: u8,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for LastByte<W> {
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5m").is_err());
    }

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
}
