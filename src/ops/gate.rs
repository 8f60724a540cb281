//! The pre-push gate (`git agent hook-run pre-push`, switched on by `agent.hooks.prePush`):
//! refuses a push that carries commits an agent made in a sandbox that git-agent did not
//! promote (a user merged or cherry-picked `refs/agent/<task>/head` straight into a branch).
//! Promoted work is re-created as the user's commits, so it is never one of the agent's.
//!
//! It reads the lines git passes on stdin and the refs only: two `git rev-list`-like scans
//! in all, however many commits or tasks there are, no process per commit. It must not print
//! and changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::{Ctx, Events};

const ZERO: &str = "0000000000000000000000000000000000000000";

/// One line of what git passes a pre-push hook on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub local_ref: String,
    pub local: String,
    pub remote_ref: String,
    pub remote: String,
}

/// Parse the pre-push hook's stdin; lines that are not four fields with object ids are
/// ignored (git writes nothing else there).
pub fn parse(stdin: &str) -> Vec<Pushed> {
    stdin
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let p = Pushed {
                local_ref: f.next()?.to_string(),
                local: f.next()?.to_string(),
                remote_ref: f.next()?.to_string(),
                remote: f.next()?.to_string(),
            };
            (f.next().is_none()
                && crate::git::is_hex_id(&p.local)
                && crate::git::is_hex_id(&p.remote))
            .then_some(p)
        })
        .collect()
}

/// A commit of a task's sandbox in the pushed range.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RawCommit {
    pub commit: String,
    pub task: String,
}

/// Why the gate refused a push.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("refusing to push {} commit(s) made in a git-agent sandbox and not promoted: {}", commits.len(), shown(commits))]
    Unpromoted { commits: Vec<RawCommit> },
    #[error(
        "refusing to push the promoted work of task {task}: review flagged {flags} change(s) that were not acknowledged"
    )]
    Unacknowledged { task: String, flags: usize },
    /// A failure below the gate (git), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn shown(commits: &[RawCommit]) -> String {
    let mut parts: Vec<String> = commits
        .iter()
        .take(5)
        .map(|c| format!("{} (task {})", &c.commit[..c.commit.len().min(12)], c.task))
        .collect();
    if commits.len() > 5 {
        parts.push(format!("and {} more", commits.len() - 5));
    }
    parts.join(", ")
}

