//! Per-task locks and leases, kept beside the task refs in `<common-dir>/git-agent/`.
//!
//! - A [`TaskLock`] serialises the commands that change one task's refs or runtime objects
//!   (sync, commit, allow, restart, stop, purge). It is an exclusive `flock(2)` on
//!   `locks/<task>.lock`, so the kernel releases it when its holder dies, even by kill -9:
//!   no stale lock is ever left to clean up.
//! - A [`Lease`] is held by a `spawn` for as long as it is setting a task up. A task recorded
//!   as `creating` whose lease nobody holds was left by a spawn that died: `doctor` reports
//!   it from this fact, not from a guess about how long a spawn may take.
//! - A [`Follower`] is held by the one process following a running task (`locks/<task>.follow`,
//!   see `ops::follow`); `status` tells from it whether the task is followed.
//!
//! Task names are validated ([`super::TaskName`]), so they are safe as file names.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::git::Git;

/// The directory of git-agent's host-side files of a repository.
pub fn state_dir(git: &Git) -> PathBuf {
    git.common_dir.join("git-agent")
}

fn lock_path(git: &Git, task: &str, ext: &str) -> PathBuf {
    state_dir(git).join("locks").join(format!("{task}.{ext}"))
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))
}

/// An exclusive lock of the whole repository (its worktrees share it) named `name`, waited
/// for: for a short critical section, such as claiming a spare (see `sandbox::spare`).
/// Released when the file is dropped.
pub fn repo_lock(git: &Git, name: &str) -> Result<File> {
    let file = open(&state_dir(git).join(format!("{name}.lock")))?;
    // SAFETY: flock on a file descriptor we own; the result is checked.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot lock the repository");
    }
    Ok(file)
}

/// Try to take an exclusive lock on `file` without waiting.
fn try_flock(file: &File) -> Result<bool> {
    // SAFETY: flock on a file descriptor we own; the result is checked.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(err).context("cannot lock a task lock file")
}

/// Record who holds a lock (read by waiters for their message).
fn stamp(file: &mut File, what: &str) {
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{} {what}", std::process::id());
    let _ = file.flush();
}

/// Who holds a lock, as its holder wrote it (`<pid> <what>`).
fn holder(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.chars().take(200).collect::<String>())
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (pid, what) = s.trim().split_once(' ').unwrap_or((s.trim(), "a command"));
            format!("{what} (pid {pid})")
        })
        .unwrap_or_else(|| "another git-agent command".into())
}

/// An exclusive lock on one task's changes, released on drop (or when the process dies).
#[derive(Debug)]
pub struct TaskLock {
    _file: File,
}

