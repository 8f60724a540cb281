//! Writing the re-created commits and their provenance notes in bulk, in a quarantine.
//!
//! Re-creating commits one `git commit-tree` (and one `git notes add`) at a time costs a few
//! processes per commit: 100,000 agent commits took longer than 400 s. Here every commit and
//! the notes commit go through ONE `git fast-import` stream (each commit's root tree is set
//! to the agent's tree by id, so no tree or blob is written again), about 1 s per 10,000
//! commits. With `commit.gpgSign` each commit is made by `git commit-tree -S` in the user's
//! repository (its signing configuration applies unchanged): one signature per commit is
//! what signing costs, as with `git rebase`.
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
use std::io::{BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::PromoteError;
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

/// Progress, as events, once re-creation takes more than a moment: after a second, then
/// every few seconds, and a last line when it is done.
struct Progress<'a> {
    task: &'a str,
    total: usize,
    start: Instant,
    last: Option<Instant>,
    events: &'a dyn Events,
}

/// How often progress is reported once it shows.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl<'a> Progress<'a> {
    fn new(task: &'a str, total: usize, events: &'a dyn Events) -> Progress<'a> {
        Progress {
            task,
            total,
            start: Instant::now(),
            last: None,
            events,
        }
    }

    fn tick(&mut self, done: usize) {
        let now = Instant::now();
        if now - self.start < Duration::from_secs(1) {
            return;
        }
        if self.last.is_some_and(|l| now - l < PROGRESS_EVERY) {
            return;
        }
        self.last = Some(now);
        self.show(done, false);
    }

    fn show(&self, done: usize, end: bool) {
        self.events.emit(Event::step(
            Some(self.task),
            progress_line(done, self.total, end),
        ));
    }

    fn finish(&self) {
        if self.last.is_some() {
            self.show(self.total, true);
        }
    }
}

