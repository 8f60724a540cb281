//! How [`Event::Progress`](crate::ops::Event::Progress) shows on stderr: a bar with the
//! count, the rate and the time left on a terminal; off a terminal (a log, CI, a pipe)
//! sparse plain lines, the first after a second and then every few seconds, and a last
//! line when the work ends, so a quick operation says nothing. Owns only display state;
//! the operation decides nothing about how progress looks.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Plain progress lines off a terminal: when to print one, and what it says.
#[derive(Debug, Default)]
pub struct Lines {
    started: Option<Instant>,
    last: Option<Instant>,
}

/// Quiet for this long after work starts.
const FIRST_AFTER: Duration = Duration::from_secs(1);
/// Then a line at most this often.
const EVERY: Duration = Duration::from_secs(5);

impl Lines {
    /// The line to print for `done` of `total` seen at `now`, if one is due.
    pub fn line(&mut self, what: &str, done: u64, total: u64, now: Instant) -> Option<String> {
        if done >= total {
            let shown = self.last.is_some();
            *self = Lines::default();
            return shown.then(|| format!("{what}: 100% ({total}/{total}), done."));
        }
        let started = *self.started.get_or_insert(now);
        if now - started < FIRST_AFTER || self.last.is_some_and(|l| now - l < EVERY) {
            return None;
        }
        self.last = Some(now);
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        Some(format!("{what}: {pct}% ({done}/{total})"))
    }
}

/// What is on display now.
enum Shown {
    Nothing,
    Bar(ProgressBar),
    Lines(Lines),
}

static SHOWN: Mutex<Shown> = Mutex::new(Shown::Nothing);

fn shown() -> std::sync::MutexGuard<'static, Shown> {
    SHOWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Render one progress event.
pub fn progress(what: &str, done: u64, total: u64) {
    let mut shown = shown();
    if matches!(*shown, Shown::Nothing) {
        if done >= total {
            return;
        }
        *shown = if std::io::stderr().is_terminal() {
            Shown::Bar(bar(what, total))
        } else {
            Shown::Lines(Lines::default())
        };
    }
    match &mut *shown {
        Shown::Bar(bar) => {
            bar.set_length(total);
            bar.set_position(done.min(total));
            if done >= total {
                bar.finish();
                *shown = Shown::Nothing;
            }
        }
        Shown::Lines(lines) => {
            if let Some(line) = lines.line(what, done, total, Instant::now()) {
                eprintln!("git-agent: {line}");
            }
            if done >= total {
                *shown = Shown::Nothing;
            }
        }
        Shown::Nothing => {}
    }
}

fn bar(what: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "git-agent: {msg} [{wide_bar}] {human_pos}/{human_len} ({rate}, {eta} left)",
    )
    .expect("a valid progress template")
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}/s", state.per_sec());
        },
    );
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Print a line on stderr without tearing a progress bar on display.
pub fn line(text: &str) {
    match &*shown() {
        Shown::Bar(bar) => bar.suspend(|| eprintln!("{text}")),
        _ => eprintln!("{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Off a terminal: nothing in the first second, then a line at most every five
    /// seconds, and the end said only when something was said before.
    #[test]
    fn plain_lines_are_sparse_and_quick_work_says_nothing() {
        let what = "re-creating commits";
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut quick = Lines::default();
        assert_eq!(quick.line(what, 1, 10, at(0)), None);
        assert_eq!(quick.line(what, 5, 10, at(900)), None);
        assert_eq!(quick.line(what, 10, 10, at(950)), None);

        let mut slow = Lines::default();
        assert_eq!(slow.line(what, 1, 1000, at(100)), None);
        assert_eq!(
            slow.line(what, 400, 1000, at(1200)).as_deref(),
            Some("re-creating commits: 40% (400/1000)")
        );
        assert_eq!(slow.line(what, 500, 1000, at(3000)), None);
        assert_eq!(
            slow.line(what, 900, 1000, at(6300)).as_deref(),
            Some("re-creating commits: 90% (900/1000)")
        );
        assert_eq!(
            slow.line(what, 1000, 1000, at(6400)).as_deref(),
            Some("re-creating commits: 100% (1000/1000), done.")
        );
        assert_eq!(
            slow.line(what, 1, 1000, at(6500)),
            None,
            "the next work starts quiet again"
        );
    }
}
