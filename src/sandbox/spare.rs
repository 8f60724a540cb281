//! Spares: a task network and its gateway, made and started ahead for a repository's next
//! spawn, so that a spawn starts one container (the task's) instead of two side by side.
//!
//! A spawn that finds a spare for its gateway image and outer network claims it: under the
//! repository's spare lock (so two spawns never claim the same spare) it renames the
//! gateway to the task's gateway name, uploads the task's policy and vault, and starts the
//! task's container on the spare's network. The gateway has listened there since it
//! started, with its modules loaded, and reads its policy only once claimed (see
//! dockerfiles/git-agent-gateway). Once its command runs, the spawn makes the next spare.
//!
//! Object names: `git-agent-<repo>.spare.<id>` (the gateway, until claimed) and
//! `git-agent-<repo>.sparenet.<id>` (the network, for its whole life: a network cannot be
//! renamed; the task's record names it). Both carry [`LABEL_SPARE`]`=<id>` and an empty task
//! label. A claimed gateway is its task's by name (see [`owned`]); the network is its task's
//! while no other container carries its id.
//!
//! A spare lives while its repository has running tasks: when the last one ends, `gc`, or
//! `doctor --fix` for one that is broken (see [`findings`]). `agent.spareGateway false`
//! turns spares off.

use std::collections::HashMap;

use anyhow::Result;

use super::RepoId;
use super::gateway;
use super::network::live;
use super::network::{self, SubnetRange};
use crate::runtime::subnet::Ipv4Net;
use crate::runtime::{
    ContainerState, EngineErrorKind, LABEL_REPO, LABEL_REPO_PATH, LABEL_SPARE, LABEL_TASK, Listed,
    ObjectKind, Runtime, engine_kind,
};
use crate::task::store::Loaded;

/// The gateway image a spare runs, the outer network it joins, and the subnet it took:
/// a spawn claims only a spare made for its own.
const LABEL_IMAGE: &str = "git-agent.spare.image";
const LABEL_OUTER: &str = "git-agent.spare.outer";
const LABEL_SUBNET: &str = "git-agent.spare.subnet";

/// Are spares kept for this repository (`agent.spareGateway`, default true)?
pub fn enabled(config: &crate::git::Config) -> Result<bool> {
    config.bool("agent.spareGateway", true)
}

/// What a spawn needs of a spare.
pub struct Want<'a> {
    pub image: &'a str,
    pub outer: &'a str,
    pub subnets: &'a SubnetRange,
}

/// A spare a task claimed: its network, that network's subnet, and the gateway (renamed to
/// the task's gateway name; [`gateway::claim`] gives it the task's policy).
pub struct Claimed {
    pub network: String,
    pub subnet: Ipv4Net,
    pub gateway: gateway::Created,
}

fn gateway_prefix(repo: &RepoId) -> String {
    format!("git-agent-{}.spare.", repo.id)
}

fn network_prefix(repo: &RepoId) -> String {
    format!("git-agent-{}.sparenet.", repo.id)
}

/// The network of spare `id`.
pub fn network_name(repo: &RepoId, id: &str) -> String {
    format!("{}{id}", network_prefix(repo))
}

/// Is `name` a spare's network (claimed or not) of this repository?
pub fn is_spare_network(repo: &RepoId, name: &str) -> bool {
    name.strip_prefix(&network_prefix(repo))
        .is_some_and(valid_id)
}

/// The id of a spare object of this repository, from its labels.
pub fn id_of<'a>(repo: &RepoId, labels: &'a HashMap<String, String>) -> Option<&'a str> {
    if labels.get(LABEL_REPO) != Some(&repo.id) {
        return None;
    }
    labels
        .get(LABEL_SPARE)
        .map(String::as_str)
        .filter(|id| valid_id(id))
}

/// An id as [`make`] makes them (hex), so a name built from it is a spare's and nothing else.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Is this object a spare's (claimed or not)?
pub fn is_spare_object(labels: &HashMap<String, String>) -> bool {
    labels.contains_key(LABEL_SPARE)
}