impl TaskLock {
    /// Take the task's lock, waiting for another holder to finish. `waiting` is called once,
    /// with a description of the holder, if the lock is not free at once.
    pub async fn acquire(
        git: &Git,
        task: &str,
        what: &str,
        waiting: impl FnOnce(&str),
    ) -> Result<TaskLock> {
        let path = lock_path(git, task, "lock");
        let mut file = open(&path)?;
        let mut waiting = Some(waiting);
        loop {
            if try_flock(&file)? {
                stamp(&mut file, what);
                return Ok(TaskLock { _file: file });
            }
            if let Some(w) = waiting.take() {
                w(&holder(&path));
            }
            crate::interrupt::checkpoint()?;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Take the task's lock if it is free now.
    pub fn try_acquire(git: &Git, task: &str, what: &str) -> Result<Option<TaskLock>> {
        let path = lock_path(git, task, "lock");
        let mut file = open(&path)?;
        if try_flock(&file)? {
            stamp(&mut file, what);
            return Ok(Some(TaskLock { _file: file }));
        }
        Ok(None)
    }
}

/// A spawn's claim on the task it is setting up; released on drop or when the spawn dies.
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

impl Lease {
    /// Take the lease of a task being created. Fails if another live process holds it.
    pub fn take(git: &Git, task: &str) -> Result<Lease> {
        let path = lock_path(git, task, "lease");
        let mut file = open(&path)?;
        if !try_flock(&file)? {
            anyhow::bail!("task '{task}' is being set up by {}", holder(&path));
        }
        stamp(&mut file, "spawn");
        Ok(Lease { _file: file })
    }

    /// Is a live process setting the task up right now?
    pub fn held(git: &Git, task: &str) -> Result<bool> {
        let path = lock_path(git, task, "lease");
        if !path.exists() {
            return Ok(false);
        }
        let file = open(&path)?;
        // Taking it succeeds only when no one holds it; dropping `file` releases it again.
        Ok(!try_flock(&file)?)
    }
}

/// A follower's claim on the task it follows (see `ops::follow`): one follower per task at
/// most; released on drop or when the follower dies.
#[derive(Debug)]
pub struct Follower {
    _file: File,
}

impl Follower {
    /// Take the claim if no live follower holds it.
    pub fn try_take(git: &Git, task: &str) -> Result<Option<Follower>> {
        let path = lock_path(git, task, "follow");
        let mut file = open(&path)?;
        if !try_flock(&file)? {
            return Ok(None);
        }
        stamp(&mut file, "follow");
        Ok(Some(Follower { _file: file }))
    }

    /// Is a live follower following the task right now? Creates nothing.
    pub fn held(git: &Git, task: &str) -> Result<bool> {
        let path = lock_path(git, task, "follow");
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        Ok(!try_flock(&file)?)
    }
}

/// Remove a task's lock files (after its refs are gone). A lock still held keeps working for
/// its holder; the next taker simply creates a new file.
pub fn forget(git: &Git, task: &str) {
    for ext in ["lock", "lease", "follow"] {
        let _ = std::fs::remove_file(lock_path(git, task, ext));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, Git) {
        let tmp = tempfile::tempdir().unwrap();
        let git = Git {
            dir: tmp.path().to_path_buf(),
            common_dir: tmp.path().to_path_buf(),
        };
        (tmp, git)
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_release_on_drop() {
        let (_tmp, git) = repo();
        let first = TaskLock::acquire(&git, "t", "sync", |_| {}).await.unwrap();
        assert!(TaskLock::try_acquire(&git, "t", "allow").unwrap().is_none());
        assert!(
            TaskLock::try_acquire(&git, "other", "allow")
                .unwrap()
                .is_some()
        );
        drop(first);
        assert!(TaskLock::try_acquire(&git, "t", "allow").unwrap().is_some());
    }

    #[tokio::test]
    async fn a_waiter_is_told_who_holds_the_lock() {
        let (_tmp, git) = repo();
        let held = TaskLock::try_acquire(&git, "t", "commit").unwrap().unwrap();
        let g = git.clone();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(held);
        });
        let mut told = String::new();
        let _lock = TaskLock::acquire(&g, "t", "sync", |h| told = h.to_string())
            .await
            .unwrap();
        release.await.unwrap();
        assert!(told.contains("commit"), "{told}");
        assert!(told.contains(&std::process::id().to_string()), "{told}");
    }

    #[test]
    fn a_task_has_one_follower_at_most_and_asking_creates_nothing() {
        let (_tmp, git) = repo();
        assert!(!Follower::held(&git, "t").unwrap());
        assert!(
            !lock_path(&git, "t", "follow").exists(),
            "held() created the file"
        );
        let first = Follower::try_take(&git, "t").unwrap().expect("free");
        assert!(Follower::held(&git, "t").unwrap());
        assert!(Follower::try_take(&git, "t").unwrap().is_none());
        assert!(!Follower::held(&git, "other").unwrap());
        drop(first);
        assert!(!Follower::held(&git, "t").unwrap());
        assert!(Follower::try_take(&git, "t").unwrap().is_some());
    }

    #[test]
    fn a_lease_is_held_only_while_its_holder_keeps_it() {
        let (_tmp, git) = repo();
        assert!(!Lease::held(&git, "t").unwrap());
        let lease = Lease::take(&git, "t").unwrap();
        assert!(Lease::held(&git, "t").unwrap());
        assert!(Lease::take(&git, "t").is_err());
        drop(lease);
        assert!(!Lease::held(&git, "t").unwrap());
    }
}
