//! Merging and re-basing commits in the object database only: `git merge-tree --write-tree`
//! for the merge of two tips, and a cherry-pick loop (`merge-tree` + `commit-tree`) that
//! re-creates a task's commits on a newer base. No work tree, index or branch is read or
//! written: this is how `check` and `update` move a task without touching the user's
//! checkout, and without running git where a sandbox can write.
//!
//! Everything is written into a [`Scratch`] object directory first (the repository's objects
//! borrowed as an alternate): `check` drops it, so it leaves the repository as it was;
//! `update` moves its objects in ([`Scratch::keep`]) only once it will use them.
//!
//! Owns only object-level computation; it must not move refs or print.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{Git, output_of};
use crate::error::hinted;

/// The oldest git whose `merge-tree` has `--write-tree`.
pub const MERGE_TREE_VERSION: (u32, u32) = (2, 38);

/// The `(major, minor)` of a `git version` line (`git version 2.47.3`, `... .windows.1`).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().strip_prefix("git version ")?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

/// Refuse, with a clear error, a git too old to merge in the object database.
pub fn require_merge_tree(git: &Git) -> Result<()> {
    let said = git.run(["version"])?;
    match parse_version(&said) {
        Some(v) if v >= MERGE_TREE_VERSION => Ok(()),
        _ => Err(hinted(
            format!(
                "this needs git {}.{} or newer (for `git merge-tree --write-tree`); found '{}'",
                MERGE_TREE_VERSION.0,
                MERGE_TREE_VERSION.1,
                crate::error::sanitize(said.trim())
            ),
            "upgrade git (`git --version` shows the one on PATH)",
        )),
    }
}

/// A private object directory under `<common-dir>/git-agent/tmp/` that borrows the
/// repository's objects: git run through [`Scratch::command`] writes its new objects here.
/// Removed when dropped, unless [`Scratch::keep`] moved its objects into the repository.
pub struct Scratch {
    dir: tempfile::TempDir,
    objects: PathBuf,
}

impl Scratch {
    pub fn new(git: &Git) -> Result<Scratch> {
        let root = git.common_dir.join("git-agent").join("tmp");
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("replay-")
            .tempdir_in(&root)
            .with_context(|| format!("cannot create a scratch directory in {}", root.display()))?;
        Ok(Scratch {
            dir,
            objects: git.common_dir.join("objects"),
        })
    }

    /// A git command in the repository whose new objects go to this scratch directory.
    pub fn command(&self, git: &Git) -> Command {
        let mut cmd = git.command();
        cmd.env("GIT_OBJECT_DIRECTORY", self.dir.path())
            .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", &self.objects)
            .env("GIT_NO_REPLACE_OBJECTS", "1");
        cmd
    }

    /// Move the objects written here into the repository (objects are immutable: one that
    /// is there already stays), then remove the directory.
    pub fn keep(self) -> Result<()> {
        move_objects(self.dir.path(), &self.objects)
    }
}

fn move_objects(from: &Path, to: &Path) -> Result<()> {
    for fan in std::fs::read_dir(from)? {
        let fan = fan?;
        let name = fan.file_name();
        let Some(n) = name.to_str() else { continue };
        if n.len() != 2 || !fan.file_type()?.is_dir() {
            continue;
        }
        let target = to.join(n);
        std::fs::create_dir_all(&target)?;
        for obj in std::fs::read_dir(fan.path())? {
            let obj = obj?;
            let dest = target.join(obj.file_name());
            if !dest.exists() {
                std::fs::rename(obj.path(), &dest)
                    .with_context(|| format!("cannot move object into {}", dest.display()))?;
            }
        }
    }
    Ok(())
}

/// The result of merging two commits' trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The merged tree.
    Clean(String),
    /// The paths that conflict (each once, in git's order).
    Conflicts(Vec<String>),
}

