//! Logs: where a task's output is read from. While its container exists, from the container
//! (live, or followed); afterwards from the transcript kept with the task. Reads only.
//! Rendering (a transcript as messages, escaping on a terminal) is the caller's.

use anyhow::Result;
use tokio::io::AsyncWrite;

use super::Ctx;
use crate::runtime::select::Engine;
use crate::runtime::{ContainerState, Runtime};

/// What went wrong in a logs, beyond the engine's and the refs' own failures.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("task '{task}' has no container and no kept output")]
    NoOutput { task: String },
    /// A live task's output is in its container, and the engine cannot be reached (the
    /// engine's error, with its own hint, is the cause).
    #[error(
        "cannot show the output of task '{task}': it is read from its container until the task ends, and the engine cannot be reached"
    )]
    Unreachable {
        task: String,
        #[source]
        cause: anyhow::Error,
    },
    /// A failure below the operation (the task's lock, the refs, the engine), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for LogsError {
    fn hint(&self) -> Option<String> {
        match self {
            LogsError::NoOutput { .. } => Some(
                "output is kept with a task once it finishes; this one ended without any".into(),
            ),
            LogsError::Unreachable { .. } | LogsError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            LogsError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            LogsError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// Where a task's output is.
pub enum Output {
    /// In its container, which the engine has.
    Live { rt: Engine, container: String },
    /// Kept with the task; `unchecked` says why the engine was not asked, if it was not.
    Kept {
        transcript: Vec<u8>,
        unchecked: Option<String>,
    },
}

/// A task's output and how it should be read.
pub struct Logs {
    pub task: String,
    /// How the agent's structured transcript is read, when it emits one (Claude's, OpenCode's
    /// or Gemini's JSON events).
    pub structured: Option<crate::agent::OutputFormat>,
    pub output: Output,
}

/// The format of the structured transcript tasks of `agent` emit, if they emit one (it is
/// shown rendered unless asked for raw).
pub fn structured(search: &crate::data::Search, agent: &str) -> Option<crate::agent::OutputFormat> {
    crate::agent::load(search, agent)
        .ok()
        .map(|a| a.def.output)
        .filter(|f| f.is_structured())
}

/// Find task `task`'s output (any unique prefix of its name).
pub async fn open(ctx: &Ctx, task: &str) -> Result<Logs, LogsError> {
    let loaded = ctx.store.resolve(task)?;
    let search = crate::data::Search::new(&ctx.git.dir);
    let structured = structured(&search, &loaded.record.agent);
    let name = loaded.record.name.clone();
    let mut unreachable = None;
    if let Some(container) = loaded.record.sandbox.container.clone() {
        match super::engine_of_for_reading(ctx, &loaded.record).await {
            Ok(rt) => {
                if rt.state(&container).await? != ContainerState::Missing {
                    return Ok(Logs {
                        task: name,
                        structured,
                        output: Output::Live { rt, container },
                    });
                }
            }
            // The kept transcript does not need the engine.
            Err(e) => unreachable = Some(e),
        }
    }
    let Some(transcript) = ctx.store.transcript(&loaded)? else {
        if let Some(e) = unreachable {
            return Err(LogsError::Unreachable {
                task: name,
                cause: e,
            });
        }
        return Err(LogsError::NoOutput { task: name });
    };
    Ok(Logs {
        task: name,
        structured,
        output: Output::Kept {
            transcript,
            unchecked: unreachable.map(|e| e.to_string()),
        },
    })
}

/// Copy a live task's output to `out`: the last `tail` lines, and with `follow` until the
/// task ends. Ctrl-C ends it with the interruption error; what was read so far is in `out`.
pub async fn copy_live<W: AsyncWrite + Unpin + Send>(
    rt: &Engine,
    container: &str,
    follow: bool,
    tail: Option<usize>,
    out: &mut W,
) -> Result<(), LogsError> {
    Ok(crate::interrupt::abandon_on_interrupt(rt.logs(container, follow, tail, out)).await?)
}

/// The last `n` lines of a kept transcript (all of it without `n`).
pub fn tail(transcript: Vec<u8>, n: Option<usize>) -> Vec<u8> {
    match n {
        Some(n) => {
            let lines: Vec<&[u8]> = transcript.split_inclusive(|b| *b == b'\n').collect();
            lines[lines.len().saturating_sub(n)..].concat()
        }
        None => transcript,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_logs_error_carries_its_hint() {
        let e: anyhow::Error = super::LogsError::NoOutput { task: "t".into() }.into();
        assert_eq!(
            e.to_string(),
            "task 't' has no container and no kept output"
        );
        assert_eq!(
            crate::error::find_hint(&e).as_deref(),
            Some("output is kept with a task once it finishes; this one ended without any")
        );
    }

    #[test]
    fn an_unreachable_engine_is_the_cause_with_its_hint() {
        use crate::ops::OpError;
        let e = super::LogsError::Unreachable {
            task: "t".into(),
            cause: crate::error::hinted("no engine at the socket", "start the engine"),
        }
        .into_report();
        assert_eq!(
            crate::error::render(&e),
            [
                "Error: cannot show the output of task 't': it is read from its container until the task ends, and the engine cannot be reached",
                "Caused by: no engine at the socket",
                "Hint: start the engine",
            ]
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(super::tail(b"a\nb\nc\n".to_vec(), Some(2)), b"b\nc\n");
        assert_eq!(super::tail(b"a\nb".to_vec(), Some(5)), b"a\nb");
        assert_eq!(super::tail(b"a\n".to_vec(), None), b"a\n");
        assert_eq!(super::tail(b"a\nb\n".to_vec(), Some(0)), b"");
    }
}
