//! Driving a task's sandbox: creating it and delivering the repository (spawn), bringing its
//! work home (sync), and reconciling the recorded state with what the engine reports.
//!
//! History crosses the boundary only as bundles over exec stdin/stdout; the host never runs
//! git anywhere a sandbox can write. Runtime objects get deterministic names derived from the
//! repository and task, plus labels, so they can always be found and cleaned up again.

pub mod gateway;
pub mod spawn;
pub mod sync;

use std::collections::HashMap;

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::git::Git;
use crate::runtime::{ContainerState, LABEL_REPO, LABEL_REPO_PATH, LABEL_TASK, Runtime};
use crate::task::store::{Loaded, TaskStore};
use crate::task::{Status, now};

/// The path of the sandbox helper inside the image.
pub const HELPER: &str = "/usr/local/bin/git-agent-sandbox";

/// Identifies a repository on the engine: a short hash of its git dir's path.
#[derive(Debug, Clone)]
pub struct RepoId {
    pub id: String,
    pub path: String,
}

impl RepoId {
    pub fn of(git: &Git) -> RepoId {
        let path = git.common_dir.display().to_string();
        let digest = Sha256::digest(path.as_bytes());
        let id = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        RepoId { id, path }
    }

    /// Engine object names for a task: (container, volume, network).
    pub fn object_names(&self, task: &str) -> ObjectNames {
        let stem = format!("git-agent-{}-{task}", self.id);
        ObjectNames {
            container: stem.clone(),
            volume: format!("{stem}-ws"),
            home_volume: format!("{stem}-home"),
            state_volume: format!("{stem}-state"),
            network: format!("{stem}-net"),
            gateway: format!("{stem}-gw"),
            reader: format!("{stem}-read"),
        }
    }

    pub fn labels(&self, task: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_TASK.to_string(), task.to_string()),
            (LABEL_REPO.to_string(), self.id.clone()),
            (LABEL_REPO_PATH.to_string(), self.path.clone()),
        ])
    }
}

#[derive(Debug, Clone)]
pub struct ObjectNames {
    pub container: String,
    pub volume: String,
    pub home_volume: String,
    pub state_volume: String,
    pub network: String,
    pub gateway: String,
    /// A short-lived container reading a finished task's workspace (sync).
    pub reader: String,
}

/// Most bytes of a task's output kept as its transcript.
pub const TRANSCRIPT_MAX: usize = 16 << 20;

/// An in-memory sink that keeps at most `cap` bytes and drops the rest.
pub struct CappedBuf {
    pub data: Vec<u8>,
    pub cap: usize,
    pub truncated: bool,
}

impl CappedBuf {
    pub fn new(cap: usize) -> CappedBuf {
        CappedBuf {
            data: Vec::new(),
            cap,
            truncated: false,
        }
    }
}

impl tokio::io::AsyncWrite for CappedBuf {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let room = self.cap.saturating_sub(self.data.len());
        if buf.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&buf[..buf.len().min(room)]);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Why a run ended, from its exit code (`timeout(1)` exits 124, or 137 once it had to kill).
fn end_reason(code: i64, timeout: Option<u64>) -> Option<String> {
    match (code, timeout) {
        (124, Some(t)) | (137, Some(t)) => Some(format!("timed out after {t}s")),
        _ => None,
    }
}

/// Bring a running task's record up to date with its container: a finished command is
/// recorded as exited with its exit code, its output kept as the task's transcript and the
/// run's statistics read from it; a vanished container is recorded as failed.
pub async fn refresh<R: Runtime>(rt: &R, store: &TaskStore, loaded: Loaded) -> Result<Loaded> {
    if !matches!(loaded.record.status, Status::Running | Status::Creating) {
        return Ok(loaded);
    }
    let Some(container) = loaded.record.sandbox.container.clone() else {
        return Ok(loaded);
    };
    let state = rt.state(&container).await?;
    let (status, code, reason) = match state {
        ContainerState::Exited(code) => (
            Status::Exited,
            Some(code),
            end_reason(code, loaded.record.timeout),
        ),
        ContainerState::Missing if loaded.record.status == Status::Running => (
            Status::Failed,
            None,
            Some("the container disappeared".to_string()),
        ),
        _ => return Ok(loaded),
    };
    let mut transcript = CappedBuf::new(TRANSCRIPT_MAX);
    if code.is_some() {
        rt.logs(&container, false, None, &mut transcript).await.ok();
    }
    let stats = crate::agent::claude::stats(&String::from_utf8_lossy(&transcript.data));
    let kept = (!transcript.data.is_empty()).then_some(transcript.data.as_slice());
    let loaded = store.update_with(&loaded.record.name, status.as_str(), kept, |r, _| {
        if matches!(r.status, Status::Running | Status::Creating) {
            r.status = status;
            r.exit_code = code;
            r.reason = reason.clone();
            r.finished = Some(now());
            if stats.is_some() {
                r.stats = stats.clone();
            }
        }
        Ok(vec![])
    })?;
    let names = RepoId::of(store.git()).object_names(&loaded.record.name);
    gateway::retire(rt, store, loaded, &names).await
}

/// Remove a task's runtime objects by their deterministic names (missing ones are fine).
pub async fn remove_objects<R: Runtime>(
    rt: &R,
    names: &ObjectNames,
    volume: bool,
    network: bool,
) -> Result<()> {
    rt.remove_container(&names.container).await?;
    rt.remove_container(&names.gateway).await?;
    rt.remove_container(&names.reader).await?;
    if volume {
        rt.remove_volume(&names.volume).await?;
        rt.remove_volume(&names.home_volume).await?;
        rt.remove_volume(&names.state_volume).await?;
    }
    if network {
        rt.remove_network(&names.network).await?;
    }
    Ok(())
}
