//! Writing the re-created commits and their provenance notes in bulk, in a quarantine.
//!
//! Re-creating commits one `git commit-tree` (and one `git notes add`) at a time costs a few
//! processes per commit: 100,000 agent commits took longer than 400 s; one `git fast-import`
//! stream still took about 20 s, half of it on the notes. Here every unsigned commit, every
//! note blob and the notes trees and commit are encoded and hashed in process and written as
//! ONE pack (see [`super::pack`]; the notes tree in [`super::notes`]): each commit's tree is
//! the agent's tree by id, so no tree or blob of the work is written again. With
//! `commit.gpgSign` each commit is made by `git commit-tree -S` in the user's repository
//! (its signing configuration applies unchanged): one signature per commit is what signing
//! costs, as with `git rebase`; the notes still go into the pack.
//!
//! All objects are written into a quarantine: a throw-away bare repository under
//! `<common-dir>/git-agent/tmp/` whose alternates point at the user's objects. They are moved
//! into the user's object store only once everything was written, right before the caller
//! moves the branch, the notes and the task record in one transaction. Every file moved in is
//! first named in the quarantine's journal, and the quarantine is `flock`ed by its promotion
//! for as long as it lives: when a promotion dies (kill -9) between moving the objects and
//! the transaction, the next command's [`sweep`] sees the lock free, finds the transaction
//! never happened (neither ref reaches the journal's commits) and deletes exactly the files
//! the journal names, so an interrupted promotion leaves no stray object behind.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use gix::ObjectId;

use super::PromoteError;
use super::pack::PackWriter;
use crate::git::Git;
use crate::ops::{Event, Events};

/// A parent of a commit to write: an existing commit, or an earlier job.
#[derive(Debug, Clone)]
pub enum Parent {
    Existing(String),
    Job(usize),
}

/// One commit to write: the agent's tree, new parents, the message, the provenance note.
#[derive(Debug, Clone)]
pub struct Job {
    pub tree: String,
    pub parents: Vec<Parent>,
    pub message: String,
    pub note: String,
}

/// Environment that must not leak from the user's invocation into the quarantine's git.
const REPO_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_QUARANTINE_PATH",
];

/// Name prefix of quarantine directories (under `<common-dir>/git-agent/tmp/`).
pub const PREFIX: &str = "promote-";
/// Name prefix of the quarantines older versions left in the system temp directory.
const OLD_PREFIX: &str = "git-agent-promote-";
/// File in a quarantine its promotion holds an exclusive `flock` on while it lives.
const LOCK_FILE: &str = "lock";
/// File in a quarantine naming what the promotion moved into the user's repository.
const JOURNAL: &str = "journal";
/// Prefix of a temporary file while an object is copied into the user's object store.
const TMP_PREFIX: &str = "tmp_git-agent_";

/// Where quarantines live.
pub fn quarantine_root(git: &Git) -> PathBuf {
    crate::task::lock::state_dir(git).join("tmp")
}

/// Take `file`'s exclusive lock without waiting; `false` when someone holds it.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a file descriptor we own; the result is checked.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Clean up after promotions that died: their quarantines, and the objects they moved into
/// the user's repository if their ref transaction never happened. A quarantine whose
/// promotion still runs (its lock is held) is left alone, and so is one whose task's lock is
/// held by another command (that command may be promoting the same objects again); `held`
/// names the task whose lock the caller itself holds. Best effort: errors are ignored, the
/// next command tries again.
pub fn sweep(git: &Git, held: Option<&str>) {
    if held.is_some() {
        sweep_old_temp_dirs();
    }
    let root = quarantine_root(git);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if !e.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let Ok(lock) = File::open(path.join(LOCK_FILE)) else {
            // Created this instant (its lock comes right after), or broken long ago.
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(600));
            if old {
                let _ = std::fs::remove_dir_all(&path);
            }
            continue;
        };
        if !try_lock(&lock) {
            continue;
        }
        let journal = std::fs::read_to_string(path.join(JOURNAL)).unwrap_or_default();
        if undo(git, &journal, held).is_ok() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Quarantines of versions that wrote them to the system temp directory, by a dead process.
fn sweep_old_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(OLD_PREFIX) {
            continue;
        }
        let Ok(pid) = std::fs::read_to_string(e.path().join("git-agent.pid")) else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Delete what a dead promotion moved in, unless its transaction happened. `Err` when that
