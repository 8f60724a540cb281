//! `git agent image`: show or build the sandbox image.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{Ctx, engine, out};
use crate::data::Search;
use crate::image::{self, ImagePlan, ImageRequest};
use crate::runtime::Runtime;

/// Show or build the sandbox image.
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
    },
}

/// Make sure the planned image exists, building it when needed; returns its id.
pub async fn ensure<R: Runtime>(rt: &R, plan: &ImagePlan) -> Result<String> {
    if let Some(id) = rt.image_id(&plan.tag).await? {
        return Ok(id);
    }
    build(rt, plan).await
}

/// Build an image. Without a project layer that is one build of its Dockerfile; with one,
/// the trusted stage is built, the project steps run sandboxed on it (see
/// [`image::project`]), and the final layer is built on the result.
async fn build<R: Runtime>(rt: &R, plan: &ImagePlan) -> Result<String> {
    eprintln!("git-agent: building image {}", plan.tag);
    let Some(split) = &plan.project else {
        return builder(rt, plan.context()?, &plan.tag, &plan.labels()).await;
    };
    // The stage is labelled with its own tag, so it stays cached whatever the project adds.
    let stage_labels = HashMap::from([(image::LABEL_IMAGE.to_string(), split.stage_tag.clone())]);
    let stage = builder(
        rt,
        plan.stage_context(split)?,
        &split.stage_tag,
        &stage_labels,
    )
    .await?;
    let gateway_plan = &split.gateway;
    let gateway = match rt.image_id(&gateway_plan.tag).await? {
        Some(id) => id,
        None => {
            eprintln!("git-agent: building image {}", gateway_plan.tag);
            builder(
                rt,
                gateway_plan.context()?,
                &gateway_plan.tag,
                &gateway_plan.labels(),
            )
            .await?
        }
    };
    let committed =
        image::project::apply(rt, &split.build, &stage, &plan.tag, &gateway, &mut progress).await?;
    builder(
        rt,
        plan.final_context(split, &committed)?,
        &plan.tag,
        &plan.labels(),
    )
    .await
}

fn progress(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(crate::error::sanitize(text).as_bytes());
}

/// One run of the engine's builder, its progress on stderr. Ctrl-C drops the request: the
/// engine cancels a build whose client went away, and tags nothing, so an interrupted
/// build leaves no half-made image under the tag (exit 130).
async fn builder<R: Runtime>(
    rt: &R,
    context: Vec<u8>,
    tag: &str,
    labels: &HashMap<String, String>,
) -> Result<String> {
    crate::interrupt::checkpoint()?;
    crate::interrupt::abandon_on_interrupt(rt.build_image(context, tag, labels, &mut progress))
        .await
}

pub async fn run(args: ImageArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let ImageCommand::Build {
        agent,
        stack,
        dry_run,
        force,
    } = args.command;
    let search = Search::new(&ctx.git.dir);
    let agent_name = agent.unwrap_or_else(|| {
        ctx.config
            .get("agent.defaultAgent")
            .unwrap_or("claude")
            .to_string()
    });
    let agent = crate::agent::load(&search, &agent_name)?;
    let plan = image::plan(&ImageRequest {
        root: &ctx.git.dir,
        config: &ctx.config,
        search: &search,
        agent: &agent,
        stack: stack.as_deref(),
    })?;
    if dry_run {
        print!("{}", plan.dockerfile);
        std::io::stdout().flush()?;
        return Ok(0);
    }
    let rt = engine().await?;
    let id = if force {
        build(&rt, &plan).await?
    } else {
        ensure(&rt, &plan).await?
    };
    out(format!("{} {id}", plan.tag))?;
    Ok(0)
}
