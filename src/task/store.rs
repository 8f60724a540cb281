//! Reading and writing task state in the repository's refs.
//!
//! Reads are in process ([`crate::git::read::Reader`], gix): refs by one prefix scan (one for
//! all tasks in [`TaskStore::all`]), records and state files by object id, the state history
//! by walking first parents, so `list` and `status` start no process per task. Writes go
//! through the host's `git` binary ([`crate::git`]): state commits are written with
//! `hash-object`, `mktree` and `commit-tree`, and refs move only through `git update-ref
//! --stdin` transactions that name the value each ref must still have (and a failed one is
//! examined with the binary too, see [`Git::race_evidence`]): each transaction is wholly in
//! one tool. A writer that loses a race re-reads the state and applies its change again, so
//! no update is ever lost and a crash never leaves half the refs moved.
//!
//! Everything read is bounded: a record (`task.toml`) larger than [`RECORD_LIMIT`], or a
//! state commit or tree larger than any git-agent writes, is refused unread.
//!
//! `task.toml` carries the schema of its format (`schema = 1`; a record without one is
//! schema 1). A record from a newer git-agent is refused before anything is written, since
//! rewriting it would drop what this build does not know. This module must not print.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};

use super::name::{self, TaskName};
use super::remote;
use super::{TaskRecord, ref_name};
use crate::error::hinted;
use crate::git::read::{ReadError, Reader};
use crate::git::{Git, GitError, RefUpdate, output_of};

const RECORD_FILE: &str = "task.toml";
const PROMPT_FILE: &str = "prompt.md";
const TRANSCRIPT_FILE: &str = "transcript";
/// The task's connection log (see [`crate::egress::log`]).
pub const CONNECTIONS_FILE: &str = "connections";
const MAX_ATTEMPTS: usize = 50;
/// The most bytes a `task.toml` may have (real ones have a few kilobytes): a larger record
/// is refused unread, so one hostile record cannot make every `list` read megabytes.
pub const RECORD_LIMIT: u64 = 4 << 20;
/// The most bytes a task's `prompt.md` may have when records are read.
const PROMPT_LIMIT: u64 = 16 << 20;
/// The most bytes a state commit or tree may have (they name a handful of files).
const STATE_OBJECT_LIMIT: u64 = 1 << 20;
/// The newest `task.toml` format this build reads and writes.
pub const RECORD_SCHEMA: u32 = 1;
/// Where task refs live.
const NAMESPACE: &str = "refs/agent/";
/// Who state commits are made by (they are git-agent's bookkeeping, not anyone's work).
const IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "git-agent"),
    ("GIT_AUTHOR_EMAIL", "git-agent@localhost"),
    ("GIT_COMMITTER_NAME", "git-agent"),
    ("GIT_COMMITTER_EMAIL", "git-agent@localhost"),
];

/// Why task state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record was written by a newer git-agent, in a format this build does not know.
    #[error(
        "task '{task}' was written by a newer git-agent (state schema {schema}; this git-agent reads schema {RECORD_SCHEMA} and older); nothing was changed"
    )]
    NewerSchema {
        task: String,
        schema: u32,
        /// What to do (upgrade), said by the reader that refused it.
        hint: String,
    },
    /// A file every state commit has is not in this one.
    #[error("state commit {state} has no {file}")]
    MissingFile { state: String, file: &'static str },
    /// An object of the task's state is larger than any git-agent writes: it was not read.
    #[error(
        "task '{task}' has a state object of {size} bytes ({id}), more than the {limit} bytes git-agent reads; git-agent did not write it, and nothing was read or changed"
    )]
    TooLarge {
        task: String,
        id: String,
        size: u64,
        limit: u64,
        hint: String,
    },
    /// A command that needs the task's sandbox was asked for a task fetched from a remote,
    /// which has none here (see [`super::remote`]).
    #[error(
        "task '{task}' was fetched from {remote}; it has no sandbox here, so `{command}` cannot act on it"
    )]
    Fetched {
        task: String,
        remote: String,
        command: String,
        hint: String,
    },
}

