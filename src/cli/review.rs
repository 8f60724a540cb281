//! `git agent review`: what a task changed, with its status and output.
//!
//! [`crate::ops::review`] gathers the facts and the raw diff; this module renders them: text
//! escaped and coloured here (see [`visible`]), through git's pager, or JSON.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::{Ctx, term};
use crate::git::promote::Plan;
use crate::git::sensitive::Flag;
use crate::git::sensitive::claims::{self, Claim};
use crate::ops::OpError;
use crate::ops::inspect::NetworkUse;
use crate::ops::review::{
    BinaryFile, DiffKind, Facts, FileChange, GroupReview, ReviewRequest, Reviewed, TaskReview,
    short,
};
use crate::task::branch_name;

mod visible;

/// Show what a task changed against its base: a summary, its status and exit code, the tail
/// of its output, the full message of every commit `git agent commit` will re-create, changes
/// that need a second look, then the diff (through git's pager).
///
/// Changes are flagged from every commit that commit will re-create (each one's own diff) and
/// the uncommitted work, not only the net diff: a file added in one commit and removed in the
/// next is still flagged, with the commits it is in. Flagged: files that run code when the
/// branch is checked out, opened, built or tested (CI, hooks, direnv and dotenv files, editor
/// tasks, dev containers, build, package-manager and toolchain files, agent instructions,
/// attributes, submodules; the table is in docs/security.md), symbolic links, exec bits,
/// binary and large files (with size and blob id), message lines that claim people
/// (Signed-off-by, Reviewed-by, Co-authored-by and the like, also disguised) and author or
/// committer identities the agent set.
///
/// Everything the agent wrote is shown escaped: terminal controls, bidi overrides and
/// invisible characters appear as \x1b or \u{202e}. No diff driver, external diff or textconv
/// runs, and no attribute hides a text file.
///
/// When the container engine cannot be reached, review shows the last synced work and says
/// the runtime status is unknown (a live status is shown as `running?`).
///
/// With `-- <path>...` only the changes to those paths are shown (git pathspecs, relative to
/// the top of the work tree). With --compare, several attempts at one task (a group from
/// `spawn --agent a,b`, or several tasks named) are compared with each other: for each pair,
/// the files only one changed, the files both changed differently or identically, the diffstat
/// between their final trees, and `git range-diff` of their commits.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The task (any unique prefix of its name), or a group of attempts.
    pub task: String,
    /// More tasks to compare with the first (with --compare).
    #[arg(requires = "compare")]
    pub more: Vec<String>,
    /// Compare the attempts of a group (or the tasks named) with each other.
    #[arg(long, conflicts_with_all = ["stat", "name_only", "commits"])]
    pub compare: bool,
    /// Only the changes to these paths (after `--`).
    #[arg(last = true, value_name = "PATH", conflicts_with = "compare")]
    pub paths: Vec<String>,
    /// Only the diffstat.
    #[arg(long)]
    pub stat: bool,
    /// Only the names of changed files.
    #[arg(long, conflicts_with = "stat")]
    pub name_only: bool,
    /// Machine-readable summary on stdout.
    #[arg(long, conflicts_with_all = ["stat", "name_only"])]
    pub json: bool,
    /// Do not sync first; review what was last synced.
    #[arg(long)]
    pub no_sync: bool,
    /// Instead of the net diff, show each commit `git agent commit` will re-create (and the
    /// uncommitted changes) with its own patch: content added and removed again is seen too.
    #[arg(long, conflicts_with_all = ["stat", "name_only", "json"])]
    pub commits: bool,
    /// Record that you acknowledged what review flags in this work (the pre-push gate
    /// refuses promoted work with unacknowledged flags).
    #[arg(long)]
    pub ack: bool,
    /// Show the task's last output as the agent emitted it (Claude Code's stream-json stays
    /// JSON) instead of as `git agent logs` renders it.
    #[arg(long)]
    pub raw: bool,
}

/// One commit that `commit` will re-create, as review shows it.
#[derive(Serialize)]
struct CommitJson {
    id: String,
    /// The agent's author and committer: `commit` writes the user's identity instead and
    /// keeps these in the provenance note.
    author: String,
    committer: String,
    /// True when the agent set an identity other than the sandbox's own.
    foreign_identity: bool,
    message: String,
    claims: Vec<Claim>,
}

#[derive(Serialize)]
struct ReviewJson<'a> {
    task: &'a str,
    agent: &'a str,
    status: &'a str,
    /// Whether the engine confirmed the status (false: it could not be reached, and the
    /// work shown is the last synced).
    status_checked: bool,
    exit_code: Option<i64>,
    base: &'a str,
    head: Option<&'a str>,
    wip: Option<&'a str>,
    /// The commits `git agent commit` will re-create, in order.
    commits: Vec<CommitJson>,
    /// Commits of the task already on its branch.
    already_committed: u64,
    files: Vec<FileChange>,
    /// Changed files with binary content (not shown as text in the diff).
    binary: &'a [BinaryFile],
    sensitive: &'a [Flag],
    network: Option<NetworkUse>,
}

