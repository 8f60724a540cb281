//! Drawing the dashboard from a snapshot and the state: the task list, the output pane, the
//! network pane and the status line. ASCII only (no borders or symbols a terminal over SSH
//! may lack); fits 80x24. Everything shown from a task was escaped when it was gathered
//! (`ops::dashboard`); names and hosts are checked names already.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState};

use super::state::{KEYS, Mode, State};
use crate::egress::log::Decision;
use crate::ops::dashboard::{Snapshot, TaskView};

/// Options that do not change while the dashboard runs.
pub struct Setup {
    /// Tasks of several repositories: names carry their repository's.
    pub all: bool,
    /// Where the dashboard looks (shown in the header).
    pub scope: String,
}

/// Tokens as a short count: `950`, `12.3k`, `4.5M`.
pub fn tokens(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// The cells of a task's row: name, agent, status, age, changes, tokens, cost.
pub fn cells(t: &TaskView, all: bool, now: i64) -> [String; 7] {
    let name = if all {
        format!("{}:{}", t.repo_label, t.key.name)
    } else {
        t.key.name.clone()
    };
    let changes = if t.files_changed == 0 {
        "-".to_string()
    } else {
        format!("{}f +{} -{}", t.files_changed, t.insertions, t.deletions)
    };
    let toks = match (t.input_tokens, t.output_tokens) {
        (None, None) => "-".to_string(),
        (i, o) => tokens(i.unwrap_or(0) + o.unwrap_or(0)),
    };
    let cost = t
        .cost_usd
        .map(|c| format!("${c:.2}"))
        .unwrap_or_else(|| "-".into());
    [
        name,
        t.agent.clone(),
        t.status.clone(),
        crate::task::age(t.created, now),
        changes,
        toks,
        cost,
    ]
}

/// The network pane's lines: every task's decisions, newest first, refused ones marked.
pub fn network_lines(tasks: &[TaskView], all: bool) -> Vec<String> {
    let mut rows: Vec<(&str, String)> = Vec::new();
    for t in tasks {
        let name = if all {
            format!("{}:{}", t.repo_label, t.key.name)
        } else {
            t.key.name.clone()
        };
        for c in &t.connections {
            let mark = match c.decision {
                Decision::Allowed => "  ",
                Decision::Denied => "!!",
                Decision::Failed => "? ",
            };
            // The time of day (hh:mm:ss) of the proxy's UTC stamp.
            let time = c.time.get(11..19).unwrap_or(&c.time);
            rows.push((
                &c.time,
                format!(
                    "{mark} {time} {name:<16} {:<7} {}:{}",
                    c.decision.as_str(),
                    c.host,
                    c.port
                ),
            ));
        }
    }
    // Newest first; a stable sort keeps each task's own order among equal times.
    rows.sort_by(|a, b| b.0.cmp(a.0));
    rows.into_iter().map(|(_, l)| l).collect()
}

/// The first line: what is shown and whether the engine answers.
pub fn header(snap: &Snapshot, setup: &Setup) -> String {
    let engine = match &snap.unreachable {
        _ if snap.taken == 0 => "reading...".to_string(),
        None => "engine ok".to_string(),
        Some(why) => format!("engine unreachable: {why}"),
    };
    format!(
        "git agent dashboard  {}  {} task{}  {engine}",
        setup.scope,
        snap.tasks.len(),
        if snap.tasks.len() == 1 { "" } else { "s" }
    )
}

/// The last line: what the keyboard does now, or the latest notice.
pub fn footer(state: &State) -> String {
    match &state.mode {
        Mode::Allow { task, domain } => {
            format!(
                "allow for {}: {domain}_  (Enter to allow, Esc to cancel)",
                task.name
            )
        }
        Mode::Confirm { task, verb } => format!(
            "{}? (y/N)",
            verb.args(&task.name)
                .into_iter()
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Mode::Help => "press any key to close the help".into(),
        Mode::Normal => match &state.notice {
            Some(n) => n.clone(),
            None => {
                "Enter:out a:attach s:shell l:logs r:review w:allow x:stop t:retry P:purge ?:help"
                    .into()
            }
        },
    }
}

fn title(text: &str) -> Line<'static> {
    Line::from(Span::styled(
        format!("-- {text} "),
        Style::default().add_modifier(Modifier::BOLD),
    ))
}

/// Draw everything.
pub fn draw(f: &mut Frame, snap: &Snapshot, state: &State, setup: &Setup) {
    let area = f.area();
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(header(snap, setup))
            .style(Style::default().add_modifier(Modifier::REVERSED)),
        head,
    );
    f.render_widget(Paragraph::new(footer(state)), foot);
    if state.mode == Mode::Help {
        let lines: Vec<Line> = std::iter::once(title("keys"))
            .chain(
                KEYS.iter()
                    .map(|(k, what)| Line::from(format!("  {k:<12} {what}"))),
            )
            .collect();
        f.render_widget(Paragraph::new(lines), body);
        return;
    }
    // The list takes what its tasks need (at most half), the rest goes to the panes.
    let list_height = (snap.tasks.len().max(1) as u16 + 2 + snap.problems.len() as u16)
        .min(body.height / 2)
        .max(3);
    let [list, rest] =
        Layout::vertical([Constraint::Length(list_height), Constraint::Min(0)]).areas(body);
    draw_tasks(f, list, snap, state, setup);
    if state.detail {
        let [out, net] =
            Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(rest);
        draw_output(f, out, snap, state);
        draw_network(f, net, snap, setup);
    } else {
        draw_network(f, rest, snap, setup);
    }
}