impl StoreError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<&str> {
        match self {
            StoreError::NewerSchema { hint, .. }
            | StoreError::TooLarge { hint, .. }
            | StoreError::Fetched { hint, .. } => Some(hint),
            StoreError::MissingFile { .. } => None,
        }
    }
}

/// Only the schema of a `task.toml`, read before the rest: a newer record is refused by its
/// schema, whatever else changed in it.
#[derive(serde::Deserialize)]
struct SchemaOnly {
    schema: Option<u32>,
}

/// Parse a `task.toml`: refused when its schema is newer than [`RECORD_SCHEMA`].
pub fn parse_record(task: &str, state: &str, text: &str) -> Result<TaskRecord> {
    let schema = toml::from_str::<SchemaOnly>(text)
        .ok()
        .and_then(|s| s.schema)
        .unwrap_or(1);
    if schema > RECORD_SCHEMA {
        return Err(StoreError::NewerSchema {
            task: task.to_string(),
            schema,
            hint: format!(
                "upgrade git-agent to work with task '{task}' (its state is left as it is)"
            ),
        }
        .into());
    }
    toml::from_str(text).with_context(|| format!("task state {state} is unreadable"))
}

/// `err` as a [`StoreError::TooLarge`] of `task` when an object was too large to read.
fn too_large(err: anyhow::Error, task: &str) -> anyhow::Error {
    match err.downcast::<ReadError>() {
        Ok(ReadError::TooLarge { id, size, limit }) => StoreError::TooLarge {
            task: task.to_string(),
            id,
            size,
            limit,
            hint: format!(
                "look at it with `git show {prefix}state --stat`; remove the task's refs with `git for-each-ref --format='delete %(refname)' {prefix} | git update-ref --stdin`",
                prefix = remote::prefix(task)
            ),
        }
        .into(),
        Err(err) => err,
    }
}

/// Serialise a record as `task.toml`, schema first.
pub fn render_record(record: &TaskRecord) -> Result<String> {
    let body = toml::to_string(record).context("cannot serialise task record")?;
    Ok(format!("schema = {RECORD_SCHEMA}\n{body}"))
}

/// A fetched task's refs by leaf, or why its name is refused.
type FetchedRefs = std::result::Result<BTreeMap<String, String>, String>;

/// A fetched task that was not read: its name (as its refs give it, escaped) and why.
pub type Refused = (String, String);

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

/// The tree id a raw commit object names (its first header line).
fn commit_tree(body: &[u8]) -> Option<String> {
    let first = body.split(|b| *b == b'\n').next()?;
    let id = std::str::from_utf8(first.strip_prefix(b"tree ")?).ok()?;
    Some(id.to_string())
}

/// The entries of a raw tree object (`<mode> <name>\0<raw id>` each) as `(mode, name, id)`;
/// `None` if it is malformed.
fn tree_entries(body: &[u8]) -> Option<Vec<(String, String, String)>> {
    // SHA-1 ids; other object formats are refused before any store is opened.
    const RAW: usize = 20;
    let mut entries = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let nul = rest.iter().position(|b| *b == 0)?;
        let (head, after) = (&rest[..nul], &rest[nul + 1..]);
        let id = after.get(..RAW)?;
        let head = std::str::from_utf8(head).ok()?;
        let (mode, name) = head.split_once(' ')?;
        let id = id.iter().map(|b| format!("{b:02x}")).collect();
        entries.push((mode.to_string(), name.to_string(), id));
        rest = &after[RAW..];
    }
    Some(entries)
}

/// The blob id of the file `name` in a raw tree object, if it is there as a regular file.
fn tree_blob(body: &[u8], name: &str) -> Option<String> {
    tree_entries(body)?
        .into_iter()
        .find(|(mode, n, _)| n == name && (mode == "100644" || mode == "100755"))
        .map(|(_, _, id)| id)
}

