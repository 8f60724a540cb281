//! What `list`, `status` and `review --no-sync` show: each task as the engine (when it
//! answers) says it is, beside what its refs say.
//!
//! Read-only: nothing here writes a ref or a note, or removes a runtime object. A task whose
//! container has exited, or whose spawn died, is shown with its effective status (`exited`,
//! `failed: spawn interrupted`) computed in memory; recording it, and removing what an
//! interrupted sync left, is for the commands that change the task (sync, commit, restart,
//! stop, rm, purge) and for `doctor --fix`. When the engine cannot be asked, the refs are shown
//! as they are and the view says why the runtime status is unknown.

use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::egress::log::{Connection, Summary, summarize};
use crate::runtime::{ContainerState, LABEL_REPO, Runtime};
use crate::sandbox::gateway;
use crate::sandbox::health::{self, Health};
use crate::task::store::{Loaded, TaskStore};
use crate::task::{Status, remote};

/// What went wrong in reading tasks. An engine that cannot be reached or does not answer
/// is not an error here (the tasks are shown as their refs say, with why); what fails comes
/// from below (the refs, the task's records), as it came.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for InspectError {
    fn hint(&self) -> Option<String> {
        None
    }

    fn below(&self) -> Option<&anyhow::Error> {
        let InspectError::Other(e) = self;
        Some(e)
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            InspectError::Other(e) => Ok(e),
        }
    }
}

/// One task as the engine (if it answered) shows it.
pub struct Seen {
    /// The task with its effective record: what its refs say, brought up to date in memory
    /// with what the engine shows (an exited container, a dead spawn). Not recorded.
    pub loaded: Loaded,
    /// Whether the engine was asked: false means the status is what the refs last recorded.
    pub checked: bool,
    /// What is wrong with the task's runtime objects (see [`Health::problems`]).
    pub problems: Vec<&'static str>,
}

impl Seen {
    /// The status as shown to a person: `running?` when a live status could not be checked,
    /// the exit code and any problems in parentheses (`running (gateway down)`).
    /// A fetched task says so instead (`exited (0; fetched from origin)`): its status is
    /// what the other clone recorded, and no engine here has anything to add.
    pub fn status_text(&self) -> String {
        let r = &self.loaded.record;
        if let Some((remote, _)) = remote::split(&r.name) {
            let from = format!("fetched from {remote}");
            return describe(r.status, r.exit_code, true, &[from.as_str()]);
        }
        describe(r.status, r.exit_code, self.checked, &self.problems)
    }

    /// A fetched task as its refs say (see [`remote`]): the engine is never asked about it.
    fn fetched(loaded: Loaded) -> Seen {
        Seen {
            loaded,
            checked: false,
            problems: Vec::new(),
        }
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

/// Problems worth reporting: a task being created has no objects yet (a stuck spawn is
/// `doctor`'s to find).
fn reportable(h: &Health, status: Status) -> Vec<&'static str> {
    if status == Status::Creating {
        return Vec::new();
    }
    h.problems(status)
}

/// A task as it is now, without recording anything: a spawn that died shows as failed, a
/// live task whose container ended shows as exited (or failed when it vanished), with the
/// exit code, reason and run statistics [`crate::sandbox::refresh`] would record.
pub async fn effective<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    loaded: Loaded,
) -> Result<Loaded, InspectError> {
    let mut loaded = crate::sandbox::stuck::as_seen(store.git(), loaded)?;
    if let Some(ending) = crate::sandbox::ending(rt, store, &loaded).await? {
        ending.apply(&mut loaded.record);
    }
    Ok(loaded)
}

/// Every task, and why the engine was not asked if it was not (one line for the user).
pub struct Tasks {
    pub seen: Vec<Seen>,
    pub unchecked: Option<String>,
}

