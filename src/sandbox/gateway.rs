//! A task's egress gateway: a sidecar container, on the task's internal network (as
//! [`ALIAS`]) and on an outer network with a route out. It runs git-agent's own proxy
//! (dockerfiles/git-agent-gateway) that enforces the task's [`NetworkPolicy`] (allowed
//! domains, public addresses only, checked at connect time, ports 443/80 unless the user adds
//! more) and records every decision, and the credential vault that holds the agent's real API
//! keys (see [`crate::egress::vault`]). Both listen only on the gateway's address on the
//! task's own network.
//!
//! Everything it needs is uploaded into it through the engine API (no host files are
//! mounted), so it works the same with a remote engine. It lives exactly as long as the
//! task's run: created before the task's container, removed when the run is seen to end
//! (and the task's network with it, see [`super::network`]).

use anyhow::{Context, Result, bail};

use super::{ObjectNames, RepoId};
use crate::egress::log::{self, Connection};
use crate::egress::vault::{self, Routes, Secret, Upstream};
use crate::egress::{NetworkPolicy, normalize_domain};
use crate::error::{hinted, sanitize};
use crate::runtime::subnet::Ipv4Net;
use crate::runtime::{
    EngineErrorKind, GatewaySpec, Hardening, Hosts, ResourceLimits, Runtime, Upload, UserId,
    engine_kind,
};
use crate::task::store::{CONNECTIONS_FILE, Loaded, TaskStore};
use std::net::Ipv4Addr;

/// The gateway's name on a task's internal network.
pub const ALIAS: &str = "git-agent-gateway";
pub const PROXY_PORT: u16 = 3128;
pub const VAULT_PORT: u16 = 8080;
const CONF_DIR: &str = "/etc/git-agent-gateway";
const HELPER: &str = "/usr/local/bin/git-agent-gateway";
/// The gateway's unprivileged user (nobody).
const GATEWAY_UID: u64 = 65534;
/// Most bytes of the proxy's log read back.
const LOG_LIMIT: usize = 16 << 20;

/// How a task's agent reaches its model API, from the host's point of view.
#[derive(Debug, Clone, Default)]
pub struct AgentAccess {
    /// Credential variables and their real values.
    pub credentials: Vec<(String, String)>,
    /// The variable that points the agent at its API.
    pub base_url_env: Option<String>,
    /// The real API base URL.
    pub upstream: Option<String>,
    /// Hosts the agent needs for its API when it cannot go through the vault.
    pub api_domains: Vec<String>,
    /// What the vault forwards (methods and path prefixes of the agent's API).
    pub routes: Routes,
}

/// What a task's gateway is set up with, and what the agent's environment gets.
#[derive(Debug, Clone)]
pub struct GatewayPlan {
    pub policy: NetworkPolicy,
    pub vault: Option<(Upstream, Vec<Secret>, Routes)>,
    /// Environment for the task's container: proxy settings, stand-ins, the vault's URL
    /// (and real credentials only for agents the vault cannot stand in for).
    pub env: Vec<String>,
    /// Something the user should know (printed by the caller).
    pub warning: Option<String>,
}

/// The environment that sends a container's HTTP(S) through the gateway (no credentials):
/// the task's, and its preview's and services'.
pub fn proxy_env() -> Vec<String> {
    let proxy = format!("http://{ALIAS}:{PROXY_PORT}");
    vec![
        format!("HTTP_PROXY={proxy}"),
        format!("HTTPS_PROXY={proxy}"),
        format!("http_proxy={proxy}"),
        format!("https_proxy={proxy}"),
        format!("NO_PROXY={ALIAS},localhost,127.0.0.1"),
        format!("no_proxy={ALIAS},localhost,127.0.0.1"),
    ]
}

