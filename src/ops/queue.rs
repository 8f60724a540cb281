//! The queue: `git agent add` records tasks as `queued`; a worker (started by `git agent
//! serve`, see [`super::serve`]) claims one and starts it through the spawn path.
//!
//! A claim is one compare-and-swap state change, queued → creating with a [`Claim`], made
//! while the worker holds the task's lease: losing the swap (or the lease) means another
//! worker has it. A worker that dies before the sandbox exists leaves a claim whose lease is
//! free: [`settle_dead_claim`] puts it back in the queue (the server does at each scan,
//! `doctor --fix` and the commands that change a task through `stuck::settle`). Once the
//! sandbox was recorded, the existing recovery of a dead spawn applies.
//!
//! `--after <parent>`: the task starts once its parent exited 0, on the parent's work
//! (synced first); a parent that failed, stopped or is gone fails the task with a reason.
//! Owns the queued records and the claim; it must not print or prompt.

use anyhow::Result;

use super::{Ctx, Event, Events};
use crate::runtime::Runtime;
use crate::sandbox::spawn::StartRequest;
use crate::task::lock::Lease;
use crate::task::queue::{Claim, QueuedSpawn};
use crate::task::store::Loaded;
use crate::task::{Status, TaskName, TaskRecord, now};

/// Why adding, claiming or starting a queued task refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("-i attaches a terminal, which a queued task never has")]
    Interactive,
    #[error("task '{task}' to start after does not exist")]
    NoParent { task: String },
    #[error("task '{task}' cannot start: {reason}")]
    ParentFailed { task: String, reason: String },
    #[error("task '{task}' is {status}, not queued")]
    NotQueued { task: String, status: String },
    /// A failure below the operation (refs, engine, spawn), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for QueueError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            QueueError::Interactive => {
                "spawn it with `git agent spawn -i`, or add it without -i".into()
            }
            QueueError::NoParent { .. } => "see the tasks there are with `git agent list`".into(),
            QueueError::ParentFailed { task, .. } => format!(
                "see why with `git agent status {task}`; start it on another base with `git agent spawn`"
            ),
            QueueError::NotQueued { task, .. } => {
                format!("see its state with `git agent status {task}`")
            }
            QueueError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            QueueError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            QueueError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

super::error::pass_on!(super::spawn::SpawnError => QueueError);

/// Record the prepared spawn's tasks as queued (base pinned, prompt rendered) and register
/// the repository for servers. Returns the tasks' names.
pub fn add(
    ctx: &Ctx,
    prepared: &super::spawn::Prepared,
    spawn: &QueuedSpawn,
    after: Option<&str>,
    events: &dyn Events,
) -> Result<Vec<String>, QueueError> {
    let after = match after {
        Some(a) => Some(
            ctx.store
                .load(a)?
                .ok_or_else(|| QueueError::NoParent { task: a.into() })?
                .record
                .name,
        ),
        None => None,
    };
    let mut names = Vec::new();
    for record in super::spawn::queued_records(prepared, spawn, after.as_deref()) {
        let name = TaskName::parse(&record.name)?;
        ctx.store.create(&name, &record)?;
        names.push(record.name);
    }
    let entry = crate::registry::register(&ctx.git.dir, &ctx.git.common_dir)?;
    events.emit(Event::step(
        None,
        format!(
            "queued {}; `git agent serve` runs it (registered in {})",
            names.join(" "),
            entry.display()
        ),
    ));
    Ok(names)
}

/// Each queued task's place in its repository's queue (1 = next), oldest first.
pub fn positions(tasks: &[&TaskRecord]) -> std::collections::BTreeMap<String, usize> {
    let mut queued: Vec<&&TaskRecord> = tasks
        .iter()
        .filter(|r| r.status == Status::Queued)
        .collect();
    queued.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    queued
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.clone(), i + 1))
        .collect()
}

/// Put a claim whose claimer died before creating anything back in the queue (and record a
/// plain spawn that died as failed); any other task is returned as it is. See
/// [`crate::sandbox::stuck::settle`].
pub fn settle_dead_claim(ctx: &Ctx, loaded: Loaded) -> Result<Loaded> {
    crate::sandbox::stuck::settle(&ctx.store, loaded)
}

/// Where a task waiting for its parent stands.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterState {
    /// The parent exited 0: start on this commit (its work).
    Ready,
    /// The parent has not ended yet.
    Waiting,
    /// The parent ended without success or is gone: the task must not run.
    Failed(String),
}

