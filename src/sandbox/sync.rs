//! Bringing a task's work home: the sandbox emits a header and a bundle, the host admits it
//! (see `git::bundle`) and moves the task's `head`/`wip` refs and state in one transaction.
//!
//! Nothing the agent wrote runs while its work is read: a finished task is read from a fresh
//! container (the task's image, no network, nothing of the agent's but its workspace), and
//! the helper's `emit` reads the workspace through a private git dir that has none of the
//! agent's config, hooks, attributes drivers or alternates (see `dockerfiles/git-agent-sandbox`).
//! Every sync has a time limit (`agent.syncTimeout`).
//!
//! Nothing is left behind: the host side of a sync keeps its temp files (the bundle, the
//! quarantine repository) in one scratch directory per task, `<common-dir>/git-agent/tmp/sync/<task>/`,
//! which also marks a reader container in use. A sync killed outright (kill -9) leaves them;
//! the next command that changes the task (sync, commit, restart, stop, rm, purge) or `doctor
//! --fix` removes them ([`clear_leftovers`]) under the task's lock, i.e. once the sync that
//! left them is dead. Read-only commands (`list`, `status`) leave them. Inside the sandbox, `emit` removes its own
//! private directory, and every emit removes those of earlier emits that died.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;

use super::{HELPER, RepoId, refresh};
use crate::crash;
use crate::error::{hinted, sanitize};
use crate::git::Git;
use crate::git::bundle::{HeaderSplitter, admit, parse_header};
use crate::interrupt::abandon_on_interrupt;
use crate::runtime::{ContainerState, ObjectKind, OutputTooLarge, Runtime};
use crate::task::lock::TaskLock;
use crate::task::store::{Loaded, TaskStore};
use crate::task::{Changes, branch_name, now};

/// What a sync changed.
#[derive(Debug)]
pub struct SyncOutcome {
    pub loaded: Loaded,
    /// New commits on the task's branch since the last sync.
    pub new_commits: usize,
    pub head_moved: bool,
    pub wip_changed: bool,
    pub has_wip: bool,
    pub bundle_bytes: u64,
}

impl SyncOutcome {
    pub fn nothing_new(&self) -> bool {
        !self.head_moved && !self.wip_changed
    }
}

/// Default time limit of one sync, in seconds (`agent.syncTimeout`).
pub const SYNC_TIMEOUT: u64 = 300;

/// `agent.syncTimeout` in seconds (`90`, `90s`, `10m`, `1h`).
pub fn sync_timeout(config: &crate::git::Config) -> Result<u64> {
    crate::duration::config_secs(config, "agent.syncTimeout", SYNC_TIMEOUT)
}

/// Sync a task. `limit` caps the bytes accepted from the sandbox.
///
/// The caller holds the task's lock (`lock`), so syncs, commits and other changes of one
/// task never interleave; a sync that had to wait should load the task with
/// [`reload_after_wait`] first. A sync that finds its task purged under it changes nothing
/// and says so.
pub async fn sync<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    loaded: Loaded,
    limit: u64,
    lock: &TaskLock,
    events: &dyn crate::ops::Events,
) -> Result<SyncOutcome> {
    let git = store.git();
    let task = loaded.record.name.clone();
    let repo = RepoId::of(git);
    clear_leftovers(rt, git, &repo, &task, lock).await?;
    let loaded = refresh(rt, store, loaded).await?;
    let container = loaded.record.sandbox.container.clone().ok_or_else(|| {
        hinted(
            format!("task '{task}' has no container to sync from"),
            format!(
                "its last synced work is still in its refs; see it with `git agent review {task}`"
            ),
        )
    })?;
    let scratch = Scratch::create(git, &task)?;
    let was_running = rt.state(&container).await? == ContainerState::Running;
    let mut result = sync_from(rt, store, &loaded, &container, &scratch, limit, events).await;
    // The task's command ended while its own container was being read (the exec is killed
    // with it, or refused once it stopped): read the workspace again, from a reader.
    if result.is_err() && was_running && ended_meanwhile(rt, &container).await {
        result = sync_from(rt, store, &loaded, &container, &scratch, limit, events).await;
    }
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) => Err(lost_race(rt, store, &task, &container).await.unwrap_or(e)),
    }
}