/// cannot be decided now (the quarantine is kept for a later sweep).
fn undo(git: &Git, journal: &str, held: Option<&str>) -> Result<()> {
    let mut task = None;
    let mut tips = Vec::new();
    let mut moved = Vec::new();
    for line in journal.lines() {
        match line.split_once(' ') {
            Some(("task", t)) => task = Some(t.to_string()),
            Some(("tip", ref_and_id)) => tips.push(ref_and_id.to_string()),
            Some(("moved", path)) => moved.push(PathBuf::from(path)),
            _ => {}
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    let Some(task) = task else {
        bail!("a journal without its task");
    };
    let _lock = if held == Some(task.as_str()) {
        None
    } else {
        Some(
            crate::task::lock::TaskLock::try_acquire(git, &task, "sweep")?
                .context("the task is busy")?,
        )
    };
    for t in &tips {
        let Some((name, id)) = t.split_once(' ') else {
            continue;
        };
        let Some(now) = git.ref_value(name)? else {
            continue;
        };
        // Reachable from the ref (or undecidable): the transaction happened, keep all.
        if !git
            .test(["merge-base", "--is-ancestor", id, &now])
            .unwrap_or(true)
        {
            continue;
        }
        return Ok(());
    }
    for p in moved.iter().rev() {
        let _ = std::fs::remove_file(p);
        if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
            let _ = std::fs::remove_file(tmp_name(dir, name));
        }
    }
    Ok(())
}

/// A throw-away bare repository borrowing the user's objects; new objects land in it.
pub struct Quarantine {
    dir: tempfile::TempDir,
    /// The user's object directory.
    objects: PathBuf,
    /// Held (locked) while the quarantine lives.
    _lock: File,
    journal: File,
    /// The repository's object format.
    hash: gix::hash::Kind,
}

impl Quarantine {
    fn new(git: &Git, task: &str) -> Result<Quarantine> {
        let objects = git.run([
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "objects",
        ])?;
        let objects = PathBuf::from(objects);
        let format = git
            .run(["rev-parse", "--show-object-format"])
            .unwrap_or_else(|_| "sha1".into());
        let hash = match format.as_str() {
            "sha1" => gix::hash::Kind::Sha1,
            other => bail!("cannot promote into a repository whose objects use {other}"),
        };
        let root = quarantine_root(git);
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&root)
            .context("cannot create a temporary directory for promotion")?;
        let lock = File::create(dir.path().join(LOCK_FILE))?;
        if !try_lock(&lock) {
            bail!("cannot lock the promotion quarantine");
        }
        let mut journal = File::create(dir.path().join(JOURNAL))?;
        writeln!(journal, "task {task}")?;
        let q = Quarantine {
            dir,
            objects,
            _lock: lock,
            journal,
            hash,
        };
        let mut init = q.git();
        init.args(["init", "-q", "--bare", "--template="])
            .arg(format!("--object-format={format}"))
            .arg(q.dir.path());
        crate::git::output_of(&mut init, None)
            .context("cannot prepare the promotion quarantine")?;
        std::fs::write(
            q.dir.path().join("objects/info/alternates"),
            format!("{}\n", q.objects.display()),
        )?;
        Ok(q)
    }

    /// git working on the quarantine repository.
    fn git(&self) -> Command {
        let mut cmd = crate::git::command();
        for v in REPO_ENV {
            cmd.env_remove(v);
        }
        cmd.arg("--git-dir").arg(self.dir.path());
        cmd
    }

    fn own_objects(&self) -> PathBuf {
        self.dir.path().join("objects")
    }

    /// Write a journal line and make it durable before acting on it.
    fn log(&mut self, line: &str) -> Result<()> {
        writeln!(self.journal, "{line}")?;
        self.journal.flush()?;
        self.journal
            .sync_data()
            .context("cannot write the promotion journal")
    }

    /// Move every object written here into the user's object store: packs data first and
    /// index last (git finds a pack by its index), loose objects each under a temporary name
    /// then renamed, so a reader never sees a partial file. Each file is journaled first.
    fn migrate(&mut self) -> Result<()> {
        let src = self.own_objects();
        let pack_dir = src.join("pack");
        let mut packs: Vec<PathBuf> = std::fs::read_dir(&pack_dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        packs.retain(|p| p.extension().is_some_and(|e| e != "keep"));
        packs.sort_by_key(|p| {
            (
                p.extension().is_some_and(|e| e == "idx"),
                p.extension().is_none_or(|e| e != "pack"),
            )
        });
        let dest_pack = self.objects.join("pack");
        let mut moves = Vec::new();
        for p in &packs {
            moves.push((
                p.clone(),
                dest_pack.join(p.file_name().expect("a file name")),
            ));
        }
        for entry in std::fs::read_dir(&src)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !name.chars().all(|c| c.is_ascii_hexdigit()) {
                continue;
            }
            let dest = self.objects.join(&*name);
            for obj in std::fs::read_dir(entry.path())? {
                let obj = obj?;
                moves.push((obj.path(), dest.join(obj.file_name())));
            }
        }
        for (from, to) in moves {
            if to.exists() {
                continue;
            }
            self.log(&format!("moved {}", to.display()))?;
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir)?;
            }
            place(&from, &to)?;
        }
        Ok(())
    }
}