/// `re-creating commits: 40% (400/1000)`, with `, done.` at the end.
fn progress_line(done: usize, total: usize, end: bool) -> String {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "re-creating commits: {pct}% ({done}/{total}){}",
        if end { ", done." } else { "" }
    )
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
/// quarantine. Nothing enters the user's repository yet.
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
    let signed = if sign {
        Some(sign_each(git, &q, jobs, &mut progress)?)
    } else {
        None
    };
    let by_mark = fast_import(&q, |w| {
        write_commits(
            w,
            jobs,
            signed.as_deref(),
            &author,
            &committer,
            &mut progress,
        )?;
        let notes = jobs.iter().enumerate().map(|(i, job)| {
            let commit = match &signed {
                Some(s) => s[i].clone(),
                None => format!(":{}", i + 1),
            };
            (commit, job.note.as_str())
        });
        write_notes(w, jobs.len() + 1, &committer, notes_old, notes)
    })?;
    progress.finish();
    let commits = match signed {
        Some(s) => s,
        None => (1..=jobs.len())
            .map(|m| {
                by_mark
                    .get(&m)
                    .cloned()
                    .context("fast-import did not report a commit")
            })
            .collect::<Result<_>>()?,
    };
    let notes = by_mark
        .get(&(jobs.len() + 1))
        .cloned()
        .context("fast-import did not report the notes commit")?;
    Ok(Pending {
        q,
        commits,
        notes,
        notes_of: jobs.iter().map(|j| j.note.clone()).collect(),
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
    pub fn renote(&mut self, notes_old: Option<&str>) -> Result<()> {
        let notes = self
            .commits
            .iter()
            .cloned()
            .zip(self.notes_of.iter().map(String::as_str));
        let committer = self.committer.clone();
        let by_mark = fast_import(&self.q, |w| write_notes(w, 1, &committer, notes_old, notes))?;
        self.notes = by_mark
            .get(&1)
            .cloned()
            .context("fast-import did not report the notes commit")?;
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

/// Run `git fast-import` in the quarantine on the stream `write` produces; the marks it
/// exported, by number.
fn fast_import(
    q: &Quarantine,
    write: impl FnOnce(&mut BufWriter<std::process::ChildStdin>) -> Result<()>,
) -> Result<std::collections::HashMap<usize, String>> {
    let marks = q.dir.path().join("marks");
    let mut cmd = q.git();
    cmd.args(["fast-import", "--quiet", "--done"])
        .arg(format!("--export-marks={}", marks.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot run git fast-import")?;
    let mut stderr = child.stderr.take().expect("stderr was piped");
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let stdin = child.stdin.take().expect("stdin was piped");
    let mut w = BufWriter::with_capacity(1 << 16, stdin);
    let written = w
        .write_all(b"feature done\n")
        .map_err(anyhow::Error::from)
        .and_then(|_| write(&mut w))
        .and_then(|_| w.write_all(b"done\n").map_err(anyhow::Error::from));
    let flushed = w.flush();
    drop(w);
    let status = child.wait().context("git fast-import did not finish")?;
    let errors = errors.join().unwrap_or_default();
    crate::interrupt::checkpoint()?;
    if !status.success() || written.is_err() || flushed.is_err() {
        written?;
        bail!(
            "git fast-import failed while re-creating the commits: {}",
            errors.trim()
        );
    }
    let marks = std::fs::read_to_string(&marks).context("cannot read fast-import's marks")?;
    let mut by_mark = std::collections::HashMap::new();
    for line in marks.lines() {
        if let Some((m, id)) = line.split_once(' ')
            && let Ok(m) = m.trim_start_matches(':').parse::<usize>()
        {
            by_mark.insert(m, id.to_string());
        }
    }
    Ok(by_mark)
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

fn data(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    writeln!(w, "data {}", bytes.len())?;
    w.write_all(bytes)?;
    w.write_all(b"\n")
}

/// The unsigned commits as a fast-import stream (job i gets mark i+1); nothing when the
/// commits were signed (made one by one already).
fn write_commits(
    w: &mut impl Write,
    jobs: &[Job],
    signed: Option<&[String]>,
    author: &str,
    committer: &str,
    progress: &mut Progress<'_>,
) -> Result<()> {
    if signed.is_some() {
        return Ok(());
    }
    for (i, job) in jobs.iter().enumerate() {
        if i % 256 == 0 {
            crate::interrupt::checkpoint()?;
        }
        // A reset first, so a commit without parents never inherits the previous one.
        write!(
            w,
            "reset refs/heads/promoted\ncommit refs/heads/promoted\nmark :{}\nauthor {author}\ncommitter {committer}\n",
            i + 1
        )?;
        data(w, job.message.as_bytes())?;
        for (k, p) in job.parents.iter().enumerate() {
            let p = match p {
                Parent::Existing(id) => id.clone(),
                Parent::Job(j) => format!(":{}", j + 1),
            };
            writeln!(w, "{} {p}", if k == 0 { "from" } else { "merge" })?;
        }
        write!(w, "M 040000 {} \"\"\n\n", job.tree)?;
        progress.tick(i + 1);
    }
    Ok(())
}

/// One notes commit (mark `mark`) on top of `notes_old`, with a note per `(commit, note)`.
fn write_notes<'a>(
    w: &mut impl Write,
    mark: usize,
    committer: &str,
    notes_old: Option<&str>,
    notes: impl Iterator<Item = (String, &'a str)>,
) -> Result<()> {
    write!(
        w,
        "reset refs/notes/agent\ncommit refs/notes/agent\nmark :{mark}\ncommitter {committer}\n"
    )?;
    data(w, b"Notes added by 'git agent commit'\n")?;
    if let Some(old) = notes_old {
        writeln!(w, "from {old}")?;
    }
    for (commit, note) in notes {
        writeln!(w, "N inline {commit}")?;
        data(w, note.as_bytes())?;
    }
    w.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::events::Collected;

    #[test]
    fn progress_shows_only_when_re_creation_takes_a_while() {
        assert_eq!(
            progress_line(400, 1000, false),
            "re-creating commits: 40% (400/1000)"
        );
        assert_eq!(
            progress_line(0, 0, true),
            "re-creating commits: 100% (0/0), done."
        );
        let events = Collected::default();
        let mut quick = Progress::new("t", 10, &events);
        quick.tick(5);
        quick.finish();
        assert!(events.take().is_empty(), "a quick promotion says nothing");
        let mut slow = Progress::new("t", 10, &events);
        slow.start -= Duration::from_secs(2);
        slow.tick(5);
        slow.tick(6);
        slow.finish();
        assert_eq!(
            events.take(),
            vec![
                Event::step(Some("t"), "re-creating commits: 50% (5/10)"),
                Event::step(Some("t"), "re-creating commits: 100% (10/10), done."),
            ]
        );
    }
}
