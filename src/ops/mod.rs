//! The operations layer: what the commands do (spawn, sync, promote, push, restart, stop,
//! remove, allow, ...), one module per operation, with typed inputs and typed results.
//!
//! Operations never print, prompt or read the terminal. What a user should see while one
//! runs (steps, warnings, waiting for another command) goes to an [`Events`] sink, so the
//! same operation drives the command line, a JSON stream, a dashboard or a server. Only
//! `cli/` renders results and events.
//!
//! Below this layer: [`crate::task`] (state in refs), [`crate::git`] (host git),
//! [`crate::sandbox`] (driving one task's container), [`crate::runtime`] (the engine seam).

pub mod allow;
pub mod attach;
pub mod check;
pub mod commit;
pub mod compare;
pub mod dashboard;
pub mod doctor;
pub mod draft_msg;
pub mod error;
pub mod events;
pub mod follow;
pub mod followup;
pub mod gate;
pub mod gc;
pub mod hooks;
pub mod image;
pub mod images;
pub mod inspect;
pub mod logs;
pub mod merge;
pub mod placement;
pub mod preview;
pub mod push;
pub mod queue;
pub mod remove;
pub mod restart;
pub mod retry;
pub mod review;
pub mod select;
pub mod serve;
pub mod setup;
pub mod spawn;
pub mod stop;
pub mod sync;
pub mod update;
pub mod wait;

pub use error::OpError;
pub use events::{Event, Events, NoEvents};

use anyhow::Result;

use crate::error::hinted;
use crate::git::{Config, Git};
use crate::runtime::engines::EngineDef;
use crate::runtime::select::Engine;
use crate::sandbox::RepoId;
use crate::task::lock::TaskLock;
use crate::task::store::{Loaded, TaskStore};

/// What every operation in a repository needs.
pub struct Ctx {
    pub git: Git,
    pub store: TaskStore,
    pub config: Config,
    pub repo: RepoId,
}

impl Ctx {
    /// Find the repository from the current directory (any directory of any of its work
    /// trees) and refuse at once, before anything is read or written, a repository format
    /// git-agent cannot work in (see [`crate::git::format`]).
    pub fn open() -> Result<Ctx> {
        let cwd = std::env::current_dir()?;
        Ctx::open_at(&cwd)
    }

    /// [`Ctx::open`] from a given directory.
    pub fn open_at(dir: &std::path::Path) -> Result<Ctx> {
        let git = Git::discover(dir)?;
        git.require_supported_format()?;
        // Objects and quarantines of a promotion that was killed go at the next command.
        crate::git::promote::sweep(&git, None);
        let store = TaskStore::open(&git).map_err(|e| {
            hinted(
                format!("git-agent cannot open this repository's refs: {e:#}"),
                "git-agent reads refs in process (gitoxide) and writes them with the `git` on PATH; either may not support a setting in `git config --get-regexp '^extensions\\.'`: upgrade git, or work in a plain clone (`git clone <this repository> <dir>`)",
            )
        })?;
        let config = git.agent_config()?;
        let repo = RepoId::of(&git);
        Ok(Ctx {
            git,
            store,
            config,
            repo,
        })
    }

    /// The cap on bytes accepted from a sandbox in one sync.
    pub fn bundle_limit(&self) -> Result<u64> {
        self.config.size("agent.maxBundleSize", 1 << 30)
    }
}

/// Take a task's lock for an operation that changes it; while another command holds it, say
/// so through `events` and wait. Re-read the task after this: it may have changed meanwhile.
pub async fn lock_task(ctx: &Ctx, task: &str, what: &str, events: &dyn Events) -> Result<TaskLock> {
    TaskLock::acquire(&ctx.git, task, what, |holder| {
        events.emit(Event::Waiting {
            task: task.to_string(),
            holder: holder.to_string(),
        });
    })
    .await
}

/// Read a task again once its lock is held: another command may have purged it meanwhile.
pub fn reload(ctx: &Ctx, task: &str) -> Result<Loaded> {
    ctx.store.load(task)?.ok_or_else(|| {
        hinted(
            format!("task '{task}' was purged by another command while this one waited; nothing was changed"),
            "see the tasks there are with `git agent list`",
        )
    })
}

/// Connect to the container engine (the one [`crate::runtime::select`] chooses).
pub async fn engine() -> Result<Engine> {
    Engine::connect().await
}

/// The engines the user configured (see [`crate::runtime::engines`]).
pub fn engine_defs(ctx: &Ctx) -> Result<Vec<EngineDef>> {
    crate::runtime::engines::configured(&ctx.config)
}

/// The engine of commands about the repository rather than one task (`gc`, `images`,
/// `image build`): the one `agent.engine` names, else the first configured (the
/// environment's when none is).
pub async fn engine_default(ctx: &Ctx) -> Result<Engine> {
    let defs = engine_defs(ctx)?;
    let name = ctx.config.get("agent.engine").map(str::trim);
    let def = match name {
        Some(n) => crate::runtime::engines::of_task(&defs, Some(n))?,
        None => defs[0].clone(),
    };
    Engine::connect_to(&def, crate::runtime::docker::CONNECT_TIMEOUT).await
}

/// The engine `record`'s task runs on (its record names it).
pub async fn engine_of(ctx: &Ctx, record: &crate::task::TaskRecord) -> Result<Engine> {
    let def = crate::runtime::engines::of_task(&engine_defs(ctx)?, record.engine.as_deref())?;
    Engine::connect_to(&def, crate::runtime::docker::CONNECT_TIMEOUT).await
}

/// [`engine_of`] for the task named `task` (its record read now).
pub async fn engine_of_task(ctx: &Ctx, task: &str) -> Result<Engine> {
    let loaded = ctx.store.resolve(task)?;
    engine_of(ctx, &loaded.record).await
}

/// [`engine_of`] for an operation that can do without it: gives up sooner.
pub async fn engine_of_for_reading(ctx: &Ctx, record: &crate::task::TaskRecord) -> Result<Engine> {
    let def = crate::runtime::engines::of_task(&engine_defs(ctx)?, record.engine.as_deref())?;
    Engine::connect_to(&def, crate::runtime::docker::READ_CONNECT_TIMEOUT).await
}

/// Connect to the container engine for an operation that can do without it: gives up sooner.
pub async fn engine_for_reading() -> Result<Engine> {
    Engine::connect_within(crate::runtime::docker::READ_CONNECT_TIMEOUT).await
}
