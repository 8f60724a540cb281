//! The server: runs queued tasks from every registered repository, oldest first, at most N
//! at a time across all of them.
//!
//! Each task is run by a worker: a child `git agent run-queued` process in the task's
//! repository, in its own process group. The child claims the task (lease + compare-and-swap,
//! see [`super::queue::work`]), starts it through the spawn path and waits for its run to end;
//! its slot frees when it exits. A process per task was chosen over running the spawn path
//! in this process because Ctrl-C is process-wide here (an interrupted spawn undoes itself),
//! the spawn path blocks on git between engine calls, and a worker that crashes takes only
//! its own task with it (its claim is put back in the queue).
//!
//! Registry entries ([`crate::registry`]) only say where to look: a path must be a directory
//! owned by this user, git must discover the same repository there as the entry's name
//! says, and its refs must hold queued tasks (read in process) before anything else runs.
//! Stopping (SIGTERM, Ctrl-C) stops claiming and leaves running tasks running.
//! Owns the scheduling; it must not print, prompt, or start a task itself.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Result;

use super::queue::AfterState;
use super::{Ctx, Event, Events};
use crate::runtime::Runtime;
use crate::task::Status;

/// Why the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--workers must be at least 1")]
    NoWorkers,
    /// A failure below the operation (the engine, starting a worker), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for ServeError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ServeError::NoWorkers => "pass --workers 1 or more (default: agent.workers, 2)".into(),
            ServeError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            ServeError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            ServeError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub workers: usize,
    /// Drain what is queued now and return once every task has ended.
    pub once: bool,
    /// The git-agent binary the workers run.
    pub program: PathBuf,
}

/// What the server left when it stopped.
#[derive(Debug, Default)]
pub struct ServeReport {
    /// Tasks the server started, as `repository: task`.
    pub started: Vec<String>,
    /// Tasks whose workers were still running when it stopped (they keep running).
    pub running: Vec<String>,
    /// Queued tasks left in the queue.
    pub queued: usize,
}

/// Worker exit codes (see `cli::serve`'s `run-queued`).
pub const WORKER_LOST: i32 = 3;
pub const WORKER_NOT_READY: i32 = 4;

struct Worker {
    repo: PathBuf,
    task: String,
    child: tokio::process::Child,
}

/// One queued task a scan found ready to start.
struct Candidate {
    created: i64,
    repo: PathBuf,
    task: String,
    /// Where its worker writes what it does (`<git dir>/git-agent/serve/<task>.log`).
    log: PathBuf,
}

/// Serve until `stop` resolves (or, with `once`, until the queue is drained).
pub async fn run<R: Runtime>(
    rt: &R,
    opts: &ServeOptions,
    events: &dyn Events,
    stop: impl std::future::Future<Output = ()>,
) -> Result<ServeReport, ServeError> {
    if opts.workers == 0 {
        return Err(ServeError::NoWorkers);
    }
    let server_pid = std::process::id();
    let server_started = crate::task::now();
    let mut report = ServeReport::default();
    let mut workers: Vec<Worker> = Vec::new();
    let mut warned = HashSet::new();
    let mut stopping = false;
    tokio::pin!(stop);
    loop {
        // Reap the workers that ended.
        let mut i = 0;
        while i < workers.len() {
            match workers[i].child.try_wait() {
                Ok(Some(status)) => {
                    let w = workers.remove(i);
                    let what = match status.code() {
                        Some(0) => "ended".to_string(),
                        Some(WORKER_LOST) => "was taken by another server".to_string(),
                        Some(WORKER_NOT_READY) => "waits for the task it starts after".to_string(),
                        Some(c) => format!("ended with a failure (worker status {c})"),
                        None => "worker was killed".to_string(),
                    };
                    events.emit(Event::step(Some(&w.task), format!("{}: {what}", w.task)));
                }
                _ => i += 1,
            }
        }
        if stopping {
            break;
        }
        let busy: BTreeSet<(PathBuf, String)> = workers
            .iter()
            .map(|w| (w.repo.clone(), w.task.clone()))
            .collect();
        let (candidates, queued) = scan(rt, &busy, &mut warned, events).await;
        report.queued = queued;
        for c in candidates
            .into_iter()
            .take(opts.workers.saturating_sub(workers.len()))
        {
            // The worker's own output goes to a log beside the task's (not the server's
            // stderr, which would stay open as long as the task runs).
            let log = c.log.clone();
            let log_file = log
                .parent()
                .map(std::fs::create_dir_all)
                .transpose()
                .and_then(|_| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                });
            let log_file = match log_file {
                Ok(f) => f,
                Err(e) => {
                    events.emit(Event::warning(
                        Some(&c.task),
                        format!("cannot write the worker's log {}: {e}", log.display()),
                    ));
                    continue;
                }
            };
            let child = tokio::process::Command::new(&opts.program)
                .arg("run-queued")
                .arg(&c.task)
                .arg("--server-pid")
                .arg(server_pid.to_string())
                .arg("--server-started")
                .arg(server_started.to_string())
                .current_dir(&c.repo)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .process_group(0)
                .spawn();
            match child {
                Ok(child) => {
                    events.emit(Event::step(
                        Some(&c.task),
                        format!(
                            "starting {} in {} (log: {})",
                            c.task,
                            c.repo.display(),
                            log.display()
                        ),
                    ));
                    report
                        .started
                        .push(format!("{}: {}", c.repo.display(), c.task));
                    workers.push(Worker {
                        repo: c.repo,
                        task: c.task,
                        child,
                    });
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!(
                            "cannot start a worker ({})",
                            opts.program.display()
                        ))
                        .into());
                }
            }
        }
        if opts.once && workers.is_empty() && queued == 0 {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(400)) => {}
            _ = &mut stop => { stopping = true; }
        }
    }
    report.running = workers.iter().map(|w| w.task.clone()).collect();
    Ok(report)
}

