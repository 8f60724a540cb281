//! Retry: start a new task that does an old task's work again, from its recorded base (or
//! another), with its prompt (or a new one), and the same agent, template, image stack,
//! timeout, network policy, read-only root and git guards. The two are linked both ways:
//! the new record's `retry_of` (written when it is created) and the old one's `retried_as`.
//!
//! Owns turning an old record into a spawn ([`prepare`]) and the link back ([`start`]);
//! creating the task is [`super::spawn`]'s. A retry needs only the old task's record, prompt
//! and base commit in this repository, so a task fetched from another clone can be retried.
//! Such a record was written elsewhere: every value taken from it goes through the same
//! checks as a spawn's flags (the agent and the network profile are looked up here by name,
//! domains and addresses are parsed again, and the non-public addresses it opens are shown).
//! A retry runs headless. It must not print or prompt: the caller edits the prompt between
//! [`prepare`] and [`start`] (`retry --edit`).

use anyhow::Result;

use super::setup::NetworkChoice;
use super::spawn::{Prepared, SpawnRequest};
use super::{Ctx, Event, Events};
use crate::runtime::Runtime;
use crate::task::TaskName;
use crate::task::store::Loaded;

/// What to retry, and what to change.
#[derive(Debug, Clone, Default)]
pub struct RetryRequest {
    /// The old task (any unique prefix of its name).
    pub task: String,
    /// Start from this revision instead of the old task's base.
    pub base: Option<String>,
    /// A new prompt: a description the old task's template (if any) fills in, as a spawn's.
    /// None: the old task's prompt as it was recorded (already rendered).
    pub prompt: Option<String>,
    /// The new task's name (default `<old>-retry`, numbered when taken).
    pub name: Option<String>,
    /// The OCI runtime (default: the old task's, else `agent.ociRuntime`).
    pub oci_runtime: Option<String>,
}

/// A retry decided but not started: nothing is created yet.
pub struct Retry {
    old: String,
    prepared: Prepared,
}

impl Retry {
    /// The old task's name.
    pub fn old(&self) -> &str {
        &self.old
    }

    /// The new task's name.
    pub fn name(&self) -> &TaskName {
        &self.prepared.names()[0]
    }

    /// The engine the new task goes to (see [`super::placement`]).
    pub fn set_engine(&mut self, engine: Option<String>) {
        self.prepared.engine = engine;
    }

    /// The new task's prompt, for the caller to change before [`start`].
    pub fn prompt_mut(&mut self) -> &mut String {
        &mut self.prepared.prompts_mut()[0]
    }
}

/// Why a retry refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("task '{task}' was purged with --refs: its record and prompt are in the trash")]
    PurgedRefs { task: String },
    #[error("task '{task}''s base commit {base} is not in this repository")]
    BaseMissing { task: String, base: String },
    #[error("the new prompt is empty")]
    EmptyPrompt,
    /// A failure below the operation (the refs, the spawn, the engine), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for RetryError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RetryError::PurgedRefs { task } => {
                format!("bring it back with `git agent purge --undo {task}`, then retry it")
            }
            RetryError::BaseMissing { task, .. } => format!(
                "fetch the task's refs with its history (`git fetch <remote> 'refs/agent/{task}/*:refs/agent/{task}/*'`), or start from another commit with `git agent retry --base <rev> {task}`"
            ),
            RetryError::EmptyPrompt => {
                "say what to do with -m \"...\", or drop -m to reuse the old prompt".into()
            }
            RetryError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            RetryError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            RetryError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

super::error::pass_on!(super::spawn::SpawnError => RetryError);

/// The old task, or why it cannot be retried.
/// A name no task has but the trash does means that purged task, not a task it prefixes
/// (`first` purged, `first-retry` live).
fn old_task(ctx: &Ctx, query: &str) -> Result<Loaded, RetryError> {
    if ctx.store.load(query).ok().flatten().is_none()
        && crate::task::trash::list(&ctx.git)?.contains_key(query)
    {
        return Err(RetryError::PurgedRefs {
            task: query.to_string(),
        });
    }
    Ok(ctx.store.resolve(query)?)
}

