//! Which of the listed tasks `list` shows and in what order (`--status`, `--agent`,
//! `--since`, newest first), and the totals of what they recorded (tokens, cost). Pure
//! functions over [`Row`]s; parsing of `--since` included.

use serde::Serialize;

use super::inspect::Row;
use crate::task::Status;

/// The statuses a task can have, as `--status` takes them.
pub const STATUSES: &[Status] = &[
    Status::Creating,
    Status::Running,
    Status::Exited,
    Status::Stopped,
    Status::Failed,
    Status::Queued,
];

/// What to keep. Empty lists keep everything.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub statuses: Vec<String>,
    pub agents: Vec<String>,
    /// Only tasks created at or after this time (seconds since the epoch).
    pub since: Option<i64>,
}

impl Filter {
    pub fn keeps(&self, row: &Row) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&row.status))
            && (self.agents.is_empty() || self.agents.contains(&row.agent))
            && self.since.is_none_or(|t| row.created >= t)
    }
}

/// Keep the rows `filter` keeps, newest first (oldest first with `oldest_first`). The
/// repository's own tasks come before fetched ones, each part in that order; queued tasks
/// created in the same second are in queue order (their queue position is finer than the
/// clock), other equal times keep the name order of the ref scan.
pub fn select(rows: Vec<Row>, filter: &Filter, oldest_first: bool) -> Vec<Row> {
    let mut rows: Vec<Row> = rows.into_iter().filter(|r| filter.keeps(r)).collect();
    rows.sort_by(|a, b| {
        let age = |r: &Row| (r.created, r.queue_position.unwrap_or(0));
        let time = if oldest_first {
            age(a).cmp(&age(b))
        } else {
            age(b).cmp(&age(a))
        };
        a.fetched_from
            .is_some()
            .cmp(&b.fetched_from.is_some())
            .then(time)
    });
    rows
}

/// What the tasks recorded, summed. A task that recorded no figure adds nothing to it; the
/// `*_tasks` counts say how many tasks a sum covers.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Totals {
    pub tasks: usize,
    pub turns: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// How many tasks recorded a cost (the others ran agents that report none).
    pub costed_tasks: usize,
}

pub fn totals(rows: &[Row]) -> Totals {
    let mut t = Totals {
        tasks: rows.len(),
        ..Totals::default()
    };
    for r in rows {
        t.turns += r.turns.unwrap_or(0);
        t.input_tokens += r.input_tokens.unwrap_or(0);
        t.output_tokens += r.output_tokens.unwrap_or(0);
        if let Some(c) = r.cost_usd.filter(|c| c.is_finite() && *c >= 0.0) {
            t.cost_usd += c;
            t.costed_tasks += 1;
        }
    }
    t
}

/// `--since`: a duration back from `now` (the one syntax, [`crate::duration`]), a UTC date
/// `YYYY-MM-DD`, a UTC time `YYYY-MM-DDTHH:MM[:SS]` (`Z` allowed), or `@<seconds>`.
pub fn parse_since(text: &str, now: i64) -> Result<i64, String> {
    let t = text.trim();
    if let Some(secs) = t.strip_prefix('@') {
        return secs
            .parse::<i64>()
            .map_err(|_| format!("'{text}' is not a time like @1700000000"));
    }
    if let Ok(d) = crate::duration::parse(t) {
        return Ok(now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    }
    parse_utc(t).ok_or_else(|| {
        format!(
            "'{text}' is neither a duration like {} nor a date like 2025-01-31 or 2025-01-31T14:00 (UTC)",
            crate::duration::EXAMPLES
        )
    })
}

fn parse_utc(t: &str) -> Option<i64> {
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, tm)) => (d, Some(tm)),
        None => (t, None),
    };
    let num = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=days_in(y, m)).contains(&day) {
        return None;
    }
    let secs = match time {
        None => 0,
        Some(tm) => {
            let mut p = tm.split(':');
            let h = num(p.next()?, 2)?;
            let mi = num(p.next()?, 2)?;
            let s = match p.next() {
                Some(s) => num(s, 2)?,
                None => 0,
            };
            if p.next().is_some() || h > 23 || mi > 59 || s > 59 {
                return None;
            }
            h * 3600 + mi * 60 + s
        }
    };
    Some(days_from_civil(y, m, day) * 86_400 + secs)
}

fn days_in(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, agent: &str, status: &str, created: i64, cost: Option<f64>) -> Row {
        Row {
            name: name.into(),
            agent: agent.into(),
            status: status.into(),
            status_text: status.into(),
            status_checked: true,
            problems: vec![],
            exit_code: None,
            created,
            base: "0".repeat(40),
            base_branch: None,
            files_changed: 0,
            insertions: 0,
            deletions: 0,
            uncommitted: false,
            turns: Some(2),
            input_tokens: Some(10),
            output_tokens: None,
            cost_usd: cost,
            queue_position: None,
            engine: None,
            merged: None,
            retry_of: None,
            followups: 0,
            fetched_from: None,
        }
    }

    #[test]
    fn filters_and_order() {
        let rows = || {
            vec![
                row("a", "claude", "exited", 10, Some(0.5)),
                row("b", "codex", "running", 30, None),
                row("c", "claude", "running", 20, Some(0.25)),
            ]
        };
        let names = |rows: &[Row]| rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&select(rows(), &Filter::default(), false)),
            ["b", "c", "a"]
        );
        assert_eq!(
            names(&select(rows(), &Filter::default(), true)),
            ["a", "c", "b"]
        );
        // Queued in one second: queue order, not name order.
        let queued = || {
            let mut q = vec![
                row("q-b", "exec", "queued", 40, None),
                row("q-a", "exec", "queued", 40, None),
            ];
            q[0].queue_position = Some(1);
            q[1].queue_position = Some(2);
            q
        };
        assert_eq!(
            names(&select(queued(), &Filter::default(), false)),
            ["q-a", "q-b"]
        );
        assert_eq!(
            names(&select(queued(), &Filter::default(), true)),
            ["q-b", "q-a"]
        );
        let f = Filter {
            statuses: vec!["running".into()],
            agents: vec!["claude".into()],
            since: None,
        };
        assert_eq!(names(&select(rows(), &f, false)), ["c"]);
        let f = Filter {
            since: Some(20),
            ..Filter::default()
        };
        assert_eq!(names(&select(rows(), &f, false)), ["b", "c"]);
        let t = totals(&rows());
        assert_eq!(
            (t.tasks, t.turns, t.input_tokens, t.output_tokens),
            (3, 6, 30, 0)
        );
        assert_eq!((t.cost_usd, t.costed_tasks), (0.75, 2));
        // A hostile record's cost cannot poison the sum.
        let t = totals(&[
            row("x", "a", "exited", 1, Some(f64::NAN)),
            row("y", "a", "exited", 1, Some(-5.0)),
        ]);
        assert_eq!((t.cost_usd, t.costed_tasks), (0.0, 0));
    }

    #[test]
    fn since() {
        let now = 1_700_000_000;
        assert_eq!(parse_since("90", now), Ok(now - 90));
        assert_eq!(parse_since("1h30m", now), Ok(now - 5400));
        assert_eq!(parse_since("1970-01-02", now), Ok(86_400));
        assert_eq!(parse_since("2000-03-01T00:00:01Z", now), Ok(951_868_801));
        assert_eq!(parse_since("2024-02-29 12:30", now), Ok(1_709_209_800));
        assert_eq!(parse_since("@5", now), Ok(5));
        for bad in [
            "yesterday",
            "2023-02-29",
            "2024-1-01",
            "2024-01-01T25:00",
            "1h30",
            "@x",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
