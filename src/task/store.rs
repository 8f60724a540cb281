//! Reading and writing task state in the repository's refs.
//!
//! Objects (the state blobs, trees and commits) are written in-process with libgit2; refs
//! are moved only through `git update-ref --stdin` transactions that name the value each ref
//! must still have. A writer that loses a race re-reads the state and applies its change
//! again, so no update is ever lost and a crash never leaves half the refs moved.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};
use git2::{Oid, Repository, Signature};

use super::name::{self, TaskName};
use super::{TaskRecord, ref_name};
use crate::error::hinted;
use crate::git::{Git, RefUpdate, TransactionFailed};

const RECORD_FILE: &str = "task.toml";
const PROMPT_FILE: &str = "prompt.md";
const TRANSCRIPT_FILE: &str = "transcript";
/// The task's connection log (see [`crate::egress::log`]).
pub const CONNECTIONS_FILE: &str = "connections";
const MAX_ATTEMPTS: usize = 50;

/// A task record together with the state commit it was read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub record: TaskRecord,
    pub state: String,
    /// Current values of every ref in the task's namespace, by leaf name (`base`, `head`, ...).
    pub refs: BTreeMap<String, String>,
}

impl Loaded {
    pub fn ref_value(&self, leaf: &str) -> Option<&str> {
        self.refs.get(leaf).map(String::as_str)
    }

    /// The newest state of the task's work: the uncommitted snapshot, else its branch, else
    /// its base.
    pub fn tip(&self) -> &str {
        self.ref_value("wip")
            .or(self.ref_value("head"))
            .unwrap_or(&self.record.base)
    }
}

/// A state change written as objects but not applied (see [`TaskStore::prepare`]).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The state the change was made on.
    pub current: Loaded,
    /// The new state commit.
    pub state: String,
    /// The ref updates that apply it, each a compare-and-swap against `current`.
    pub updates: Vec<RefUpdate>,
}

/// The task store of one repository.
pub struct TaskStore {
    git: Git,
    repo: Repository,
}

impl TaskStore {
    pub fn open(git: &Git) -> Result<TaskStore> {
        let repo = Repository::open(&git.common_dir)
            .with_context(|| format!("cannot open repository {}", git.common_dir.display()))?;
        Ok(TaskStore {
            git: git.clone(),
            repo,
        })
    }

    pub fn git(&self) -> &Git {
        &self.git
    }

