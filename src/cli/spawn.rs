//! `git agent spawn`: start a task in a new sandbox.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{Ctx, engine, out, term};
use crate::error::{Interrupted, hinted};
use crate::git::Git;
use crate::image;
use crate::runtime::Runtime;
use crate::sandbox::spawn::{Limits, SpawnRequest, abandon, create_record, start};
use crate::task::{Status, TaskName};

/// Start a task: a sandboxed container working on a private copy of the repository.
///
/// The task starts from HEAD (or --base) and works on branch agent/<name> inside the sandbox.
/// Its prompt comes from -m, -F, or standard input when that is piped. The built-in `exec`
/// agent runs the command given after `--` in place of an AI agent, with the prompt on its
/// standard input. Prints the task's name on stdout.
#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// Name of the task (lowercase letters, digits, '-', '_', '.'); generated when omitted.
    #[arg(long)]
    pub name: Option<String>,
    /// The agent that does the work.
    #[arg(long, default_value = "exec")]
    pub agent: String,
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
    /// Start from this revision instead of HEAD.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Carry uncommitted changes (tracked and untracked, not ignored) in as one commit.
    #[arg(long)]
    pub dirty: bool,
    /// Stream the task's output and exit with its exit status.
    #[arg(long)]
    pub wait: bool,
    /// The command the `exec` agent runs.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

fn read_prompt(args: &SpawnArgs) -> Result<String> {
    if let Some(m) = &args.message {
        return Ok(m.clone());
    }
    if let Some(f) = &args.file {
        if f.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            return Ok(s);
        }
        return std::fs::read_to_string(f).map_err(|e| {
            hinted(
                format!("cannot read the prompt file {}: {e}", f.display()),
                "check the path given to -F",
            )
        });
    }
    if !term::stdin_is_tty() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the prompt from standard input")?;
        return Ok(s);
    }
    Ok(String::new())
}

/// Commit the work tree's uncommitted changes (tracked and untracked, not ignored) on top of
/// `base` through a temporary index; the user's index and work tree are left as they are.
fn dirty_commit(git: &Git, base: &str) -> Result<Option<String>> {
    let tmp = tempfile::NamedTempFile::new()?;
    let index = git.run(["rev-parse", "--git-path", "index"])?;
    let index = git.dir.join(index);
    if index.exists() {
        std::fs::copy(&index, tmp.path())?;
        // Keep the index's mtime: git relies on it to spot files changed in the same second
        // the index was written ("racily clean" entries).
        let modified = std::fs::metadata(&index)?.modified()?;
        std::fs::File::options()
            .write(true)
            .open(tmp.path())?
            .set_modified(modified)?;
    } else {
        std::fs::remove_file(tmp.path()).ok();
    }
    let mut add = git.command();
    add.env("GIT_INDEX_FILE", tmp.path())
        .args(["add", "-A", "--", "."]);
    crate::git::output_of(&mut add, None).context("cannot snapshot uncommitted changes")?;
    let mut write = git.command();
    write.env("GIT_INDEX_FILE", tmp.path()).args(["write-tree"]);
    let tree = String::from_utf8_lossy(&crate::git::output_of(&mut write, None)?.stdout)
        .trim()
        .to_string();
    if tree == git.run(["rev-parse", &format!("{base}^{{tree}}")])? {
        return Ok(None);
    }
    let commit = git.run_with_input(
        ["commit-tree", &tree, "-p", base, "-F", "-"],
        b"git-agent: uncommitted changes carried into the task (spawn --dirty)\n\nThis commit holds the work tree's changes that were not committed when\nthe task started. It is part of the task's base.\n",
    )?;
    Ok(Some(commit))
}