/// The temporary name of an object file while it is copied in (found again by [`sweep`]).
fn tmp_name(dir: &Path, name: &std::ffi::OsStr) -> PathBuf {
    dir.join(format!("{TMP_PREFIX}{}", name.to_string_lossy()))
}

/// Put `from` at `to` atomically (rename, or copy to a temporary name and rename); an
/// existing `to` holds the same object already and is kept.
fn place(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        return Ok(());
    }
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let dir = to.parent().expect("a parent directory");
    let tmp = tmp_name(dir, to.file_name().expect("a file name"));
    std::fs::copy(from, &tmp)
        .and_then(|_| std::fs::rename(&tmp, to))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot add objects to {}", dir.display()))
}

/// Progress of re-creation as [`Event::Progress`]: at most every [`PROGRESS_EVERY`] while
/// it runs (nothing in the first one, so a quick promotion sends nothing), and at the end
/// when it sent any. How it shows is the renderer's business.
struct Progress<'a> {
    task: &'a str,
    total: usize,
    last: Instant,
    /// Whether any progress went out (then its end goes out too).
    sent: bool,
    events: &'a dyn Events,
}

/// How often progress is sent while re-creation runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What re-creation counts, as progress names it.
pub const RECREATING: &str = "re-creating commits";

impl<'a> Progress<'a> {
    fn new(task: &'a str, total: usize, events: &'a dyn Events) -> Progress<'a> {
        Progress {
            task,
            total,
            last: Instant::now(),
            sent: false,
            events,
        }
    }

    fn tick(&mut self, done: usize) {
        let now = Instant::now();
        if now - self.last < PROGRESS_EVERY || done >= self.total {
            return;
        }
        self.last = now;
        self.sent = true;
        self.send(done);
    }

    fn send(&self, done: usize) {
        self.events.emit(Event::Progress {
            task: Some(self.task.to_string()),
            what: RECREATING.to_string(),
            done: done as u64,
            total: self.total as u64,
        });
    }

    fn finish(&self) {
        if self.sent {
            self.send(self.total);
        }
    }
}

/// The user's identity as git would write it (`Name <email> <time> <zone>`); git fails
/// to tell it only when it does not know who the user is.
fn ident(git: &Git, which: &str) -> Result<String> {
    git.run(["var", which])
        .map_err(|_| PromoteError::Identity.into())
}

/// Objects written in a quarantine, on their way into the user's repository.
pub struct Pending {
    q: Quarantine,
    /// The new commit of each job, in order.
    pub commits: Vec<String>,
    /// The new tip of the notes ref.
    pub notes: String,
    /// Each job's note, for writing the notes commit again on another notes tip.
    notes_of: Vec<String>,
    committer: String,
}