/// The task store of one repository.
pub struct TaskStore {
    git: Git,
    /// Every read of refs and objects, in process.
    reader: Reader,
}

impl TaskStore {
    /// Open the store; a repository that cannot be read fails here, before any command acts
    /// on it.
    pub fn open(git: &Git) -> Result<TaskStore> {
        Ok(TaskStore {
            git: git.clone(),
            reader: Reader::open(git)?,
        })
    }

    pub fn git(&self) -> &Git {
        &self.git
    }

    /// Names of all tasks, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self.all_refs()?.into_keys().collect())
    }

    /// Every task's refs, by task name, then by leaf: one `for-each-ref`. A task is a name
    /// with a `state` ref (task names have no `/`, see [`name`]).
    fn all_refs(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut refs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (name, oid) in self.reader.refs_under(NAMESPACE)? {
            if let Some((task, leaf)) = name
                .strip_prefix(NAMESPACE)
                .and_then(|rest| rest.split_once('/'))
            {
                refs.entry(task.to_string())
                    .or_default()
                    .insert(leaf.to_string(), oid);
            }
        }
        refs.retain(|_, leaves| leaves.contains_key("state"));
        Ok(refs)
    }

    /// Find a task by exact name or unique prefix; a name with a `/` is a fetched task's
    /// (`origin/fix-1`, see [`remote`]). An exact local name is read on its own (its refs
    /// only), so naming a task costs the same among a thousand as among one; only a prefix
    /// scans every task's refs.
    pub fn resolve(&self, query: &str) -> Result<Loaded> {
        if TaskName::parse(query).is_ok()
            && let Some(loaded) = self.load(query)?
        {
            return Ok(loaded);
        }
        let names = if remote::is_fetched(query) {
            self.fetched_refs()?
                .into_iter()
                .filter_map(|(name, refs)| refs.contains_key("state").then_some(name))
                .collect()
        } else {
            self.names()?
        };
        let name = name::select(&names, query)?;
        self.load(name)?
            .ok_or_else(|| anyhow!("task '{name}' disappeared while reading it"))
    }

    /// [`resolve`](Self::resolve) for `command`, which needs the task's sandbox: a fetched
    /// task is refused ([`StoreError::Fetched`]).
    pub fn resolve_local(&self, query: &str, command: &str) -> Result<Loaded> {
        let loaded = self.resolve(query)?;
        if remote::is_fetched(&loaded.record.name) {
            return Err(remote::no_sandbox(&loaded.record.name, command).into());
        }
        Ok(loaded)
    }

    /// Every fetched task's refs (`refs/agent-remotes/<remote>/<task>/<leaf>`), by name
    /// (`<remote>/<task>`): one prefix scan. A name whose parts are no valid names maps to
    /// why it is refused.
    fn fetched_refs_checked(&self) -> Result<BTreeMap<String, FetchedRefs>> {
        let mut refs: BTreeMap<String, FetchedRefs> = BTreeMap::new();
        for (full, oid) in self.reader.refs_under(remote::NAMESPACE)? {
            let Some(rest) = full.strip_prefix(remote::NAMESPACE) else {
                continue;
            };
            let mut parts = rest.splitn(3, '/');
            let (Some(rem), Some(task), Some(leaf)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            match remote::qualified(rem, task) {
                Ok(name) => {
                    if let Ok(leaves) = refs.entry(name).or_insert_with(|| Ok(BTreeMap::new())) {
                        leaves.insert(leaf.to_string(), oid);
                    }
                }
                Err(why) if leaf == "state" => {
                    let shown = crate::error::sanitize(&format!("{rem}/{task}"));
                    refs.insert(shown, Err(why));
                }
                Err(_) => {}
            }
        }
        refs.retain(|_, leaves| match leaves {
            Ok(leaves) => leaves.contains_key("state"),
            Err(_) => true,
        });
        Ok(refs)
    }

    /// The fetched tasks with valid names and their refs.
    fn fetched_refs(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        Ok(self
            .fetched_refs_checked()?
            .into_iter()
            .filter_map(|(name, refs)| Some((name, refs.ok()?)))
            .collect())
    }

    /// Every fetched task with its record (sanitized, see [`remote::sanitize`]), and the
    /// ones refused, each as `(name, why)`: a bad name, an unreadable, oversized or newer
    /// record. One prefix scan and in-process reads; no process per task.
    pub fn fetched(&self) -> Result<(Vec<Loaded>, Vec<Refused>)> {
        let mut tasks = Vec::new();
        let mut refused = Vec::new();
        for (name, refs) in self.fetched_refs_checked()? {
            let refs = match refs {
                Ok(refs) => refs,
                Err(why) => {
                    refused.push((name, why));
                    continue;
                }
            };
            match self.loaded(&name, refs) {
                Ok(Some(l)) => tasks.push(l),
                Ok(None) => {}
                Err(e) => refused.push((name, crate::error::sanitize(&format!("{e:#}")))),
            }
        }
        Ok((tasks, refused))
    }

    /// Read a task's current state, if it exists.
    pub fn load(&self, name: &str) -> Result<Option<Loaded>> {
        let refs = self.task_refs(name)?;
        self.loaded(name, refs)
    }

    fn loaded(&self, name: &str, refs: BTreeMap<String, String>) -> Result<Option<Loaded>> {
        let Some(state) = refs.get("state").cloned() else {
            return Ok(None);
        };
        let mut record = self.read_record(name, &state)?;
        if remote::is_fetched(name) {
            remote::sanitize(&mut record, name);
        }
        Ok(Some(Loaded {
            record,
            state,
            refs,
        }))
    }

    /// All tasks with their records: one `for-each-ref` and one batch of reads.
    pub fn all(&self) -> Result<Vec<Loaded>> {
        let tasks: Vec<(String, BTreeMap<String, String>, String)> = self
            .all_refs()?
            .into_iter()
            .filter_map(|(name, refs)| {
                let state = refs.get("state")?.clone();
                Some((name, refs, state))
            })
            .collect();
        let states: Vec<(&str, &str)> = tasks
            .iter()
            .map(|(n, _, s)| (n.as_str(), s.as_str()))
            .collect();
        let records = self.read_records(&states)?;
        Ok(tasks
            .into_iter()
            .zip(records)
            .map(|((_, refs, state), record)| Loaded {
                record,
                state,
                refs,
            })
            .collect())
    }

    fn task_refs(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let prefix = remote::prefix(name);
        Ok(self
            .reader
            .refs_under(&prefix)?
            .into_iter()
            .filter_map(|(n, oid)| Some((n.strip_prefix(&prefix)?.to_string(), oid)))
            .collect())
    }

    /// The named files of each state commit's tree (`None` where a file is not there), each
    /// at most its limit in bytes (a larger one is a [`ReadError::TooLarge`]). Objects are
    /// asked for by id only, never looked up as names.
    fn files_of(
        &self,
        states: &[&str],
        files: &[(&str, u64)],
    ) -> Result<Vec<Vec<Option<Vec<u8>>>>> {
        let mut all = Vec::with_capacity(states.len());
        for state in states {
            let tree = match self.reader.object(state, STATE_OBJECT_LIMIT)? {
                Some((kind, body)) if kind == "commit" => commit_tree(&body),
                _ => None,
            };
            let entries = match tree {
                Some(tree) => self.reader.object(&tree, STATE_OBJECT_LIMIT)?,
                None => None,
            };
            let mut found = Vec::with_capacity(files.len());
            for (file, limit) in files {
                let blob = match &entries {
                    Some((kind, body)) if kind == "tree" => tree_blob(body, file),
                    _ => None,
                };
                found.push(match blob {
                    Some(id) => match self.reader.object(&id, *limit)? {
                        Some((kind, body)) if kind == "blob" => Some(body),
                        _ => None,
                    },
                    None => None,
                });
            }
            all.push(found);
        }
        Ok(all)
    }

    /// The records of the given states (task name, state commit).
    fn read_records(&self, states: &[(&str, &str)]) -> Result<Vec<TaskRecord>> {
        let mut records = Vec::with_capacity(states.len());
        for (task, state) in states {
            let prompt_limit = if remote::is_fetched(task) {
                remote::PROMPT_LIMIT
            } else {
                PROMPT_LIMIT
            };
            let files = [(RECORD_FILE, RECORD_LIMIT), (PROMPT_FILE, prompt_limit)];
            let mut found = self
                .files_of(&[state], &files)
                .map_err(|e| too_large(e, task))?
                .pop()
                .unwrap_or_default();
            let prompt = found.pop().flatten();
            let toml = found
                .pop()
                .flatten()
                .ok_or_else(|| StoreError::MissingFile {
                    state: state.to_string(),
                    file: RECORD_FILE,
                })?;
            let mut record = parse_record(task, state, &String::from_utf8_lossy(&toml))?;
            record.prompt = prompt
                .map(|p| String::from_utf8_lossy(&p).into_owned())
                .unwrap_or_default();
            records.push(record);
        }
        Ok(records)
    }

    fn read_record(&self, task: &str, state: &str) -> Result<TaskRecord> {
        Ok(self
            .read_records(&[(task, state)])?
            .pop()
            .expect("one record per state"))
    }

    /// Write a blob into the object store.
    fn write_blob(&self, bytes: &[u8]) -> Result<String> {
        self.git
            .run_with_input(["hash-object", "-w", "--no-filters", "--stdin"], bytes)
            .context("cannot write a task state object")
    }

    fn write_state(
        &self,
        record: &TaskRecord,
        parent: Option<&str>,
        msg: &str,
        files: &[(&str, &[u8])],
    ) -> Result<String> {
        let text = render_record(record)?;
        // Start from the previous state's tree, so files not given here are kept.
        let mut entries: BTreeMap<String, String> = BTreeMap::new();
        if let Some(p) = parent {
            let unreadable = || anyhow!("cannot read task state {p}");
            let commit = self.reader.object(p, STATE_OBJECT_LIMIT)?;
            let tree = commit
                .filter(|(kind, _)| kind == "commit")
                .and_then(|(_, body)| commit_tree(&body))
                .ok_or_else(unreadable)?;
            let tree = self.reader.object(&tree, STATE_OBJECT_LIMIT)?;
            let listed = tree
                .filter(|(kind, _)| kind == "tree")
                .and_then(|(_, body)| tree_entries(&body))
                .ok_or_else(unreadable)?;
            for (mode, name, id) in listed {
                let kind = match mode.as_str() {
                    "40000" => "tree",
                    "160000" => "commit",
                    _ => "blob",
                };
                entries.insert(name.clone(), format!("{mode} {kind} {id}\t{name}"));
            }
        }
        let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
            let oid = self.write_blob(bytes)?;
            entries.insert(name.to_string(), format!("100644 blob {oid}\t{name}"));
            Ok(())
        };
        put(RECORD_FILE, text.as_bytes())?;
        put(PROMPT_FILE, record.prompt.as_bytes())?;
        for (name, bytes) in files {
            put(name, bytes)?;
        }
        let mut listing = Vec::new();
        for entry in entries.values() {
            listing.extend_from_slice(entry.as_bytes());
            listing.push(0);
        }
        let tree = self
            .git
            .run_with_input(["mktree", "-z"], &listing)
            .context("cannot write a task state tree")?;
        let mut cmd = self.git.command();
        cmd.args(["commit-tree", "--no-gpg-sign", &tree]);
        if let Some(p) = parent {
            cmd.args(["-p", p]);
        }
        // Times are now, whatever the caller's environment pins for its own commits.
        cmd.envs(IDENTITY)
            .env_remove("GIT_AUTHOR_DATE")
            .env_remove("GIT_COMMITTER_DATE");
        let out = output_of(&mut cmd, Some(msg.as_bytes()))
            .context("cannot write a task state commit")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A file kept in the task's state tree, if any.
    pub fn state_file(&self, loaded: &Loaded, file: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .files_of(&[loaded.state.as_str()], &[(file, u64::MAX)])?
            .pop()
            .and_then(|mut f| f.pop())
            .flatten())
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
                Err(e) if GitError::is_lost_race(&e) => {
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
        self.reader
            .first_parent_log(&loaded.state, STATE_OBJECT_LIMIT)
            .map_err(|e| too_large(e, &loaded.record.name))
            .with_context(|| format!("cannot read the history of task state {}", loaded.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::find_hint;

    fn record() -> TaskRecord {
        let text = "name = \"t\"\nagent = \"exec\"\ncommand = [\"true\"]\nbase = \"b\"\ndirty = false\nstatus = \"running\"\ncreated = 0\n[sandbox]\nimage = \"i\"\nimage_id = \"x\"\n";
        parse_record("t", "s", text).unwrap()
    }

    #[test]
    fn raw_trees_and_commits_name_their_entries() {
        let mut tree = Vec::new();
        for (mode, name, byte) in [
            ("40000", "prompt.md", 1u8),
            ("100644", "task.toml", 2),
            ("100755", "x", 0xab),
        ] {
            tree.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            tree.extend_from_slice(&[byte; 20]);
        }
        assert_eq!(tree_blob(&tree, "task.toml"), Some("02".repeat(20)));
        assert_eq!(tree_blob(&tree, "x"), Some("ab".repeat(20)));
        // A directory is not a file of the state, and a truncated tree yields nothing.
        assert_eq!(tree_blob(&tree, "prompt.md"), None);
        assert_eq!(tree_blob(&tree, "task"), None);
        assert_eq!(tree_blob(&tree[..tree.len() - 1], "x"), None);
        let commit = format!("tree {}\nparent {}\n\nmsg", "1".repeat(40), "2".repeat(40));
        assert_eq!(commit_tree(commit.as_bytes()), Some("1".repeat(40)));
        assert_eq!(commit_tree(b"parent x\n"), None);
    }

    #[test]
    fn a_record_is_written_with_its_schema_and_reads_back() {
        let r = record();
        let text = render_record(&r).unwrap();
        assert!(text.starts_with("schema = 1\n"), "{text}");
        assert_eq!(parse_record("t", "s", &text).unwrap(), r);
    }

    #[test]
    fn a_record_without_a_schema_is_schema_1() {
        let text = render_record(&record()).unwrap();
        let old = text.strip_prefix("schema = 1\n").unwrap();
        assert!(!old.contains("schema"), "{old}");
        assert_eq!(parse_record("t", "s", old).unwrap(), record());
    }

    #[test]
    fn a_record_from_a_newer_git_agent_is_refused_with_a_hint() {
        let text = render_record(&record())
            .unwrap()
            .replace("schema = 1", "schema = 2");
        // Whatever else changed in the newer format, the schema decides.
        for text in [
            text.clone(),
            format!("{text}status = 7\nnew_field = {{ a = 1 }}\n"),
        ] {
            let err = parse_record("t", "s", &text).unwrap_err();
            let typed = err.downcast_ref::<StoreError>().expect("a typed error");
            assert!(matches!(typed, StoreError::NewerSchema { schema: 2, .. }));
            assert!(err.to_string().contains("newer git-agent"), "{err}");
            assert!(find_hint(&err).unwrap().contains("upgrade git-agent"));
        }
    }
}
