//! `git agent image`: show or build the sandbox image.

use std::io::Write;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{Ctx, engine, out};
use crate::image::{self, ImagePlan};
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
    /// The Dockerfile is composed from layers: the built-in base (FROM agent.baseImage), the
    /// repository's .git-agent/dockerfiles/project.dockerfile when present, and a final
    /// layer that switches to the unprivileged task user. The build context holds only the
    /// Dockerfile and git-agent's sandbox helper, never the repository.
    Build {
        /// Print the composed Dockerfile (with each layer's origin) instead of building.
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

async fn build<R: Runtime>(rt: &R, plan: &ImagePlan) -> Result<String> {
    eprintln!("git-agent: building image {}", plan.tag);
    let mut progress = |text: &str| {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(crate::error::sanitize(text).as_bytes());
    };
    rt.build_image(plan.context()?, &plan.tag, &plan.labels(), &mut progress)
        .await
}

pub async fn run(args: ImageArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let plan = image::plan(&ctx.git.dir, &ctx.config)?;
    match args.command {
        ImageCommand::Build { dry_run: true, .. } => {
            print!("{}", plan.dockerfile);
            std::io::stdout().flush()?;
        }
        ImageCommand::Build { force, .. } => {
            let rt = engine().await?;
            let id = if force {
                build(&rt, &plan).await?
            } else {
                ensure(&rt, &plan).await?
            };
            out(format!("{} {id}", plan.tag))?;
        }
    }
    Ok(0)
}