/// Where a parent stands, from its record as the engine shows it now.
pub fn parent_state(parent: Option<&TaskRecord>, name: &str) -> AfterState {
    let Some(r) = parent else {
        return AfterState::Failed(format!("task '{name}' it starts after was removed"));
    };
    match r.status {
        Status::Queued | Status::Creating | Status::Running => AfterState::Waiting,
        Status::Exited if r.exit_code == Some(0) => AfterState::Ready,
        Status::Exited => AfterState::Failed(format!(
            "task '{name}' it starts after exited with status {}",
            r.exit_code
                .map(|c| c.to_string())
                .unwrap_or("unknown".into())
        )),
        Status::Stopped => AfterState::Failed(format!("task '{name}' it starts after was stopped")),
        Status::Failed => AfterState::Failed(format!(
            "task '{name}' it starts after failed{}",
            r.reason
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        )),
    }
}

/// The parent of a task as it stands now (effective status when the engine answers).
pub async fn parent_now<R: Runtime>(rt: &R, ctx: &Ctx, parent: &str) -> Result<AfterState> {
    let Some(loaded) = ctx.store.load(parent)? else {
        return Ok(parent_state(None, parent));
    };
    let seen = super::inspect::effective(rt, &ctx.store, loaded)
        .await
        .map_err(super::OpError::into_report)?;
    Ok(parent_state(Some(&seen.record), parent))
}

/// What a worker did with the task it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Worked {
    /// Another worker has it (or it is no longer queued).
    Lost,
    /// Its parent has not ended yet: left queued.
    NotReady,
    /// It was not run (its parent failed); recorded as failed with this reason.
    Refused(String),
    /// It ran and ended with this status.
    Ran(i64),
}

/// The identity of the server a worker claims for.
#[derive(Debug, Clone)]
pub struct Server {
    pub pid: u32,
    pub started: i64,
}

/// A worker's job: claim queued task `task` (lease, then compare-and-swap), start it through
/// the spawn path, wait for its run to end and record how it ended.
pub async fn work(
    ctx: &Ctx,
    task: &str,
    server: &Server,
    events: &dyn Events,
) -> Result<Worked, QueueError> {
    let Ok(lease) = Lease::take(&ctx.git, task) else {
        return Ok(Worked::Lost);
    };
    let Some(loaded) = ctx.store.load(task)? else {
        return Ok(Worked::Lost);
    };
    if loaded.record.status != Status::Queued {
        return Ok(Worked::Lost);
    }
    let mut base = None;
    if let Some(parent) = loaded.record.after.clone() {
        // The parent is asked on its own engine.
        let rt = match ctx.store.load(&parent)? {
            Some(p) => super::engine_of(ctx, &p.record).await?,
            None => super::engine().await?,
        };
        let rt = &rt;
        match parent_now(rt, ctx, &parent).await? {
            AfterState::Waiting => return Ok(Worked::NotReady),
            AfterState::Failed(reason) => {
                let reason = format!("not run: {reason}");
                ctx.store
                    .update(task, "not run: its parent failed", |r, _| {
                        if r.status == Status::Queued {
                            r.status = Status::Failed;
                            r.reason = Some(reason.clone());
                            r.finished = Some(now());
                        }
                        Ok(vec![])
                    })?;
                return Ok(Worked::Refused(reason));
            }
            AfterState::Ready => {
                // Its work comes home first (a stopped container still answers a sync). An
                // engine under load can fail one (a container start, a stream): tried again
                // twice before the task starts on the work as last synced.
                let mut synced = super::sync::run(rt, ctx, &parent, events).await;
                for pause in [1, 3] {
                    if synced.is_ok() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(pause)).await;
                    synced = super::sync::run(rt, ctx, &parent, events).await;
                }
                if let Err(e) = synced {
                    events.emit(Event::warning(
                        Some(task),
                        format!(
                            "cannot sync {parent} first ({e}); starting on its work as last synced"
                        ),
                    ));
                }
                let p = super::reload(ctx, &parent)?;
                base = Some(p.ref_value("head").unwrap_or(&p.record.base).to_string());
            }
        }
    }
    // An engine with room, or the task waits in the queue for one.
    let pinned = loaded.record.queue.as_ref().and_then(|q| q.engine.clone());
    let placed = match super::placement::place(ctx, pinned.as_deref(), 1).await {
        Ok(placed) => placed,
        Err(e) if super::placement::is_no_room(&e) => return Ok(Worked::NotReady),
        Err(e) => return Err(e.into()),
    };
    let rt = &placed.engine;
    let claim = Claim {
        host: crate::task::queue::host_name(),
        server_pid: server.pid,
        server_started: server.started,
        worker_pid: std::process::id(),
        at: now(),
    };
    let mut lost = false;
    let claimed = ctx.store.update(task, "claim", |r, _| {
        if r.status != Status::Queued {
            lost = true;
            return Ok(vec![]);
        }
        lost = false;
        r.status = Status::Creating;
        r.claim = Some(claim.clone());
        let mut refs = vec![];
        if let Some(b) = &base {
            r.base = b.clone();
            refs.push(("base".to_string(), Some(b.clone())));
        }
        Ok(refs)
    })?;
    if lost {
        return Ok(Worked::Lost);
    }
    crate::crash::point("queue.after-claim");
    events.emit(Event::step(
        Some(task),
        format!("starting queued task {task}"),
    ));
    let prepared = super::spawn::prepare_claimed(ctx, &claimed, lease, events);
    let mut prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            let reason = crate::error::render(&super::OpError::into_report(e)).join("; ");
            record_refusal(ctx, task, &reason)?;
            return Ok(Worked::Refused(reason));
        }
    };
    prepared.engine = placed.name;
    let started = super::spawn::start(rt, ctx, prepared, events).await?;
    let waited = super::spawn::wait(rt, ctx, started.tasks, &mut tokio::io::sink(), events).await?;
    Ok(Worked::Ran(
        waited.exits.first().map(|(_, c)| *c).unwrap_or(-1),
    ))
}