/// Did the container stop (or is it stopping) after a read from it failed? The engine marks
/// a container exited a moment after its process is gone, so look for a little while.
async fn ended_meanwhile<R: Runtime>(rt: &R, container: &str) -> bool {
    for _ in 0..30 {
        match rt.state(container).await {
            Ok(ContainerState::Running) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Ok(ContainerState::Exited(_)) => return true,
            _ => return false,
        }
    }
    false
}

/// The part of [`sync`] that uses the scratch directory and, for a finished task, a reader
/// container: both are gone when it returns, unless the engine failed to remove the reader
/// (then the scratch directory stays as its marker, for [`clear_leftovers`]).
async fn sync_from<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    loaded: &Loaded,
    container: &str,
    scratch: &Scratch,
    limit: u64,
    events: &dyn crate::ops::Events,
) -> Result<SyncOutcome> {
    let task = loaded.record.name.as_str();
    let reader = match rt.state(container).await? {
        ContainerState::Running => container.to_string(),
        ContainerState::Missing => {
            return Err(hinted(
                format!("the container of task '{task}' no longer exists"),
                format!(
                    "its last synced work is still in its refs; see it with `git agent review {task}`"
                ),
            ));
        }
        // The run is over: read its workspace from a fresh container that only sleeps, with
        // no network. Starting the task's own container again would hand control back to
        // whatever the agent left in it.
        _ => {
            scratch.mark_reader()?;
            start_reader(rt, store, loaded).await?
        }
    };
    crash::point("sync.after-reader");
    let secs = sync_timeout(&store.git().agent_config()?)?;
    let work = fetch_work(
        rt,
        store,
        loaded,
        &reader,
        limit,
        secs,
        scratch.path(),
        events,
    );
    // The host's limit is a little longer than the helper's own (which kills its git and
    // removes its temp files): the helper's clearer message wins when both fire.
    let host_limit = std::time::Duration::from_secs(secs + 10);
    let result = match tokio::time::timeout(host_limit, abandon_on_interrupt(work)).await {
        Ok(r) => r,
        Err(_) => Err(timed_out(task, secs)),
    };
    if reader != container && !remove_reader(rt, &reader).await {
        scratch.keep();
    }
    result
}

