//! `git agent allow`, and how a task's network use is shown by `status` and `review`.

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine, out};
use crate::egress::NetworkPolicy;
use crate::egress::domain::allow_entry;
use crate::egress::log::{Connection, Summary, summarize};
use crate::error::hinted;
use crate::runtime::{ContainerState, Runtime};
use crate::sandbox::{gateway, health};
use crate::task::lock::Lease;
use crate::task::store::{Loaded, TaskStore};

/// Let a task reach more domains. For a running task its gateway applies the change at
/// once; the domains stay with the task (also for `restart`).
///
/// Each domain also covers its subdomains; `*.example.com` covers only the subdomains. A
/// domain must be registrable or below (not `com`, `co.uk`, `github.io`), never an address or
/// a local name; addresses are opened at spawn (`--allow-address`). Prints the task's allowed
/// domains.
///
/// One change of a task's network at a time: `allow` waits for any other command changing
/// the task. For a running task the gateway takes the new policy first and confirms it; only
/// then is it recorded, so the record never lists a domain the gateway refused. When the
/// gateway cannot take it (it is down, the task's network is gone, or the reload fails) nothing
/// is recorded and `allow` fails (exit 1): `git agent restart <task>` gives the task a new
/// gateway with its recorded domains, then run `allow` again. A task that is not running just
/// records the domains for its next run.
#[derive(Debug, Args)]
pub struct AllowArgs {
    /// The task (name or unique prefix).
    pub task: String,
    /// Domains to allow.
    #[arg(required = true, value_name = "DOMAIN")]
    pub domains: Vec<String>,
}

pub async fn run_allow(args: AllowArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let name = ctx.store.resolve(&args.task)?.record.name;
    let mut add = Vec::new();
    for d in &args.domains {
        add.push(allow_entry(d).map_err(|e| {
            hinted(
                format!("bad domain '{d}': {e}"),
                "write a registrable domain such as example.com, a name below one, or *.example.com for its subdomains",
            )
        })?);
    }
    let _lock = super::lock_task(&ctx, &name, "allow").await?;
    if Lease::held(&ctx.git, &name)? {
        // Its spawn is still setting the gateway up from the policy it started with.
        return Err(hinted(
            format!("task '{name}' is still being set up by its spawn; nothing was recorded"),
            format!("run this allow again once `git agent status {name}` says running"),
        ));
    }
    // Read the task again: it may have changed while this waited for the lock.
    let loaded = super::reload(&ctx, &name)?;
    if loaded.record.network.is_none() {
        return Err(hinted(
            format!("task '{name}' predates egress control, so it has no gateway"),
            format!("restart it to give it one: git agent restart {name}"),
        ));
    }
    let policy = with_domains(loaded.record.network.clone().unwrap_or_default(), &add);
    let applied = match &loaded.record.sandbox.gateway {
        Some(gw) => {
            let rt = engine().await?;
            apply_live(&rt, &loaded, gw, &policy).await?
        }
        None => false,
    };
    crate::crash::point("allow.after-reload");
    ctx.store.update(&name, "allow", |r, _| {
        let recorded = r.network.take().unwrap_or_default();
        r.network = Some(with_domains(recorded, &add));
        Ok(vec![])
    })?;
    crate::crash::point("allow.after-record");
    if applied {
        eprintln!(
            "git-agent: task {name}'s gateway now allows {}",
            add.join(", ")
        );
    } else {
        eprintln!(
            "git-agent: task {name} is not running; its next run allows {}",
            add.join(", ")
        );
    }
    if policy.open {
        eprintln!("git-agent: note: task {name} already reaches every host (profile open)");
    }
    for d in &policy.allow {
        out(d)?;
    }
    Ok(0)
}

/// `policy` with the domains of `add` it does not have yet, sorted.
fn with_domains(mut policy: NetworkPolicy, add: &[String]) -> NetworkPolicy {
    for d in add {
        if !policy.allow.contains(d) {
            policy.allow.push(d.clone());
        }
    }
    policy.allow.sort();
    policy
}

/// Have a live run's gateway take `policy`. `Ok(false)` when the task has no live run (its
/// container does not run), so there is nothing to apply; an error (nothing recorded yet)
/// when the run is live but its gateway cannot take the policy.
async fn apply_live<R: Runtime>(
    rt: &R,
    loaded: &Loaded,
    gw: &str,
    policy: &NetworkPolicy,
) -> Result<bool> {
    let name = &loaded.record.name;
    let health = health::check(rt, loaded).await?;
    let recover = format!(
        "`git agent restart {name}` gives it a new gateway with its recorded domains; then run this allow again"
    );
    if let Some(why) = health.gateway_problem() {
        return Err(hinted(
            format!("task '{name}' cannot take new domains: {why}; nothing was recorded"),
            recover,
        ));
    }
    if health.container != Some(ContainerState::Running) {
        return Ok(false);
    }
    gateway::update_policy(rt, gw, policy).await.map_err(|e| {
        hinted(
            format!("{e:#}; the gateway keeps its old policy and nothing was recorded"),
            recover.clone(),
        )
    })?;
    Ok(true)
}

/// A task's network use, for display and JSON.
#[derive(Debug, serde::Serialize)]
pub struct NetworkUse {
    pub profile: String,
    pub open: bool,
    pub allow: Vec<String>,
    pub connections: Vec<Summary>,
}

/// Gather a task's policy and connections (live from its gateway while it runs).
pub async fn network_use<R: Runtime>(
    rt: Option<&R>,
    store: &TaskStore,
    loaded: &Loaded,
) -> Result<Option<NetworkUse>> {
    let Some(policy) = &loaded.record.network else {
        return Ok(None);
    };
    let conns: Vec<Connection> = gateway::connections(rt, store, loaded).await?;
    Ok(Some(NetworkUse {
        profile: policy.profile.clone(),
        open: policy.open,
        allow: policy.allow.clone(),
        connections: summarize(&conns),
    }))
}

impl NetworkUse {
    /// Human lines: the policy, then hosts reached and refused.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{}{}",
            self.profile,
            if self.open {
                " (every host)".to_string()
            } else if self.allow.is_empty() {
                String::new()
            } else {
                format!(", allows {}", self.allow.join(", "))
            }
        )];
        for (label, decision) in [
            ("reached", "allowed"),
            ("refused", "denied"),
            ("failed", "failed"),
        ] {
            let rows: Vec<String> = self
                .connections
                .iter()
                .filter(|s| s.decision == decision)
                .map(|s| {
                    let times = if s.count == 1 {
                        String::new()
                    } else {
                        format!(" x{}", s.count)
                    };
                    format!("{}:{}{times}", s.host, s.port)
                })
                .collect();
            if !rows.is_empty() {
                lines.push(format!("{label} {}", rows.join(", ")));
            }
        }
        lines
    }
}
