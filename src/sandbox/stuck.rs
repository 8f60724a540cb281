//! Spawns that died. A spawn takes the task's lease ([`Lease`]) before it writes the task's
//! refs and keeps it until the task runs (or is removed again), and the kernel releases a
//! lease when its holder dies. So a task recorded as `creating` whose lease nobody holds was
//! left by a spawn that was killed: a fact, not a guess about how long spawns take. Such a
//! record is shown as `failed` ("spawn interrupted") by `list` and `status` ([`as_seen`], which
//! changes nothing), and recorded so by the commands that change the task and by `doctor
//! --fix` ([`settle`]), so `purge` can take it away.

use anyhow::Result;

use crate::git::Git;
use crate::task::lock::Lease;
use crate::task::queue::{dead_claim, requeue};
use crate::task::store::{Loaded, TaskStore};
use crate::task::{Status, now};

/// The reason recorded for a task whose spawn died.
pub const REASON: &str = "spawn interrupted";

/// Was this task left `creating` by a spawn that is no longer alive? (A queued task's
/// worker that died before creating its sandbox left a dead claim instead: see
/// [`claim_died`].)
pub fn spawn_died(git: &Git, loaded: &Loaded) -> Result<bool> {
    Ok(loaded.record.status == Status::Creating
        && !Lease::held(git, &loaded.record.name)?
        && !dead_claim(&loaded.record, false))
}

/// Was this queued task claimed by a worker that died before it created anything?
pub fn claim_died(git: &Git, loaded: &Loaded) -> Result<bool> {
    Ok(dead_claim(
        &loaded.record,
        Lease::held(git, &loaded.record.name)?,
    ))
}

/// Did this task's spawn die (recorded or not yet)?
pub fn is_interrupted(loaded: &Loaded) -> bool {
    loaded.record.status == Status::Failed && loaded.record.reason.as_deref() == Some(REASON)
}

/// Record a task whose spawn died as `failed` ("spawn interrupted"); any other task is
/// returned as it is. The update applies only to a record still `creating` while the lease is
/// still free, so a spawn that finishes meanwhile is never overruled.
pub fn settle(store: &TaskStore, loaded: Loaded) -> Result<Loaded> {
    let git = store.git();
    if claim_died(git, &loaded)? {
        // Back in the queue, under the lease so a live claimer is never overruled.
        let name = loaded.record.name.clone();
        let Ok(_lease) = Lease::take(git, &name) else {
            return Ok(loaded);
        };
        return store.update(&name, "requeue: its claimer died", |r, _| {
            if dead_claim(r, false) {
                requeue(r);
            }
            Ok(vec![])
        });
    }
    if !spawn_died(git, &loaded)? {
        return Ok(loaded);
    }
    let name = loaded.record.name.clone();
    store.update(&name, REASON, |r, _| {
        if r.status == Status::Creating && !Lease::held(git, &name)? {
            mark(r);
        }
        Ok(vec![])
    })
}

/// The task as [`settle`] would record it, in memory only: what read-only commands show.
pub fn as_seen(git: &Git, mut loaded: Loaded) -> Result<Loaded> {
    if claim_died(git, &loaded)? {
        requeue(&mut loaded.record);
    }
    if spawn_died(git, &loaded)? {
        mark(&mut loaded.record);
    }
    Ok(loaded)
}

fn mark(r: &mut crate::task::TaskRecord) {
    r.status = Status::Failed;
    r.reason = Some(REASON.to_string());
    r.finished = Some(now());
}