fn labels(repo: &RepoId, id: &str, want: &Want<'_>, subnet: &Ipv4Net) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_REPO.to_string(), repo.id.clone()),
        (LABEL_REPO_PATH.to_string(), repo.path.clone()),
        // No task's: `panic` still finds it among the labelled containers.
        (LABEL_TASK.to_string(), String::new()),
        (LABEL_SPARE.to_string(), id.to_string()),
        (LABEL_IMAGE.to_string(), want.image.to_string()),
        (LABEL_OUTER.to_string(), want.outer.to_string()),
        (LABEL_SUBNET.to_string(), subnet.to_string()),
    ])
}

/// The unclaimed spare gateways of this repository on this engine.
async fn unclaimed<R: Runtime>(rt: &R, repo: &RepoId) -> Result<Vec<Listed>> {
    let prefix = gateway_prefix(repo);
    Ok(rt
        .list_objects(ObjectKind::Container, &prefix, None)
        .await?
        .into_iter()
        .filter(|o| {
            id_of(repo, &o.labels).is_some_and(|id| o.name.strip_prefix(&prefix) == Some(id))
        })
        .collect())
}

/// Does spare `o` fit what the spawn wants, and with which subnet?
fn fits(o: &Listed, want: &Want<'_>) -> Option<Ipv4Net> {
    let l = &o.labels;
    if l.get(LABEL_IMAGE).map(String::as_str) != Some(want.image)
        || l.get(LABEL_OUTER).map(String::as_str) != Some(want.outer)
    {
        return None;
    }
    let subnet = Ipv4Net::parse(l.get(LABEL_SUBNET)?)?;
    want.subnets.net().contains(&subnet).then_some(subnet)
}

/// Make one spare if the repository has none fitting `want` on this engine. A spare that
/// cannot be made is no error of the spawn's: the next spawn makes its own network.
pub async fn ensure<R: Runtime>(rt: &R, repo: &RepoId, want: &Want<'_>) -> Result<()> {
    if !rt.keeps_spares() {
        return Ok(());
    }
    if unclaimed(rt, repo)
        .await?
        .iter()
        .any(|o| fits(o, want).is_some())
    {
        return Ok(());
    }
    make(rt, repo, want).await
}

async fn make<R: Runtime>(rt: &R, repo: &RepoId, want: &Want<'_>) -> Result<()> {
    let id = super::cache::random_word();
    let net = network_name(repo, &id);
    let picked = network::pick(rt, want.subnets, &net).await?;
    let Some(guess) = picked.subnet() else {
        return Ok(());
    };
    let Some(subnet) = network::create_picked(
        rt,
        want.subnets,
        &net,
        &labels(repo, &id, want, &guess),
        picked,
    )
    .await?
    else {
        return Ok(());
    };
    // The network's labels name the subnet it was meant to get; the gateway's, the one it
    // got (the one a claim reads).
    let spec = gateway::spec(
        format!("{}{id}", gateway_prefix(repo)),
        net.clone(),
        want.image,
        want.outer,
        labels(repo, &id, want, &subnet),
        Some(network::gateway_address(&subnet)),
    );
    let name = spec.name.clone();
    if let Err(e) = gateway::start_spare(rt, spec).await {
        rt.remove_container(&name).await.ok();
        rt.remove_network(&net).await.ok();
        return Err(e);
    }
    Ok(())
}

