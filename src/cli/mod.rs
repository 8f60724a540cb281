//! The command line: argument definitions (one file per command), dispatch, and the only
//! place that prints errors. Scriptable output goes to stdout, progress and logs to stderr.

mod add;
mod agents;
mod allow;
mod attach;
mod check;
mod commit;
mod commit_push;
mod completion;
#[path = "continue.rs"]
mod continue_;
mod dashboard;
mod doctor;
mod engine_view;
mod gc;
mod hooks;
mod image;
mod images;
mod json;
mod list;
mod logs;
pub mod man;
mod merge;
mod preview;
mod progress;
mod purge;
mod push;
mod restart;
mod retry;
mod review;
mod rm;
mod serve;
mod share;
mod shell;
mod spawn;
mod status;
mod stop;
mod sync;
pub mod term;
mod trust;
mod update;
mod wait;

use std::io::Write;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::task::lock::TaskLock;

/// Delegate coding tasks to AI agents in sandboxed containers; get their work back as
/// ordinary git branches you review and promote with your own identity.
///
/// A task runs on a private copy of the repository inside a container. History moves in and
/// out only as git bundles over the container's stdin/stdout; what comes back is checked
/// before it is fetched into the task's refs (`refs/agent/<task>/`). Your branches, index,
/// work tree, hooks and credentials are never reachable from the sandbox.
///
/// Every command works from any directory of the repository's work tree and of its linked
/// worktrees, which share one task store. Repositories git-agent cannot work in are refused
/// at once, changing nothing, with what to do: SHA-256 and reftable repositories (a SHA-1 or
/// files-format copy works), bare repositories (add a work tree with `git worktree add`).
/// When the container engine cannot be reached, list, status, review and logs work from the
/// refs and say the runtime status is unknown.
#[derive(Debug, Parser)]
#[command(name = "git-agent", bin_name = "git agent", version)]
#[command(
    after_help = "Settings live in git config under agent.* (agent.baseImage, agent.maxBundleSize, ...).\nSee git-agent(1) for the full manual, and git-agent-<command>(1) for each command's."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(visible_alias = "run")]
    Spawn(Box<spawn::SpawnArgs>),
    Sync(sync::SyncArgs),
    Review(review::ReviewArgs),
    Commit(commit::CommitArgs),
    Push(push::PushArgs),
    CommitPush(commit_push::CommitPushArgs),
    List(list::ListArgs),
    Status(status::StatusArgs),
    Logs(logs::LogsArgs),
    Shell(shell::ShellArgs),
    Attach(attach::AttachArgs),
    Restart(restart::RestartArgs),
    Allow(allow::AllowArgs),
    Stop(stop::StopArgs),
    Rm(rm::RmArgs),
    Purge(purge::PurgeArgs),
    Gc(gc::GcArgs),
    Image(image::ImageArgs),
    Agents(agents::AgentsArgs),
    Template(agents::TemplateArgs),
    Auth(agents::AuthArgs),
    Trust(trust::TrustArgs),
    Doctor(doctor::DoctorArgs),
    Panic(doctor::PanicArgs),
    Check(check::CheckArgs),
    Update(update::UpdateArgs),
    Add(Box<spawn::SpawnArgs>),
    Serve(serve::ServeArgs),
    Wait(wait::WaitArgs),
    #[command(hide = true)]
    RunQueued(serve::RunQueuedArgs),
    Merge(merge::MergeArgs),
    Retry(retry::RetryArgs),
    Continue(continue_::ContinueArgs),
    Hooks(hooks::HooksArgs),
    #[command(hide = true)]
    HookRun(hooks::HookRunArgs),
    Share(share::ShareArgs),
    Completion(completion::CompletionArgs),
    Dashboard(dashboard::DashboardArgs),
    Preview(preview::PreviewArgs),
}

pub use crate::ops::{Ctx, engine, engine_for_reading, reload};

/// Renders an operation's events on stderr, as `git-agent: ...` lines.
pub struct Stderr;

impl crate::ops::Events for Stderr {
    fn emit(&self, event: crate::ops::Event) {
        use crate::ops::Event;
        match event {
            Event::Step { message, .. } => progress::line(&format!("git-agent: {message}")),
            Event::Warning { message, .. } => {
                progress::line(&format!("git-agent: warning: {message}"))
            }
            Event::Waiting { task, holder } => progress::line(&format!(
                "git-agent: task {task} is busy with {holder}; waiting..."
            )),
            Event::Output { line } => progress::line(&line),
            Event::Progress {
                what, done, total, ..
            } => progress::progress(&what, done, total),
            Event::Transfer {
                what,
                done,
                total,
                millis,
                finished,
                ..
            } => progress::transfer(&what, done, total, millis, finished),
            Event::BuildStep { step } => progress::build_step(&step),
            Event::BuildOutput { line } => progress::build_output(&line),
            Event::BuildEnd { ok, tail, log } => progress::build_end(ok, &tail, log.as_deref()),
        }
    }
}

/// Take a task's lock for a command that changes it, saying on stderr when another command
/// holds it. Re-read the task after this: it may have changed while waiting.
pub async fn lock_task(ctx: &Ctx, task: &str, what: &str) -> Result<TaskLock> {
    crate::ops::lock_task(ctx, task, what, &Stderr).await
}

