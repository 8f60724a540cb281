//! `git agent purge`: arguments, the question before a bulk purge, and rendering; the work
//! is [`crate::ops::remove`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, Each, Stderr, out};
use crate::error::hinted;
use crate::ops::remove::{self, Planned};

/// Remove tasks' containers, workspace volumes and networks; with --refs, the tasks too.
///
/// Several tasks are purged one after the other; one that fails is reported and the others
/// are still purged, and the command then exits 1 naming the ones that failed.
///
/// A task whose container is still there is synced first, so work the agent did since the
/// last sync is kept in its refs. With --refs the task's refs are kept in a trash
/// (refs/agent-trash/<task>/) and `--undo <task>` brings the task back; `--empty-trash` lets
/// git gc reclaim them. Purging every task (--all, --empty-trash) lists the tasks and which
/// hold work never promoted, and asks on a terminal; elsewhere it needs --yes. --dry-run
/// shows what would go and changes nothing.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The tasks (exact names, or any unique prefix of an existing task's name).
    #[arg(value_name = "TASK", required_unless_present_any = ["all", "list_trash", "empty_trash"])]
    pub tasks: Vec<String>,
    /// Also delete the task's refs (refs/agent/<task>/), keeping a copy for --undo. Promoted
    /// branches are kept.
    #[arg(long)]
    pub refs: bool,
    /// Every task of this repository.
    #[arg(long, conflicts_with = "tasks")]
    pub all: bool,
    /// Show what would be removed, and which tasks hold unpromoted work; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Do not ask before purging every task (needed when not on a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Purge even when the task's last work cannot be synced first (that work is lost).
    #[arg(long)]
    pub force: bool,
    /// Bring back tasks purged with --refs.
    #[arg(long, requires = "tasks", conflicts_with_all = ["refs", "all", "dry_run", "force"])]
    pub undo: bool,
    /// List the tasks kept in the trash.
    #[arg(long, conflicts_with_all = ["tasks", "refs", "all", "undo", "force"])]
    pub list_trash: bool,
    /// Delete the trash copies (of the tasks given, or of every purged task).
    #[arg(long, conflicts_with_all = ["refs", "all", "undo", "force", "list_trash"])]
    pub empty_trash: bool,
}

