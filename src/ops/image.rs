//! Sandbox images: choosing the image a task of an agent runs in, and making sure it exists
//! (building it when needed), with the builder's progress reported as events.
//!
//! Owns the order of a build (trusted stage, sandboxed project steps, final layer; see
//! [`crate::image`] for how an image is composed and [`crate::image::project`] for the
//! sandboxed steps). It must not print: build output goes to a log file and out as events (steps, lines, the end).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use anyhow::Result;

use super::{Ctx, Event, Events};
use crate::data::Search;
use crate::image::project::Report;
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
/// Every line of output goes to the build's log file ([`log_path`]); steps go out as
/// [`Event::BuildStep`], lines as [`Event::BuildOutput`], and the end (with the last lines
/// when it failed) as [`Event::BuildEnd`].
pub async fn build<R: Runtime>(
    rt: &R,
    plan: &ImagePlan,
    events: &dyn Events,
) -> Result<String, ImageError> {
    events.emit(Event::step(None, format!("building image {}", plan.tag)));
    let mut log = BuildLog::open(events, log_path(&plan.tag));
    let built = build_logged(rt, plan, events, &mut log).await;
    match &built {
        Ok(_) => log.end(true),
        // Ctrl-C is not a failure of the build: nothing to show of it.
        Err(e) if crate::error::is_interrupted(e) => log.end(true),
        Err(_) => log.end(false),
    }
    Ok(built?)
}

async fn build_logged<R: Runtime>(
    rt: &R,
    plan: &ImagePlan,
    events: &dyn Events,
    log: &mut BuildLog<'_>,
) -> Result<String> {
    let Some(split) = &plan.project else {
        return builder(rt, plan.context()?, &plan.tag, &plan.labels(), log).await;
    };
    // The stage is labelled with its own tag, so it stays cached whatever the project adds.
    let stage_labels = HashMap::from([(image::LABEL_IMAGE.to_string(), split.stage_tag.clone())]);
    let stage = builder(
        rt,
        plan.stage_context(split)?,
        &split.stage_tag,
        &stage_labels,
        log,
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
                log,
            )
            .await?
        }
    };
    let committed =
        image::project::apply(rt, &split.build, &stage, &plan.tag, &gateway, &mut |r| {
            log.project(r)
        })
        .await;
    log.flush();
    builder(
        rt,
        plan.final_context(split, &committed?)?,
        &plan.tag,
        &plan.labels(),
        log,
    )
    .await
}

/// One run of the engine's builder, its output into the build's log. Ctrl-C drops the
/// request: the engine cancels a build whose client went away, and tags nothing, so an
/// interrupted build leaves no half-made image under the tag (exit 130).
async fn builder<R: Runtime>(
    rt: &R,
    context: Vec<u8>,
    tag: &str,
    labels: &HashMap<String, String>,
    log: &mut BuildLog<'_>,
) -> Result<String> {
    crate::interrupt::checkpoint()?;
    let built =
        crate::interrupt::abandon_on_interrupt(
            rt.build_image(context, tag, labels, &mut |t| log.builder(t)),
        )
        .await;
    log.flush();
    built
}

/// How many of a failed build's last lines are shown.
pub const TAIL: usize = 20;
/// A line longer than this is cut where it is shown (the log file keeps all of it).
const SHOWN_WIDTH: usize = 300;
/// Text without a line end is taken as a line once it is this long.
const MAX_PARTIAL: usize = 64 * 1024;

/// Where the log of building image `tag` is kept: `$XDG_CACHE_HOME/git-agent/builds/`
/// (else `~/.cache/git-agent/builds/`), one file per tag (`:` and `/` made `-`), replaced by
/// the tag's next build. Images belong to the engine, not to one repository, so their logs
/// are the user's. `None` when there is no home to put it in.
pub fn log_path(tag: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    let name: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Some(cache.join("git-agent/builds").join(format!("{name}.log")))
}

/// The step a classic builder's line starts (`Step 3/12 : RUN x`), as `[3/12] RUN x`.
pub fn builder_step(line: &str) -> Option<String> {
    let rest = line.strip_prefix("Step ")?;
    let (count, what) = rest.split_once(" : ")?;
    let (n, of) = count.split_once('/')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(n) || !digits(of) {
        return None;
    }
    let what: Vec<&str> = what.split_whitespace().collect();
    Some(format!("[{n}/{of}] {}", what.join(" ")))
}

/// A classic builder's bookkeeping (` ---> 3f2a`, `Removing intermediate container`):
/// kept in the log, left out of a failed build's last lines.
pub fn builder_noise(line: &str) -> bool {
    line.starts_with(" ---> ")
        || line.starts_with("Removing intermediate container ")
        || line.starts_with("Successfully built ")
        || line.starts_with("Successfully tagged ")
}

