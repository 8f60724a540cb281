//! `git agent list`: the repository's tasks (a scan of refs/agent/), then the ones fetched
//! from remotes (refs/agent-remotes/).

use anyhow::Result;
use clap::Args;
use comfy_table::{Table, presets};

use super::{Ctx, engine_view, out};
use crate::ops::select::{self, Filter, Totals};
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
///
/// Tasks are listed newest first (`--reverse`: oldest first); fetched tasks follow the
/// repository's own. The filters combine: `--status running --agent claude --since 1d`
/// lists the running claude tasks started in the last day. `-q` prints only the names, one
/// per line, for `xargs` (`git agent list -q --status exited | xargs git agent rm`).
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Machine-readable output (the schema is in docs/json.md).
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,
    /// Only the task names, one per line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Only tasks with this status (creating, running, exited, stopped, failed, queued);
    /// repeat or separate with commas for several.
    #[arg(long, value_name = "STATUS", value_delimiter = ',', value_parser = parse_status)]
    pub status: Vec<String>,
    /// Only tasks of this agent; repeat or separate with commas for several.
    #[arg(long, value_name = "AGENT", value_delimiter = ',')]
    pub agent: Vec<String>,
    /// Only tasks created since then: a duration back from now (90, 30m, 1h30m, 2d), a UTC
    /// date (2025-01-31) or time (2025-01-31T14:00), or @<unix seconds>.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Oldest first.
    #[arg(long)]
    pub reverse: bool,
    /// End with a line summing the turns, tokens and cost the listed tasks recorded.
    #[arg(long)]
    pub totals: bool,
}

fn parse_status(text: &str) -> Result<String, String> {
    select::STATUSES
        .iter()
        .map(|s| s.as_str())
        .find(|s| *s == text)
        .map(str::to_string)
        .ok_or_else(|| {
            let all: Vec<&str> = select::STATUSES.iter().map(|s| s.as_str()).collect();
            format!("'{text}' is not a status; use one of {}", all.join(", "))
        })
}

#[derive(serde::Serialize)]
struct ListJson<'a> {
    tasks: &'a [crate::ops::inspect::Row],
    totals: &'a Totals,
}

/// The `--totals` line.
fn totals_line(t: &Totals) -> String {
    let mut line = format!(
        "total: {} task{}",
        t.tasks,
        if t.tasks == 1 { "" } else { "s" }
    );
    if t.turns > 0 {
        line += &format!(", {} turns", t.turns);
    }
    if t.input_tokens > 0 || t.output_tokens > 0 {
        line += &format!(", {} tokens in, {} out", t.input_tokens, t.output_tokens);
    }
    if t.costed_tasks > 0 {
        line += &format!(", ${:.2} ({} with a cost)", t.cost_usd, t.costed_tasks);
    }
    line
}

pub async fn run(args: ListArgs) -> Result<i32> {
    // A bad --since is a usage error, said before anything is read.
    let since = match &args.since {
        Some(text) => Some(select::parse_since(text, now()).map_err(|e| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '--since <WHEN>': {e}\n"),
            )
            .exit()
        })?),
        None => None,
    };
    let filter = Filter {
        statuses: args.status.clone(),
        agents: args.agent.clone(),
        since,
    };
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
    let rows = select::select(listing.rows, &filter, args.reverse);
    let totals = select::totals(&rows);
    if args.json {
        super::json::print(&ListJson {
            tasks: &rows,
            totals: &totals,
        })?;
        return Ok(0);
    }
    if args.quiet {
        for r in &rows {
            out(&r.name)?;
        }
        return Ok(0);
    }
    if rows.is_empty() {
        if args.status.is_empty() && args.agent.is_empty() && args.since.is_none() {
            eprintln!("git-agent: no tasks; start one with `git agent spawn`");
        } else {
            eprintln!("git-agent: no task matches; `git agent list` shows them all");
        }
        return Ok(0);
    }
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    // With tasks on named engines, where each runs.
    let engines = rows.iter().any(|r| r.engine.is_some());
    let mut header = vec!["NAME", "AGENT", "STATUS", "AGE", "BASE", "CHANGES", "RUN"];
    if engines {
        header.push("ENGINE");
    }
    table.set_header(header);
    let t = now();
    for r in rows {
        let engine = r
            .engine
            .clone()
            .unwrap_or_else(|| crate::runtime::engines::DEFAULT.into());
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
        let mut row = vec![
            r.name,
            r.agent,
            status,
            age(r.created, t),
            base,
            changes,
            run,
        ];
        if engines {
            row.push(engine);
        }
        table.add_row(row);
    }
    let text = table.to_string();
    for line in text.lines() {
        out(line.trim_end())?;
    }
    if args.totals {
        out(totals_line(&totals))?;
    }
    Ok(0)
}