impl super::OpError for GateError {
    fn hint(&self) -> Option<String> {
        match self {
            GateError::Unpromoted { commits } => {
                let tasks: BTreeSet<&str> = commits.iter().map(|c| c.task.as_str()).collect();
                let task = tasks.iter().next().copied().unwrap_or("<task>");
                Some(format!(
                    "review and promote the work with `git agent review {task}` and `git agent commit {task}` (it re-creates the commits as yours), take the raw commits out of the branch, then push again; `git push --no-verify` skips this check"
                ))
            }
            GateError::Unacknowledged { task, .. } => Some(format!(
                "look at the flags with `git agent review {task}`, then acknowledge them with `git agent review {task} --ack` and push again"
            )),
            GateError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            GateError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            GateError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// Refuse the push of `pushed` to `remote` when it carries raw agent commits, or promoted
/// work whose review flags were not acknowledged.
pub fn check(ctx: &Ctx, remote: &str, pushed: &[Pushed]) -> Result<(), GateError> {
    let git = &ctx.git;
    let refs = git.refs_under(&["refs/agent/"])?;
    let mut tips: Vec<(String, String)> = Vec::new(); // (ref name, task)
    let mut bases: BTreeMap<String, String> = BTreeMap::new(); // task -> base
    for (name, oid) in &refs {
        let Some(rest) = name.strip_prefix("refs/agent/") else {
            continue;
        };
        let Some((task, leaf)) = rest.rsplit_once('/') else {
            continue;
        };
        match leaf {
            "head" | "wip" => tips.push((name.clone(), task.to_string())),
            "base" => {
                bases.insert(task.to_string(), oid.clone());
            }
            _ => {}
        }
    }
    let locals: Vec<&str> = pushed
        .iter()
        .map(|p| p.local.as_str())
        .filter(|l| *l != ZERO)
        .collect();
    if tips.is_empty() || locals.is_empty() {
        return Ok(());
    }
    // A base that is itself a task's tip (a task chained after another) holds agent work.
    let tip_values: BTreeSet<&str> = refs
        .iter()
        .filter(|(n, _)| tips.iter().any(|(t, _)| t == n))
        .map(|(_, o)| o.as_str())
        .collect();
    let excluded_bases: Vec<&str> = bases
        .values()
        .map(String::as_str)
        .filter(|b| !tip_values.contains(b))
        .collect();

    // The commits the push sends that the task bases do not hold.
    let mut cmd = git.command();
    cmd.args(["rev-list", "--ignore-missing"])
        .args(&locals)
        .arg("--not")
        .args(
            pushed
                .iter()
                .map(|p| p.remote.as_str())
                .filter(|r| *r != ZERO),
        )
        .args(&excluded_bases);
    if !remote.is_empty() && !remote.starts_with('-') {
        cmd.arg(format!("--remotes={remote}"));
    }
    let out = crate::git::output_of(&mut cmd, None)?;
    let sent: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if sent.is_empty() {
        return Ok(());
    }

    // The agents' own commits, each with the task whose ref reached it.
    let mut cmd = git.command();
    cmd.args(["log", "--format=%H %S"])
        .args(tips.iter().map(|(r, _)| r.as_str()))
        .arg("--not")
        .args(&excluded_bases)
        .arg("--");
    let out = crate::git::output_of(&mut cmd, None)?;
    let task_of: BTreeMap<&str, &str> =
        tips.iter().map(|(r, t)| (r.as_str(), t.as_str())).collect();
    let mut raw = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((commit, source)) = line.split_once(' ') else {
            continue;
        };
        if sent.contains(commit) {
            raw.push(RawCommit {
                commit: commit.to_string(),
                task: task_of.get(source).copied().unwrap_or(source).to_string(),
            });
        }
    }
    if !raw.is_empty() {
        return Err(GateError::Unpromoted { commits: raw });
    }
    // Promoted work in the push: its review flags must have been acknowledged.
    for loaded in ctx.store.all()? {
        let Some(p) = &loaded.record.promoted else {
            continue;
        };
        if !sent.contains(&p.branch_tip) {
            continue;
        }
        let acked = loaded.record.reviewed.as_deref();
        if acked == Some(p.task_tip.as_str()) || acked == Some(loaded.tip()) {
            continue;
        }
        let facts = super::review::gather(ctx, &loaded).map_err(super::OpError::into_report)?;
        if !facts.flags.is_empty() {
            return Err(GateError::Unacknowledged {
                task: loaded.record.name.clone(),
                flags: facts.flags.len(),
            });
        }
    }
    Ok(())
}

/// Record that the user acknowledged the review flags of `task`'s work at `tip`.
pub async fn acknowledge(
    ctx: &Ctx,
    task: &str,
    tip: &str,
    events: &dyn Events,
) -> Result<(), GateError> {
    let _lock = super::lock_task(ctx, task, "review --ack", events).await?;
    super::reload(ctx, task)?;
    ctx.store.update_with(task, "review --ack", None, |r, _| {
        r.reviewed = Some(tip.to_string());
        Ok(vec![])
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_lines_are_read_strictly() {
        let a = "a".repeat(40);
        let text = format!(
            "refs/heads/main {a} refs/heads/main {ZERO}\nnot a line\nrefs/heads/x {a} refs/heads/x {a} extra\n"
        );
        assert_eq!(
            parse(&text),
            vec![Pushed {
                local_ref: "refs/heads/main".into(),
                local: a.clone(),
                remote_ref: "refs/heads/main".into(),
                remote: ZERO.into(),
            }]
        );
    }
}
