//! `git agent agents`, `git agent template` and `git agent auth`: the data users customise.

use std::io::Read;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{Ctx, out, term};
use crate::agent::{self, credentials};
use crate::data::{PROMPTS, Search};
use crate::error::hinted;
use crate::template;

/// List every agent with where its definition comes from.
///
/// A repository's own agent definitions (.git-agent/agents/) are listed as untrusted until
/// you trust their exact content with `git agent trust <file>`; spawn refuses them until then.
#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// Print one JSON object (see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// One agent definition as `agents --json` shows it.
#[derive(serde::Serialize)]
struct AgentRow {
    name: String,
    origin: String,
    description: Option<String>,
    loads: bool,
    error: Option<String>,
}

fn json_rows(search: &Search) -> Vec<AgentRow> {
    agent::list(search)
        .into_iter()
        .map(|(name, parsed)| match parsed {
            Ok((found, a)) => AgentRow {
                name: a.name,
                origin: found.origin.to_string(),
                description: Some(a.def.description),
                loads: true,
                error: None,
            },
            Err(e) => {
                let file = search.repo_file(crate::data::AGENTS, &name).ok().flatten();
                let untrusted = file.as_ref().is_some_and(|f| !f.usable());
                let origin = match &file {
                    Some(f) => format!("repository ({})", f.path.display()),
                    None => search
                        .find(crate::data::AGENTS, &name)
                        .ok()
                        .flatten()
                        .map(|f| f.origin.to_string())
                        .unwrap_or_else(|| "unknown".to_string()),
                };
                AgentRow {
                    name,
                    origin,
                    description: None,
                    loads: false,
                    error: Some(if untrusted {
                        "untrusted: spawn refuses it until `git agent trust`".to_string()
                    } else {
                        crate::error::sanitize(&format!("{e:#}"))
                    }),
                }
            }
        })
        .collect()
}

/// List or show prompt templates.
#[derive(Debug, Args)]
pub struct TemplateArgs {
    #[command(subcommand)]
    pub command: TemplateCommand,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Every template with its description and origin (repository, user or built-in).
    List,
    /// Print a template as written.
    Show {
        /// The template's name.
        name: String,
    },
}

/// Store a credential for an agent on the host (read from standard input), show which of
/// its credentials are set, or delete the stored ones. The store is
/// ~/.config/git-agent/credentials.toml, readable only by you; a variable set in the
/// environment takes precedence.
///
/// Ctrl-C while it waits for the value stores nothing and exits 130.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// The agent.
    pub agent: String,
    /// Which of the agent's credential variables to set (default: its first).
    #[arg(long, value_name = "NAME")]
    pub var: Option<String>,
    /// Show which credentials are set and where, without changing anything.
    #[arg(long, conflicts_with = "delete")]
    pub status: bool,
    /// Delete the agent's stored credentials (only --var's when given). A variable set in
    /// the environment is not touched.
    #[arg(long)]
    pub delete: bool,
}

fn search() -> Result<Search> {
    Ok(match Ctx::open() {
        Ok(ctx) => Search::new(&ctx.git.dir),
        Err(_) => Search {
            repo: None,
            ..Search::new(std::path::Path::new("/"))
        },
    })
}

pub fn run_agents(args: AgentsArgs) -> Result<i32> {
    let search = search()?;
    if args.json {
        super::json::print(&serde_json::json!({ "agents": json_rows(&search) }))?;
        return Ok(0);
    }
    for (name, parsed) in agent::list(&search) {
        match parsed {
            Ok((found, a)) => {
                let trusted = match found.origin {
                    crate::data::Origin::Repository(_) => ", trusted",
                    _ => "",
                };
                out(format!(
                    "{:<10} {:<60} {}{trusted}",
                    a.name, a.def.description, found.origin
                ))?
            }
            Err(e) => {
                let untrusted = search
                    .repo_file(crate::data::AGENTS, &name)
                    .ok()
                    .flatten()
                    .filter(|f| !f.usable());
                match untrusted {
                    Some(f) => out(format!(
                        "{name:<10} (untrusted: spawn refuses it until `git agent trust {}`) repository ({})",
                        crate::trust::shell_word(&crate::trust::shown_path(&f.path, &f.rel)),
                        f.path.display()
                    ))?,
                    None => out(format!("{name:<10} (invalid: {e})"))?,
                }
            }
        }
    }
    Ok(0)
}

