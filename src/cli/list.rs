//! `git agent list`: the repository's tasks (a scan of refs/agent/).

use anyhow::Result;
use clap::Args;
use comfy_table::{Table, presets};
use serde::Serialize;

use super::{Ctx, engine, out};
use crate::task::store::Loaded;
use crate::task::{Status, age, now};

/// List the tasks of this repository.
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

/// Bring running tasks' records up to date when the engine answers; otherwise list what the
/// refs say.
pub async fn refreshed(ctx: &Ctx) -> Result<Vec<Loaded>> {
    let all = ctx.store.all()?;
    super::sync::sweep_leftovers(ctx, all.iter().map(|l| l.record.name.as_str()), true).await;
    if !all
        .iter()
        .any(|l| matches!(l.record.status, Status::Running | Status::Creating))
    {
        return Ok(all);
    }
    let Ok(rt) = engine().await else {
        return Ok(all);
    };
    let mut out = Vec::new();
    for l in all {
        out.push(crate::sandbox::refresh(&rt, &ctx.store, l).await?);
    }
    Ok(out)
}

pub async fn run(args: ListArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let tasks = refreshed(&ctx).await?;
    let mut rows = Vec::new();
    for l in &tasks {
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
        let status = match r.exit_code {
            Some(c) => format!("{} ({c})", r.status),
            None => r.status,
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