impl GatewayPlan {
    pub fn new(mut policy: NetworkPolicy, access: &AgentAccess) -> Result<GatewayPlan> {
        let mut env = proxy_env();
        let mut vault = None;
        let mut warning = None;
        if policy.api && !access.credentials.is_empty() {
            match (&access.base_url_env, &access.upstream) {
                (Some(var), Some(url)) => {
                    let upstream = Upstream::parse(url)?;
                    let mut secrets = Vec::new();
                    for (k, v) in &access.credentials {
                        let s = Secret {
                            var: k.clone(),
                            real: v.clone(),
                            standin: vault::standin()?,
                        };
                        env.push(format!("{k}={}", s.standin));
                        secrets.push(s);
                    }
                    env.push(format!("{var}={}", vault::local_url(ALIAS, VAULT_PORT)));
                    vault = Some((upstream, secrets, access.routes.clone()));
                }
                _ => {
                    for (k, v) in &access.credentials {
                        env.push(format!("{k}={v}"));
                    }
                    warning = Some(
                        "this agent's API keys go into its container: its definition has no base_url_env and api_url for the credential vault".to_string(),
                    );
                }
            }
        }
        if policy.api && vault.is_none() {
            let mut hosts = access.api_domains.clone();
            if let Some(url) = &access.upstream {
                hosts.push(Upstream::parse(url)?.host);
            }
            for h in hosts {
                let d = normalize_domain(&h).map_err(|e| {
                    hinted(
                        format!("bad API domain '{h}': {e}"),
                        "fix api_domains in the agent's definition",
                    )
                })?;
                if !policy.allow.contains(&d) {
                    policy.allow.push(d);
                }
            }
            policy.allow.sort();
        }
        Ok(GatewayPlan {
            policy,
            vault,
            env,
            warning,
        })
    }

    /// The files uploaded into the gateway before it starts.
    fn files(&self) -> Result<Vec<Upload>> {
        let mut files = vec![upload("policy.json", self.policy.proxy_policy(), 0o644)];
        if let Some((upstream, secrets, routes)) = &self.vault {
            files.push(upload(
                "vault.json",
                vault::vault_config(upstream, secrets, routes)?,
                0o600,
            ));
        }
        Ok(files)
    }
}

/// The gateway's fixed address (empty: none, it finds its address by its alias).
fn address_file(address: Option<Ipv4Addr>) -> Upload {
    let text = address.map(|a| a.to_string()).unwrap_or_default();
    upload("address", text, 0o644)
}

fn upload(name: &str, text: String, mode: u32) -> Upload {
    Upload {
        name: name.to_string(),
        data: text.into_bytes(),
        mode,
        owner: GATEWAY_UID,
    }
}

/// The gateway's confinement: its image's unprivileged user, no capabilities, no new
/// privileges, small limits and an init (the proxy and the vault run side by side). Its root
/// stays writable: the configuration is uploaded before it starts.
fn hardening() -> Hardening {
    Hardening {
        user: UserId::same(GATEWAY_UID as u32),
        keep_caps: vec![],
        no_new_privileges: true,
        read_only_root: false,
        tmpfs: vec![],
        limits: ResourceLimits {
            pids: 256,
            memory: 256 << 20,
            nano_cpus: None,
            log: None,
        },
        init: true,
    }
}

/// The outer network gateways join: `agent.egressNetwork`, else the engine's default bridge.
pub fn outer_network(config: &crate::git::Config) -> String {
    config
        .get("agent.egressNetwork")
        .filter(|n| !n.is_empty())
        .unwrap_or("bridge")
        .to_string()
}

/// Where a task reaches its gateway, as `host:port,...` (the proxy, and the vault when the
/// task has one): what the sandbox helper waits for before it starts a command by itself.
pub fn endpoints(vault: bool) -> String {
    let mut eps = format!("{ALIAS}:{PROXY_PORT}");
    if vault {
        eps.push_str(&format!(",{ALIAS}:{VAULT_PORT}"));
    }
    eps
}

