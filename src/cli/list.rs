//! `git agent list`: the repository's tasks (a scan of refs/agent/).

use anyhow::Result;
use clap::Args;
use comfy_table::{Table, presets};
use serde::Serialize;

use super::{Ctx, engine_view, out};
use crate::task::{age, now};

/// List the tasks of this repository.
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

#[derive(Serialize)]
struct Row {
    name: String,
    agent: String,
    status: String,
    /// The status as `list` shows it (`running?`, `running (gateway down)`).
    #[serde(skip)]
    status_text: String,
    /// Whether the engine confirmed the status; false when it could not be reached and the
    /// status is what the refs last recorded.
    status_checked: bool,
    /// What is wrong with the task's runtime objects (`gateway down`, `network missing`, ...).
    problems: Vec<String>,
    exit_code: Option<i64>,
    created: i64,
    base: String,
    base_branch: Option<String>,
    files_changed: u64,
    insertions: u64,
    deletions: u64,
    uncommitted: bool,
    turns: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cost_usd: Option<f64>,
}

/// Parse `git diff --shortstat` output into (files, insertions, deletions).
pub fn parse_shortstat(text: &str) -> (u64, u64, u64) {
    let mut v = (0, 0, 0);
    for part in text.split(',') {
        let part = part.trim();
        let n = part
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if part.contains("file") {
            v.0 = n;
        } else if part.contains("insertion") {
            v.1 = n;
        } else if part.contains("deletion") {
            v.2 = n;
        }
    }
    v
}

pub async fn run(args: ListArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    // What killed syncs left behind (also of tasks purged since) goes first.
    let names = ctx.store.names()?;
    crate::ops::sync::sweep_leftovers(&ctx, names.iter().map(String::as_str), true).await;
    let tasks = engine_view::all(&ctx).await?;
    let mut rows = Vec::new();
    for seen in &tasks {
        let l = &seen.loaded;
        let r = &l.record;
        let stat = ctx
            .git
            .run(["diff", "--shortstat", &r.base, l.tip()])
            .unwrap_or_default();
        let (files, ins, del) = parse_shortstat(&stat);
        rows.push(Row {
            name: r.name.clone(),
            agent: r.agent.clone(),
            status: r.status.as_str().to_string(),
            status_text: seen.status_text(),
            status_checked: seen.checked,
            problems: seen.problems.iter().map(|p| p.to_string()).collect(),
            exit_code: r.exit_code,
            created: r.created,
            base: r.base.clone(),
            base_branch: r.base_branch.clone(),
            files_changed: files,
            insertions: ins,
            deletions: del,
            uncommitted: l.ref_value("wip").is_some(),
            turns: r.stats.as_ref().and_then(|s| s.turns),
            input_tokens: r.stats.as_ref().and_then(|s| s.input_tokens),
            output_tokens: r.stats.as_ref().and_then(|s| s.output_tokens),
            cost_usd: r.stats.as_ref().and_then(|s| s.cost_usd),
        });
    }
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
        let status = r.status_text;
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

#[cfg(test)]
mod tests {
    use super::parse_shortstat;

    #[test]
    fn shortstat_variants() {
        assert_eq!(
            parse_shortstat(" 3 files changed, 10 insertions(+), 2 deletions(-)"),
            (3, 10, 2)
        );
        assert_eq!(parse_shortstat(" 1 file changed, 1 deletion(-)"), (1, 0, 1));
        assert_eq!(parse_shortstat(""), (0, 0, 0));
    }
}
