//! `git agent logs`: a task's output.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use anyhow::Result;
use clap::Args;
use tokio::io::AsyncWrite;

use super::{Ctx, engine, term};
use crate::error::{hinted, sanitize};
use crate::runtime::Runtime;

/// Show a task's output (its command's stdout and stderr). Control characters are escaped
/// when writing to a terminal, so a task cannot drive your terminal; --raw passes them.
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
    /// Do not escape control characters.
    #[arg(long)]
    pub raw: bool,
}

/// Stdout that escapes terminal control sequences.
struct Sanitized(tokio::io::Stdout);

impl AsyncWrite for Sanitized {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let clean = sanitize(&String::from_utf8_lossy(buf));
        match Pin::new(&mut self.0).poll_write(cx, clean.as_bytes()) {
            // Report the whole input as written once the cleaned form went out in one piece.
            Poll::Ready(Ok(n)) if n == clean.len() => Poll::Ready(Ok(buf.len())),
            Poll::Ready(Ok(_)) => Poll::Ready(Err(std::io::Error::other("short write"))),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

pub async fn run(args: LogsArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let loaded = ctx.store.resolve(&args.task)?;
    let Some(container) = loaded.record.sandbox.container.clone() else {
        return Err(hinted(
            format!(
                "task '{}' has no container, so no output",
                loaded.record.name
            ),
            "output is kept only while the container exists (until `git agent rm`)",
        ));
    };
    let rt = engine().await?;
    if args.raw || !term::stdout_is_tty() {
        let mut o = tokio::io::stdout();
        rt.logs(&container, args.follow, args.tail, &mut o).await?;
    } else {
        let mut o = Sanitized(tokio::io::stdout());
        rt.logs(&container, args.follow, args.tail, &mut o).await?;
    }
    Ok(0)
}
