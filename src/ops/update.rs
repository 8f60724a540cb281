//! Update: move a finished task onto a newer base (its base branch's tip, or `--onto`).
//!
//! The task's commits (and its uncommitted snapshot, carried as one more commit) are
//! re-created on the new base in the object database only ([`crate::git::replay`]): no work
//! tree, index or branch of the user's is touched, and git never runs where the sandbox can
//! write. When every commit applies, the record (new base, change summary) and the task's
//! `base`, `head` and `wip` refs move in one ref transaction, and the new history is sent
//! into the task's workspace the way `restart --reseed` seeds it (a bundle over exec stdin
//! into a reader container; the sandbox helper's `receive` resets the task's branch to it and
//! lays the snapshot over it as uncommitted changes). If that delivery fails, the refs and
//! record are put back as they were.
//!
//! A conflict is reported with its paths and nothing changes: update never resolves one.
//!
//! With `--agent` a conflict goes to the task's agent instead ([`hand_to_agent`]): the
//! commits that apply are re-created, the rest of the work is merged onto them in the object
//! database with git's conflict markers left in the files, and that is made the task's
//! uncommitted changes on the new base (refs and record in one transaction) and sent into
//! its workspace. Then the agent runs headless again, as `continue` runs it, with a prompt
//! that names the new base, the commits being moved and the conflicting files. Update waits
//! for that run: when it exited 0 and none of those files holds a conflict marker any more
//! (read from the synced work in the object database, never in the sandbox), the task stays
//! on the new base; otherwise the task's refs and record are put back as they were, its
//! workspace is given its old work again, and the conflict is reported. The host still never
//! runs git where the agent can write, and never resolves a conflict itself.

use crate::git::replay::{self, Replayed, Scratch};
use crate::runtime::Runtime;
use crate::sandbox::reseed::{self, Seed};
use crate::task::store::Loaded;
use crate::task::{Changes, Status, branch_name};

use super::{Ctx, Event, Events, OpError, lock_task};

/// What to update.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// The new base (a revision); default: the tip of the task's base branch.
    pub onto: Option<String>,
    /// Hand a conflict to the agent in its sandbox instead of only reporting it.
    pub agent: bool,
}

