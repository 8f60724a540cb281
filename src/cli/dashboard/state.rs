//! The dashboard's state model: which task is selected, which panes are open, what the
//! user is typing or confirming, and what each key press asks for. Pure: no terminal, no
//! processes; the shell in `cli/dashboard.rs` carries out the [`Action`]s.

use crate::ops::dashboard::{TaskKey, TaskView};

/// A key press, reduced to what the dashboard tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    Enter,
    Esc,
    Backspace,
    Tab,
    Char(char),
    /// Ctrl-C (raw mode delivers it as a key).
    Interrupt,
}

/// A command the dashboard runs on a task, as the user would type it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Attach,
    Shell,
    Logs,
    Review,
    Allow(String),
    Stop,
    Retry,
    Purge,
}

impl Verb {
    /// The `git agent` arguments that do it.
    pub fn args(&self, task: &str) -> Vec<String> {
        let name = match self {
            Verb::Attach => "attach",
            Verb::Shell => "shell",
            Verb::Logs => "logs",
            Verb::Review => "review",
            Verb::Allow(_) => "allow",
            Verb::Stop => "stop",
            Verb::Retry => "retry",
            Verb::Purge => "purge",
        };
        let mut args = vec![name.to_string(), task.to_string()];
        if let Verb::Allow(domain) = self {
            args.push(domain.clone());
        }
        args
    }

    /// Whether it takes over the terminal (the dashboard steps aside while it runs), or
    /// runs in the background with its messages shown on the status line.
    pub fn takes_terminal(&self) -> bool {
        matches!(self, Verb::Attach | Verb::Shell | Verb::Logs | Verb::Review)
    }

    /// Whether the user reads its output before the dashboard comes back (attach and shell
    /// end when the user leaves them).
    pub fn pauses_after(&self) -> bool {
        matches!(self, Verb::Logs | Verb::Review)
    }
}

/// What the dashboard is doing with the keyboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a domain to allow for a task.
    Allow {
        task: TaskKey,
        domain: String,
    },
    /// Asking before `verb` on a task.
    Confirm {
        task: TaskKey,
        verb: Verb,
    },
    /// The key list.
    Help,
}

/// What a key press asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond drawing the new state.
    None,
    Quit,
    /// The selection changed: fetch this task's output.
    Select(Option<TaskKey>),
    Run {
        task: TaskKey,
        verb: Verb,
    },
}

/// The most characters a typed domain may have (a DNS name's limit).
const MAX_DOMAIN: usize = 253;

#[derive(Debug, Clone)]
pub struct State {
    /// The selected task, kept by name so a refresh that reorders tasks keeps it.
    pub selected: Option<TaskKey>,
    /// The selected row when the task was last seen (where the selection stays when its
    /// task goes away).
    pub row: usize,
    /// The detail pane (the selected task's latest output) is open.
    pub detail: bool,
    pub mode: Mode,
    /// The last thing to tell the user (a command's result, a refusal).
    pub notice: Option<String>,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    pub fn new() -> State {
        State {
            selected: None,
            row: 0,
            detail: false,
            mode: Mode::Normal,
            notice: None,
        }
    }

    /// The selected row among `tasks`, following the selected task; `None` without tasks.
    pub fn selected_row(&self, tasks: &[TaskView]) -> Option<usize> {
        if tasks.is_empty() {
            return None;
        }
        let by_key = self
            .selected
            .as_ref()
            .and_then(|k| tasks.iter().position(|t| &t.key == k));
        Some(by_key.unwrap_or(self.row.min(tasks.len() - 1)))
    }

    /// Bring the selection up to date with a new snapshot's tasks: a task that went away
    /// leaves the selection on the row it had. Returns the new selection when it changed.
    pub fn follow(&mut self, tasks: &[TaskView]) -> Option<Option<TaskKey>> {
        let row = self.selected_row(tasks);
        let key = row.map(|r| tasks[r].key.clone());
        if let Some(r) = row {
            self.row = r;
        }
        if key != self.selected {
            self.selected = key.clone();
            return Some(key);
        }
        None
    }

    fn select_row(&mut self, tasks: &[TaskView], row: usize) -> Action {
        let Some(task) = tasks.get(row) else {
            return Action::None;
        };
        self.row = row;
        if self.selected.as_ref() == Some(&task.key) {
            return Action::None;
        }
        self.selected = Some(task.key.clone());
        Action::Select(self.selected.clone())
    }