/// Every task of the repository, checked with one listing of the repository's objects
/// (three engine requests however many tasks there are); a task that seems broken is
/// checked again object by object. The engine is asked only when there are tasks.
pub async fn all(ctx: &Ctx) -> Result<Tasks, InspectError> {
    // A spawn that died is known from its lease alone, engine or not.
    let tasks = ctx
        .store
        .all()?
        .into_iter()
        .map(|l| crate::sandbox::stuck::as_seen(&ctx.git, l))
        .collect::<Result<Vec<_>>>()?;
    if tasks.is_empty() {
        return Ok(Tasks {
            seen: Vec::new(),
            unchecked: None,
        });
    }
    // Each engine is asked about its own tasks, all at once; one that does not answer
    // leaves only its own tasks unchecked.
    let order: std::collections::HashMap<String, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, l)| (l.record.name.clone(), i))
        .collect();
    let mut by_engine: Vec<(Option<String>, Vec<Loaded>)> = Vec::new();
    for l in tasks {
        match by_engine.iter_mut().find(|(e, _)| *e == l.record.engine) {
            Some((_, group)) => group.push(l),
            None => by_engine.push((l.record.engine.clone(), vec![l])),
        }
    }
    let checked = futures_util::future::join_all(by_engine.into_iter().map(|(_, group)| async {
        match super::engine_of_for_reading(ctx, &group[0].record).await {
            Ok(rt) => all_on(ctx, &rt, group).await,
            Err(e) => Ok(unchecked(group, &e)),
        }
    }))
    .await;
    let mut all = Tasks {
        seen: Vec::new(),
        unchecked: None,
    };
    for part in checked {
        let part = part?;
        all.seen.extend(part.seen);
        all.unchecked = match (all.unchecked.take(), part.unchecked) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
    }
    // In the store's order, whichever engine answered first.
    all.seen
        .sort_by_key(|s| order.get(&s.loaded.record.name).copied());
    Ok(all)
}

fn unchecked(tasks: Vec<Loaded>, why: &anyhow::Error) -> Tasks {
    Tasks {
        seen: tasks
            .into_iter()
            .map(|loaded| Seen {
                loaded,
                checked: false,
                problems: Vec::new(),
            })
            .collect(),
        unchecked: Some(format!("{why:#}")),
    }
}

/// [`all`] with an engine that answered the connection.
pub async fn all_on<R: Runtime>(
    ctx: &Ctx,
    rt: &R,
    tasks: Vec<Loaded>,
) -> Result<Tasks, InspectError> {
    let inv = match bounded(rt.inventory(&[(LABEL_REPO, &ctx.repo.id)])).await {
        Ok(inv) => inv,
        Err(e) => return Ok(unchecked(tasks, &e)),
    };
    let mut seen = Vec::new();
    for mut loaded in tasks {
        let h = health::from_inventory(&inv, &loaded);
        let ended = matches!(
            h.container,
            Some(ContainerState::Exited(_) | ContainerState::Missing)
        );
        if is_live(loaded.record.status) && ended {
            loaded = effective(rt, &ctx.store, loaded).await?;
        }
        let mut problems = reportable(&h, loaded.record.status);
        if !problems.is_empty() {
            // Confirm object by object (only for a task that seems broken): the listing does
            // not show an object created since, or one without this repository's labels.
            if let Ok(h) = bounded(health::check(rt, &loaded)).await {
                problems = reportable(&h, loaded.record.status);
            }
        }
        seen.push(Seen {
            loaded,
            checked: true,
            problems,
        });
    }
    Ok(Tasks {
        seen,
        unchecked: None,
    })
}

/// One task, checked object by object (without an engine, as its refs say). Also returns
/// why the checks could not be made when the engine stopped answering.
pub async fn one<R: Runtime>(
    ctx: &Ctx,
    loaded: Loaded,
    rt: Option<&R>,
) -> Result<(Seen, Option<String>), InspectError> {
    let unchecked = |loaded, why| {
        Ok((
            Seen {
                loaded,
                checked: false,
                problems: Vec::new(),
            },
            why,
        ))
    };
    let Some(rt) = rt else {
        return unchecked(crate::sandbox::stuck::as_seen(&ctx.git, loaded)?, None);
    };
    let loaded = effective(rt, &ctx.store, loaded).await?;
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
            Ok((
                Seen {
                    loaded,
                    checked: true,
                    problems,
                },
                None,
            ))
        }
        Err(e) => unchecked(loaded, Some(e.to_string())),
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

/// One row of `list`.
#[derive(Serialize)]
pub struct Row {
    #[serde(rename = "task")]
    pub name: String,
    pub agent: String,
    pub status: String,
    /// The status as `list` shows it (`running?`, `running (gateway down)`).
    #[serde(skip)]
    pub status_text: String,
    /// Whether the engine confirmed the status; false when it could not be reached and the
    /// status is what the refs last recorded.
    pub status_checked: bool,
    /// What is wrong with the task's runtime objects (`gateway down`, `network missing`, ...).
    pub problems: Vec<String>,
    pub exit_code: Option<i64>,
    pub created: i64,
    pub base: String,
    pub base_branch: Option<String>,
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
    pub uncommitted: bool,
    pub turns: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    /// A queued task's place in the queue (1 = next).
    pub queue_position: Option<usize>,
    /// The engine it runs on, by name (none: the environment's).
    pub engine: Option<String>,
    /// Where `git agent merge` brought the task's work, if it did.
    pub merged: Option<crate::task::Merge>,
    /// The task this one retries (`git agent retry`), if any.
    pub retry_of: Option<String>,
    /// How many follow-ups `git agent continue` sent it.
    pub followups: u32,
    /// The remote a fetched task came from (its name is `<remote>/<task>`); none for a
    /// task of this repository.
    pub fetched_from: Option<String>,
}

