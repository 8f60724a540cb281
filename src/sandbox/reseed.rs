//! Re-seeding a task's workspace: when its volume is gone or holds no repository (a spawn
//! that died before delivering it, a volume the engine lost and recreated empty), `restart
//! --reseed` builds it again from the task's last synced work on the host.
//!
//! The work travels the way spawn delivers a repository: a bundle of the task's own refs
//! streamed into the sandbox helper's `receive`, which checks the task's branch out. The
//! branch is the synced head (`refs/agent/<task>/head`, else the base when nothing was ever
//! synced); the uncommitted snapshot (`wip`) is then laid over it as uncommitted changes, so
//! the agent finds its workspace as the last sync saw it. This runs in the new container
//! before the agent's command starts: git here reads only the repository just delivered.

use anyhow::{Result, bail};

use super::{HELPER, RepoId, owned_by};
use crate::git::Git;
use crate::runtime::{ObjectKind, Runtime};
use crate::task::store::Loaded;
use crate::task::{branch_name, ref_name};

/// The task's home volume is kept across restarts and the agent may have written a git
/// config there: git laying out the snapshot reads none but the repository's own.
fn plain_git() -> Vec<String> {
    [
        "GIT_CONFIG_GLOBAL=/dev/null",
        "GIT_CONFIG_NOSYSTEM=1",
        "GIT_TERMINAL_PROMPT=0",
    ]
    .map(String::from)
    .to_vec()
}

/// What a re-seeded workspace is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Seed {
    /// The ref checked out as the task's branch (`head`, else `base`).
    pub branch_from: String,
    /// The uncommitted snapshot laid over it, if the last sync had one.
    pub wip: Option<String>,
}

impl Seed {
    pub fn of(loaded: &Loaded) -> Seed {
        let task = &loaded.record.name;
        let leaf = if loaded.ref_value("head").is_some() {
            "head"
        } else {
            "base"
        };
        Seed {
            branch_from: ref_name(task, leaf),
            wip: loaded.ref_value("wip").map(str::to_string),
        }
    }

    /// In words, for the user.
    pub fn describe(&self) -> String {
        let what = if self.branch_from.ends_with("/head") {
            "its last synced work"
        } else {
            "its base (no work was ever synced)"
        };
        if self.wip.is_some() {
            format!("{what} with its uncommitted changes")
        } else {
            what.to_string()
        }
    }
}

/// Replace the task's workspace volume with a new, empty one. Only a volume that is this
/// task's (by label) or carries no label at all (what the engine makes when it recreates a
/// lost volume by name) is removed; anything else by that name is left and reported.
pub async fn fresh_volume<R: Runtime>(rt: &R, repo: &RepoId, task: &str) -> Result<()> {
    let names = repo.object_names(task);
    // The disk warden of an earlier run mounts the volume too.
    rt.remove_container(&names.warden).await?;
    if let Some(labels) = rt.labels_of(ObjectKind::Volume, &names.volume).await? {
        if !labels.is_empty()
            && !owned_by(rt, repo, task, ObjectKind::Volume, &names.volume).await?
        {
            bail!(
                "a volume named {} exists but is not task {task}'s; remove or rename it",
                names.volume
            );
        }
        rt.remove_volume(&names.volume).await?;
    }
    rt.create_volume(&names.volume, &repo.labels(task)).await
}

/// Deliver `seed` into the started (not yet `go`) container `id`.
pub async fn deliver<R: Runtime>(
    rt: &R,
    git: &Git,
    id: &str,
    task: &str,
    seed: &Seed,
) -> Result<()> {
    let mut refs = vec![seed.branch_from.clone()];
    if seed.wip.is_some() {
        refs.push(ref_name(task, "wip"));
    }
    let mut child = git.start_bundle(&refs)?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let cmd = vec![
        HELPER.to_string(),
        "receive".into(),
        seed.branch_from.clone(),
        branch_name(task),
    ];
    let mut sink = tokio::io::sink();
    let out = rt.exec(id, &cmd, Some(stdout), &mut sink, 1 << 20).await?;
    let bundle = child.wait_with_output().await?;
    if !bundle.status.success() {
        bail!(
            "git bundle create failed: {}",
            String::from_utf8_lossy(&bundle.stderr).trim_end()
        );
    }
    if out.exit_code != 0 {
        bail!(
            "the sandbox could not check out the task's work ({})",
            crate::error::exit_detail(out.exit_code, &out.stderr)
        );
    }
    if let Some(wip) = &seed.wip {
        // The snapshot's tree into the work tree, then the index back to the branch: its
        // changes are uncommitted again (new files untracked), as the agent left them.
        for step in [
            vec!["read-tree", "-u", "--reset", wip.as_str()],
            vec!["reset", "-q"],
        ] {
            let mut cmd = vec!["git".to_string(), "-C".into(), "/workspace".into()];
            cmd.extend(step.iter().map(|s| s.to_string()));
            let out = rt
                .exec_env(id, &cmd, &plain_git(), None::<&[u8]>, &mut sink, 1 << 16)
                .await?;
            if out.exit_code != 0 {
                bail!(
                    "the sandbox could not restore the uncommitted changes ({})",
                    crate::error::exit_detail(out.exit_code, &out.stderr)
                );
            }
        }
    }
    Ok(())
}
