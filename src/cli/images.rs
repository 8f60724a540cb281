//! `git agent image list` and `git agent image prune`: arguments and rendering; the work is
//! [`crate::ops::images`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, out};
use crate::ops::OpError;
use crate::ops::images::{self, Entry, PruneRequest};
use crate::task::{age, now};

/// List the sandbox images git-agent built on the engine.
///
/// One line per image tag git-agent made (git-agent:<hash>, git-agent-gateway:<hash>,
/// git-agent-stage:<hash>, each carrying git-agent's label naming that tag): its id, size,
/// age, and what uses it: `current` (this repository's next task would run in it, or its
/// gateway or build stage), the tasks of this repository whose record names it, and the
/// containers (running or stopped) made from it. Other images are never listed.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON object (see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// Remove git-agent's images nothing here uses.
///
/// Removes the images git-agent made that no task of this repository names and that are not
/// this repository's current image (nor its gateway or build stage). With --all, every
/// git-agent image no container uses, whoever needs it next (it is built again when
/// needed). An image a container (running or stopped) is made from always stays, and an
/// image git-agent did not make (by its tag and label) is never touched. Images belong to
/// the engine, not to one repository: one only another repository's tasks name goes too
/// unless a container uses it (it is built again when needed); name images to prune only
/// those. Prints each image removed and the space freed; --dry-run shows what would go.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only these images (tags or ids); each must be one git-agent made.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Every git-agent image no container uses, even ones tasks or this repository name.
    #[arg(long)]
    pub all: bool,
    /// Show what would be removed; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print one JSON object (see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// `bytes` as people read it (MiB above one).
fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= 1024.0 * MIB {
        format!("{:.2} GiB", b / (1024.0 * MIB))
    } else if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn uses(e: &Entry) -> String {
    let mut what = Vec::new();
    if e.current {
        what.push("current".to_string());
    }
    if !e.tasks.is_empty() {
        what.push(format!("tasks: {}", e.tasks.join(",")));
    }
    if e.containers > 0 {
        what.push(format!(
            "{} container(s), {} running",
            e.containers, e.running
        ));
    }
    if what.is_empty() {
        "unused".to_string()
    } else {
        what.join("; ")
    }
}

fn short(id: &str) -> &str {
    let hex = id.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

pub async fn list(ctx: &Ctx, args: ListArgs) -> Result<i32> {
    let rt = crate::ops::engine_default(ctx).await?;
    let entries = images::list(&rt, ctx).await.map_err(OpError::into_report)?;
    if args.json {
        super::json::print(&serde_json::json!({ "images": entries }))?;
        return Ok(0);
    }
    if entries.is_empty() {
        eprintln!("git-agent: no git-agent images on the engine");
        return Ok(0);
    }
    let t = now();
    for e in &entries {
        out(format!(
            "{:<30} {} {:>10} {:>5} ago  {}",
            e.tag,
            short(&e.id),
            size(e.size),
            age(e.created, t),
            crate::error::sanitize(&uses(e))
        ))?;
    }
    Ok(0)
}

pub async fn prune(ctx: &Ctx, args: PruneArgs) -> Result<i32> {
    let rt = crate::ops::engine_default(ctx).await?;
    let req = PruneRequest {
        all: args.all,
        dry_run: args.dry_run,
        only: args.images,
    };
    let pruned = images::prune(&rt, ctx, &req)
        .await
        .map_err(OpError::into_report)?;
    if args.json {
        super::json::print(&pruned)?;
        return Ok(0);
    }
    let verb = if pruned.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for e in &pruned.removed {
        out(format!("{verb} {} {}", e.tag, short(&e.id)))?;
    }
    for k in &pruned.kept {
        eprintln!(
            "git-agent: kept {}: {}",
            k.tag,
            crate::error::sanitize(&k.reason)
        );
    }
    eprintln!(
        "git-agent: {verb} {} image(s), {} {}",
        pruned.removed.len(),
        size(pruned.freed),
        if pruned.dry_run { "to free" } else { "freed" }
    );
    Ok(0)
}
