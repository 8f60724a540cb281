//! Merge: bring a task's promoted work into the user's current branch with the user's own
//! git in their own work tree (`git merge`, `git merge --squash` + `git commit`, or a
//! rebase of the work onto the branch by `git cherry-pick`), so their hooks, signing
//! (`commit.gpgSign`) and merge settings apply; then record it in the task's `merged`.
//!
//! The task is promoted first when its work is not all on `agent/<task>` (the normal
//! promotion path, [`super::commit`]); git then works only with that branch, which holds the
//! user's own re-created commits, never raw agent commits. Refuses before anything changes
//! when the work tree has changes to tracked files, HEAD is detached, or a merge, rebase,
//! cherry-pick or revert is in progress. A conflict leaves git's usual conflict state for the
//! user to finish or abort; nothing is recorded until a merge succeeds. This module never
//! prints; git's own output comes back as data, and git reaches the terminal only when the
//! caller asks for an interactive merge (the user's editor for the message).

use std::process::Stdio;

use super::commit::{CommitError, Committed};
use super::{Ctx, Event, Events, OpError, lock_task};
use crate::task::{Merge, branch_name, now};

/// How the work is brought in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// `git merge` (a fast-forward when the user's settings allow one).
    Merge,
    /// `git merge --squash`, then `git commit`: one commit.
    Squash,
    /// Each commit replayed onto the branch (`git cherry-pick`), then the branch is where the
    /// rebased work ends: a rebase and fast-forward, without touching `agent/<task>`.
    Rebase,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Merge => "merge",
            How::Squash => "squash",
            How::Rebase => "rebase",
        }
    }
}

/// What to merge.
#[derive(Debug, Clone)]
pub struct MergeRequest {
    /// The task (any unique prefix of its name).
    pub task: String,
    pub how: How,
    /// Let git use the terminal (the editor for the merge or squash message). When false,
    /// git is told `--no-edit` and its output is captured.
    pub interactive: bool,
    /// Message for the promotion of the task's uncommitted changes, when it needs one.
    pub message: Option<String>,
}

/// What a merge did.
#[derive(Debug, Clone)]
pub struct Merged {
    pub task: String,
    /// `agent/<task>`.
    pub branch: String,
    /// The user's branch it went into (short name).
    pub into: String,
    /// The branch's new tip.
    pub commit: String,
    pub how: How,
    /// The promotion that ran first (none written when the work was on the branch already).
    pub promoted: Committed,
    /// git's standard output (captured when not interactive; not escaped).
    pub output: String,
}

/// Why a merge did not happen, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("your work tree has changes to tracked files; nothing was merged")]
    Dirty,
    #[error("HEAD is detached; nothing was merged")]
    Detached,
    #[error("the current branch is {branch} itself; nothing was merged")]
    OntoItself { branch: String },
    #[error("a {what} is in progress; nothing was merged")]
    InProgress { what: &'static str },
    #[error("merging {branch} into {into} stopped with conflicts")]
    Conflict {
        branch: String,
        into: String,
        how: How,
    },
    #[error(
        "rebasing {branch} needs a history without merges; it has {merges} merge commit(s); nothing was merged"
    )]
    RebaseMerges { branch: String, merges: usize },
    #[error("git {what} failed: {detail}")]
    Git {
        what: &'static str,
        detail: String,
        how: How,
    },
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<anyhow::Error> for MergeError {
    fn from(e: anyhow::Error) -> Self {
        MergeError::Other(e)
    }
}

impl OpError for MergeError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            MergeError::Dirty => {
                "commit or stash your changes (`git stash`), then run merge again".into()
            }
            MergeError::Detached => {
                "check out the branch to merge into (`git switch <branch>`), then run merge again"
                    .into()
            }
            MergeError::OntoItself { .. } => {
                "check out the branch to merge into (`git switch <branch>`), then run merge again"
                    .into()
            }
            MergeError::InProgress { what } => match *what {
                "merge" => "finish it with `git commit` or abort it with `git merge --abort`",
                "rebase" => "finish it with `git rebase --continue` or abort it with `git rebase --abort`",
                "cherry-pick" => "finish it with `git cherry-pick --continue` or abort it with `git cherry-pick --abort`",
                _ => "finish it with `git revert --continue` or abort it with `git revert --abort`",
            }
            .into(),
            MergeError::Conflict { how, .. } => match how {
                How::Merge => "resolve the conflicts, `git add` the files and `git commit`; or undo the merge with `git merge --abort`".into(),
                How::Squash => "resolve the conflicts, `git add` the files and `git commit`; or undo it with `git reset --merge`".into(),
                How::Rebase => "resolve the conflicts, `git add` the files and `git cherry-pick --continue`; or undo it with `git cherry-pick --abort`".into(),
            },
            MergeError::RebaseMerges { .. } => {
                "merge it (`git agent merge <task>`) or squash it (`git agent merge <task> --squash`) instead".into()
            }
            MergeError::Git { how, .. } => match how {
                How::Squash => "the squashed changes may be staged: commit them with `git commit`, or drop them with `git reset --merge`".into(),
                _ => "see `git status`; undo a half-done merge with `git merge --abort` (or `git cherry-pick --abort`)".into(),
            },
            MergeError::Commit(e) => return e.hint(),
            MergeError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            MergeError::Other(e) => Some(e),
            MergeError::Commit(e) => e.below(),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            MergeError::Other(e) => Ok(e),
            MergeError::Commit(e) => e.passthrough().map_err(MergeError::Commit),
            other => Err(other),
        }
    }
}