/// What an update did.
#[derive(Debug, Clone)]
pub enum Updated {
    /// The task is based on that commit already.
    UpToDate { task: String, base: String },
    /// Re-based: the refs moved, and the sandbox has the new branch when `delivered`.
    Rebased {
        task: String,
        old_base: String,
        new_base: String,
        onto: String,
        commits: usize,
        head: String,
        uncommitted: bool,
        delivered: bool,
    },
    /// A commit does not apply on the new base: nothing changed.
    Conflicts {
        task: String,
        onto: String,
        new_base: String,
        /// The task's commit that does not apply (its uncommitted snapshot when `uncommitted`).
        commit: String,
        uncommitted: bool,
        paths: Vec<String>,
        /// With `--agent`: why the agent's attempt was not kept (its run failed, or markers
        /// remain); the task was put back as it was.
        agent_failed: Option<String>,
    },
    /// The conflict went to the agent, which resolved it: the task is on the new base, its
    /// resolution in its work (to review like any other).
    Resolved {
        task: String,
        onto: String,
        new_base: String,
        paths: Vec<String>,
    },
}

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("task '{task}' is still running; it can only be updated once its run has ended")]
    Running { task: String },
    #[error(
        "task '{task}' was started detached (no base branch), so there is no newer base to move it onto"
    )]
    NoBaseBranch { task: String },
    #[error("its base branch '{branch}' no longer exists")]
    BranchGone { task: String, branch: String },
    #[error(
        "task '{task}' is promoted to {branch} already; updating it would leave that branch behind"
    )]
    Promoted { task: String, branch: String },
    #[error(
        "task '{task}' has a merge commit ({commit}); update re-creates straight lines of commits only"
    )]
    MergeCommit { task: String, commit: String },
    #[error(
        "the uncommitted changes of task '{task}' sit on a commit off its branch; update cannot carry them"
    )]
    SnapshotOffBranch { task: String },
    #[error("task '{task}': refs/agent/{task}/{leaf} does not name a commit ({value})")]
    BadRef {
        task: String,
        leaf: String,
        value: String,
    },
    #[error(
        "could not send the updated work into the sandbox of task '{task}'; its refs and record were put back as they were"
    )]
    Delivery {
        task: String,
        #[source]
        source: anyhow::Error,
    },
    #[error("task '{task}' has no sandbox left for its agent to resolve the conflict in")]
    NoSandbox { task: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

super::error::pass_on!(super::sync::SyncError => UpdateError);
super::error::pass_on!(super::restart::RestartError => UpdateError);
super::error::pass_on!(super::wait::WaitError => UpdateError);

impl OpError for UpdateError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            UpdateError::Running { task } => format!(
                "wait for it with `git agent status {task}`, or stop it with `git agent stop {task}`, then update"
            ),
            UpdateError::NoBaseBranch { task } => {
                format!("name the new base: `git agent update {task} --onto <branch>`")
            }
            UpdateError::BranchGone { task, .. } => {
                format!("name the new base: `git agent update {task} --onto <branch>`")
            }
            UpdateError::Promoted { branch, .. } => format!(
                "bring the promoted branch up to date with your own git: `git rebase <base> {branch}`"
            ),
            UpdateError::MergeCommit { task, .. } => format!(
                "promote the work as it is with `git agent commit {task}` and merge it with your own git"
            ),
            UpdateError::SnapshotOffBranch { task } => format!(
                "look at the sandbox with `git agent shell {task}`, commit or drop the changes there, then update"
            ),
            UpdateError::BadRef { task, .. } => super::check::bad_ref_hint(task),
            UpdateError::Delivery { task, .. } => format!(
                "see `git agent status {task}` and `git agent doctor`, then run `git agent update {task}` again"
            ),
            UpdateError::NoSandbox { task } => format!(
                "give the work a new sandbox on the new base with `git agent retry {task} --base <rev>`"
            ),
            UpdateError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            UpdateError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            UpdateError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// Update a task, waiting for a command that holds it.
pub async fn run<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    req: &UpdateRequest,
    events: &dyn Events,
) -> Result<Updated, UpdateError> {
    let name = ctx.store.resolve_local(&req.task, "update")?.record.name;
    let lock = lock_task(ctx, &name, "update", events).await?;
    let mut loaded = super::reload(ctx, &name)?;
    if loaded.record.sandbox.container.is_some() {
        loaded = crate::sandbox::refresh(rt, &ctx.store, loaded).await?;
    }
    if matches!(loaded.record.status, Status::Running | Status::Creating) {
        return Err(UpdateError::Running { task: name });
    }
    // Before the sync: a broken ref is refused with nothing changed.
    if let Some((leaf, value)) = super::check::broken_ref(ctx, &loaded)? {
        return Err(UpdateError::BadRef {
            task: name,
            leaf,
            value,
        });
    }
    let loaded = super::sync::if_possible(rt, ctx, loaded, &lock, events).await?;
    if loaded.record.promoted.is_some() {
        return Err(UpdateError::Promoted {
            branch: branch_name(&name),
            task: name,
        });
    }
    replay::require_merge_tree(&ctx.git)?;
    let (onto_rev, new_base) = new_base(ctx, &loaded, req.onto.as_deref())?;
    let r = &loaded.record;
    let old_base = r.base.clone();
    if new_base == old_base {
        return Ok(Updated::UpToDate {
            task: name,
            base: old_base,
        });
    }
    let head = loaded.ref_value("head").map(str::to_string);
    let wip = loaded.ref_value("wip").map(str::to_string);
    let mut chain = commits(ctx, &name, &old_base, head.as_deref().unwrap_or(&old_base))?;
    if let Some(w) = &wip {
        let parent = ctx.git.run(["rev-parse", &format!("{w}^")])?;
        if parent != head.as_deref().unwrap_or(&old_base) {
            return Err(UpdateError::SnapshotOffBranch { task: name });
        }
        chain.push(w.clone());
    }
    events.emit(Event::step(
        Some(&name),
        format!(
            "re-creating {} commit{} on {onto_rev} ({})",
            chain.len(),
            if chain.len() == 1 { "" } else { "s" },
            super::review::short(&new_base)
        ),
    ));
    let scratch = Scratch::new(&ctx.git)?;
    let made = match replay::replay(&ctx.git, &scratch, &chain, &new_base)? {
        Replayed::Done(made) => made,
        Replayed::Conflict { commit, paths } if req.agent => {
            drop(scratch);
            let conflict = Conflict {
                onto: onto_rev,
                new_base,
                commit,
                paths,
                chain,
            };
            return hand_to_agent(rt, ctx, lock, loaded, conflict, events).await;
        }
        Replayed::Conflict { commit, paths } => {
            return Ok(Updated::Conflicts {
                agent_failed: None,
                uncommitted: wip.as_deref() == Some(commit.as_str()),
                task: name,
                onto: onto_rev,
                new_base,
                commit,
                paths,
            });
        }
    };
    scratch.keep()?;
    let (new_head, new_wip) = match (&wip, made.len()) {
        (Some(_), n) => (
            if n >= 2 {
                made[n - 2].clone()
            } else {
                new_base.clone()
            },
            made.last().cloned(),
        ),
        (None, _) => (made.last().cloned().unwrap_or(new_base.clone()), None),
    };
    let new_tip = new_wip.clone().unwrap_or(new_head.clone());
    let stat = ctx
        .git
        .shortstats(&[(&new_base, &new_tip)])?
        .first()
        .copied()
        .unwrap_or_default();
    let msg = format!(
        "update: {} commit{} onto {onto_rev} ({})",
        made.len() - usize::from(wip.is_some()),
        if made.len() - usize::from(wip.is_some()) == 1 {
            ""
        } else {
            "s"
        },
        super::review::short(&new_base)
    );
    let head_ref = head.as_ref().map(|_| new_head.clone());
    let before = loaded.clone();
    let moved = move_refs(ctx, &name, &msg, |rec| {
        rec.base = new_base.clone();
        rec.changes = Some(Changes {
            tip: new_tip.clone(),
            files: stat.0,
            insertions: stat.1,
            deletions: stat.2,
        });
        vec![
            ("base".into(), Some(new_base.clone())),
            ("head".into(), head_ref.clone()),
            ("wip".into(), new_wip.clone()),
        ]
    })?;
    let delivered = if moved.record.sandbox.container.is_some() {
        if let Err(e) = deliver(rt, ctx, &moved).await {
            put_back(ctx, &before, "update undone: the sandbox could not take it")?;
            return Err(UpdateError::Delivery {
                task: name,
                source: e,
            });
        }
        true
    } else {
        false
    };
    Ok(Updated::Rebased {
        task: name,
        old_base,
        new_base,
        onto: onto_rev,
        commits: made.len() - usize::from(wip.is_some()),
        head: new_head,
        uncommitted: wip.is_some(),
        delivered,
    })
}