pub fn run_template(args: TemplateArgs) -> Result<i32> {
    let search = search()?;
    match args.command {
        TemplateCommand::List => {
            for (name, f) in search.list(PROMPTS) {
                match f {
                    Ok(f) => {
                        let desc = template::parse(&f)
                            .map(|t| t.description().to_string())
                            .unwrap_or_else(|e| format!("(invalid: {e})"));
                        out(format!("{:<12} {:<50} {}", f.name, desc, f.origin))?;
                    }
                    Err(e) => out(format!("{name:<12} (refused: {e})"))?,
                }
            }
        }
        TemplateCommand::Show { name } => {
            let f = search.find(PROMPTS, &name)?.ok_or_else(|| {
                hinted(
                    format!("unknown template '{name}'"),
                    "see the templates with `git agent template list`",
                )
            })?;
            print!("{}", f.text);
        }
    }
    Ok(0)
}

pub fn run_auth(args: AuthArgs) -> Result<i32> {
    if args.delete {
        return delete_auth(&args);
    }
    let search = search()?;
    let agent = agent::load(&search, &args.agent)?;
    if agent.def.credentials.is_empty() {
        return Err(hinted(
            format!(
                "agent '{}' uses no credentials; there is nothing to store",
                agent.name
            ),
            "`git agent agents` lists every agent; those that call a model API take a key",
        ));
    }
    if args.status {
        for (var, src) in credentials::sources(&agent)? {
            out(format!("{var:<28} {}", src.unwrap_or("not set")))?;
        }
        return Ok(0);
    }
    let var = args.var.unwrap_or_else(|| agent.def.credentials[0].clone());
    if !agent.def.credentials.contains(&var) {
        return Err(hinted(
            format!("agent '{}' does not use {var}", agent.name),
            format!(
                "it uses {}: git agent auth --var {} {}",
                agent.def.credentials.join(", "),
                agent.def.credentials[0],
                agent.name
            ),
        ));
    }
    if term::stdin_is_tty() {
        eprint!("{var} for {} (input is not echoed): ", agent.name);
    }
    let _echo = term::NoEcho::enable();
    let value = read_secret(term::stdin_is_tty());
    drop(_echo);
    let value = value?;
    if term::stdin_is_tty() {
        eprintln!();
    }
    let value = value.trim();
    if value.is_empty() {
        return Err(hinted(
            "no value given; nothing stored",
            format!(
                "type or pipe the value: printenv {var} | git agent auth --var {var} {}",
                agent.name
            ),
        ));
    }
    let path = credentials::save(&agent.name, &var, value)?;
    eprintln!(
        "git-agent: stored {var} for {} in {}",
        agent.name,
        path.display()
    );
    Ok(0)
}

/// `auth --delete`: works for an agent whose definition is gone too, so a stale key can go.
fn delete_auth(args: &AuthArgs) -> Result<i32> {
    let agent = crate::error::sanitize(&args.agent);
    let deleted = credentials::delete(&args.agent, args.var.as_deref())?;
    if deleted.is_empty() {
        return Err(hinted(
            match &args.var {
                Some(v) => format!(
                    "no {} is stored for agent '{agent}'; nothing deleted",
                    crate::error::sanitize(v)
                ),
                None => format!("no credential is stored for agent '{agent}'; nothing deleted"),
            },
            format!("`git agent auth --status {agent}` shows where its credentials come from"),
        ));
    }
    for var in &deleted {
        let var = crate::error::sanitize(var);
        eprintln!("git-agent: deleted {var} of {agent} from the store");
        if std::env::var_os(&var).is_some_and(|v| !v.is_empty()) {
            eprintln!(
                "git-agent: warning: {var} is still set in the environment, and tasks use it"
            );
        }
    }
    Ok(0)
}

/// Read the value to store: one line from a terminal, everything from a pipe. Ctrl-C stops
/// the wait (exit 130, nothing stored, the terminal's echo restored by the caller's guard):
/// the read runs on its own thread, as a blocked read cannot be cancelled.
fn read_secret(line: bool) -> Result<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut value = String::new();
        let read = if line {
            std::io::stdin().read_line(&mut value).map(|_| value)
        } else {
            std::io::stdin().read_to_string(&mut value).map(|_| value)
        };
        tx.send(read).ok();
    });
    loop {
        crate::interrupt::checkpoint()?;
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(read) => {
                let value = read?;
                // A Ctrl-C while the value was being typed still means: do not store it.
                crate::interrupt::checkpoint()?;
                return Ok(value);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("could not read the value from standard input")
            }
        }
    }
}
