//! `git agent check`: how a task's work stands against its base branch now, read-only.

use anyhow::Result;
use clap::Args;

use super::{Ctx, out};
use crate::error::sanitize;
use crate::ops::check::Checked;

/// Report, without changing anything, how a task's work stands against its base branch now:
/// commits ahead and behind the branch's tip, whether the work (with its uncommitted changes)
/// merges cleanly into it and which paths conflict, whether it is promoted, pushed (the
/// promoted branch's remote-tracking branch holds it) and merged, and what `review` flags.
///
/// The merge is computed in the object database (`git merge-tree --write-tree`, git 2.38 or
/// newer) in a scratch directory that is removed: no ref, record, object, work tree or index
/// changes. `check` never syncs: for a task that still runs it says how old its synced work
/// is. A task started detached is compared with its base commit. Always exits 0 when the
/// check could be made; `--json` keys are stable.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: CheckArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let checked = crate::ops::check::run(&ctx, &args.task)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    if args.json {
        super::json::print(&checked)?;
    } else {
        out(render(&checked).join("\n"))?;
    }
    Ok(0)
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The text report.
pub fn render(c: &Checked) -> Vec<String> {
    let against = if c.compared_with.detached {
        format!("base {}", short(&c.compared_with.commit))
    } else {
        format!(
            "{} ({})",
            c.compared_with
                .rev
                .strip_prefix("refs/heads/")
                .unwrap_or(&c.compared_with.rev),
            short(&c.compared_with.commit)
        )
    };
    let mut lines = vec![
        format!("task:      {}", c.task),
        format!(
            "status:    {}{}",
            c.status,
            if c.status_checked { "" } else { "?" }
        ),
        format!("against:   {against}"),
        format!(
            "commits:   {} ahead, {} behind{}",
            c.ahead,
            c.behind,
            if c.uncommitted {
                ", plus uncommitted changes"
            } else {
                ""
            }
        ),
    ];
    if c.merge.clean {
        lines.push("merge:     clean".to_string());
    } else {
        lines.push(format!(
            "merge:     conflicts in {} file{}",
            c.merge.conflicts.len(),
            if c.merge.conflicts.len() == 1 {
                ""
            } else {
                "s"
            }
        ));
        for p in &c.merge.conflicts {
            lines.push(format!("           {}", sanitize(p)));
        }
    }
    lines.push(match &c.promoted {
        Some(p) => format!("promoted:  yes, {} ({})", p.branch, short(&p.commit)),
        None => "promoted:  no".to_string(),
    });
    lines.push(match &c.pushed {
        Some(p) if p.contains => format!("pushed:    yes, {}", sanitize(&p.remote_branch)),
        Some(p) => format!("pushed:    no ({} is behind)", sanitize(&p.remote_branch)),
        None => "pushed:    no".to_string(),
    });
    lines.push(match &c.merged {
        Some(m) if m.how == "recorded" => format!("merged:    yes, into {} (recorded)", m.into),
        Some(m) => format!("merged:    yes, {} has the work", m.into),
        None => "merged:    no".to_string(),
    });
    if c.flags.is_empty() {
        lines.push("review:    nothing flagged".to_string());
    } else {
        lines.push(format!(
            "review:    {} flagged (see `git agent review {}`)",
            c.flags.len(),
            c.task
        ));
        for f in &c.flags {
            lines.push(format!("           {}: {}", sanitize(&f.path), f.why));
        }
    }
    for n in &c.notes {
        lines.push(format!("note:      {n}"));
    }
    lines
}
