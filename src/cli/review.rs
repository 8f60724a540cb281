//! `git agent review`: what a task changed, with its status and output.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::{Ctx, engine, term};
use crate::error::sanitize;
use crate::runtime::Runtime;
use crate::task::store::Loaded;

/// Show what a task changed against its base: a summary, its status and exit code, the tail
/// of its output, then the diff (through git's pager and colours).
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
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
}

#[derive(Serialize)]
struct FileChange {
    path: String,
    added: Option<u64>,
    removed: Option<u64>,
}

#[derive(Serialize)]
struct ReviewJson<'a> {
    task: &'a str,
    agent: &'a str,
    status: &'a str,
    exit_code: Option<i64>,
    base: &'a str,
    head: Option<&'a str>,
    wip: Option<&'a str>,
    commits: Vec<String>,
    files: Vec<FileChange>,
    sensitive: Vec<crate::git::sensitive::Flag>,
    network: Option<super::network::NetworkUse>,
}

/// Per-file line counts between two commits.
fn numstat(ctx: &Ctx, from: &str, to: &str) -> Result<Vec<FileChange>> {
    let text = ctx
        .git
        .run(["diff", "--numstat", "-z", "--no-renames", from, to])?;
    let mut files = Vec::new();
    for entry in text.split('\0').filter(|e| !e.is_empty()) {
        let mut parts = entry.splitn(3, '\t');
        let (Some(a), Some(r), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        files.push(FileChange {
            path: p.to_string(),
            added: a.parse().ok(),
            removed: r.parse().ok(),
        });
    }
    Ok(files)
}

/// Changes between `from` and `to` that deserve a second look (see `git::sensitive`).
fn sensitive(ctx: &Ctx, from: &str, to: &str) -> Result<Vec<crate::git::sensitive::Flag>> {
    use crate::git::sensitive::{flags, parse_raw};
    let raw = ctx.git.run([
        "diff",
        "--raw",
        "-z",
        "--no-renames",
        "--no-abbrev",
        from,
        to,
    ])?;
    let mut changes = parse_raw(&raw);
    let live: Vec<usize> = (0..changes.len())
        .filter(|i| changes[*i].status != 'D')
        .collect();
    if !live.is_empty() {
        let input: String = live
            .iter()
            .map(|i| format!("{to}:{}\n", changes[*i].path))
            .collect();
        let sizes = ctx.git.run_with_input(
            ["cat-file", "--batch-check=%(objectsize)"],
            input.as_bytes(),
        )?;
        for (i, size) in live.iter().zip(sizes.lines()) {
            changes[*i].new_size = size.trim().parse().ok();
        }
    }
    Ok(flags(&changes))
}

fn commits(ctx: &Ctx, loaded: &Loaded) -> Result<Vec<String>> {
    let head = loaded.ref_value("head").unwrap_or(&loaded.record.base);
    let text = ctx.git.run([
        "log",
        "--format=%h %s",
        head,
        &format!("^{}", loaded.record.base),
    ])?;
    Ok(text.lines().map(sanitize).collect())
}

/// Several attempts at one task (`spawn --agent a,b`), side by side.
async fn review_group(ctx: &Ctx, group: &str, members: Vec<Loaded>, sync: bool) -> Result<i32> {
    let rt = engine().await.ok();
    let mut rows = Vec::new();
    for mut l in members {
        if let Some(rt) = &rt {
            if sync && l.record.sandbox.container.is_some() {
                l = super::sync::sync_if_possible(rt, ctx, l).await?;
            } else {
                l = crate::sandbox::refresh(rt, &ctx.store, l).await?;
            }
        }
        rows.push(l);
    }
    let mut text = format!("group {group}: {} attempts\n", rows.len());
    for l in &rows {
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
        let stat = ctx
            .git
            .run(["diff", "--stat", "--no-color", &r.base, l.tip()])?;
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

pub async fn run(args: ReviewArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    if ctx.store.names()?.iter().all(|n| n != &args.task) {
        let members: Vec<Loaded> = ctx
            .store
            .all()?
            .into_iter()
            .filter(|l| l.record.group.as_deref() == Some(args.task.as_str()))
            .collect();
        if !members.is_empty() {
            return review_group(&ctx, &args.task, members, !args.no_sync).await;
        }
    }
    let mut loaded = ctx.store.resolve(&args.task)?;
    let mut output_tail = None;
    let mut network = None;
    if loaded.record.sandbox.container.is_some() {
        match engine().await {
            Ok(rt) => {
                if !args.no_sync {
                    loaded = super::sync::sync_if_possible(&rt, &ctx, loaded).await?;
                } else {
                    loaded = crate::sandbox::refresh(&rt, &ctx.store, loaded).await?;
                }
                let mut buf = Vec::new();
                let container = loaded.record.sandbox.container.clone().unwrap_or_default();
                if rt.logs(&container, false, Some(10), &mut buf).await.is_ok() {
                    output_tail = Some(sanitize(&String::from_utf8_lossy(&buf)));
                }
                network = super::network::network_use(Some(&rt), &ctx.store, &loaded).await?;
            }
            Err(e) => eprintln!("git-agent: not syncing ({e}); showing the last synced work"),
        }
    }
    if network.is_none() {
        network = super::network::network_use(
            None::<&crate::runtime::docker::DockerRuntime>,
            &ctx.store,
            &loaded,
        )
        .await?;
    }
    let r = &loaded.record;
    let tip = loaded.tip().to_string();
    if args.json {
        let files = numstat(&ctx, &r.base, &tip)?;
        let json = ReviewJson {
            task: &r.name,
            agent: &r.agent,
            status: r.status.as_str(),
            exit_code: r.exit_code,
            base: &r.base,
            head: loaded.ref_value("head"),
            wip: loaded.ref_value("wip"),
            commits: commits(&ctx, &loaded)?,
            files,
            sensitive: sensitive(&ctx, &r.base, &tip)?,
            network,
        };
        super::out(serde_json::to_string_pretty(&json)?)?;
        return Ok(0);
    }
    if args.name_only {
        let names = ctx
            .git
            .run(["diff", "--name-only", "--no-renames", &r.base, &tip])?;
        if !names.is_empty() {
            super::out(names)?;
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
    let mut text = String::new();
    let status = match r.exit_code {
        Some(c) => format!("{} ({c})", r.status.as_str()),
        None => r.status.as_str().to_string(),
    };
    text += &format!("task    {} ({} agent, {status})\n", r.name, r.agent);
    text += &format!(
        "base    {}{}\n",
        &r.base[..12],
        r.base_branch
            .as_deref()
            .map(|b| format!(" (from {b})"))
            .unwrap_or_default()
    );
    let log = commits(&ctx, &loaded)?;
    text += &format!(
        "work    {} commit{}{}\n",
        log.len(),
        if log.len() == 1 { "" } else { "s" },
        if loaded.ref_value("wip").is_some() {
            " + uncommitted changes"
        } else {
            ""
        }
    );
    for c in &log {
        text += &format!("        {c}\n");
    }
    let flagged = sensitive(&ctx, &r.base, &tip)?;
    if !flagged.is_empty() {
        text += "attention: changes to look at before promoting\n";
        for f in &flagged {
            text += &format!("  ! {}: {}\n", sanitize(&f.path), f.why);
        }
    }
    if let Some(n) = &network {
        let mut l = n.lines().into_iter();
        text += &format!("network {}\n", l.next().unwrap_or_default());
        for x in l {
            text += &format!("        {x}\n");
        }
    }
    if let Some(tail) = &output_tail {
        if !tail.trim().is_empty() {
            text += "output  (last lines)\n";
            for l in tail.lines() {
                text += &format!("  | {l}\n");
            }
        }
    }
    text += "\n";
    let mut diff_args = vec![
        "diff".to_string(),
        format!("--color={}", if color { "always" } else { "never" }),
        "--no-ext-diff".into(),
    ];
    if args.stat {
        diff_args.push("--stat".into());
    } else {
        diff_args.extend(["--stat".into(), "--patch".into()]);
    }
    diff_args.push(r.base.clone());
    diff_args.push(tip);
    let mut diff = ctx.git.command();
    diff.args(&diff_args);
    let diff_out = crate::git::output_of(&mut diff, None)?;
    let mut body = text.into_bytes();
    body.extend_from_slice(&diff_out.stdout);
    page(&ctx, &body, tty)?;
    Ok(0)
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