/// Write every job (and one notes commit for all of them on top of `notes_old`) into a
/// quarantine: unsigned commits, note blobs and notes trees as one pack written in process
/// (see [`super::pack`]); signed commits one `git commit-tree -S` each. Nothing enters the
/// user's repository yet.
pub fn write(
    git: &Git,
    task: &str,
    jobs: &[Job],
    sign: bool,
    notes_old: Option<&str>,
    events: &dyn Events,
) -> Result<Pending> {
    let q = Quarantine::new(git, task)?;
    let committer = ident(git, "GIT_COMMITTER_IDENT")?;
    let author = ident(git, "GIT_AUTHOR_IDENT")?;
    let mut progress = Progress::new(task, jobs.len(), events);
    let mut pack = PackWriter::new(q.hash);
    let commits = if sign {
        sign_each(git, &q, jobs, &mut progress)?
    } else {
        write_commits(&mut pack, jobs, &author, &committer, &mut progress)?
    };
    let notes_of: Vec<String> = jobs.iter().map(|j| j.note.clone()).collect();
    let notes = write_notes(git, &mut pack, &committer, notes_old, &commits, &notes_of)?;
    pack.finish(&q.own_objects().join("pack"))?;
    progress.finish();
    Ok(Pending {
        q,
        commits,
        notes,
        notes_of,
        committer,
    })
}

impl Pending {
    /// Move the objects into the user's repository, journaling each file first, and note
    /// the refs that reach them once the transaction happened (`branch` at `tip`, the
    /// notes ref at [`notes`](Self::notes)).
    pub fn migrate(&mut self, branch: &str, tip: &str) -> Result<()> {
        self.q.log(&format!("tip {branch} {tip}"))?;
        self.q
            .log(&format!("tip {} {}", super::NOTES_REF, self.notes))?;
        self.q.migrate()
    }

    /// Journal the objects a prepared state commit `state` added (it, its tree, the blobs
    /// that differ from its parent's): written straight into the user's repository before
    /// the transaction, they must go as well if it never happens.
    pub fn journal_state(&mut self, git: &Git, state: &str) -> Result<()> {
        let mut ids = vec![
            state.to_string(),
            git.run(["rev-parse", &format!("{state}^{{tree}}")])?,
        ];
        let changed = git.run(["diff-tree", "-r", "--no-commit-id", "--root", state])?;
        for line in changed.lines() {
            // `:<old mode> <new mode> <old id> <new id> <status>\t<path>`
            if let Some(new) = line.split_whitespace().nth(3)
                && new.bytes().any(|b| b != b'0')
            {
                ids.push(new.to_string());
            }
        }
        for id in ids {
            let (dir, file) = id.split_at(2);
            let path = self.q.objects.join(dir).join(file);
            self.q.log(&format!("moved {}", path.display()))?;
        }
        Ok(())
    }

    /// Write the notes commit again on top of `notes_old` (another promotion moved the
    /// notes ref meanwhile); the re-created commits stay as they are. Call
    /// [`migrate`](Self::migrate) again after this.
    pub fn renote(&mut self, git: &Git, notes_old: Option<&str>) -> Result<()> {
        let mut pack = PackWriter::new(self.q.hash);
        self.notes = write_notes(
            git,
            &mut pack,
            &self.committer,
            notes_old,
            &self.commits,
            &self.notes_of,
        )?;
        pack.finish(&self.q.own_objects().join("pack"))?;
        Ok(())
    }

    /// The objects are referenced now: drop the quarantine (and its journal).
    pub fn finish(self) {
        drop(self.q);
    }

    /// The transaction did not happen: take back what was moved in, drop the quarantine.
    /// The caller holds `task`'s lock.
    pub fn abandon(self, git: &Git, task: &str) {
        let journal = std::fs::read_to_string(self.q.dir.path().join(JOURNAL)).unwrap_or_default();
        let _ = undo(git, &journal, Some(task));
        drop(self.q);
    }
}

/// `git commit-tree -S` for each job in the user's repository (its signing setup applies),
/// writing into the quarantine.
fn sign_each(
    git: &Git,
    q: &Quarantine,
    jobs: &[Job],
    progress: &mut Progress<'_>,
) -> Result<Vec<String>> {
    let mut made: Vec<String> = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        crate::interrupt::checkpoint()?;
        let mut cmd = git.command();
        cmd.env("GIT_OBJECT_DIRECTORY", q.own_objects())
            .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", &q.objects)
            .args(["commit-tree", &job.tree]);
        for p in &job.parents {
            cmd.arg("-p").arg(match p {
                Parent::Existing(id) => id.as_str(),
                Parent::Job(j) => made[*j].as_str(),
            });
        }
        cmd.args(["-S", "-F", "-"]);
        let out = crate::git::output_of(&mut cmd, Some(job.message.as_bytes())).map_err(|e| {
            PromoteError::Signing {
                detail: format!("{e:#}"),
            }
        })?;
        made.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        progress.tick(i + 1);
    }
    Ok(made)
}

