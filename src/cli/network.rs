//! `git agent allow`, and how a task's network use is shown by `status` and `review`.

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine, out};
use crate::egress::NetworkPolicy;
use crate::egress::domain::allow_entry;
use crate::egress::log::{Connection, Summary, summarize};
use crate::error::hinted;
use crate::runtime::{ContainerState, Runtime};
use crate::sandbox::gateway;
use crate::task::store::{Loaded, TaskStore};

/// Let a task reach more domains. For a running task its gateway applies the change at
/// once; the domains stay with the task (also for `restart`).
///
/// Each domain also covers its subdomains; `*.example.com` covers only the subdomains. A
/// domain must be registrable or below (not `com`, `co.uk`, `github.io`), never an address or
/// a local name; addresses are opened at spawn (`--allow-address`). Prints the task's allowed
/// domains.
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
    let loaded = ctx.store.resolve(&args.task)?;
    let name = loaded.record.name.clone();
    let mut add = Vec::new();
    for d in &args.domains {
        add.push(allow_entry(d).map_err(|e| {
            hinted(
                format!("bad domain '{d}': {e}"),
                "write a registrable domain such as example.com, a name below one, or *.example.com for its subdomains",
            )
        })?);
    }
    if loaded.record.network.is_none() {
        return Err(hinted(
            format!("task '{name}' predates egress control, so it has no gateway"),
            format!("restart it to give it one: git agent restart {name}"),
        ));
    }
    // Reach the engine before recording anything: an allow that fails changes nothing.
    let rt = match &loaded.record.sandbox.gateway {
        Some(_) => Some(engine().await?),
        None => None,
    };
    let loaded = ctx.store.update(&name, "allow", |r, _| {
        let policy = r.network.get_or_insert_with(NetworkPolicy::default);
        for d in &add {
            if !policy.allow.contains(d) {
                policy.allow.push(d.clone());
            }
        }
        policy.allow.sort();
        Ok(vec![])
    })?;
    let policy = loaded.record.network.clone().unwrap_or_default();
    if let (Some(gw), Some(rt)) = (&loaded.record.sandbox.gateway, &rt) {
        if rt.state(gw).await? == ContainerState::Running {
            gateway::update_policy(rt, gw, &policy).await.map_err(|e| {
                hinted(
                    format!("{e:#}"),
                    format!("the domains are recorded; `git agent restart {name}` applies them"),
                )
            })?;
            eprintln!(
                "git-agent: task {name}'s gateway now allows {}",
                add.join(", ")
            );
        }
    }
    if policy.open {
        eprintln!("git-agent: note: task {name} already reaches every host (profile open)");
    }
    for d in &policy.allow {
        out(d)?;
    }
    Ok(0)
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
