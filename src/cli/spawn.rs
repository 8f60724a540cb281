//! `git agent spawn`: start one task per agent in new sandboxes.
//!
//! Parses the arguments, reads the prompt (argument, file, standard input) and lets the user
//! edit it; the spawn itself is [`crate::ops::spawn`]. Attaching an interactive task's
//! terminal and following `--wait` are asked of the operations layer, rendered here.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{Ctx, Stderr, out, term};
use crate::error::hinted;
use crate::git::Git;
use crate::ops::{self, OpError, setup::NetworkChoice};

/// Start a task: an agent in a sandboxed container, working on a private copy of the
/// repository.
///
/// The task starts from HEAD (or --base) and works on branch agent/<name> inside the sandbox.
/// The prompt comes from -m, -F, or standard input when that is piped; with --type it fills
/// in a prompt template (see `git agent template list`). The agent runs headless without
/// permission prompts (the sandbox protects you), or attached to your terminal with -i.
/// The `exec` agent runs the command given after `--` instead of an AI agent, with the
/// prompt on its standard input. Prints each task's name on stdout.
///
/// A shallow clone is refused before anything is created: the task's work comes back as a
/// bundle built on the full history of its base (`git fetch --unshallow` first).
#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// Name of the task (lowercase letters, digits, '-', '_', '.'); generated when omitted.
    /// With several agents, the name of the group: tasks are named <name>-<agent>.
    #[arg(long)]
    pub name: Option<String>,
    /// The agent(s) that do the work, comma-separated (`claude,codex` or `claude,claude`
    /// starts one task per entry). Default: `exec` when a command follows `--`, else
    /// agent.defaultAgent, else claude.
    #[arg(long, value_delimiter = ',')]
    pub agent: Vec<String>,
    /// The prompt: what the agent should do.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Read the prompt from a file ('-' for standard input).
    #[arg(
        short = 'F',
        long = "file",
        value_name = "FILE",
        conflicts_with = "message"
    )]
    pub file: Option<PathBuf>,
    /// Fill in this prompt template with the prompt as its description (feat, fix, refactor,
    /// test, doc, review, or your own).
    #[arg(short = 't', long = "type", value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Open the rendered prompt in your editor before the task starts.
    #[arg(long)]
    pub edit: bool,
    /// Start from this revision instead of HEAD.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Carry uncommitted changes (tracked and untracked, not ignored) in as one commit.
    #[arg(long)]
    pub dirty: bool,
    /// Language stack of the image (default: agent.stack, else detected from the repository).
    #[arg(long)]
    pub stack: Option<String>,
    /// Stop the run after this long (e.g. 90, 30s, 5m, 1h30m) and record why.
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_secs)]
    pub timeout: Option<u64>,
    /// Attach your terminal to the agent's session (detach with Ctrl-P Ctrl-Q).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Network profile: none, api (the default: only the agent's model API), dev (plus the
    /// common package registries), open (every host), or your own (default: agent.network).
    #[arg(long, value_name = "PROFILE")]
    pub network: Option<String>,
    /// Also let the task reach this domain and its subdomains (repeatable; *.example.com
    /// for subdomains only).
    #[arg(long, value_name = "DOMAIN")]
    pub allow: Vec<String>,
    /// Also let the task reach this non-public address or network (e.g. a service on your
    /// LAN: 10.1.2.3 or 10.1.0.0/16; repeatable; default: agent.allowAddress). Every other
    /// loopback, private, link-local or metadata address stays refused, whatever the profile.
    #[arg(long, value_name = "IP[/LEN]")]
    pub allow_address: Vec<String>,
    /// Make the container's root file system read-only (the workspace, home and /tmp stay
    /// writable; default: agent.readOnlyRoot).
    #[arg(long)]
    pub read_only: bool,
    /// The engine to run on, by its name in `agent.engine.<name>.url` (default:
    /// `agent.engine`, else the configured engine with the most room).
    #[arg(long, value_name = "NAME")]
    pub engine: Option<String>,
    /// Run the task's code under this OCI runtime of the engine, by name (e.g. `runsc`,
    /// gVisor's: a kernel of its own between the agent and the host; default:
    /// agent.ociRuntime, else the engine's default). Recorded with the task: restart, continue
    /// and update --agent keep it. The gateway and other helpers stay on the default.
    #[arg(long, value_name = "NAME")]
    pub oci_runtime: Option<String>,
    /// Stream the task's output and exit with its exit status. The output is shown as
    /// `git agent logs` shows it: an agent's structured transcript (Claude Code's
    /// stream-json) as readable messages and tool calls, control characters escaped on a
    /// terminal.
    #[arg(long, conflicts_with = "interactive")]
    pub wait: bool,
    /// With --wait: the output exactly as the agent emits it (stream-json stays JSON).
    #[arg(long, requires = "wait")]
    pub raw: bool,
    /// Show everything an image build prints, as it comes, instead of one line per build
    /// step (the full build log is kept either way; see `git agent image build`).
    #[arg(long)]
    pub verbose: bool,
    /// Allow the agent only read-only git (status, log, diff, ...): a git wrapper first on
    /// its PATH, a Claude Code hook and Codex rules refuse commit, checkout, reset, push and
    /// the like (default: agent.gitReadOnly). A seatbelt for the agent, not a boundary.
    #[arg(long, overrides_with = "no_git_readonly")]
    pub git_readonly: bool,
    /// Let the agent run any git command, even when agent.gitReadOnly is set.
    #[arg(long, overrides_with = "git_readonly")]
    pub no_git_readonly: bool,
    /// Start once this task has exited 0, on its work (its head). `spawn --after` of a task
    /// that has not ended yet queues the new task, which `git agent serve` starts; a task
    /// that failed, stopped or is gone refuses it.
    #[arg(long, value_name = "TASK", conflicts_with_all = ["base", "dirty"])]
    pub after: Option<String>,
    /// The command the `exec` agent runs.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

