//! Which engine a new task runs on (see [`crate::runtime::engines`] for the rule): the one
//! `--engine` or `agent.engine` pins, else the reachable engine with the most room. An
//! engine's load is the user's tasks running there: those of every repository git-agent
//! knows (the registry `list --all` and `serve` use) whose record names the engine and whose
//! container the engine runs (or that are being started). A limit is the user's share of an
//! engine, whoever else uses it.

use std::time::Duration;

use anyhow::Result;
use futures_util::future::join_all;

use super::Ctx;
use crate::error::hinted;
use crate::runtime::engines::{self, DEFAULT, EngineDef, Load, Refusal};
use crate::runtime::select::Engine;
use crate::runtime::{ContainerState, Runtime};
use crate::task::Status;

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
        check_boundary(ctx, &def.name, &engine).await?;
        return Ok(Placed {
            name: recorded(&def.name),
            engine,
        });
    }
    // This repository's tasks count against the limits of spawns in the user's others.
    crate::registry::register(&ctx.git.dir, &ctx.git.common_dir).ok();
    let mine = my_live_tasks(ctx);
    let probes = join_all(candidates.iter().map(|d| probe(d, &mine))).await;
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
            check_boundary(ctx, &name, &engine).await?;
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

/// Refuse an engine that would not hold a task in, unless the user accepted it: a Podman
/// reached off its socket, whose task networks keep a DNS server (aardvark-dns) forwarding
/// every name to the host's resolvers (a task could send data out in lookups); an engine that
/// would not enforce a task's limits (rootless Podman on cgroups v1).
async fn check_boundary(ctx: &Ctx, name: &str, engine: &Engine) -> Result<()> {
    let gap = match engine {
        Engine::Docker(d) => d.podman_dns_gap().await,
        #[cfg(feature = "local-runtime")]
        _ => false,
    };
    if gap && !ctx.config.bool("agent.allowPodmanDns", false)? {
        return Err(hinted(
            format!(
                "the engine '{name}' is Podman reached other than through its local socket: its task networks would keep a name server that resolves any name through the host's resolvers, so a task could send data out in DNS lookups, around its gateway"
            ),
            "reach Podman through its socket on this machine (unix://), run tasks on Docker, or accept that gap: git config --global agent.allowPodmanDns true",
        ));
    }
    let unenforced = match engine {
        Engine::Docker(d) => d.limits_unenforced().await,
        #[cfg(feature = "local-runtime")]
        _ => None,
    };
    if let Some(why) = unenforced
        && !ctx.config.bool("agent.allowUnenforcedLimits", false)?
    {
        return Err(hinted(
            format!(
                "the engine '{name}' would not limit a task's memory, CPU or processes ({why}): an agent could exhaust the machine"
            ),
            "run Podman on cgroups v2 with the memory, pids and cpu controllers delegated to its user, run tasks on Docker, or accept that: git config --global agent.allowUnenforcedLimits true",
        ));
    }
    Ok(())
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

/// One of the user's tasks that runs or is being started.
struct Live {
    engine: String,
    container: String,
    starting: bool,
}

/// The user's tasks that run or are being started, in this repository and every one the
/// registry names. A registry entry only says where to look: a directory that is not the
/// user's, or not the repository the entry was made for, is skipped (as `serve` does), and
/// only refs are read there, in process.
fn my_live_tasks(ctx: &Ctx) -> Vec<Live> {
    let mut seen = std::collections::HashSet::new();
    let mut live = Vec::new();
    let mut add = |store: &crate::task::store::TaskStore, common_dir: &std::path::Path| {
        if !seen.insert(common_dir.to_path_buf()) {
            return;
        }
        for l in store.all().unwrap_or_default() {
            let r = &l.record;
            let starting = r.status == Status::Creating;
            if !(starting || r.status == Status::Running) {
                continue;
            }
            live.push(Live {
                engine: r.engine.clone().unwrap_or_else(|| DEFAULT.into()),
                container: r.sandbox.container.clone().unwrap_or_default(),
                starting,
            });
        }
    };
    add(&ctx.store, &ctx.git.common_dir);
    for (path, entry) in crate::registry::entries() {
        if !super::serve::owned_directory(&path) {
            continue;
        }
        let Ok(git) = crate::git::Git::discover(&path) else {
            continue;
        };
        let entry_name = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if crate::registry::entry_name(&git.common_dir) != entry_name || git.dir != path {
            continue;
        }
        if let Ok(store) = crate::task::store::TaskStore::open(&git) {
            add(&store, &git.common_dir);
        }
    }
    live
}

/// Connect to an engine and count the user's tasks running there.
async fn probe(def: &EngineDef, mine: &[Live]) -> Result<(u32, Engine)> {
    let engine = Engine::connect_to(def, PROBE).await?;
    let inv = tokio::time::timeout(PROBE, engine.inventory(&[]))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", PROBE.as_secs()))??;
    Ok((running_on(&def.name, mine, &inv), engine))
}

/// How many of `mine` run on the engine `name` (by their records) and really do there (by
/// its listing): a record that still says running for a container that ended does not take
/// room. A task being started counts whatever its container's state.
fn running_on(name: &str, mine: &[Live], inv: &crate::runtime::Inventory) -> u32 {
    let n = mine
        .iter()
        .filter(|t| t.engine == name)
        .filter(|t| {
            t.starting
                || matches!(
                    inv.container(&t.container),
                    ContainerState::Running | ContainerState::Created
                )
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tasks_that_run_on_the_engine_count() {
        let live = |engine: &str, container: &str, starting: bool| Live {
            engine: engine.into(),
            container: container.into(),
            starting,
        };
        let mine = [
            live("a", "c1", false),
            live("a", "c2", false),
            live("a", "c3", true),
            live("b", "c4", false),
        ];
        let mut inv = crate::runtime::Inventory::default();
        inv.containers.insert("c1".into(), ContainerState::Running);
        inv.containers
            .insert("c2".into(), ContainerState::Exited(0));
        inv.containers.insert("c4".into(), ContainerState::Running);
        // c1 runs, c2 ended (its record is stale), c3 is being started; c4 is b's.
        assert_eq!(running_on("a", &mine, &inv), 2);
        assert_eq!(running_on("b", &mine, &inv), 1);
        assert_eq!(running_on("c", &mine, &inv), 0);
    }
}
