//! Promotion: turning a task's synced work into commits on the host branch `agent/<task>`,
//! made by the user's own git (identity, `commit.gpgSign`, signing keys), never in a sandbox.
//!
//! Each agent commit is re-created on its exact tree, keeping its message, so the branch's
//! content is byte for byte what the agent produced. Uncommitted agent work becomes one more
//! commit with the user's message. Provenance is attached as a note under `refs/notes/agent`.
//! The user's work tree, index and HEAD are never touched.
//!
//! Which commits are re-created is decided by one function, [`plan`], which `review` uses
//! too, so what review flags is exactly what commit promotes. The objects are written in a
//! quarantine (see [`recreate`]) and enter the repository together with one atomic update of
//! the branch and the notes ref, so an interrupted promotion leaves nothing behind.

mod notes;
mod pack;
pub mod partial;
mod recreate;

use std::collections::HashMap;

use anyhow::Result;

use super::{Git, RefUpdate};
use crate::ops::OpError;
use crate::task::Promotion;

pub const NOTES_REF: &str = "refs/notes/agent";

pub use recreate::sweep;

/// Why a promotion did not happen. Nothing was committed in any case.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("task '{task}' has no changes to commit")]
    NoChanges { task: String },
    #[error("task '{task}' has no changes to commit")]
    NoWork { task: String },
    #[error("task '{task}' has nothing new to commit since the last commit")]
    NothingNew { task: String },
    #[error("branch agent/{task} already exists")]
    BranchExists { task: String },
    #[error("branch agent/{task} was deleted since git-agent last wrote it")]
    BranchDeleted {
        task: String,
        /// The branch commit git-agent last wrote.
        last: Option<String>,
    },
    #[error("branch agent/{task} changed since git-agent last wrote it")]
    BranchChanged { task: String },
    #[error("branch agent/{task} changed while git-agent was writing it")]
    BranchMoved { task: String },
    #[error(
        "commit {} of task '{task}' has a parent ({}) that is neither the task's base history nor promoted before; refusing to put an agent commit on agent/{task}",
        short(commit),
        short(parent)
    )]
    ForeignParent {
        task: String,
        commit: String,
        parent: String,
    },
    #[error("task '{task}' has no changes to commit in {}", pathspec.join(" "))]
    NothingInPathspec { task: String, pathspec: Vec<String> },
    #[error("the commit message is empty; nothing was committed")]
    EmptyMessage,
    #[error(
        "task '{task}' kept changing while its work was committed; nothing was committed: {last}"
    )]
    KeptChanging { task: String, last: String },
    #[error("git does not know who you are, so it cannot commit")]
    Identity,
    #[error("signing the commit failed: {detail}")]
    Signing { detail: String },
    #[error(transparent)]
    Other(anyhow::Error),
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

impl From<anyhow::Error> for PromoteError {
    /// A failure from below, or one of these carried through an `anyhow::Error` (from the
    /// quarantine's writer), recognised by its type.
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<PromoteError>() {
            Ok(p) => p,
            Err(e) => PromoteError::Other(e),
        }
    }
}

