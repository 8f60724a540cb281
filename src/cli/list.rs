//! `git agent list`: the repository's tasks (a scan of refs/agent/), then the ones fetched
//! from remotes (refs/agent-remotes/).

use anyhow::Result;
use clap::Args;
use comfy_table::{Table, presets};

use super::{Ctx, engine_view, out};
use crate::task::{age, now};

/// List the tasks of this repository.
///
/// `list` changes nothing: a task whose container has exited, or whose spawn died, is shown
/// with its effective status (`exited`, `failed`) and recorded so by the next command that
/// changes it (or `git agent doctor --fix`).
///
/// The status column is checked against the container engine: a running task whose gateway
/// or network is gone says so (`running (gateway down)`). When the engine cannot be reached
/// the tasks are listed from the refs, a status only the engine could confirm is marked
/// unverified (`running?`), and stderr says the runtime status is unknown.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: ListArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let listing = crate::ops::inspect::list(&ctx)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    if let Some(why) = &listing.unchecked {
        engine_view::warn_unreachable(why);
    }
    for (task, why) in &listing.refused {
        eprintln!("git-agent: warning: fetched task '{task}' is not listed: {why}");
    }
    let rows = listing.rows;
    if args.json {
        out(serde_json::to_string_pretty(&rows)?)?;
        return Ok(0);
    }
    if rows.is_empty() {
        eprintln!("git-agent: no tasks; start one with `git agent spawn`");
        return Ok(0);
    }
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(["NAME", "AGENT", "STATUS", "AGE", "BASE", "CHANGES", "RUN"]);
    let t = now();
    for r in rows {
        let status = match &r.merged {
            Some(_) => format!("{} (merged)", r.status_text),
            None => r.status_text,
        };
        let base = match &r.base_branch {
            Some(b) => format!("{} {b}", &r.base[..8]),
            None => r.base[..8].to_string(),
        };
        let changes = if r.files_changed == 0 {
            "-".to_string()
        } else {
            format!(
                "{} file{} +{} -{}{}",
                r.files_changed,
                if r.files_changed == 1 { "" } else { "s" },
                r.insertions,
                r.deletions,
                if r.uncommitted { " (uncommitted)" } else { "" }
            )
        };
        let run = crate::agent::claude::RunStats {
            turns: r.turns,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: r.cost_usd,
            ..Default::default()
        }
        .summary();
        let run = if run.is_empty() { "-".to_string() } else { run };
        table.add_row([
            r.name,
            r.agent,
            status,
            age(r.created, t),
            base,
            changes,
            run,
        ]);
    }
    let text = table.to_string();
    for line in text.lines() {
        out(line.trim_end())?;
    }
    Ok(0)
}
