//! `git agent retry`: start a new task that does an old task's work again. Parses the
//! arguments, opens the editor for `--edit`, and renders; the work is [`crate::ops::retry`].

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::{Ctx, Stderr, out};
use crate::ops::OpError;
use crate::ops::retry::RetryRequest;

/// Start a new task that retries an old one: from the old task's base (or --base), with its
/// prompt (or a new one), agent, template, image stack, timeout, network policy, read-only
/// root and git guards. The two are linked: `status` shows `retry of:` on the new task and
/// `retried as:` on the old one. The retry runs headless. Prints the new task's name.
///
/// Without -m the old prompt is used as it was recorded (a template's text already filled
/// in); with -m the new text fills in the old task's template, as `spawn --type` would.
/// A task fetched from another clone can be retried: it needs only the task's refs (its
/// record, prompt and base commit) in this repository.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The task to retry (any unique prefix of its name).
    pub task: String,
    /// Start from this revision instead of the old task's base.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// A new prompt instead of the old one.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Open the prompt (the old one, or the one -m gives) in your editor first.
    #[arg(long)]
    pub edit: bool,
    /// Name of the new task (default: <task>-retry, numbered when taken).
    #[arg(long)]
    pub name: Option<String>,
    /// Run the retry under this OCI runtime of the engine (default: the old task's, else
    /// agent.ociRuntime; see `spawn --oci-runtime`).
    #[arg(long, value_name = "NAME")]
    pub oci_runtime: Option<String>,
    /// Print the new task's name and state as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct RetryJson<'a> {
    task: &'a str,
    status: &'a str,
    retry_of: &'a str,
}

pub async fn run(args: RetryArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let request = RetryRequest {
        task: args.task,
        base: args.base,
        prompt: args.message,
        name: args.name,
        oci_runtime: args.oci_runtime,
    };
    let mut retry =
        crate::ops::retry::prepare(&ctx, &request, &Stderr).map_err(OpError::into_report)?;
    if args.edit {
        let prompt = retry.prompt_mut();
        *prompt = super::spawn::edit_text(&ctx.git, prompt, "AGENT_PROMPT")?;
    }
    // A retry is a new task: placed as a spawn is.
    let placed = crate::ops::placement::place(&ctx, None, 1).await?;
    retry.set_engine(placed.name);
    let rt = placed.engine;
    let old = retry.old().to_string();
    let new = crate::ops::retry::start(&rt, &ctx, retry, &Stderr)
        .await
        .map_err(OpError::into_report)?;
    let name = &new.record.name;
    if args.json {
        super::json::print(&RetryJson {
            task: name,
            status: new.record.status.as_str(),
            retry_of: &old,
        })?;
    } else {
        out(name)?;
    }
    eprintln!(
        "git-agent: task {name} retries {old} and is running; follow it with `git agent logs -f {name}`"
    );
    Ok(0)
}