/// The spawn that retries `old`: its settings, as a spawn's flags would give them.
pub fn spawn_request(
    ctx: &Ctx,
    old: &crate::task::TaskRecord,
    req: &RetryRequest,
) -> Result<SpawnRequest, RetryError> {
    let command = if old.agent == "exec" {
        old.command.clone()
    } else {
        vec![]
    };
    let agents = super::spawn::agents(ctx, std::slice::from_ref(&old.agent), &command, false)?;
    let network = match &old.network {
        Some(p) => NetworkChoice {
            profile: Some(p.profile.clone()),
            allow: p.allow.clone(),
            allow_address: p.addresses.clone(),
        },
        None => NetworkChoice::default(),
    };
    let (description, template) = match &req.prompt {
        Some(p) => (p.clone(), old.template.clone()),
        None => (old.prompt.clone(), None),
    };
    Ok(SpawnRequest {
        agents,
        command,
        description,
        template,
        name: Some(match &req.name {
            Some(n) => n.clone(),
            None => default_name(ctx, old)?,
        }),
        base: Some(req.base.clone().unwrap_or_else(|| old.base.clone())),
        dirty: false,
        stack: old.stack.clone(),
        timeout: old.timeout,
        interactive: false,
        network,
        read_only: old.read_only,
        git_readonly: Some(old.git_readonly),
        oci_runtime: req.oci_runtime.clone().or_else(|| old.oci_runtime.clone()),
    })
}

/// `<old>-retry`, else `<old>-retry-2`, `-3`, ...: the first that no task has. A fetched
/// task's retry is a task of this repository: `origin/fix` gives `fix-retry`.
fn default_name(ctx: &Ctx, old: &crate::task::TaskRecord) -> Result<String> {
    let task = crate::task::remote::split(&old.name).map_or(old.name.as_str(), |(_, t)| t);
    let stem: String = task.chars().take(36).collect();
    let stem = stem.trim_end_matches(['-', '_', '.']);
    for n in 1..1000 {
        let name = if n == 1 {
            format!("{stem}-retry")
        } else {
            format!("{stem}-retry-{n}")
        };
        if ctx.store.load(&name)?.is_none() {
            return Ok(name);
        }
    }
    Ok(format!("{stem}-retry-{}", crate::task::now()))
}

/// Decide the retry (see the module doc); nothing is created.
pub fn prepare(ctx: &Ctx, req: &RetryRequest, events: &dyn Events) -> Result<Retry, RetryError> {
    if req.prompt.as_ref().is_some_and(|p| p.trim().is_empty()) {
        return Err(RetryError::EmptyPrompt);
    }
    let old = old_task(ctx, &req.task)?.record;
    if req.base.is_none() && ctx.git.resolve_commit(&old.base).is_err() {
        return Err(RetryError::BaseMissing {
            task: old.name,
            base: old.base,
        });
    }
    let spawn = spawn_request(ctx, &old, req)?;
    let mut prepared = super::spawn::prepare(ctx, spawn, events)?;
    prepared.retry_of = Some(old.name.clone());
    if req.prompt.is_none() {
        // The recorded prompt is used as it was rendered: keep the template's name with it.
        prepared.template = old.template.clone();
    }
    if req.base.is_none() {
        // The same base: the same branch it came from, and its uncommitted-changes commit.
        prepared.base_branch = old.base_branch.clone();
        prepared.dirty = old.dirty;
    }
    Ok(Retry {
        old: old.name,
        prepared,
    })
}

