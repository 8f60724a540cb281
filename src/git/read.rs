//! Reading refs and objects in process, with gix: the task store's read path.
//!
//! `list` and `status` read every task's refs and records; doing that through the `git` binary
//! costs processes, and a process per task does not scale to a team of agents. A [`Reader`]
//! opens the repository once and answers every read in process: refs by prefix (loose and
//! packed), objects by id, a commit's first-parent history.
//!
//! What it must not do: write. Objects are written and refs are moved by the `git` binary
//! ([`super::Git::transaction`] and the store's `hash-object`/`mktree`/`commit-tree`), and the
//! checks after a failed transaction ([`super::Git::race_evidence`]) read with the binary too,
//! so one transaction is always wholly in one tool. gix has no reftable backend: a reftable
//! repository is refused here (as every command already refuses it, see [`super::format`]).
//!
//! A reader is long-lived (one per command) and must still see what other processes wrote
//! since it was opened: loose refs and loose objects are read from disk at each call, the
//! packed-refs file is re-read at each listing (gix would otherwise trust its modification
//! time, which misses a rewrite within the same tick), and a pack written since is found
//! because gix looks for new packs before it says an object is missing.
//!
//! Objects are read as written: replacement refs (`refs/replace/`) are ignored, so a state
//! commit cannot be made to say something else. Every object read names the most bytes it may
//! have; a larger one is refused from its header, before it is inflated.

use std::sync::Mutex;

use anyhow::{Context, Result, anyhow};

use super::Git;

/// A git object as read: its kind (`blob`, `tree`, `commit`, `tag`) and content.
pub type Object = (String, Vec<u8>);

/// Why an object could not be read, for callers that decide on it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The object is larger than the caller allows.
    #[error("object {id} is {size} bytes, more than the {limit} bytes allowed here")]
    TooLarge { id: String, size: u64, limit: u64 },
}

/// An in-process reader of one repository's refs and objects.
pub struct Reader {
    /// `gix::Repository` keeps per-handle caches behind `RefCell`s: one caller at a time.
    repo: Mutex<gix::Repository>,
}

impl Reader {
    /// Open the repository of `git` (its common dir: task refs are shared by all work trees).
    pub fn open(git: &Git) -> Result<Reader> {
        // Only the repository's own config is read (what the format needs), and no
        // replacement object is ever substituted.
        let options = gix::open::Options::isolated().cli_overrides(["core.useReplaceRefs=false"]);
        let mut repo = gix::open_opts(&git.common_dir, options)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot open repository {}", git.common_dir.display()))?;
        let storage = repo
            .config_snapshot()
            .string("extensions.refStorage")
            .map(|s| s.to_string().to_ascii_lowercase());
        if let Some(storage) = storage.filter(|s| s != "files") {
            anyhow::bail!("refs stored as '{storage}' cannot be read in process (only 'files')");
        }
        repo.objects.ignore_replacements = true;
        Ok(Reader {
            repo: Mutex::new(repo),
        })
    }

    fn repo(&self) -> std::sync::MutexGuard<'_, gix::Repository> {
        self.repo.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every ref under `prefix` (which ends with `/`), with its value, sorted by name.
    /// Symbolic refs are left out (task state is only ever plain refs), and so are refs git
    /// itself cannot read (a loose ref file that holds no id), as `git for-each-ref` does.
    pub fn refs_under(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        debug_assert!(prefix.ends_with('/'), "{prefix}");
        let repo = self.repo();
        // Re-read packed-refs (when there is none, gix forgets the one it had at once).
        if let Err(e) = repo.refs.force_refresh_packed_buffer()
            && repo.refs.packed_refs_path().exists()
        {
            return Err(anyhow!("{e}").context("cannot read the packed refs"));
        }
        let platform = repo.references().map_err(|e| anyhow!("{e}"))?;
        let iter = platform
            .prefixed(prefix)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot list the refs under {prefix}"))?;
        let mut refs = Vec::new();
        for r in iter {
            let Ok(r) = r else { continue };
            let name = r.name().as_bstr().to_string();
            if let Some(id) = r.target().try_id() {
                refs.push((name, id.to_string()));
            }
        }
        refs.sort();
        Ok(refs)
    }

    /// The object named by the hex id `id`, `None` where there is none (or `id` is no id).
    /// An object larger than `limit` bytes is a [`ReadError::TooLarge`].
    pub fn object(&self, id: &str, limit: u64) -> Result<Option<Object>> {
        let Ok(oid) = gix::ObjectId::from_hex(id.as_bytes()) else {
            return Ok(None);
        };
        let repo = self.repo();
        let header = repo
            .try_find_header(oid)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot read object {id}"))?;
        let Some(header) = header else {
            return Ok(None);
        };
        if header.size() > limit {
            return Err(ReadError::TooLarge {
                id: id.to_string(),
                size: header.size(),
                limit,
            }
            .into());
        }
        let object = repo
            .try_find_object(oid)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot read object {id}"))?;
        Ok(object.map(|o| (o.kind.to_string(), o.detach().data)))
    }