impl OpError for PromoteError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            PromoteError::NoChanges { .. } => {
                "check its output with `git agent logs`, or sync it first with `git agent sync`"
                    .into()
            }
            PromoteError::NoWork { task } => format!(
                "its agent made no commit and left no change; see what it did with `git agent logs {task}`"
            ),
            PromoteError::NothingNew { task } => format!(
                "its work is already on branch agent/{task}; push it with `git agent push {task}`"
            ),
            PromoteError::BranchExists { task } => format!(
                "git-agent did not create it; rename or delete it (`git branch -m agent/{task} <new>`) and try again"
            ),
            PromoteError::BranchDeleted { task, last } => format!(
                "restore it with `git branch agent/{task} {}` and run commit again",
                last.as_deref().unwrap_or("<commit>")
            ),
            PromoteError::BranchChanged { task } => format!(
                "git-agent will not overwrite your commits; rename that branch (`git branch -m agent/{task} <new>`) and run commit again"
            ),
            PromoteError::BranchMoved { task } => format!(
                "nothing was committed; look at it with `git log agent/{task}`, rename it (`git branch -m agent/{task} <new>`) and run commit again"
            ),
            PromoteError::ForeignParent { task, .. } => format!(
                "look at the task's history with `git log --graph refs/agent/{task}/head`"
            ),
            PromoteError::NothingInPathspec { task, .. } => format!(
                "see which paths it changed with `git agent review {task} --stat`"
            ),
            PromoteError::EmptyMessage => {
                "pass a message with `git agent commit -m <message>`".into()
            }
            PromoteError::KeptChanging { task, .. } => format!(
                "wait for the commands changing it to finish, then run `git agent commit {task}` again"
            ),
            PromoteError::Identity => {
                "set your identity: git config --global user.name \"Your Name\"; git config --global user.email you@example.com".into()
            }
            PromoteError::Signing { .. } => {
                "check user.signingKey and gpg.format, or commit unsigned with `git -c commit.gpgSign=false agent commit`".into()
            }
            PromoteError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            PromoteError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> std::result::Result<anyhow::Error, Self> {
        match self {
            PromoteError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// What to promote.
pub struct PromoteRequest<'a> {
    pub task: &'a str,
    pub agent: &'a str,
    pub base: &'a str,
    pub head: &'a str,
    pub wip: Option<&'a str>,
    pub previous: Option<&'a Promotion>,
    /// Message for the commit of uncommitted work; asked for when `None` and needed.
    pub message: Option<String>,
    /// Promote only the changes to these paths (git pathspecs; empty: all of them). See
    /// [`partial`].
    pub pathspec: &'a [String],
}

impl PromoteRequest<'_> {
    /// Is this promotion, or the one before it, partial (see [`partial`])?
    fn replays(&self) -> bool {
        !self.pathspec.is_empty() || self.previous.is_some_and(Promotion::is_partial)
    }
}

/// What promotion produced.
#[derive(Debug)]
pub struct Promoted {
    pub promotion: Promotion,
    /// The branch existed with this task's work and was taken over (see [`promote`]).
    pub adopted: bool,
    /// `(task commit, new branch commit)` in order.
    pub commits: Vec<(String, String)>,
}

/// One agent commit as promotion sees it.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub parents: Vec<String>,
    pub tree: String,
    /// `Name <email>` as the agent set them (not kept on the re-created commit).
    pub author: String,
    pub committer: String,
    /// The full message (UTF-8, ending in one newline unless empty).
    pub message: String,
}

/// The commits `commit` will re-create, in order (parents first).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub commits: Vec<Source>,
    /// The uncommitted-work snapshot to re-create after them, if it is not promoted yet.
    pub wip: Option<String>,
    /// Task commits that are already promoted, mapped to their branch commits.
    pub done: HashMap<String, String>,
}

/// The task tip promotion works from: uncommitted snapshot, else the branch.
pub fn task_tip<'a>(head: &'a str, wip: Option<&'a str>) -> &'a str {
    wip.unwrap_or(head)
}

/// Does promoting need a message from the user (uncommitted work not promoted yet)?
pub fn needs_message(git: &Git, req: &PromoteRequest<'_>) -> Result<bool> {
    match req.wip {
        Some(w) if req.replays() || req.previous.map(|p| p.task_tip.as_str()) != Some(w) => {
            if req.pathspec.is_empty() {
                return Ok(!snapshot_is_empty(git, w)?);
            }
            let mut args = vec![
                "diff-tree".to_string(),
                "--quiet".into(),
                "-r".into(),
                format!("{w}^"),
                w.to_string(),
                "--".into(),
            ];
            args.extend(req.pathspec.iter().cloned());
            Ok(!git.test(&args)?)
        }
        _ => Ok(false),
    }
}

/// Is the snapshot only a marker of where the agent's HEAD was, with no change of its own?
/// The sandbox sends one when the agent left its branch (another branch, a detached HEAD)
/// with a clean tree, so the commits there come home too; they are promoted without an
/// extra commit.
pub fn snapshot_is_empty(git: &Git, wip: &str) -> Result<bool> {
    let tree = git.run(["rev-parse", &format!("{wip}^{{tree}}")])?;
    let parent_tree = git.run(["rev-parse", &format!("{wip}~1^{{tree}}")])?;
    Ok(tree == parent_tree)
}