/// Parse arguments, run the command, print any error; returns the process exit code.
pub fn main() -> i32 {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == crate::template::CHILD_ARG)
    {
        return crate::template::child_main();
    }
    completion::answer_if_asked();
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(code) = man::help::open_page(&args) {
        return code;
    }
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(dispatch(cli));
    // Do not wait for threads blocked on the terminal.
    rt.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

async fn dispatch(cli: Cli) -> Result<i32> {
    crate::interrupt::install()?;
    match cli.command {
        Command::Spawn(a) => spawn::run(*a).await,
        Command::Sync(a) => sync::run(a).await,
        Command::Review(a) => review::run(a).await,
        Command::Commit(a) => commit::run(a).await,
        Command::Push(a) => push::run(a).await,
        Command::CommitPush(a) => commit_push::run(a).await,
        Command::List(a) => list::run(a).await,
        Command::Status(a) => status::run(a).await,
        Command::Logs(a) => logs::run(a).await,
        Command::Shell(a) => shell::run(a).await,
        Command::Attach(a) => attach::run(a).await,
        Command::Restart(a) => restart::run(a).await,
        Command::Allow(a) => allow::run(a).await,
        Command::Stop(a) => stop::run(a).await,
        Command::Rm(a) => rm::run(a).await,
        Command::Purge(a) => purge::run(a).await,
        Command::Gc(a) => gc::run(a).await,
        Command::Image(a) => image::run(a).await,
        Command::Agents(a) => agents::run_agents(a),
        Command::Template(a) => agents::run_template(a),
        Command::Auth(a) => agents::run_auth(a),
        Command::Trust(a) => trust::run(a),
        Command::Doctor(a) => doctor::run_doctor(a).await,
        Command::Panic(a) => doctor::run_panic(a).await,
        Command::Check(a) => check::run(a).await,
        Command::Update(a) => update::run(a).await,
        Command::Add(a) => add::run(*a).await,
        Command::Serve(a) => serve::run(a).await,
        Command::Wait(a) => wait::run(a).await,
        Command::RunQueued(a) => serve::run_queued(a).await,
        Command::Merge(a) => merge::run(a).await,
        Command::Retry(a) => retry::run(a).await,
        Command::Continue(a) => continue_::run(a).await,
        Command::Hooks(a) => hooks::run(a),
        Command::HookRun(a) => hooks::run_hook(a).await,
        Command::Share(a) => share::run(a),
        Command::Completion(a) => completion::run(a),
        Command::Dashboard(a) => dashboard::run(a).await,
        Command::Preview(a) => preview::run(a).await,
    }
}

/// Print an error as `Error:` / `Caused by:` / `Hint:` and return its exit code.
pub fn report(err: &anyhow::Error) -> i32 {
    if is_broken_pipe(err) {
        return 0;
    }
    let mut stderr = std::io::stderr().lock();
    if crate::error::is_interrupted(err) {
        let _ = writeln!(stderr, "Error: interrupted; nothing was left half-done");
        return 130;
    }
    for line in crate::error::render(err) {
        let _ = writeln!(stderr, "{line}");
    }
    1
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The full names of this repository's tasks `names` (prefixes), each once, in the order
/// given; any unknown or ambiguous name is an error before anything is done.
pub fn resolve_all(ctx: &Ctx, names: &[String], command: &str) -> Result<Vec<String>> {
    let mut tasks: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        let name = ctx.store.resolve_local(n, command)?.record.name;
        if !tasks.contains(&name) {
            tasks.push(name);
        }
    }
    Ok(tasks)
}

/// A command run on several tasks (`stop a b c`): each task's failure is printed as it
/// happens and the others go on; [`Each::finish`] sums up and gives the exit code (1 when any
/// failed). With one task its error is the command's error, as before.
pub struct Each {
    verb: &'static str,
    total: usize,
    failed: Vec<String>,
}

impl Each {
    pub fn new(verb: &'static str, total: usize) -> Each {
        Each {
            verb,
            total,
            failed: Vec::new(),
        }
    }

    /// Record how `task` went. Ctrl-C, and the error of a single task, end the command.
    pub fn record(&mut self, task: &str, result: Result<()>) -> Result<()> {
        let Err(e) = result else { return Ok(()) };
        if self.total == 1 || crate::error::is_interrupted(&e) {
            return Err(e);
        }
        eprintln!(
            "git-agent: {} {}: failed",
            self.verb,
            crate::error::sanitize(task)
        );
        report(&e);
        self.failed.push(task.to_string());
        Ok(())
    }

    /// The summary line (on stderr) and the exit code.
    pub fn finish(self) -> Result<i32> {
        if self.failed.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = self
            .failed
            .iter()
            .map(|t| crate::error::sanitize(t))
            .collect();
        Err(crate::error::hinted(
            format!(
                "{} of {} tasks failed to {}: {}",
                self.failed.len(),
                self.total,
                self.verb,
                names.join(", ")
            ),
            format!(
                "the errors above say why; `git agent status {}` shows a task",
                names[0]
            ),
        ))
    }
}

/// Print a line to stdout, treating a closed pipe (`| head`) as the end of output.
pub fn out(line: impl AsRef<str>) -> Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{}", line.as_ref())?;
    Ok(())
}
