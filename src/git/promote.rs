//! Promotion: turning a task's synced work into commits on the host branch `agent/<task>`,
//! made by the user's own git (identity, `commit.gpgSign`, signing keys), never in a sandbox.
//!
//! Each agent commit is re-created with `git commit-tree` on its exact tree, keeping its
//! message, so the branch's content is byte for byte what the agent produced. Uncommitted
//! agent work becomes one more commit with the user's message. Provenance is attached as a
//! note under `refs/notes/agent`. The user's work tree, index and HEAD are never touched.

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::{Git, RefUpdate};
use crate::error::hinted;
use crate::task::Promotion;

pub const NOTES_REF: &str = "refs/notes/agent";

/// What to promote.
pub struct PromoteRequest<'a> {
    pub task: &'a str,
    pub agent: &'a str,
    pub base: &'a str,
    pub head: &'a str,
    pub wip: Option<&'a str>,
    pub previous: Option<&'a Promotion>,
    /// Message for the commit of uncommitted work; asked for when `None` and needed.
    pub message: Option<String>,
}

/// What promotion produced.
#[derive(Debug)]
pub struct Promoted {
    pub promotion: Promotion,
    /// `(task commit, new branch commit)` in order.
    pub commits: Vec<(String, String)>,
}

/// The task tip promotion works from: uncommitted snapshot, else the branch.
pub fn task_tip<'a>(head: &'a str, wip: Option<&'a str>) -> &'a str {
    wip.unwrap_or(head)
}

/// Does promoting need a message from the user (uncommitted work not promoted yet)?
pub fn needs_message(req: &PromoteRequest<'_>) -> bool {
    req.wip.is_some() && req.previous.map(|p| p.task_tip.as_str()) != req.wip
}

pub fn promote(git: &Git, req: PromoteRequest<'_>) -> Result<Promoted> {
    let branch = format!("refs/heads/agent/{}", req.task);
    let tip = task_tip(req.head, req.wip);
    if tip == req.base {
        return Err(hinted(
            format!("task '{}' has no changes to commit", req.task),
            "check its output with `git agent logs`, or sync it first with `git agent sync`",
        ));
    }
    if req.previous.map(|p| p.task_tip.as_str()) == Some(tip) {
        return Err(hinted(
            format!(
                "task '{}' has nothing new to commit since the last commit",
                req.task
            ),
            format!("its work is already on branch agent/{}", req.task),
        ));
    }
    let current = git.ref_value(&branch)?;
    let expected = req.previous.map(|p| p.branch_tip.clone());
    if current != expected {
        return Err(match (&current, &expected) {
            (Some(_), None) => hinted(
                format!("branch agent/{} already exists", req.task),
                format!(
                    "git-agent did not create it; rename or delete it (`git branch -m agent/{0} <new>`) and try again",
                    req.task
                ),
            ),
            _ => hinted(
                format!(
                    "branch agent/{} changed since git-agent last wrote it",
                    req.task
                ),
                "git-agent will not overwrite your commits; rename that branch and run commit again",
            ),
        });
    }

    let sign = git
        .run(["config", "--bool", "commit.gpgSign"])
        .map(|v| v == "true")
        .unwrap_or(false);
    let mut map: HashMap<String, String> = HashMap::new();
    let mut range = vec![
        "rev-list".to_string(),
        "--reverse".into(),
        "--topo-order".into(),
        "--parents".into(),
        req.head.to_string(),
        format!("^{}", req.base),
    ];
    if let Some(p) = req.previous {
        map.insert(p.task_tip.clone(), p.branch_tip.clone());
        if let Some(prev_head) = git
            .test(["merge-base", "--is-ancestor", &p.task_tip, req.head])
            .ok()
            .filter(|x| *x)
            .map(|_| p.task_tip.clone())
        {
            range.push(format!("^{prev_head}"));
        } else if let Ok(parent) = git.run(["rev-parse", &format!("{}^", p.task_tip)]) {
            // The previous tip was an uncommitted snapshot: its parent was the agent's head,
            // which is already promoted and now maps to the snapshot's promoted commit.
            if git.test(["merge-base", "--is-ancestor", &parent, req.head])? {
                range.push(format!("^{parent}"));
                map.insert(parent, p.branch_tip.clone());
            }
        }
    }
    let list = git.run(&range)?;
    let mut commits = Vec::new();
    let mut last = expected.clone().unwrap_or_else(|| req.base.to_string());
    for line in list.lines() {
        let mut ids = line.split(' ');
        let Some(orig) = ids.next() else { continue };
        let parents: Vec<String> = ids
            .map(|p| map.get(p).cloned().unwrap_or_else(|| p.to_string()))
            .collect();
        let message = git.run(["show", "-s", "--format=%B", orig])?;
        let new = commit_tree(git, &format!("{orig}^{{tree}}"), &parents, &message, sign)?;
        map.insert(orig.to_string(), new.clone());
        commits.push((orig.to_string(), new.clone()));
        last = new;
    }
    if let Some(wip) = req
        .wip
        .filter(|w| req.previous.map(|p| p.task_tip.as_str()) != Some(*w))
    {
        let parent = git.run(["rev-parse", &format!("{wip}^")])?;
        let parent = map.get(&parent).cloned().unwrap_or(parent);
        let message = req
            .message
            .clone()
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| {
                hinted(
                    "the commit message is empty; nothing was committed",
                    "pass a message with `git agent commit -m <message>`",
                )
            })?;
        let new = commit_tree(git, &format!("{wip}^{{tree}}"), &[parent], &message, sign)?;
        commits.push((wip.to_string(), new.clone()));
        last = new;
    }
    git.transaction(&[RefUpdate {
        name: branch.clone(),
        new: Some(last.clone()),
        old: expected,
    }])
    .with_context(|| format!("cannot update branch agent/{}", req.task))?;
    for (orig, new) in &commits {
        let note = format!(
            "git-agent-task: {}\ngit-agent-agent: {}\ngit-agent-source: {orig}\ngit-agent-base: {}\n",
            req.task, req.agent, req.base
        );
        git.run(["notes", "--ref", NOTES_REF, "add", "-f", "-m", &note, new])
            .context("cannot record provenance notes")?;
    }
    Ok(Promoted {
        promotion: Promotion {
            task_tip: tip.to_string(),
            branch_tip: last,
        },
        commits,
    })
}

fn commit_tree(
    git: &Git,
    tree: &str,
    parents: &[String],
    message: &str,
    sign: bool,
) -> Result<String> {
    let mut args = vec!["commit-tree".to_string(), tree.to_string()];
    for p in parents {
        args.push("-p".into());
        args.push(p.clone());
    }
    if sign {
        args.push("-S".into());
    }
    args.push("-F".into());
    args.push("-".into());
    git.run_with_input(&args, message.as_bytes()).map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("tell me who you are") || text.contains("empty ident") {
            hinted(
                "git does not know who you are, so it cannot commit",
                "set your identity: git config --global user.name \"Your Name\"; git config --global user.email you@example.com",
            )
        } else if sign {
            hinted(
                format!("signing the commit failed: {text}"),
                "check user.signingKey and gpg.format, or commit unsigned with `git -c commit.gpgSign=false agent commit`",
            )
        } else {
            e.context("cannot create a commit")
        }
    })
}