/// Merge `theirs` into `ours` in the object database (`git merge-tree --write-tree`), with
/// `base` as the merge base when given (else git finds it).
pub fn merge_trees(
    git: &Git,
    scratch: &Scratch,
    base: Option<&str>,
    ours: &str,
    theirs: &str,
) -> Result<Merged> {
    let mut cmd = scratch.command(git);
    cmd.args([
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        "-z",
    ]);
    if let Some(b) = base {
        cmd.arg(format!("--merge-base={b}"));
    }
    cmd.args([ours, theirs]).stdin(Stdio::null());
    let out = cmd.output().context("could not run git merge-tree")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split('\0');
    let tree = fields.next().unwrap_or_default().trim().to_string();
    match out.status.code() {
        Some(0) if super::is_hex_id(&tree) => Ok(Merged::Clean(tree)),
        Some(1) => {
            let mut paths: Vec<String> = Vec::new();
            for p in fields.take_while(|f| !f.is_empty()) {
                if !paths.iter().any(|q| q == p) {
                    paths.push(p.to_string());
                }
            }
            Ok(Merged::Conflicts(paths))
        }
        _ => bail!(
            "git merge-tree {ours} {theirs} failed: {}",
            crate::error::sanitize(String::from_utf8_lossy(&out.stderr).trim_end())
        ),
    }
}

/// Merge `theirs` into `ours` like [`merge_trees`], keeping a conflicted result: the tree with
/// git's conflict markers in the files that conflict, and those paths (none when clean).
/// This is what `update --agent` lays into a sandbox for its agent to resolve.
pub fn merge_with_markers(
    git: &Git,
    scratch: &Scratch,
    base: &str,
    ours: &str,
    theirs: &str,
) -> Result<(String, Vec<String>)> {
    let mut cmd = scratch.command(git);
    cmd.args([
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        "-z",
        &format!("--merge-base={base}"),
        ours,
        theirs,
    ])
    .stdin(Stdio::null());
    let out = cmd.output().context("could not run git merge-tree")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split('\0');
    let tree = fields.next().unwrap_or_default().trim().to_string();
    if !matches!(out.status.code(), Some(0 | 1)) || !super::is_hex_id(&tree) {
        bail!(
            "git merge-tree {ours} {theirs} failed: {}",
            crate::error::sanitize(String::from_utf8_lossy(&out.stderr).trim_end())
        );
    }
    let mut paths: Vec<String> = Vec::new();
    for p in fields.take_while(|f| !f.is_empty()) {
        if !paths.iter().any(|q| q == p) {
            paths.push(p.to_string());
        }
    }
    Ok((tree, paths))
}

/// Commit `tree` on `parent` as git-agent (for a snapshot git-agent makes itself).
pub fn commit_snapshot(
    git: &Git,
    scratch: &Scratch,
    tree: &str,
    parent: &str,
    message: &str,
) -> Result<String> {
    let mut cmd = scratch.command(git);
    cmd.args(["commit-tree", "--no-gpg-sign", tree, "-p", parent])
        .env("GIT_AUTHOR_NAME", "git-agent")
        .env("GIT_AUTHOR_EMAIL", "git-agent@localhost")
        .env("GIT_COMMITTER_NAME", "git-agent")
        .env("GIT_COMMITTER_EMAIL", "git-agent@localhost");
    let out = output_of(&mut cmd, Some(message.as_bytes()))?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !super::is_hex_id(&id) {
        bail!("git commit-tree gave no commit id for the snapshot");
    }
    Ok(id)
}

/// Where re-creating a chain of commits on a new base ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Every commit re-created: the new ids, in the order given.
    Done(Vec<String>),
    /// `commit` (an original id) does not apply: its conflicting paths. Nothing was kept.
    Conflict { commit: String, paths: Vec<String> },
}

/// Re-create `commits` (oldest first, each the only parent of the next, the first a child of
/// the old base) on top of `onto`: each one's changes against its parent are merged onto the
/// new parent, and the result is committed with its author, committer name and message (the
/// committer date is now). Never signs (these stay task commits; promotion signs).
pub fn replay(git: &Git, scratch: &Scratch, commits: &[String], onto: &str) -> Result<Replayed> {
    let mut parent = onto.to_string();
    let mut made = Vec::new();
    for c in commits {
        let mut read = git.command();
        read.args(["cat-file", "commit", c]);
        let out = output_of(&mut read, None).with_context(|| format!("cannot read commit {c}"))?;
        let raw = String::from_utf8_lossy(&out.stdout).into_owned();
        let meta = CommitMeta::parse(&raw)
            .with_context(|| format!("commit {c} cannot be read as a commit"))?;
        let old_parent = meta
            .parent
            .clone()
            .with_context(|| format!("commit {c} has no parent"))?;
        let tree = match merge_trees(git, scratch, Some(&old_parent), &parent, c)? {
            Merged::Clean(t) => t,
            Merged::Conflicts(paths) => {
                return Ok(Replayed::Conflict {
                    commit: c.clone(),
                    paths,
                });
            }
        };
        let mut cmd = scratch.command(git);
        cmd.args(["commit-tree", "--no-gpg-sign", &tree, "-p", &parent]);
        meta.apply(&mut cmd);
        let out = output_of(&mut cmd, Some(meta.message.as_bytes()))?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !super::is_hex_id(&id) {
            bail!("git commit-tree gave no commit id for {c}");
        }
        made.push(id.clone());
        parent = id;
    }
    Ok(Replayed::Done(made))
}

