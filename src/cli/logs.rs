//! `git agent logs`: a task's output, live from its container or as kept with the task
//! (found by [`crate::ops::logs`]), rendered for the terminal here.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use anyhow::Result;
use clap::Args;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Ctx, engine_view, term};
use crate::agent::OutputFormat;
use crate::error::sanitize;
use crate::ops::logs::{self, Output};

/// Show a task's output: readable (messages and tool calls) for agents that emit a
/// structured transcript, as emitted with --raw. While the container exists the output is
/// read from it; afterwards from the transcript kept in the task's state. Control characters
/// are escaped on a terminal so a task cannot drive it. When the container engine cannot be
/// reached the kept transcript is shown. Ctrl-C ends `--follow` with exit status 130.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Keep following the output until the task ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// The output exactly as the agent emitted it.
    #[arg(long)]
    pub raw: bool,
}

/// How output is shown.
#[derive(Clone, Copy)]
pub(super) enum Mode {
    /// As emitted.
    Raw,
    /// As emitted, control characters escaped.
    Escaped,
    /// A structured transcript (Claude's, OpenCode's or Gemini's JSON events) rendered as
    /// messages and tool calls.
    Transcript(OutputFormat),
}

impl Mode {
    /// As asked (`raw`), else readable for a structured transcript, else escaped on a
    /// terminal and as emitted elsewhere.
    pub(super) fn choose(raw: bool, structured: Option<OutputFormat>, terminal: bool) -> Mode {
        if raw {
            Mode::Raw
        } else if let Some(format) = structured {
            Mode::Transcript(format)
        } else if terminal {
            Mode::Escaped
        } else {
            Mode::Raw
        }
    }
}

/// A line-buffering writer that renders each complete line according to the mode.
pub(super) struct Rendered<W> {
    inner: W,
    mode: Mode,
    pending: Vec<u8>,
    out: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Rendered<W> {
    pub(super) fn new(inner: W, mode: Mode) -> Self {
        Rendered {
            inner,
            mode,
            pending: Vec::new(),
            out: Vec::new(),
        }
    }

    fn render(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        match self.mode {
            Mode::Raw => self.out.extend_from_slice(line),
            Mode::Escaped => self.out.extend_from_slice(sanitize(&text).as_bytes()),
            Mode::Transcript(format) => {
                if let Some(r) = format.render_line(&text) {
                    self.out.extend_from_slice(r.as_bytes());
                    self.out.push(b'\n');
                }
            }
        }
    }

    /// Write out everything rendered so far.
    fn poll_drain(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        while !self.out.is_empty() {
            let this = &mut *self;
            match Pin::new(&mut this.inner).poll_write(cx, &this.out) {
                Poll::Ready(Ok(n)) => {
                    this.out.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    pub(super) async fn finish(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.render(&rest);
        }
        let out = std::mem::take(&mut self.out);
        self.inner.write_all(&out).await?;
        self.inner.flush().await
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Rendered<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Drain what was rendered before taking more.
        if let Poll::Ready(Err(e)) = self.as_mut().poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        if !self.out.is_empty() {
            return Poll::Pending;
        }
        self.pending.extend_from_slice(buf);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            match self.mode {
                Mode::Transcript(_) => self.render(&line[..line.len() - 1]),
                _ => self.render(&line),
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.as_mut().poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub async fn run(args: LogsArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    if args.follow {
        // A fetched task has no run here to follow.
        ctx.store.resolve_local(&args.task, "logs -f")?;
    }
    let logs = logs::open(&ctx, &args.task)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    let mode = Mode::choose(args.raw, logs.structured, term::stdout_is_tty());
    let mut w = Rendered::new(tokio::io::stdout(), mode);
    match logs.output {
        Output::Live { rt, container } => {
            // Ctrl-C ends a follow (or a long read) with the documented 130; what was read so
            // far is still written out.
            let read = logs::copy_live(&rt, &container, args.follow, args.tail, &mut w).await;
            w.finish().await?;
            read.map_err(crate::ops::OpError::into_report)?;
        }
        Output::Kept {
            transcript,
            unchecked,
        } => {
            if let Some(why) = &unchecked {
                engine_view::warn_unreachable(why);
            }
            w.write_all(&logs::tail(transcript, args.tail)).await?;
            w.finish().await?;
        }
    }
    Ok(0)
}