    /// Act on one key press, given the tasks on the screen.
    pub fn on_key(&mut self, key: Key, tasks: &[TaskView]) -> Action {
        if key == Key::Interrupt {
            return Action::Quit;
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal(key, tasks),
            Mode::Help => Action::None,
            Mode::Confirm { task, verb } => {
                if matches!(key, Key::Char('y') | Key::Char('Y')) {
                    Action::Run { task, verb }
                } else {
                    self.notice = Some(format!("{} not done", verb.args(&task.name).join(" ")));
                    Action::None
                }
            }
            Mode::Allow { task, mut domain } => match key {
                Key::Esc => Action::None,
                Key::Enter if domain.is_empty() => Action::None,
                Key::Enter => Action::Run {
                    task,
                    verb: Verb::Allow(domain),
                },
                Key::Backspace => {
                    domain.pop();
                    self.mode = Mode::Allow { task, domain };
                    Action::None
                }
                // Only what a domain name (or pattern) can hold: the typed text becomes an
                // argument of `git agent allow`, which checks it again.
                Key::Char(c)
                    if (c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | '_'))
                        && domain.len() < MAX_DOMAIN =>
                {
                    domain.push(c.to_ascii_lowercase());
                    self.mode = Mode::Allow { task, domain };
                    Action::None
                }
                _ => {
                    self.mode = Mode::Allow { task, domain };
                    Action::None
                }
            },
        }
    }

    fn normal(&mut self, key: Key, tasks: &[TaskView]) -> Action {
        let row = self.selected_row(tasks);
        match key {
            Key::Char('q') | Key::Esc if !self.detail || key == Key::Char('q') => {
                return Action::Quit;
            }
            Key::Esc => self.detail = false,
            Key::Up | Key::Char('k') => {
                if let Some(r) = row {
                    return self.select_row(tasks, r.saturating_sub(1));
                }
            }
            Key::Down | Key::Char('j') => {
                if let Some(r) = row {
                    return self.select_row(tasks, (r + 1).min(tasks.len() - 1));
                }
            }
            Key::Enter | Key::Tab => {
                self.detail = !self.detail;
                if self.detail
                    && let Some(r) = row
                {
                    self.selected = Some(tasks[r].key.clone());
                    return Action::Select(self.selected.clone());
                }
            }
            Key::Char('?') | Key::Char('h') => self.mode = Mode::Help,
            Key::Char(c) => {
                let verb = match c {
                    'a' => Verb::Attach,
                    's' => Verb::Shell,
                    'l' => Verb::Logs,
                    'r' => Verb::Review,
                    'x' => Verb::Stop,
                    't' => Verb::Retry,
                    'P' => Verb::Purge,
                    'w' => Verb::Allow(String::new()),
                    _ => return Action::None,
                };
                let Some(r) = row else {
                    self.notice = Some("no task selected".into());
                    return Action::None;
                };
                let task = tasks[r].key.clone();
                match verb {
                    Verb::Allow(_) => {
                        self.mode = Mode::Allow {
                            task,
                            domain: String::new(),
                        }
                    }
                    Verb::Purge | Verb::Stop => self.mode = Mode::Confirm { task, verb },
                    verb => return Action::Run { task, verb },
                }
            }
            _ => {}
        }
        Action::None
    }
}