/// Ask on the terminal; without one, refuse unless `--yes`.
fn confirm(question: &str, yes: bool, dry_run_cmd: &str) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !super::term::stdin_is_tty() {
        return Err(hinted(
            format!("{question}: refusing to ask without a terminal"),
            format!("see what would go with `{dry_run_cmd}`, then add --yes to go ahead"),
        ));
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// One line per task for a bulk purge: what goes, and the work never promoted.
fn describe(planned: &[Planned], refs: bool) -> Vec<String> {
    planned
        .iter()
        .map(|p| {
            let what = match &p.unpromoted {
                Some(w) => format!("  {:<24} {} ({w})", p.name, p.status.as_str()),
                None => format!("  {:<24} {}", p.name, p.status.as_str()),
            };
            if refs {
                what
            } else {
                format!("{what} [refs kept]")
            }
        })
        .collect()
}

pub async fn run(args: PurgeArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    if args.list_trash {
        for (name, refs) in remove::trash(&ctx).map_err(crate::ops::OpError::into_report)? {
            let state = refs.get("state").map(|s| &s[..12]).unwrap_or("-");
            out(format!("{name} {state}"))?;
        }
        return Ok(0);
    }
    if args.empty_trash {
        let trash = remove::trash(&ctx).map_err(crate::ops::OpError::into_report)?;
        let names: Vec<&String> = if args.tasks.is_empty() {
            trash.keys().collect()
        } else {
            trash.keys().filter(|n| args.tasks.contains(n)).collect()
        };
        if names.is_empty() {
            eprintln!("git-agent: the trash is empty");
            return Ok(0);
        }
        if args.dry_run {
            for n in names {
                out(n)?;
            }
            return Ok(0);
        }
        if args.tasks.is_empty() {
            if !confirm(
                &format!("delete the trash copies of {} purged task(s)", names.len()),
                args.yes,
                "git agent purge --list-trash",
            )? {
                eprintln!("git-agent: nothing was deleted");
                return Ok(1);
            }
            for n in remove::empty_trash(&ctx, None).map_err(crate::ops::OpError::into_report)? {
                out(n)?;
            }
            return Ok(0);
        }
        for t in &args.tasks {
            for n in remove::empty_trash(&ctx, Some(t)).map_err(crate::ops::OpError::into_report)? {
                out(n)?;
            }
        }
        return Ok(0);
    }
    if args.undo {
        let mut each = Each::new("undo the purge of", args.tasks.len());
        for task in &args.tasks {
            let done = remove::undo(&ctx, task).map_err(crate::ops::OpError::into_report);
            if done.is_ok() {
                eprintln!(
                    "git-agent: {task} is back (without its container and workspace); `git agent review {task}` shows its work"
                );
            }
            each.record(task, done)?;
        }
        return each.finish();
    }
    // Every name is checked before anything is purged: a typo changes nothing. An exact
    // name without a task is left to the purge, which cleans up what an interrupted spawn
    // left under it.
    let mut names: Vec<String> = Vec::with_capacity(args.tasks.len());
    for t in &args.tasks {
        let name = match ctx.store.resolve(t) {
            Ok(l) => l.record.name,
            Err(_) if !args.dry_run && crate::task::TaskName::parse(t).is_ok() => t.clone(),
            Err(e) => return Err(e),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    // A fetched task has nothing on the engine: its refs go without asking it.
    if !args.all
        && !args.dry_run
        && !names.is_empty()
        && names.iter().all(|n| crate::task::remote::is_fetched(n))
    {
        let mut each = Each::new("purge", names.len());
        for name in &names {
            let done = remove::purge_fetched(&ctx, name, args.refs, &Stderr)
                .await
                .map(drop)
                .map_err(crate::ops::OpError::into_report);
            each.record(name, done)?;
        }
        return each.finish();
    }
    if args.all {
        let tasks = ctx.store.all()?;
        if tasks.is_empty() {
            eprintln!("git-agent: no tasks to purge");
            return Ok(0);
        }
        let planned = remove::plan(&ctx, &tasks);
        let lines = describe(&planned, args.refs);
        let held = planned.iter().filter(|p| p.unpromoted.is_some()).count();
        if args.dry_run {
            for l in &lines {
                out(l.trim_start())?;
            }
            eprintln!(
                "git-agent: would purge {} task(s){}; {held} hold work never promoted",
                tasks.len(),
                if args.refs { " and their refs" } else { "" }
            );
            return Ok(0);
        }
        for l in &lines {
            eprintln!("{l}");
        }
        let question = format!(
            "purge {} task(s){}{}",
            tasks.len(),
            if args.refs { " and their refs" } else { "" },
            if held > 0 {
                format!(", {held} of them holding work never promoted")
            } else {
                String::new()
            }
        );
        let dry = format!(
            "git agent purge --all{} --dry-run",
            if args.refs { " --refs" } else { "" }
        );
        if !confirm(&question, args.yes, &dry)? {
            eprintln!("git-agent: nothing was purged");
            return Ok(1);
        }
        for p in &planned {
            crate::interrupt::checkpoint()?;
            let rt = crate::ops::engine_of_task(&ctx, &p.name).await?;
            remove::purge(&rt, &ctx, &p.name, args.refs, args.force, &Stderr)
                .await
                .map_err(crate::ops::OpError::into_report)?;
        }
        return Ok(0);
    }
    if args.dry_run {
        let mut loaded = Vec::with_capacity(names.len());
        for n in &names {
            loaded.push(ctx.store.resolve(n)?);
        }
        let planned = remove::plan(&ctx, &loaded);
        for line in describe(&planned, args.refs) {
            out(line.trim_start())?;
        }
        return Ok(0);
    }
    let mut each = Each::new("purge", names.len());
    for name in &names {
        crate::interrupt::checkpoint()?;
        let done = if crate::task::remote::is_fetched(name) {
            remove::purge_fetched(&ctx, name, args.refs, &Stderr)
                .await
                .map(drop)
                .map_err(crate::ops::OpError::into_report)
        } else {
            match crate::ops::engine_of_task(&ctx, name).await {
                Ok(rt) => remove::purge(&rt, &ctx, name, args.refs, args.force, &Stderr)
                    .await
                    .map(drop)
                    .map_err(crate::ops::OpError::into_report),
                Err(e) => Err(e),
            }
        };
        each.record(name, done)?;
    }
    each.finish()
}