fn read_prompt(args: &SpawnArgs) -> Result<String> {
    read_text(
        args.message.as_deref(),
        args.file.as_deref(),
        !args.interactive,
        "prompt",
    )
}

/// The text of `-m TEXT`, else of `-F FILE` (`-` is standard input), else standard input when
/// it is not a terminal and `stdin_ok`, else nothing. `what` names it in errors ("prompt").
pub fn read_text(
    message: Option<&str>,
    file: Option<&std::path::Path>,
    stdin_ok: bool,
    what: &str,
) -> Result<String> {
    if let Some(m) = message {
        return Ok(m.to_string());
    }
    if let Some(f) = file
        && f.as_os_str() != "-"
    {
        return std::fs::read_to_string(f).map_err(|e| {
            hinted(
                format!("cannot read the {what} file {}: {e}", f.display()),
                "check the path given to -F",
            )
        });
    }
    if file.is_some() || (stdin_ok && !term::stdin_is_tty()) {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .with_context(|| format!("cannot read the {what} from standard input"))?;
        return Ok(s);
    }
    Ok(String::new())
}

/// Let the user edit `text` in their editor; returns the edited text.
pub fn edit_text(git: &Git, text: &str, file_prefix: &str) -> Result<String> {
    if !term::stdin_is_tty() {
        return Err(hinted(
            "--edit needs a terminal for the editor",
            "drop --edit, or run the command in a terminal",
        ));
    }
    term::edit_in_editor(git, text, file_prefix, ".md", || {
        hinted(
            "the editor failed; nothing was started",
            "check core.editor / GIT_EDITOR",
        )
    })
}

