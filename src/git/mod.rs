//! Everything git-agent does with the host's git: running the `git` binary, reading config,
//! refs, objects and transactions, and bringing bundles in from a sandbox.
//!
//! This module is the one place that starts git processes: [`command`], [`command_at`] and
//! [`async_command_at`] build every one of them, blocking or async, with the same
//! environment (see [`harden`]). Reads of refs and objects that must not cost a process each
//! (the task store's, for `list` and `status`) are made in process by [`read::Reader`] (gix);
//! objects are written and refs moved only by the `git` binary, and a failed transaction is
//! examined with it too, so one ref transaction is never split between two implementations.
//!
//! All commands run in the user's own repository (never in a directory a sandbox can write)
//! and export `GIT_AGENT_NESTED=1` so the user's hooks can tell they were fired by git-agent.
//! This module must not print or prompt: it returns errors (typed where a caller decides on
//! them, see [`GitError`]).

pub mod blob;
pub mod bundle;
pub mod format;
pub mod promote;
pub mod read;
pub mod replay;
pub mod sensitive;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

use crate::error::hinted;

/// The all-zero object id git uses for "must not exist" in ref transactions.
pub const ZERO_OID: &str = "0000000000000000000000000000000000000000";

/// The environment every git process git-agent starts gets, blocking or async.
///
/// `GIT_AGENT_NESTED=1` tells the user's hooks
/// that git-agent fired them (their nested calls can tell). Nothing here changes what git reads from the user's config: the
/// host's git runs with the user's identity, signing and credential setup (promotion needs
/// them), and calls that must not see a setting pass their own `-c` or environment.
const ENV: &[(&str, &str)] = &[("GIT_AGENT_NESTED", "1")];

/// Apply [`ENV`] to a command under construction (either kind of `Command`).
macro_rules! harden {
    ($cmd:expr) => {{
        for (k, v) in ENV {
            $cmd.env(k, v);
        }
    }};
}

/// A blocking `git` process with git-agent's environment, in the current directory (for
/// commands that name their repository with `--git-dir`).
pub fn command() -> Command {
    let mut cmd = Command::new("git");
    harden!(cmd);
    cmd
}

/// A blocking `git` process with git-agent's environment, running in `dir`.
pub fn command_at(dir: &Path) -> Command {
    let mut cmd = command();
    cmd.current_dir(dir);
    cmd
}

/// An async `git` process with git-agent's environment, running in `dir` (for streams, such
/// as bundles, that an engine exec reads while git writes them).
pub fn async_command_at(dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("git");
    harden!(cmd);
    cmd.current_dir(dir);
    cmd
}

/// A repository on the host, addressed through the `git` binary.
#[derive(Debug, Clone)]
pub struct Git {
    /// The work tree (or the git dir for bare repositories); commands run here.
    pub dir: PathBuf,
    /// The absolute common git dir (shared by all worktrees); task refs live here.
    pub common_dir: PathBuf,
}

/// The absolute common git dir from `rev-parse --git-common-dir` run at `start` (a relative
/// answer is relative to where git ran, not to the top level).
fn common_dir(start: &Path, answer: &str) -> Result<PathBuf> {
    let common = PathBuf::from(answer);
    let common = if common.is_absolute() {
        common
    } else {
        start.join(common)
    };
    common
        .canonicalize()
        .with_context(|| format!("cannot resolve git dir {}", common.display()))
}