pub async fn run(args: SpawnArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    if args.agent != "exec" {
        return Err(hinted(
            format!("unknown agent '{}'", args.agent),
            "the built-in agent is `exec`: git agent spawn --agent exec -m <prompt> -- <command...>",
        ));
    }
    if args.command.is_empty() {
        return Err(hinted(
            "the exec agent needs a command to run",
            "put it after `--`: git agent spawn -m \"what to do\" -- sh -c 'make test'",
        ));
    }
    let prompt = read_prompt(&args)?;
    let base_rev = args.base.clone().unwrap_or_else(|| "HEAD".into());
    let mut base = ctx.git.resolve_commit(&base_rev).map_err(|e| {
        if args.base.is_none() {
            hinted(
                "the repository has no commits yet",
                "commit something first; the task starts from a commit",
            )
        } else {
            e
        }
    })?;
    let base_branch = match &args.base {
        None => ctx.git.current_branch(),
        Some(b) => ctx
            .git
            .ref_value(&format!("refs/heads/{b}"))?
            .map(|_| b.clone()),
    };
    let name = match &args.name {
        Some(n) => TaskName::parse(n)?,
        None => TaskName::generate(&prompt, random_u16()),
    };
    if ctx.store.load(name.as_str())?.is_some() {
        return Err(hinted(
            format!("a task named '{name}' already exists"),
            "choose another --name, or remove the old task with `git agent purge --refs`",
        ));
    }
    let mut dirty = false;
    if args.dirty {
        if let Some(c) = dirty_commit(&ctx.git, &base)? {
            base = c;
            dirty = true;
        } else {
            eprintln!("git-agent: --dirty: no uncommitted changes; starting from {base_rev}");
        }
    }

    let rt = engine().await?;
    let plan = image::plan(&ctx.git.dir, &ctx.config)?;
    let image_id = super::image::ensure(&rt, &plan).await?;
    let limits = Limits {
        pids: ctx
            .config
            .get("agent.pidsLimit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        memory: ctx.config.size("agent.memory", 4 << 30)? as i64,
        nano_cpus: ctx
            .config
            .get("agent.cpus")
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(2_000_000_000, |c| (c * 1e9) as i64),
    };
    let req = SpawnRequest {
        name: name.clone(),
        agent: args.agent.clone(),
        command: args.command.clone(),
        prompt,
        base,
        base_branch,
        dirty,
        image: plan.tag.clone(),
        image_id,
        limits,
    };
    create_record(&ctx.store, &req, &ctx.repo)?;
    let started = start(&rt, &ctx.store, &req, &ctx.repo).await;
    let loaded = match started {
        Ok(l) => l,
        Err(e) => {
            if e.downcast_ref::<Interrupted>().is_none() {
                eprintln!("git-agent: spawn failed; removing task {name}");
            }
            if let Err(c) = abandon(&rt, &ctx.store, &ctx.repo, name.as_str()).await {
                eprintln!(
                    "git-agent: cleanup failed too: {c:#}; run `git agent purge --refs {name}`"
                );
            }
            return Err(e);
        }
    };
    out(name.as_str())?;
    if !args.wait {
        eprintln!("git-agent: task {name} is running; follow it with `git agent logs -f {name}`");
        return Ok(0);
    }
    let container = loaded
        .record
        .sandbox
        .container
        .clone()
        .expect("a started task has a container");
    let follow = async {
        let mut stderr = tokio::io::stderr();
        rt.logs(&container, true, None, &mut stderr).await?;
        rt.wait(&container).await
    };
    let code = match crate::interrupt::abandon_on_interrupt(follow).await {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            eprintln!("git-agent: stopped waiting; task {name} keeps running");
            return Ok(130);
        }
        Err(e) => return Err(e),
    };
    let loaded = crate::sandbox::refresh(&rt, &ctx.store, loaded).await?;
    if loaded.record.status == Status::Exited {
        eprintln!("git-agent: task {name} exited with status {code}");
    }
    Ok(code.clamp(0, 255) as i32)
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return (t ^ std::process::id()) as u16;
    }
    u16::from_le_bytes(b)
}