/// Remove a reader container; true once it is gone. A removal that fails because another
/// command (a purge) is removing it at the same moment counts once the engine no longer has it.
async fn remove_reader<R: Runtime>(rt: &R, reader: &str) -> bool {
    if rt.remove_container(reader).await.is_ok() {
        return true;
    }
    for _ in 0..30 {
        if matches!(rt.state(reader).await, Ok(ContainerState::Missing)) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// The error of a sync that lost a race with `purge` (or with someone removing the task's
/// container) while it ran, if that is what happened: the task's refs are gone, its record no
/// longer has the container the sync started from, or the engine no longer has that
/// container. Nothing was changed in any of these cases: the refs only move once all is read.
async fn lost_race<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    task: &str,
    container: &str,
) -> Option<anyhow::Error> {
    let now = store.load(task).ok()?;
    let purged_now = match &now {
        None => true,
        Some(l) => l.record.sandbox.container.as_deref() != Some(container),
    };
    if purged_now {
        return Some(purged(task, now.is_some(), "ran"));
    }
    match rt.state(container).await {
        Ok(ContainerState::Missing) => Some(hinted(
            format!(
                "the container of task '{task}' was removed while this sync ran (by `git agent purge` or outside git-agent); nothing was changed"
            ),
            "see what is left of the task with `git agent list`; its last synced work stays in its refs unless it was purged with --refs",
        )),
        _ => None,
    }
}

fn purged(task: &str, refs_kept: bool, when: &str) -> anyhow::Error {
    hinted(
        format!("task '{task}' was purged while this sync {when}; nothing was changed"),
        if refs_kept {
            format!(
                "its last synced work is still in its refs; see it with `git agent review {task}`"
            )
        } else {
            "see the remaining tasks with `git agent list`".to_string()
        },
    )
}

/// Load a task again once its lock is held: another command may have changed it while this
/// one waited. A task that was purged meanwhile (its refs deleted, or its container removed
/// by `purge`) is an error that says so; nothing has been changed by then.
pub fn reload_after_wait(store: &TaskStore, before: &Loaded) -> Result<Loaded> {
    let task = before.record.name.as_str();
    match store.load(task)? {
        None => Err(purged(task, false, "waited")),
        Some(now)
            if before.record.sandbox.container.is_some()
                && now.record.sandbox.container.is_none() =>
        {
            Err(purged(task, true, "waited"))
        }
        Some(now) => Ok(now),
    }
}

/// A task's scratch directory for the host side of a sync: `<common-dir>/git-agent/tmp/sync/<task>/`.
pub fn scratch_dir(git: &Git, task: &str) -> PathBuf {
    scratch_root(git).join(task)
}

/// Where every task's sync scratch directory is: a directory of its own, so nothing else
/// kept in `tmp/` (a promotion's quarantine) is ever taken for a sync's leftovers.
pub fn scratch_root(git: &Git) -> PathBuf {
    crate::task::lock::state_dir(git).join("tmp").join("sync")
}

/// The marker file in a scratch directory saying that a reader container was started.
const READER_MARK: &str = "reader";

/// The scratch directory of the sync running now; removed on drop (also when the sync is
/// abandoned on Ctrl-C), unless [`keep`](Self::keep) was called.
struct Scratch {
    dir: PathBuf,
    keep: std::sync::atomic::AtomicBool,
}

impl Scratch {
    fn create(git: &Git, task: &str) -> Result<Scratch> {
        let dir = scratch_dir(git, task);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        Ok(Scratch {
            dir,
            keep: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    fn mark_reader(&self) -> Result<()> {
        std::fs::write(self.dir.join(READER_MARK), b"")
            .with_context(|| format!("cannot write in {}", self.dir.display()))
    }

    fn keep(&self) {
        self.keep.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Did a sync of `task` leave something behind? (A scratch directory exists.)
pub fn has_leftovers(git: &Git, task: &str) -> bool {
    std::fs::symlink_metadata(scratch_dir(git, task)).is_ok()
}

/// Remove what an interrupted sync of `task` left behind (its reader container, its temp
/// files), if anything. The caller holds the task's lock (a sync still running owns them):
/// every command that changes the task calls this (sync, and through it commit and restart;
/// stop, rm, purge), and so does `doctor --fix`; read-only commands never do. Cheap when
/// there is nothing to remove (one `stat`). Returns whether anything was removed.
pub async fn clear_leftovers<R: Runtime>(
    rt: &R,
    git: &Git,
    repo: &RepoId,
    task: &str,
    _lock: &TaskLock,
) -> Result<bool> {
    let dir = scratch_dir(git, task);
    if !has_leftovers(git, task) {
        return Ok(false);
    }
    // The reader of the sync that left the scratch directory goes with it (when its labels
    // say it is this task's: a name is never proof of ownership).
    let reader = repo.object_names(task).reader;
    if dir.join(READER_MARK).exists()
        && super::owned_by(rt, repo, task, ObjectKind::Container, &reader).await?
    {
        rt.remove_container(&reader).await?;
    }
    discard(git, &dir)?;
    Ok(true)
}

/// Where scratch directories go to be removed: see [`discard`].
fn trash_root(git: &Git) -> PathBuf {
    crate::task::lock::state_dir(git).join("tmp").join("trash")
}

/// Remove a sync's scratch directory `dir` (or a file in its place). A process the killed
/// sync started (a git still writing the objects it was admitting) may outlive it and keep
/// creating files there while they are removed, so the directory is first moved aside under a
/// unique name, atomically: `dir` is gone at once, and whatever is still writing writes into
/// the moved copy, which is removed as well as it can be now and swept by the next call.
pub fn discard(git: &Git, dir: &Path) -> Result<()> {
    let trash = trash_root(git);
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(dir)
            .with_context(|| format!("cannot remove {}", dir.display()));
    }
    std::fs::create_dir_all(&trash)
        .with_context(|| format!("cannot create the directory {}", trash.display()))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let aside = trash.join(format!("{}-{nanos}", std::process::id()));
    std::fs::rename(dir, &aside)
        .with_context(|| format!("cannot move {} aside to remove it", dir.display()))?;
    sweep_trash(&trash);
    Ok(())
}

/// Remove everything in the trash directory that can be removed now. A directory a leftover
/// process still writes in is tried a few times, then left for the next sweep.
fn sweep_trash(trash: &Path) {
    let Ok(entries) = std::fs::read_dir(trash) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        for _ in 0..10 {
            match std::fs::remove_dir_all(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                    std::fs::remove_file(&path).ok();
                    break;
                }
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                _ => break,
            }
        }
    }
}

/// What the helper's `emit` prints when its time limit stopped it.
const TIMED_OUT_MARK: &str = "git-agent-sandbox: timed out after";

fn timed_out(task: &str, secs: u64) -> anyhow::Error {
    hinted(
        format!(
            "sync of task '{task}' stopped: reading its work took longer than the {secs}s limit (agent.syncTimeout); nothing was changed"
        ),
        format!(
            "if the work is just large, raise the limit: git config agent.syncTimeout 30m; else look inside with `git agent shell {task}`"
        ),
    )
}

/// A container for reading a finished task's workspace: the task's image, its workspace
/// volume, no network, the same hardening, and a command that does nothing.
pub async fn start_reader<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    loaded: &Loaded,
) -> Result<String> {
    let name = super::RepoId::of(store.git())
        .object_names(&loaded.record.name)
        .reader;
    start_reader_as(rt, store, loaded, name).await
}

/// [`start_reader`] under another container name (`shell` keeps its own, so a sync never
/// removes the container of an open shell).
pub async fn start_reader_as<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    loaded: &Loaded,
    name: String,
) -> Result<String> {
    let task = loaded.record.name.as_str();
    let repo = super::RepoId::of(store.git());
    let limits = super::spawn::Limits::from_config(&store.git().agent_config()?)?;
    let mut spec = super::spawn::sandbox_spec(
        &repo,
        task,
        super::spawn::Process {
            image_id: &loaded.record.sandbox.image_id,
            cmd: vec!["sleep".into(), "infinity".into()],
            env: &[],
            home_volume: false,
            tty: false,
            read_only: loaded.record.read_only,
            cache: loaded.record.sandbox.cache.as_deref(),
            oci_runtime: loaded.record.oci_runtime.as_deref(),
            hosts: vec![],
            address: None,
        },
        &limits,
    );
    super::cache::ensure_for_task(rt, store.git(), &repo, loaded, &limits, &|_| {}).await?;
    spec.name = name;
    spec.network = None;
    super::oci::check(rt, spec.oci_runtime.as_deref()).await?;
    rt.remove_container(&spec.name).await?;
    let id = rt.create_container(&spec).await?;
    if let Err(e) = rt.start(&id).await {
        rt.remove_container(&id).await.ok();
        return Err(e);
    }
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn fetch_work<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    loaded: &Loaded,
    container: &str,
    limit: u64,
    secs: u64,
    scratch: &Path,
    events: &dyn crate::ops::Events,
) -> Result<SyncOutcome> {
    let git = store.git();
    let task = loaded.record.name.as_str();
    let base = loaded.record.base.as_str();
    let mut cmd = vec![
        HELPER.to_string(),
        "emit".into(),
        "--timeout".into(),
        secs.to_string(),
        branch_name(task),
    ];
    for leaf in ["base", "head", "wip"] {
        if let Some(v) = loaded.ref_value(leaf) {
            cmd.push(v.to_string());
        }
    }
    // An agent repacking its repository can pull a pack from under `emit` after the snapshot
    // was taken (git then fails to read an object it listed): the sandbox is asked again, a
    // few times, before the failure is the user's. Nothing is admitted from a failed attempt.
    let mut attempt = 1;
    let (tmp, splitter, out) = loop {
        let (tmp, splitter, out) =
            emit_once(rt, container, &cmd, limit, scratch, task, events).await?;
        let retry = out.exit_code != 0 && !matches!(out.exit_code, 124 | 137);
        if !retry || attempt == EMIT_ATTEMPTS {
            break (tmp, splitter, out);
        }
        attempt += 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let mut splitter = splitter;
    splitter.shutdown().await.ok();
    let said = sanitize(String::from_utf8_lossy(&out.stderr).trim_end());
    // The helper's own limit: it says so (see `emit` in the helper). A 137 without that line
    // is a kill from outside (the container stopped or removed under the sync).
    if matches!(out.exit_code, 124 | 137) && said.contains(TIMED_OUT_MARK) {
        return Err(timed_out(task, secs));
    }
    if out.exit_code != 0 {
        let why = match (said.is_empty(), out.exit_code) {
            (false, _) => said,
            (true, 137) => "it was killed before it finished".to_string(),
            (true, code) => format!("it stopped with status {code} without saying why"),
        };
        return Err(hinted(
            format!(
                "the sandbox could not produce its work (exit {}): {why}",
                out.exit_code
            ),
            format!("look inside with `git agent shell {task}`"),
        ));
    }
    let header = parse_header(&splitter.header_line()?)?;
    let bundle_bytes = out
        .stdout_len
        .saturating_sub(splitter.header.len() as u64 + 1);
    let bundle = (bundle_bytes > 0).then(|| tmp.path());
    crash::point("sync.after-bundle");
    admit(git, task, base, &header, bundle, scratch)?;
    crash::point("sync.after-admit");

    let old_head = loaded.ref_value("head").unwrap_or(base).to_string();
    let new_commits = if old_head == header.head {
        0
    } else {
        git.run(["rev-list", "--count", &header.head, &format!("^{old_head}")])?
            .parse()
            .unwrap_or(0)
    };
    let head_moved = old_head != header.head;
    let wip_changed = loaded.ref_value("wip") != header.wip.as_deref();
    let refs_differ = loaded.ref_value("head") != Some(header.head.as_str()) || wip_changed;
    let loaded = if refs_differ {
        let container = loaded.record.sandbox.container.clone();
        let changes = summarize(git, base, header.wip.as_deref().unwrap_or(&header.head));
        let moved = store.update(task, &format!("sync {}", &header.head[..12]), |r, _| {
            if r.sandbox.container != container {
                return Err(purged(task, true, "ran"));
            }
            r.synced = Some(now());
            r.changes = changes.clone();
            Ok(vec![
                ("head".to_string(), Some(header.head.clone())),
                ("wip".to_string(), header.wip.clone()),
            ])
        })?;
        crash::point("sync.after-refs");
        moved
    } else {
        loaded.clone()
    };
    Ok(SyncOutcome {
        loaded,
        new_commits,
        head_moved,
        wip_changed,
        has_wip: header.wip.is_some(),
        bundle_bytes,
    })
}

/// The change summary of work that came home at `tip`, recorded with it so `list` reads it
/// instead of diffing every task. `None` if git cannot compute it (then `list` does).
fn summarize(git: &Git, base: &str, tip: &str) -> Option<Changes> {
    let (files, insertions, deletions) = match tip == base {
        true => (0, 0, 0),
        false => git.shortstats(&[(base, tip)]).ok()?.pop()?,
    };
    Some(Changes {
        tip: tip.to_string(),
        files,
        insertions,
        deletions,
    })
}

/// How many times `emit` is run before its failure is reported.
const EMIT_ATTEMPTS: u32 = 3;

/// Run the sandbox's `emit` once, its output into a fresh temp file of the scratch dir.
async fn emit_once<R: Runtime>(
    rt: &R,
    container: &str,
    cmd: &[String],
    limit: u64,
    scratch: &Path,
    task: &str,
    events: &dyn crate::ops::Events,
) -> Result<(
    tempfile::NamedTempFile,
    HeaderSplitter<tokio::fs::File>,
    crate::runtime::ExecOutcome,
)> {
    let tmp = tempfile::Builder::new()
        .prefix("git-agent-sync-")
        .suffix(".bundle")
        .tempfile_in(scratch)
        .context("cannot create a temp file for the bundle")?;
    // Write through a handle of the temp file itself, never by path: a create still running
    // on a blocking thread after an interrupt would otherwise bring the file back.
    let file = tokio::fs::File::from_std(tmp.reopen()?);
    let mut splitter = HeaderSplitter::new(file);
    let meter =
        crate::transfer::Meter::new(events, Some(task), "receiving the work from the sandbox", 0);
    let mut metered = crate::transfer::Metered::new(&mut splitter, meter);
    let out = rt
        .exec(container, cmd, None::<&[u8]>, &mut metered, limit)
        .await;
    metered.finish();
    let out = out
        .map_err(|e| match e.downcast_ref::<OutputTooLarge>() {
            Some(big) => hinted(
                format!(
                    "rejected the sandbox's work: its bundle is larger than the {} byte limit",
                    big.limit
                ),
                "nothing was changed; if the work is legitimate raise the limit: git config agent.maxBundleSize 2g",
            ),
            None => e,
        })?;
    Ok((tmp, splitter, out))
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

    /// A process left by a killed sync keeps creating files in the scratch directory while
    /// the next command removes it: the directory is gone all the same, and what the process
    /// wrote afterwards goes with the next sweep.
    #[test]
    fn a_scratch_dir_still_written_in_is_discarded() {
        let (_tmp, git) = repo();
        let dir = scratch_dir(&git, "live");
        std::fs::create_dir_all(dir.join("objects/pack")).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                // Like a process whose working directory is inside: it goes on writing there.
                let pack = std::fs::File::open(dir.join("objects/pack")).unwrap();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::fs::write(dir.join(format!("objects/pack/tmp_{n}")), b"x");
                    n += 1;
                }
                drop(pack);
                n
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        discard(&git, &dir).unwrap();
        assert!(!dir.exists());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
        discard(&git, &scratch_dir(&git, "other")).unwrap();
        sweep_trash(&trash_root(&git));
        assert_eq!(std::fs::read_dir(trash_root(&git)).unwrap().count(), 0);
        // A file in the directory's place goes too.
        std::fs::write(&dir, b"").unwrap();
        discard(&git, &dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn a_sync_scratch_dir_goes_unless_kept_and_is_found_by_task() {
        let (_tmp, git) = repo();
        {
            let s = Scratch::create(&git, "t").unwrap();
            std::fs::write(s.path().join("x.bundle"), b"x").unwrap();
            assert!(has_leftovers(&git, "t"));
        }
        assert!(!has_leftovers(&git, "t"), "removed on drop");
        {
            let s = Scratch::create(&git, "t").unwrap();
            s.mark_reader().unwrap();
            s.keep();
        }
        assert!(has_leftovers(&git, "t"), "kept as the reader's marker");
        assert!(scratch_dir(&git, "t").join(READER_MARK).exists());
        assert!(!has_leftovers(&git, "t2"));
    }

    #[test]
    fn sync_timeout_reads_durations() {
        let cfg = |v: &str| crate::git::Config::from_pairs(&[("agent.syncTimeout", v)]);
        assert_eq!(sync_timeout(&cfg("90")).unwrap(), 90);
        assert_eq!(sync_timeout(&cfg("10m")).unwrap(), 600);
        assert!(sync_timeout(&cfg("0")).is_err());
    }
}