impl Git {
    /// Find the repository containing `start`, which may be any directory of a work tree
    /// (the main one or a linked one). A bare repository, or a directory inside a git dir,
    /// is refused with a message that says so: git-agent needs a work tree to start tasks
    /// from and to bring their work back to.
    pub fn discover(start: &Path) -> Result<Git> {
        let ask = |args: &[&str]| {
            command_at(start)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .context("could not run git; is it installed and on PATH?")
        };
        // The usual case in one process: a work tree. Anything else is asked again below, for
        // the words that fit it.
        let out = ask(&[
            "rev-parse",
            "--is-bare-repository",
            "--is-inside-git-dir",
            "--git-common-dir",
            "--show-toplevel",
        ])?;
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let lines: Vec<&str> = text.lines().collect();
            if let [bare, _, common, top] = lines[..]
                && bare == "false"
                && !top.is_empty()
            {
                return Ok(Git {
                    dir: PathBuf::from(top),
                    common_dir: common_dir(start, common)?,
                });
            }
        }
        let out = ask(&[
            "rev-parse",
            "--is-bare-repository",
            "--is-inside-git-dir",
            "--git-common-dir",
        ])?;
        if !out.status.success() {
            return Err(hinted(
                format!("not a git repository: {}", start.display()),
                "run git agent inside a git repository, or use `git -C <path> agent ...`",
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let bare = lines.next() == Some("true");
        let in_git_dir = lines.next() == Some("true");
        let common_dir = common_dir(start, lines.next().unwrap_or_default())?;
        if bare {
            return Err(hinted(
                format!(
                    "{} is a bare repository; git-agent needs a work tree (tasks start from a checkout and come back as branches you review in it)",
                    common_dir.display()
                ),
                format!(
                    "add a work tree with `git -C {} worktree add <dir>` (or clone it: `git clone {} <dir>`) and run git agent there",
                    common_dir.display(),
                    common_dir.display()
                ),
            ));
        }
        // The work tree may be elsewhere (GIT_WORK_TREE): ask git for it rather than guess.
        let out = ask(&["rev-parse", "--show-toplevel"])?;
        if !out.status.success() {
            if in_git_dir {
                let hint = match common_dir.file_name() {
                    Some(n) if n == ".git" => format!(
                        "run git agent from the work tree, e.g. `cd {}`",
                        common_dir.parent().unwrap_or(&common_dir).display()
                    ),
                    _ => "run git agent from a directory of the repository's work tree".to_string(),
                };
                return Err(hinted(
                    format!(
                        "{} is inside the git directory, not in a work tree",
                        start.display()
                    ),
                    hint,
                ));
            }
            return Err(hinted(
                format!(
                    "git finds no work tree for {}: {}",
                    start.display(),
                    String::from_utf8_lossy(&out.stderr).trim_end()
                ),
                "run git agent from a directory of the repository's work tree",
            ));
        }
        let top = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'));
        Ok(Git {
            dir: top,
            common_dir,
        })
    }

    /// A `git` command ready to run in this repository.
    pub fn command(&self) -> Command {
        command_at(&self.dir)
    }

    /// Run git with `args`, returning trimmed stdout; a failure carries git's stderr.
    pub fn run<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        let out = output_of(&mut cmd, None)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Run git feeding `input` on stdin.
    pub fn run_with_input<I, S>(&self, args: I, input: &[u8]) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        let out = output_of(&mut cmd, Some(input))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Run git; `Ok(false)` when it exits 1 (the "no" answer of predicates such as
    /// `merge-base --is-ancestor`), an error on anything else.
    pub fn test<I, S>(&self, args: I) -> Result<bool>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args).stdin(Stdio::null());
        let out = cmd.output().context("could not run git")?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => bail!(
                "git failed: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            ),
        }
    }

    /// Resolve a revision to a full commit id.
    pub fn resolve_commit(&self, rev: &str) -> Result<String> {
        self.run(["rev-parse", "-q", "--verify", &format!("{rev}^{{commit}}")])
            .map_err(|_| {
                hinted(
                    format!("'{rev}' is not a commit in this repository"),
                    "name a branch, tag or commit id (see `git log --oneline`)",
                )
            })
    }

    /// The value of a ref, if it exists.
    pub fn ref_value(&self, name: &str) -> Result<Option<String>> {
        let out = self
            .command()
            .args(["rev-parse", "-q", "--verify", name])
            .stdin(Stdio::null())
            .output()
            .context("could not run git")?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }

    /// The branch HEAD points at (short name), if any.
    pub fn current_branch(&self) -> Option<String> {
        self.run(["symbolic-ref", "-q", "--short", "HEAD"])
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// Every `agent.*` setting, as git resolves them (scopes, includes and `git -c` apply).
    pub fn agent_config(&self) -> Result<Config> {
        let out = self
            .command()
            .args(["config", "-z", "--get-regexp", r"^agent\."])
            .stdin(Stdio::null())
            .output()
            .context("could not run git config")?;
        Ok(Config::parse_z(&out.stdout))
    }

    /// Apply a set of ref updates atomically: all happen or none do. Each update names the
    /// value it expects the ref to have (compare-and-swap), so racing writers cannot lose one
    /// another's changes.
    ///
    /// A failure is a [`GitError::LostRace`] (read again and retry) or a
    /// [`GitError::RefsNotUpdated`] (retrying cannot help), decided by looking at the refs
    /// afterwards (see [`Git::race_evidence`]), never by git's wording.
    pub fn transaction(&self, updates: &[RefUpdate]) -> Result<()> {
        let mut script = String::from("start\n");
        for u in updates {
            match (&u.new, &u.old) {
                (Some(new), Some(old)) => script += &format!("update {} {new} {old}\n", u.name),
                (Some(new), None) => script += &format!("update {} {new} {ZERO_OID}\n", u.name),
                (None, Some(old)) => script += &format!("delete {} {old}\n", u.name),
                (None, None) => script += &format!("verify {} {ZERO_OID}\n", u.name),
            }
        }
        script += "prepare\ncommit\n";
        let mut cmd = self.command();
        cmd.args(["update-ref", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_failed = |source| GitError::Spawn {
            what: "update-ref",
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_failed)?;
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
        let out = child.wait_with_output().map_err(spawn_failed)?;
        let _ = writer.join();
        if out.status.success() {
            return Ok(());
        }
        // Git's words are shown to the user as the reason, never used to decide.
        let said = crate::error::sanitize(String::from_utf8_lossy(&out.stderr).trim());
        let reason = match said.lines().next().map(str::trim) {
            Some(first) if !first.is_empty() => first
                .trim_start_matches("fatal: ")
                .trim_start_matches("prepare: ")
                .trim_start_matches("commit: ")
                .to_string(),
            _ => format!(
                "git update-ref exited with {} without saying why",
                out.status
            ),
        };
        let moved = self.race_evidence(updates)?;
        Err(anyhow::Error::new(if moved.is_empty() {
            GitError::RefsNotUpdated { reason }
        } else {
            GitError::LostRace { reason, moved }
        }))
    }

    /// After a failed transaction, the refs of `updates` that show another writer at work:
    /// a ref whose value is no longer the one the update expected (it moved, appeared or
    /// vanished), or whose lock another git holds. Empty when every ref is as expected and
    /// unlocked: then the failure was not a race (a missing object, a broken ref, a ref in
    /// the way, no permission, a full disk) and retrying cannot help.
    pub fn race_evidence(&self, updates: &[RefUpdate]) -> Result<Vec<String>> {
        let now = self.ref_values(updates.iter().map(|u| u.name.as_str()))?;
        let reftable_lock = self.common_dir.join("reftable/tables.list.lock");
        let packed_lock = self.common_dir.join("packed-refs.lock");
        let mut moved = Vec::new();
        for u in updates {
            let current = now.get(&u.name);
            // A ref git cannot read (not a value, not absent) is broken, not raced: git
            // skips it when listing, but its loose file is there.
            let broken = current.is_none() && self.common_dir.join(&u.name).is_file();
            let changed = !broken && current != u.old.as_ref();
            let locked = self.common_dir.join(format!("{}.lock", u.name)).exists()
                || reftable_lock.exists()
                || (u.new.is_none() && packed_lock.exists());
            if changed || locked {
                moved.push(u.name.clone());
            }
        }
        Ok(moved)
    }

    /// What `git diff --shortstat <base> <tip>` says for each `(base, tip)` pair, as
    /// `(files, insertions, deletions)`, in one `git diff-tree --stdin` however many pairs
    /// there are (renames found as `git diff` finds them by default). A pair whose ids are
    /// not commit ids, or that git cannot diff, is an error.
    pub fn shortstats(&self, pairs: &[(&str, &str)]) -> Result<Vec<(u64, u64, u64)>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = String::new();
        for (base, tip) in pairs {
            if !is_hex_id(base) || !is_hex_id(tip) {
                bail!("cannot summarize changes from '{base}' to '{tip}': not commit ids");
            }
            // `<commit> <parent>`: the first is compared with the one given as its parent.
            input += &format!("{tip} {base}\n");
        }
        let mut cmd = self.command();
        cmd.args([
            "--no-replace-objects",
            "diff-tree",
            "--stdin",
            "--always",
            "--shortstat",
            "-M",
            "--no-ext-diff",
            "--no-textconv",
        ]);
        let out = output_of(&mut cmd, Some(input.as_bytes()))?;
        // Each pair gives its commit id on a line, then its stat line unless nothing changed.
        let mut stats: Vec<Option<String>> = Vec::with_capacity(pairs.len());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if is_hex_id(line.trim()) {
                stats.push(None);
            } else if let Some(last) = stats.last_mut() {
                *last = Some(line.to_string());
            }
        }
        if stats.len() != pairs.len() {
            bail!(
                "git diff-tree summarized {} of {} changes",
                stats.len(),
                pairs.len()
            );
        }
        Ok(stats
            .iter()
            .map(|s| parse_shortstat(s.as_deref().unwrap_or("")))
            .collect())
    }

    /// The current values of the named refs (exact names; absent refs are left out).
    pub fn ref_values<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, String>> {
        let names: Vec<&str> = names.into_iter().collect();
        let mut values = BTreeMap::new();
        if names.is_empty() {
            return Ok(values);
        }
        for (name, oid) in self.refs_under(&names)? {
            if names.contains(&name.as_str()) {
                values.insert(name, oid);
            }
        }
        Ok(values)
    }

    /// Every ref at or under the given prefixes (`refs/agent/` lists all task refs), with
    /// its value, in one `git for-each-ref`. Symbolic refs are left out: task state is only
    /// ever plain refs.
    pub fn refs_under(&self, prefixes: &[&str]) -> Result<Vec<(String, String)>> {
        let mut cmd = self.command();
        cmd.args([
            "for-each-ref",
            "--format=%(refname)%00%(objectname)%00%(symref)",
            "--",
        ])
        .args(prefixes);
        let out = output_of(&mut cmd, None)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut refs = Vec::new();
        for line in text.lines() {
            let mut f = line.split('\0');
            if let (Some(name), Some(oid), Some("")) = (f.next(), f.next(), f.next()) {
                refs.push((name.to_string(), oid.to_string()));
            }
        }
        Ok(refs)
    }
}

/// What went wrong in the git layer, for callers that decide on it.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The git binary could not be started (or its pipes failed).
    #[error("could not run git {what}")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A compare-and-swap lost to a concurrent writer: the refs in `moved` have another
    /// value than expected (or appeared, or vanished), or another git holds their lock.
    /// Reading again and retrying is the fix. Nothing of the transaction was written.
    #[error("a ref changed meanwhile: {reason}")]
    LostRace {
        /// Git's reason, sanitized.
        reason: String,
        moved: Vec<String>,
    },
    /// Anything else (permissions, a full disk, a broken ref, a missing object, a ref in the
    /// way): retrying cannot help. Nothing of the transaction was written.
    #[error("git could not update the refs: {reason}")]
    RefsNotUpdated {
        /// Git's reason, sanitized.
        reason: String,
    },
}

impl GitError {
    /// Only a lost race may be retried.
    pub fn is_race(&self) -> bool {
        matches!(self, GitError::LostRace { .. })
    }

