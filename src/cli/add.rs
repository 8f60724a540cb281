//! `git agent add`: queue a task for `git agent serve`. Takes `spawn`'s options (shared
//! parsing and checks, see [`super::spawn::prepare`]); the queueing is
//! [`crate::ops::queue::add`].

use anyhow::Result;

use super::spawn::SpawnArgs;
use super::{Ctx, Stderr, out};
use crate::error::hinted;
use crate::ops::{self, OpError};
use crate::task::queue::QueuedSpawn;

/// Queue a task: checked as `spawn` checks it, recorded as queued, started later by
/// `git agent serve`.
///
/// Takes the same options as `spawn`. Everything that needs no container engine is checked
/// now (prompt, template, agent, name, base); the base commit is pinned now, and the prompt
/// rendered (and edited, with --edit). Prints each task's name and returns at once. The
/// repository registers itself for servers in `$XDG_STATE_HOME/git-agent/repos/` (else
/// `~/.local/state/git-agent/repos/`). With --after, the task waits until that task has exited 0
/// and starts on its work; a parent that fails makes it fail without running.
pub async fn run(mut args: SpawnArgs) -> Result<i32> {
    if args.interactive {
        return Err(ops::queue::QueueError::Interactive.into_report());
    }
    if args.wait {
        return Err(hinted(
            "add returns at once; --wait is spawn's",
            "wait for queued tasks with `git agent wait <task>`",
        ));
    }
    let ctx = Ctx::open()?;
    let prepared = super::spawn::prepare(&ctx, &mut args)?;
    let spawn = QueuedSpawn {
        profile: args.network.clone(),
        allow: args.allow.clone(),
        allow_address: args.allow_address.clone(),
        read_only: args.read_only,
        git_readonly: super::spawn::git_readonly(&args),
        stack: args.stack.clone(),
        oci_runtime: args.oci_runtime.clone(),
        description: String::new(),
        engine: args.engine.clone(),
    };
    let names = ops::queue::add(&ctx, &prepared, &spawn, args.after.as_deref(), &Stderr)
        .map_err(OpError::into_report)?;
    for n in names {
        out(n)?;
    }
    Ok(0)
}