/// Is `path` a directory this user owns (not a link)?
pub(super) fn owned_directory(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_dir() && m.uid() == unsafe { libc::getuid() })
}

/// The queued tasks ready to start, oldest first across every registered repository, and
/// how many tasks are queued in all (those waiting for their parent too).
async fn scan<R: Runtime>(
    rt: &R,
    busy: &BTreeSet<(PathBuf, String)>,
    warned: &mut HashSet<String>,
    events: &dyn Events,
) -> (Vec<Candidate>, usize) {
    let mut candidates = Vec::new();
    let mut queued = 0;
    let mut warn = |key: String, message: String| {
        if warned.insert(key) {
            events.emit(Event::warning(None, message));
        }
    };
    for (path, entry) in crate::registry::entries() {
        // A repository that is gone (deleted, moved) is forgotten; anything else that does
        // not check out stays listed and skipped, with a warning.
        if std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            crate::registry::forget(&entry);
            events.emit(Event::step(
                None,
                format!("forgot {}: it is gone", path.display()),
            ));
            continue;
        }
        if !owned_directory(&path) {
            warn(
                path.display().to_string(),
                format!("skipping {}: not a directory of yours", path.display()),
            );
            continue;
        }
        let Ok(git) = crate::git::Git::discover(&path) else {
            warn(
                path.display().to_string(),
                format!("skipping {}: not a git repository", path.display()),
            );
            continue;
        };
        let entry_name = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if crate::registry::entry_name(&git.common_dir) != entry_name || git.dir != path {
            warn(
                path.display().to_string(),
                format!(
                    "skipping {}: the registry entry does not name this repository",
                    path.display()
                ),
            );
            continue;
        }
        // Refs only (in process) until there is queued work.
        let Ok(store) = crate::task::store::TaskStore::open(&git) else {
            continue;
        };
        let Ok(names) = store.names() else { continue };
        let mut records = Vec::new();
        for name in names {
            match store.load(&name) {
                Ok(Some(l)) => records.push(l),
                Ok(None) => {}
                Err(e) => warn(
                    format!("{}:{name}", path.display()),
                    format!(
                        "skipping task {name} in {}: its record is unreadable ({e:#})",
                        path.display()
                    ),
                ),
            }
        }
        let waiting = records.iter().any(|l| {
            l.record.status == Status::Queued
                || (l.record.status == Status::Creating && l.record.claim.is_some())
        });
        if !waiting {
            continue;
        }
        let Ok(ctx) = Ctx::open_at(&path) else {
            continue;
        };
        for l in records {
            let Ok(l) = super::queue::settle_dead_claim(&ctx, l) else {
                continue;
            };
            if l.record.status != Status::Queued {
                continue;
            }
            queued += 1;
            let r = &l.record;
            if busy.contains(&(path.clone(), r.name.clone())) {
                continue;
            }
            if let Some(parent) = &r.after {
                // A parent on a named engine is asked there.
                let own = match ctx.store.load(parent) {
                    Ok(Some(p)) if p.record.engine.is_some() => {
                        super::engine_of_for_reading(&ctx, &p.record).await.ok()
                    }
                    _ => None,
                };
                let now = match &own {
                    Some(own) => super::queue::parent_now(own, &ctx, parent).await,
                    None => super::queue::parent_now(rt, &ctx, parent).await,
                };
                match now {
                    Ok(AfterState::Waiting) | Err(_) => continue,
                    // A failed parent is the worker's to record (it refuses the task).
                    Ok(_) => {}
                }
            }
            candidates.push(Candidate {
                created: r.created,
                repo: path.clone(),
                task: r.name.clone(),
                log: crate::task::lock::state_dir(&git)
                    .join("serve")
                    .join(format!("{}.log", r.name)),
            });
        }
    }
    candidates.sort_by(|a, b| (a.created, &a.repo, &a.task).cmp(&(b.created, &b.repo, &b.task)));
    (candidates, queued)
}
