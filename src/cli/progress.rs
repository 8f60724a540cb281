//! How [`Event::Progress`](crate::ops::Event::Progress) shows on stderr: a bar with the
//! count, the rate and the time left on a terminal; off a terminal (a log, CI, a pipe)
//! sparse plain lines, the first after a second and then every few seconds, and a last
//! line when the work ends, so a quick operation says nothing. [`Event::Transfer`]
//! (moved bytes) shows the same way, with sizes and a rate.
//!
//! An image build ([`Event::BuildStep`], [`Event::BuildOutput`], [`Event::BuildEnd`]) shows
//! one line per step: on a terminal a spinner with the step's elapsed time, which stays as
//! a finished line when the next step begins; elsewhere a plain line as each step begins.
//! Its output is shown only when verbose ([`set_verbose`]); a failed build shows its last
//! lines and the path of its full log. Owns only display state; the operation decides
//! nothing about how progress looks.
//!
//! [`Event::Transfer`]: crate::ops::Event::Transfer
//! [`Event::BuildStep`]: crate::ops::Event::BuildStep
//! [`Event::BuildOutput`]: crate::ops::Event::BuildOutput
//! [`Event::BuildEnd`]: crate::ops::Event::BuildEnd

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
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
        let started = *self.started.get_or_insert(now);
        // Units per second since the work began.
        let millis = u64::try_from((now - started).as_millis()).unwrap_or(u64::MAX);
        let rate = (done.saturating_mul(1000)).checked_div(millis).unwrap_or(0);
        if done >= total {
            let shown = self.last.is_some();
            *self = Lines::default();
            return shown.then(|| format!("{what}: 100% ({total}/{total}), {rate}/s, done."));
        }
        if now - started < FIRST_AFTER || self.last.is_some_and(|l| now - l < EVERY) {
            return None;
        }
        self.last = Some(now);
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        Some(format!("{what}: {pct}% ({done}/{total}), {rate}/s"))
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

/// Print a line on stderr without tearing a progress bar or a build step on display.
pub fn line(text: &str) {
    let print = || match &*shown() {
        Shown::Bar(bar) => bar.suspend(|| eprintln!("{text}")),
        _ => eprintln!("{text}"),
    };
    match &*step() {
        Some(spinner) => spinner.suspend(print),
        None => print(),
    }
}

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Show everything an image build prints, as it comes, instead of one line per step.
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// The build step on display on a terminal.
static STEP: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn step() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    STEP.lock().unwrap_or_else(|e| e.into_inner())
}

/// The line a build step shows off a terminal.
pub fn step_line(step: &str) -> String {
    format!("git-agent: {step}")
}

/// A build step began (the one before it ended well).
pub fn build_step(text: &str) {
    if verbose() {
        return;
    }
    let mut current = step();
    if let Some(done) = current.take() {
        finish_step(&done, true);
    }
    if std::io::stderr().is_terminal() {
        let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        spinner.set_style(
            ProgressStyle::with_template("git-agent: {spinner} {wide_msg} {elapsed}")
                .expect("a valid step template"),
        );
        spinner.set_message(text.to_string());
        spinner.enable_steady_tick(Duration::from_millis(120));
        *current = Some(spinner);
    } else {
        drop(current);
        line(&step_line(text));
    }
}

/// The line a finished step leaves on a terminal `columns` wide: its mark, its text (cut
/// to fit) and how long it took.
pub fn done_line(ok: bool, step: &str, took: Duration, columns: usize) -> String {
    let mark = if ok { "✓" } else { "✗" };
    let took = took_text(took);
    let room = columns.saturating_sub("git-agent: ✓  ()".chars().count() + took.len());
    let mut text: String = step.chars().take(room).collect();
    if text.chars().count() < step.chars().count() {
        text.pop();
        text.push('…');
    }
    format!("git-agent: {mark} {text} ({took})")
}

