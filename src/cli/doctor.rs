//! `git agent doctor` and `git agent panic`: arguments and rendering; the checks and the
//! emergency stop are [`crate::ops::doctor`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, out};

/// Check what git-agent needs (git, the container engine and its API version, the base
/// image, free disk space) and this repository's tasks: spawns that died (a task left
/// `creating` that no spawn is setting up), tasks whose container, workspace volume,
/// network or gateway is missing, runtime objects whose task has no refs, objects named like
/// this repository's but without git-agent's labels, leftovers of image builds whose builder
/// died, and reader/draft containers and temp files of interrupted syncs and commits. Each
/// problem is printed with the command that fixes it; exits 1 when any check fails.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Repair what can be repaired: a dead spawn is recorded as failed and its containers
    /// and network removed (then `git agent purge --refs <task>` removes it), leftovers are
    /// removed, a task whose container is gone is recorded as failed, and one whose command
    /// ended (shown by `list` and `status` but not recorded) is recorded with its exit and its
    /// gateway retired. Never deletes task
    /// refs or a workspace; what needs a command of its own (e.g. `git agent restart
    /// <task>` for a dead gateway) is printed with it. Exits 1 when something is left.
    #[arg(long)]
    pub fix: bool,
    /// Print the checks and findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Stop every git-agent task container on the engine at once (all repositories): their
/// networks are cut first, then they are killed. Workspaces, volumes and refs are kept, so
/// nothing is lost; `git agent restart <task>` resumes a task.
#[derive(Debug, Args)]
pub struct PanicArgs {
    /// Only the tasks of the repository you are in.
    #[arg(long)]
    pub this_repo: bool,
}

pub async fn run_doctor(args: DoctorArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let mut entries = Vec::new();
    let json = args.json;
    let failed = crate::ops::doctor::run(&ctx, args.fix, &mut |e| {
        // Text is printed as the checks come; JSON at the end.
        if !json {
            let mut line = format!("{:<5} {:<10} {}", e.status, e.check, e.detail);
            if let Some(fix) = &e.fix {
                line.push_str(&format!("\n      fix: {fix}"));
            }
            out(line)?;
        }
        entries.push(e);
        Ok(())
    })
    .await
    .map_err(crate::ops::OpError::into_report)?;
    if json {
        super::json::print(&serde_json::json!({ "ok": !failed, "checks": entries }))?;
    }
    Ok(if failed { 1 } else { 0 })
}

pub async fn run_panic(args: PanicArgs) -> Result<i32> {
    let repo = if args.this_repo {
        Some(Ctx::open()?.repo.id)
    } else {
        None
    };
    let stopped = crate::ops::doctor::panic(repo.as_deref())
        .await
        .map_err(crate::ops::OpError::into_report)?;
    for name in &stopped {
        out(name)?;
    }
    eprintln!(
        "git-agent: cut the network of and stopped {} task container(s); workspaces and refs are kept",
        stopped.len()
    );
    Ok(0)
}
