//! Update: move a finished task onto a newer base (its base branch's tip, or `--onto`).
//!
//! The task's commits (and its uncommitted snapshot, carried as one more commit) are
//! re-created on the new base in the object database only ([`crate::git::replay`]): no work
//! tree, index or branch of the user's is touched, and git never runs where the sandbox can
//! write. When every commit applies, the record (new base, change summary) and the task's
//! `base`, `head` and `wip` refs move in one ref transaction, and the new history is sent
//! into the task's workspace the way `restart --reseed` seeds it (a bundle over exec stdin
//! into a reader container; the sandbox helper's `receive` resets the task's branch to it and
//! lays the snapshot over it as uncommitted changes). If that delivery fails, the refs and
//! record are put back as they were.
//!
//! A conflict is reported with its paths and nothing changes: update never resolves one.
//! Handing the conflict to the agent (`--agent`) needs `continue` and is not built here.

use crate::git::replay::{self, Replayed, Scratch};
use crate::runtime::Runtime;
use crate::sandbox::reseed::{self, Seed};
use crate::task::store::Loaded;
use crate::task::{Changes, Status, branch_name};

use super::{Ctx, Event, Events, OpError, lock_task};

/// What to update.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// The new base (a revision); default: the tip of the task's base branch.
    pub onto: Option<String>,
}