    /// Is `err` (anywhere in its chain) a ref transaction that lost a race?
    pub fn is_lost_race(err: &anyhow::Error) -> bool {
        err.chain()
            .any(|e| e.downcast_ref::<GitError>().is_some_and(GitError::is_race))
    }
}

/// One ref change in a [`Git::transaction`]. `old: None` means "must not exist yet";
/// `new: None` deletes.
#[derive(Debug, Clone)]
pub struct RefUpdate {
    pub name: String,
    pub new: Option<String>,
    pub old: Option<String>,
}

/// The resolved `agent.*` git config.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Every value of each key, in the order git gives them (the last one wins).
    values: BTreeMap<String, Vec<String>>,
}

/// Every `agent.*` setting where the command runs (in a repository or not): the user's and
/// system settings, and the repository's when it runs in one.
pub fn agent_config_here() -> Result<Config> {
    let out = command()
        .args(["config", "-z", "--get-regexp", r"^agent\."])
        .stdin(Stdio::null())
        .output()
        .context("could not run git config")?;
    Ok(Config::parse_z(&out.stdout))
}

impl Config {
    /// What `git config -z --get-regexp` printed.
    fn parse_z(out: &[u8]) -> Config {
        let mut values = BTreeMap::new();
        for entry in out.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('\n').unwrap_or((&entry, ""));
            values
                .entry(key.to_lowercase())
                .or_insert_with(Vec::new)
                .push(value.to_string());
        }
        Config { values }
    }

    /// Build a config from `(key, value)` pairs (keys are case-insensitive).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Config {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            values
                .entry(k.to_lowercase())
                .or_default()
                .push(v.to_string());
        }
        Config { values }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(&key.to_lowercase())
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every key that has a value (lowercase).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Every value of a multi-valued key (`git config --add`).
    pub fn get_all(&self, key: &str) -> Vec<String> {
        self.values
            .get(&key.to_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// A boolean setting, as git reads them (true/yes/on/1, false/no/off/0; a key given
    /// without a value is true).
    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "true" | "yes" | "on" | "1" => Ok(true),
                "false" | "no" | "off" | "0" => Ok(false),
                _ => Err(hinted(
                    format!("bad value '{v}' for {key}"),
                    format!("set true or false: git config {key} true"),
                )),
            },
        }
    }

    /// A size setting in bytes; accepts git's k/m/g suffixes.
    pub fn size(&self, key: &str, default: u64) -> Result<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_size(v).ok_or_else(|| {
                hinted(
                    format!("bad value '{v}' for {key}"),
                    format!("use a size such as 512m or 2g: git config {key} 512m"),
                )
            }),
        }
    }
}