    /// The first-parent history of `commit`, newest first: each commit's committer time and
    /// subject (what `git log --first-parent --format='%ct %s'` shows). Each commit may be at
    /// most `limit` bytes; the walk stops at a commit that is missing.
    pub fn first_parent_log(&self, commit: &str, limit: u64) -> Result<Vec<(i64, String)>> {
        let mut next = Some(commit.to_string());
        let mut log = Vec::new();
        while let Some(id) = next.take() {
            let Some((kind, body)) = self.object(&id, limit)? else {
                break;
            };
            if kind != "commit" {
                anyhow::bail!("{id} is a {kind}, not a commit");
            }
            let c = gix::objs::CommitRef::from_bytes(&body, gix::hash::Kind::Sha1)
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("commit {id} is unreadable"))?;
            let time = c.time().map(|t| t.seconds).unwrap_or(0);
            log.push((time, c.message_summary().to_string()));
            next = c.parents().next().map(|p| p.to_string());
        }
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn repo() -> (tempfile::TempDir, Git) {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("git")
            .current_dir(dir.path())
            .args(["init", "-q"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let git = Git::discover(dir.path()).unwrap();
        (dir, git)
    }

    fn sh(git: &Git, args: &[&str]) -> String {
        git.run(
            ["-c", "user.name=t", "-c", "user.email=t@e"]
                .iter()
                .chain(args),
        )
        .unwrap()
    }

    /// A reader opened before other processes wrote sees what they wrote: loose refs, packed
    /// refs (rewritten within the same second), loose objects and new packs.
    #[test]
    fn a_long_lived_reader_sees_what_others_wrote() {
        let (_dir, git) = repo();
        let reader = Reader::open(&git).unwrap();
        assert!(reader.refs_under("refs/agent/").unwrap().is_empty());
        sh(&git, &["commit", "-q", "--allow-empty", "-m", "a"]);
        let a = sh(&git, &["rev-parse", "HEAD"]);
        sh(&git, &["update-ref", "refs/agent/t/state", &a]);
        assert_eq!(
            reader.refs_under("refs/agent/").unwrap(),
            vec![("refs/agent/t/state".to_string(), a.clone())]
        );
        assert_eq!(reader.object(&a, 1 << 20).unwrap().unwrap().0, "commit");
        // Packed, then moved and packed again at once: the second packed-refs is seen.
        sh(&git, &["pack-refs", "--all"]);
        assert_eq!(reader.refs_under("refs/agent/").unwrap().len(), 1);
        sh(&git, &["commit", "-q", "--allow-empty", "-m", "b"]);
        let b = sh(&git, &["rev-parse", "HEAD"]);
        sh(&git, &["update-ref", "refs/agent/u/state", &b]);
        sh(&git, &["update-ref", "refs/agent/t/state", &b]);
        sh(&git, &["pack-refs", "--all"]);
        assert_eq!(
            reader.refs_under("refs/agent/").unwrap(),
            vec![
                ("refs/agent/t/state".to_string(), b.clone()),
                ("refs/agent/u/state".to_string(), b.clone())
            ]
        );
        sh(&git, &["update-ref", "-d", "refs/agent/u/state"]);
        assert_eq!(reader.refs_under("refs/agent/").unwrap().len(), 1);
        // A commit only in a pack written after the reader looked.
        sh(&git, &["commit", "-q", "--allow-empty", "-m", "c"]);
        let c = sh(&git, &["rev-parse", "HEAD"]);
        sh(&git, &["repack", "-adq"]);
        assert_eq!(reader.object(&c, 1 << 20).unwrap().unwrap().0, "commit");
        let log = reader.first_parent_log(&c, 1 << 20).unwrap();
        let subjects: Vec<&str> = log.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(subjects, ["c", "b", "a"]);
    }

    /// Symbolic and broken refs are left out, refs of a longer name with the same start are
    /// not under the prefix, and a replacement never changes what an object says.
    #[test]
    fn only_plain_refs_under_the_prefix_and_no_replacements() {
        let (dir, git) = repo();
        sh(&git, &["commit", "-q", "--allow-empty", "-m", "a"]);
        sh(&git, &["commit", "-q", "--allow-empty", "-m", "b"]);
        let a = sh(&git, &["rev-parse", "HEAD~1"]);
        let b = sh(&git, &["rev-parse", "HEAD"]);
        sh(&git, &["update-ref", "refs/agent/t/state", &a]);
        sh(&git, &["update-ref", "refs/agent/t2/state", &a]);
        sh(
            &git,
            &["symbolic-ref", "refs/agent/t/link", "refs/agent/t/state"],
        );
        std::fs::write(dir.path().join(".git/refs/agent/t/broken"), "garbage\n").unwrap();
        let reader = Reader::open(&git).unwrap();
        assert_eq!(
            reader.refs_under("refs/agent/t/").unwrap(),
            vec![("refs/agent/t/state".to_string(), a.clone())]
        );
        sh(&git, &["replace", &a, &b]);
        let (_, body) = reader.object(&a, 1 << 20).unwrap().unwrap();
        assert!(String::from_utf8_lossy(&body).ends_with("\na\n"));
        assert_eq!(reader.first_parent_log(&a, 1 << 20).unwrap().len(), 1);
        assert!(reader.object(&"0".repeat(40), 10).unwrap().is_none());
        assert!(reader.object("not an id", 10).unwrap().is_none());
    }

    /// An object over the limit is refused from its header, typed.
    #[test]
    fn an_object_over_the_limit_is_refused() {
        let (_dir, git) = repo();
        let id = git
            .run_with_input(["hash-object", "-w", "--stdin"], &[b'x'; 4096])
            .unwrap();
        let reader = Reader::open(&git).unwrap();
        let err = reader.object(&id, 4095).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<ReadError>(),
            Some(ReadError::TooLarge { size: 4096, .. })
        ));
        assert_eq!(reader.object(&id, 4096).unwrap().unwrap().1.len(), 4096);
    }

    #[test]
    fn a_reftable_repository_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("git")
            .current_dir(dir.path())
            .args(["init", "-q", "--ref-format=reftable"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let git = Git::discover(dir.path()).unwrap();
        let err = Reader::open(&git).err().expect("refused");
        assert!(format!("{err:#}").contains("reftable"), "{err:#}");
    }
}
