//! What `doctor` looks for among a repository's tasks and runtime objects, and how `doctor
//! --fix` repairs it. Every finding carries the one command that fixes it.
//!
//! - tasks whose spawn died (see [`super::stuck`]), and the containers it left running;
//! - tasks whose container, workspace volume, network or gateway is missing
//!   ([`super::health`]);
//! - runtime objects labelled as this repository's whose task has no refs (orphans);
//! - objects named like this repository's (`git-agent-<repo-id>.<kind>.<task>`) without any
//!   git-agent label: left half-made, never another repository's or another tool's (a name of
//!   this pattern with another repository's labels is left alone);
//! - build-step containers and their gateways and networks whose builder has died;
//! - reader and draft containers, and sync scratch directories, that a killed `sync` or
//!   `commit` left behind (only while no command holds the task's lock).
//!
//! Repairs never delete task refs or a workspace: at most a record moves to `failed` and
//! containers, networks and scratch files that hold no work go away.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{RepoId, health, stuck};
use crate::git::Git;
use crate::image::project::LABEL_BUILD;
use crate::runtime::{
    EngineErrorKind, LABEL_REPO, LABEL_REPO_PATH, LABEL_TASK, Listed, ObjectKind, Runtime,
    engine_kind,
};
use crate::task::lock::{Lease, TaskLock};
use crate::task::store::{Loaded, TaskStore};
use crate::task::{Status, TaskName};

/// One problem and its fix.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What kind of problem: `spawn`, `task`, `orphan`, `leftover`, `build`, `sync` or
    /// `cache`.
    pub check: &'static str,
    /// The task it concerns, if any.
    pub task: Option<String>,
    pub problem: String,
    /// The command that fixes it.
    pub fix: String,
    /// Whether `doctor --fix` repairs it.
    pub repairable: bool,
    #[serde(skip)]
    repair: Repair,
}

#[derive(Debug, Clone)]
enum Repair {
    /// Record a dead spawn as failed and remove its containers and network.
    DeadSpawn(String),
    /// Bring a task's record up to date (its container is gone).
    Refresh(String),
    /// Remove objects of a task without refs, checking their labels again first.
    Orphans(String, Vec<Listed>),
    /// Remove an object without git-agent labels, checking again that it has none.
    Unlabelled(Listed),
    /// Remove a dead build's objects.
    Build(Vec<Listed>),
    /// Remove a task's reader/draft containers and its sync scratch directory.
    SyncLeftovers(String, Vec<Listed>, Option<PathBuf>),
    /// Remove a spare that can serve no spawn (containers first).
    Spare(Vec<Listed>),
    /// Only the fix command can help.
    Manual,
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Repaired,
    /// A command holds the task right now; nothing was touched.
    Busy,
    /// Needs the fix command.
    Manual,
}

/// Every kind of object, containers first.
const ALL_KINDS: [ObjectKind; 3] = [
    ObjectKind::Container,
    ObjectKind::Volume,
    ObjectKind::Network,
];

/// Parse `git-agent-<repo>.<kind>.<task>` for this repository: the kind word and the task.
fn parse_name<'a>(repo: &RepoId, name: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = name.strip_prefix(&format!("git-agent-{}.", repo.id))?;
    let (kind, task) = rest.split_once('.')?;
    let known = repo
        .object_names(task)
        .all()
        .iter()
        .any(|(_, n)| *n == name);
    (known && TaskName::parse(task).is_ok()).then_some((kind, task))
}

fn has_agent_labels(labels: &HashMap<String, String>) -> bool {
    labels.keys().any(|k| k.starts_with("git-agent."))
}

/// Is a command working on this task right now (a spawn setting it up, or a command holding
/// its lock)? Checking the lock takes it for an instant.
fn busy(git: &Git, task: &str) -> Result<bool> {
    Ok(Lease::held(git, task)? || TaskLock::try_acquire(git, task, "doctor")?.is_none())
}

