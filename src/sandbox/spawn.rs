//! Creating a task: refs first (so the task is visible and removable from the start), then
//! the network, volume and container, then the repository streamed in as a bundle.

use std::process::Stdio;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;

use super::{HELPER, RepoId, remove_objects};
use crate::error::{hinted, sanitize};
use crate::git::Git;
use crate::image::TASK_USER;
use crate::interrupt::{abandon_on_interrupt, checkpoint};
use crate::runtime::{Runtime, SandboxSpec};
use crate::task::store::{Loaded, TaskStore};
use crate::task::{Sandbox, Status, TaskName, TaskRecord, branch_name, now, ref_name};

/// Resource limits for a task's container.
#[derive(Debug, Clone)]
pub struct Limits {
    pub pids: i64,
    pub memory: i64,
    pub nano_cpus: i64,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub name: TaskName,
    pub agent: String,
    pub command: Vec<String>,
    pub prompt: String,
    pub base: String,
    pub base_branch: Option<String>,
    pub dirty: bool,
    pub image: String,
    pub image_id: String,
    pub limits: Limits,
}

/// Write the task's refs (status `creating`). Separate from [`start`] so the caller can clean
/// up after an interruption at any point.
pub fn create_record(store: &TaskStore, req: &SpawnRequest, repo: &RepoId) -> Result<Loaded> {
    let names = repo.object_names(req.name.as_str());
    let record = TaskRecord {
        name: req.name.to_string(),
        agent: req.agent.clone(),
        command: req.command.clone(),
        base: req.base.clone(),
        base_branch: req.base_branch.clone(),
        dirty: req.dirty,
        status: Status::Creating,
        exit_code: None,
        reason: None,
        created: now(),
        started: None,
        finished: None,
        synced: None,
        sandbox: Sandbox {
            image: req.image.clone(),
            image_id: req.image_id.clone(),
            container: Some(names.container),
            volume: Some(names.volume),
            network: Some(names.network),
        },
        promoted: None,
        prompt: req.prompt.clone(),
    };
    store.create(&req.name, &record)
}

/// Create and start the sandbox and deliver the repository and prompt into it.
pub async fn start<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    req: &SpawnRequest,
    repo: &RepoId,
) -> Result<Loaded> {
    let task = req.name.as_str();
    let names = repo.object_names(task);
    let labels = repo.labels(task);
    checkpoint()?;
    rt.create_network(&names.network, &labels).await?;
    checkpoint()?;
    rt.create_volume(&names.volume, &labels).await?;
    checkpoint()?;
    let mut cmd = vec![HELPER.to_string(), "supervise".into(), "--".into()];
    cmd.extend(req.command.iter().cloned());
    let spec = SandboxSpec {
        name: names.container.clone(),
        image: req.image_id.clone(),
        cmd,
        env: vec![
            format!("GIT_AGENT_TASK={task}"),
            format!("GIT_AGENT_BRANCH={}", branch_name(task)),
        ],
        labels,
        volume: names.volume.clone(),
        network: names.network.clone(),
        user: TASK_USER.into(),
        pids_limit: req.limits.pids,
        memory: req.limits.memory,
        nano_cpus: req.limits.nano_cpus,
    };
    let id = rt.create_container(&spec).await?;
    checkpoint()?;
    rt.start(&id).await?;
    checkpoint()?;

    let mut sink = tokio::io::sink();
    let out = rt
        .exec(
            &id,
            &[HELPER.to_string(), "prompt".into()],
            Some(req.prompt.as_bytes()),
            &mut sink,
            1 << 20,
        )
        .await?;
    if out.exit_code != 0 {
        bail!(
            "could not deliver the prompt into the sandbox: {}",
            sanitize(&String::from_utf8_lossy(&out.stderr))
        );
    }
    checkpoint()?;
    // Abandoning the stream midway is safe: the sandbox just sees a truncated bundle.
    abandon_on_interrupt(deliver_repository(rt, store.git(), &id, task)).await?;
    checkpoint()?;

    store.update(task, "running", |r, _| {
        r.status = Status::Running;
        r.started = Some(now());
        r.sandbox.container = Some(id.clone());
        Ok(vec![])
    })
}

/// Stream `git bundle create` of the task's base straight into the sandbox's `receive`.
async fn deliver_repository<R: Runtime>(rt: &R, git: &Git, id: &str, task: &str) -> Result<()> {
    let base_ref = ref_name(task, "base");
    let mut child = tokio::process::Command::new("git")
        .current_dir(&git.dir)
        .env("GIT_AGENT_NESTED", "1")
        .args(["bundle", "create", "-q", "-", &base_ref])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run git bundle")?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let mut sink = tokio::io::sink();
    let cmd = [
        HELPER.to_string(),
        "receive".into(),
        base_ref.clone(),
        branch_name(task),
    ];
    let out = rt.exec(id, &cmd, Some(stdout), &mut sink, 1 << 20).await?;
    let bundle = child.wait_with_output().await?;
    if !bundle.status.success() {
        bail!(
            "git bundle create failed: {}",
            String::from_utf8_lossy(&bundle.stderr).trim_end()
        );
    }
    if out.exit_code != 0 {
        return Err(hinted(
            format!(
                "the sandbox could not check out the repository (exit {}): {}",
                out.exit_code,
                sanitize(String::from_utf8_lossy(&out.stderr).trim_end())
            ),
            "check that the image has git (`git agent image build --dry-run`)",
        ));
    }
    let mut stdout = tokio::io::stdout();
    stdout.flush().await.ok();
    Ok(())
}

/// Undo a spawn that failed or was interrupted: runtime objects and refs go away.
pub async fn abandon<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    repo: &RepoId,
    task: &str,
) -> Result<()> {
    let names = repo.object_names(task);
    remove_objects(rt, &names, true, true).await?;
    store.delete(task)
}
