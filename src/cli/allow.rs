//! `git agent allow`: arguments and rendering; the work is [`crate::ops::allow`].

use anyhow::Result;
use clap::Args;

use super::{Ctx, Stderr, out};

/// Let a task reach more domains. For a running task its gateway applies the change at
/// once; the domains stay with the task (also for `restart`).
///
/// Each domain also covers its subdomains; `*.example.com` covers only the subdomains. A
/// domain must be registrable or below (not `com`, `co.uk`, `github.io`), never an address or
/// a local name; addresses are opened at spawn (`--allow-address`). Prints the task's allowed
/// domains.
///
/// One change of a task's network at a time: `allow` waits for any other command changing
/// the task. For a running task the gateway takes the new policy first and confirms it; only
/// then is it recorded, so the record never lists a domain the gateway refused. When the
/// gateway cannot take it (it is down, the task's network is gone, or the reload fails) nothing
/// is recorded and `allow` fails (exit 1): `git agent restart <task>` gives the task a new
/// gateway with its recorded domains, then run `allow` again. A task that is not running just
/// records the domains for its next run.
#[derive(Debug, Args)]
pub struct AllowArgs {
    /// The task (name or unique prefix).
    pub task: String,
    /// Domains to allow.
    #[arg(required = true, value_name = "DOMAIN")]
    pub domains: Vec<String>,
}

pub async fn run(args: AllowArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let done = crate::ops::allow::run(&ctx, &args.task, &args.domains, &Stderr)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    let name = &done.task;
    if done.applied {
        eprintln!(
            "git-agent: task {name}'s gateway now allows {}",
            done.added.join(", ")
        );
    } else {
        eprintln!(
            "git-agent: task {name} is not running; its next run allows {}",
            done.added.join(", ")
        );
    }
    if done.open {
        eprintln!("git-agent: note: task {name} already reaches every host (profile open)");
    }
    for d in &done.allow {
        out(d)?;
    }
    Ok(0)
}