/// Claim a running spare that fits `want` for task `task` (see the module's comment), or
/// none. A spare found broken on the way is removed.
pub async fn claim<R: Runtime>(
    rt: &R,
    git: &crate::git::Git,
    repo: &RepoId,
    task: &str,
    want: &Want<'_>,
) -> Result<Option<Claimed>> {
    if !rt.keeps_spares() {
        return Ok(None);
    }
    // Claims of one repository take turns: the engine's rename of a running container is
    // no claim by itself (two renames from one name can both succeed, the second moving the
    // container on from the first claimer).
    let _turn = crate::task::lock::repo_lock(git, "spares")?;
    let names = repo.object_names(task);
    for o in unclaimed(rt, repo).await? {
        let Some(subnet) = fits(&o, want) else {
            continue;
        };
        let Some(id) = id_of(repo, &o.labels).map(str::to_string) else {
            continue;
        };
        if rt.state(&o.id).await? != ContainerState::Running {
            remove_pair(rt, repo, &o.id, &id).await;
            continue;
        }
        // By its spare name: one claimed meanwhile (from another host sharing the engine
        // and the repository's path) has none, and the next one is tried.
        if rt.rename(&o.name, &names.gateway).await.is_err() {
            continue;
        }
        let network = network_name(repo, &id);
        let created = gateway::Created {
            id: o.id.clone(),
            spec: gateway::spec(
                names.gateway.clone(),
                network.clone(),
                want.image,
                want.outer,
                o.labels.clone(),
                Some(network::gateway_address(&subnet)),
            ),
        };
        return Ok(Some(Claimed {
            network,
            subnet,
            gateway: created,
        }));
    }
    Ok(None)
}

/// Remove a spare's gateway, then its network. An engine may still count the gateway on the
/// network for a moment after removing it (Podman under load): the network is asked again
/// twice before it is left to `doctor --fix`.
async fn remove_pair<R: Runtime>(rt: &R, repo: &RepoId, container: &str, id: &str) {
    rt.remove_container(container).await.ok();
    let network = network_name(repo, id);
    for pause in [100, 400, 0] {
        match rt.remove_network(&network).await {
            Ok(()) => return,
            Err(e) if engine_kind(&e) == Some(EngineErrorKind::NotFound) => return,
            Err(_) if pause > 0 => {
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await
            }
            Err(_) => return,
        }
    }
}

/// Remove this repository's unclaimed spares on this engine, and spare networks that no
/// container holds any more (a spare cut short while it was made); how many spares went.
pub async fn remove_unclaimed<R: Runtime>(rt: &R, repo: &RepoId) -> Result<usize> {
    if !rt.keeps_spares() {
        return Ok(0);
    }
    let found = unclaimed(rt, repo).await?;
    for o in &found {
        if let Some(id) = id_of(repo, &o.labels) {
            remove_pair(rt, repo, &o.id, id).await;
        }
    }
    let containers = rt
        .list_objects(
            ObjectKind::Container,
            &format!("git-agent-{}.", repo.id),
            None,
        )
        .await?;
    for n in rt
        .list_objects(ObjectKind::Network, &network_prefix(repo), None)
        .await?
    {
        let Some(id) = id_of(repo, &n.labels) else {
            continue;
        };
        let held = containers
            .iter()
            .any(|c| id_of(repo, &c.labels) == Some(id));
        if !held && n.name == network_name(repo, id) {
            // One a task still runs on is in use: the engine refuses, and it stays.
            rt.remove_network(&n.name).await.ok();
        }
    }
    Ok(found.len())
}

/// Remove the repository's unclaimed spares when none of its tasks runs any more (a spare
/// serves the next spawn beside running work; kept beside none, it only holds a subnet and
/// a container). `tasks`: the repository's tasks as the caller read them. Called when a run
/// is seen to end, and by `gc`; how many spares went.
pub async fn retire_if_idle<R: Runtime>(rt: &R, repo: &RepoId, tasks: &[Loaded]) -> Result<usize> {
    if tasks.iter().any(|l| live(l.record.status)) {
        return Ok(0);
    }
    remove_unclaimed(rt, repo).await
}

