//! How a task's run is set up, shared by spawn, restart and promotion's one-off agent
//! commands: the agent's environment and its way to its model API, the task's gateway
//! (egress policy and vault), the repository files a spawn uses, and the root file system
//! setting.
//!
//! Owns turning settings, flags and agent definitions into a run's environment and gateway
//! plan; it must not print (notes and warnings go out as events) nor decide which task runs.

use anyhow::Result;

use super::{Ctx, Event, Events};
use crate::agent::{Agent, credentials};
use crate::data::Search;
use crate::image;
use crate::runtime::Runtime;
use crate::sandbox::gateway::{AgentAccess, GatewayPlan};
use crate::template;

/// What went wrong in setting a run up. A refused setting, agent definition, network
/// profile or credential is reported by the module that reads it ([`crate::agent`],
/// [`crate::egress`]), with its own hint: those pass through as they came.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for SetupError {
    fn hint(&self) -> Option<String> {
        None
    }

    fn below(&self) -> Option<&anyhow::Error> {
        let SetupError::Other(e) = self;
        Some(e)
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            SetupError::Other(e) => Ok(e),
        }
    }
}

super::error::pass_on!(SetupError => super::spawn::SpawnError, super::restart::RestartError);

/// The environment a task's agent runs with (its fixed settings), and how it reaches its
/// model API: its credentials and API base URL, which go to the task's gateway.
pub fn agent_env(ctx: &Ctx, agent: &Agent) -> Result<(Vec<String>, AgentAccess), SetupError> {
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
) -> Result<Vec<String>, SetupError> {
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

/// Which network a task asks for: a profile (else agent.network) and what it adds.
#[derive(Debug, Clone, Default)]
pub struct NetworkChoice {
    pub profile: Option<String>,
    /// Domains (and `*.domain` patterns) the task may reach besides its profile's.
    pub allow: Vec<String>,
    /// Non-public addresses or networks the task may reach.
    pub allow_address: Vec<String>,
}

/// The gateway setup of a task: its egress policy and, for its agent's API, the vault.
pub fn gateway_plan(
    ctx: &Ctx,
    search: &Search,
    agent: &Agent,
    network: &NetworkChoice,
    events: &dyn Events,
) -> Result<(Vec<String>, GatewayPlan), SetupError> {
    let repo = crate::egress::repo::load(&ctx.git.dir)?;
    let policy = crate::egress::resolve(
        search,
        &ctx.config,
        &crate::egress::Request {
            profile: network.profile.as_deref(),
            allow: &network.allow,
            allow_address: &network.allow_address,
        },
        &repo.allow,
    )?;
    if !policy.addresses.is_empty() {
        events.emit(Event::step(
            None,
            format!(
                "note: the task may reach these non-public addresses (agent.allowAddress, --allow-address): {}",
                policy.addresses.join(", ")
            ),
        ));
    }
    run_plan(ctx, agent, policy, events)
}

/// One run of `agent` under `policy`: its environment (its settings plus what the gateway
/// hands it: proxy, stand-ins, the vault's URL) and its gateway's setup.
pub fn run_plan(
    ctx: &Ctx,
    agent: &Agent,
    policy: crate::egress::NetworkPolicy,
    events: &dyn Events,
) -> Result<(Vec<String>, GatewayPlan), SetupError> {
    let (mut env, access) = agent_env(ctx, agent)?;
    let plan = GatewayPlan::new(policy, &access)?;
    if let Some(w) = &plan.warning {
        events.emit(Event::warning(None, format!("agent {}: {w}", agent.name)));
    }
    env.extend(plan.env.iter().cloned());
    Ok((env, plan))
}

/// Give a task a new gateway under `policy` (any old one is removed), with fresh stand-ins:
/// for a restarted run, or a one-off agent command of a finished task. The task's network
/// must exist (`subnet`: its subnet, where the gateway takes its fixed address). Returns the
/// run's environment, the plan, and the gateway's id.
pub async fn fresh_gateway<R: Runtime>(
    ctx: &Ctx,
    rt: &R,
    agent: &Agent,
    policy: crate::egress::NetworkPolicy,
    task: &str,
    subnet: Option<&crate::runtime::subnet::Ipv4Net>,
    events: &dyn Events,
) -> Result<(Vec<String>, GatewayPlan, String), SetupError> {
    use crate::sandbox::gateway;
    rt.remove_container(&ctx.repo.object_names(task).gateway)
        .await?;
    let (env, plan) = run_plan(ctx, agent, policy, events)?;
    let image = super::image::ensure(rt, &image::gateway_plan(&ctx.config)?, events).await?;
    let id = gateway::start(
        rt,
        &ctx.repo,
        task,
        &image,
        &gateway::outer_network(&ctx.config),
        &plan,
        subnet,
    )
    .await?;
    Ok((env, plan, id))
}

/// `--read-only`, else `agent.readOnlyRoot`.
pub fn read_only_root(ctx: &Ctx, flag: bool) -> Result<bool, SetupError> {
    if flag {
        return Ok(true);
    }
    Ok(ctx.config.bool("agent.readOnlyRoot", false)?)
}
