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
//! All objects are written into a temporary object directory (a throw-away bare repository
//! whose alternates point at the user's objects) and copied into the user's object store only
//! once everything was written; the caller then moves both refs in one transaction. Ctrl-C or
//! `kill -9` before that leaves the user's objects and refs as they were (the temporary
//! directory is removed on Ctrl-C, and lives in the system temp directory otherwise).

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::commit_error;
use crate::git::Git;

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

/// What was written (now in the user's object store, not yet referenced).
#[derive(Debug)]
pub struct Made {
    /// The new commit of each job, in order.
    pub commits: Vec<String>,
    /// The new tip of the notes ref.
    pub notes: String,
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

/// Name prefix of quarantine directories in the system temp directory.
pub const PREFIX: &str = "git-agent-promote-";
/// File in a quarantine naming the process that owns it.
pub const PID_FILE: &str = "git-agent.pid";

/// Remove quarantines left by promotions that were killed (their process is gone).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let Ok(pid) = std::fs::read_to_string(e.path().join(PID_FILE)) else {
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

/// A throw-away bare repository borrowing the user's objects; new objects land in it.
struct Quarantine {
    dir: tempfile::TempDir,
    /// The user's object directory.
    objects: PathBuf,
}

impl Quarantine {
    fn new(git: &Git) -> Result<Quarantine> {
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
        remove_stale();
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir()
            .context("cannot create a temporary directory for promotion")?;
        std::fs::write(dir.path().join(PID_FILE), std::process::id().to_string())?;
        let q = Quarantine { dir, objects };
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
        let mut cmd = Command::new("git");
        for v in REPO_ENV {
            cmd.env_remove(v);
        }
        cmd.env("GIT_AGENT_NESTED", "1")
            .arg("--git-dir")
            .arg(self.dir.path());
        cmd
    }

    fn own_objects(&self) -> PathBuf {
        self.dir.path().join("objects")
    }

    /// Copy every object written here into the user's object store: packs data first and
    /// index last (git finds a pack by its index), loose objects each under a temporary name
    /// then renamed, so a reader never sees a partial file.
    fn migrate(&self) -> Result<()> {
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
        for p in &packs {
            place(p, &dest_pack.join(p.file_name().expect("a file name")))?;
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
                std::fs::create_dir_all(&dest)?;
                place(&obj.path(), &dest.join(obj.file_name()))?;
            }
        }
        Ok(())
    }
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
    let tmp = dir.join(format!(
        "tmp_git-agent_{}_{}",
        std::process::id(),
        to.file_name().expect("a file name").to_string_lossy()
    ));
    std::fs::copy(from, &tmp)
        .and_then(|_| std::fs::rename(&tmp, to))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot add objects to {}", dir.display()))
}

/// Progress on stderr once re-creation takes more than a moment.
struct Progress {
    total: usize,
    start: Instant,
    last: Option<Instant>,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            start: Instant::now(),
            last: None,
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    fn tick(&mut self, done: usize) {
        let now = Instant::now();
        if now - self.start < Duration::from_secs(1) {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.is_some_and(|l| now - l < every) {
            return;
        }
        self.last = Some(now);
        self.show(done, false);
    }

    fn show(&self, done: usize, end: bool) {
        let pct = (done * 100).checked_div(self.total).unwrap_or(100);
        let line = format!(
            "git-agent: re-creating commits: {pct}% ({done}/{}){}",
            self.total,
            if end { ", done." } else { "" }
        );
        if self.tty {
            eprint!("\r{line}{}", if end { "\n" } else { "" });
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.last.is_some() {
            self.show(self.total, true);
        }
    }
}

/// The user's identity as git would write it (`Name <email> <time> <zone>`).
fn ident(git: &Git, which: &str) -> Result<String> {
    git.run(["var", which]).map_err(|e| commit_error(e, false))
}

/// Write every job (and one notes commit for all of them) into a quarantine, then move the
/// objects into the user's repository. Refs are the caller's business.
pub fn run(git: &Git, jobs: &[Job], sign: bool, notes_old: Option<&str>) -> Result<Made> {
    let q = Quarantine::new(git)?;
    let committer = ident(git, "GIT_COMMITTER_IDENT")?;
    let author = ident(git, "GIT_AUTHOR_IDENT")?;
    let mut progress = Progress::new(jobs.len());
    let signed = if sign {
        Some(sign_each(git, &q, jobs, &mut progress)?)
    } else {
        None
    };

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
    let written = write_stream(
        &mut w,
        jobs,
        signed.as_deref(),
        &author,
        &committer,
        notes_old,
        &mut progress,
    );
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
    progress.finish();

    let marks = std::fs::read_to_string(&marks).context("cannot read fast-import's marks")?;
    let mut by_mark = std::collections::HashMap::new();
    for line in marks.lines() {
        if let Some((m, id)) = line.split_once(' ') {
            if let Ok(m) = m.trim_start_matches(':').parse::<usize>() {
                by_mark.insert(m, id.to_string());
            }
        }
    }
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
    q.migrate()?;
    Ok(Made { commits, notes })
}

/// `git commit-tree -S` for each job in the user's repository (its signing setup applies),
/// writing into the quarantine.
fn sign_each(
    git: &Git,
    q: &Quarantine,
    jobs: &[Job],
    progress: &mut Progress,
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
        let out = crate::git::output_of(&mut cmd, Some(job.message.as_bytes()))
            .map_err(|e| commit_error(e, true))?;
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

/// The fast-import stream: each unsigned commit (mark i+1), then one notes commit (mark
/// n+1) on top of the current notes ref.
#[allow(clippy::too_many_arguments)]
fn write_stream(
    w: &mut impl Write,
    jobs: &[Job],
    signed: Option<&[String]>,
    author: &str,
    committer: &str,
    notes_old: Option<&str>,
    progress: &mut Progress,
) -> Result<()> {
    w.write_all(b"feature done\n")?;
    let commit_of = |i: usize| -> String {
        match signed {
            Some(s) => s[i].clone(),
            None => format!(":{}", i + 1),
        }
    };
    if signed.is_none() {
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
    }
    write!(
        w,
        "commit refs/notes/agent\nmark :{}\ncommitter {committer}\n",
        jobs.len() + 1
    )?;
    data(w, b"Notes added by 'git agent commit'\n")?;
    if let Some(old) = notes_old {
        writeln!(w, "from {old}")?;
    }
    for (i, job) in jobs.iter().enumerate() {
        writeln!(w, "N inline {}", commit_of(i))?;
        data(w, job.note.as_bytes())?;
    }
    w.write_all(b"\ndone\n")?;
    Ok(())
}