/// Put the task's base, head and wip refs and its record's base and changes back as they
/// were in `before`.
fn put_back(ctx: &Ctx, before: &Loaded, msg: &str) -> anyhow::Result<Loaded> {
    let old = before.record.clone();
    let value = |leaf: &str| before.ref_value(leaf).map(str::to_string);
    move_refs(ctx, &old.name, msg, |rec| {
        rec.base = old.base.clone();
        rec.changes = old.changes.clone();
        vec![
            ("base".into(), value("base")),
            ("head".into(), value("head")),
            ("wip".into(), value("wip")),
        ]
    })
}

/// A conflict found by the replay, as `--agent` hands it on.
struct Conflict {
    onto: String,
    new_base: String,
    /// The task's commit that does not apply.
    commit: String,
    paths: Vec<String>,
    /// The task's commits (and snapshot), oldest first.
    chain: Vec<String>,
}

/// Hand a conflict to the agent (see the module doc).
async fn hand_to_agent<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    lock: crate::task::lock::TaskLock,
    before: Loaded,
    c: Conflict,
    events: &dyn Events,
) -> Result<Updated, UpdateError> {
    let name = before.record.name.clone();
    if before.record.sandbox.container.is_none() {
        return Err(UpdateError::NoSandbox { task: name });
    }
    let wip = before.ref_value("wip").map(str::to_string);
    let uncommitted = wip.as_deref() == Some(c.commit.as_str());
    let conflicts = |agent_failed: Option<String>| Updated::Conflicts {
        task: name.clone(),
        onto: c.onto.clone(),
        new_base: c.new_base.clone(),
        commit: c.commit.clone(),
        uncommitted,
        paths: c.paths.clone(),
        agent_failed,
    };
    // The commits before the one that conflicts apply; the rest of the work (from that
    // commit to the tip, its snapshot included) is merged onto them with markers.
    let k = c.chain.iter().position(|x| *x == c.commit).unwrap_or(0);
    let scratch = Scratch::new(&ctx.git)?;
    let prefix = match replay::replay(&ctx.git, &scratch, &c.chain[..k], &c.new_base)? {
        Replayed::Done(made) => made,
        Replayed::Conflict { .. } => return Ok(conflicts(None)),
    };
    let ours = prefix.last().cloned().unwrap_or(c.new_base.clone());
    let merge_base = if k == 0 {
        before.record.base.clone()
    } else {
        c.chain[k - 1].clone()
    };
    let theirs = c.chain.last().cloned().unwrap_or(c.commit.clone());
    let (tree, paths) =
        replay::merge_with_markers(&ctx.git, &scratch, &merge_base, &ours, &theirs)?;
    let snapshot = replay::commit_snapshot(
        &ctx.git,
        &scratch,
        &tree,
        &ours,
        "git-agent: uncommitted changes (conflicts to resolve)",
    )?;
    scratch.keep()?;
    let subjects = c.chain[k..]
        .iter()
        .filter(|x| Some(x.as_str()) != wip.as_deref())
        .map(|x| {
            let subject = ctx
                .git
                .run(["log", "-1", "--format=%s", x])
                .unwrap_or_default();
            format!("{} {}", super::review::short(x), subject.trim())
        })
        .collect::<Vec<_>>();
    let prompt = conflict_prompt(&c.onto, &c.new_base, &subjects, uncommitted, &paths);
    let head = before.ref_value("head").map(|_| ours.clone());
    let moved = move_refs(
        ctx,
        &name,
        &format!("update: conflicts handed to the agent, onto {}", c.onto),
        |rec| {
            rec.base = c.new_base.clone();
            rec.changes = None;
            vec![
                ("base".into(), Some(c.new_base.clone())),
                ("head".into(), head.clone()),
                ("wip".into(), Some(snapshot.clone())),
            ]
        },
    )?;
    if let Err(e) = deliver(rt, ctx, &moved).await {
        put_back(ctx, &before, "update undone: the sandbox could not take it")?;
        return Err(UpdateError::Delivery {
            task: name,
            source: e,
        });
    }
    events.emit(Event::step(
        Some(&name),
        format!(
            "{} conflicting file{} handed to the agent; waiting for it",
            paths.len(),
            if paths.len() == 1 { "" } else { "s" }
        ),
    ));
    let restart = super::restart::RestartRequest {
        task: name.clone(),
        interactive: false,
        reseed: false,
    };
    let followup = super::restart::FollowUp { prompt: &prompt };
    let started =
        super::restart::resume(rt, ctx, &restart, Some(&followup), lock, moved, events).await;
    if let Err(e) = started {
        let lock = lock_task(ctx, &name, "update", events).await?;
        undo_handover(rt, ctx, &before, &lock).await?;
        return Err(e.into());
    }
    let waited = super::wait::run(Some(rt), ctx, std::slice::from_ref(&name)).await?;
    let lock = lock_task(ctx, &name, "update", events).await?;
    let ended = waited.ended.first().cloned();
    let failed = if waited.interrupted {
        Some("update was interrupted while the agent worked".to_string())
    } else {
        match &ended {
            Some(e) if e.ok() => None,
            Some(e) => Some(match e.exit_code {
                Some(code) => format!("the agent's run exited with {code}"),
                None => format!("the agent's run ended {}", e.status),
            }),
            None => Some("the agent's run was not seen to end".to_string()),
        }
    };
    let failed = match failed {
        Some(f) => Some(f),
        None => {
            let loaded = super::reload(ctx, &name)?;
            let loaded = super::sync::if_possible(rt, ctx, loaded, &lock, events).await?;
            let tip = loaded
                .ref_value("wip")
                .or(loaded.ref_value("head"))
                .unwrap_or(&c.new_base)
                .to_string();
            let marked = with_markers(&ctx.git, &tip, &paths)?;
            if !is_ancestor(&ctx.git, &c.new_base, &tip)? {
                Some("the agent's work no longer contains the new base".to_string())
            } else if marked.is_empty() {
                None
            } else {
                Some(format!(
                    "conflict markers remain in {}",
                    marked
                        .iter()
                        .map(String::as_str)
                        .map(crate::error::sanitize)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
    };
    match failed {
        None => Ok(Updated::Resolved {
            task: name,
            onto: c.onto,
            new_base: c.new_base,
            paths,
        }),
        Some(why) => {
            undo_handover(rt, ctx, &before, &lock).await?;
            Ok(conflicts(Some(why)))
        }
    }
}

/// The agent did not resolve the conflict: the task's refs and record as they were before
/// the update, and that work sent into its workspace again.
async fn undo_handover<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    before: &Loaded,
    lock: &crate::task::lock::TaskLock,
) -> Result<(), UpdateError> {
    let name = &before.record.name;
    let now = super::reload(ctx, name)?;
    // The agent's attempt comes home first (it stays in the state's history), unless the
    // task still runs (an interrupted update): then only the refs go back.
    let now = super::sync::if_possible(rt, ctx, now, lock, &super::NoEvents).await?;
    let restored = put_back(
        ctx,
        before,
        "update undone: the agent did not resolve the conflict",
    )?;
    let running = matches!(now.record.status, Status::Running | Status::Creating);
    if !running && restored.record.sandbox.container.is_some() {
        deliver(rt, ctx, &restored)
            .await
            .map_err(|e| UpdateError::Delivery {
                task: name.clone(),
                source: e,
            })?;
    }
    Ok(())
}

/// Which of `paths` hold a conflict marker line in `tip`'s tree (read in the object
/// database; the paths are the task's, taken literally).
fn with_markers(git: &crate::git::Git, tip: &str, paths: &[String]) -> anyhow::Result<Vec<String>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = git.command();
    cmd.args([
        "--literal-pathspecs",
        "grep",
        "-l",
        "-z",
        "-I",
        "-E",
        "^(<<<<<<<|>>>>>>>)( |$)",
        tip,
        "--",
    ])
    .args(paths)
    .stdin(std::process::Stdio::null());
    let out = cmd.output()?;
    match out.status.code() {
        Some(1) => Ok(Vec::new()),
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(|p| p.strip_prefix(&format!("{tip}:")).unwrap_or(p).to_string())
            .collect()),
        _ => anyhow::bail!(
            "git grep for conflict markers failed: {}",
            crate::error::sanitize(String::from_utf8_lossy(&out.stderr).trim_end())
        ),
    }
}

/// Does `tip` contain `commit`?
fn is_ancestor(git: &crate::git::Git, commit: &str, tip: &str) -> anyhow::Result<bool> {
    let out = git
        .command()
        .args(["merge-base", "--is-ancestor", commit, tip])
        .stdin(std::process::Stdio::null())
        .output()?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => anyhow::bail!(
            "git merge-base --is-ancestor failed: {}",
            crate::error::sanitize(String::from_utf8_lossy(&out.stderr).trim_end())
        ),
    }
}