/// The user's branch, when the work tree is ready for a merge: no changes to tracked files,
/// HEAD on a branch, no merge, rebase, cherry-pick or revert in progress.
pub fn ready(ctx: &Ctx) -> Result<String, MergeError> {
    let git = &ctx.git;
    for (path, what) in [
        ("MERGE_HEAD", "merge"),
        ("rebase-merge", "rebase"),
        ("rebase-apply", "rebase"),
        ("CHERRY_PICK_HEAD", "cherry-pick"),
        ("REVERT_HEAD", "revert"),
    ] {
        let p = git.run(["rev-parse", "--git-path", path])?;
        if git.dir.join(p).exists() {
            return Err(MergeError::InProgress { what });
        }
    }
    let branch = git
        .run(["symbolic-ref", "--quiet", "--short", "HEAD"])
        .map_err(|_| MergeError::Detached)?;
    let status = git.run([
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=no",
        "--ignore-submodules=none",
    ])?;
    if !status.is_empty() {
        return Err(MergeError::Dirty);
    }
    Ok(branch)
}

/// Promote the task if needed, then merge its branch into the current branch.
pub async fn run(ctx: &Ctx, req: &MergeRequest, events: &dyn Events) -> Result<Merged, MergeError> {
    ready(ctx)?;
    let prepared =
        super::commit::prepare(ctx, &req.task, true, req.message.is_some(), &[], events).await?;
    let promoted = super::commit::finish(ctx, prepared, req.message.clone(), events)?;
    let task = promoted.task.clone();
    let branch = branch_name(&task);
    // The promotion touched no work tree; check again, as it took time.
    let into = ready(ctx)?;
    if into == branch {
        return Err(MergeError::OntoItself { branch });
    }
    events.emit(Event::step(
        Some(&task),
        format!("{} {branch} into {into}", req.how.as_str()),
    ));
    let full = format!("refs/heads/{branch}");
    let tip = ctx.git.resolve_commit(&full)?;
    let output = match req.how {
        How::Merge => {
            let mut args = vec!["merge"];
            if !req.interactive {
                args.push("--no-edit");
            }
            let out = user_git(
                ctx,
                req.interactive,
                &[&args[..], &["--end-of-options", &branch]].concat(),
            )?;
            finished(ctx, out, "merge", &branch, &into, req.how)?
        }
        How::Squash => {
            let out = user_git(
                ctx,
                false,
                &["merge", "--squash", "--end-of-options", &branch],
            )?;
            let mut text = finished(ctx, out, "merge --squash", &branch, &into, req.how)?;
            let mut args = vec!["commit"];
            if !req.interactive {
                args.push("--no-edit");
            }
            let out = user_git(ctx, req.interactive, &args)?;
            text += &finished(ctx, out, "commit", &branch, &into, req.how)?;
            text
        }
        How::Rebase => {
            let range = format!("HEAD..{tip}");
            let merges: usize = ctx
                .git
                .run(["rev-list", "--count", "--merges", &range])?
                .parse()
                .unwrap_or(0);
            if merges > 0 {
                return Err(MergeError::RebaseMerges { branch, merges });
            }
            let out = user_git(ctx, false, &["cherry-pick", "--end-of-options", &range])?;
            finished(ctx, out, "cherry-pick", &branch, &into, req.how)?
        }
    };
    let commit = ctx.git.resolve_commit("HEAD")?;
    let lock = lock_task(ctx, &task, "merge", events).await?;
    let merge = Merge {
        into: into.clone(),
        commit: commit.clone(),
        at: now(),
        how: req.how.as_str().to_string(),
    };
    ctx.store.update(&task, "merge", |r, _| {
        r.merged = Some(merge.clone());
        Ok(vec![])
    })?;
    drop(lock);
    Ok(Merged {
        task,
        branch,
        into,
        commit,
        how: req.how,
        promoted,
        output,
    })
}

/// The user's `git <args>` in their work tree: with the terminal when `interactive`, else
/// with output captured. Returns whether it succeeded, its stdout and stderr.
fn user_git(ctx: &Ctx, interactive: bool, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let mut cmd = ctx.git.command();
    cmd.args(args);
    if interactive {
        let status = cmd
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()?;
        return Ok((status.success(), String::new(), String::new()));
    }
    let out = cmd.stdin(Stdio::null()).output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// git's output when it succeeded; else the conflict it left (unmerged paths), or its
/// failure.
fn finished(
    ctx: &Ctx,
    (ok, stdout, stderr): (bool, String, String),
    what: &'static str,
    branch: &str,
    into: &str,
    how: How,
) -> Result<String, MergeError> {
    if ok {
        return Ok(stdout);
    }
    let unmerged = ctx.git.run(["ls-files", "--unmerged", "-z"])?;
    if !unmerged.is_empty() {
        return Err(MergeError::Conflict {
            branch: branch.to_string(),
            into: into.to_string(),
            how,
        });
    }
    let detail = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    Err(MergeError::Git {
        what,
        detail: crate::error::sanitize(detail.trim()),
        how,
    })
}