/// What an update did.
#[derive(Debug, Clone)]
pub enum Updated {
    /// The task is based on that commit already.
    UpToDate { task: String, base: String },
    /// Re-based: the refs moved, and the sandbox has the new branch when `delivered`.
    Rebased {
        task: String,
        old_base: String,
        new_base: String,
        onto: String,
        commits: usize,
        head: String,
        uncommitted: bool,
        delivered: bool,
    },
    /// A commit does not apply on the new base: nothing changed.
    Conflicts {
        task: String,
        onto: String,
        new_base: String,
        /// The task's commit that does not apply (its uncommitted snapshot when `uncommitted`).
        commit: String,
        uncommitted: bool,
        paths: Vec<String>,
    },
}

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("task '{task}' is still running; it can only be updated once its run has ended")]
    Running { task: String },
    #[error(
        "task '{task}' was started detached (no base branch), so there is no newer base to move it onto"
    )]
    NoBaseBranch { task: String },
    #[error("its base branch '{branch}' no longer exists")]
    BranchGone { task: String, branch: String },
    #[error(
        "task '{task}' is promoted to {branch} already; updating it would leave that branch behind"
    )]
    Promoted { task: String, branch: String },
    #[error(
        "task '{task}' has a merge commit ({commit}); update re-creates straight lines of commits only"
    )]
    MergeCommit { task: String, commit: String },
    #[error(
        "the uncommitted changes of task '{task}' sit on a commit off its branch; update cannot carry them"
    )]
    SnapshotOffBranch { task: String },
    #[error("task '{task}': refs/agent/{task}/{leaf} does not name a commit ({value})")]
    BadRef {
        task: String,
        leaf: String,
        value: String,
    },
    #[error(
        "could not send the updated work into the sandbox of task '{task}'; its refs and record were put back as they were"
    )]
    Delivery {
        task: String,
        #[source]
        source: anyhow::Error,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

super::error::pass_on!(super::sync::SyncError => UpdateError);

impl OpError for UpdateError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            UpdateError::Running { task } => format!(
                "wait for it with `git agent status {task}`, or stop it with `git agent stop {task}`, then update"
            ),
            UpdateError::NoBaseBranch { task } => {
                format!("name the new base: `git agent update {task} --onto <branch>`")
            }
            UpdateError::BranchGone { task, .. } => {
                format!("name the new base: `git agent update {task} --onto <branch>`")
            }
            UpdateError::Promoted { branch, .. } => format!(
                "bring the promoted branch up to date with your own git: `git rebase <base> {branch}`"
            ),
            UpdateError::MergeCommit { task, .. } => format!(
                "promote the work as it is with `git agent commit {task}` and merge it with your own git"
            ),
            UpdateError::SnapshotOffBranch { task } => format!(
                "look at the sandbox with `git agent shell {task}`, commit or drop the changes there, then update"
            ),
            UpdateError::BadRef { task, .. } => super::check::bad_ref_hint(task),
            UpdateError::Delivery { task, .. } => format!(
                "see `git agent status {task}` and `git agent doctor`, then run `git agent update {task}` again"
            ),
            UpdateError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            UpdateError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            UpdateError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// Update a task, waiting for a command that holds it.
pub async fn run<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    req: &UpdateRequest,
    events: &dyn Events,
) -> Result<Updated, UpdateError> {
    let name = ctx.store.resolve_local(&req.task, "update")?.record.name;
    let lock = lock_task(ctx, &name, "update", events).await?;
    let mut loaded = super::reload(ctx, &name)?;
    if loaded.record.sandbox.container.is_some() {
        loaded = crate::sandbox::refresh(rt, &ctx.store, loaded).await?;
    }
    if matches!(loaded.record.status, Status::Running | Status::Creating) {
        return Err(UpdateError::Running { task: name });
    }
    // Before the sync: a broken ref is refused with nothing changed.
    if let Some((leaf, value)) = super::check::broken_ref(ctx, &loaded)? {
        return Err(UpdateError::BadRef {
            task: name,
            leaf,
            value,
        });
    }
    let loaded = super::sync::if_possible(rt, ctx, loaded, &lock, events).await?;
    if loaded.record.promoted.is_some() {
        return Err(UpdateError::Promoted {
            branch: branch_name(&name),
            task: name,
        });
    }
    replay::require_merge_tree(&ctx.git)?;
    let (onto_rev, new_base) = new_base(ctx, &loaded, req.onto.as_deref())?;
    let r = &loaded.record;
    let old_base = r.base.clone();
    if new_base == old_base {
        return Ok(Updated::UpToDate {
            task: name,
            base: old_base,
        });
    }
    let head = loaded.ref_value("head").map(str::to_string);
    let wip = loaded.ref_value("wip").map(str::to_string);
    let mut chain = commits(ctx, &name, &old_base, head.as_deref().unwrap_or(&old_base))?;
    if let Some(w) = &wip {
        let parent = ctx.git.run(["rev-parse", &format!("{w}^")])?;
        if parent != head.as_deref().unwrap_or(&old_base) {
            return Err(UpdateError::SnapshotOffBranch { task: name });
        }
        chain.push(w.clone());
    }
    events.emit(Event::step(
        Some(&name),
        format!(
            "re-creating {} commit{} on {onto_rev} ({})",
            chain.len(),
            if chain.len() == 1 { "" } else { "s" },
            super::review::short(&new_base)
        ),
    ));
    let scratch = Scratch::new(&ctx.git)?;
    let made = match replay::replay(&ctx.git, &scratch, &chain, &new_base)? {
        Replayed::Done(made) => made,
        Replayed::Conflict { commit, paths } => {
            return Ok(Updated::Conflicts {
                uncommitted: wip.as_deref() == Some(commit.as_str()),
                task: name,
                onto: onto_rev,
                new_base,
                commit,
                paths,
            });
        }
    };
    scratch.keep()?;
    let (new_head, new_wip) = match (&wip, made.len()) {
        (Some(_), n) => (
            if n >= 2 {
                made[n - 2].clone()
            } else {
                new_base.clone()
            },
            made.last().cloned(),
        ),
        (None, _) => (made.last().cloned().unwrap_or(new_base.clone()), None),
    };
    let new_tip = new_wip.clone().unwrap_or(new_head.clone());
    let stat = ctx
        .git
        .shortstats(&[(&new_base, &new_tip)])?
        .first()
        .copied()
        .unwrap_or_default();
    let msg = format!(
        "update: {} commit{} onto {onto_rev} ({})",
        made.len() - usize::from(wip.is_some()),
        if made.len() - usize::from(wip.is_some()) == 1 {
            ""
        } else {
            "s"
        },
        super::review::short(&new_base)
    );
    let head_ref = head.as_ref().map(|_| new_head.clone());
    let before = loaded.clone();
    let moved = move_refs(ctx, &name, &msg, |rec| {
        rec.base = new_base.clone();
        rec.changes = Some(Changes {
            tip: new_tip.clone(),
            files: stat.0,
            insertions: stat.1,
            deletions: stat.2,
        });
        vec![
            ("base".into(), Some(new_base.clone())),
            ("head".into(), head_ref.clone()),
            ("wip".into(), new_wip.clone()),
        ]
    })?;
    let delivered = if moved.record.sandbox.container.is_some() {
        if let Err(e) = deliver(rt, ctx, &moved).await {
            let old = before.record.clone();
            move_refs(
                ctx,
                &name,
                "update undone: the sandbox could not take it",
                |rec| {
                    rec.base = old.base.clone();
                    rec.changes = old.changes.clone();
                    vec![
                        ("base".into(), before.ref_value("base").map(str::to_string)),
                        ("head".into(), head.clone()),
                        ("wip".into(), wip.clone()),
                    ]
                },
            )?;
            return Err(UpdateError::Delivery {
                task: name,
                source: e,
            });
        }
        true
    } else {
        false
    };
    Ok(Updated::Rebased {
        task: name,
        old_base,
        new_base,
        onto: onto_rev,
        commits: made.len() - usize::from(wip.is_some()),
        head: new_head,
        uncommitted: wip.is_some(),
        delivered,
    })
}