/// Create, configure and start a task's gateway. The task's internal network must exist;
/// `subnet` is its subnet (the gateway takes its fixed address there, see
/// [`crate::sandbox::network::gateway_address`]).
pub async fn start<R: Runtime>(
    rt: &R,
    repo: &RepoId,
    task: &str,
    image: &str,
    outer: &str,
    plan: &GatewayPlan,
    subnet: Option<&Ipv4Net>,
) -> Result<String> {
    let address = subnet.map(super::network::gateway_address);
    let created = create(rt, repo, task, image, outer, plan, address).await?;
    bring_up(rt, &created, subnet).await
}

/// The names a container on a task's network needs to find the gateway: the gateway's alias
/// at its fixed address (none when the network's subnet is not git-agent's).
pub fn hosts(subnet: Option<&Ipv4Net>) -> Hosts {
    subnet
        .map(|s| vec![(ALIAS.to_string(), super::network::gateway_address(s))])
        .unwrap_or_default()
}

/// A gateway created and configured, on its outer network only.
pub struct Created {
    pub(super) id: String,
    /// Its `address` is the one it was told (see [`create`]).
    pub(super) spec: GatewaySpec,
}

/// A gateway's spec: named `name`, labelled `labels`, on network `network` at `address`
/// (a task's own, or a spare's, see [`super::spare`]); everything else is the same for all.
pub fn spec(
    name: String,
    network: String,
    image: &str,
    outer: &str,
    labels: std::collections::HashMap<String, String>,
    address: Option<Ipv4Addr>,
) -> GatewaySpec {
    GatewaySpec {
        name,
        image: image.to_string(),
        labels,
        inner: network,
        outer: outer.to_string(),
        alias: ALIAS.to_string(),
        // The vault may forward to a model API the user runs on the host.
        host_alias: Some("host.docker.internal".into()),
        hardening: hardening(),
        address,
    }
}

/// Create a spare gateway on its network and start it: it listens at its address with its
/// modules loaded and reads no policy until [`claim`] (the `spare` marker).
pub async fn start_spare<R: Runtime>(rt: &R, spec: GatewaySpec) -> Result<Created> {
    let id = rt.create_gateway(&spec).await?;
    let created = Created { id, spec };
    let files = [
        address_file(created.spec.address),
        upload("spare", String::new(), 0o644),
    ];
    rt.upload(&created.id, CONF_DIR, &files).await?;
    rt.attach_gateway(&created.id, &created.spec).await?;
    rt.start(&created.id).await?;
    Ok(created)
}

/// Give a claimed spare its task's policy (and vault): one archive, `claimed` last (the
/// gateway reads the rest only once that is there).
pub async fn claim<R: Runtime>(rt: &R, created: &Created, plan: &GatewayPlan) -> Result<()> {
    let mut files = plan.files()?;
    files.push(upload("claimed", String::new(), 0o644));
    rt.upload(&created.id, CONF_DIR, &files).await
}

/// Wait until a started gateway serves (see [`start_ready`]).
pub async fn ready<R: Runtime>(rt: &R, created: &Created) -> Result<()> {
    helper(rt, &created.id, &["ready"]).await.map_err(|e| {
        hinted(
            format!("the task's gateway did not come up: {e:#}"),
            "run `git agent doctor`; a vault that cannot resolve its API host keeps retrying",
        )
    })
}

/// Create a task's gateway on its outer network and upload its configuration: everything
/// that does not need the task's network, so it can go on while that network is created.
/// `address`: its fixed address on the task's network, where it will serve (told in its
/// configuration; [`attach`] corrects it if the network got another subnet).
pub async fn create<R: Runtime>(
    rt: &R,
    repo: &RepoId,
    task: &str,
    image: &str,
    outer: &str,
    plan: &GatewayPlan,
    address: Option<Ipv4Addr>,
) -> Result<Created> {
    let names = repo.object_names(task);
    let spec = spec(
        names.gateway,
        names.network,
        image,
        outer,
        repo.labels(task),
        address,
    );
    let made = async {
        let id = rt.create_gateway(&spec).await?;
        let mut files = plan.files()?;
        files.push(address_file(address));
        rt.upload(&id, CONF_DIR, &files).await?;
        Ok::<_, anyhow::Error>(id)
    };
    let id = named_outer(rt, outer, made.await).await?;
    Ok(Created { id, spec })
}