/// Is spare object `name` (of kind `kind`, with `labels`) task `task`'s? A claimed gateway
/// is, under the task's gateway name; a spare network is while no container carries its id
/// under another name than that (an unclaimed spare's gateway, or another task's).
pub async fn owned<R: Runtime>(
    rt: &R,
    repo: &RepoId,
    task: &str,
    kind: ObjectKind,
    name: &str,
    labels: &HashMap<String, String>,
) -> Result<bool> {
    let Some(id) = id_of(repo, labels) else {
        return Ok(false);
    };
    let gateway = repo.object_names(task).gateway;
    match kind {
        ObjectKind::Container => Ok(name == gateway),
        ObjectKind::Volume => Ok(false),
        ObjectKind::Network => {
            if name != network_name(repo, id) {
                return Ok(false);
            }
            let holders = rt
                .list_objects(
                    ObjectKind::Container,
                    &format!("git-agent-{}.", repo.id),
                    None,
                )
                .await?;
            Ok(!holders
                .iter()
                .any(|o| id_of(repo, &o.labels) == Some(id) && o.name != gateway))
        }
    }
}

/// The spare network a task's claimed gateway (by its name) came with, if it did.
pub async fn network_of_gateway<R: Runtime>(
    rt: &R,
    repo: &RepoId,
    gateway: &str,
) -> Result<Option<String>> {
    Ok(rt
        .labels_of(ObjectKind::Container, gateway)
        .await?
        .and_then(|l| id_of(repo, &l).map(|id| network_name(repo, id))))
}

/// What is wrong with this repository's spares, for `doctor`: an unclaimed gateway that
/// does not run, or a spare network no gateway and no task holds. Each is removed by the fix.
pub fn findings(
    repo: &RepoId,
    objects: &[Listed],
    states: &HashMap<String, ContainerState>,
    recorded_networks: &[String],
) -> Vec<(String, Vec<Listed>)> {
    let mut out = Vec::new();
    let gprefix = gateway_prefix(repo);
    for o in objects {
        let Some(id) = id_of(repo, &o.labels) else {
            continue;
        };
        match o.kind {
            ObjectKind::Container if o.name.strip_prefix(&gprefix) == Some(id) => {
                let state = states
                    .get(&o.name)
                    .cloned()
                    .unwrap_or(ContainerState::Missing);
                if state != ContainerState::Running {
                    let mut objs = vec![o.clone()];
                    let net = network_name(repo, id);
                    objs.extend(
                        objects
                            .iter()
                            .filter(|n| n.kind == ObjectKind::Network && n.name == net)
                            .cloned(),
                    );
                    out.push((format!("the spare gateway {} is {state:?}", o.name), objs));
                }
            }
            ObjectKind::Network if o.name == network_name(repo, id) => {
                let held = objects
                    .iter()
                    .any(|c| c.kind == ObjectKind::Container && id_of(repo, &c.labels) == Some(id));
                if !held && !recorded_networks.contains(&o.name) {
                    out.push((
                        format!("the spare network {} has no gateway and no task", o.name),
                        vec![o.clone()],
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoId {
        RepoId {
            id: "0123abcd".into(),
            path: "/r/.git".into(),
        }
    }

    #[test]
    fn only_hex_ids_of_this_repository_are_spares() {
        let r = repo();
        let mut l = HashMap::from([
            (LABEL_REPO.to_string(), r.id.clone()),
            (LABEL_SPARE.to_string(), "00ff".to_string()),
        ]);
        assert_eq!(id_of(&r, &l), Some("00ff"));
        l.insert(LABEL_SPARE.into(), "../x".into());
        assert_eq!(id_of(&r, &l), None);
        l.insert(LABEL_SPARE.into(), "00ff".into());
        l.insert(LABEL_REPO.into(), "other".into());
        assert_eq!(id_of(&r, &l), None);
    }

    #[test]
    fn spare_names_are_no_task_object_names() {
        let r = repo();
        // Kinds of a task's objects never read `spare` or `sparenet`: no task name makes one.
        let n = r.object_names("spare");
        let net = network_name(&r, "00ff");
        for (_, name) in n.all() {
            assert_ne!(name, net);
            assert!(!name.starts_with(&gateway_prefix(&r)));
        }
    }
}
