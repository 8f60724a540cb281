//! `git agent preview`: arguments and rendering; the work is [`crate::ops::preview`].

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use anyhow::Result;
use clap::{Args, Subcommand};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Ctx, Stderr, out, term};
use crate::ops::OpError;
use crate::ops::preview::{self, PreviewRequest};

/// See a task's work in a browser: run a dev server from its workspace and publish its port
/// on 127.0.0.1 (a remote engine: on its host's address).
///
/// The preview runs the command (`--cmd`, else `agent.previewCommand`) with `/bin/sh -c` in
/// /workspace of a container made from the task's image (or `--image`), with the task's
/// workspace mounted read-only, confined like the task (its user, no capabilities, no new
/// privileges, its limits, a read-only root with a writable /tmp, HOME=/tmp, PORT set to the
/// port). While the task runs, the preview is on the task's internal network and its only
/// way out is the task's gateway (the same allowed domains); for a task whose run has
/// ended it has no way out at all. The dev server must listen on 0.0.0.0 (all interfaces)
/// of the container, on `--port`.
///
/// Its port is published on 127.0.0.1 of the engine's host only, through a small relay
/// container of git-agent's own (engines publish no ports of containers on internal
/// networks). With a remote engine (tcp:// or ssh://) it is published on the one address of
/// that host you reach the engine by (the engine URL's host), and the URL names that host;
/// anyone who can reach that address can open it. The URL is printed on stdout. Starting a preview replaces the task's earlier one; `rm` and
/// `purge` remove it with the task.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PreviewArgs {
    #[command(subcommand)]
    pub command: Option<PreviewCommand>,
    /// The task (any unique prefix of its name).
    #[arg(required = true)]
    pub task: Option<String>,
    /// The port the dev server listens on in the preview.
    #[arg(long, required = true)]
    pub port: Option<u16>,
    /// The port on the engine's host (default: the same as --port).
    #[arg(long, value_name = "PORT")]
    pub host_port: Option<u16>,
    /// The image to run the dev server in (default: the task's image).
    #[arg(long)]
    pub image: Option<String>,
    /// The dev server's command line (default: git config agent.previewCommand).
    #[arg(long)]
    pub cmd: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PreviewCommand {
    /// Stop and remove a task's preview.
    Stop {
        /// The task (any unique prefix of its name).
        task: String,
    },
    /// Show a task's preview output (the dev server's; control characters escaped on a
    /// terminal).
    Logs {
        /// The task (any unique prefix of its name).
        task: String,
        /// Keep following the output until the preview ends.
        #[arg(short, long)]
        follow: bool,
    },
}

pub async fn run(args: PreviewArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    match args.command {
        Some(PreviewCommand::Stop { task }) => {
            let loaded = ctx.store.resolve_local(&task, "preview stop")?;
            let rt = crate::ops::engine_of(&ctx, &loaded.record).await?;
            let name = preview::stop(&rt, &ctx, &task)
                .await
                .map_err(OpError::into_report)?;
            super::progress::line(&format!("git-agent: stopped the preview of {name}"));
            Ok(0)
        }
        Some(PreviewCommand::Logs { task, follow }) => {
            let loaded = ctx.store.resolve_local(&task, "preview logs")?;
            let rt = crate::ops::engine_of(&ctx, &loaded.record).await?;
            let mut w = Escaped {
                inner: tokio::io::stdout(),
                escape: term::stdout_is_tty(),
                buf: Vec::new(),
            };
            preview::logs(&rt, &ctx, &task, follow, &mut w)
                .await
                .map_err(OpError::into_report)?;
            w.flush().await.ok();
            Ok(0)
        }
        None => {
            let task = args.task.expect("clap requires the task");
            let loaded = ctx.store.resolve_local(&task, "preview")?;
            let rt = crate::ops::engine_of(&ctx, &loaded.record).await?;
            let req = PreviewRequest {
                task,
                port: args.port.expect("clap requires the port"),
                host_port: args.host_port,
                published: preview::published_on(&rt)?,
                image: args.image,
                cmd: args.cmd,
            };
            let started = preview::start(&rt, &ctx, &req, &Stderr)
                .await
                .map_err(OpError::into_report)?;
            if !started.through_gateway {
                super::progress::line(&format!(
                    "git-agent: task {}'s run has ended: its preview has no way out",
                    started.task
                ));
            }
            out(&started.url)?;
            Ok(0)
        }
    }
}

/// Passes bytes on, escaping control characters (see [`crate::error::sanitize`]) when
/// `escape`: the dev server runs the repository's code and must not drive the terminal.
struct Escaped<W> {
    inner: W,
    escape: bool,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Escaped<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if !this.buf.is_empty() {
            match Pin::new(&mut this.inner).poll_write(cx, &this.buf) {
                Poll::Ready(Ok(n)) => {
                    this.buf.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if !this.buf.is_empty() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        this.buf = if this.escape {
            crate::error::sanitize(&String::from_utf8_lossy(data)).into_bytes()
        } else {
            data.to_vec()
        };
        // Passed on at once where the output takes it (a followed log is seen as it comes);
        // what it does not take yet goes with the next write or the flush.
        while !this.buf.is_empty() {
            match Pin::new(&mut this.inner).poll_write(cx, &this.buf) {
                Poll::Ready(Ok(n)) => {
                    this.buf.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while !this.buf.is_empty() {
            match Pin::new(&mut this.inner).poll_write(cx, &this.buf) {
                Poll::Ready(Ok(n)) => {
                    this.buf.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}