/// Check the arguments, read (and edit) the prompt and prepare the spawn: what `spawn` and
/// `add` share. Takes the command and the prompt out of `args`.
pub fn prepare(ctx: &Ctx, args: &mut SpawnArgs) -> Result<ops::spawn::Prepared> {
    let agents = ops::spawn::agents(ctx, &args.agent, &args.command, args.interactive)
        .map_err(OpError::into_report)?;
    if args.edit && agents.len() > 1 {
        return Err(hinted(
            "--edit works on one task's prompt",
            "spawn the agents one at a time to edit each prompt",
        ));
    }
    let description = read_prompt(args)?;
    let request = ops::spawn::SpawnRequest {
        agents,
        command: args.command.clone(),
        description,
        template: args.template.clone(),
        name: args.name.clone(),
        base: args.base.clone(),
        dirty: args.dirty,
        stack: args.stack.clone(),
        timeout: args.timeout,
        interactive: args.interactive,
        network: NetworkChoice {
            profile: args.network.clone(),
            allow: args.allow.clone(),
            allow_address: args.allow_address.clone(),
        },
        read_only: args.read_only,
        git_readonly: git_readonly(args),
        oci_runtime: args.oci_runtime.clone(),
    };
    let mut prepared = ops::spawn::prepare(ctx, request, &Stderr).map_err(OpError::into_report)?;
    if args.edit {
        for prompt in prepared.prompts_mut() {
            *prompt = edit_text(&ctx.git, prompt, "AGENT_PROMPT")?;
        }
    }
    Ok(prepared)
}

/// `--git-readonly` / `--no-git-readonly`, if either was given.
pub fn git_readonly(args: &SpawnArgs) -> Option<bool> {
    (args.git_readonly || args.no_git_readonly).then_some(args.git_readonly)
}

pub async fn run(mut args: SpawnArgs) -> Result<i32> {
    super::progress::set_verbose(args.verbose);
    let ctx = Ctx::open()?;
    if let Some(parent) = args.after.clone() {
        // A parent that ended well: spawn on its work now. One still going: queue the task
        // for `git agent serve`. One that failed: refuse.
        let parent = ctx.store.resolve_local(&parent, "spawn --after")?.record;
        let rt = ops::engine_of(&ctx, &parent).await?;
        let parent = parent.name;
        match ops::queue::parent_now(&rt, &ctx, &parent).await? {
            ops::queue::AfterState::Ready => {
                ops::sync::run(&rt, &ctx, &parent, &Stderr)
                    .await
                    .map_err(OpError::into_report)?;
                let p = ops::reload(&ctx, &parent)?;
                args.base = Some(p.ref_value("head").unwrap_or(&p.record.base).to_string());
            }
            ops::queue::AfterState::Waiting => {
                eprintln!(
                    "git-agent: {parent} has not ended yet; queueing the task: `git agent serve` starts it once {parent} exits 0"
                );
                return super::add::run(args).await;
            }
            ops::queue::AfterState::Failed(reason) => {
                return Err(OpError::into_report(ops::queue::QueueError::ParentFailed {
                    task: args.name.clone().unwrap_or_else(|| "the new task".into()),
                    reason,
                }));
            }
        }
    }
    let mut prepared = prepare(&ctx, &mut args)?;
    let placed =
        ops::placement::place(&ctx, args.engine.as_deref(), prepared.names().len()).await?;
    prepared.engine = placed.name;
    let rt = placed.engine;
    let spawned = ops::spawn::start(&rt, &ctx, prepared, &Stderr)
        .await
        .map_err(OpError::into_report)?;
    for l in &spawned.tasks {
        out(&l.record.name)?;
    }
    if spawned.waits_for_attach {
        let loaded = &spawned.tasks[0];
        let start = ops::attach::start_command(&rt, &ctx, loaded);
        return super::attach::attach(&rt, &ctx, loaded, start).await;
    }
    if !args.wait {
        for l in &spawned.tasks {
            eprintln!(
                "git-agent: task {0} is running; follow it with `git agent logs -f {0}`",
                l.record.name
            );
        }
        return Ok(0);
    }
    // Rendered as `logs` renders it; on stderr, as it always was (stdout holds the names).
    let structured = match &spawned.tasks[..] {
        [one] => ops::logs::structured(&crate::data::Search::new(&ctx.git.dir), &one.record.agent),
        _ => None,
    };
    let mode = super::logs::Mode::choose(args.raw, structured, std::io::stderr().is_terminal());
    let mut shown = super::logs::Rendered::new(tokio::io::stderr(), mode);
    let waited = ops::spawn::wait(&rt, &ctx, spawned.tasks, &mut shown, &Stderr).await;
    shown.finish().await?;
    let waited = waited.map_err(OpError::into_report)?;
    Ok(waited.exit_code())
}