/// A full SHA-1 object id in lowercase hex.
pub fn is_hex_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parse `git diff --shortstat` output into (files, insertions, deletions).
pub fn parse_shortstat(text: &str) -> (u64, u64, u64) {
    let mut v = (0, 0, 0);
    for part in text.split(',') {
        let part = part.trim();
        let n = part
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if part.contains("file") {
            v.0 = n;
        } else if part.contains("insertion") {
            v.1 = n;
        } else if part.contains("deletion") {
            v.2 = n;
        }
    }
    v
}

/// Parse a byte size with an optional k/m/g suffix (powers of 1024, as git does).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (&t[..], 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Run a command to completion, optionally feeding stdin; non-zero exit becomes an error
/// that includes the command's stderr.
pub fn output_of(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not run {:?}", cmd.get_program()))?;
    if let Some(data) = input {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let data = data.to_vec();
        // Write on a thread so a child that fills its stdout pipe cannot deadlock us.
        let writer = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output()?;
        let _ = writer.join();
        return check(cmd, out);
    }
    let out = child.wait_with_output()?;
    check(cmd, out)
}

fn check(cmd: &Command, out: Output) -> Result<Output> {
    if out.status.success() {
        return Ok(out);
    }
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    bail!(
        "`{} {}` failed ({}): {}",
        cmd.get_program().to_string_lossy(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with two commits, in `format` (`files` or `reftable`).
    fn repo(format: &str) -> (tempfile::TempDir, Git, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let sh = |args: &[&str]| {
            let out = Command::new("git")
                .current_dir(dir.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@e"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
        };
        sh(&["init", "-q", &format!("--ref-format={format}")]);
        sh(&["commit", "-q", "--allow-empty", "-m", "a"]);
        sh(&["commit", "-q", "--allow-empty", "-m", "b"]);
        let git = Git::discover(dir.path()).unwrap();
        let a = git.run(["rev-parse", "HEAD~1"]).unwrap();
        let b = git.run(["rev-parse", "HEAD"]).unwrap();
        (dir, git, a, b)
    }

    fn update(name: &str, new: &str, old: Option<&str>) -> RefUpdate {
        RefUpdate {
            name: name.into(),
            new: Some(new.into()),
            old: old.map(str::to_string),
        }
    }

    fn failure(git: &Git, updates: &[RefUpdate]) -> GitError {
        let err = git.transaction(updates).unwrap_err();
        let t = err.downcast::<GitError>().unwrap();
        match &t {
            GitError::LostRace { reason, moved } => {
                assert!(!reason.trim().is_empty());
                assert!(!moved.is_empty());
            }
            GitError::RefsNotUpdated { reason } => assert!(!reason.trim().is_empty()),
            other => panic!("not a transaction failure: {other}"),
        }
        t
    }

    const R: &str = "refs/agent/t/state";

    /// Lost races, made for real with both ref backends: a stale expected value, a ref that
    /// appeared or vanished, a lock held by another git.
    #[test]
    fn lost_races_are_retryable() {
        for format in ["files", "reftable"] {
            let (dir, git, a, b) = repo(format);
            git.transaction(&[update(R, &a, None)]).unwrap();
            let stale = failure(&git, &[update(R, &b, Some(&b))]);
            assert!(stale.is_race(), "{format}: {stale}");
            assert!(stale.to_string().contains("but expected"), "{stale}");
            let GitError::LostRace { moved, .. } = &stale else {
                unreachable!()
            };
            assert_eq!(moved, &[R.to_string()], "{format}");
            assert!(failure(&git, &[update(R, &b, None)]).is_race(), "{format}");
            let gone = failure(&git, &[update("refs/agent/t/base", &b, Some(&a))]);
            assert!(gone.is_race(), "{format}: {gone}");
            let lock = if format == "files" {
                dir.path().join(".git/refs/agent/t/state.lock")
            } else {
                dir.path().join(".git/reftable/tables.list.lock")
            };
            std::fs::write(&lock, "").unwrap();
            let held = failure(&git, &[update(R, &b, Some(&a))]);
            assert!(held.is_race(), "{format}: {held}");
            std::fs::remove_file(&lock).unwrap();
            git.transaction(&[update(R, &b, Some(&a))]).unwrap();
        }
    }

    /// Failures no retry can fix are not races: a missing object, a broken ref, a ref in
    /// the way, a refs directory git may not write.
    #[test]
    fn other_failures_are_not_retried() {
        let (dir, git, a, b) = repo("files");
        let missing = failure(&git, &[update(R, &"1".repeat(a.len()), None)]);
        assert!(!missing.is_race(), "{missing}");
        assert!(
            missing.to_string().contains("nonexistent object"),
            "{missing}"
        );

        let refs = dir.path().join(".git/refs/agent/t");
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(refs.join("state"), "garbage\n").unwrap();
        let broken = failure(&git, &[update(R, &a, Some(&a))]);
        assert!(!broken.is_race(), "{broken}");
        std::fs::remove_file(refs.join("state")).unwrap();

        std::fs::create_dir_all(refs.join("state/sub")).unwrap();
        std::fs::write(refs.join("state/sub/x"), format!("{a}\n")).unwrap();
        let blocked = failure(&git, &[update(R, &a, None)]);
        assert!(!blocked.is_race(), "{blocked}");
        std::fs::remove_dir_all(refs.join("state")).unwrap();

        // A transaction failing for one ref (a missing object) while another is exactly as
        // expected is still no race.
        git.transaction(&[update(R, &a, None)]).unwrap();
        let mixed = failure(
            &git,
            &[
                update(R, &b, Some(&a)),
                update("refs/agent/t/head", &"2".repeat(a.len()), None),
            ],
        );
        assert!(!mixed.is_race(), "{mixed}");
        assert_eq!(git.ref_value(R).unwrap().as_deref(), Some(a.as_str()));

        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&refs, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(refs.join("probe"), "").is_err() {
            let ro = failure(&git, &[update("refs/agent/t/base", &a, None)]);
            assert!(!ro.is_race(), "{ro}");
            assert!(ro.to_string().contains("Permission denied"), "{ro}");
        }
        std::fs::set_permissions(&refs, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The lost-race test of a whole error chain, as the store's retry loop asks it.
    #[test]
    fn a_lost_race_is_found_through_context() {
        let (_dir, git, a, b) = repo("files");
        git.transaction(&[update(R, &a, None)]).unwrap();
        let err = git
            .transaction(&[update(R, &b, Some(&b))])
            .unwrap_err()
            .context("cannot update the task");
        assert!(GitError::is_lost_race(&err), "{err:#}");
        let other = git
            .transaction(&[update(R, &"1".repeat(a.len()), Some(&a))])
            .unwrap_err();
        assert!(!GitError::is_lost_race(&other), "{other:#}");
    }

    #[test]
    fn shortstat_variants() {
        assert_eq!(
            parse_shortstat(" 3 files changed, 10 insertions(+), 2 deletions(-)"),
            (3, 10, 2)
        );
        assert_eq!(parse_shortstat(" 1 file changed, 1 deletion(-)"), (1, 0, 1));
        assert_eq!(parse_shortstat(""), (0, 0, 0));
    }

    /// One process summarizes every pair, each as `git diff --shortstat` does (renames too),
    /// and pairs without changes keep their place.
    #[test]
    fn shortstats_match_git_diff() {
        let (dir, git, a, _) = repo("files");
        let commit = |msg: &str| {
            let sh = |args: &[&str]| {
                git.run(
                    ["-c", "user.name=t", "-c", "user.email=t@e"]
                        .iter()
                        .chain(args),
                )
                .unwrap()
            };
            sh(&["add", "-A"]);
            sh(&["commit", "-q", "--allow-empty", "-m", msg]);
            sh(&["rev-parse", "HEAD"])
        };
        std::fs::write(dir.path().join("f"), "1\n2\n3\n").unwrap();
        let c = commit("c");
        std::fs::rename(dir.path().join("f"), dir.path().join("g")).unwrap();
        std::fs::write(dir.path().join("h"), "x\n").unwrap();
        let d = commit("d");
        std::fs::write(dir.path().join("g"), "1\n").unwrap();
        let e = commit("e");
        let pairs = [(&a, &c), (&c, &c), (&c, &d), (&a, &e), (&e, &a)];
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(x, y)| (x.as_str(), y.as_str()))
            .collect();
        let got = git.shortstats(&pairs).unwrap();
        for ((base, tip), got) in pairs.iter().zip(&got) {
            let want = git.run(["diff", "--shortstat", base, tip]).unwrap();
            assert_eq!(*got, parse_shortstat(&want), "{base}..{tip}: {want}");
        }
        assert_eq!(got[1], (0, 0, 0));
        assert_eq!(got[2], (2, 1, 0), "a rename and a new file");
        assert!(git.shortstats(&[(&a, "HEAD")]).is_err(), "ids only");
        assert!(git.shortstats(&[(&a, &"1".repeat(40))]).is_err());
    }

    #[test]
    fn sizes_follow_git_suffixes() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
    }
}