/// Attach a created gateway to its task's network, start it and wait until it serves.
pub async fn bring_up<R: Runtime>(
    rt: &R,
    created: &Created,
    subnet: Option<&Ipv4Net>,
) -> Result<String> {
    attach(rt, created, subnet).await?;
    start_ready(rt, created).await
}

/// Attach a created gateway to its task's network, at its fixed address in `subnet` when
/// there is one (which it is told in `address`: it serves there, and only there). (The engine
/// is not asked to connect a container to a network while it starts another on it: the
/// task's container starts after this.)
pub async fn attach<R: Runtime>(rt: &R, created: &Created, subnet: Option<&Ipv4Net>) -> Result<()> {
    let Created { id, spec } = created;
    let address = subnet.map(super::network::gateway_address);
    if address != spec.address {
        rt.upload(id, CONF_DIR, &[address_file(address)]).await?;
    }
    let spec = GatewaySpec {
        address,
        ..spec.clone()
    };
    named_outer(rt, &spec.outer, rt.attach_gateway(id, &spec).await).await
}

/// Start an attached gateway and wait until it serves.
pub async fn start_ready<R: Runtime>(rt: &R, created: &Created) -> Result<String> {
    let Created { id, spec } = created;
    named_outer(rt, &spec.outer, rt.start(id).await).await?;
    ready(rt, created).await?;
    Ok(id.clone())
}

/// A failure to create or start a gateway, said in terms of the one name the user chose:
/// when the engine misses something named, the user's outer network is the one they can fix
/// (the image and the task's network are git-agent's own).
async fn named_outer<R: Runtime, T>(rt: &R, outer: &str, result: Result<T>) -> Result<T> {
    match result {
        Err(e)
            if outer != "bridge"
                && engine_kind(&e) == Some(EngineErrorKind::NotFound)
                && !rt.network_exists(outer).await.unwrap_or(true) =>
        {
            Err(hinted(
                format!("{e:#}"),
                format!("create the network ({outer}) or unset agent.egressNetwork"),
            ))
        }
        other => other,
    }
}

/// Run the gateway's helper with one command.
async fn helper<R: Runtime>(rt: &R, gateway: &str, args: &[&str]) -> Result<()> {
    let mut sink = tokio::io::sink();
    let mut cmd = vec![HELPER.to_string()];
    cmd.extend(args.iter().map(|a| a.to_string()));
    let out = rt
        .exec(gateway, &cmd, None::<&[u8]>, &mut sink, 1 << 16)
        .await?;
    if out.exit_code != 0 {
        let why = sanitize(String::from_utf8_lossy(&out.stderr).trim());
        if why.is_empty() {
            bail!(
                "the gateway's helper ({}) ended with status {} and said nothing",
                args.join(" "),
                out.exit_code
            );
        }
        bail!("{why}");
    }
    Ok(())
}

/// Replace a running gateway's policy, and return only once its proxy runs with it.
///
/// The file goes in under a name carrying the sha256 of its bytes; the gateway's helper
/// (`reload <digest>`) refuses it unless the digest matches (an incomplete upload) and the
/// policy is well formed, renames it over the old one (the proxy never reads part of a file),
/// has the proxy re-read it, and exits 0 only when the proxy acknowledged that digest. Any
/// failure leaves the gateway on its old policy and is an error.
pub async fn update_policy<R: Runtime>(
    rt: &R,
    gateway: &str,
    policy: &NetworkPolicy,
) -> Result<()> {
    let text = policy.proxy_policy();
    let digest = sha256_hex(text.as_bytes());
    rt.upload(
        gateway,
        CONF_DIR,
        &[upload(&format!("policy.json.{digest}"), text, 0o644)],
    )
    .await
    .context("cannot upload the new policy into the gateway")?;
    crate::crash::point("allow.after-upload");
    helper(rt, gateway, &["reload", &digest])
        .await
        .context("the gateway did not take the new policy")
}

