//! `git agent continue`: send a follow-up prompt to a task whose run has ended. Reads the
//! prompt (argument, file, standard input) and renders; the work is
//! [`crate::ops::followup`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::{Ctx, Stderr, out};
use crate::ops::OpError;
use crate::ops::followup::ContinueRequest;

/// Send a follow-up prompt to a task, headless: its run must have ended. The work it has is
/// synced first; then the agent runs again in a new container on the same workspace and
/// home volume, with the same network policy and hardening, resuming its conversation
/// (Claude Code, Codex, OpenCode and Gemini CLI: their `resume_headless` command; an agent
/// without one starts a new conversation in the workspace; the exec agent runs its command
/// again with the follow-up on standard input). Its work comes home on the same task branch.
///
/// The follow-up is kept with the task (`followup-<n>.md` in its state; `prompt.md` stays
/// the original) and counted (`status` shows `follow-ups:`). Prints the task's name.
#[derive(Debug, Args)]
pub struct ContinueArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// The follow-up prompt.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Read the follow-up from a file ('-' for standard input).
    #[arg(
        short = 'F',
        long = "file",
        value_name = "FILE",
        conflicts_with = "message"
    )]
    pub file: Option<PathBuf>,
    /// Print the task's name, state and number of follow-ups as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ContinueJson<'a> {
    task: &'a str,
    status: &'a str,
    followups: u32,
    resumed: bool,
}

fn read_prompt(args: &ContinueArgs) -> Result<String> {
    super::spawn::read_text(
        args.message.as_deref(),
        args.file.as_deref(),
        true,
        "follow-up",
    )
}

pub async fn run(args: ContinueArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded = ctx.store.resolve_local(&args.task, "continue")?;
    let prompt = read_prompt(&args)?;
    let rt = crate::ops::engine_of(&ctx, &loaded.record).await?;
    let request = ContinueRequest {
        task: args.task,
        prompt,
    };
    let continued = crate::ops::followup::run(&rt, &ctx, &request, &Stderr)
        .await
        .map_err(OpError::into_report)?;
    let r = &continued.loaded.record;
    if args.json {
        super::json::print(&ContinueJson {
            task: &r.name,
            status: r.status.as_str(),
            followups: r.followups,
            resumed: continued.resumed,
        })?;
    } else {
        out(&r.name)?;
    }
    eprintln!(
        "git-agent: task {0} continues (follow-up {1}); follow it with `git agent logs -f {0}`",
        r.name, r.followups
    );
    Ok(0)
}