fn commits_json(plan: &Plan) -> Vec<CommitJson> {
    plan.commits
        .iter()
        .map(|c| CommitJson {
            id: c.id.clone(),
            author: c.author.clone(),
            committer: c.committer.clone(),
            foreign_identity: claims::foreign_identity(&c.author)
                || claims::foreign_identity(&c.committer),
            message: c.message.clone(),
            claims: claims::message_claims(&c.message),
        })
        .collect()
}

/// The flag lines of the attention section (already escaped).
fn attention(facts: &Facts, branch: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for f in &facts.flags {
        let mut line = format!("  ! {}: {}", visible::escape(&f.path), f.why);
        if !f.commits.is_empty() {
            let mut shown: Vec<String> = f.commits.iter().take(5).cloned().collect();
            if f.commits.len() > 5 {
                shown.push(format!("{} more", f.commits.len() - 5));
            }
            line += &format!(" (in {})", shown.join(", "));
        } else {
            line += &format!(" (in work already on {branch})");
        }
        if !f.in_final_diff {
            line += " (not in the final diff)";
        }
        lines.push(line);
    }
    for c in &facts.plan.commits {
        for claim in claims::message_claims(&c.message) {
            lines.push(format!(
                "  ! commit {} line {}: {}: {}",
                short(&c.id),
                claim.line,
                claim.why,
                visible::escape(claim.text.trim_end())
            ));
        }
        for (what, ident) in [("author", &c.author), ("committer", &c.committer)] {
            if claims::foreign_identity(ident) {
                lines.push(format!(
                    "  ! commit {}: {what} {} was set by the agent; `commit` re-creates it with your identity and keeps this one in the provenance note",
                    short(&c.id),
                    visible::escape(ident)
                ));
            }
        }
    }
    lines
}

/// Several attempts at one task (`spawn --agent a,b`), side by side.
fn show_group(review: &GroupReview) -> Result<i32> {
    let mut text = format!(
        "group {}: {} attempts\n",
        review.group,
        review.members.len()
    );
    for (l, stat) in &review.members {
        let r = &l.record;
        let status = match r.exit_code {
            Some(c) => format!("{} ({c})", r.status.as_str()),
            None => r.status.as_str().to_string(),
        };
        let run = r.stats.as_ref().map(|s| s.summary()).unwrap_or_default();
        text += &format!(
            "\n== {} ({} agent, {status}{}{})\n",
            r.name,
            r.agent,
            if run.is_empty() { "" } else { ", " },
            run
        );
        let stat = visible::escape(stat);
        if stat.is_empty() {
            text += "   no changes\n";
        }
        for line in stat.lines() {
            text += &format!("  {line}\n");
        }
    }
    text += "\nSee one attempt in full with `git agent review <task>`.\n";
    super::out(text.trim_end())?;
    Ok(0)
}

/// One attempt of a group in `review <group> --json`.
#[derive(Serialize)]
struct AttemptJson<'a> {
    task: &'a str,
    agent: &'a str,
    status: &'a str,
    exit_code: Option<i64>,
    base: &'a str,
    head: Option<&'a str>,
    wip: Option<&'a str>,
    turns: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cost_usd: Option<f64>,
    /// `git diff --stat` of the attempt against its base (raw git output).
    stat: &'a str,
}

#[derive(Serialize)]
struct GroupJson<'a> {
    group: &'a str,
    tasks: Vec<AttemptJson<'a>>,
}

/// `review <group> --json`: each attempt's facts (escaped like every review output).
fn group_json(review: &GroupReview) -> Result<i32> {
    let tasks = review
        .members
        .iter()
        .map(|(l, stat)| {
            let r = &l.record;
            let stats = r.stats.as_ref();
            AttemptJson {
                task: &r.name,
                agent: &r.agent,
                status: r.status.as_str(),
                exit_code: r.exit_code,
                base: &r.base,
                head: l.ref_value("head"),
                wip: l.ref_value("wip"),
                turns: stats.and_then(|s| s.turns),
                input_tokens: stats.and_then(|s| s.input_tokens),
                output_tokens: stats.and_then(|s| s.output_tokens),
                cost_usd: stats.and_then(|s| s.cost_usd),
                stat,
            }
        })
        .collect();
    let doc = super::json::document(&GroupJson {
        group: &review.group,
        tasks,
    })?;
    super::out(visible::json_safe(&doc))?;
    Ok(0)
}