/// The parts of a commit that re-creating it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CommitMeta {
    parent: Option<String>,
    parents: usize,
    author: Ident,
    committer: Ident,
    message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ident {
    name: String,
    email: String,
    date: String,
}

impl Ident {
    /// `Name <email> 1700000000 +0000`.
    fn parse(text: &str) -> Option<Ident> {
        let open = text.find('<')?;
        let close = open + text[open..].find('>')?;
        let name = text[..open].trim().to_string();
        let email = text[open + 1..close].to_string();
        let date = text[close + 1..].trim().to_string();
        Some(Ident { name, email, date })
    }
}

impl CommitMeta {
    fn parse(raw: &str) -> Option<CommitMeta> {
        let (headers, message) = raw.split_once("\n\n").unwrap_or((raw, ""));
        let mut parent = None;
        let mut parents = 0;
        let mut author = None;
        let mut committer = None;
        for line in headers.lines() {
            if let Some(p) = line.strip_prefix("parent ") {
                parents += 1;
                parent.get_or_insert_with(|| p.to_string());
            } else if let Some(a) = line.strip_prefix("author ") {
                author = Ident::parse(a);
            } else if let Some(c) = line.strip_prefix("committer ") {
                committer = Ident::parse(c);
            }
        }
        Some(CommitMeta {
            parent,
            parents,
            author: author?,
            committer: committer?,
            message: message.to_string(),
        })
    }

    /// Identity for `commit-tree`: a value git cannot take (a NUL byte) is left to git's
    /// default rather than failing the spawn.
    fn apply(&self, cmd: &mut Command) {
        let ok = |s: &str| !s.contains('\0');
        for (k, v) in [
            ("GIT_AUTHOR_NAME", &self.author.name),
            ("GIT_AUTHOR_EMAIL", &self.author.email),
            ("GIT_AUTHOR_DATE", &self.author.date),
            ("GIT_COMMITTER_NAME", &self.committer.name),
            ("GIT_COMMITTER_EMAIL", &self.committer.email),
        ] {
            if ok(v) && !v.is_empty() {
                cmd.env(k, v);
            }
        }
        cmd.env_remove("GIT_COMMITTER_DATE");
    }
}

/// How many parents a commit has (merges cannot be replayed by [`replay`]).
pub fn parent_count(git: &Git, commit: &str) -> Result<usize> {
    let raw = git.run(["cat-file", "commit", commit])?;
    Ok(CommitMeta::parse(&raw).map(|m| m.parents).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_versions_parse() {
        assert_eq!(parse_version("git version 2.47.3"), Some((2, 47)));
        assert_eq!(parse_version("git version 2.38.0.windows.1"), Some((2, 38)));
        assert_eq!(
            parse_version("git version 2.37.1 (Apple Git-137)"),
            Some((2, 37))
        );
        assert_eq!(parse_version("nonsense"), None);
        assert!(Some((2, 37)) < Some(MERGE_TREE_VERSION));
        assert!(Some((3, 0)) > Some(MERGE_TREE_VERSION));
    }

    #[test]
    fn commit_headers_parse() {
        let raw = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent 1111111111111111111111111111111111111111\nauthor A U Thor <a@example.com> 1700000000 +0100\ncommitter C O Mitter <c@example.com> 1700000001 +0000\n\nsubject\n\nbody\n";
        let m = CommitMeta::parse(raw).expect("parses");
        assert_eq!(m.parents, 1);
        assert_eq!(m.author.name, "A U Thor");
        assert_eq!(m.author.email, "a@example.com");
        assert_eq!(m.author.date, "1700000000 +0100");
        assert_eq!(m.committer.name, "C O Mitter");
        assert_eq!(m.message, "subject\n\nbody\n");
        assert!(CommitMeta::parse("tree x\n\nno author\n").is_none());
    }
}