fn sorted(mut objects: Vec<Listed>) -> Vec<Listed> {
    // Containers first: volumes and networks in use cannot go.
    objects.sort_by_key(|o| (o.kind as u8, o.name.clone()));
    objects.dedup_by(|a, b| a.id == b.id);
    objects
}

fn describe(objects: &[Listed]) -> String {
    objects
        .iter()
        .map(|o| {
            let n = &o.name;
            let kind = match o.kind {
                ObjectKind::Container => "container",
                ObjectKind::Volume => "volume",
                ObjectKind::Network => "network",
            };
            format!("{kind} {n}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything wrong with this repository's tasks and runtime objects.
pub async fn examine<R: Runtime>(rt: &R, store: &TaskStore, repo: &RepoId) -> Result<Vec<Finding>> {
    let git = store.git();
    let mut objects: Vec<Listed> = Vec::new();
    for kind in ALL_KINDS {
        let prefix = format!("git-agent-{}", repo.id);
        objects.extend(
            rt.list_objects(kind, &prefix, Some((LABEL_REPO, &repo.id)))
                .await?,
        );
    }
    let tasks = store.all()?;
    let mut out = Vec::new();
    for l in &tasks {
        task_findings(rt, git, repo, l, &objects, &mut out).await?;
    }
    let known = |t: &str| tasks.iter().any(|l| l.record.name == t);
    // Labelled objects of tasks without refs, grouped by task.
    let mut orphans: BTreeMap<String, Vec<Listed>> = BTreeMap::new();
    for o in &objects {
        if super::cache::is_cache_object(&o.labels) {
            // The repository's object cache and its writer: no task's (see `cache_findings`).
            continue;
        }
        if super::spare::is_spare_object(&o.labels) {
            // A claimed spare's gateway is its task's by name; the rest is `spare_findings`'.
            if o.kind == ObjectKind::Container
                && let Some(("gw", task)) = parse_name(repo, &o.name)
                && !known(task)
            {
                orphans.entry(task.to_string()).or_default().push(o.clone());
            }
            continue;
        }
        if o.labels.get(LABEL_REPO) == Some(&repo.id) {
            let task = o.labels.get(LABEL_TASK).cloned().unwrap_or_default();
            if !known(&task) {
                orphans.entry(task).or_default().push(o.clone());
            }
        } else if !has_agent_labels(&o.labels)
            && let Some((_, task)) = parse_name(repo, &o.name)
        {
            out.push(Finding {
                    check: "leftover",
                    task: Some(task.to_string()),
                    problem: format!(
                        "{} is named like task {task}'s but carries no git-agent labels (left half-made)",
                        describe(std::slice::from_ref(o))
                    ),
                    fix: "`git agent doctor --fix` removes it".into(),
                    repairable: true,
                    repair: Repair::Unlabelled(o.clone()),
                });
        }
    }
    for (task, objs) in orphans {
        if TaskName::parse(&task).is_ok() && busy(git, &task)? {
            continue;
        }
        let objs = sorted(objs);
        // `purge` finds a task without refs by its container.
        let fix = if objs.iter().any(|o| o.kind == ObjectKind::Container) {
            format!("`git agent purge {task}` (or `git agent doctor --fix`) removes them")
        } else {
            "`git agent doctor --fix` removes them".to_string()
        };
        out.push(Finding {
            check: "orphan",
            task: Some(task.clone()),
            problem: format!(
                "task '{task}' has no refs, but its {} remain",
                describe(&objs)
            ),
            fix,
            repairable: true,
            repair: Repair::Orphans(task, objs),
        });
    }
    cache_findings(repo, &tasks, &objects, &mut out);
    spare_findings(rt, repo, &tasks, &objects, &mut out).await?;
    build_findings(rt, git, &mut out).await?;
    probe_findings(rt, git, &mut out).await?;
    scratch_findings(git, &tasks, &mut out)?;
    Ok(out)
}

/// Spares (see [`super::spare`]) that can serve no spawn: removed by the fix.
async fn spare_findings<R: Runtime>(
    rt: &R,
    repo: &RepoId,
    tasks: &[Loaded],
    objects: &[Listed],
    out: &mut Vec<Finding>,
) -> Result<()> {
    let mut states = HashMap::new();
    for o in objects {
        if o.kind == ObjectKind::Container && super::spare::id_of(repo, &o.labels).is_some() {
            states.insert(o.name.clone(), rt.state(&o.id).await?);
        }
    }
    let recorded: Vec<String> = tasks
        .iter()
        .filter_map(|l| l.record.sandbox.network.clone())
        .collect();
    for (problem, objs) in super::spare::findings(repo, objects, &states, &recorded) {
        out.push(Finding {
            check: "spare",
            task: None,
            problem,
            fix: "`git agent doctor --fix` removes it (the next spawn makes a new spare)".into(),
            repairable: true,
            repair: Repair::Spare(sorted(objs)),
        });
    }
    Ok(())
}

/// The object cache (see [`super::cache`]): kept with no task borrowing from it, or gone
/// while tasks borrow from it. `gc` fixes both (removes it, or fills it again).
fn cache_findings(repo: &RepoId, tasks: &[Loaded], objects: &[Listed], out: &mut Vec<Finding>) {
    let volume = super::cache::volume_name(repo);
    let present = objects
        .iter()
        .any(|o| o.kind == ObjectKind::Volume && o.name == volume);
    let borrowing: Vec<&Loaded> = tasks
        .iter()
        .filter(|l| l.record.sandbox.cache.is_some())
        .collect();
    // Only a workspace that exists borrows: a spawn that died (or is still running) before
    // it made one recorded the cache but holds nothing of it.
    let with_workspace = |l: &&&Loaded| {
        let workspace = repo.object_names(&l.record.name).volume;
        objects
            .iter()
            .any(|o| o.kind == ObjectKind::Volume && o.name == workspace)
    };
    let users = borrowing.iter().filter(with_workspace).count();
    let problem = match (present, users) {
        (true, 0) if borrowing.is_empty() => {
            format!("the object cache {volume} is kept, but no task's workspace borrows from it")
        }
        (false, n) if n > 0 => format!(
            "the object cache {volume} is gone, but {n} task{} borrow{} history from it (their sync and restart rebuild it)",
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" }
        ),
        _ => return,
    };
    out.push(Finding {
        check: "cache",
        task: None,
        problem,
        fix: "`git agent gc` removes an unused cache and rebuilds a missing one".into(),
        repairable: false,
        repair: Repair::Manual,
    });
}

async fn task_findings<R: Runtime>(
    rt: &R,
    git: &Git,
    repo: &RepoId,
    l: &Loaded,
    objects: &[Listed],
    out: &mut Vec<Finding>,
) -> Result<()> {
    let rec = &l.record;
    let name = rec.name.as_str();
    if Lease::held(git, name)? {
        // A live spawn is setting it up.
        return Ok(());
    }
    let owned: Vec<Listed> = objects
        .iter()
        .filter(|o| {
            o.labels.get(LABEL_REPO) == Some(&repo.id)
                && o.labels.get(LABEL_TASK).map(String::as_str) == Some(name)
        })
        .cloned()
        .collect();
    let names = repo.object_names(name);
    let finding = |check, problem: String, fix: String, repair: Repair| Finding {
        check,
        task: Some(name.to_string()),
        problem,
        fix,
        repairable: !matches!(repair, Repair::Manual),
        repair,
    };
    if rec.status == Status::Creating || stuck::is_interrupted(l) {
        let running: Vec<_> = owned
            .iter()
            .filter(|o| o.kind != ObjectKind::Volume)
            .cloned()
            .collect();
        if rec.status == Status::Creating || !running.is_empty() {
            let problem = if rec.status == Status::Creating {
                format!(
                    "task {name}'s spawn died: it is recorded as creating, and no spawn is setting it up"
                )
            } else {
                format!(
                    "task {name}'s spawn was interrupted, and its {} remain",
                    describe(&running)
                )
            };
            out.push(finding(
                "spawn",
                problem,
                format!("`git agent doctor --fix` records it as failed and removes its containers; then `git agent purge --refs {name}` removes the task"),
                Repair::DeadSpawn(name.to_string()),
            ));
        }
        return Ok(());
    }
    let h = health::check(rt, l).await?;
    let problems = h.problems(rec.status);
    let status = rec.status.as_str();
    if problems.contains(&"container missing") {
        out.push(finding(
            "task",
            format!("task {name} is {status} but its container is missing"),
            format!("`git agent doctor --fix` records it as failed; `git agent restart {name}` runs it again in its workspace"),
            Repair::Refresh(name.to_string()),
        ));
    }
    // A task recorded as running needs its gateway, even when its container has stopped
    // behind git-agent's back (e.g. `git agent panic`).
    let gateway_down = rec.status == Status::Running
        && h.container != Some(crate::runtime::ContainerState::Missing)
        && h.gateway
            .as_ref()
            .is_some_and(|g| *g != crate::runtime::ContainerState::Running);
    if gateway_down {
        out.push(finding(
            "task",
            format!("task {name}'s gateway is not running: the task has no way out"),
            format!("`git agent restart {name}` gives it a new one"),
            Repair::Manual,
        ));
    }
    if problems.contains(&"network missing") {
        out.push(finding(
            "task",
            format!("task {name} is {status} but its network is missing"),
            format!("`git agent restart {name}` gives it a new network and gateway"),
            Repair::Manual,
        ));
    }
    if problems.contains(&"workspace volume missing") {
        out.push(finding(
            "task",
            format!("task {name} is {status} but its workspace volume is missing"),
            format!("its workspace is lost; `git agent review --no-sync {name}` shows the work synced before, `git agent purge --refs {name}` removes the task"),
            Repair::Manual,
        ));
    }
    // Readers and drafts live only while a sync or commit holds the task's lock.
    let transient: Vec<_> = owned
        .iter()
        .filter(|o| [&names.reader, &names.draft, &names.draft_volume].contains(&&o.name))
        .cloned()
        .collect();
    let scratch = crate::sandbox::sync::scratch_dir(git, name);
    let scratch = scratch.exists().then_some(scratch);
    if (!transient.is_empty() || scratch.is_some())
        && TaskLock::try_acquire(git, name, "doctor")?.is_some()
    {
        let mut what = describe(&transient);
        if let Some(s) = &scratch {
            if !what.is_empty() {
                what.push_str(", ");
            }
            what.push_str(&format!("scratch files {}", s.display()));
        }
        out.push(finding(
            "sync",
            format!("an interrupted sync or commit of task {name} left {what}"),
            "`git agent doctor --fix` removes them".into(),
            Repair::SyncLeftovers(name.to_string(), transient, scratch),
        ));
    }
    Ok(())
}

/// Sync scratch directories of tasks that no longer exist.
fn scratch_findings(git: &Git, tasks: &[Loaded], out: &mut Vec<Finding>) -> Result<()> {
    let Ok(dir) = std::fs::read_dir(crate::sandbox::sync::scratch_root(git)) else {
        return Ok(());
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() {
            continue;
        }
        if tasks.iter().any(|l| l.record.name == name) {
            continue; // looked at with its task
        }
        if TaskName::parse(&name).is_ok() && busy(git, &name)? {
            continue;
        }
        out.push(Finding {
            check: "sync",
            task: Some(name.clone()),
            problem: format!(
                "temp files {} of a task that no longer exists",
                entry.path().display()
            ),
            fix: "`git agent doctor --fix` removes them".into(),
            repairable: true,
            repair: Repair::SyncLeftovers(name, vec![], Some(entry.path())),
        });
    }
    Ok(())
}

/// Is process `pid` alive on this host?
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Build-step objects (`git-agent-build.<kind>.<image>-<pid>`, see
/// [`crate::image::project`]) of this repository whose builder has died.
async fn build_findings<R: Runtime>(rt: &R, git: &Git, out: &mut Vec<Finding>) -> Result<()> {
    let path = git.dir.display().to_string();
    let mut builds: BTreeMap<String, Vec<Listed>> = BTreeMap::new();
    for kind in [ObjectKind::Container, ObjectKind::Network] {
        for o in rt.list_objects(kind, "git-agent-build.", None).await? {
            let Some((word, id)) = o
                .name
                .strip_prefix("git-agent-build.")
                .and_then(|r| r.split_once('.'))
            else {
                continue;
            };
            // Only objects that say they are this repository's build: another
            // repository's (or an unlabelled one) is not ours to report or remove.
            let build = o.labels.get(LABEL_REPO).map(String::as_str) == Some("build")
                && o.labels.get(LABEL_REPO_PATH) == Some(&path);
            let ours = build
                && match word {
                    "task" => o.labels.contains_key(LABEL_BUILD),
                    "gw" | "net" => true,
                    _ => false,
                };
            if ours {
                builds.entry(id.to_string()).or_default().push(o.clone());
            }
        }
    }
    for (id, objs) in builds {
        let Some(pid) = id.rsplit('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid <= 0 || alive(pid) {
            continue;
        }
        let objs = sorted(objs);
        out.push(Finding {
            check: "build",
            task: None,
            problem: format!(
                "an image build that died (pid {pid}) left {}",
                describe(&objs)
            ),
            fix: "`git agent doctor --fix` removes them".into(),
            repairable: true,
            repair: Repair::Build(objs),
        });
    }
    Ok(())
}

/// Name prefix of the network `doctor` creates to check that internal networks work
/// (`<prefix><pid>`).
pub const PROBE_PREFIX: &str = "git-agent-doctor-";

/// The labels of the network `doctor` creates in this repository: only probes carrying them
/// are this repository's to report, so a `doctor` elsewhere never touches one in use.
pub fn probe_labels(git: &Git) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_REPO.to_string(), "doctor".to_string()),
        (LABEL_REPO_PATH.to_string(), git.dir.display().to_string()),
    ])
}

/// Probe networks of this repository's `doctor`s that were killed before removing them.
async fn probe_findings<R: Runtime>(rt: &R, git: &Git, out: &mut Vec<Finding>) -> Result<()> {
    let ours = probe_labels(git);
    for o in rt
        .list_objects(ObjectKind::Network, PROBE_PREFIX, None)
        .await?
    {
        let Some(pid) = o
            .name
            .strip_prefix(PROBE_PREFIX)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let labelled_ours = ours.iter().all(|(k, v)| o.labels.get(k) == Some(v));
        if pid <= 0 || alive(pid) || !labelled_ours {
            continue;
        }
        out.push(Finding {
            check: "leftover",
            task: None,
            problem: format!("network {} of a doctor that died (pid {pid})", o.name),
            fix: "`git agent doctor --fix` removes it".into(),
            repairable: true,
            repair: Repair::Unlabelled(o),
        });
    }
    Ok(())
}

/// Remove an object by its id (a network's name may be ambiguous). Labels never change, so
/// the labels it was listed with still say whose it is.
async fn remove<R: Runtime>(rt: &R, o: &Listed) -> Result<()> {
    match o.kind {
        ObjectKind::Container => rt.remove_container(&o.id).await,
        ObjectKind::Volume => rt.remove_volume(&o.id).await,
        ObjectKind::Network => rt.remove_network(&o.id).await,
    }
}

/// Repair one finding. Task repairs take the task's lock (without waiting: a task some
/// command holds is left alone and reported as busy).
pub async fn repair<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    repo: &RepoId,
    finding: &Finding,
) -> Result<Outcome> {
    let git = store.git();
    let lock = |task: &str| -> Result<Option<TaskLock>> {
        if Lease::held(git, task)? {
            return Ok(None);
        }
        TaskLock::try_acquire(git, task, "doctor --fix")
    };
    match &finding.repair {
        Repair::Manual => Ok(Outcome::Manual),
        Repair::Spare(objs) => {
            for o in objs {
                match remove(rt, o).await {
                    Ok(()) => {}
                    // Claimed meanwhile (its network now holds a task): not broken after all.
                    Err(e) if engine_kind(&e) == Some(EngineErrorKind::Conflict) => {
                        return Ok(Outcome::Busy);
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(Outcome::Repaired)
        }
        Repair::DeadSpawn(task) => {
            let Some(_lock) = lock(task)? else {
                return Ok(Outcome::Busy);
            };
            let Some(loaded) = store.load(task)? else {
                return Ok(Outcome::Repaired);
            };
            let loaded = stuck::settle(store, loaded)?;
            if !stuck::is_interrupted(&loaded) {
                return Ok(Outcome::Busy);
            }
            // Containers and network go; the workspace stays until `purge`.
            super::remove_objects(rt, repo, task, Some(&loaded.record.sandbox), false, true)
                .await?;
            Ok(Outcome::Repaired)
        }
        Repair::Refresh(task) => {
            let Some(_lock) = lock(task)? else {
                return Ok(Outcome::Busy);
            };
            if let Some(loaded) = store.load(task)? {
                super::refresh(rt, store, loaded).await?;
            }
            Ok(Outcome::Repaired)
        }
        Repair::Orphans(task, objs) => {
            let _lock = match TaskName::parse(task) {
                Ok(_) => match lock(task)? {
                    Some(l) => Some(l),
                    None => return Ok(Outcome::Busy),
                },
                Err(_) => None,
            };
            if store.load(task)?.is_some() {
                return Ok(Outcome::Busy);
            }
            for o in objs {
                remove(rt, o).await?;
            }
            if _lock.is_some() {
                // The task is gone for good: so are its lock files.
                crate::task::lock::forget(git, task);
            }
            Ok(Outcome::Repaired)
        }
        Repair::Unlabelled(o) => {
            remove(rt, o).await?;
            Ok(Outcome::Repaired)
        }
        Repair::Build(objs) => {
            for o in objs {
                remove(rt, o).await?;
            }
            Ok(Outcome::Repaired)
        }
        Repair::SyncLeftovers(task, objs, scratch) => {
            let lock = match TaskName::parse(task) {
                Ok(_) => match TaskLock::try_acquire(git, task, "doctor --fix")? {
                    Some(l) => Some(l),
                    None => return Ok(Outcome::Busy),
                },
                Err(_) => None,
            };
            for o in objs {
                remove(rt, o).await?;
            }
            match (&lock, scratch) {
                // The one way a sync's leftovers go (its reader with its scratch directory).
                (Some(lock), _) => {
                    super::sync::clear_leftovers(rt, git, repo, task, lock).await?;
                }
                // A directory no task could own (not a task name): no reader either.
                (None, Some(dir)) => super::sync::discard(git, dir)?,
                (None, None) => {}
            }
            Ok(Outcome::Repaired)
        }
    }
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
    fn only_this_repositorys_names_parse() {
        let r = repo();
        assert_eq!(
            parse_name(&r, "git-agent-0123abcd.task.fix-1"),
            Some(("task", "fix-1"))
        );
        assert_eq!(
            parse_name(&r, "git-agent-0123abcd.ws.a.b"),
            Some(("ws", "a.b"))
        );
        // Another repository, an unknown kind, the old scheme, a bad task name.
        assert_eq!(parse_name(&r, "git-agent-99999999.task.fix"), None);
        assert_eq!(parse_name(&r, "git-agent-0123abcd.data.fix"), None);
        assert_eq!(parse_name(&r, "git-agent-0123abcd-fix"), None);
        assert_eq!(parse_name(&r, "git-agent-0123abcd.task.Bad Name"), None);
    }

    #[test]
    fn a_dead_process_is_not_alive() {
        assert!(alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!alive(pid));
    }
}