/// The sha256 digest of the policy a running gateway's proxy enforces (its own report).
pub async fn live_policy_digest<R: Runtime>(rt: &R, gateway: &str) -> Result<String> {
    let mut out = Vec::new();
    let run = rt
        .exec(
            gateway,
            &[HELPER.to_string(), "policy".to_string()],
            None::<&[u8]>,
            &mut out,
            1 << 16,
        )
        .await?;
    if run.exit_code != 0 {
        bail!(
            "the gateway could not report its policy ({})",
            crate::error::exit_detail(run.exit_code, &run.stderr)
        );
    }
    Ok(sanitize(String::from_utf8_lossy(&out).trim()))
}

/// The digest [`update_policy`] names a policy by (and the gateway acknowledges).
pub fn policy_digest(policy: &NetworkPolicy) -> String {
    sha256_hex(policy.proxy_policy().as_bytes())
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The connections recorded so far by a gateway that still exists.
pub async fn live_connections<R: Runtime>(rt: &R, gateway: &str) -> Result<Vec<Connection>> {
    let raw = rt.timestamped_log(gateway, LOG_LIMIT).await?;
    Ok(log::parse(&String::from_utf8_lossy(&raw)))
}

/// A task's connections: live from its gateway while it runs, else as recorded.
pub async fn connections<R: Runtime>(
    rt: Option<&R>,
    store: &TaskStore,
    loaded: &Loaded,
) -> Result<Vec<Connection>> {
    if let (Some(rt), Some(gw)) = (rt, &loaded.record.sandbox.gateway)
        && let Ok(c) = live_connections(rt, gw).await
    {
        return Ok(c);
    }
    Ok(store
        .state_file(loaded, CONNECTIONS_FILE)?
        .map(|b| log::from_tsv(&String::from_utf8_lossy(&b)))
        .unwrap_or_default())
}

/// The run is over: keep the gateway's connection log with the task, then remove the
/// gateway (its vault and every stand-in die with it). A task whose run has ended then gives
/// back its network too (see [`super::network::release`]); the caller holds the task's lock.
pub async fn retire<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    loaded: Loaded,
    names: &ObjectNames,
) -> Result<Loaded> {
    let repo = RepoId::of(store.git());
    // The task's services live exactly as long as its run.
    super::services::remove(rt, &repo, &loaded.record.name).await?;
    let Some(gw) = loaded.record.sandbox.gateway.clone() else {
        return super::network::release(rt, store, loaded, names, None).await;
    };
    let network = loaded.record.sandbox.network.clone();
    let mut conns = live_connections(rt, &gw).await.unwrap_or_default();
    // Connections from earlier runs (before a restart) stay in front.
    let mut all = store
        .state_file(&loaded, CONNECTIONS_FILE)?
        .map(|b| log::from_tsv(&String::from_utf8_lossy(&b)))
        .unwrap_or_default();
    all.append(&mut conns);
    all.truncate(log::MAX_ENTRIES);
    let tsv = log::to_tsv(&all);
    let loaded = store
        .update_files(
            &loaded.record.name,
            "network log",
            &[(CONNECTIONS_FILE, tsv.as_bytes())],
            |r, _| {
                r.sandbox.gateway = None;
                super::network::forget(r);
                Ok(vec![])
            },
        )
        .context("cannot record the task's connections")?;
    rt.remove_container(&names.gateway).await?;
    let loaded = super::network::release(rt, store, loaded, names, network.as_deref()).await?;
    // The last run of the repository to end takes its spares along (best effort: a spare
    // left is `gc`'s and `doctor --fix`'s to remove).
    if let Ok(tasks) = store.all() {
        super::spare::retire_if_idle(rt, &repo, &tasks).await.ok();
    }
    Ok(loaded)
}
