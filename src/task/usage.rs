//! Tokens and cost summed over tasks: per group (the tasks one `spawn --agent a,b` started)
//! and per repository, from what each task's run reported (its recorded
//! [`RunStats`](crate::agent::claude::RunStats)). Pure: callers load the records and show the
//! sums.
//!
//! A cost is only summed where a run had one (reported by the agent or priced from
//! templates/prices.toml); [`Usage::unpriced`] counts runs with tokens but no cost, so a
//! total never passes off a partial sum as the whole.

use std::collections::BTreeMap;

use serde::Serialize;

use super::TaskRecord;

/// Sums over a set of tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Tasks counted.
    pub tasks: usize,
    /// Of those, tasks whose run reported tokens.
    pub reporting: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The sum of the costs known (see `unpriced`); `None` when no run had one.
    pub cost_usd: Option<f64>,
    /// Tasks with tokens but no cost (an agent that reports none, a model with no price).
    pub unpriced: usize,
}

impl Usage {
    /// Count one task.
    pub fn add(&mut self, record: &TaskRecord) {
        self.tasks += 1;
        let Some(s) = &record.stats else {
            return;
        };
        if s.input_tokens.is_some() || s.output_tokens.is_some() {
            self.reporting += 1;
            self.input_tokens += s.input_tokens.unwrap_or(0);
            self.output_tokens += s.output_tokens.unwrap_or(0);
            if s.cost_usd.is_none() {
                self.unpriced += 1;
            }
        }
        if let Some(c) = s.cost_usd.filter(|c| c.is_finite() && *c >= 0.0) {
            self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + c);
        }
    }

    /// `3 tasks, 1200/340 tokens, $0.0123 (1 without a cost)`, leaving out what is unknown.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} task{}",
            self.tasks,
            if self.tasks == 1 { "" } else { "s" }
        )];
        if self.reporting > 0 {
            parts.push(format!(
                "{}/{} tokens",
                self.input_tokens, self.output_tokens
            ));
        }
        if let Some(c) = self.cost_usd {
            let mut cost = format!("${c:.4}");
            if self.unpriced > 0 {
                cost.push_str(&format!(" ({} without a cost)", self.unpriced));
            }
            parts.push(cost);
        }
        parts.join(", ")
    }
}

/// Sums for a repository's tasks and for each of their groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub repository: Usage,
    pub groups: BTreeMap<String, Usage>,
}

/// Sum `records` per group and for the whole repository.
pub fn totals<'a>(records: impl IntoIterator<Item = &'a TaskRecord>) -> Totals {
    let mut t = Totals::default();
    for r in records {
        t.repository.add(r);
        if let Some(g) = &r.group {
            t.groups.entry(g.clone()).or_default().add(r);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::claude::RunStats;

    fn record(group: Option<&str>, stats: Option<RunStats>) -> TaskRecord {
        let mut r = TaskRecord {
            name: "t".into(),
            ..TaskRecord::default()
        };
        r.group = group.map(str::to_string);
        r.stats = stats;
        r
    }

    fn run(i: u64, o: u64, cost: Option<f64>) -> Option<RunStats> {
        Some(RunStats {
            input_tokens: Some(i),
            output_tokens: Some(o),
            cost_usd: cost,
            ..RunStats::default()
        })
    }

    #[test]
    fn sums_per_group_and_repository_and_says_what_has_no_cost() {
        let records = [
            record(Some("g1"), run(100, 10, Some(0.5))),
            record(Some("g1"), run(200, 20, None)),
            record(Some("g2"), run(1, 2, Some(0.25))),
            record(None, None),
            record(None, run(5, 5, Some(f64::NAN))),
        ];
        let t = totals(&records);
        assert_eq!(t.repository.tasks, 5);
        assert_eq!(t.repository.reporting, 4);
        assert_eq!(t.repository.input_tokens, 306);
        assert_eq!(t.repository.output_tokens, 37);
        assert_eq!(t.repository.cost_usd, Some(0.75));
        assert_eq!(t.groups["g1"].input_tokens, 300);
        assert_eq!(t.groups["g1"].cost_usd, Some(0.5));
        assert_eq!(t.groups["g1"].unpriced, 1);
        assert_eq!(
            t.groups["g1"].summary(),
            "2 tasks, 300/30 tokens, $0.5000 (1 without a cost)"
        );
        assert_eq!(t.groups["g2"].summary(), "1 task, 1/2 tokens, $0.2500");
        assert_eq!(t.groups.len(), 2);
        assert_eq!(totals(&[record(None, None)]).repository.summary(), "1 task");
    }
}
