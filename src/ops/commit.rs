//! Commit (promotion): bring a task's work home (sync), then re-create its commits as the
//! user on branch `agent/<task>` and move the branch, the notes and the task's record in one
//! ref transaction (see [`crate::git::promote`]).
//!
//! Two steps, so the command line can ask for a message in between while the task stays
//! locked: [`prepare`] takes the task's lock, syncs and says whether a message is needed;
//! [`finish`] promotes with the message the caller decided on. [`draft_plan`], [`ask_draft`]
//! and [`remove_draft`] are the small operation that asks the agent for a draft of that
//! message in a fresh container (the caller starts the task's gateway afresh in between).
//! Nothing here prints, prompts or opens an editor.

use crate::agent::Agent;
use crate::git::promote::{PromoteError, PromoteRequest, needs_message, promote, task_tip};
use crate::runtime::Runtime;
use crate::runtime::subnet::Ipv4Net;
use crate::task::lock::TaskLock;
use crate::task::store::Loaded;
use crate::task::{Promotion, branch_name};

use super::{Ctx, Events, OpError, lock_task};

/// A task locked and synced for promotion.
pub struct Prepared {
    /// The task as synced, under the lock.
    pub loaded: Loaded,
    /// Its work is on its branch already (only when the request allowed that).
    pub already_committed: bool,
    /// The uncommitted changes need a message (none was given yet).
    pub needs_message: bool,
    /// Promote only the changes to these paths (empty: all; see `git::promote::partial`).
    pub pathspec: Vec<String>,
    _lock: TaskLock,
}

impl Prepared {
    pub fn task(&self) -> &str {
        &self.loaded.record.name
    }

    /// The diffstat of the uncommitted changes, for a message editor's comment lines.
    pub fn wip_stat(&self, ctx: &Ctx) -> String {
        let wip = self.loaded.ref_value("wip").unwrap_or_default();
        ctx.git
            .run(["diff", "--stat", &format!("{wip}^"), wip])
            .unwrap_or_default()
    }
}

/// What a promotion did.
#[derive(Debug, Clone)]
pub struct Committed {
    pub task: String,
    /// `agent/<task>`.
    pub branch: String,
    /// The branch's tip (full id).
    pub branch_tip: String,
    /// `(task commit, new branch commit)` for each commit written, in order.
    pub commits: Vec<(String, String)>,
    /// The branch held this task's work from an interrupted commit and was taken over.
    pub adopted: bool,
    /// The work was on the branch already; nothing was written.
    pub already_committed: bool,
}

/// Why a promotion failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("the task has uncommitted changes and no commit message was given")]
    NoMessage,
    #[error(transparent)]
    Promote(#[from] PromoteError),
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<anyhow::Error> for CommitError {
    fn from(e: anyhow::Error) -> Self {
        CommitError::Other(e)
    }
}

impl OpError for CommitError {
    fn hint(&self) -> Option<String> {
        match self {
            CommitError::NoMessage => {
                Some("pass one with -m: git agent commit <task> -m \"message\"".into())
            }
            CommitError::Promote(e) => e.hint(),
            CommitError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            CommitError::Other(e) => Some(e),
            CommitError::Promote(e) => e.below(),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            CommitError::Other(e) => Ok(e),
            CommitError::Promote(e) => e.passthrough().map_err(CommitError::Promote),
            other => Err(other),
        }
    }
}

/// Lock a task (any unique prefix of its name), remove what a killed promotion of it left,
/// and sync it when it still has a container. With `up_to_date_ok`, work already on the
/// branch is reported as [`Prepared::already_committed`] instead of failing later (so
/// `commit-push` can finish a push that failed earlier). `message_given`: the caller has a
/// message already, so none is needed. `pathspec`: promote only the changes to those paths
/// (empty: all of them, including what an earlier partial commit left out).
pub async fn prepare(
    ctx: &Ctx,
    task: &str,
    up_to_date_ok: bool,
    message_given: bool,
    pathspec: &[String],
    events: &dyn Events,
) -> Result<Prepared, CommitError> {
    let name = ctx.store.resolve(task)?.record.name;
    let lock = lock_task(ctx, &name, "commit", events).await?;
    crate::git::promote::sweep(&ctx.git, Some(&name));
    let mut loaded = super::reload(ctx, &name)?;
    if loaded.record.sandbox.container.is_some() {
        let rt = super::engine_of(ctx, &loaded.record).await?;
        loaded = super::sync::if_possible(&rt, ctx, loaded, &lock, events).await?;
    }
    let r = &loaded.record;
    let head = loaded.ref_value("head").unwrap_or(&r.base);
    let wip = loaded.ref_value("wip");
    let tip = task_tip(head, wip);
    let already_committed = up_to_date_ok
        && pathspec.is_empty()
        && r.promoted
            .as_ref()
            .is_some_and(|p| p.task_tip == tip && !p.is_partial());
    let needs_message = !already_committed
        && !message_given
        && tip != r.base
        && needs_message(&ctx.git, &request(&loaded, None, pathspec))?;
    Ok(Prepared {
        loaded,
        already_committed,
        needs_message,
        pathspec: pathspec.to_vec(),
        _lock: lock,
    })
}

/// The promotion request for a loaded task.
fn request<'a>(
    loaded: &'a Loaded,
    message: Option<String>,
    pathspec: &'a [String],
) -> PromoteRequest<'a> {
    let r = &loaded.record;
    let head = loaded.ref_value("head").unwrap_or(&r.base);
    PromoteRequest {
        task: &r.name,
        agent: &r.agent,
        base: &r.base,
        head,
        wip: loaded.ref_value("wip"),
        previous: r.promoted.as_ref(),
        message,
        pathspec,
    }
}