/// The keys, for the help pane and the footer.
pub const KEYS: &[(&str, &str)] = &[
    ("Up/Down j/k", "select a task"),
    ("Enter/Tab", "open or close the output pane"),
    ("a", "attach to the task"),
    ("s", "open a shell in its sandbox"),
    ("l", "show its whole output (logs)"),
    ("r", "review its work"),
    ("w", "allow a domain (type it, Enter)"),
    ("x", "stop it (asks first)"),
    ("t", "retry it as a new task"),
    ("P", "purge it (asks first)"),
    ("?", "this help"),
    ("q", "quit"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn task(name: &str) -> TaskView {
        TaskView {
            key: TaskKey {
                repo: PathBuf::from("/r"),
                name: name.into(),
            },
            repo_label: "r".into(),
            agent: "exec".into(),
            status: "running".into(),
            created: 0,
            files_changed: 0,
            insertions: 0,
            deletions: 0,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            queue_position: None,
            connections: Vec::new(),
        }
    }

    fn key(name: &str) -> TaskKey {
        task(name).key
    }

    #[test]
    fn moving_selects_tasks_and_asks_for_their_output() {
        let tasks = [task("a"), task("b")];
        let mut s = State::new();
        assert_eq!(s.follow(&tasks), Some(Some(key("a"))));
        assert_eq!(s.on_key(Key::Down, &tasks), Action::Select(Some(key("b"))));
        // At the end the selection stays.
        assert_eq!(s.on_key(Key::Char('j'), &tasks), Action::None);
        assert_eq!(s.on_key(Key::Up, &tasks), Action::Select(Some(key("a"))));
        assert_eq!(s.on_key(Key::Up, &tasks), Action::None);
    }

    #[test]
    fn the_selection_follows_its_task_and_stays_on_its_row_when_it_goes() {
        let mut s = State::new();
        s.follow(&[task("a"), task("b"), task("c")]);
        s.on_key(Key::Down, &[task("a"), task("b"), task("c")]);
        // Reordered: still b.
        assert_eq!(s.follow(&[task("b"), task("a"), task("c")]), None);
        assert_eq!(s.selected, Some(key("b")));
        // b gone: the row it was on (0).
        assert_eq!(s.follow(&[task("a"), task("c")]), Some(Some(key("a"))));
        // No tasks: nothing selected, and keys that act on a task say so.
        assert_eq!(s.follow(&[]), Some(None));
        assert_eq!(s.on_key(Key::Char('x'), &[]), Action::None);
        assert_eq!(s.notice.as_deref(), Some("no task selected"));
    }

    #[test]
    fn enter_opens_the_detail_pane_and_escape_closes_it_before_quitting() {
        let tasks = [task("a")];
        let mut s = State::new();
        s.follow(&tasks);
        assert_eq!(s.on_key(Key::Enter, &tasks), Action::Select(Some(key("a"))));
        assert!(s.detail);
        assert_eq!(s.on_key(Key::Esc, &tasks), Action::None);
        assert!(!s.detail);
        assert_eq!(s.on_key(Key::Esc, &tasks), Action::Quit);
        assert_eq!(s.on_key(Key::Interrupt, &tasks), Action::Quit);
    }

    #[test]
    fn purge_and_stop_run_only_after_yes() {
        let tasks = [task("a")];
        let mut s = State::new();
        s.follow(&tasks);
        assert_eq!(s.on_key(Key::Char('P'), &tasks), Action::None);
        assert!(matches!(s.mode, Mode::Confirm { .. }));
        // Anything but y refuses, and says so.
        assert_eq!(s.on_key(Key::Char('P'), &tasks), Action::None);
        assert_eq!(s.mode, Mode::Normal);
        assert_eq!(s.notice.as_deref(), Some("purge a not done"));
        s.on_key(Key::Char('x'), &tasks);
        assert_eq!(
            s.on_key(Key::Char('y'), &tasks),
            Action::Run {
                task: key("a"),
                verb: Verb::Stop
            }
        );
        // A lower-case p is not purge.
        assert_eq!(s.on_key(Key::Char('p'), &tasks), Action::None);
        assert_eq!(s.mode, Mode::Normal);
    }

    #[test]
    fn keys_map_to_the_commands_that_do_it() {
        let tasks = [task("a")];
        let mut s = State::new();
        s.follow(&tasks);
        for (c, args, terminal) in [
            ('a', "attach a", true),
            ('s', "shell a", true),
            ('l', "logs a", true),
            ('r', "review a", true),
            ('t', "retry a", false),
        ] {
            let Action::Run { task, verb } = s.on_key(Key::Char(c), &tasks) else {
                panic!("{c} runs nothing");
            };
            assert_eq!(verb.args(&task.name).join(" "), args);
            assert_eq!(verb.takes_terminal(), terminal, "{c}");
        }
    }

    #[test]
    fn a_typed_domain_holds_only_what_a_domain_can() {
        let tasks = [task("a")];
        let mut s = State::new();
        s.follow(&tasks);
        s.on_key(Key::Char('w'), &tasks);
        for c in "Ex ample.COM;$(rm -rf)\u{1b}".chars() {
            s.on_key(Key::Char(c), &tasks);
        }
        s.on_key(Key::Backspace, &tasks);
        assert_eq!(
            s.mode,
            Mode::Allow {
                task: key("a"),
                domain: "example.comrm-r".into()
            }
        );
        let Action::Run { verb, .. } = s.on_key(Key::Enter, &tasks) else {
            panic!("enter runs allow");
        };
        assert_eq!(verb.args("a"), ["allow", "a", "example.comrm-r"]);
        assert!(!verb.takes_terminal());
        // Nothing typed: nothing run.
        s.on_key(Key::Char('w'), &tasks);
        assert_eq!(s.on_key(Key::Enter, &tasks), Action::None);
        assert_eq!(s.mode, Mode::Normal);
        // Endless typing is capped.
        s.on_key(Key::Char('w'), &tasks);
        for _ in 0..300 {
            s.on_key(Key::Char('a'), &tasks);
        }
        let Mode::Allow { domain, .. } = &s.mode else {
            panic!("still typing");
        };
        assert_eq!(domain.len(), MAX_DOMAIN);
    }
}
