//! Sandbox images: choosing the image a task of an agent runs in, and making sure it exists
//! (building it when needed), with the builder's progress reported as events.
//!
//! Owns the order of a build (trusted stage, sandboxed project steps, final layer; see
//! [`crate::image`] for how an image is composed and [`crate::image::project`] for the
//! sandboxed steps). It must not print: build output goes out as [`Event::Output`] lines.

use std::collections::HashMap;

use anyhow::Result;

use super::{Ctx, Event, Events};
use crate::data::Search;
use crate::image::{self, ImagePlan, ImageRequest};
use crate::runtime::Runtime;

/// What went wrong in choosing or building an image. A refused repository file, a failed
/// project step or a build the engine refused is reported by [`crate::image`] and the
/// engine, with their own hints: those pass through as they came.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A failure below the operation (the agent's definition, the builder, the engine).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for ImageError {
    fn hint(&self) -> Option<String> {
        None
    }

    fn below(&self) -> Option<&anyhow::Error> {
        let ImageError::Other(e) = self;
        Some(e)
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            ImageError::Other(e) => Ok(e),
        }
    }
}

super::error::pass_on!(ImageError => super::spawn::SpawnError, super::restart::RestartError, super::setup::SetupError, super::gc::GcError);

/// The image tasks of `agent` (default: agent.defaultAgent, else claude) run in, with
/// `stack` (default: agent.stack, else detected from the repository).
pub fn plan(ctx: &Ctx, agent: Option<&str>, stack: Option<&str>) -> Result<ImagePlan, ImageError> {
    let search = Search::new(&ctx.git.dir);
    let agent_name = agent
        .map(str::to_string)
        .unwrap_or_else(|| default_agent(ctx));
    let agent = crate::agent::load(&search, &agent_name)?;
    Ok(image::plan(&ImageRequest {
        root: &ctx.git.dir,
        config: &ctx.config,
        search: &search,
        agent: &agent,
        stack,
    })?)
}

/// agent.defaultAgent, else claude.
pub fn default_agent(ctx: &Ctx) -> String {
    ctx.config
        .get("agent.defaultAgent")
        .unwrap_or("claude")
        .to_string()
}

/// Make sure the planned image exists, building it when needed; returns its id.
pub async fn ensure<R: Runtime>(
    rt: &R,
    plan: &ImagePlan,
    events: &dyn Events,
) -> Result<String, ImageError> {
    if let Some(id) = rt.image_id(&plan.tag).await? {
        return Ok(id);
    }
    build(rt, plan, events).await
}

/// Build an image, even when one with its tag exists. Without a project layer that is one
/// build of its Dockerfile; with one, the trusted stage is built, the project steps run
/// sandboxed on it (see [`image::project`]), and the final layer is built on the result.
pub async fn build<R: Runtime>(
    rt: &R,
    plan: &ImagePlan,
    events: &dyn Events,
) -> Result<String, ImageError> {
    events.emit(Event::step(None, format!("building image {}", plan.tag)));
    let Some(split) = &plan.project else {
        return Ok(builder(rt, plan.context()?, &plan.tag, &plan.labels(), events).await?);
    };
    // The stage is labelled with its own tag, so it stays cached whatever the project adds.
    let stage_labels = HashMap::from([(image::LABEL_IMAGE.to_string(), split.stage_tag.clone())]);
    let stage = builder(
        rt,
        plan.stage_context(split)?,
        &split.stage_tag,
        &stage_labels,
        events,
    )
    .await?;
    let gateway_plan = &split.gateway;
    let gateway = match rt.image_id(&gateway_plan.tag).await? {
        Some(id) => id,
        None => {
            events.emit(Event::step(
                None,
                format!("building image {}", gateway_plan.tag),
            ));
            builder(
                rt,
                gateway_plan.context()?,
                &gateway_plan.tag,
                &gateway_plan.labels(),
                events,
            )
            .await?
        }
    };
    let mut lines = Lines::new(events);
    let committed =
        image::project::apply(rt, &split.build, &stage, &plan.tag, &gateway, &mut |t| {
            lines.push(t)
        })
        .await;
    lines.finish();
    Ok(builder(
        rt,
        plan.final_context(split, &committed?)?,
        &plan.tag,
        &plan.labels(),
        events,
    )
    .await?)
}

/// One run of the engine's builder, its progress as output events. Ctrl-C drops the
/// request: the engine cancels a build whose client went away, and tags nothing, so an
/// interrupted build leaves no half-made image under the tag (exit 130).
async fn builder<R: Runtime>(
    rt: &R,
    context: Vec<u8>,
    tag: &str,
    labels: &HashMap<String, String>,
    events: &dyn Events,
) -> Result<String> {
    crate::interrupt::checkpoint()?;
    let mut lines = Lines::new(events);
    let built =
        crate::interrupt::abandon_on_interrupt(
            rt.build_image(context, tag, labels, &mut |t| lines.push(t)),
        )
        .await;
    lines.finish();
    built
}

/// Cuts a builder's progress (chunks of text, not always whole lines) into lines, each
/// made safe for a terminal, and emits them as [`Event::Output`].
pub struct Lines<'a> {
    events: &'a dyn Events,
    partial: String,
}

impl<'a> Lines<'a> {
    pub fn new(events: &'a dyn Events) -> Lines<'a> {
        Lines {
            events,
            partial: String::new(),
        }
    }

    /// Take a chunk; every line it completes goes out.
    pub fn push(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.emit(&line[..end]);
        }
    }

    /// The last, unfinished line goes out too.
    pub fn finish(mut self) {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.emit(&rest);
        }
    }

    fn emit(&self, line: &str) {
        self.events.emit(Event::Output {
            line: crate::error::sanitize(line),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::events::Collected;

    fn out(lines: &[&str]) -> Vec<Event> {
        lines
            .iter()
            .map(|l| Event::Output {
                line: l.to_string(),
            })
            .collect()
    }

    #[test]
    fn progress_chunks_become_whole_safe_lines() {
        let c = Collected::default();
        let mut lines = Lines::new(&c);
        lines.push("Step 1/2 : FROM base\n ---> ab");
        assert_eq!(c.take(), out(&["Step 1/2 : FROM base"]));
        lines.push("c\n\nStep 2/2 : RUN \x1b[2Jx\nhalf");
        assert_eq!(
            c.take(),
            out(&[" ---> abc", "", "Step 2/2 : RUN \\x1b[2Jx"])
        );
        lines.finish();
        assert_eq!(c.take(), out(&["half"]));
    }

    #[test]
    fn nothing_left_means_nothing_emitted_at_the_end() {
        let c = Collected::default();
        let mut lines = Lines::new(&c);
        lines.push("done\n");
        lines.finish();
        assert_eq!(c.take(), out(&["done"]));
    }
}