/// Promote a prepared task with `message` for its uncommitted changes (`None` when the
/// caller has none: an error if one is needed). The lock is released at the end.
pub fn finish(
    ctx: &Ctx,
    prepared: Prepared,
    message: Option<String>,
    events: &dyn Events,
) -> Result<Committed, CommitError> {
    let r = &prepared.loaded.record;
    let branch = branch_name(&r.name);
    if prepared.already_committed {
        return Ok(Committed {
            task: r.name.clone(),
            branch,
            branch_tip: r
                .promoted
                .as_ref()
                .map(|p| p.branch_tip.clone())
                .unwrap_or_default(),
            commits: vec![],
            adopted: false,
            already_committed: true,
        });
    }
    if prepared.needs_message && message.is_none() {
        return Err(CommitError::NoMessage);
    }
    let mut record = |p: &Promotion| -> anyhow::Result<Vec<crate::git::RefUpdate>> {
        let p = p.clone();
        let prepared = ctx.store.prepare(&r.name, "commit", &[], move |rec, _| {
            rec.promoted = Some(p);
            Ok(vec![])
        })?;
        Ok(prepared.updates)
    };
    let done = promote(
        &ctx.git,
        request(&prepared.loaded, message, &prepared.pathspec),
        &mut record,
        events,
    )?;
    Ok(Committed {
        task: r.name.clone(),
        branch,
        branch_tip: done.promotion.branch_tip,
        commits: done.commits,
        adopted: done.adopted,
        already_committed: false,
    })
}

/// Most bytes of the diff shown to the agent drafting a commit message.
const DRAFT_DIFF_MAX: usize = 64 << 10;

/// What asking the task's agent for a draft of the message takes.
pub struct DraftPlan {
    pub agent: Agent,
    /// The `commit-msg` template rendered, with the changes' diff.
    pub prompt: String,
}

/// Prepare asking the task's agent to draft a message for its uncommitted changes (headless,
/// with the `commit-msg` template). `None` when there is no agent to ask: an exec agent, no
/// workspace, no template, or a task still running (its gateway and stand-ins are its own,
/// and its work is still moving). A finished task has given its network back: the draft
/// gets one of its own ([`draft_network`]).
///
/// The draft must run in a fresh container of the task's image with an empty workspace and
/// a fresh home, never in the task's own container (whose home holds the agent's settings and
/// hooks). The changes reach it as text: the diff of the synced, host-checked `wip` commit,
/// made by the host's git with external diff and textconv drivers off.
pub async fn draft_plan<R: Runtime>(rt: &R, ctx: &Ctx, prepared: &Prepared) -> Option<DraftPlan> {
    let loaded = &prepared.loaded;
    let r = &loaded.record;
    let search = crate::data::Search::new(&ctx.git.dir);
    let agent = crate::agent::load(&search, &r.agent).ok()?;
    if agent.is_exec() || r.sandbox.volume.is_none() {
        return None;
    }
    let wip = loaded.ref_value("wip")?;
    let template = search.find(crate::data::PROMPTS, "commit-msg").ok()??;
    let template = crate::template::parse(&template).ok()?;
    let mut prompt = crate::template::render(
        &template,
        &crate::template::PromptVars {
            description: r.prompt.clone(),
            repository: String::new(),
            base: r.base.clone(),
            base_branch: r.base_branch.clone().unwrap_or_default(),
            branch: branch_name(&r.name),
            task: r.name.clone(),
        },
    )
    .ok()?;
    let parent = format!("{wip}^");
    let diff = ctx
        .git
        .run([
            "-c",
            "core.quotePath=false",
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            "--stat",
            "--patch",
            &parent,
            wip,
        ])
        .ok()?;
    prompt.push_str("\n\nThe uncommitted changes:\n\n```diff\n");
    prompt.push_str(&capped(&crate::error::sanitize(&diff), DRAFT_DIFF_MAX));
    prompt.push_str("\n```\n");
    if let Some(c) = &r.sandbox.container
        && rt.state(c).await.ok()? == crate::runtime::ContainerState::Running
    {
        return None;
    }
    Some(DraftPlan { agent, prompt })
}