/// What `list` shows.
pub struct Listing {
    pub rows: Vec<Row>,
    /// Why the engine could not be asked, if it could not.
    pub unchecked: Option<String>,
    /// Fetched tasks that were not listed, each with why (a bad name or record).
    pub refused: Vec<(String, String)>,
}

/// The repository's tasks as `list` shows them.
///
/// Reads no process per task: each task's change summary is the one its last sync recorded
/// (see [`crate::task::Changes`]). Tasks without one for their current tip (records from
/// before summaries were recorded) are summarized here, all of them in one git process, and
/// nothing is recorded.
///
/// Fetched tasks (see [`remote`]) follow the repository's own, as their refs say: the engine
/// is not asked about them, and one that cannot be read is left out and named in
/// [`Listing::refused`].
pub async fn list(ctx: &Ctx) -> Result<Listing, InspectError> {
    let mut tasks = all(ctx).await?;
    let (fetched, refused) = ctx.store.fetched()?;
    tasks.seen.extend(fetched.into_iter().map(Seen::fetched));
    let changes = summaries(&ctx.git, &tasks.seen);
    let records: Vec<&crate::task::TaskRecord> =
        tasks.seen.iter().map(|s| &s.loaded.record).collect();
    let positions = super::queue::positions(&records);
    let mut rows = Vec::new();
    for (seen, (files, ins, del)) in tasks.seen.iter().zip(changes) {
        let l = &seen.loaded;
        let r = &l.record;
        rows.push(Row {
            name: r.name.clone(),
            agent: r.agent.clone(),
            status: r.status.as_str().to_string(),
            status_text: match positions.get(&r.name) {
                Some(p) => format!("queued #{p}"),
                None => seen.status_text(),
            },
            status_checked: seen.checked,
            problems: seen.problems.iter().map(|p| p.to_string()).collect(),
            exit_code: r.exit_code,
            created: r.created,
            base: r.base.clone(),
            base_branch: r.base_branch.clone(),
            files_changed: files,
            insertions: ins,
            deletions: del,
            uncommitted: l.ref_value("wip").is_some(),
            turns: r.stats.as_ref().and_then(|s| s.turns),
            input_tokens: r.stats.as_ref().and_then(|s| s.input_tokens),
            output_tokens: r.stats.as_ref().and_then(|s| s.output_tokens),
            cost_usd: r.stats.as_ref().and_then(|s| s.cost_usd),
            queue_position: positions.get(&r.name).copied(),
            engine: r.engine.clone(),
            merged: r.merged.clone(),
            retry_of: r.retry_of.clone(),
            followups: r.followups,
            fetched_from: remote::split(&r.name).map(|(remote, _)| remote.to_string()),
        });
    }
    Ok(Listing {
        rows,
        unchecked: tasks.unchecked,
        refused,
    })
}

/// Each task's `(files, insertions, deletions)` against its base: none for a task with no
/// work yet, the recorded summary when it is for the task's tip, else computed, all at once.
/// A summary git cannot compute (a missing object) shows as no change, as before.
fn summaries(git: &crate::git::Git, seen: &[Seen]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::with_capacity(seen.len());
    let mut missing = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        let l = &s.loaded;
        let tip = l.tip();
        let recorded = l.record.changes.as_ref().and_then(|c| c.for_tip(tip));
        out.push(match recorded {
            _ if tip == l.record.base => (0, 0, 0),
            Some(c) => (c.files, c.insertions, c.deletions),
            None => {
                missing.push((i, (l.record.base.as_str(), tip)));
                (0, 0, 0)
            }
        });
    }
    let pairs: Vec<(&str, &str)> = missing.iter().map(|(_, p)| *p).collect();
    let computed = git.shortstats(&pairs).unwrap_or_else(|_| {
        // One pair git cannot read fails the batch: the others are summarized one by one.
        pairs
            .iter()
            .map(|p| git.shortstats(&[*p]).ok().and_then(|mut v| v.pop()))
            .map(Option::unwrap_or_default)
            .collect()
    });
    for ((i, _), stat) in missing.iter().zip(computed) {
        out[*i] = stat;
    }
    out
}

/// Something wrong with a task's runtime objects, and the command that repairs it.
#[derive(Serialize)]
pub struct Problem {
    pub problem: &'static str,
    pub fix: String,
}

