//! `git agent commit`: promote a task's work with the user's own git identity and signing.
//! Nothing here runs in or near the sandbox.
//!
//! The work is done by [`crate::ops::commit`]; this module parses arguments, asks for the
//! message (the agent's draft, the user's editor), and prints.

use anyhow::Result;
use clap::Args;

use super::{Ctx, Stderr, out, term};
use crate::error::hinted;
use crate::ops::OpError;
use crate::ops::commit::{Committed, DraftPlan, Prepared};
use crate::runtime::Runtime;

/// Create commits for a task's work on branch agent/<task>, as you.
///
/// Each commit the agent made is re-created with your identity (and signed when
/// commit.gpgSign is set), keeping its message and exact content; uncommitted agent work
/// becomes one more commit whose message comes from -m or your editor. Provenance (with the
/// agent's own author and committer) is noted under refs/notes/agent. The commits are the
/// ones `git agent review` lists, down from the tip promoted (whatever branch or detached
/// HEAD the agent used, every commit on agent/<task> is re-created as you). Objects are
/// written aside and enter your repository only when all are written; the branch, the notes
/// and the task's record then move in one transaction, so an interrupted commit leaves the
/// old state or the new one, and running it again completes it. A branch agent/<task> left
/// by an interrupted commit (its notes name this task) is taken over; one you made is not. Progress shows on stderr for long histories. Your work tree, index and HEAD are
/// not touched.
///
/// With `-- <path>...` only the changes to those paths are promoted (git pathspecs, relative
/// to the top of the work tree, magic allowed): each commit keeps only its changes there, on
/// a linear branch, and commits left with no change are dropped; the notes record the
/// pathspec. A later commit (with no pathspec, or another) promotes the rest on top.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Message for the commit of the agent's uncommitted changes.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    /// Promote only the changes to these paths (after `--`).
    #[arg(last = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

/// Ask the task's agent for a draft of the message, in a fresh container (see
/// [`crate::ops::commit::draft_plan`]). `None` when there is no agent to ask or no answer.
async fn draft_message(ctx: &Ctx, prepared: &Prepared) -> Option<String> {
    let rt = crate::ops::engine_of_task(ctx, prepared.task())
        .await
        .ok()?;
    let plan = crate::ops::commit::draft_plan(&rt, ctx, prepared).await?;
    eprintln!(
        "git-agent: asking {} to draft a commit message...",
        plan.agent.name
    );
    let answer = draft_in_fresh_container(ctx, &rt, &plan, prepared).await;
    crate::ops::commit::remove_draft(&rt, ctx, prepared.task()).await;
    match answer {
        Ok(a) if !a.trim().is_empty() => Some(a),
        Ok(_) => None,
        Err(e) => {
            eprintln!("git-agent: no draft ({e:#})");
            None
        }
    }
}

/// Give the task's network a fresh gateway under the task's policy, then ask in a fresh
/// container (see [`crate::ops::commit::ask_draft`]).
async fn draft_in_fresh_container<R: Runtime>(
    ctx: &Ctx,
    rt: &R,
    plan: &DraftPlan,
    prepared: &Prepared,
) -> Result<String> {
    let r = &prepared.loaded.record;
    let policy = r
        .network
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the task has no network policy"))?;
    let subnet = crate::ops::commit::draft_network(rt, ctx, prepared)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    let (env, _, _) = crate::ops::setup::fresh_gateway(
        ctx,
        rt,
        &plan.agent,
        policy,
        &r.name,
        subnet.as_ref(),
        &super::Stderr,
    )
    .await
    .map_err(crate::ops::OpError::into_report)?;
    crate::ops::commit::ask_draft(rt, ctx, prepared, plan, &env, subnet.as_ref())
        .await
        .map_err(crate::ops::OpError::into_report)
}

/// Ask for a message in the user's editor, git style, starting from `draft`.
fn edit_message(ctx: &Ctx, prepared: &Prepared, draft: Option<&str>) -> Result<Option<String>> {
    let stat = prepared.wip_stat(ctx);
    let mut text = format!(
        "{}\n# Message for the uncommitted changes of task {}.{}\n# Lines starting with '#' are ignored; an empty message aborts.\n#\n",
        draft.unwrap_or(""),
        prepared.task(),
        if draft.is_some() {
            " The agent drafted the text above."
        } else {
            ""
        }
    );
    for l in stat.lines() {
        text += &format!("# {l}\n");
    }
    let raw = term::edit_in_editor(&ctx.git, &text, "AGENT_COMMIT_EDITMSG", "", || {
        hinted(
            "the editor failed; nothing was committed",
            "pass the message with -m instead",
        )
    })?;
    let clean = ctx
        .git
        .run_with_input(["stripspace", "--strip-comments"], raw.as_bytes())?;
    // An empty message is passed on: the promotion refuses it and says so.
    Ok(Some(clean))
}

/// Promote a task's work, asking for a message when it needs one and the terminal can. With
/// `up_to_date_ok`, work that is already on the branch is not an error.
pub(super) async fn commit(
    ctx: &Ctx,
    task: &str,
    message: Option<String>,
    up_to_date_ok: bool,
    paths: &[String],
) -> Result<Committed> {
    let prepared =
        crate::ops::commit::prepare(ctx, task, up_to_date_ok, message.is_some(), paths, &Stderr)
            .await
            .map_err(OpError::into_report)?;
    let mut message = message;
    if prepared.needs_message && term::stdin_is_tty() && term::stdout_is_tty() {
        let draft = draft_message(ctx, &prepared).await;
        message = edit_message(ctx, &prepared, draft.as_deref())?;
    }
    let done = crate::ops::commit::finish(ctx, prepared, message, &Stderr)
        .map_err(OpError::into_report)?;
    if done.already_committed {
        eprintln!(
            "git-agent: {} is already committed on {}",
            done.task, done.branch
        );
        return Ok(done);
    }
    if done.adopted {
        eprintln!(
            "git-agent: {} holds this task's work from an interrupted commit; taken over",
            done.branch
        );
    }
    eprintln!(
        "git-agent: {} commit{} on {} ({})",
        done.commits.len(),
        if done.commits.len() == 1 { "" } else { "s" },
        done.branch,
        &done.branch_tip[..12]
    );
    Ok(done)
}

pub async fn run(args: CommitArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let done = commit(&ctx, &args.task, args.message, false, &args.paths).await?;
    out(done.branch)?;
    Ok(0)
}
