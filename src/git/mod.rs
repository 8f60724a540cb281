//! Everything git-agent does with the host's git: running the `git` binary, reading config,
//! refs and transactions, and bringing bundles in from a sandbox.
//!
//! All commands run in the user's own repository (never in a directory a sandbox can write)
//! and export `GIT_AGENT_NESTED=1` so the user's hooks can tell they were fired by git-agent.

pub mod blob;
pub mod bundle;
pub mod format;
pub mod promote;
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

/// A repository on the host, addressed through the `git` binary.
#[derive(Debug, Clone)]
pub struct Git {
    /// The work tree (or the git dir for bare repositories); commands run here.
    pub dir: PathBuf,
    /// The absolute common git dir (shared by all worktrees); task refs live here.
    pub common_dir: PathBuf,
}

impl Git {
    /// Find the repository containing `start`, which may be any directory of a work tree
    /// (the main one or a linked one). A bare repository, or a directory inside a git dir,
    /// is refused with a message that says so: git-agent needs a work tree to start tasks
    /// from and to bring their work back to.
    pub fn discover(start: &Path) -> Result<Git> {
        let ask = |args: &[&str]| {
            Command::new("git")
                .current_dir(start)
                .args(args)
                .env("GIT_AGENT_NESTED", "1")
                .stdin(Stdio::null())
                .output()
                .context("could not run git; is it installed and on PATH?")
        };
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
        let common = PathBuf::from(lines.next().unwrap_or_default());
        // A relative common dir is relative to where git ran, not to the top level.
        let common = if common.is_absolute() {
            common
        } else {
            start.join(common)
        };
        let common_dir = common
            .canonicalize()
            .with_context(|| format!("cannot resolve git dir {}", common.display()))?;
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
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.dir).env("GIT_AGENT_NESTED", "1");
        cmd
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
        let mut values = BTreeMap::new();
        for entry in out.stdout.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('\n').unwrap_or((&entry, ""));
            values
                .entry(key.to_lowercase())
                .or_insert_with(Vec::new)
                .push(value.to_string());
        }
        Ok(Config { values })
    }

    /// Apply a set of ref updates atomically: all happen or none do. Each update names the
    /// value it expects the ref to have (compare-and-swap), so racing writers cannot lose one
    /// another's changes.
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
        let mut child = cmd.spawn().context("could not run git update-ref")?;
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
        let out = child
            .wait_with_output()
            .context("could not run git update-ref")?;
        let _ = writer.join();
        if out.status.success() {
            return Ok(());
        }
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
        Err(anyhow::Error::new(TransactionFailed {
            kind: classify_ref_failure(&said),
            reason,
        }))
    }
}

/// Why a ref transaction did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefFailure {
    /// A compare-and-swap lost to a concurrent writer: a ref has another value than expected
    /// (or appeared, or vanished), or another git holds its lock. Reading again and retrying
    /// is the fix.
    LostRace,
    /// Anything else (permissions, a full disk, a broken ref, a missing object, a ref in the
    /// way): retrying cannot help, so it is reported at once.
    Failed,
}

/// Tell a lost race from a real failure, by the outcome git reports for the failing update
/// (`git update-ref --stdin` exits 128 for both, so its message is the only signal; the
/// phrases are git's own, files and reftable backends, git 2.30 to 2.47).
pub fn classify_ref_failure(stderr: &str) -> RefFailure {
    let first = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    // `cannot lock ref 'X': <why>`: only some "why"s are a concurrent writer.
    let why = first
        .split_once("cannot lock ref '")
        .and_then(|(_, rest)| rest.split_once("': "))
        .map(|(_, why)| why.trim());
    let race = match why {
        // Another value than expected (the CAS proper).
        Some(w) if w.starts_with("is at ") && w.contains(" but expected ") => true,
        // Expected absent, someone created it; expected present, someone deleted it.
        Some("reference already exists") => true,
        Some(w) if w.starts_with("unable to resolve reference") => !w.contains("broken"),
        // A concurrent git holds the ref's lock file.
        Some(w) => w.starts_with("Unable to create '") && w.ends_with("': File exists."),
        // reftable: another writer holds the stack's lock.
        None => first.ends_with("cannot lock references"),
    };
    if race {
        RefFailure::LostRace
    } else {
        RefFailure::Failed
    }
}

/// A ref transaction did not apply; nothing of it was written.
#[derive(Debug)]
pub struct TransactionFailed {
    pub kind: RefFailure,
    /// Git's reason, sanitized.
    pub reason: String,
}

impl TransactionFailed {
    /// Only a lost race may be retried.
    pub fn is_race(&self) -> bool {
        self.kind == RefFailure::LostRace
    }
}

impl std::fmt::Display for TransactionFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            RefFailure::LostRace => write!(f, "a ref changed meanwhile: {}", self.reason),
            RefFailure::Failed => write!(f, "git could not update the refs: {}", self.reason),
        }
    }
}

impl std::error::Error for TransactionFailed {}

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

impl Config {
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

    fn failure(git: &Git, updates: &[RefUpdate]) -> TransactionFailed {
        let err = git.transaction(updates).unwrap_err();
        let t = err.downcast::<TransactionFailed>().unwrap();
        assert!(!t.reason.trim().is_empty());
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
            assert!(stale.reason.contains("but expected"), "{stale}");
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
        let (dir, git, a, _b) = repo("files");
        let missing = failure(&git, &[update(R, &"1".repeat(a.len()), None)]);
        assert_eq!(missing.kind, RefFailure::Failed, "{missing}");
        assert!(missing.reason.contains("nonexistent object"), "{missing}");

        let refs = dir.path().join(".git/refs/agent/t");
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(refs.join("state"), "garbage\n").unwrap();
        let broken = failure(&git, &[update(R, &a, Some(&a))]);
        assert_eq!(broken.kind, RefFailure::Failed, "{broken}");
        std::fs::remove_file(refs.join("state")).unwrap();

        std::fs::create_dir_all(refs.join("state/sub")).unwrap();
        std::fs::write(refs.join("state/sub/x"), format!("{a}\n")).unwrap();
        let blocked = failure(&git, &[update(R, &a, None)]);
        assert_eq!(blocked.kind, RefFailure::Failed, "{blocked}");
        std::fs::remove_dir_all(refs.join("state")).unwrap();

        // Git's own words when it may not create the lock file (root ignores modes, so the
        // text is also checked on its own).
        let denied = "fatal: prepare: cannot lock ref 'refs/agent/t/state': Unable to create '/r/.git/refs/agent/t/state.lock': Permission denied";
        assert_eq!(classify_ref_failure(denied), RefFailure::Failed);
        let full = "fatal: prepare: cannot lock ref 'refs/agent/t/state': Unable to create '/r/.git/refs/agent/t/state.lock': No space left on device";
        assert_eq!(classify_ref_failure(full), RefFailure::Failed);
        assert_eq!(classify_ref_failure(""), RefFailure::Failed);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&refs, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(refs.join("probe"), "").is_err() {
            let ro = failure(&git, &[update(R, &a, None)]);
            assert_eq!(ro.kind, RefFailure::Failed, "{ro}");
            assert!(ro.reason.contains("Permission denied"), "{ro}");
        }
        std::fs::set_permissions(&refs, std::fs::Permissions::from_mode(0o755)).unwrap();
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