/// Several attempts compared pair by pair (text or JSON).
async fn compare(ctx: &Ctx, args: &ReviewArgs) -> Result<i32> {
    let req = crate::ops::compare::CompareRequest {
        names: std::iter::once(args.task.clone())
            .chain(args.more.iter().cloned())
            .collect(),
        sync: !args.no_sync,
    };
    let done = crate::ops::compare::run(ctx, &req, &super::Stderr)
        .await
        .map_err(OpError::into_report)?;
    if args.json {
        super::out(visible::json_safe(&super::json::document(&done)?))?;
        return Ok(0);
    }
    let mut text = match &done.group {
        Some(g) => format!(
            "group {}: {} attempts\n",
            visible::escape(g),
            done.attempts.len()
        ),
        None => format!("{} attempts\n", done.attempts.len()),
    };
    for a in &done.attempts {
        text += &format!(
            "  {} ({} agent, {}) at {}\n",
            a.task,
            visible::escape(&a.agent),
            a.status,
            short(&a.tip)
        );
    }
    let list = |names: &[String]| {
        names
            .iter()
            .map(|n| visible::escape(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for p in &done.pairs {
        text += &format!("\n== {} vs {}\n", p.a, p.b);
        for (label, names) in [
            (format!("only in {}", p.a), &p.only_a),
            (format!("only in {}", p.b), &p.only_b),
            ("changed differently".to_string(), &p.differing),
            ("changed identically".to_string(), &p.identical),
        ] {
            if !names.is_empty() {
                text += &format!("  {label}: {}\n", list(names));
            }
        }
        if p.interdiff_stat.is_empty() {
            text += "  the final trees are identical\n";
        } else {
            text += &format!("  {} -> {} (final trees):\n", p.a, p.b);
            for line in visible::escape(&p.interdiff_stat).lines() {
                text += &format!("    {line}\n");
            }
        }
        if !p.range_diff.is_empty() {
            text += "  commits (git range-diff):\n";
            for line in visible::escape(&p.range_diff).lines() {
                text += &format!("    {line}\n");
            }
        }
    }
    super::out(text.trim_end())?;
    Ok(0)
}

pub async fn run(args: ReviewArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    if args.compare {
        return compare(&ctx, &args).await;
    }
    let req = ReviewRequest {
        task: args.task.clone(),
        sync: !args.no_sync,
        paths: args.paths.clone(),
        raw_output: args.raw,
    };
    let review = match crate::ops::review::run(&ctx, &req, &super::Stderr)
        .await
        .map_err(OpError::into_report)?
    {
        Reviewed::Group(g) if args.json => return group_json(&g),
        Reviewed::Group(g) => return show_group(&g),
        Reviewed::Task(t) => t,
    };
    if args.ack {
        let tip = review.loaded.tip().to_string();
        crate::ops::gate::acknowledge(&ctx, &review.loaded.record.name, &tip, &super::Stderr)
            .await
            .map_err(OpError::into_report)?;
        eprintln!(
            "git-agent: acknowledged the review flags of {} at {}",
            review.loaded.record.name,
            crate::ops::review::short(&tip)
        );
    }
    let loaded = &review.loaded;
    let network = crate::ops::inspect::network_use(review.engine.as_ref(), &ctx.store, loaded)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    let r = &loaded.record;
    let facts = &review.facts;
    let checked = review.status_checked;
    if args.json {
        let files =
            crate::ops::review::numstat(&ctx, &review).map_err(crate::ops::OpError::into_report)?;
        let json = ReviewJson {
            task: &r.name,
            agent: &r.agent,
            status: r.status.as_str(),
            status_checked: checked,
            exit_code: r.exit_code,
            base: &r.base,
            head: loaded.ref_value("head"),
            wip: loaded.ref_value("wip"),
            commits: commits_json(&facts.plan),
            already_committed: facts.already_committed(),
            files,
            binary: &facts.binary,
            sensitive: &facts.flags,
            network,
        };
        super::out(visible::json_safe(&super::json::document(&json)?))?;
        return Ok(0);
    }
    if args.name_only {
        let names: Vec<String> = facts.net.iter().map(|c| visible::escape(&c.path)).collect();
        if !names.is_empty() {
            super::out(names.join("\n"))?;
        }
        return Ok(0);
    }

    let tty = term::stdout_is_tty();
    let color = ctx
        .git
        .run([
            "config",
            "--get-colorbool",
            "color.diff",
            if tty { "true" } else { "false" },
        ])
        .map(|v| v == "true")
        .unwrap_or(false);
    let palette = color.then(|| visible::Palette::from_git(&ctx.git));
    let text = summary(&review, network.as_ref());
    let kind = if args.commits {
        DiffKind::Commits
    } else if args.stat {
        DiffKind::Stat
    } else {
        DiffKind::Patch
    };
    // No diff drivers, no textconv, every non-binary file as text whatever the attributes
    // say, no colour from git: what is shown is the content, escaped here.
    let diff =
        crate::ops::review::diff(&ctx, &review, kind).map_err(crate::ops::OpError::into_report)?;
    let mut body = text.into_bytes();
    body.extend_from_slice(visible::render_diff(&diff, palette.as_ref()).as_bytes());
    page(&ctx, &body, tty)?;
    Ok(0)
}

/// The summary above the diff: the task, its base, the commits `commit` will re-create,
/// what needs attention, its network use and output, and binary files (escaped).
fn summary(review: &TaskReview, network: Option<&NetworkUse>) -> String {
    let r = &review.loaded.record;
    let facts = &review.facts;
    let mut text = String::new();
    let unverified = !review.status_checked
        && matches!(
            r.status,
            crate::task::Status::Running | crate::task::Status::Creating
        );
    let status = match r.exit_code {
        Some(c) => format!("{} ({c})", r.status.as_str()),
        None if unverified => format!("{}?", r.status.as_str()),
        None => r.status.as_str().to_string(),
    };
    text += &format!("task    {} ({} agent, {status})\n", r.name, r.agent);
    text += &format!(
        "base    {}{}\n",
        &r.base[..12],
        r.base_branch
            .as_deref()
            .map(|b| format!(" (from {})", visible::escape(b)))
            .unwrap_or_default()
    );
    let n = facts.plan.commits.len();
    let already = facts.already_committed();
    text += &format!(
        "work    {n} commit{}{}{}\n",
        if n == 1 { "" } else { "s" },
        if facts.plan.wip.is_some() {
            " + uncommitted changes"
        } else {
            ""
        },
        if already > 0 {
            format!(" to commit ({already} already on {})", branch_name(&r.name))
        } else {
            String::new()
        }
    );
    for c in &facts.plan.commits {
        let message = visible::escape(&c.message);
        let mut lines = message.lines();
        text += &format!(
            "        {} {}\n",
            short(&c.id),
            lines.next().unwrap_or_default()
        );
        for l in lines {
            text += format!("        | {l}").trim_end_matches(' ');
            text += "\n";
        }
        if claims::foreign_identity(&c.author) {
            text += &format!("        author {}\n", visible::escape(&c.author));
        }
        if c.committer != c.author && claims::foreign_identity(&c.committer) {
            text += &format!("        committer {}\n", visible::escape(&c.committer));
        }
    }
    let flagged = attention(facts, &branch_name(&r.name));
    if !flagged.is_empty() {
        text += "attention: changes to look at before promoting\n";
        for l in &flagged {
            text += l;
            text += "\n";
        }
    }
    if let Some(n) = network {
        let mut l = n.lines().into_iter();
        text += &format!(
            "network {}\n",
            visible::escape(&l.next().unwrap_or_default())
        );
        for x in l {
            text += &format!("        {}\n", visible::escape(&x));
        }
    }
    if let Some(tail) = &review.output_tail
        && !tail.trim().is_empty()
    {
        text += "output  (last lines)\n";
        for l in tail.lines() {
            text += &format!("  | {}\n", visible::escape(l));
        }
    }
    text += "\n";
    for b in &facts.binary {
        let size = |s: Option<u64>| s.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
        text += &format!(
            "binary  {}: {} -> {} bytes (blob {} -> {}), not shown as text\n",
            visible::escape(&b.path),
            size(b.old_size),
            size(b.new_size),
            short(&b.old_blob),
            short(&b.new_blob)
        );
    }
    text
}

/// Show `body` through git's pager when stdout is a terminal, else print it.
fn page(ctx: &Ctx, body: &[u8], tty: bool) -> Result<()> {
    let pager = if tty {
        ctx.git.run(["var", "GIT_PAGER"]).unwrap_or_default()
    } else {
        String::new()
    };
    if pager.is_empty() || pager == "cat" {
        let mut o = std::io::stdout().lock();
        o.write_all(body)?;
        o.flush()?;
        return Ok(());
    }
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &pager]).stdin(Stdio::piped());
    if std::env::var_os("LESS").is_none() {
        cmd.env("LESS", "FRX");
    }
    if std::env::var_os("LV").is_none() {
        cmd.env("LV", "-c");
    }
    let mut child = cmd.spawn().context("cannot start the pager")?;
    if let Some(mut stdin) = child.stdin.take() {
        // The user quitting the pager early closes this pipe; that is fine.
        let _ = stdin.write_all(body);
    }
    child.wait()?;
    Ok(())
}