/// A line as shown: control characters escaped, cut to a width.
pub fn shown(line: &str) -> String {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut s: String = crate::error::sanitize(line);
    if s.chars().count() > SHOWN_WIDTH {
        s = s.chars().take(SHOWN_WIDTH).collect();
        s.push_str("...");
    }
    s
}

/// The last `n` lines that are not blank, in order.
pub fn tail_of(lines: &VecDeque<String>, n: usize) -> Vec<String> {
    let kept: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    kept[kept.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// One image build's output: cut into lines, each written as it came to the log file,
/// its steps and its (escaped) lines emitted, its last lines kept for when it fails.
pub struct BuildLog<'a> {
    events: &'a dyn Events,
    partial: String,
    file: Option<std::io::BufWriter<std::fs::File>>,
    path: Option<PathBuf>,
    recent: VecDeque<String>,
}

impl<'a> BuildLog<'a> {
    /// A log written to `path` (replacing what it held); without one, or when it cannot be
    /// created, the build goes on with a warning and no file.
    pub fn open(events: &'a dyn Events, path: Option<PathBuf>) -> BuildLog<'a> {
        let file = path.as_ref().and_then(|p| {
            let made = p
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::File::create(p));
            match made {
                Ok(f) => Some(std::io::BufWriter::new(f)),
                Err(e) => {
                    events.emit(Event::warning(
                        None,
                        format!(
                            "cannot write the build log {}: {e}; the build goes on without it",
                            p.display()
                        ),
                    ));
                    None
                }
            }
        });
        BuildLog {
            events,
            partial: String::new(),
            path: file.as_ref().and(path),
            file,
            recent: VecDeque::new(),
        }
    }

    /// Take a chunk of the engine builder's output.
    pub fn builder(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = &line[..end];
            let step = builder_step(line);
            self.line(line, step);
            if builder_noise(line) {
                self.recent.pop_back();
            }
        }
        if self.partial.len() > MAX_PARTIAL {
            self.flush();
        }
    }

    /// Take what the sandboxed project steps report.
    pub fn project(&mut self, report: Report<'_>) {
        match report {
            Report::Output(text) => self.builder_output(text),
            Report::Step(step) => {
                self.flush();
                let line = format!("git-agent: {step}");
                self.write(&line);
                self.events.emit(Event::BuildStep { step: shown(step) });
                self.events.emit(Event::BuildOutput { line: shown(&line) });
            }
            Report::Note(note) => {
                self.flush();
                self.write(&format!("git-agent: {note}"));
                self.events.emit(match note.strip_prefix("warning: ") {
                    Some(w) => Event::warning(None, shown(w)),
                    None => Event::step(None, shown(note)),
                });
            }
        }
    }

    /// A step's output: lines, but never a step of the builder's.
    fn builder_output(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.line(&line[..end], None);
        }
        if self.partial.len() > MAX_PARTIAL {
            self.flush();
        }
    }

    /// The last, unfinished line goes out too.
    pub fn flush(&mut self) {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.line(&rest, None);
        }
        if let Some(f) = &mut self.file {
            use std::io::Write;
            let _ = f.flush();
        }
    }

    fn write(&mut self, line: &str) {
        if let Some(f) = &mut self.file {
            use std::io::Write;
            if let Err(e) = writeln!(f, "{line}") {
                self.file = None;
                if let Some(p) = self.path.take() {
                    self.events.emit(Event::warning(
                        None,
                        format!(
                            "cannot write the build log {}: {e}; it is incomplete",
                            p.display()
                        ),
                    ));
                }
            }
        }
        self.recent.push_back(shown(line));
        if self.recent.len() > TAIL * 4 {
            self.recent.pop_front();
        }
    }

    fn line(&mut self, line: &str, step: Option<String>) {
        self.write(line);
        if let Some(step) = step {
            self.events.emit(Event::BuildStep { step: shown(&step) });
        }
        self.events.emit(Event::BuildOutput { line: shown(line) });
    }

    /// The build ended; when it failed its last lines go with the end.
    pub fn end(&mut self, ok: bool) {
        self.flush();
        self.file = None;
        self.events.emit(Event::BuildEnd {
            ok,
            tail: if ok {
                Vec::new()
            } else {
                tail_of(&self.recent, TAIL)
            },
            log: self.path.as_ref().map(|p| p.display().to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::events::Collected;

    fn kinds(events: Vec<Event>) -> (Vec<String>, Vec<String>) {
        let mut steps = Vec::new();
        let mut lines = Vec::new();
        for e in events {
            match e {
                Event::BuildStep { step } => steps.push(step),
                Event::BuildOutput { line } => lines.push(line),
                Event::Step { message, .. } => steps.push(format!("note: {message}")),
                other => panic!("unexpected {other:?}"),
            }
        }
        (steps, lines)
    }

    #[test]
    fn builder_steps_are_recognised_and_nothing_else() {
        assert_eq!(
            builder_step("Step 3/12 : RUN apt-get update").as_deref(),
            Some("[3/12] RUN apt-get update")
        );
        assert_eq!(
            builder_step("Step 1/1 : FROM x ").as_deref(),
            Some("[1/1] FROM x")
        );
        for not in [
            "Step x/2 : RUN",
            "Step 3/ : RUN",
            " Step 3/4 : RUN",
            "Step 3/4: RUN",
            "Stepping 3/4 : RUN",
            " ---> abc",
        ] {
            assert_eq!(builder_step(not), None, "{not}");
        }
    }

    #[test]
    fn shown_lines_are_escaped_and_cut() {
        assert_eq!(shown("Step 2/2 : RUN \x1b[2Jx"), "Step 2/2 : RUN \\x1b[2Jx");
        assert_eq!(shown("50%\r"), "50%");
        assert!(!shown("a\rb\x07c\x1b]0;title\x07").contains(['\r', '\x07', '\x1b']));
        let long = "y".repeat(1000);
        assert_eq!(shown(&long).chars().count(), SHOWN_WIDTH + 3);
    }

    #[test]
    fn the_tail_is_the_last_lines_that_say_something() {
        let lines: VecDeque<String> = (0..50)
            .flat_map(|i| [format!("line {i}"), String::new()])
            .collect();
        let tail = tail_of(&lines, TAIL);
        assert_eq!(tail.len(), TAIL);
        assert_eq!(tail.first().unwrap(), "line 30");
        assert_eq!(tail.last().unwrap(), "line 49");
        assert_eq!(tail_of(&VecDeque::from(["x".to_string()]), TAIL), ["x"]);
    }

    #[test]
    fn log_paths_are_one_plain_file_per_tag() {
        let p = log_path("git-agent:0123/../ab").unwrap();
        assert_eq!(p.file_name().unwrap(), "git-agent-0123-..-ab.log");
        assert!(p.parent().unwrap().ends_with("git-agent/builds"));
    }

    /// Chunks become whole lines; the file keeps them as they came, what is emitted is
    /// escaped; a project step's output cannot pass for a step; a failed build ends with
    /// its last lines and the file.
    #[test]
    fn a_build_log_keeps_everything_and_emits_steps_and_safe_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/b.log");
        let c = Collected::default();
        let mut log = BuildLog::open(&c, Some(path.clone()));
        log.builder("Step 1/2 : FROM base\n ---> ab");
        log.builder("c\n\nStep 2/2 : RUN \x1b[2Jx\nhalf");
        log.flush();
        let (steps, lines) = kinds(c.take());
        assert_eq!(steps, ["[1/2] FROM base", "[2/2] RUN \\x1b[2Jx"]);
        assert_eq!(
            lines,
            [
                "Step 1/2 : FROM base",
                " ---> abc",
                "",
                "Step 2/2 : RUN \\x1b[2Jx",
                "half"
            ]
        );
        log.project(Report::Note("running 1 project step(s)"));
        log.project(Report::Step("project.dockerfile:3: RUN false"));
        log.project(Report::Output("Step 9/9 : RUN forged\nout"));
        for i in 0..30 {
            log.project(Report::Output(&format!("\nline {i}")));
        }
        let (steps, _) = kinds(c.take());
        assert_eq!(
            steps,
            [
                "note: running 1 project step(s)",
                "project.dockerfile:3: RUN false"
            ]
        );
        log.end(false);
        let Some(Event::BuildEnd { ok, tail, log }) = c.take().pop() else {
            panic!("no end")
        };
        assert!(!ok);
        assert_eq!(tail.len(), TAIL);
        assert_eq!(tail.last().unwrap(), "line 29");
        assert_eq!(log.as_deref(), Some(path.to_str().unwrap()));
        let kept = std::fs::read_to_string(&path).unwrap();
        assert!(
            kept.starts_with("Step 1/2 : FROM base\n ---> abc\n\nStep 2/2 : RUN \x1b[2Jx\nhalf\n")
        );
        assert!(
            kept.contains("git-agent: project.dockerfile:3: RUN false\nStep 9/9 : RUN forged\n")
        );
        assert!(kept.ends_with("line 29\n"), "{kept}");
    }

    #[test]
    fn a_log_that_cannot_be_written_is_a_warning_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let c = Collected::default();
        let mut log = BuildLog::open(&c, Some(dir.path().join("file/b.log")));
        assert!(matches!(c.take().as_slice(), [Event::Warning { .. }]));
        log.builder("x\n");
        log.end(true);
        assert_eq!(
            c.take().pop(),
            Some(Event::BuildEnd {
                ok: true,
                tail: vec![],
                log: None
            })
        );
    }
}
