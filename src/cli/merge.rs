//! `git agent merge`: bring a task's work into the current branch with your own git.
//!
//! The work is done by [`crate::ops::merge`]; this module parses arguments and prints.

use anyhow::Result;
use clap::Args;

use super::{Ctx, Stderr, out, term};
use crate::ops::OpError;
use crate::ops::merge::{How, MergeRequest};

/// Merge a task's work into the current branch, with your git, hooks and signing.
///
/// Promotes the task first when its work is not all on agent/<task> yet (as `git agent
/// commit` does; -m gives the message for its uncommitted changes), then runs your own git in
/// your work tree: `git merge agent/<task>` (your merge settings decide fast-forward or merge
/// commit), with --squash `git merge --squash` and `git commit` (one commit), with --rebase
/// each commit replayed onto your branch (`git cherry-pick`; agent/<task> itself is left as it
/// is). Your hooks run and commit.gpgSign applies, as when you merge by hand.
///
/// Refuses, changing nothing, when tracked files have changes, HEAD is detached, or a merge,
/// rebase, cherry-pick or revert is in progress. A conflict leaves git's usual state: resolve
/// and commit, or abort (`git merge --abort`). Once merged, the task records where
/// (`list` and `status` show it as merged).
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// One commit with all the work (`git merge --squash`, then `git commit`).
    #[arg(long, conflicts_with = "rebase")]
    pub squash: bool,
    /// Replay the work's commits onto the current branch (no merge commit).
    #[arg(long)]
    pub rebase: bool,
    /// Accept git's message without opening an editor.
    #[arg(long)]
    pub no_edit: bool,
    /// Message for the commit of the agent's uncommitted changes, when it needs one.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
}

pub async fn run(args: MergeArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let how = if args.squash {
        How::Squash
    } else if args.rebase {
        How::Rebase
    } else {
        How::Merge
    };
    let req = MergeRequest {
        task: args.task,
        how,
        interactive: !args.no_edit && term::stdin_is_tty() && term::stdout_is_tty(),
        message: args.message,
    };
    let done = crate::ops::merge::run(&ctx, &req, &Stderr)
        .await
        .map_err(OpError::into_report)?;
    if !done.promoted.already_committed {
        eprintln!(
            "git-agent: {} commit{} promoted on {}",
            done.promoted.commits.len(),
            if done.promoted.commits.len() == 1 {
                ""
            } else {
                "s"
            },
            done.branch
        );
    }
    for line in done.output.lines() {
        eprintln!("{}", crate::error::sanitize(line));
    }
    eprintln!(
        "git-agent: {} merged into {} ({}, {})",
        done.branch,
        done.into,
        done.how.as_str(),
        &done.commit[..12.min(done.commit.len())]
    );
    out(done.commit)?;
    Ok(0)
}
