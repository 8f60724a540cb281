//! `git agent stop`, `rm` and `purge`: ending a task and removing what it used.

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine, out};
use crate::error::hinted;
use crate::runtime::{ContainerState, ObjectKind, Runtime};
use crate::sandbox::remove_objects;
use crate::task::lock::TaskLock;
use crate::task::store::Loaded;
use crate::task::{Status, now};

/// Stop a task's container (its workspace and refs stay).
#[derive(Debug, Args)]
pub struct StopArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Seconds to wait for the task to exit before killing it.
    #[arg(long, default_value_t = 10)]
    pub timeout: i32,
}

/// Remove a task's container (its workspace volume, network and refs stay).
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
}

/// Remove a task's container, workspace volume and network; with --refs, the task too.
///
/// A task whose container is still there is synced first, so work the agent did since the
/// last sync is kept in its refs. With --refs the task's refs are kept in a trash
/// (refs/agent-trash/<task>/) and `--undo <task>` brings the task back; `--empty-trash` lets
/// git gc reclaim them. Purging every task (--all, --empty-trash) lists the tasks and which
/// hold work never promoted, and asks on a terminal; elsewhere it needs --yes. --dry-run
/// shows what would go and changes nothing.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The task (exact name, or any unique prefix of an existing task's name).
    #[arg(required_unless_present_any = ["all", "list_trash", "empty_trash"])]
    pub task: Option<String>,
    /// Also delete the task's refs (refs/agent/<task>/), keeping a copy for --undo. Promoted
    /// branches are kept.
    #[arg(long)]
    pub refs: bool,
    /// Every task of this repository.
    #[arg(long, conflicts_with = "task")]
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
    /// Bring back a task purged with --refs.
    #[arg(long, requires = "task", conflicts_with_all = ["refs", "all", "dry_run", "force"])]
    pub undo: bool,
    /// List the tasks kept in the trash.
    #[arg(long, conflicts_with_all = ["task", "refs", "all", "undo", "force"])]
    pub list_trash: bool,
    /// Delete the trash copies (of the task given, or of every purged task).
    #[arg(long, conflicts_with_all = ["refs", "all", "undo", "force", "list_trash"])]
    pub empty_trash: bool,
}

pub async fn run_stop(args: StopArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let name = ctx.store.resolve(&args.task)?.record.name;
    let _lock = super::lock_task(&ctx, &name, "stop").await?;
    let loaded = super::reload(&ctx, &name)?;
    let Some(container) = loaded.record.sandbox.container.clone() else {
        return Err(hinted(
            format!("task '{name}' has no container to stop"),
            format!("see its state with `git agent status {name}`"),
        ));
    };
    let rt = engine().await?;
    let was = rt.state(&container).await?;
    rt.stop(&container, args.timeout).await?;
    let after = rt.state(&container).await?;
    ctx.store.update(&name, "stop", |r, _| {
        if matches!(r.status, Status::Running | Status::Creating) {
            r.status = if was == ContainerState::Running {
                Status::Stopped
            } else {
                Status::Exited
            };
            if let ContainerState::Exited(c) = after {
                r.exit_code = Some(c);
            }
            r.reason = Some("stopped by the user".into());
            r.finished = Some(now());
        }
        Ok(vec![])
    })?;
    let names = ctx.repo.object_names(&name);
    crate::sandbox::gateway::retire(&rt, &ctx.store, ctx.store.resolve(&name)?, &names).await?;
    eprintln!("git-agent: stopped {name}");
    Ok(0)
}

pub async fn run_rm(args: RmArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let name = ctx.store.resolve(&args.task)?.record.name;
    let rt = engine().await?;
    let _lock = super::lock_task(&ctx, &name, "rm").await?;
    crate::sandbox::refresh(&rt, &ctx.store, super::reload(&ctx, &name)?).await?;
    let names = ctx.repo.object_names(&name);
    rt.remove_container(&names.container).await?;
    // Its disk warden watched only that container, and would keep the workspace in use.
    if crate::sandbox::owned_by(&rt, &ctx.repo, &name, ObjectKind::Container, &names.warden).await?
    {
        rt.remove_container(&names.warden).await?;
    }
    ctx.store.update(&name, "rm", |r, _| {
        if matches!(r.status, Status::Running | Status::Creating) {
            r.status = Status::Stopped;
            r.reason = Some("container removed".into());
            r.finished = Some(now());
        }
        r.sandbox.container = None;
        Ok(vec![])
    })?;
    // The run is over for good: keep its connection log, remove its gateway.
    crate::sandbox::gateway::retire(&rt, &ctx.store, ctx.store.resolve(&name)?, &names).await?;
    eprintln!("git-agent: removed the container of {name}");
    Ok(0)
}