/// The new base: `--onto`'s commit, else the base branch's tip.
fn new_base(
    ctx: &Ctx,
    loaded: &Loaded,
    onto: Option<&str>,
) -> Result<(String, String), UpdateError> {
    let task = loaded.record.name.clone();
    if let Some(rev) = onto {
        return Ok((rev.to_string(), ctx.git.resolve_commit(rev)?));
    }
    let Some(branch) = loaded.record.base_branch.clone() else {
        return Err(UpdateError::NoBaseBranch { task });
    };
    match ctx
        .git
        .ref_value(&format!("refs/heads/{branch}^{{commit}}"))?
    {
        Some(tip) => Ok((branch, tip)),
        None => Err(UpdateError::BranchGone { task, branch }),
    }
}

/// The task's commits `base..head`, oldest first; each must have one parent, the one before.
fn commits(ctx: &Ctx, task: &str, base: &str, head: &str) -> Result<Vec<String>, UpdateError> {
    if head == base {
        return Ok(Vec::new());
    }
    let text = ctx.git.run([
        "rev-list",
        "--reverse",
        "--topo-order",
        "--parents",
        &format!("{base}..{head}"),
    ])?;
    let mut out = Vec::new();
    let mut prev = base.to_string();
    for line in text.lines() {
        let mut ids = line.split_whitespace();
        let id = ids.next().unwrap_or_default().to_string();
        let parents: Vec<&str> = ids.collect();
        if parents.len() != 1 || parents[0] != prev {
            return Err(UpdateError::MergeCommit {
                task: task.to_string(),
                commit: id,
            });
        }
        prev = id.clone();
        out.push(id);
    }
    Ok(out)
}

/// Apply one state change (record and the task's refs) in one ref transaction.
fn move_refs<F>(ctx: &Ctx, task: &str, msg: &str, change: F) -> anyhow::Result<Loaded>
where
    F: FnOnce(&mut crate::task::TaskRecord) -> Vec<(String, Option<String>)>,
{
    let prepared = ctx
        .store
        .prepare(task, msg, &[], |rec, _| Ok(change(rec)))?;
    ctx.git.transaction(&prepared.updates)?;
    super::reload(ctx, task)
}

/// Send the task's branch (and snapshot) into its workspace through a reader container.
async fn deliver<R: Runtime>(rt: &R, ctx: &Ctx, loaded: &Loaded) -> anyhow::Result<()> {
    let reader = crate::sandbox::sync::start_reader(rt, &ctx.store, loaded).await?;
    let result = reseed::deliver(
        rt,
        &ctx.git,
        &reader,
        &loaded.record.name,
        &Seed::of(loaded),
    )
    .await;
    rt.remove_container(&reader).await.ok();
    result
}
