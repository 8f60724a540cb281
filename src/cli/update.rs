//! `git agent update`: move a finished task onto a newer base.

use anyhow::Result;
use clap::Args;

use super::{Ctx, Stderr, out};
use crate::error::sanitize;
use crate::ops::update::{UpdateRequest, Updated};

/// Move a task whose run has ended onto a newer base: by default the current tip of the
/// branch it started from, or `--onto <rev>`.
///
/// The task's work is synced first. Its commits, and its uncommitted changes as they were
/// last synced, are re-created on the new base in the object database (`git merge-tree`
/// and `git commit-tree`, git 2.38 or newer): your branches, index and work tree are not
/// touched and git never runs in the sandbox. When all of them apply, the task's base,
/// branch and record move in one ref transaction, and the new branch is sent into the
/// task's workspace (its uncommitted changes laid over it again), so a `restart` or a
/// follow-up continues from there. If a commit does not apply, the conflicting paths are
/// listed and nothing changes (exit 1): update never resolves a conflict. A task already
/// promoted is refused (rebase its branch with your own git).
///
/// With `--agent`, a conflict goes to the task's agent instead: the commits that apply are
/// re-created on the new base, the rest of the work is laid into its workspace as
/// uncommitted changes with git's conflict markers, and the agent runs headless again (as
/// `continue` runs it) with a prompt naming the new base, the commits and the conflicting
/// files. Update waits for that run. When it exits 0 and no conflict marker is left in those
/// files, the task stays on the new base (review the resolution like any other work; exit
/// 0). Otherwise the task is put back as it was, in its refs and in its workspace, and the
/// conflict is reported with the reason (exit 1). Your branches are never touched.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// The new base (a branch, tag or commit); default: the tip of the task's base branch.
    #[arg(long, value_name = "REV")]
    pub onto: Option<String>,
    /// On a conflict, have the task's agent resolve it in its sandbox (see above).
    #[arg(long)]
    pub agent: bool,
}

pub async fn run(args: UpdateArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded = ctx.store.resolve_local(&args.task, "update")?;
    let rt = crate::ops::engine_of(&ctx, &loaded.record).await?;
    let req = UpdateRequest {
        task: args.task,
        onto: args.onto,
        agent: args.agent,
    };
    let updated = crate::ops::update::run(&rt, &ctx, &req, &Stderr)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    let short = |id: &str| id.get(..12).unwrap_or(id).to_string();
    match updated {
        Updated::UpToDate { task, base } => {
            out(format!("task {task} is based on {} already", short(&base)))?;
            Ok(0)
        }
        Updated::Rebased {
            task,
            new_base,
            onto,
            commits,
            head,
            uncommitted,
            delivered,
            ..
        } => {
            out(format!(
                "updated task {task}: {commits} commit{} re-created on {} ({}){}; its branch is now {}{}",
                if commits == 1 { "" } else { "s" },
                sanitize(&onto),
                short(&new_base),
                if uncommitted {
                    " with its uncommitted changes"
                } else {
                    ""
                },
                short(&head),
                if delivered {
                    ", in the sandbox too"
                } else {
                    " (it has no sandbox to send it to)"
                },
            ))?;
            Ok(0)
        }
        Updated::Resolved {
            task,
            onto,
            new_base,
            paths,
        } => {
            out(format!(
                "updated task {task}: on {} ({}); its agent resolved the conflicts in {} file{}; review them with `git agent review {task}`",
                sanitize(&onto),
                short(&new_base),
                paths.len(),
                if paths.len() == 1 { "" } else { "s" },
            ))?;
            Ok(0)
        }
        Updated::Conflicts {
            task,
            onto,
            commit,
            uncommitted,
            paths,
            agent_failed,
            ..
        } => {
            let which = if uncommitted {
                "its uncommitted changes".to_string()
            } else {
                format!("commit {}", short(&commit))
            };
            let mut lines = vec![format!(
                "Error: task {task} does not apply on {}: {which} conflicts in {} file{}; nothing was changed",
                sanitize(&onto),
                paths.len(),
                if paths.len() == 1 { "" } else { "s" }
            )];
            for p in &paths {
                lines.push(format!("  {}", sanitize(p)));
            }
            if let Some(why) = agent_failed {
                lines.push(format!(
                    "Caused by: the agent did not resolve it: {}; the task was put back as it was",
                    sanitize(&why)
                ));
            }
            lines.push(format!(
                "Hint: see how the work stands with `git agent check {task}`; have the agent resolve it with `git agent update {task} --agent`, or promote the work as it is with `git agent commit {task}` and merge it with your own git"
            ));
            eprintln!("{}", lines.join("\n"));
            Ok(1)
        }
    }
}