/// The unsigned commits, each as git writes it, into `pack`; their ids.
fn write_commits(
    pack: &mut PackWriter,
    jobs: &[Job],
    author: &str,
    committer: &str,
    progress: &mut Progress<'_>,
) -> Result<Vec<String>> {
    let mut made: Vec<ObjectId> = Vec::with_capacity(jobs.len());
    let mut bytes = Vec::with_capacity(1024);
    for (i, job) in jobs.iter().enumerate() {
        if i % 256 == 0 {
            crate::interrupt::checkpoint()?;
        }
        let parents = job
            .parents
            .iter()
            .map(|p| match p {
                Parent::Existing(id) => object_id(id),
                Parent::Job(j) => made.get(*j).copied().context("a parent written later"),
            })
            .collect::<Result<Vec<_>>>()?;
        commit_bytes(
            &mut bytes,
            &object_id(&job.tree)?,
            &parents,
            author,
            committer,
            job.message.as_bytes(),
        );
        made.push(pack.add(gix::objs::Kind::Commit, &bytes)?);
        progress.tick(i + 1);
    }
    Ok(made.iter().map(ObjectId::to_string).collect())
}

/// An id from git's output (or a record), checked: it goes into an object header.
fn object_id(hex: &str) -> Result<ObjectId> {
    ObjectId::from_hex(hex.as_bytes()).with_context(|| format!("not an object id: {hex:?}"))
}

/// A commit object exactly as `git commit-tree` (and `git fast-import`) writes it.
fn commit_bytes(
    out: &mut Vec<u8>,
    tree: &ObjectId,
    parents: &[ObjectId],
    author: &str,
    committer: &str,
    message: &[u8],
) {
    out.clear();
    let _ = writeln!(out, "tree {tree}");
    for p in parents {
        let _ = writeln!(out, "parent {p}");
    }
    let _ = write!(out, "author {author}\ncommitter {committer}\n\n");
    out.extend_from_slice(message);
}

/// One notes commit on top of `notes_old` (its author is its committer, as fast-import
/// writes it), with the note `notes_of[i]` on `commits[i]`, into `pack`; its id.
fn write_notes(
    git: &Git,
    pack: &mut PackWriter,
    committer: &str,
    notes_old: Option<&str>,
    commits: &[String],
    notes_of: &[String],
) -> Result<String> {
    let (mut notes, other) = match notes_old {
        Some(old) => super::notes::read(git, old)?,
        None => Default::default(),
    };
    for (commit, note) in commits.iter().zip(notes_of) {
        let blob = pack.add(gix::objs::Kind::Blob, note.as_bytes())?;
        notes.insert(object_id(commit)?, blob);
    }
    crate::interrupt::checkpoint()?;
    let tree = super::notes::write_tree(pack, &notes, &other)?;
    let parents = notes_old.map(object_id).transpose()?;
    let mut bytes = Vec::new();
    commit_bytes(
        &mut bytes,
        &tree,
        parents.as_slice(),
        committer,
        committer,
        b"Notes added by 'git agent commit'\n",
    );
    Ok(pack.add(gix::objs::Kind::Commit, &bytes)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::events::Collected;

    /// Progress goes out at most every 100 ms while re-creation runs, and once at the end:
    /// a quick promotion sends nothing.
    #[test]
    fn progress_is_sent_sparsely_and_at_the_end() {
        let progress = |done, total| Event::Progress {
            task: Some("t".into()),
            what: RECREATING.into(),
            done,
            total,
        };
        let events = Collected::default();
        let mut quick = Progress::new("t", 10, &events);
        quick.tick(5);
        quick.tick(10);
        quick.finish();
        assert!(events.take().is_empty());
        let mut slow = Progress::new("t", 10, &events);
        slow.last -= Duration::from_secs(1);
        slow.tick(5);
        slow.tick(6);
        slow.finish();
        assert_eq!(events.take(), vec![progress(5, 10), progress(10, 10)]);
    }
}