/// A claimed task that cannot start (a repository file now refused, an agent gone): failed,
/// with why.
fn record_refusal(ctx: &Ctx, task: &str, reason: &str) -> Result<()> {
    ctx.store.update(task, "not started", |r, _| {
        if r.status == Status::Creating && r.sandbox.container.is_none() {
            r.status = Status::Failed;
            r.reason = Some(reason.to_string());
            r.finished = Some(now());
        }
        Ok(vec![])
    })?;
    Ok(())
}

/// Record a claimed task's sandbox (the spawn path's `create_record` for a task that already
/// exists): its record becomes the spawn's, keeping when it was added and how it was queued.
pub fn record_start(ctx: &Ctx, req: &StartRequest) -> Result<Loaded> {
    let fresh = crate::sandbox::spawn::record_for(req, &ctx.repo);
    ctx.store
        .update(req.name.as_str(), "start queued task", |r, _| {
            let mut next = fresh.clone();
            next.created = r.created;
            next.queue = r.queue.take();
            next.claim = r.claim.take();
            next.after = r.after.take();
            *r = next;
            Ok(vec![("base".to_string(), Some(req.base.clone()))])
        })
}

/// A claimed task whose start failed: its engine objects go, its record says why.
pub async fn record_failed_start<R: Runtime>(rt: &R, ctx: &Ctx, task: &str, error: &anyhow::Error) {
    let _ = crate::sandbox::remove_objects(rt, &ctx.repo, task, None, true, true).await;
    let reason = format!("start failed: {error:#}");
    let _ = ctx.store.update(task, "start failed", |r, _| {
        r.status = Status::Failed;
        r.reason = Some(reason.clone());
        r.finished = Some(now());
        r.sandbox.container = None;
        Ok(vec![])
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, status: Status, created: i64) -> TaskRecord {
        TaskRecord {
            name: name.into(),
            status,
            created,
            ..Default::default()
        }
    }

    #[test]
    fn positions_count_queued_tasks_oldest_first() {
        let a = rec("a", Status::Queued, 30);
        let b = rec("b", Status::Running, 10);
        let c = rec("c", Status::Queued, 20);
        let d = rec("d", Status::Queued, 20);
        let p = positions(&[&a, &b, &c, &d]);
        assert_eq!(p.get("c"), Some(&1));
        assert_eq!(p.get("d"), Some(&2));
        assert_eq!(p.get("a"), Some(&3));
        assert_eq!(p.get("b"), None);
    }

    #[test]
    fn a_parent_decides_its_child() {
        let mut p = rec("p", Status::Running, 0);
        assert_eq!(parent_state(Some(&p), "p"), AfterState::Waiting);
        p.status = Status::Exited;
        p.exit_code = Some(0);
        assert_eq!(parent_state(Some(&p), "p"), AfterState::Ready);
        p.exit_code = Some(3);
        assert_eq!(
            parent_state(Some(&p), "p"),
            AfterState::Failed("task 'p' it starts after exited with status 3".into())
        );
        p.status = Status::Stopped;
        assert!(matches!(parent_state(Some(&p), "p"), AfterState::Failed(_)));
        assert_eq!(
            parent_state(None, "p"),
            AfterState::Failed("task 'p' it starts after was removed".into())
        );
    }
}
