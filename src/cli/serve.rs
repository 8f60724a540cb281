//! `git agent serve`: run queued tasks (see [`crate::ops::serve`]), and its worker,
//! `git agent run-queued` (hidden; see [`crate::ops::queue::work`]).

use anyhow::Result;
use clap::Args;

use super::{Ctx, Stderr, engine, out};
use crate::ops::{self, OpError};

/// Run queued tasks from every registered repository, oldest first, at most N at a time.
///
/// Repositories register themselves when a task is added (`git agent add`). Each task is
/// claimed with a compare-and-swap change of its state, so two servers never run the same
/// task; the claims of a server that died are put back in the queue. SIGTERM or Ctrl-C
/// stops claiming: running tasks keep running, and the server says what it left.
/// Run it as a user service with `git agent serve --print-unit` (a systemd user unit).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// How many tasks run at once, across all repositories (default: agent.workers, else 2).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Start what is queued now and exit once all of it has ended.
    #[arg(long)]
    pub once: bool,
    /// Print a systemd user unit that runs `git agent serve` and exit.
    #[arg(long)]
    pub print_unit: bool,
}

/// The systemd user unit (also in `scripts/git-agent.service`).
pub const UNIT: &str = include_str!("../../scripts/git-agent.service");

pub async fn run(args: ServeArgs) -> Result<i32> {
    if args.print_unit {
        print!("{UNIT}");
        return Ok(0);
    }
    let workers = match args.workers {
        Some(n) => n,
        None => default_workers()?,
    };
    let rt = engine().await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = crate::interrupt::interrupted() => {}
            _ = term.recv() => {}
        }
    };
    let opts = ops::serve::ServeOptions {
        workers,
        once: args.once,
        program: std::env::current_exe()?,
    };
    eprintln!("git-agent: serving queued tasks with {workers} worker(s)");
    let report = ops::serve::run(&rt, &opts, &Stderr, stop)
        .await
        .map_err(OpError::into_report)?;
    if !report.running.is_empty() {
        eprintln!(
            "git-agent: left running (they go on as ordinary tasks): {}",
            report.running.join(" ")
        );
    }
    eprintln!("git-agent: {} task(s) still queued", report.queued);
    Ok(0)
}

/// `agent.workers` from the user's git config (read outside any repository), else 2.
fn default_workers() -> Result<usize> {
    let out = crate::git::command()
        .args(["config", "--get", "agent.workers"])
        .stdin(std::process::Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if text.is_empty() {
        return Ok(2);
    }
    text.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            crate::error::hinted(
                format!("bad value '{text}' for agent.workers"),
                "set a positive number: git config --global agent.workers 2",
            )
        })
}

/// A server's worker: claim one queued task, start it, wait for its run to end.
#[derive(Debug, Args)]
pub struct RunQueuedArgs {
    /// The queued task.
    pub task: String,
    #[arg(long, default_value_t = 0)]
    pub server_pid: u32,
    #[arg(long, default_value_t = 0)]
    pub server_started: i64,
}

pub async fn run_queued(args: RunQueuedArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let server = ops::queue::Server {
        pid: args.server_pid,
        started: args.server_started,
    };
    let worked = ops::queue::work(&ctx, &args.task, &server, &Stderr)
        .await
        .map_err(OpError::into_report)?;
    Ok(match worked {
        ops::queue::Worked::Lost => ops::serve::WORKER_LOST,
        ops::queue::Worked::NotReady => ops::serve::WORKER_NOT_READY,
        ops::queue::Worked::Refused(reason) => {
            eprintln!("git-agent: task {} was not run: {reason}", args.task);
            1
        }
        ops::queue::Worked::Ran(code) => {
            out(format!("{} {code}", args.task))?;
            i32::from(code != 0)
        }
    })
}
