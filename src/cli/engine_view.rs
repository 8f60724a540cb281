//! What the engine says about tasks, for the commands that can do without it (`list`,
//! `status`, `review`, `logs`). When it answers, running tasks' records are brought up to date
//! and each task's objects are checked against its record; when it does not, the refs are
//! shown as they are, a status that only the engine could confirm is marked unverified
//! (`running?`), and one line on stderr says the runtime status is unknown.

use anyhow::Result;

use super::{Ctx, engine_for_reading};
use crate::runtime::select::Engine;
use crate::runtime::{ContainerState, LABEL_REPO, Runtime};
use crate::sandbox::health::{self, Health};
use crate::task::Status;
use crate::task::store::Loaded;

/// One task as the engine (if it answered) confirms it.
pub struct Seen {
    pub loaded: Loaded,
    /// Whether the engine was asked: false means the status is what the refs last recorded.
    pub checked: bool,
    /// What is wrong with the task's runtime objects (see [`Health::problems`]).
    pub problems: Vec<&'static str>,
}

impl Seen {
    /// The status as shown to a person: `running?` when a live status could not be checked,
    /// the exit code and any problems in parentheses (`running (gateway down)`).
    pub fn status_text(&self) -> String {
        let r = &self.loaded.record;
        describe(r.status, r.exit_code, self.checked, &self.problems)
    }
}

/// See [`Seen::status_text`].
fn describe(status: Status, exit: Option<i64>, checked: bool, problems: &[&str]) -> String {
    let mut text = status.as_str().to_string();
    if !checked && is_live(status) {
        text.push('?');
    }
    let mut notes: Vec<String> = exit.iter().map(|c| c.to_string()).collect();
    notes.extend(problems.iter().map(|p| p.to_string()));
    if !notes.is_empty() {
        text += &format!(" ({})", notes.join("; "));
    }
    text
}

fn is_live(s: Status) -> bool {
    matches!(s, Status::Running | Status::Creating)
}

/// Say once, on stderr, that the engine could not be asked.
pub fn warn_unreachable(e: &anyhow::Error) {
    eprintln!("git-agent: {e}; runtime status unknown");
}

/// Connect to the engine, or warn that runtime status is unknown and go on without it.
pub async fn engine_or_warn() -> Option<Engine> {
    match engine_for_reading().await {
        Ok(rt) => Some(rt),
        Err(e) => {
            warn_unreachable(&e);
            None
        }
    }
}

/// How long the read-only checks below may take: an engine that stops answering after the
/// connection must not hold `list` or `status` either.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `fut`, or an error once [`CHECK_TIMEOUT`] has passed (it only reads, so it may be dropped).
async fn bounded<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!(
            "the container engine did not answer within {}s",
            CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// Problems worth reporting for a task in `status`: a task being created has no objects
/// yet (a stuck spawn is `doctor`'s to find).
fn reportable(h: &Health, status: Status) -> Vec<&'static str> {
    if status == Status::Creating {
        return Vec::new();
    }
    h.problems(status)
}

/// Every task of the repository, checked with one listing of the repository's objects
/// (three engine requests however many tasks there are); a task whose container has ended
/// is brought up to date, and one that seems broken is checked again object by object.
pub async fn all(ctx: &Ctx) -> Result<Vec<Seen>> {
    // A spawn that died is known from its lease alone, engine or not.
    let tasks = ctx
        .store
        .all()?
        .into_iter()
        .map(|l| crate::sandbox::stuck::settle(&ctx.store, l))
        .collect::<Result<Vec<_>>>()?;
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let unchecked = |tasks: Vec<Loaded>| {
        tasks
            .into_iter()
            .map(|loaded| Seen {
                loaded,
                checked: false,
                problems: Vec::new(),
            })
            .collect()
    };
    let Some(rt) = engine_or_warn().await else {
        return Ok(unchecked(tasks));
    };
    let inv = match bounded(rt.inventory(&[(LABEL_REPO, &ctx.repo.id)])).await {
        Ok(inv) => inv,
        Err(e) => {
            warn_unreachable(&e);
            return Ok(unchecked(tasks));
        }
    };
    let mut out = Vec::new();
    for mut loaded in tasks {
        let h = health::from_inventory(&inv, &loaded);
        let ended = matches!(
            h.container,
            Some(ContainerState::Exited(_) | ContainerState::Missing)
        );
        if is_live(loaded.record.status) && ended {
            loaded = crate::sandbox::refresh(&rt, &ctx.store, loaded).await?;
        }
        let mut problems = reportable(&h, loaded.record.status);
        if !problems.is_empty() {
            // Confirm object by object (only for a task that seems broken): the listing does
            // not show an object created since, or one without this repository's labels.
            if let Ok(h) = bounded(health::check(&rt, &loaded)).await {
                problems = reportable(&h, loaded.record.status);
            }
        }
        out.push(Seen {
            loaded,
            checked: true,
            problems,
        });
    }
    Ok(out)
}

/// One task, checked object by object.
pub async fn one(ctx: &Ctx, loaded: Loaded, rt: Option<&Engine>) -> Result<Seen> {
    let Some(rt) = rt else {
        let loaded = crate::sandbox::stuck::settle(&ctx.store, loaded)?;
        return Ok(Seen {
            loaded,
            checked: false,
            problems: Vec::new(),
        });
    };
    let loaded = crate::sandbox::refresh(rt, &ctx.store, loaded).await?;
    match bounded(health::check(rt, &loaded)).await {
        Ok(h) => {
            let mut problems = reportable(&h, loaded.record.status);
            // A gateway that runs can still enforce something else than the record says (an
            // `allow` killed between the two): one exec tells.
            if problems.is_empty()
                && loaded.record.status == Status::Running
                && matches!(
                    bounded(health::gateway_policy_matches(rt, &loaded)).await,
                    Ok(Some(false))
                )
            {
                problems.push(POLICY_DIFFERS);
            }
            Ok(Seen {
                loaded,
                checked: true,
                problems,
            })
        }
        Err(e) => {
            warn_unreachable(&e);
            Ok(Seen {
                loaded,
                checked: false,
                problems: Vec::new(),
            })
        }
    }
}

/// The gateway enforces another policy than the task's record (see
/// [`health::gateway_policy_matches`]).
const POLICY_DIFFERS: &str = "gateway policy differs from the record";

/// The one command that repairs `problem` of task `task`.
pub fn fix_for(problem: &str, task: &str) -> String {
    match problem {
        POLICY_DIFFERS => format!(
            "run the interrupted `git agent allow {task} ...` again, or `git agent restart {task}` for a gateway with exactly the recorded domains"
        ),
        "workspace volume missing" => {
            format!("`git agent restart --reseed {task}` starts it again from its last synced work")
        }
        "container missing" => format!("`git agent restart {task}` gives it a new container"),
        _ => format!("`git agent restart {task}` gives it a new gateway and network"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_marks_what_was_not_checked() {
        assert_eq!(describe(Status::Running, None, false, &[]), "running?");
        assert_eq!(describe(Status::Creating, None, false, &[]), "creating?");
        assert_eq!(
            describe(
                Status::Running,
                None,
                true,
                &["gateway down", "network missing"]
            ),
            "running (gateway down; network missing)"
        );
        // A finished task's status is final: the refs alone are the truth.
        assert_eq!(describe(Status::Exited, Some(3), false, &[]), "exited (3)");
        assert_eq!(
            describe(
                Status::Stopped,
                Some(143),
                true,
                &["workspace volume missing"]
            ),
            "stopped (143; workspace volume missing)"
        );
    }
}