fn draw_tasks(f: &mut Frame, area: Rect, snap: &Snapshot, state: &State, setup: &Setup) {
    let [head, rows] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    f.render_widget(Paragraph::new(title("tasks")), head);
    if snap.tasks.is_empty() {
        let mut lines: Vec<Line> = snap
            .problems
            .iter()
            .map(|p| Line::from(p.clone()))
            .collect();
        lines.push(Line::from(if snap.taken == 0 {
            "  reading tasks..."
        } else {
            "  no tasks; start one with `git agent spawn`"
        }));
        f.render_widget(Paragraph::new(lines), rows);
        return;
    }
    let now = crate::task::now();
    let table = Table::new(
        snap.tasks
            .iter()
            .map(|t| Row::new(cells(t, setup.all, now))),
        [
            Constraint::Length(if setup.all { 22 } else { 16 }),
            Constraint::Length(7),
            Constraint::Min(12),
            Constraint::Length(4),
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new([
            "NAME", "AGENT", "STATUS", "AGE", "CHANGES", "TOKENS", "COST",
        ])
        .style(Style::default().add_modifier(Modifier::UNDERLINED)),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .highlight_symbol(">");
    let mut ts = TableState::default().with_selected(state.selected_row(&snap.tasks));
    f.render_stateful_widget(table, rows, &mut ts);
}

fn draw_output(f: &mut Frame, area: Rect, snap: &Snapshot, state: &State) {
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let name = state
        .selected
        .as_ref()
        .map(|k| k.name.as_str())
        .unwrap_or("-");
    f.render_widget(Paragraph::new(title(&format!("output of {name}"))), head);
    let out = &snap.output;
    let mut lines: Vec<String> = Vec::new();
    if out.key.is_none() || out.key != state.selected {
        lines.push("  reading...".into());
    } else {
        if let Some(note) = &out.note {
            lines.push(format!("  ({note})"));
        }
        if out.lines.is_empty() && out.note.is_none() {
            lines.push("  (no output yet)".into());
        }
        lines.extend(out.lines.iter().cloned());
    }
    // The newest lines that fit.
    let skip = lines.len().saturating_sub(body.height as usize);
    let shown: Vec<Line> = lines.into_iter().skip(skip).map(Line::from).collect();
    f.render_widget(Paragraph::new(shown), body);
}

fn draw_network(f: &mut Frame, area: Rect, snap: &Snapshot, setup: &Setup) {
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    f.render_widget(
        Paragraph::new(title("network (newest first, !! refused)")),
        head,
    );
    let mut lines = network_lines(&snap.tasks, setup.all);
    if lines.is_empty() {
        lines.push("  no connections yet".into());
    }
    let shown: Vec<Line> = lines
        .into_iter()
        .take(body.height as usize)
        .map(Line::from)
        .collect();
    f.render_widget(Paragraph::new(shown), body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::log::Connection;
    use crate::ops::dashboard::TaskKey;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn task(name: &str) -> TaskView {
        TaskView {
            key: TaskKey {
                repo: "/home/u/proj".into(),
                name: name.into(),
            },
            repo_label: "proj".into(),
            agent: "claude".into(),
            status: "running".into(),
            created: 100,
            files_changed: 3,
            insertions: 120,
            deletions: 4,
            input_tokens: Some(12_000),
            output_tokens: Some(345),
            cost_usd: Some(0.4249),
            queue_position: None,
            connections: vec![
                Connection {
                    time: "2026-11-23T12:12:10.198Z".into(),
                    host: "allowed.test".into(),
                    port: 443,
                    decision: Decision::Allowed,
                },
                Connection {
                    time: "2026-11-23T12:12:11.000Z".into(),
                    host: "evil.test".into(),
                    port: 80,
                    decision: Decision::Denied,
                },
            ],
        }
    }

    fn screen(snap: &Snapshot, state: &State, setup: &Setup) -> String {
        let mut term = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
        term.draw(|f| draw(f, snap, state, setup)).expect("draws");
        let buf = term.backend().buffer();
        (0..24)
            .map(|y| {
                (0..80)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_row_is_short_enough_for_80_columns() {
        let c = cells(&task("fix-login"), false, 160);
        assert_eq!(
            c,
            [
                "fix-login",
                "claude",
                "running",
                "1m",
                "3f +120 -4",
                "12.3k",
                "$0.42"
            ]
        );
        let c = cells(&task("fix-login"), true, 160);
        assert_eq!(c[0], "proj:fix-login");
        assert_eq!(tokens(999), "999");
        assert_eq!(tokens(4_500_000), "4.5M");
    }

    #[test]
    fn the_network_pane_shows_the_newest_first_and_marks_refusals() {
        let lines = network_lines(&[task("a")], false);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("!! 12:12:11 a"), "{lines:?}");
        assert!(lines[0].ends_with("denied  evil.test:80"), "{lines:?}");
        assert!(lines[1].ends_with("allowed allowed.test:443"), "{lines:?}");
    }

    #[test]
    fn it_draws_in_80x24_and_says_when_the_engine_is_unreachable() {
        let setup = Setup {
            all: false,
            scope: "proj".into(),
        };
        let snap = Snapshot {
            tasks: vec![task("fix-login"), task("add-tests")],
            unreachable: Some("cannot connect to the engine".into()),
            taken: 1,
            ..Snapshot::default()
        };
        let mut state = State::new();
        state.follow(&snap.tasks);
        let text = screen(&snap, &state, &setup);
        assert!(text.contains("engine unreachable"), "{text}");
        assert!(text.contains(">fix-login"), "{text}");
        assert!(text.contains("add-tests"), "{text}");
        assert!(text.contains("evil.test:80"), "{text}");
        assert!(!text.contains("-- output"), "{text}");
        assert!(text.is_ascii(), "{text}");
        // The key line fits whole.
        assert!(text.contains("?:help"), "{text}");
        state.on_key(super::super::state::Key::Enter, &snap.tasks);
        let text = screen(&snap, &state, &setup);
        assert!(text.contains("-- output of fix-login"), "{text}");
    }
}