/// What the agent is told when a conflict is handed to it.
fn conflict_prompt(
    onto: &str,
    new_base: &str,
    commits: &[String],
    uncommitted: bool,
    paths: &[String],
) -> String {
    let clean = |s: &str| crate::error::sanitize(s);
    let mut p = format!(
        "Your work on this task was moved onto a newer base: {} ({}). It does not apply cleanly.\n\n",
        clean(onto),
        super::review::short(new_base)
    );
    p.push_str(
        "The commits that applied are re-created on the new base. The rest of your work is \
         in the working tree as uncommitted changes, with git's conflict markers \
         (<<<<<<<, =======, >>>>>>>) in these files:\n\n",
    );
    for path in paths {
        p.push_str(&format!("- {}\n", clean(path)));
    }
    if !commits.is_empty() {
        p.push_str("\nThe commits whose changes are in the working tree now:\n\n");
        for c in commits {
            p.push_str(&format!("- {}\n", clean(c)));
        }
    }
    if uncommitted {
        p.push_str("\nYour uncommitted changes are among them.\n");
    }
    p.push_str(
        "\nResolve every conflict: edit those files so they keep what the new base changed \
         and what your work meant to do, remove all conflict markers, check that the result \
         still works, and commit it on the current branch (do not rebase or reset it away \
         from the new base). If you cannot resolve a conflict, say why and exit with a \
         failure, leaving the markers: the update is then undone and the conflict reported \
         to the user.\n",
    );
    p
}