/// What `status` shows of one task.
pub struct Detail {
    pub seen: Seen,
    pub problems: Vec<Problem>,
    pub network: Option<NetworkUse>,
    pub history: Vec<(i64, String)>,
    /// Why the engine could not be asked, one line per attempt that failed.
    pub unchecked: Vec<String>,
    /// For a running task: whether a follower brings its work home by itself (see
    /// [`super::follow`]); `None` for a task that does not run.
    pub following: Option<bool>,
    /// A queued task's place in its repository's queue (1 = next).
    pub queue_position: Option<usize>,
    /// Tokens and cost summed over the task's group (`None` outside a group).
    pub group_usage: Option<crate::task::usage::Usage>,
}

/// One task (any unique prefix of its name) in detail.
pub async fn status(ctx: &Ctx, task: &str) -> Result<Detail, InspectError> {
    let loaded = ctx.store.resolve(task)?;
    if remote::is_fetched(&loaded.record.name) {
        let history = ctx.store.history(&loaded)?;
        return Ok(Detail {
            seen: Seen::fetched(loaded),
            problems: Vec::new(),
            network: None,
            history,
            unchecked: Vec::new(),
            following: None,
            queue_position: None,
            group_usage: None,
        });
    }
    let rt = super::engine_of_for_reading(ctx, &loaded.record).await;
    let mut unchecked: Vec<String> = rt
        .as_ref()
        .err()
        .map(|e| e.to_string())
        .into_iter()
        .collect();
    let (seen, why) = one(ctx, loaded, rt.as_ref().ok()).await?;
    unchecked.extend(why);
    let problems = seen
        .problems
        .iter()
        .map(|p| Problem {
            problem: p,
            fix: fix_for(p, &seen.loaded.record.name),
        })
        .collect();
    let network = network_use(rt.as_ref().ok(), &ctx.store, &seen.loaded).await?;
    let history = ctx.store.history(&seen.loaded)?;
    let following = (seen.loaded.record.status == Status::Running)
        .then(|| super::follow::active(&ctx.git, &seen.loaded.record.name));
    let queue_position = if seen.loaded.record.status == Status::Queued {
        let all = ctx.store.all()?;
        let records: Vec<&crate::task::TaskRecord> = all.iter().map(|l| &l.record).collect();
        super::queue::positions(&records)
            .get(&seen.loaded.record.name)
            .copied()
    } else {
        None
    };
    let group_usage = match &seen.loaded.record.group {
        Some(group) => {
            let all = ctx.store.all()?;
            let members = all
                .iter()
                .map(|l| &l.record)
                .filter(|r| r.group.as_ref() == Some(group) && r.name != seen.loaded.record.name);
            // This task as seen now (its ending may not be recorded yet), the others as
            // recorded.
            let t = crate::task::usage::totals(members.chain([&seen.loaded.record]));
            t.groups.get(group).cloned()
        }
        None => None,
    };
    Ok(Detail {
        seen,
        problems,
        network,
        history,
        unchecked,
        following,
        queue_position,
        group_usage,
    })
}

/// A task's network use, for display and JSON.
#[derive(Debug, serde::Serialize)]
pub struct NetworkUse {
    pub profile: String,
    pub open: bool,
    pub allow: Vec<String>,
    pub connections: Vec<Summary>,
}

/// Gather a task's policy and connections (live from its gateway while it runs).
pub async fn network_use<R: Runtime>(
    rt: Option<&R>,
    store: &TaskStore,
    loaded: &Loaded,
) -> Result<Option<NetworkUse>, InspectError> {
    let Some(policy) = &loaded.record.network else {
        return Ok(None);
    };
    let conns: Vec<Connection> = gateway::connections(rt, store, loaded).await?;
    Ok(Some(NetworkUse {
        profile: policy.profile.clone(),
        open: policy.open,
        allow: policy.allow.clone(),
        connections: summarize(&conns),
    }))
}

impl NetworkUse {
    /// Human lines: the policy, then hosts reached and refused.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{}{}",
            self.profile,
            if self.open {
                " (every host)".to_string()
            } else if self.allow.is_empty() {
                String::new()
            } else {
                format!(", allows {}", self.allow.join(", "))
            }
        )];
        for (label, decision) in [
            ("reached", "allowed"),
            ("refused", "denied"),
            ("failed", "failed"),
        ] {
            let rows: Vec<String> = self
                .connections
                .iter()
                .filter(|s| s.decision == decision)
                .map(|s| {
                    let times = if s.count == 1 {
                        String::new()
                    } else {
                        format!(" x{}", s.count)
                    };
                    format!("{}:{}{times}", s.host, s.port)
                })
                .collect();
            if !rows.is_empty() {
                lines.push(format!("{label} {}", rows.join(", ")));
            }
        }
        lines
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
