//! Which engine a new task runs on (see [`crate::runtime::engines`] for the rule): the one
//! `--engine` or `agent.engine` pins, else the reachable engine with the most room. Each
//! engine's load is what it runs now, whoever started it: one listing of its containers.

use std::time::Duration;

use anyhow::Result;
use futures_util::future::join_all;

use super::Ctx;
use crate::error::hinted;
use crate::runtime::Runtime;
use crate::runtime::engines::{self, DEFAULT, EngineDef, Load, Refusal};
use crate::runtime::select::Engine;

/// How long placement waits for an engine before it counts as unreachable.
const PROBE: Duration = Duration::from_secs(5);

/// The engine chosen for new tasks: its name as the task records it (`None`: the
/// environment's engine) and a connection to it.
pub struct Placed {
    pub name: Option<String>,
    pub engine: Engine,
}

/// Choose the engine for `need` new tasks; `pinned` is `--engine`, else `agent.engine`.
pub async fn place(ctx: &Ctx, pinned: Option<&str>, need: usize) -> Result<Placed> {
    let defs = engines::configured(&ctx.config)?;
    let pinned = pinned
        .or_else(|| ctx.config.get("agent.engine"))
        .map(str::trim);
    let candidates: Vec<EngineDef> = match pinned {
        Some(name) => vec![pinned_def(&defs, name)?],
        None => defs,
    };
    // The one engine without a limit needs no counting (the usual single-engine setup).
    if let [def] = candidates.as_slice()
        && def.limit.is_none()
    {
        let engine = Engine::connect_to(def, crate::runtime::docker::CONNECT_TIMEOUT).await?;
        return Ok(Placed {
            name: recorded(&def.name),
            engine,
        });
    }
    let probes = join_all(candidates.iter().map(probe)).await;
    let mut loads = Vec::new();
    let mut engines = Vec::new();
    let mut failures = Vec::new();
    for (def, probed) in candidates.iter().zip(probes) {
        let (running, engine) = match probed {
            Ok((running, engine)) => (running, Some(engine)),
            Err(e) => {
                failures.push(format!("{}: {e:#}", def.name));
                (0, None)
            }
        };
        loads.push(Load {
            name: def.name.clone(),
            // The tasks being placed need room too: a spawn of several takes one engine.
            running: running.saturating_add(u32::try_from(need.max(1) - 1).unwrap_or(u32::MAX)),
            limit: def.limit,
            reachable: engine.is_some(),
        });
        engines.push(engine);
    }
    match engines::place(&loads) {
        Ok(name) => {
            let at = candidates.iter().position(|d| d.name == name).expect("placed on a candidate");
            let engine = engines.swap_remove(at).expect("placed on a reachable engine");
            Ok(Placed {
                name: recorded(&name),
                engine,
            })
        }
        Err(Refusal::Unreachable(_)) => Err(hinted(
            format!("no engine answered: {}", failures.join("; ")),
            "check them with `git agent doctor`; a task can be queued meanwhile with `git agent add`",
        )
        .context(NoRoom)),
        Err(Refusal::Full(loads)) => {
            let said: Vec<String> = loads
                .iter()
                .map(|l| match (l.reachable, l.limit) {
                    (false, _) => format!("{} unreachable", l.name),
                    (true, Some(n)) => format!("{} runs {} of {n}", l.name, l.running),
                    (true, None) => format!("{} runs {}", l.name, l.running),
                })
                .collect();
            Err(hinted(
                format!("every engine is at its limit ({})", said.join(", ")),
                "queue the task with `git agent add` (`git agent serve` starts it once an engine has room), or raise a limit: git config agent.engine.<name>.limit <n>",
            )
            .context(NoRoom))
        }
    }
}

/// Beneath a placement that found no engine with room (or none answering): a queued task
/// waits for one.
#[derive(Debug)]
struct NoRoom;

impl std::fmt::Display for NoRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no engine can take the task")
    }
}

impl std::error::Error for NoRoom {}

/// Did placement fail only for want of room (a queued task then waits)?
pub fn is_no_room(err: &anyhow::Error) -> bool {
    err.downcast_ref::<NoRoom>().is_some()
}

/// Tasks on the environment's engine record no engine (as before engines had names).
fn recorded(name: &str) -> Option<String> {
    (name != DEFAULT).then(|| name.to_string())
}

fn pinned_def(defs: &[EngineDef], name: &str) -> Result<EngineDef> {
    if let Some(def) = defs.iter().find(|d| d.name == name) {
        return Ok(def.clone());
    }
    if name == DEFAULT && defs.iter().all(|d| d.address.is_none()) {
        return Ok(EngineDef::environment());
    }
    let known: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    Err(hinted(
        format!(
            "there is no engine named '{name}' (configured: {})",
            known.join(", ")
        ),
        format!("name one with `git config agent.engine.{name}.url <url>`, or pick one of those"),
    ))
}

/// Connect to an engine and count the tasks running there (any repository's).
async fn probe(def: &EngineDef) -> Result<(u32, Engine)> {
    let engine = Engine::connect_to(def, PROBE).await?;
    let inv = tokio::time::timeout(PROBE, engine.inventory(&[]))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", PROBE.as_secs()))??;
    Ok((running_tasks(&inv), engine))
}

/// Task containers that run (gateways, wardens and helpers are not tasks).
fn running_tasks(inv: &crate::runtime::Inventory) -> u32 {
    let n = inv
        .containers
        .iter()
        .filter(|(name, state)| {
            is_task_container(name) && matches!(state, crate::runtime::ContainerState::Running)
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A task's container is named `git-agent-<repository>.task.<task>` (see
/// [`crate::sandbox::RepoId::object_names`]).
fn is_task_container(name: &str) -> bool {
    let name = name.trim_start_matches('/');
    name.starts_with("git-agent-")
        && name
            .split_once('.')
            .is_some_and(|(_, rest)| rest.starts_with("task."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_task_containers_count() {
        assert!(is_task_container("git-agent-b317e81b.task.fix"));
        assert!(is_task_container("/git-agent-b317e81b.task.fix"));
        assert!(!is_task_container("git-agent-b317e81b.gw.fix"));
        assert!(!is_task_container("git-agent-b317e81b.warden.task"));
        assert!(!is_task_container("other.task.x"));
    }
}