/// A duration as a step's time: `0.4s`, `12s`, `2m05s`.
pub fn took_text(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// The width of the terminal on stderr.
fn stderr_columns() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct; the return value is checked.
    let cols = unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) == 0).then_some(ws.ws_col)
    };
    cols.filter(|c| *c > 0).map_or(80, usize::from)
}

/// A step's spinner gives way to the line the step leaves.
fn finish_step(spinner: &ProgressBar, ok: bool) {
    spinner.finish_and_clear();
    eprintln!(
        "{}",
        done_line(ok, &spinner.message(), spinner.elapsed(), stderr_columns())
    );
}

/// A line of a build's output: shown only when verbose.
pub fn build_output(text: &str) {
    if verbose() {
        line(text);
    }
}

/// What a build that ended shows: nothing when it went well; when it failed, its last lines
/// (unless they were all shown already) and where its full log is.
pub fn build_end_lines(ok: bool, tail: &[String], log: Option<&str>, verbose: bool) -> Vec<String> {
    if ok {
        return Vec::new();
    }
    let mut lines = Vec::new();
    if !verbose && !tail.is_empty() {
        lines.push(format!(
            "git-agent: the last {} lines of the build:",
            tail.len()
        ));
        lines.extend(tail.iter().map(|l| format!("  {l}")));
    }
    match log {
        Some(log) => lines.push(format!("git-agent: the full build log is in {log}")),
        None => lines.push("git-agent: no build log was kept (see the warning above)".into()),
    }
    lines
}

/// A build ended.
pub fn build_end(ok: bool, tail: &[String], log: Option<&str>) {
    if let Some(spinner) = step().take() {
        finish_step(&spinner, ok);
    }
    for l in build_end_lines(ok, tail, log, verbose()) {
        line(&l);
    }
}

/// What a transfer says: `what: 12.5 MiB of 40.0 MiB (31%), 4.1 MiB/s`.
pub fn transfer_text(what: &str, done: u64, total: u64, millis: u64, finished: bool) -> String {
    use indicatif::HumanBytes;
    let rate = (done * 1000).checked_div(millis).unwrap_or(0);
    let mut s = format!("{what}: {}", HumanBytes(done));
    if total > 0 && !finished {
        let pct = (done.min(total) * 100) / total;
        s.push_str(&format!(" of {} ({pct}%)", HumanBytes(total)));
    }
    s.push_str(&format!(", {}/s", HumanBytes(rate)));
    if finished {
        s.push_str(&format!(" in {:.1}s, done.", millis as f64 / 1000.0));
    }
    s
}

/// Plain transfer lines off a terminal: the first at once (the operation waits a moment
/// before it reports), then at most every few seconds, and the end.
#[derive(Debug, Default)]
pub struct TransferLines {
    last: Option<Instant>,
}

