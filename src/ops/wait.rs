//! Wait: block until tasks have ended (queued ones too), reading their records and, when the
//! engine answers, their containers (a run that ended but was not recorded yet counts as
//! ended). Changes nothing. Owns the waiting; it must not print.

use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::runtime::Runtime;
use crate::task::Status;

/// Why waiting failed.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// A failure below the operation (a name that matches no task, the refs), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for WaitError {
    fn hint(&self) -> Option<String> {
        None
    }

    fn below(&self) -> Option<&anyhow::Error> {
        let WaitError::Other(e) = self;
        Some(e)
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        let WaitError::Other(e) = self;
        Ok(e)
    }
}

super::error::pass_on!(super::inspect::InspectError => WaitError);

/// How one task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ended {
    pub task: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
}

impl Ended {
    /// Did it end well (exited 0)?
    pub fn ok(&self) -> bool {
        self.status == "exited" && self.exit_code == Some(0)
    }
}

/// What [`run`] saw.
#[derive(Debug, Default)]
pub struct Waited {
    pub ended: Vec<Ended>,
    /// Ctrl-C stopped the waiting (the tasks go on).
    pub interrupted: bool,
}

impl Waited {
    /// 130 when interrupted, 0 when every task exited 0, else 1.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            130
        } else if self.ended.iter().all(Ended::ok) {
            0
        } else {
            1
        }
    }
}

/// Wait for every task in `tasks` (unique prefixes) to end. `rt` is the engine, when it
/// answers.
pub async fn run<R: Runtime>(
    rt: Option<&R>,
    ctx: &Ctx,
    tasks: &[String],
) -> Result<Waited, WaitError> {
    let mut names = Vec::new();
    for t in tasks {
        names.push(ctx.store.resolve(t)?.record.name);
    }
    let mut waited = Waited::default();
    let mut pending: Vec<String> = names.clone();
    let mut ended = std::collections::BTreeMap::new();
    loop {
        let mut still = Vec::new();
        for name in pending {
            let Some(loaded) = ctx.store.load(&name)? else {
                ended.insert(
                    name.clone(),
                    Ended {
                        task: name.clone(),
                        status: "removed".into(),
                        exit_code: None,
                        reason: Some("the task was removed".into()),
                    },
                );
                continue;
            };
            // A task on a named engine is asked there (the given engine is the environment's).
            let own = match loaded.record.engine {
                Some(_) => super::engine_of_for_reading(ctx, &loaded.record).await.ok(),
                None => None,
            };
            let loaded = match (own.as_ref(), loaded.record.engine.is_some(), rt) {
                (Some(rt), _, _) => super::inspect::effective(rt, &ctx.store, loaded).await?,
                (None, false, Some(rt)) => {
                    super::inspect::effective(rt, &ctx.store, loaded).await?
                }
                _ => crate::sandbox::stuck::as_seen(&ctx.git, loaded)?,
            };
            let r = &loaded.record;
            if matches!(r.status, Status::Exited | Status::Stopped | Status::Failed) {
                ended.insert(
                    name.clone(),
                    Ended {
                        task: name.clone(),
                        status: r.status.as_str().into(),
                        exit_code: r.exit_code,
                        reason: r.reason.clone(),
                    },
                );
            } else {
                still.push(name);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            _ = crate::interrupt::interrupted() => {
                waited.interrupted = true;
                break;
            }
        }
    }
    waited.ended = names.iter().filter_map(|n| ended.remove(n)).collect();
    Ok(waited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_exits_0_only_when_every_task_exited_0() {
        let e = |status: &str, code| Ended {
            task: "t".into(),
            status: status.into(),
            exit_code: code,
            reason: None,
        };
        let w = |ended: Vec<Ended>, interrupted| Waited { ended, interrupted };
        assert_eq!(w(vec![e("exited", Some(0))], false).exit_code(), 0);
        assert_eq!(
            w(vec![e("exited", Some(0)), e("exited", Some(2))], false).exit_code(),
            1
        );
        assert_eq!(w(vec![e("failed", None)], false).exit_code(), 1);
        assert_eq!(w(vec![e("stopped", Some(0))], false).exit_code(), 1);
        assert_eq!(w(vec![], true).exit_code(), 130);
    }
}
