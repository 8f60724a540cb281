//! `git agent dashboard`: a live terminal view of the tasks. The shell around the pure
//! parts: a background task gathers snapshots (`ops::dashboard`, every read bounded in
//! time), the terminal thread draws the latest one (`view`) and turns key presses into
//! actions (`state`), which run the binary's own commands as child processes.

mod state;
mod view;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use tokio::sync::{Notify, watch};

use self::state::{Action, Key, State, Verb};
use self::view::Setup;
use super::term;
use crate::ops::dashboard::{self as data, Snapshot, TaskKey};

/// Watch the tasks live in a terminal UI.
///
/// Shows the repository's tasks (with --all, those of every repository in the registry of
/// `git agent add`, too) with their status, agent, age, changes, tokens and cost, and a
/// queued task's place in the queue; the network pane lists every task's allowed and
/// refused connections (marked `!!`) as its gateway decides them, newest first. Enter opens
/// the output pane: the selected task's latest output, rendered as `git agent logs` does.
///
/// Keys act on the selected task by running the command you would type: `a` attach, `s`
/// shell, `l` logs, `r` review (the dashboard steps aside until they end), `w` allow a
/// domain (type it, then Enter), `x` stop and `P` purge (both ask first), `t` retry; their
/// messages show on the bottom line. `?` lists the keys, `q` quits.
///
/// The data is read in the background every two seconds and every engine request is
/// bounded in time: a slow or dead engine never freezes the screen, and the top line says
/// `engine unreachable` (statuses are then as the refs last recorded them). Needs a
/// terminal (80x24 is enough; no mouse, ASCII only); for scripts use `git agent list --json`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Also show the tasks of every registered repository (see `git agent add`).
    #[arg(long)]
    pub all: bool,
}

/// How often the data is read again.
const INTERVAL: Duration = Duration::from_secs(2);

/// The most one snapshot may take; its reads are bounded one by one, this bounds them all.
const GATHER_LIMIT: Duration = Duration::from_secs(30);

/// How long the terminal thread waits for a key before drawing again.
const TICK: Duration = Duration::from_millis(250);

pub async fn run(args: DashboardArgs) -> Result<i32> {
    if !term::stdin_is_tty() || !term::stdout_is_tty() {
        return Err(crate::error::hinted(
            "the dashboard needs a terminal",
            "run it in a terminal; for scripts, `git agent list --json` shows the same tasks",
        ));
    }
    let cwd = std::env::current_dir()?;
    let (repos, skipped) = data::repositories(&cwd, args.all);
    if repos.is_empty() && !args.all {
        return Err(crate::error::hinted(
            "not in a git repository: the dashboard shows a repository's tasks",
            "run it in a repository, or `git agent dashboard --all` for every registered one",
        ));
    }
    let scope = if args.all {
        format!("{} repositories", repos.len())
    } else {
        repos[0]
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let setup = Setup {
        all: args.all,
        scope: crate::error::sanitize(&scope),
    };
    let (snap_tx, snap_rx) = watch::channel(Snapshot::default());
    let (sel_tx, mut sel_rx) = watch::channel(None::<TaskKey>);
    let wake = Arc::new(Notify::new());
    let ui_wake = wake.clone();
    let notice = skipped.first().cloned();
    let mut ui =
        tokio::task::spawn_blocking(move || ui_loop(setup, snap_rx, sel_tx, ui_wake, notice));
    let ended = loop {
        let selected = sel_rx.borrow_and_update().clone();
        tokio::select! {
            r = &mut ui => break r,
            snap = tokio::time::timeout(GATHER_LIMIT, data::gather(&repos, selected.as_ref())) => {
                let snap = snap.unwrap_or_else(|_| {
                    // Keep what was seen, and say why it is not fresh.
                    let mut last = snap_tx.borrow().clone();
                    last.unreachable = Some(format!(
                        "the container engine did not answer within {}s",
                        GATHER_LIMIT.as_secs()
                    ));
                    last
                });
                snap_tx.send_replace(snap);
            }
        }
        tokio::select! {
            r = &mut ui => break r,
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = wake.notified() => {}
            _ = sel_rx.changed() => {}
        }
    };
    ended.map_err(|e| anyhow::anyhow!("the dashboard's terminal thread failed: {e}"))??;
    Ok(0)
}

/// The terminal in the dashboard's modes (raw, alternate screen, no cursor) while alive.
struct Screen {
    term: Terminal<CrosstermBackend<std::io::Stdout>>,
}

impl Screen {
    fn enter() -> Result<Screen> {
        let term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        let mut s = Screen { term };
        s.resume()?;
        Ok(s)
    }

    fn resume(&mut self) -> Result<()> {
        terminal::enable_raw_mode()?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        self.term.clear()?;
        Ok(())
    }

    fn suspend(&mut self) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.suspend();
    }
}

