//! Check: how a task's work stands against its base branch now, read-only. Commits ahead and
//! behind, whether the work merges cleanly into the branch's tip (computed in the object
//! database with `git merge-tree --write-tree`, in a scratch object directory that is
//! dropped), whether it is promoted, pushed and merged, and what review flags.
//!
//! Writes nothing (no ref, no record, no object) and never syncs: it reads the work as last
//! synced and says when that may be stale (the task still runs). Returns data; `cli::check`
//! renders it.

use serde::Serialize;

use crate::git::replay::{self, Merged, Scratch};
use crate::git::sensitive::Flag;
use crate::task::store::Loaded;
use crate::task::{Status, branch_name};

use super::{Ctx, OpError};

/// What `check` found (`--json` prints it as is: its keys are stable).
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub task: String,
    /// The task's status (as the engine confirmed it, when `status_checked`).
    pub status: String,
    pub status_checked: bool,
    /// The run has not ended: its work may be newer than the last sync.
    pub running: bool,
    /// When the work was last brought home (seconds since the epoch), if ever.
    pub synced: Option<i64>,
    /// The commit the task started from.
    pub base: String,
    /// The branch it started from, if any.
    pub base_branch: Option<String>,
    /// What the work was compared with.
    pub compared_with: Compared,
    /// The task's branch as last synced (its base when nothing was synced).
    pub head: String,
    /// The last sync found uncommitted changes (they count in `merge`, not in `ahead`).
    pub uncommitted: bool,
    /// Commits of the task not in `compared_with`.
    pub ahead: u64,
    /// Commits of `compared_with` not in the task.
    pub behind: u64,
    pub merge: MergeCheck,
    pub promoted: Option<PromotedState>,
    pub pushed: Option<PushedState>,
    pub merged: Option<MergedState>,
    /// What review flags in the work (the same findings as `git agent review`).
    pub flags: Vec<Flag>,
    /// Things to know about these answers (stale work, a detached base, a missing branch).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    /// `refs/heads/<branch>`, or the base commit when there is no branch to compare with.
    pub rev: String,
    pub commit: String,
    /// No branch: the task started detached (or its branch is gone), so this is its base.
    pub detached: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MergeCheck {
    pub clean: bool,
    /// Paths that conflict, when not clean.
    pub conflicts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromotedState {
    pub branch: String,
    pub commit: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PushedState {
    /// The remote-tracking branch looked at (the upstream, else `<remote>/agent/<task>`).
    pub remote_branch: String,
    /// It contains the promoted commit.
    pub contains: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MergedState {
    /// `recorded` (by `git agent merge`) or `contained` (the branch has the work).
    pub how: String,
    pub into: String,
    pub commit: Option<String>,
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A ref of the task does not name a commit (changed outside git-agent, or damaged).
    #[error("task '{task}': refs/agent/{task}/{leaf} does not name a commit ({value})")]
    BadRef {
        task: String,
        leaf: String,
        value: String,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl OpError for CheckError {
    fn hint(&self) -> Option<String> {
        match self {
            CheckError::BadRef { task, .. } => Some(bad_ref_hint(task)),
            CheckError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            CheckError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            CheckError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// What to do about a task ref that names no commit.
pub fn bad_ref_hint(task: &str) -> String {
    format!(
        "the task's refs were changed outside git-agent; look at them with `git for-each-ref refs/agent/{task}/`, and remove the task with `git agent purge {task}` if its work is lost"
    )
}

/// The first of the task's work refs (`base`, `head`, `wip`) that does not name a commit, as
/// `(leaf, value)`.
pub fn broken_ref(ctx: &Ctx, loaded: &Loaded) -> anyhow::Result<Option<(String, String)>> {
    let mut refs = vec![("base".to_string(), loaded.record.base.clone())];
    for leaf in ["base", "head", "wip"] {
        if let Some(v) = loaded.ref_value(leaf) {
            refs.push((leaf.to_string(), v.to_string()));
        }
    }
    for (leaf, value) in refs {
        let ok = crate::git::is_hex_id(&value)
            && ctx
                .git
                .test(["cat-file", "-e", &format!("{value}^{{commit}}")])
                .unwrap_or(false);
        if !ok {
            return Ok(Some((leaf, crate::error::sanitize(&value))));
        }
    }
    Ok(None)
}

/// Check a task (any unique prefix of its name).
pub async fn run(ctx: &Ctx, task: &str) -> Result<Checked, CheckError> {
    let mut loaded = ctx.store.resolve(task)?;
    let mut status_checked = loaded.record.sandbox.container.is_none();
    if loaded.record.sandbox.container.is_some()
        && let Ok(rt) = super::engine_of_for_reading(ctx, &loaded.record).await
    {
        loaded = super::inspect::effective(&rt, &ctx.store, loaded)
            .await
            .map_err(OpError::into_report)?;
        status_checked = true;
    }
    check(ctx, &loaded, status_checked)
}

/// The facts of [`run`] for a loaded task.
pub fn check(ctx: &Ctx, loaded: &Loaded, status_checked: bool) -> Result<Checked, CheckError> {
    let r = &loaded.record;
    let name = r.name.clone();
    if let Some((leaf, value)) = broken_ref(ctx, loaded)? {
        return Err(CheckError::BadRef {
            task: name,
            leaf,
            value,
        });
    }
    replay::require_merge_tree(&ctx.git)?;
    let mut notes = Vec::new();
    let running = matches!(r.status, Status::Running | Status::Creating);
    if running {
        notes.push(match r.synced {
            Some(t) => format!(
                "the task is still running: this is its work as synced {} ago (`git agent sync {name}` brings it up to date)",
                crate::task::age(t, crate::task::now())
            ),
            None => format!(
                "the task is still running and nothing was synced yet (`git agent sync {name}` brings its work home)"
            ),
        });
    }
    let compared_with = compared_with(ctx, loaded, &mut notes)?;
    let head = loaded.ref_value("head").unwrap_or(&r.base).to_string();
    let tip = loaded.tip().to_string();
    let counts = ctx.git.run([
        "rev-list",
        "--left-right",
        "--count",
        &format!("{}...{head}", compared_with.commit),
    ])?;
    let mut nums = counts
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    let behind = nums.next().unwrap_or(0);
    let ahead = nums.next().unwrap_or(0);
    let scratch = Scratch::new(&ctx.git)?;
    let merge = match replay::merge_trees(&ctx.git, &scratch, None, &compared_with.commit, &tip)? {
        Merged::Clean(_) => MergeCheck {
            clean: true,
            conflicts: Vec::new(),
        },
        Merged::Conflicts(paths) => MergeCheck {
            clean: false,
            conflicts: paths,
        },
    };
    drop(scratch);
    let promoted = r.promoted.as_ref().map(|p| PromotedState {
        branch: branch_name(&name),
        commit: p.branch_tip.clone(),
    });
    let pushed = match &promoted {
        Some(p) => pushed(ctx, &p.branch, &p.commit)?,
        None => None,
    };
    let merged = merged(ctx, loaded, &compared_with, &head)?;
    let flags = super::review::gather(ctx, loaded)
        .map_err(OpError::into_report)?
        .flags;
    Ok(Checked {
        task: name,
        status: r.status.as_str().to_string(),
        status_checked,
        running,
        synced: r.synced,
        base: r.base.clone(),
        base_branch: r.base_branch.clone(),
        compared_with,
        head,
        uncommitted: loaded.ref_value("wip").is_some(),
        ahead,
        behind,
        merge,
        promoted,
        pushed,
        merged,
        flags,
        notes,
    })
}

/// The base branch's tip now, or the base commit for a task started detached (or whose
/// branch is gone), with a note saying so.
fn compared_with(ctx: &Ctx, loaded: &Loaded, notes: &mut Vec<String>) -> anyhow::Result<Compared> {
    let r = &loaded.record;
    if let Some(branch) = &r.base_branch {
        let full = format!("refs/heads/{branch}");
        if let Some(tip) = ctx.git.ref_value(&format!("{full}^{{commit}}"))? {
            return Ok(Compared {
                rev: full,
                commit: tip,
                detached: false,
            });
        }
        notes.push(format!(
            "its base branch '{branch}' no longer exists: compared with the task's base commit"
        ));
    } else {
        notes.push(
            "the task was started detached (no base branch): compared with its base commit"
                .to_string(),
        );
    }
    Ok(Compared {
        rev: r.base.clone(),
        commit: r.base.clone(),
        detached: true,
    })
}

/// The promoted branch's remote-tracking branch (its upstream, else `<remote>/<branch>` of
/// the first remote that has one) and whether it holds the promoted commit.
fn pushed(ctx: &Ctx, branch: &str, commit: &str) -> anyhow::Result<Option<PushedState>> {
    let upstream = ctx
        .git
        .ref_value(&format!("refs/heads/{branch}@{{upstream}}"))?
        .and_then(|_| {
            ctx.git
                .run([
                    "rev-parse",
                    "--symbolic-full-name",
                    &format!("refs/heads/{branch}@{{upstream}}"),
                ])
                .ok()
        })
        .filter(|s| s.starts_with("refs/"));
    let candidate = match upstream {
        Some(u) => Some(u),
        None => ctx
            .git
            .refs_under(&["refs/remotes/"])?
            .into_iter()
            .map(|(name, _)| name)
            .find(|name| {
                name.strip_prefix("refs/remotes/")
                    .and_then(|rest| rest.split_once('/'))
                    .is_some_and(|(_, b)| b == branch)
            }),
    };
    let Some(remote_branch) = candidate else {
        return Ok(None);
    };
    let contains = ctx
        .git
        .test(["merge-base", "--is-ancestor", commit, &remote_branch])?;
    Ok(Some(PushedState {
        remote_branch: remote_branch
            .strip_prefix("refs/remotes/")
            .unwrap_or(&remote_branch)
            .to_string(),
        contains,
    }))
}

/// Merged: the record says so (`git agent merge`), or the base branch holds the promoted
/// commit or the task's own commits.
fn merged(
    ctx: &Ctx,
    loaded: &Loaded,
    compared: &Compared,
    head: &str,
) -> anyhow::Result<Option<MergedState>> {
    let r = &loaded.record;
    if let Some(m) = &r.merged {
        return Ok(Some(MergedState {
            how: "recorded".into(),
            into: m.into.clone(),
            commit: Some(m.commit.clone()),
        }));
    }
    if compared.detached {
        return Ok(None);
    }
    let into = compared
        .rev
        .strip_prefix("refs/heads/")
        .unwrap_or(&compared.rev)
        .to_string();
    let mut candidates = Vec::new();
    if let Some(p) = &r.promoted {
        candidates.push(p.branch_tip.clone());
    }
    if head != r.base {
        candidates.push(head.to_string());
    }
    for c in candidates {
        if ctx
            .git
            .test(["merge-base", "--is-ancestor", &c, &compared.commit])?
        {
            return Ok(Some(MergedState {
                how: "contained".into(),
                into,
                commit: None,
            }));
        }
    }
    Ok(None)
}