/// Start the retry, then link the old task to it. A link that cannot be written (the old
/// task was purged meanwhile) is a warning: the new task runs and names its old one.
pub async fn start<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    retry: Retry,
    events: &dyn Events,
) -> Result<Loaded, RetryError> {
    let Retry { old, prepared } = retry;
    let mut started = super::spawn::start(rt, ctx, prepared, events).await?;
    let new = started.tasks.remove(0);
    let name = new.record.name.clone();
    // A fetched task's refs are the remote's (the next fetch replaces them): the link lives
    // in the new task's `retry_of` only.
    if crate::task::remote::is_fetched(&old) {
        return Ok(new);
    }
    let link = async {
        let _lock = super::lock_task(ctx, &old, "retry", events).await?;
        ctx.store
            .update(&old, &format!("retried as {name}"), |r, _| {
                if !r.retried_as.contains(&name) {
                    r.retried_as.push(name.clone());
                }
                Ok(vec![])
            })
    };
    if let Err(e) = link.await {
        events.emit(Event::warning(
            Some(&old),
            format!("could not record on task {old} that {name} retries it: {e:#}"),
        ));
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskRecord;

    fn repo() -> (tempfile::TempDir, Ctx) {
        let tmp = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .current_dir(tmp.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(tmp.path().join("README.md"), "# demo\n").unwrap();
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "initial"]);
        let ctx = Ctx::open_at(tmp.path()).unwrap();
        (tmp, ctx)
    }

    fn old(ctx: &Ctx) -> TaskRecord {
        TaskRecord {
            name: "fix".into(),
            agent: "exec".into(),
            command: vec!["sh".into(), "-c".into(), "make".into()],
            base: ctx.git.resolve_commit("HEAD").unwrap(),
            prompt: "fix it".into(),
            template: Some("fix".into()),
            stack: Some("generic".into()),
            timeout: Some(90),
            read_only: true,
            git_readonly: true,
            oci_runtime: Some("runsc".into()),
            network: Some(crate::egress::NetworkPolicy {
                profile: "dev".into(),
                allow: vec!["example.com".into()],
                addresses: vec!["10.1.2.3/32".into()],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_retry_asks_for_what_the_old_task_had() {
        let (_tmp, ctx) = repo();
        let old = old(&ctx);
        let req = RetryRequest {
            task: "fix".into(),
            ..Default::default()
        };
        let s = spawn_request(&ctx, &old, &req).unwrap();
        assert!(s.agents[0].is_exec());
        assert_eq!(s.command, old.command);
        assert_eq!(s.description, "fix it");
        assert_eq!(s.template, None, "the recorded prompt is already rendered");
        assert_eq!(s.name.as_deref(), Some("fix-retry"));
        assert_eq!(s.base.as_deref(), Some(old.base.as_str()));
        assert_eq!(s.stack.as_deref(), Some("generic"));
        assert_eq!(s.timeout, Some(90));
        assert!(s.read_only);
        assert_eq!(s.git_readonly, Some(true));
        assert!(!s.interactive);
        assert_eq!(s.network.profile.as_deref(), Some("dev"));
        assert_eq!(s.network.allow, ["example.com"]);
        assert_eq!(s.network.allow_address, ["10.1.2.3/32"]);
        assert_eq!(s.oci_runtime.as_deref(), Some("runsc"));

        // A new description is filled into the old template; --base and --name win.
        let req = RetryRequest {
            task: "fix".into(),
            base: Some("HEAD".into()),
            prompt: Some("again".into()),
            name: Some("other".into()),
            oci_runtime: Some("runc".into()),
        };
        let s = spawn_request(&ctx, &old, &req).unwrap();
        assert_eq!(s.oci_runtime.as_deref(), Some("runc"));
        assert_eq!(s.description, "again");
        assert_eq!(s.template.as_deref(), Some("fix"));
        assert_eq!(s.base.as_deref(), Some("HEAD"));
        assert_eq!(s.name.as_deref(), Some("other"));
    }

    #[test]
    fn refusals_say_what_to_do() {
        let (_tmp, ctx) = repo();
        let e = prepare(
            &ctx,
            &RetryRequest {
                task: "nothing".into(),
                ..Default::default()
            },
            &super::super::NoEvents,
        )
        .err()
        .unwrap();
        assert!(matches!(e, RetryError::Other(_)), "{e:?}");
        let e: anyhow::Error = RetryError::PurgedRefs { task: "fix".into() }.into();
        assert_eq!(
            crate::error::render(&e),
            [
                "Error: task 'fix' was purged with --refs: its record and prompt are in the trash",
                "Hint: bring it back with `git agent purge --undo fix`, then retry it",
            ]
        );
    }
}