fn key_of(k: event::KeyEvent) -> Option<Key> {
    Some(match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Tab => Key::Tab,
        KeyCode::Char(c) => Key::Char(c),
        _ => return None,
    })
}

fn ui_loop(
    setup: Setup,
    mut snap_rx: watch::Receiver<Snapshot>,
    sel_tx: watch::Sender<Option<TaskKey>>,
    wake: Arc<Notify>,
    notice: Option<String>,
) -> Result<()> {
    let mut screen = Screen::enter()?;
    let mut state = State::new();
    state.notice = notice;
    let mut snap = Snapshot::default();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<String>();
    loop {
        if crate::interrupt::checkpoint().is_err() {
            return Ok(());
        }
        if snap_rx.has_changed().unwrap_or(false) {
            snap = snap_rx.borrow_and_update().clone();
            if let Some(selected) = state.follow(&snap.tasks) {
                sel_tx.send_replace(selected);
            }
        }
        while let Ok(message) = done_rx.try_recv() {
            state.notice = Some(message);
            wake.notify_one();
        }
        screen.term.draw(|f| view::draw(f, &snap, &state, &setup))?;
        if !event::poll(TICK)? {
            continue;
        }
        let Event::Key(k) = event::read()? else {
            continue;
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let Some(key) = key_of(k) else { continue };
        match state.on_key(key, &snap.tasks) {
            Action::None => {}
            Action::Quit => return Ok(()),
            Action::Select(selected) => {
                sel_tx.send_replace(selected);
            }
            Action::Run { task, verb } if verb.takes_terminal() => {
                screen.suspend();
                let said = in_foreground(&task, &verb);
                screen.resume()?;
                state.notice = Some(said);
                wake.notify_one();
            }
            Action::Run { task, verb } => {
                let line = verb.args(&task.name).join(" ");
                state.notice = Some(format!("running git agent {line} ..."));
                let done = done_tx.clone();
                std::thread::spawn(move || {
                    let _ = done.send(in_background(&task, &verb));
                });
            }
        }
    }
}

/// The binary's own command for `verb` on `task`, in the task's repository.
fn command(task: &TaskKey, verb: &Verb) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "git-agent".into());
    let mut cmd = Command::new(exe);
    cmd.args(verb.args(&task.name)).current_dir(&task.repo);
    cmd
}

/// Run a command that takes over the terminal; returns what to tell the user after.
///
/// It runs as the terminal's foreground process group of its own, as a shell runs a job:
/// Ctrl-C in it interrupts it, not the dashboard.
fn in_foreground(task: &TaskKey, verb: &Verb) -> String {
    use std::os::unix::process::CommandExt;
    let line = verb.args(&task.name).join(" ");
    let mut cmd = command(task, verb);
    // SAFETY: only async-signal-safe calls between fork and exec: the child takes the
    // terminal for its own process group (ignoring SIGTTOU while it does, as a background
    // group must), then restores SIGTTOU's default.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(0, libc::getpid());
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            Ok(())
        });
    }
    let status = cmd.status();
    // Take the terminal back (the dashboard is a background group until it does).
    // SAFETY: plain calls on fd 0 and the process's own signal disposition.
    unsafe {
        let old = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::tcsetpgrp(0, libc::getpgrp());
        libc::signal(libc::SIGTTOU, old);
    }
    let said = match &status {
        Ok(s) if s.success() => format!("git agent {line}: done"),
        Ok(s) => format!(
            "git agent {line}: failed (exit {})",
            s.code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "by a signal".into())
        ),
        Err(e) => format!("git agent {line}: cannot run: {e}"),
    };
    if verb.pauses_after() || !matches!(&status, Ok(s) if s.success()) {
        let mut err = std::io::stderr();
        let _ = write!(err, "\n{said}; press Enter to return to the dashboard ");
        let _ = err.flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
    }
    said
}

/// Run a command in the background (its output captured); returns its last message.
fn in_background(task: &TaskKey, verb: &Verb) -> String {
    let line = verb.args(&task.name).join(" ");
    let out = command(task, verb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            // The error (not its hint) when it failed, else its last line.
            let last = if o.status.success() {
                text.lines().rev().find(|l| !l.trim().is_empty())
            } else {
                text.lines()
                    .find(|l| l.starts_with("Error: "))
                    .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
            };
            let last = crate::error::sanitize(last.unwrap_or("").trim());
            if o.status.success() {
                format!("git agent {line}: done {last}")
            } else {
                format!("git agent {line}: failed: {last}")
            }
        }
        Err(e) => format!("git agent {line}: cannot run: {e}"),
    }
}
