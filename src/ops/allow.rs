//! Allow: let a task reach more domains. The domains are recorded with the task (its next
//! runs allow them); for a running task its gateway takes the new policy first and confirms
//! it, and only then is it recorded, so the record never lists a domain the gateway refused.

use anyhow::Result;

use super::{Ctx, Events, lock_task, reload};
use crate::egress::NetworkPolicy;
use crate::egress::domain::allow_entry;
use crate::runtime::{ContainerState, Runtime};
use crate::sandbox::{gateway, health};
use crate::task::lock::Lease;
use crate::task::store::Loaded;

/// What went wrong in an allow, beyond the engine's and the refs' own failures. Nothing is
/// recorded in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    #[error("bad domain '{domain}': {why}")]
    BadDomain { domain: String, why: String },
    #[error("task '{task}' is still being set up by its spawn; nothing was recorded")]
    StillSpawning { task: String },
    #[error("task '{task}' predates egress control, so it has no gateway")]
    NoEgressControl { task: String },
    #[error("task '{task}' cannot take new domains: {why}; nothing was recorded")]
    GatewayUnfit { task: String, why: String },
    #[error("{detail}; the gateway keeps its old policy and nothing was recorded")]
    GatewayRefused { task: String, detail: String },
    /// A failure below the operation (the task's lock, the refs, the engine), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for AllowError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            AllowError::BadDomain { .. } => "write a registrable domain such as example.com, a name below one, or *.example.com for its subdomains".into(),
            AllowError::StillSpawning { task } => {
                format!("run this allow again once `git agent status {task}` says running")
            }
            AllowError::NoEgressControl { task } => {
                format!("restart it to give it one: git agent restart {task}")
            }
            AllowError::GatewayUnfit { task, .. } | AllowError::GatewayRefused { task, .. } => {
                format!(
                    "`git agent restart {task}` gives it a new gateway with its recorded domains; then run this allow again"
                )
            }
            AllowError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            AllowError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            AllowError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// What an allow did.
#[derive(Debug)]
pub struct Allowed {
    pub task: String,
    /// The domains asked for, as recorded (normalized).
    pub added: Vec<String>,
    /// Whether a running gateway took them at once (else they wait for the next run).
    pub applied: bool,
    /// The task reaches every host anyway (profile open).
    pub open: bool,
    /// Every domain the task now allows, sorted.
    pub allow: Vec<String>,
}

/// Check domains as `allow` takes them (see [`allow_entry`]).
pub fn parse_domains(domains: &[String]) -> Result<Vec<String>, AllowError> {
    domains
        .iter()
        .map(|d| {
            allow_entry(d).map_err(|why| AllowError::BadDomain {
                domain: d.clone(),
                why,
            })
        })
        .collect()
}

/// Allow `domains` to task `task` (any unique prefix of its name). The engine is reached
/// only for a task with a gateway.
pub async fn run(
    ctx: &Ctx,
    task: &str,
    domains: &[String],
    events: &dyn Events,
) -> Result<Allowed, AllowError> {
    let name = ctx.store.resolve_local(task, "allow")?.record.name;
    let add = parse_domains(domains)?;
    let _lock = lock_task(ctx, &name, "allow", events).await?;
    if Lease::held(&ctx.git, &name)? {
        // Its spawn is still setting the gateway up from the policy it started with.
        return Err(AllowError::StillSpawning { task: name });
    }
    // Read the task again: it may have changed while this waited for the lock.
    let loaded = reload(ctx, &name)?;
    if loaded.record.network.is_none() {
        return Err(AllowError::NoEgressControl { task: name });
    }
    let policy = with_domains(loaded.record.network.clone().unwrap_or_default(), &add);
    let applied = match &loaded.record.sandbox.gateway {
        Some(gw) => {
            let rt = super::engine_of(ctx, &loaded.record).await?;
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
    Ok(Allowed {
        task: name,
        added: add,
        applied,
        open: policy.open,
        allow: policy.allow,
    })
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
) -> Result<bool, AllowError> {
    let name = &loaded.record.name;
    let health = health::check(rt, loaded).await?;
    if let Some(why) = health.gateway_problem() {
        return Err(AllowError::GatewayUnfit {
            task: name.clone(),
            why,
        });
    }
    if health.container != Some(ContainerState::Running) {
        return Ok(false);
    }
    gateway::update_policy(rt, gw, policy)
        .await
        .map_err(|e| AllowError::GatewayRefused {
            task: name.clone(),
            detail: format!("{e:#}"),
        })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_added_once_and_sorted() {
        let p = with_domains(
            NetworkPolicy {
                allow: vec!["b.example".into()],
                ..Default::default()
            },
            &["a.example".into(), "b.example".into()],
        );
        assert_eq!(p.allow, ["a.example", "b.example"]);
    }

    #[test]
    fn a_bad_domain_says_what_to_write() {
        let e = parse_domains(&["com".into()]).unwrap_err();
        assert!(e.to_string().starts_with("bad domain 'com': "), "{e}");
        assert!(crate::ops::OpError::hint(&e).is_some_and(|h| h.contains("example.com")));
        let err: anyhow::Error = e.into();
        assert!(crate::error::find_hint(&err).is_some_and(|h| h.contains("*.example.com")));
    }
}