/// Work a task holds that never reached its branch, in words (`None` when all is promoted
/// or there is none).
fn unpromoted(ctx: &Ctx, loaded: &Loaded) -> Option<String> {
    let r = &loaded.record;
    let tip = loaded.tip();
    if tip == r.base || r.promoted.as_ref().is_some_and(|p| p.task_tip == tip) {
        return None;
    }
    let head = loaded.ref_value("head").unwrap_or(&r.base);
    let mut args = vec![
        "rev-list".to_string(),
        "--count".into(),
        head.to_string(),
        format!("^{}", r.base),
    ];
    if let Some(p) = &r.promoted {
        args.push(format!("^{}", p.task_tip));
    }
    let commits: usize = ctx
        .git
        .run(&args)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let wip = loaded.ref_value("wip").is_some()
        && r.promoted.as_ref().map(|p| p.task_tip.as_str()) != loaded.ref_value("wip");
    let mut parts = Vec::new();
    if commits > 0 {
        parts.push(format!(
            "{commits} commit{} never promoted",
            if commits == 1 { "" } else { "s" }
        ));
    }
    if wip {
        parts.push("uncommitted changes never promoted".into());
    }
    (!parts.is_empty()).then(|| parts.join(", "))
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

/// Bring a task's work home before its workspace goes. Tasks that never ran (their spawn
/// failed or died) have nothing to bring.
async fn sync_before_purge<R: Runtime>(
    ctx: &Ctx,
    rt: &R,
    loaded: Loaded,
    lock: &TaskLock,
    force: bool,
) -> Result<Loaded> {
    let never_ran = matches!(loaded.record.status, Status::Creating | Status::Failed)
        && loaded.record.started.is_none();
    let Some(container) = loaded.record.sandbox.container.clone() else {
        return Ok(loaded);
    };
    // A container already gone (an earlier purge was interrupted, or it was removed by hand)
    // has nothing left to bring: its last synced work is in the refs.
    if never_ran || rt.state(&container).await? == ContainerState::Missing {
        return Ok(loaded);
    }
    let name = loaded.record.name.clone();
    match crate::ops::sync::if_possible(rt, ctx, loaded, lock, &super::Stderr).await {
        Ok(l) => Ok(l),
        Err(e) if force => {
            eprintln!(
                "git-agent: {name}: could not sync before purging ({e:#}); its unsynced work is lost"
            );
            ctx.store.resolve(&name)
        }
        Err(e) => Err(hinted(
            format!(
                "cannot sync task '{name}' before purging it, so its latest work would be lost: {e:#}"
            ),
            format!(
                "look at it with `git agent status {name}`; `git agent purge --force {name}` removes it anyway"
            ),
        )),
    }
}

async fn purge_one<R: Runtime>(
    ctx: &Ctx,
    rt: &R,
    query: &str,
    refs: bool,
    force: bool,
) -> Result<()> {
    let found = match ctx.store.resolve(query) {
        Ok(l) => Ok(l.record.name),
        Err(e) => Err(e),
    };
    let (name, lock) = match found {
        Ok(name) => {
            let lock = super::lock_task(ctx, &name, "purge").await?;
            (name, Some(lock))
        }
        // An exact name without refs: clean up objects left by an interrupted spawn.
        Err(e) => match crate::task::TaskName::parse(query) {
            Ok(n) => {
                let leftovers = rt
                    .containers_with(&[
                        (crate::runtime::LABEL_REPO, &ctx.repo.id),
                        (crate::runtime::LABEL_TASK, n.as_str()),
                    ])
                    .await?;
                if leftovers.is_empty() {
                    return Err(e);
                }
                (n.to_string(), None)
            }
            Err(_) => return Err(e),
        },
    };
    let loaded = match &lock {
        Some(lock) => match ctx.store.load(&name)? {
            Some(l) => Some(sync_before_purge(ctx, rt, l, lock, force).await?),
            None => {
                return Err(hinted(
                    format!("task '{name}' was purged by another command meanwhile"),
                    "see what is left with `git agent list`",
                ));
            }
        },
        None => None,
    };
    // Ctrl-C before anything is removed leaves the task whole.
    crate::interrupt::checkpoint()?;
    let recorded = loaded.as_ref().map(|l| l.record.sandbox.clone());
    // By label only: the task's own objects, including those a task from before the current
    // naming scheme recorded under its old names.
    remove_objects(rt, &ctx.repo, &name, recorded.as_ref(), true, true).await?;
    crate::crash::point("purge.after-objects");
    if loaded.is_some() {
        let loaded = ctx.store.update(&name, "purge", |r, _| {
            if matches!(r.status, Status::Running | Status::Creating) {
                r.status = Status::Stopped;
                r.reason = Some("purged".into());
                r.finished = Some(now());
            }
            r.sandbox.container = None;
            r.sandbox.volume = None;
            r.sandbox.network = None;
            r.sandbox.gateway = None;
            r.sandbox.state_volume = None;
            r.sandbox.home_volume = None;
            Ok(vec![])
        })?;
        if refs {
            crate::crash::point("purge.before-refs");
            let work = unpromoted(ctx, &loaded);
            crate::task::trash::delete_keeping_copy(&ctx.store, &loaded)?;
            crate::task::lock::forget(&ctx.git, &name);
            if let Some(w) = work {
                eprintln!(
                    "git-agent: {name} held {w}; `git agent purge --undo {name}` brings it back"
                );
            }
        }
    }
    eprintln!(
        "git-agent: purged {name}{}",
        if refs { " and its refs" } else { "" }
    );
    Ok(())
}

/// One line per task for a bulk purge: what goes, and the work never promoted.
fn describe(ctx: &Ctx, tasks: &[Loaded], refs: bool) -> Vec<String> {
    tasks
        .iter()
        .map(|l| {
            let what = match unpromoted(ctx, l) {
                Some(w) => format!("  {:<24} {} ({w})", l.record.name, l.record.status.as_str()),
                None => format!("  {:<24} {}", l.record.name, l.record.status.as_str()),
            };
            if refs {
                what
            } else {
                format!("{what} [refs kept]")
            }
        })
        .collect()
}

pub async fn run_purge(args: PurgeArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    if args.list_trash {
        for (name, refs) in crate::task::trash::list(&ctx.git)? {
            let state = refs.get("state").map(|s| &s[..12]).unwrap_or("-");
            out(format!("{name} {state}"))?;
        }
        return Ok(0);
    }
    if args.empty_trash {
        let trash = crate::task::trash::list(&ctx.git)?;
        let names: Vec<&String> = match &args.task {
            Some(t) => trash.keys().filter(|n| *n == t).collect(),
            None => trash.keys().collect(),
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
        if args.task.is_none()
            && !confirm(
                &format!("delete the trash copies of {} purged task(s)", names.len()),
                args.yes,
                "git agent purge --list-trash",
            )?
        {
            eprintln!("git-agent: nothing was deleted");
            return Ok(1);
        }
        for n in crate::task::trash::empty(&ctx.git, args.task.as_deref())? {
            out(n)?;
        }
        return Ok(0);
    }
    if args.undo {
        let task = args.task.expect("clap requires a task with --undo");
        crate::task::trash::restore(&ctx.store, &task)?;
        eprintln!(
            "git-agent: {task} is back (without its container and workspace); `git agent review {task}` shows its work"
        );
        return Ok(0);
    }
    let rt = engine().await?;
    if args.all {
        let tasks = ctx.store.all()?;
        if tasks.is_empty() {
            eprintln!("git-agent: no tasks to purge");
            return Ok(0);
        }
        let lines = describe(&ctx, &tasks, args.refs);
        let held = tasks
            .iter()
            .filter(|l| unpromoted(&ctx, l).is_some())
            .count();
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
        for l in &tasks {
            crate::interrupt::checkpoint()?;
            purge_one(&ctx, &rt, &l.record.name, args.refs, args.force).await?;
        }
        return Ok(0);
    }
    let task = args.task.expect("clap requires a task without --all");
    if args.dry_run {
        let l = ctx.store.resolve(&task)?;
        for line in describe(&ctx, std::slice::from_ref(&l), args.refs) {
            out(line.trim_start())?;
        }
        return Ok(0);
    }
    purge_one(&ctx, &rt, &task, args.refs, args.force).await?;
    Ok(0)
}
