//! Collect: prune the repository's object cache on the engine (see [`crate::sandbox::cache`]).
//!
//! No task's workspace borrows from the cache: it is removed. Otherwise every tip no such
//! task starts from is dropped and the cache repacked, so only history a task can still read
//! stays; a cache that fails its check is rebuilt from the tasks' bases. Never touches a
//! task's refs, workspace or containers.

use anyhow::Result;

use super::{Ctx, Event, Events};
use crate::image;
use crate::runtime::Runtime;
use crate::sandbox::cache::{self, CollectOutcome, Tip, Writer};
use crate::sandbox::spawn::Limits;

/// What went wrong in a collection, beyond the engine's and the refs' own failures.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("could not remove the unused object cache {volume}: {detail}")]
    Remove { volume: String, detail: String },
    /// A failure below the operation (the refs, the engine, the cache's writer), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for GcError {
    fn hint(&self) -> Option<String> {
        match self {
            GcError::Remove { volume, .. } => Some(format!(
                "see what uses it with `docker ps -a --filter volume={volume}`; remove that, then run `git agent gc` again"
            )),
            GcError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            GcError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            GcError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// What `gc` did to the object cache.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "cache", rename_all = "kebab-case")]
pub enum GcResult {
    /// There was no cache.
    None,
    /// No task borrowed from it: it was removed.
    Removed { volume: String },
    /// Tasks borrow from it: it keeps their history only.
    Collected { volume: String, tasks: usize },
    /// It failed its check and was filled again.
    Rebuilt { volume: String, tasks: usize },
}

/// Prune the object cache of this repository.
pub async fn run<R: Runtime>(rt: &R, ctx: &Ctx, events: &dyn Events) -> Result<GcResult, GcError> {
    let volume = cache::volume_name(&ctx.repo);
    let tasks = ctx.store.all()?;
    // Spares serve the next spawn beside running work: with none running they go.
    let n = crate::sandbox::spare::retire_if_idle(rt, &ctx.repo, &tasks).await?;
    if n > 0 {
        events.emit(Event::step(
            None,
            format!(
                "removed {n} spare network{} and gateway{} (no task runs)",
                if n == 1 { "" } else { "s" },
                if n == 1 { "" } else { "s" }
            ),
        ));
    }
    let users: Vec<_> = tasks
        .into_iter()
        .filter(|l| l.record.sandbox.cache.is_some())
        .collect();
    if users.is_empty() {
        return match cache::release_if_unused(rt, &ctx.store, &ctx.repo).await {
            Ok(true) => Ok(GcResult::Removed { volume }),
            Ok(false) => Ok(GcResult::None),
            Err(e) => Err(GcError::Remove {
                volume: volume.clone(),
                detail: format!("{e:#}"),
            }),
        };
    }
    let tips: Vec<Tip> = users
        .iter()
        .map(|l| Tip {
            refname: crate::task::ref_name(&l.record.name, "base"),
            oid: l.ref_value("base").unwrap_or(&l.record.base).to_string(),
        })
        .collect();
    let keep: Vec<String> = tips.iter().map(|t| t.oid.clone()).collect();
    let limits = Limits::from_config(&ctx.config)?;
    let image = super::image::ensure(rt, &image::gateway_plan(&ctx.config)?, events).await?;
    let writer = Writer {
        image: &image,
        limits: &limits,
        events,
    };
    events.emit(Event::step(
        None,
        format!("collecting the object cache {volume}"),
    ));
    match cache::collect(rt, &ctx.git, &ctx.repo, &keep, &writer).await? {
        CollectOutcome::Collected => Ok(GcResult::Collected {
            volume,
            tasks: users.len(),
        }),
        CollectOutcome::Missing => {
            // Tasks borrow from a cache that is gone: make it again now rather than at
            // their next sync or restart.
            events.emit(Event::warning(
                None,
                format!("the object cache {volume} is gone; rebuilding it"),
            ));
            cache::ensure(rt, &ctx.git, &ctx.repo, &tips, &writer, &|_| {}).await?;
            Ok(GcResult::Rebuilt {
                volume,
                tasks: users.len(),
            })
        }
        CollectOutcome::Damaged(why) => {
            events.emit(Event::warning(
                None,
                format!("the object cache {volume} is damaged ({why}); rebuilding it"),
            ));
            cache::rebuild(rt, &ctx.git, &ctx.repo, &tips, &writer).await?;
            Ok(GcResult::Rebuilt {
                volume,
                tasks: users.len(),
            })
        }
    }
}