    /// Names of all tasks, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for r in self.repo.references_glob("refs/agent/*/state")? {
            let r = r?;
            if let Some(n) = r.name().ok().and_then(|n| n.strip_prefix("refs/agent/"))
                && let Some(n) = n.strip_suffix("/state")
            {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Find a task by exact name or unique prefix.
    pub fn resolve(&self, query: &str) -> Result<Loaded> {
        let names = self.names()?;
        let name = name::select(&names, query)?;
        self.load(name)?
            .ok_or_else(|| anyhow!("task '{name}' disappeared while reading it"))
    }

    /// Read a task's current state, if it exists.
    pub fn load(&self, name: &str) -> Result<Option<Loaded>> {
        let refs = self.task_refs(name)?;
        let Some(state) = refs.get("state").cloned() else {
            return Ok(None);
        };
        let record = self.read_record(&state)?;
        Ok(Some(Loaded {
            record,
            state,
            refs,
        }))
    }

    /// All tasks with their records.
    pub fn all(&self) -> Result<Vec<Loaded>> {
        let mut out = Vec::new();
        for n in self.names()? {
            if let Some(l) = self.load(&n)? {
                out.push(l);
            }
        }
        Ok(out)
    }

    fn task_refs(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let mut refs = BTreeMap::new();
        let prefix = format!("refs/agent/{name}/");
        for r in self.repo.references_glob(&format!("{prefix}*"))? {
            let r = r?;
            if let (Ok(n), Some(oid)) = (r.name(), r.target())
                && let Some(leaf) = n.strip_prefix(&prefix)
            {
                refs.insert(leaf.to_string(), oid.to_string());
            }
        }
        Ok(refs)
    }

    fn read_record(&self, state: &str) -> Result<TaskRecord> {
        let commit = self.repo.find_commit(Oid::from_str(state)?)?;
        let tree = commit.tree()?;
        let read = |file: &str| -> Result<String> {
            let entry = tree
                .get_name(file)
                .ok_or_else(|| anyhow!("state commit {state} has no {file}"))?;
            let blob = self.repo.find_blob(entry.id())?;
            Ok(String::from_utf8_lossy(blob.content()).into_owned())
        };
        let mut record: TaskRecord = toml::from_str(&read(RECORD_FILE)?)
            .with_context(|| format!("task state {state} is unreadable"))?;
        record.prompt = read(PROMPT_FILE).unwrap_or_default();
        Ok(record)
    }

    fn write_state(
        &self,
        record: &TaskRecord,
        parent: Option<&str>,
        msg: &str,
        files: &[(&str, &[u8])],
    ) -> Result<String> {
        let text = toml::to_string(record).context("cannot serialise task record")?;
        let parents = match parent {
            Some(p) => vec![self.repo.find_commit(Oid::from_str(p)?)?],
            None => vec![],
        };
        // Start from the previous state's tree, so files not given here are kept.
        let previous = match parents.first() {
            Some(p) => Some(p.tree()?),
            None => None,
        };
        let mut tb = self.repo.treebuilder(previous.as_ref())?;
        tb.insert(RECORD_FILE, self.repo.blob(text.as_bytes())?, 0o100644)?;
        tb.insert(
            PROMPT_FILE,
            self.repo.blob(record.prompt.as_bytes())?,
            0o100644,
        )?;
        for (name, bytes) in files {
            tb.insert(name, self.repo.blob(bytes)?, 0o100644)?;
        }
        let tree = self.repo.find_tree(tb.write()?)?;
        let sig = Signature::now("git-agent", "git-agent@localhost")?;
        let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
        let oid = self
            .repo
            .commit(None, &sig, &sig, msg, &tree, &parent_refs)?;
        Ok(oid.to_string())
    }

    /// A file kept in the task's state tree, if any.
    pub fn state_file(&self, loaded: &Loaded, file: &str) -> Result<Option<Vec<u8>>> {
        let commit = self.repo.find_commit(Oid::from_str(&loaded.state)?)?;
        let tree = commit.tree()?;
        let Some(entry) = tree.get_name(file) else {
            return Ok(None);
        };
        Ok(Some(self.repo.find_blob(entry.id())?.content().to_vec()))
    }

    /// The transcript kept with a task (its output, saved when it finished), if any.
    pub fn transcript(&self, loaded: &Loaded) -> Result<Option<Vec<u8>>> {
        self.state_file(loaded, TRANSCRIPT_FILE)
    }

    /// Create a new task: its base ref and first state commit appear together or not at all.
    pub fn create(&self, name: &TaskName, record: &TaskRecord) -> Result<Loaded> {
        let state = self.write_state(record, None, &format!("create {name}"), &[])?;
        let updates = vec![
            RefUpdate {
                name: ref_name(name.as_str(), "state"),
                new: Some(state.clone()),
                old: None,
            },
            RefUpdate {
                name: ref_name(name.as_str(), "base"),
                new: Some(record.base.clone()),
                old: None,
            },
        ];
        if let Err(e) = self.git.transaction(&updates) {
            if self.load(name.as_str())?.is_some() {
                return Err(hinted(
                    format!("a task named '{name}' already exists"),
                    format!(
                        "choose another --name, or remove the old task with `git agent purge --refs {name}`"
                    ),
                ));
            }
            return Err(e.context(format!("cannot create the refs of task '{name}'")));
        }
        self.load(name.as_str())?
            .ok_or_else(|| anyhow!("task '{name}' vanished right after creation"))
    }

    /// Change a task's state. `change` edits the record and returns extra ref changes for the
    /// task's namespace as `(leaf, new value or None to delete)`; it may run more than once
    /// when another process updates the task at the same time.
    pub fn update<F>(&self, name: &str, msg: &str, change: F) -> Result<Loaded>
    where
        F: FnMut(&mut TaskRecord, &Loaded) -> Result<Vec<(String, Option<String>)>>,
    {
        self.update_files(name, msg, &[], change)
    }

    /// [`update`](Self::update), also replacing the task's stored transcript.
    pub fn update_with<F>(
        &self,
        name: &str,
        msg: &str,
        transcript: Option<&[u8]>,
        change: F,
    ) -> Result<Loaded>
    where
        F: FnMut(&mut TaskRecord, &Loaded) -> Result<Vec<(String, Option<String>)>>,
    {
        let files: Vec<(&str, &[u8])> = transcript
            .map(|t| (TRANSCRIPT_FILE, t))
            .into_iter()
            .collect();
        self.update_files(name, msg, &files, change)
    }

    /// [`update`](Self::update), also replacing files of the task's state tree.
    pub fn update_files<F>(
        &self,
        name: &str,
        msg: &str,
        files: &[(&str, &[u8])],
        mut change: F,
    ) -> Result<Loaded>
    where
        F: FnMut(&mut TaskRecord, &Loaded) -> Result<Vec<(String, Option<String>)>>,
    {
        for attempt in 0..MAX_ATTEMPTS {
            let Prepared { updates, .. } = self.prepare(name, msg, files, &mut change)?;
            match self.git.transaction(&updates) {
                Ok(()) => {
                    return self
                        .load(name)?
                        .ok_or_else(|| anyhow!("task '{name}' vanished during an update"));
                }
                // Only a lost compare-and-swap is worth another try; anything else (a full
                // disk, no permission, a broken ref) would fail the same way again.
                Err(e)
                    if e.downcast_ref::<TransactionFailed>()
                        .is_some_and(|t| t.is_race()) =>
                {
                    // Someone else moved a ref first: back off a little and try again.
                    std::thread::sleep(std::time::Duration::from_millis(
                        1 + (attempt as u64 * 7) % 23,
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        // Every try lost a race: retrying later is the fix, once the other writer is done.
        Err(hinted(
            format!(
                "task '{name}' was changed by other commands {MAX_ATTEMPTS} times while this one tried to update it; nothing was changed"
            ),
            format!(
                "wait for the other git-agent commands on it to finish, then run this one again (`git agent status {name}` shows its state)"
            ),
        ))
    }

    /// Write the state commit of a change without applying it: the returned [`Prepared`]
    /// holds the ref updates (the state ref's compare-and-swap first, then any extra refs of
    /// the task's namespace) for the caller to put in its own transaction, so a task's record
    /// can move together with refs outside the task (promotion moves the branch, the notes
    /// and the record at once). If that transaction loses a race on the state ref, prepare
    /// again from the state then current.
    pub fn prepare<F>(
        &self,
        name: &str,
        msg: &str,
        files: &[(&str, &[u8])],
        change: F,
    ) -> Result<Prepared>
    where
        F: FnOnce(&mut TaskRecord, &Loaded) -> Result<Vec<(String, Option<String>)>>,
    {
        let current = self
            .load(name)?
            .ok_or_else(|| anyhow!("task '{name}' no longer exists"))?;
        let mut record = current.record.clone();
        let extra = change(&mut record, &current)?;
        let state = self.write_state(&record, Some(&current.state), msg, files)?;
        let mut updates = vec![RefUpdate {
            name: ref_name(name, "state"),
            new: Some(state.clone()),
            old: Some(current.state.clone()),
        }];
        for (leaf, new) in extra {
            let old = current.refs.get(&leaf).cloned();
            if new == old {
                continue;
            }
            updates.push(RefUpdate {
                name: ref_name(name, &leaf),
                new,
                old,
            });
        }
        Ok(Prepared {
            current,
            state,
            updates,
        })
    }

    /// Delete every ref of a task, each only if it still has the value we read.
    pub fn delete(&self, name: &str) -> Result<()> {
        let refs = self.task_refs(name)?;
        let updates: Vec<RefUpdate> = refs
            .into_iter()
            .map(|(leaf, old)| RefUpdate {
                name: ref_name(name, &leaf),
                new: None,
                old: Some(old),
            })
            .collect();
        if updates.is_empty() {
            return Ok(());
        }
        self.git.transaction(&updates)
    }

    /// The messages of a task's state commits, newest first, with their times.
    pub fn history(&self, loaded: &Loaded) -> Result<Vec<(i64, String)>> {
        let mut out = Vec::new();
        let mut next = Some(self.repo.find_commit(Oid::from_str(&loaded.state)?)?);
        while let Some(c) = next {
            out.push((
                c.time().seconds(),
                c.summary().ok().flatten().unwrap_or_default().to_string(),
            ));
            next = c.parents().next();
        }
        Ok(out)
    }
}