/// Ask the agent for the draft in a fresh container: the task's image, an empty workspace
/// volume, no home volume, on the task's network, whose gateway the caller has just started
/// afresh (its stand-ins in `env`). Remove what it made with [`remove_draft`].
pub async fn ask_draft<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    prepared: &Prepared,
    plan: &DraftPlan,
    env: &[String],
    subnet: Option<&Ipv4Net>,
) -> Result<String, CommitError> {
    let r = &prepared.loaded.record;
    let names = ctx.repo.object_names(&r.name);
    let labels = ctx.repo.labels(&r.name);
    crate::sandbox::oci::check(rt, r.oci_runtime.as_deref()).await?;
    rt.remove_container(&names.draft).await?;
    rt.create_volume(&names.draft_volume, &labels).await?;
    let limits = crate::sandbox::spawn::Limits::from_config(&ctx.config)?;
    let mut spec = crate::sandbox::spawn::sandbox_spec(
        &ctx.repo,
        &r.name,
        crate::sandbox::spawn::Process {
            image_id: &r.sandbox.image_id,
            cmd: vec!["sleep".into(), "infinity".into()],
            env: &[],
            home_volume: false,
            tty: false,
            read_only: false,
            cache: None,
            oci_runtime: r.oci_runtime.as_deref(),
            // The draft's agent reaches its API through the gateway.
            hosts: crate::sandbox::gateway::hosts(subnet),
            // Any: the task's own address may be taken again by a restart.
            address: None,
        },
        &limits,
    );
    spec.name = names.draft.clone();
    spec.mounts = vec![crate::runtime::VolumeMount::new(
        &names.draft_volume,
        crate::sandbox::WORKSPACE,
    )];
    // A network recorded under an older naming scheme is the task's; a spare's is not the
    // draft's (its gateway went with the run; `draft_network` made the task's own).
    spec.network = r
        .sandbox
        .network
        .clone()
        .filter(|n| !crate::sandbox::spare::is_spare_network(&ctx.repo, n))
        .or(spec.network);
    let id = rt.create_container(&spec).await?;
    rt.start(&id).await?;
    Ok(crate::sandbox::spawn::ask(rt, &id, &plan.agent, &plan.prompt, env).await?)
}

/// Give the draft a network: the task's own when it still has one, else a new one under the
/// task's name with a subnet of `agent.subnets` ([`remove_draft`] gives it back). Returns
/// its subnet, when known.
pub async fn draft_network<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    prepared: &Prepared,
) -> Result<Option<Ipv4Net>, CommitError> {
    let r = &prepared.loaded.record;
    let names = ctx.repo.object_names(&r.name);
    if rt.network_exists(&names.network).await? {
        return Ok(r.sandbox.subnet.as_deref().and_then(Ipv4Net::parse));
    }
    let range = crate::sandbox::network::SubnetRange::from_config(&ctx.config)?;
    let labels = ctx.repo.labels(&r.name);
    Ok(crate::sandbox::network::create(rt, &range, &names.network, &labels).await?)
}

/// Remove the draft's container, volume, gateway and network (whatever is there; the network
/// only when the task's run has ended).
pub async fn remove_draft<R: Runtime>(rt: &R, ctx: &Ctx, task: &str) {
    let names = ctx.repo.object_names(task);
    rt.remove_container(&names.draft).await.ok();
    rt.remove_volume(&names.draft_volume).await.ok();
    rt.remove_container(&names.gateway).await.ok();
    if let Ok(Some(loaded)) = ctx.store.load(task) {
        crate::sandbox::network::release(rt, &ctx.store, loaded, &names, None)
            .await
            .ok();
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[diff truncated]\n", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_diff_is_cut_on_a_character_boundary_and_marked() {
        assert_eq!(capped("short", 10), "short");
        let cut = capped("aé", 2);
        assert_eq!(cut, "a\n[diff truncated]\n");
        assert_eq!(capped("abcdef", 3), "abc\n[diff truncated]\n");
    }

    #[test]
    fn a_missing_message_says_how_to_give_one() {
        let e = CommitError::NoMessage.into_report();
        assert_eq!(
            crate::error::render(&e),
            vec![
                "Error: the task has uncommitted changes and no commit message was given"
                    .to_string(),
                "Hint: pass one with -m: git agent commit <task> -m \"message\"".to_string()
            ]
        );
    }
}
