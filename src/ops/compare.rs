//! Compare: how several attempts at one task differ from each other (`git agent review
//! <group> --compare`, or several task names). For each pair of attempts: the files each
//! changed against its base that the other did not, the files both changed to different
//! content and to the same content (the interdiff of their final trees, as data), the
//! interdiff's diffstat, and `git range-diff` of their commits.
//!
//! Syncs each attempt first when asked (as review does). Returns data and raw git output;
//! never escapes or prints (that is `cli::review`), and runs no diff driver, external diff or
//! textconv.

use serde::Serialize;

use crate::git::sensitive::{RawChange, parse_raw};
use crate::task::store::Loaded;

use super::{Ctx, Event, Events, OpError};

/// Why a comparison failed.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("--compare needs two or more attempts; {found} found")]
    TooFew { found: usize },
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<anyhow::Error> for CompareError {
    fn from(e: anyhow::Error) -> Self {
        CompareError::Other(e)
    }
}

impl OpError for CompareError {
    fn hint(&self) -> Option<String> {
        match self {
            CompareError::TooFew { .. } => Some(
                "name a group (`spawn --agent a,b` makes one) or several tasks: git agent review <task> <task> --compare".into(),
            ),
            CompareError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            CompareError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            CompareError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareRequest {
    /// A group's name (the one `spawn --agent a,b` gave its tasks), or two or more tasks
    /// (any unique prefix of each name).
    pub names: Vec<String>,
    /// Sync first (when the engine is reachable).
    pub sync: bool,
}

/// One attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub task: String,
    pub agent: String,
    pub status: String,
    pub base: String,
    /// The tip compared (the uncommitted snapshot, else the task's branch).
    pub tip: String,
}

/// How two attempts differ.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    /// Files only A changed.
    pub only_a: Vec<String>,
    /// Files only B changed.
    pub only_b: Vec<String>,
    /// Files both changed, to different content.
    pub differing: Vec<String>,
    /// Files both changed, to the same content.
    pub identical: Vec<String>,
    /// `git diff --stat` of A's final tree against B's (raw git output, not escaped).
    #[serde(skip)]
    pub interdiff_stat: String,
    /// `git range-diff` of A's commits against B's (raw git output, not escaped).
    #[serde(skip)]
    pub range_diff: String,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    /// The group's name, when one was named.
    pub group: Option<String>,
    pub attempts: Vec<Attempt>,
    /// Every pair, the first attempt's pairs first.
    pub pairs: Vec<Pair>,
}

/// Compare the attempts `req` names.
pub async fn run(
    ctx: &Ctx,
    req: &CompareRequest,
    events: &dyn Events,
) -> Result<Compared, CompareError> {
    let mut group = None;
    let mut members: Vec<Loaded> = Vec::new();
    if let [one] = req.names.as_slice()
        && ctx.store.names()?.iter().all(|n| n != one)
    {
        members = ctx
            .store
            .all()?
            .into_iter()
            .filter(|l| l.record.group.as_deref() == Some(one.as_str()))
            .collect();
        group = Some(one.clone());
    }
    if members.is_empty() {
        group = None;
        for n in &req.names {
            members.push(ctx.store.resolve(n)?);
        }
    }
    if members.len() < 2 {
        return Err(CompareError::TooFew {
            found: members.len(),
        });
    }
    let mut fresh = Vec::new();
    for l in members {
        // Each attempt on its own engine; one that does not answer is shown as last synced.
        let rt = match l.record.sandbox.container {
            Some(_) => match super::engine_of_for_reading(ctx, &l.record).await {
                Ok(rt) => Some(rt),
                Err(e) => {
                    events.emit(Event::step(None, format!("{e}; runtime status unknown")));
                    None
                }
            },
            None => None,
        };
        fresh.push(match &rt {
            Some(rt) => super::review::fresh(rt, ctx, l, req.sync, events).await?,
            None => l,
        });
    }
    let attempts: Vec<Attempt> = fresh
        .iter()
        .map(|l| Attempt {
            task: l.record.name.clone(),
            agent: l.record.agent.clone(),
            status: l.record.status.as_str().to_string(),
            base: l.record.base.clone(),
            tip: l.tip().to_string(),
        })
        .collect();
    let mut changes = Vec::new();
    for a in &attempts {
        changes.push(parse_raw(&ctx.git.run([
            "diff",
            "--raw",
            "-z",
            "--no-renames",
            "--no-abbrev",
            &a.base,
            &a.tip,
        ])?));
    }
    let quiet = no_textconv(ctx);
    let mut pairs = Vec::new();
    for i in 0..attempts.len() {
        for j in i + 1..attempts.len() {
            let (a, b) = (&attempts[i], &attempts[j]);
            let mut pair = classify(&a.task, &b.task, &changes[i], &changes[j]);
            pair.interdiff_stat = ctx.git.run([
                "diff",
                "--stat",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--text",
                &a.tip,
                &b.tip,
            ])?;
            let mut args = quiet.clone();
            args.extend([
                "range-diff".to_string(),
                "--no-color".into(),
                format!("{}..{}", a.base, a.tip),
                format!("{}..{}", b.base, b.tip),
            ]);
            pair.range_diff = ctx.git.run(&args)?;
            pairs.push(pair);
        }
    }
    Ok(Compared {
        group,
        attempts,
        pairs,
    })
}

/// `-c diff.<driver>.textconv=cat` for every textconv driver the user's config has:
/// `range-diff` has no `--no-textconv` (it runs no external diff), and the attempts' content
/// must not reach the user's converters.
fn no_textconv(ctx: &Ctx) -> Vec<String> {
    let keys = ctx
        .git
        .run([
            "config",
            "--name-only",
            "--get-regexp",
            r"^diff\..*\.textconv$",
        ])
        .unwrap_or_default();
    keys.lines()
        .filter(|k| !k.is_empty())
        .flat_map(|k| ["-c".to_string(), format!("{k}=cat")])
        .collect()
}

/// Sort the files two attempts changed (each against its base): only in one, in both to
/// different content, in both to the same content (same mode and blob, or both deleted).
pub fn classify(a: &str, b: &str, changes_a: &[RawChange], changes_b: &[RawChange]) -> Pair {
    let key = |c: &RawChange| -> (String, String) {
        if c.status == 'D' {
            (String::new(), String::new())
        } else {
            (c.new_mode.clone(), c.new_oid.clone())
        }
    };
    let map_b: std::collections::BTreeMap<&str, (String, String)> = changes_b
        .iter()
        .map(|c| (c.path.as_str(), key(c)))
        .collect();
    let mut pair = Pair {
        a: a.to_string(),
        b: b.to_string(),
        only_a: vec![],
        only_b: vec![],
        differing: vec![],
        identical: vec![],
        interdiff_stat: String::new(),
        range_diff: String::new(),
    };
    for c in changes_a {
        match map_b.get(c.path.as_str()) {
            None => pair.only_a.push(c.path.clone()),
            Some(k) if *k == key(c) => pair.identical.push(c.path.clone()),
            Some(_) => pair.differing.push(c.path.clone()),
        }
    }
    let in_a: std::collections::BTreeSet<&str> =
        changes_a.iter().map(|c| c.path.as_str()).collect();
    pair.only_b = changes_b
        .iter()
        .filter(|c| !in_a.contains(c.path.as_str()))
        .map(|c| c.path.clone())
        .collect();
    pair
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, status: char, oid: &str) -> RawChange {
        RawChange {
            old_mode: "100644".into(),
            new_mode: if status == 'D' { "000000" } else { "100644" }.into(),
            old_oid: "0".repeat(40),
            new_oid: oid.into(),
            status,
            path: path.into(),
            ..RawChange::default()
        }
    }

    #[test]
    fn files_are_sorted_into_only_differing_and_identical() {
        let a = [
            change("same", 'M', "aa"),
            change("diff", 'M', "ab"),
            change("a-only", 'A', "ac"),
            change("gone", 'D', "00"),
        ];
        let b = [
            change("same", 'M', "aa"),
            change("diff", 'M', "bb"),
            change("b-only", 'A', "bc"),
            change("gone", 'D', "00"),
        ];
        let p = classify("x", "y", &a, &b);
        assert_eq!(p.only_a, ["a-only"]);
        assert_eq!(p.only_b, ["b-only"]);
        assert_eq!(p.differing, ["diff"]);
        assert_eq!(p.identical, ["same", "gone"]);
    }
}
