//! The purge trash: `purge --refs` keeps a copy of a task's refs under
//! `refs/agent-trash/<task>/`, taken in the same ref transaction that deletes them, so a purge
//! is undone with one command (`git agent purge --undo <task>`) until the trash is emptied.
//!
//! The copy keeps the task's objects reachable (and out of `git gc`'s reach) exactly like the
//! task refs did. One copy per task name: purging a task of the same name again replaces it.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};

use super::ref_name;
use super::store::{Loaded, TaskStore};
use crate::error::hinted;
use crate::git::{Git, RefUpdate};

/// Where purged tasks' refs are kept.
pub const TRASH: &str = "refs/agent-trash";

fn trash_ref(task: &str, leaf: &str) -> String {
    format!("{TRASH}/{task}/{leaf}")
}

/// Tasks in the trash, each with its refs (`leaf -> oid`), sorted by name.
pub fn list(git: &Git) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let out = git.run([
        "for-each-ref",
        "--format=%(refname) %(objectname)",
        &format!("{TRASH}/"),
    ])?;
    let mut tasks: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for line in out.lines() {
        let Some((name, oid)) = line.split_once(' ') else {
            continue;
        };
        let Some(rest) = name.strip_prefix(&format!("{TRASH}/")) else {
            continue;
        };
        if let Some((task, leaf)) = rest.split_once('/') {
            tasks
                .entry(task.to_string())
                .or_default()
                .insert(leaf.to_string(), oid.to_string());
        }
    }
    Ok(tasks)
}

/// Delete a task's refs, keeping a copy in the trash, in one transaction: either the task is
/// still there or its copy is.
pub fn delete_keeping_copy(store: &TaskStore, loaded: &Loaded) -> Result<()> {
    let git = store.git();
    let task = loaded.record.name.as_str();
    let old_copy = list(git)?.remove(task).unwrap_or_default();
    let mut updates = Vec::new();
    for (leaf, oid) in &loaded.refs {
        updates.push(RefUpdate {
            name: ref_name(task, leaf),
            new: None,
            old: Some(oid.clone()),
        });
        updates.push(RefUpdate {
            name: trash_ref(task, leaf),
            new: Some(oid.clone()),
            old: old_copy.get(leaf).cloned(),
        });
    }
    for (leaf, oid) in &old_copy {
        if !loaded.refs.contains_key(leaf) {
            updates.push(RefUpdate {
                name: trash_ref(task, leaf),
                new: None,
                old: Some(oid.clone()),
            });
        }
    }
    git.transaction(&updates)
}

/// Bring a purged task back from the trash, in one transaction. Refuses when a task of that
/// name exists again.
pub fn restore(store: &TaskStore, task: &str) -> Result<()> {
    let git = store.git();
    let copy = list(git)?.remove(task).ok_or_else(|| {
        hinted(
            format!("there is no purged task '{task}' to bring back"),
            "see the purged tasks with `git agent purge --list-trash`",
        )
    })?;
    if store.load(task)?.is_some() {
        return Err(hinted(
            format!("a task named '{task}' exists again, so the purged one cannot come back"),
            format!("remove the new one first: git agent purge --refs {task}"),
        ));
    }
    if !copy.contains_key("state") {
        return Err(anyhow!("the trash copy of task '{task}' has no state ref"));
    }
    let mut updates = Vec::new();
    for (leaf, oid) in &copy {
        updates.push(RefUpdate {
            name: ref_name(task, leaf),
            new: Some(oid.clone()),
            old: None,
        });
        updates.push(RefUpdate {
            name: trash_ref(task, leaf),
            new: None,
            old: Some(oid.clone()),
        });
    }
    git.transaction(&updates)
}

/// Empty the trash (of one task, or all): the objects only it kept become garbage for git gc.
pub fn empty(git: &Git, task: Option<&str>) -> Result<Vec<String>> {
    let mut emptied = Vec::new();
    let mut updates = Vec::new();
    for (name, refs) in list(git)? {
        if task.is_some_and(|t| t != name) {
            continue;
        }
        for (leaf, oid) in refs {
            updates.push(RefUpdate {
                name: trash_ref(&name, &leaf),
                new: None,
                old: Some(oid),
            });
        }
        emptied.push(name);
    }
    if !updates.is_empty() {
        git.transaction(&updates)?;
    }
    Ok(emptied)
}