/// Separator of the fields in the `git log` format below: an identity cannot contain a
/// newline (it would end its header line), and the message, which can, comes last.
const FIELD: char = '\n';

fn is_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit whose history is promoted: the parent of the uncommitted snapshot `wip` (the
/// agent's HEAD, on whatever branch or detached), else the task's branch `head`.
fn walk_start(git: &Git, head: &str, wip: Option<&str>) -> Result<String> {
    match wip {
        Some(w) => git.run([
            "rev-parse",
            "--verify",
            "--end-of-options",
            &format!("{w}^"),
        ]),
        None => Ok(head.to_string()),
    }
}

/// The commits under the tip actually promoted (see [`walk_start`]) down to `base` that are
/// not promoted yet, as `previous` records, followed by the snapshot `wip`, in the order
/// `commit` re-creates them. Every commit that ends up on the branch is one of these or was
/// promoted before: never a raw agent commit. One `git log` for the lot.
pub fn plan(
    git: &Git,
    base: &str,
    head: &str,
    wip: Option<&str>,
    previous: Option<&Promotion>,
) -> Result<Plan> {
    let mut done = HashMap::new();
    let start = walk_start(git, head, wip)?;
    let head = start.as_str();
    let mut range = vec![
        "-c".to_string(),
        "log.showSignature=false".into(),
        "-c".into(),
        "i18n.logOutputEncoding=UTF-8".into(),
        "log".into(),
        "--no-color".into(),
        "--no-mailmap".into(),
        "--encoding=UTF-8".into(),
        "-z".into(),
        "--reverse".into(),
        "--topo-order".into(),
        "--format=%H %P%n%T%n%an <%ae>%n%cn <%ce>%n%B".into(),
        head.to_string(),
        format!("^{base}"),
    ];
    if let Some(p) = previous {
        done.insert(p.task_tip.clone(), p.branch_tip.clone());
        if git.test(["merge-base", "--is-ancestor", &p.task_tip, head])? {
            range.push(format!("^{}", p.task_tip));
        } else if let Ok(parent) = git.run(["rev-parse", &format!("{}^", p.task_tip)]) {
            // The previous tip was an uncommitted snapshot: its parent was the agent's head,
            // which is already promoted and now maps to the snapshot's promoted commit.
            if git.test(["merge-base", "--is-ancestor", &parent, head])? {
                range.push(format!("^{parent}"));
                done.insert(parent, p.branch_tip.clone());
            }
        }
    }
    range.push("--".into());
    let mut cmd = git.command();
    cmd.args(&range);
    let out = super::output_of(&mut cmd, None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut commits: Vec<Source> = Vec::new();
    for rec in text.split('\0') {
        let rec = rec.trim_start_matches('\n');
        if rec.is_empty() {
            continue;
        }
        let mut f = rec.splitn(5, FIELD);
        let (Some(ids), Some(tree), Some(author), Some(committer), Some(message)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            anyhow::bail!("unexpected git log output while listing the task's commits");
        };
        let ids: Vec<&str> = ids.split(' ').filter(|s| !s.is_empty()).collect();
        if ids.is_empty() || !ids.iter().all(|i| is_id(i)) || !is_id(tree) {
            anyhow::bail!("unexpected git log output while listing the task's commits");
        }
        let mut ids = ids.into_iter();
        let id = ids.next().unwrap_or_default().to_string();
        let message = message.trim_end_matches('\n');
        commits.push(Source {
            id,
            parents: ids.map(str::to_string).collect(),
            tree: tree.to_string(),
            author: author.to_string(),
            committer: committer.to_string(),
            message: if message.is_empty() {
                String::new()
            } else {
                format!("{message}\n")
            },
        });
    }
    // Whatever a message holds, the list is exactly the commits of the range.
    let mut count = vec!["rev-list".to_string(), "--count".into()];
    count.extend(range.iter().skip_while(|a| *a != head).cloned());
    let expected: usize = git.run(&count)?.parse().unwrap_or(usize::MAX);
    let unique: std::collections::HashSet<&str> = commits.iter().map(|c| c.id.as_str()).collect();
    if expected != commits.len() || unique.len() != commits.len() {
        anyhow::bail!(
            "git log listed {} commits where rev-list counts {expected}; refusing to promote",
            commits.len()
        );
    }
    let wip = wip
        .filter(|w| previous.map(|p| p.task_tip.as_str()) != Some(*w))
        .map(str::to_string);
    Ok(Plan { commits, wip, done })
}

/// Most attempts at the ref transaction when other commands keep moving the task's record
/// or the notes ref.
const MAX_ATTEMPTS: usize = 50;

/// The promotion a branch commit records, when its provenance note says it was promoted
/// from this task's work: its note names this task and base, and its source is the task's
/// tip or in its history (directly, or as an uncommitted snapshot on top of it). A branch
/// the user made carries no such note.
fn adoptable(git: &Git, req: &PromoteRequest<'_>, commit: &str, tip: &str) -> Option<Promotion> {
    let note = git
        .run(["notes", "--ref", NOTES_REF, "show", commit])
        .ok()?;
    let field = |key: &str| {
        note.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    if field("git-agent-task:")? != req.task
        || field("git-agent-base:")? != req.base
        || field("git-agent-pathspec:").is_some()
    {
        // A partial promotion's branch is not taken over: its record says what is missing.
        return None;
    }
    let source = field("git-agent-source:")?;
    if !is_id(&source) {
        return None;
    }
    let related = source == tip
        || git
            .test(["merge-base", "--is-ancestor", &source, tip])
            .unwrap_or(false)
        || git
            .test(["merge-base", "--is-ancestor", &format!("{source}^"), tip])
            .unwrap_or(false);
    related.then(|| Promotion {
        task_tip: source,
        branch_tip: commit.to_string(),
        ..Promotion::default()
    })
}

/// Promote a task's work: re-create its commits as the user and move the branch, the notes
/// ref and the task's record in ONE ref transaction. `record` returns the ref updates that
/// record a promotion in the task's state (see `TaskStore::prepare`); it is called again
/// when the transaction loses a race on them. A kill at any point leaves either the old
/// state or the new one; objects moved in before a transaction that never happened are
/// removed by the next command (see [`recreate::sweep`]).
///
/// A branch the record does not know is adopted when its notes say it holds this task's
/// work (left by a promotion that died between writing the branch and the record).
pub fn promote(
    git: &Git,
    req: PromoteRequest<'_>,
    record: &mut dyn FnMut(&Promotion) -> Result<Vec<RefUpdate>>,
    events: &dyn crate::ops::Events,
) -> std::result::Result<Promoted, PromoteError> {
    let branch = format!("refs/heads/agent/{}", req.task);
    let tip = task_tip(req.head, req.wip);
    let task = req.task.to_string();
    if tip == req.base {
        return Err(PromoteError::NoChanges { task });
    }
    let current = git.ref_value(&branch)?;
    let mut previous = req.previous.cloned();
    let mut adopted = false;
    if current != previous.as_ref().map(|p| p.branch_tip.clone()) {
        match current
            .as_deref()
            .and_then(|c| adoptable(git, &req, c, tip))
        {
            Some(p) => {
                previous = Some(p);
                adopted = true;
            }
            None => {
                return Err(match (&current, &previous) {
                    (Some(_), None) => PromoteError::BranchExists { task },
                    (None, _) => PromoteError::BranchDeleted {
                        task,
                        last: previous.map(|p| p.branch_tip),
                    },
                    _ => PromoteError::BranchChanged { task },
                });
            }
        }
    }
    let expected = previous.as_ref().map(|p| p.branch_tip.clone());
    if previous.as_ref().map(|p| p.task_tip.as_str()) == Some(tip) && !req.replays() {
        if adopted {
            // The work is on the branch already; only the record is behind.
            let promotion = previous.clone().expect("adopted");
            let updates = vec![RefUpdate {
                name: branch.clone(),
                new: expected.clone(),
                old: expected.clone(),
            }];
            transact(git, &branch, &updates, &promotion, record, None)?;
            return Ok(Promoted {
                promotion,
                commits: vec![],
                adopted,
            });
        }
        return Err(PromoteError::NothingNew { task });
    }

    let sign = git
        .run(["config", "--bool", "commit.gpgSign"])
        .map(|v| v == "true")
        .unwrap_or(false);
    let note = |source: &str, agent_ident: Option<&Source>| {
        let mut n = format!(
            "git-agent-task: {}\ngit-agent-agent: {}\ngit-agent-source: {source}\ngit-agent-base: {}\n",
            req.task, req.agent, req.base
        );
        if !req.pathspec.is_empty() {
            n += &partial::note_line(req.pathspec);
        }
        if let Some(s) = agent_ident {
            n += &format!(
                "git-agent-source-author: {}\ngit-agent-source-committer: {}\n",
                s.author, s.committer
            );
        }
        n
    };
    let (jobs, sources, pathspec, replay_from) = if req.replays() {
        // Replay from the last full promotion, restricted to the pathspec (see `partial`).
        let replay_from = match previous.as_ref() {
            Some(p) if p.is_partial() => p.replay_from.clone(),
            Some(p) => Some(p.task_tip.clone()),
            None => None,
        };
        let from = replay_from.clone().map(|t| Promotion {
            task_tip: t,
            ..Promotion::default()
        });
        let plan = plan(git, req.base, req.head, req.wip, from.as_ref())?;
        let start = expected.clone().unwrap_or_else(|| req.base.to_string());
        let written = partial::jobs(
            git,
            req.base,
            &start,
            &plan,
            req.pathspec,
            req.message.as_deref(),
            &note,
        )?;
        if written.jobs.is_empty() {
            return Err(if req.pathspec.is_empty() {
                PromoteError::NothingNew { task }
            } else {
                PromoteError::NothingInPathspec {
                    task,
                    pathspec: req.pathspec.to_vec(),
                }
            });
        }
        // Partial after partial: the branch holds both pathspecs' changes now.
        let mut pathspec = Vec::new();
        if !req.pathspec.is_empty() {
            if let Some(p) = previous.as_ref() {
                pathspec.extend(p.pathspec.iter().cloned());
            }
            pathspec.extend(req.pathspec.iter().cloned());
        }
        let replay_from = (!pathspec.is_empty()).then_some(replay_from).flatten();
        (written.jobs, written.sources, pathspec, replay_from)
    } else {
        let mut plan = plan(git, req.base, req.head, req.wip, previous.as_ref())?;
        // A new commit may have any earlier promoted commit as a parent (an agent merging an old
        // side of its history), not only the last tip: the notes map each of them.
        if let Some(p) = previous.as_ref() {
            for (source, promoted) in promoted_by_notes(git, req.task, req.base, &p.branch_tip)? {
                plan.done.entry(source).or_insert(promoted);
            }
        }
        // A parent that is neither written here nor promoted before must be the user's own
        // history (the base or its ancestors): a raw agent commit never goes under the branch.
        let planned: std::collections::HashSet<&str> =
            plan.commits.iter().map(|c| c.id.as_str()).collect();
        for s in &plan.commits {
            for p in &s.parents {
                let known = planned.contains(p.as_str()) || plan.done.contains_key(p);
                if !known && !git.test(["merge-base", "--is-ancestor", p, req.base])? {
                    return Err(PromoteError::ForeignParent {
                        task,
                        commit: s.id.clone(),
                        parent: p.clone(),
                    });
                }
            }
        }

        // Every commit to write, parents resolved to existing commits or earlier jobs.
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut jobs = Vec::with_capacity(plan.commits.len() + 1);
        let parent_of = |p: &str, index: &HashMap<&str, usize>| -> recreate::Parent {
            match (index.get(p), plan.done.get(p)) {
                (Some(i), _) => recreate::Parent::Job(*i),
                (None, Some(mapped)) => recreate::Parent::Existing(mapped.clone()),
                (None, None) => recreate::Parent::Existing(p.to_string()),
            }
        };
        for s in &plan.commits {
            let parents = s.parents.iter().map(|p| parent_of(p, &index)).collect();
            index.insert(s.id.as_str(), jobs.len());
            jobs.push(recreate::Job {
                tree: s.tree.clone(),
                parents,
                message: s.message.clone(),
                note: note(&s.id, Some(s)),
            });
        }
        if let Some(wip) = plan
            .wip
            .as_ref()
            .filter(|w| !matches!(snapshot_is_empty(git, w), Ok(true)))
        {
            let parent = git.run(["rev-parse", &format!("{wip}^")])?;
            let tree = git.run(["rev-parse", &format!("{wip}^{{tree}}")])?;
            let message = req
                .message
                .clone()
                .filter(|m| !m.trim().is_empty())
                .ok_or(PromoteError::EmptyMessage)?;
            let parents = vec![parent_of(&parent, &index)];
            jobs.push(recreate::Job {
                tree,
                parents,
                message: format!("{}\n", message.trim_end()),
                note: note(wip, None),
            });
        }
        if jobs.is_empty() && expected.is_none() {
            return Err(PromoteError::NoWork { task });
        }
        let sources: Vec<String> = plan
            .commits
            .iter()
            .map(|s| s.id.clone())
            .chain(plan.wip.clone())
            .collect();
        (jobs, sources, Vec::new(), None)
    };
    let notes_old = git.ref_value(NOTES_REF)?;
    let mut pending = recreate::write(git, req.task, &jobs, sign, notes_old.as_deref(), events)?;
    crate::crash::point("commit.quarantine-written");
    let last = pending
        .commits
        .last()
        .cloned()
        .or_else(|| expected.clone())
        .unwrap_or_else(|| req.base.to_string());
    let promotion = Promotion {
        task_tip: tip.to_string(),
        branch_tip: last.clone(),
        pathspec,
        replay_from,
    };
    let moved = pending.migrate(&branch, &last);
    crate::crash::point("commit.objects-moved");
    let updates = vec![RefUpdate {
        name: branch.clone(),
        new: Some(last.clone()),
        old: expected,
    }];
    let done = moved.map_err(PromoteError::from).and_then(|_| {
        transact(
            git,
            &branch,
            &updates,
            &promotion,
            record,
            Some((&mut pending, notes_old)),
        )
    });
    let made = pending.commits.clone();
    match done {
        Ok(()) => pending.finish(),
        Err(e) => {
            pending.abandon(git, req.task);
            return Err(e);
        }
    }
    let commits = sources.into_iter().zip(made).collect();
    Ok(Promoted {
        promotion,
        commits,
        adopted,
    })
}

/// Apply `updates` (the branch), the notes ref (when `notes` carries objects to reference)
/// and the record's updates in one transaction. A lost race on the record prepares it
/// again; one on the notes ref writes the notes commit again on the new notes tip; a branch
/// moved by someone else, or a failure that is no race, is an error at once.
fn transact(
    git: &Git,
    branch: &str,
    updates: &[RefUpdate],
    promotion: &Promotion,
    record: &mut dyn FnMut(&Promotion) -> Result<Vec<RefUpdate>>,
    mut notes: Option<(&mut recreate::Pending, Option<String>)>,
) -> std::result::Result<(), PromoteError> {
    let task = branch.trim_start_matches("refs/heads/agent/");
    let mut last_error = None;
    for attempt in 0..MAX_ATTEMPTS {
        let state = record(promotion)?;
        if let Some((pending, _)) = &mut notes {
            for u in &state {
                if let Some(new) = u.new.as_deref().filter(|_| u.name.ends_with("/state")) {
                    pending.journal_state(git, new)?;
                }
            }
        }
        let mut all = updates.to_vec();
        if let Some((pending, old)) = &notes {
            all.push(RefUpdate {
                name: NOTES_REF.to_string(),
                new: Some(pending.notes.clone()),
                old: old.clone(),
            });
        }
        all.extend(state.iter().cloned());
        crate::crash::point("commit.before-refs");
        let e = match git.transaction(&all) {
            Ok(()) => {
                crate::crash::point("commit.after-refs");
                return Ok(());
            }
            Err(e) => e,
        };
        // Which ref moved decides what to do, not the error's wording.
        let expected_branch = updates.first().and_then(|u| u.old.clone());
        if git.ref_value(branch)? != expected_branch {
            return Err(PromoteError::BranchMoved {
                task: task.to_string(),
            });
        }
        let mut raced = false;
        if let Some((pending, old)) = &mut notes {
            let now = git.ref_value(NOTES_REF)?;
            if now != *old {
                pending.renote(git, now.as_deref())?;
                pending.migrate(branch, &promotion.branch_tip)?;
                *old = now;
                raced = true;
            }
        }
        for u in &state {
            if git.ref_value(&u.name)? != u.old {
                raced = true;
            }
        }
        if !raced {
            return Err(e
                .context(format!(
                    "cannot update branch agent/{task}, {NOTES_REF} and the task's record"
                ))
                .into());
        }
        last_error = Some(e);
        std::thread::sleep(std::time::Duration::from_millis(
            1 + (attempt as u64 * 7) % 23,
        ));
    }
    Err(PromoteError::KeptChanging {
        task: task.to_string(),
        last: last_error.map(|e| format!("{e:#}")).unwrap_or_default(),
    })
}

/// Every commit promoted before for `task` on its branch (`base..branch_tip`), as
/// `(task commit, branch commit)`, read from the provenance notes.
fn promoted_by_notes(
    git: &Git,
    task: &str,
    base: &str,
    branch_tip: &str,
) -> Result<Vec<(String, String)>> {
    let out = git.run([
        "log",
        "--no-color",
        "--notes=refs/notes/agent",
        "--format=%H%x1f%N%x1e",
        branch_tip,
        &format!("^{base}"),
        "--",
    ])?;
    let mut pairs = Vec::new();
    for rec in out.split('\x1e') {
        let Some((id, note)) = rec.trim_start_matches('\n').split_once('\x1f') else {
            continue;
        };
        let field = |key: &str| {
            note.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
        };
        if field("git-agent-task:") != Some(task) {
            continue;
        }
        if let Some(source) = field("git-agent-source:").filter(|s| is_id(s)) {
            pairs.push((source.to_string(), id.to_string()));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// git in a test repository, as the agent (also for the submodules' tests).
    pub(super) fn git(dir: &std::path::Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .env("GIT_AUTHOR_NAME", "Agent")
            .env("GIT_AUTHOR_EMAIL", "agent@sandbox.invalid")
            .env("GIT_COMMITTER_NAME", "Agent")
            .env("GIT_COMMITTER_EMAIL", "agent@sandbox.invalid")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The snapshot's parent is the agent's HEAD, here on another branch than the task's:
    /// its commits are planned (re-created), not left raw under the snapshot.
    #[test]
    fn plan_walks_from_the_snapshot_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        git(d, &["commit", "-q", "--allow-empty", "-m", "base"]);
        let base = git(d, &["rev-parse", "HEAD"]);
        git(d, &["checkout", "-qb", "other"]);
        git(d, &["commit", "-q", "--allow-empty", "-m", "elsewhere"]);
        let other = git(d, &["rev-parse", "HEAD"]);
        let tree = git(d, &["rev-parse", "HEAD^{tree}"]);
        let wip = git(d, &["commit-tree", &tree, "-p", &other, "-m", "snapshot"]);
        let g = Git::discover(d).unwrap();
        let p = plan(&g, &base, &base, Some(&wip), None).unwrap();
        let ids: Vec<&str> = p.commits.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [other.as_str()]);
        assert_eq!(p.wip.as_deref(), Some(wip.as_str()));
    }

    /// Refusals are typed, each with the hint the user needs, and leave no branch behind.
    #[test]
    fn refusals_are_typed_with_their_hints() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        git(d, &["commit", "-q", "--allow-empty", "-m", "base"]);
        let base = git(d, &["rev-parse", "HEAD"]);
        git(d, &["commit", "-q", "--allow-empty", "-m", "work"]);
        let head = git(d, &["rev-parse", "HEAD"]);
        let g = Git::discover(d).unwrap();
        let req = |which: &str| PromoteRequest {
            task: "t",
            agent: "exec",
            base: &base,
            head: if which == "base" { &base } else { &head },
            wip: None,
            previous: None,
            message: None,
            pathspec: &[],
        };
        let refuse = |r| promote(&g, r, &mut |_| Ok(vec![]), &crate::ops::NoEvents).unwrap_err();
        let e = refuse(req("base"));
        assert!(
            matches!(&e, PromoteError::NoChanges { task } if task == "t"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "task 't' has no changes to commit");
        git(d, &["branch", "agent/t", &base]);
        let e = refuse(req("head"));
        assert!(matches!(e, PromoteError::BranchExists { .. }), "{e:?}");
        let report = e.into_report();
        assert_eq!(report.to_string(), "branch agent/t already exists");
        assert!(
            crate::error::find_hint(&report)
                .unwrap()
                .contains("`git branch -m agent/t <new>`")
        );
        assert_eq!(
            git(d, &["rev-parse", "agent/t"]),
            base,
            "the user's branch is untouched"
        );
    }

    /// A history with a merge and a root-level file in each commit is re-created with the
    /// same trees, the same shape, the same messages, new identities and one note each;
    /// `plan` lists exactly the commits that were written.
    #[test]
    fn merges_and_messages_survive_bulk_recreation() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        git(d, &["config", "user.name", "Test User"]);
        git(d, &["config", "user.email", "test@example.com"]);
        std::fs::write(d.join("a"), "a\n").unwrap();
        git(d, &["add", "a"]);
        git(d, &["commit", "-qm", "base"]);
        let base = git(d, &["rev-parse", "HEAD"]);
        git(d, &["checkout", "-qb", "side"]);
        std::fs::write(d.join("s"), "s\n").unwrap();
        git(d, &["add", "s"]);
        git(
            d,
            &[
                "commit",
                "-qm",
                "side\n\nbody line\n\nSigned-off-by: X <x@y>",
            ],
        );
        git(d, &["checkout", "-q", "main"]);
        std::fs::write(d.join("m"), "m\n").unwrap();
        git(d, &["add", "m"]);
        git(d, &["commit", "-qm", "main work"]);
        git(d, &["merge", "-q", "--no-ff", "-m", "merge side", "side"]);
        let head = git(d, &["rev-parse", "HEAD"]);
        git(d, &["update-ref", "refs/agent/t/head", &head]);
        git(d, &["checkout", "-q", "--detach", &base]);
        git(d, &["update-ref", "-d", "refs/heads/main"]);
        git(d, &["branch", "-qD", "side"]);

        let g = Git::discover(d).unwrap();
        let p = plan(&g, &base, &head, None, None).unwrap();
        assert_eq!(p.commits.len(), 3);
        let done = promote(
            &g,
            PromoteRequest {
                task: "t",
                agent: "exec",
                base: &base,
                head: &head,
                wip: None,
                previous: None,
                message: None,
                pathspec: &[],
            },
            &mut |_| Ok(vec![]),
            &crate::ops::NoEvents,
        )
        .unwrap();
        let sources: Vec<&str> = done.commits.iter().map(|(s, _)| s.as_str()).collect();
        let planned: Vec<&str> = p.commits.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            sources, planned,
            "commit writes exactly the planned commits"
        );
        let tip = git(d, &["rev-parse", "agent/t"]);
        assert_eq!(tip, done.promotion.branch_tip);
        assert_eq!(
            git(d, &["rev-parse", "agent/t^{tree}"]),
            git(d, &["rev-parse", &format!("{head}^{{tree}}")])
        );
        assert_eq!(git(d, &["rev-list", "--count", "--merges", "agent/t"]), "1");
        assert_eq!(
            git(d, &["log", "--format=%an|%cn", "-1", "agent/t^2"]),
            "Test User|Test User"
        );
        assert_eq!(
            git(d, &["log", "--format=%B", "-1", "agent/t^2"]),
            "side\n\nbody line\n\nSigned-off-by: X <x@y>"
        );
        assert_eq!(git(d, &["notes", "--ref=agent", "list"]).lines().count(), 3);
        let note = git(d, &["notes", "--ref=agent", "show", "agent/t^2"]);
        assert!(note.contains("git-agent-source-author: Agent <agent@sandbox.invalid>"));
        git(d, &["fsck", "--no-dangling"]);
    }
}