impl TransferLines {
    /// Whether a line is due at `now`; `finished` always is.
    pub fn due(&mut self, finished: bool, now: Instant) -> bool {
        if finished {
            *self = TransferLines::default();
            return true;
        }
        if self.last.is_some_and(|l| now - l < EVERY) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

enum TransferShown {
    Spinner(ProgressBar),
    Lines(TransferLines),
}

static TRANSFER: Mutex<Option<TransferShown>> = Mutex::new(None);

/// Render one transfer event.
pub fn transfer(what: &str, done: u64, total: u64, millis: u64, finished: bool) {
    let text = transfer_text(what, done, total, millis, finished);
    let mut current = TRANSFER.lock().unwrap_or_else(|e| e.into_inner());
    if current.is_none() {
        *current = Some(if std::io::stderr().is_terminal() {
            let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            spinner.set_style(
                ProgressStyle::with_template("git-agent: {spinner} {wide_msg}")
                    .expect("a valid transfer template"),
            );
            spinner.enable_steady_tick(Duration::from_millis(120));
            TransferShown::Spinner(spinner)
        } else {
            TransferShown::Lines(TransferLines::default())
        });
    }
    match current.as_mut() {
        Some(TransferShown::Spinner(spinner)) => {
            if finished {
                // The last word stays whole, wrapped if it must be, not cut at the width.
                spinner.finish_and_clear();
                eprintln!("git-agent: {text}");
            } else {
                spinner.set_message(text);
            }
        }
        Some(TransferShown::Lines(lines)) => {
            let due = lines.due(finished, Instant::now());
            if due {
                eprintln!("git-agent: {text}");
            }
        }
        None => {}
    }
    if finished {
        *current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_say_bytes_and_a_rate() {
        assert_eq!(
            transfer_text("sending the repository", 3 << 20, 12 << 20, 2000, false),
            "sending the repository: 3.00 MiB of 12.00 MiB (25%), 1.50 MiB/s"
        );
        assert_eq!(
            transfer_text("fetching the work", 5 << 20, 0, 1000, false),
            "fetching the work: 5.00 MiB, 5.00 MiB/s"
        );
        assert_eq!(
            transfer_text("fetching the work", 6 << 20, 0, 3000, true),
            "fetching the work: 6.00 MiB, 2.00 MiB/s in 3.0s, done."
        );
        assert_eq!(transfer_text("x", 10, 0, 0, false), "x: 10 B, 0 B/s");
    }

    #[test]
    fn transfer_lines_are_sparse_but_the_end_is_said() {
        let t0 = Instant::now();
        let mut l = TransferLines::default();
        assert!(l.due(false, t0));
        assert!(!l.due(false, t0 + Duration::from_secs(2)));
        assert!(l.due(false, t0 + Duration::from_secs(6)));
        assert!(l.due(true, t0 + Duration::from_secs(7)));
        assert!(
            l.due(false, t0 + Duration::from_secs(8)),
            "the next starts anew"
        );
    }

    #[test]
    fn a_failed_build_shows_its_tail_and_log_and_a_good_one_nothing() {
        let tail: Vec<String> = (0..3).map(|i| format!("out {i}")).collect();
        assert!(build_end_lines(true, &[], Some("/l"), false).is_empty());
        assert_eq!(
            build_end_lines(false, &tail, Some("/c/b.log"), false),
            [
                "git-agent: the last 3 lines of the build:",
                "  out 0",
                "  out 1",
                "  out 2",
                "git-agent: the full build log is in /c/b.log"
            ]
        );
        assert_eq!(
            build_end_lines(false, &tail, Some("/c/b.log"), true),
            ["git-agent: the full build log is in /c/b.log"],
            "verbose showed every line already"
        );
        assert_eq!(step_line("[2/9] RUN x"), "git-agent: [2/9] RUN x");
    }

    #[test]
    fn a_finished_step_is_one_line_that_fits() {
        assert_eq!(
            done_line(true, "[1/9] FROM base", Duration::from_millis(420), 80),
            "git-agent: ✓ [1/9] FROM base (0.4s)"
        );
        let long = format!("[5/9] RUN {}", "x".repeat(200));
        let l = done_line(false, &long, Duration::from_secs(125), 80);
        assert_eq!(l.chars().count(), 80, "{l}");
        assert!(
            l.starts_with("git-agent: ✗ [5/9] RUN xx") && l.ends_with("x… (2m05s)"),
            "{l}"
        );
        assert_eq!(took_text(Duration::from_secs(42)), "42s");
    }

    /// Off a terminal: nothing in the first second, then a line at most every five
    /// seconds with the rate so far, and the end said only when something was said before.
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
            Some("re-creating commits: 40% (400/1000), 363/s")
        );
        assert_eq!(slow.line(what, 500, 1000, at(3000)), None);
        assert_eq!(
            slow.line(what, 900, 1000, at(6300)).as_deref(),
            Some("re-creating commits: 90% (900/1000), 145/s")
        );
        assert_eq!(
            slow.line(what, 1000, 1000, at(6400)).as_deref(),
            Some("re-creating commits: 100% (1000/1000), 158/s, done.")
        );
        assert_eq!(
            slow.line(what, 1, 1000, at(6500)),
            None,
            "the next work starts quiet again"
        );
    }
}