/// The new base: `--onto`'s commit, else the base branch's tip.
fn new_base(
    ctx: &Ctx,
    loaded: &Loaded,
    onto: Option<&str>,
) -> Result<(String, String), UpdateError> {
    let task = loaded.record.name.clone();
    if let Some(rev) = onto {
        return Ok((rev.to_string(), ctx.git.resolve_commit(rev)?));
    }
    let Some(branch) = loaded.record.base_branch.clone() else {
        return Err(UpdateError::NoBaseBranch { task });
    };
    match ctx
        .git
        .ref_value(&format!("refs/heads/{branch}^{{commit}}"))?
    {
        Some(tip) => Ok((branch, tip)),
        None => Err(UpdateError::BranchGone { task, branch }),
    }
}

/// The task's commits `base..head`, oldest first; each must have one parent, the one before.
fn commits(ctx: &Ctx, task: &str, base: &str, head: &str) -> Result<Vec<String>, UpdateError> {
    if head == base {
        return Ok(Vec::new());
    }
    let text = ctx.git.run([
        "rev-list",
        "--reverse",
        "--topo-order",
        "--parents",
        &format!("{base}..{head}"),
    ])?;
    let mut out = Vec::new();
    let mut prev = base.to_string();
    for line in text.lines() {
        let mut ids = line.split_whitespace();
        let id = ids.next().unwrap_or_default().to_string();
        let parents: Vec<&str> = ids.collect();
        if parents.len() != 1 || parents[0] != prev {
            return Err(UpdateError::MergeCommit {
                task: task.to_string(),
                commit: id,
            });
        }
        prev = id.clone();
        out.push(id);
    }
    Ok(out)
}

/// Apply one state change (record and the task's refs) in one ref transaction.
fn move_refs<F>(ctx: &Ctx, task: &str, msg: &str, change: F) -> anyhow::Result<Loaded>
where
    F: FnOnce(&mut crate::task::TaskRecord) -> Vec<(String, Option<String>)>,
{
    let prepared = ctx
        .store
        .prepare(task, msg, &[], |rec, _| Ok(change(rec)))?;
    ctx.git.transaction(&prepared.updates)?;
    super::reload(ctx, task)
}

/// Send the task's branch (and snapshot) into its workspace through a reader container.
async fn deliver<R: Runtime>(rt: &R, ctx: &Ctx, loaded: &Loaded) -> anyhow::Result<()> {
    let reader = crate::sandbox::sync::start_reader(rt, &ctx.store, loaded).await?;
    let result = reseed::deliver(
        rt,
        &ctx.git,
        &reader,
        &loaded.record.name,
        &Seed::of(loaded),
    )
    .await;
    rt.remove_container(&reader).await.ok();
    result
}
