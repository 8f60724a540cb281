//! `git agent image`: build the sandbox image (the building is [`crate::ops::image`]), list
//! or prune git-agent's images (see [`super::images`]).

use std::io::Write;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{Ctx, Stderr, out};
use crate::ops;

/// Build the sandbox image, list or prune git-agent's images.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the image tasks of this repository run in (a no-op when it is up to date).
    ///
    /// The image is composed from layers: the built-in base (FROM agent.baseImage), the
    /// language stack (yours in ~/.config/git-agent/dockerfiles/stacks/ or built in), the
    /// agent's install snippet, the repository's .git-agent/dockerfiles/project.dockerfile
    /// when present, and a built-in final layer (sandbox helper, guards, task user). The
    /// engine's builder gets only the trusted layers and a context holding git-agent's own
    /// files, never the repository.
    ///
    /// The project file is untrusted: it may use only RUN, ENV and WORKDIR (anything else is
    /// refused, naming file:line), and its steps run as root in a sandboxed container with
    /// only the capabilities package installs need, on a network whose only way out is a
    /// gateway with the `build` profile (package registries; add domains with
    /// agent.buildAllow), within agent.buildTimeout (30m). The final layer is applied after
    /// it, and tasks always start the helper as uid 1000.
    ///
    /// Progress shows one line per build step (on a terminal a spinner with the step's
    /// elapsed time; elsewhere a plain line as each step begins); --verbose shows all the
    /// output as it comes. Every line of output is kept, as it came, in
    /// $XDG_CACHE_HOME/git-agent/builds/<tag>.log (else ~/.cache/git-agent/builds/), one
    /// file per image tag, replaced by its next build. When a step fails, its last 20 lines
    /// (control characters escaped) and the log's path are shown.
    ///
    /// Ctrl-C cancels the build (the engine stops it; nothing is tagged) and exits 130.
    Build {
        /// The agent whose image to build (default: agent.defaultAgent, else claude).
        #[arg(long)]
        agent: Option<String>,
        /// Language stack (default: agent.stack, else detected from the repository).
        #[arg(long)]
        stack: Option<String>,
        /// Print every layer (with its origin) instead of building.
        #[arg(long)]
        dry_run: bool,
        /// Build even if an image with the same content tag exists.
        #[arg(long)]
        force: bool,
        /// Show everything the build prints, as it comes, instead of one line per step.
        #[arg(long)]
        verbose: bool,
    },
    List(super::images::ListArgs),
    Prune(super::images::PruneArgs),
}

pub async fn run(args: ImageArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let (agent, stack, dry_run, force, verbose) = match args.command {
        ImageCommand::Build {
            agent,
            stack,
            dry_run,
            force,
            verbose,
        } => (agent, stack, dry_run, force, verbose),
        ImageCommand::List(a) => return super::images::list(&ctx, a).await,
        ImageCommand::Prune(a) => return super::images::prune(&ctx, a).await,
    };
    super::progress::set_verbose(verbose);
    let plan = ops::image::plan(&ctx, agent.as_deref(), stack.as_deref())
        .map_err(ops::OpError::into_report)?;
    if dry_run {
        print!("{}", plan.dockerfile);
        std::io::stdout().flush()?;
        return Ok(0);
    }
    let rt = crate::ops::engine_default(&ctx).await?;
    let id = if force {
        ops::image::build(&rt, &plan, &Stderr)
            .await
            .map_err(ops::OpError::into_report)?
    } else {
        ops::image::ensure(&rt, &plan, &Stderr)
            .await
            .map_err(ops::OpError::into_report)?
    };
    out(format!("{} {id}", plan.tag))?;
    Ok(0)
}
