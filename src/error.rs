//! User-facing errors: what went wrong, and what to do about it.
//!
//! The layers below the operations return `anyhow::Error`s with context; where the user can
//! act on a failure they attach a [`Hint`]. Each operation returns its own typed error (see
//! [`crate::ops::OpError`]), whose hint is found by its type through one registry
//! (`OP_ERRORS`). Only the CLI layer renders errors (see `cli::report`).

use std::borrow::Cow;
use std::fmt;

/// An error the user can fix, with the next step to take.
#[derive(Debug)]
pub struct Hint {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hint {}

/// Build an error carrying a hint.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hint {
        message: message.into(),
        hint: hint.into(),
    })
}

/// Find the first hint anywhere in an error chain: a [`Hint`] (as the error, a context or a
/// cause), else the hint a typed error carries: an engine failure (e.g. how to start the
/// engine), a task-store failure (e.g. upgrade for a newer state format), or an operation's
/// own error enum. One lookup for every kind: errors are found by type, never by their text.
pub fn find_hint(err: &anyhow::Error) -> Option<Cow<'_, str>> {
    if let Some(h) = err.downcast_ref::<Hint>() {
        return Some(Cow::Borrowed(h.hint.as_str())).filter(|h| !h.trim().is_empty());
    }
    // An error that carries no hint of its own (an empty one) lets the search go on down.
    err.chain()
        .find_map(|e| hint_of(e).filter(|h| !h.trim().is_empty()))
}

/// The hint one error in a chain carries, by its type.
fn hint_of<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<Cow<'a, str>> {
    if let Some(h) = e.downcast_ref::<Hint>() {
        return Some(Cow::Borrowed(h.hint.as_str()));
    }
    if let Some(x) = e.downcast_ref::<crate::runtime::EngineError>() {
        return x.hint.as_deref().map(Cow::Borrowed);
    }
    if let Some(x) = e.downcast_ref::<crate::task::store::StoreError>() {
        return x.hint().map(Cow::Borrowed);
    }
    let op = operation_error(e)?;
    // An operation's error carried up without `into_report` still holds the error from
    // below: look into it.
    op.hint()
        .map(Cow::Owned)
        .or_else(|| op.below().and_then(find_hint))
}

/// An operation's error, seen through what `find_hint` and `is_interrupted` need of it.
trait OperationError {
    fn hint(&self) -> Option<String>;
    fn below(&self) -> Option<&anyhow::Error>;
}

impl<E: crate::ops::OpError> OperationError for E {
    fn hint(&self) -> Option<String> {
        crate::ops::OpError::hint(self)
    }
    fn below(&self) -> Option<&anyhow::Error> {
        crate::ops::OpError::below(self)
    }
}

type DynError = dyn std::error::Error + 'static;

type AsOperationError = for<'a> fn(&'a DynError) -> Option<&'a dyn OperationError>;

fn op<E: crate::ops::OpError>(e: &DynError) -> Option<&dyn OperationError> {
    e.downcast_ref::<E>().map(|x| x as &dyn OperationError)
}

/// Every operation's error type, found by its type: one line per type.
const OP_ERRORS: &[AsOperationError] = {
    use crate::ops::*;
    &[
        op::<allow::AllowError>,
        op::<attach::AttachError>,
        op::<attach::ShellError>,
        op::<commit::CommitError>,
        op::<compare::CompareError>,
        op::<merge::MergeError>,
        op::<doctor::DoctorError>,
        op::<follow::FollowError>,
        op::<doctor::PanicError>,
        op::<gc::GcError>,
        op::<image::ImageError>,
        op::<images::ImagesError>,
        op::<inspect::InspectError>,
        op::<logs::LogsError>,
        op::<preview::PreviewError>,
        op::<push::PushError>,
        op::<remove::RemoveError>,
        op::<restart::RestartError>,
        op::<review::ReviewError>,
        op::<setup::SetupError>,
        op::<spawn::SpawnError>,
        op::<stop::StopError>,
        op::<sync::SyncError>,
        op::<crate::git::promote::PromoteError>,
        op::<check::CheckError>,
        op::<update::UpdateError>,
        op::<queue::QueueError>,
        op::<serve::ServeError>,
        op::<wait::WaitError>,
        op::<retry::RetryError>,
        op::<followup::ContinueError>,
        op::<gate::GateError>,
        op::<hooks::HooksError>,
    ]
};

/// `e` as an operation's error, when it is one of [`OP_ERRORS`].
fn operation_error(e: &DynError) -> Option<&dyn OperationError> {
    OP_ERRORS.iter().find_map(|as_op| as_op(e))
}

/// The lines `cli::report` prints for an error: `Error:`, each cause the message does not
/// already contain (`Caused by:`), then `Hint:`. Empty causes are dropped and a dangling
/// `: ` at the end of a line (a message built around an empty detail) is cut, so the user
/// never reads a colon followed by nothing.
pub fn render(err: &anyhow::Error) -> Vec<String> {
    let head = tidy(&err.to_string());
    let head = if head.is_empty() {
        "the command failed without saying why".to_string()
    } else {
        head
    };
    let mut lines = vec![format!("Error: {head}")];
    let mut shown = head.clone();
    for cause in err.chain().skip(1) {
        let c = tidy(&cause.to_string());
        if c.is_empty() || shown.contains(c.as_str()) {
            continue;
        }
        shown.push('\n');
        shown.push_str(&c);
        lines.push(format!("Caused by: {c}"));
    }
    if let Some(h) = find_hint(err) {
        lines.push(format!("Hint: {}", tidy(&h)));
    }
    lines
}

/// A message without trailing whitespace or dangling separators (`: `, `:`).
fn tidy(text: &str) -> String {
    let mut t = text.trim_end();
    while let Some(rest) = t.strip_suffix(':') {
        t = rest.trim_end();
    }
    t.to_string()
}

/// What a process's exit code says about how it ended, for messages that would otherwise
/// show only a number: 128+N is death by signal N (137: SIGKILL, which in a container is
/// most often the memory limit).
pub fn exit_meaning(code: i64) -> Option<&'static str> {
    match code {
        137 => Some(
            "killed (SIGKILL): most often the memory limit (agent.memory), else a stop, a timeout or another limit",
        ),
        143 => Some("terminated (SIGTERM): the task was stopped"),
        139 => Some("crashed (SIGSEGV)"),
        134 => Some("aborted (SIGABRT)"),
        130 => Some("interrupted (SIGINT)"),
        126 => Some("the command is not executable"),
        127 => Some("the command was not found"),
        -1 => Some("the engine did not report an exit code"),
        c if c > 128 && c < 128 + 65 => Some("killed by a signal"),
        _ => None,
    }
}

/// `exit N: <what the process said>` for an error message; when the process said nothing,
/// what the exit code means instead, never an empty detail.
pub fn exit_detail(code: i64, stderr: &[u8]) -> String {
    let said = sanitize(String::from_utf8_lossy(stderr).trim());
    match (said.is_empty(), exit_meaning(code)) {
        (false, _) => format!("exit {code}: {said}"),
        (true, Some(meaning)) => format!("exit {code}: {meaning}; it printed nothing"),
        (true, None) => format!("exit {code}; it printed nothing"),
    }
}

/// Raised when the user interrupts a command (Ctrl-C) after cleanup has run.
#[derive(Debug)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Was this error caused by Ctrl-C, anywhere in its chain (a command that wraps the
/// interruption in its own context still exits 130)?
pub fn is_interrupted(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Interrupted>().is_some()
        || err.chain().any(|e| {
            e.is::<Interrupted>()
                || operation_error(e)
                    .and_then(OperationError::below)
                    .is_some_and(is_interrupted)
        })
}

/// Make text from a sandbox safe to print on a terminal: control characters and escape
/// sequences become visible `\xNN` escapes, so a hostile task cannot drive the user's terminal,
/// and bidirectional-text controls become `\u{NNNN}`, so it cannot make a name read as another.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_is_found_through_context() {
        let err = hinted("no engine", "start dockerd").context("spawn failed");
        assert_eq!(find_hint(&err).as_deref(), Some("start dockerd"));
        assert_eq!(err.to_string(), "spawn failed");
    }

    /// One case per registered operation error: its hint, found through an anyhow chain
    /// with context (a typed variant), or the hint of the error from below it passes on.
    #[test]
    fn every_operation_error_hint_is_found_by_its_type() {
        use crate::ops::OpError;
        use crate::ops::*;
        fn typed<E: OpError>(e: E) -> (anyhow::Error, String) {
            let hint = e.hint().expect("a variant with a hint");
            (anyhow::Error::new(e).context("the command failed"), hint)
        }
        fn below<E: OpError + From<anyhow::Error>>(
            _: fn(anyhow::Error) -> E,
        ) -> (anyhow::Error, String) {
            let e = E::from(hinted("the engine said no", "fix the engine"));
            assert_eq!(e.hint(), None, "{e:?}");
            (
                e.into_report().context("the command failed"),
                "fix the engine".into(),
            )
        }
        let task = || "t".to_string();
        let cases = [
            typed(allow::AllowError::StillSpawning { task: task() }),
            typed(attach::AttachError::NotRunning { task: task() }),
            typed(attach::ShellError::NoWorkspace { task: task() }),
            typed(commit::CommitError::NoMessage),
            below(doctor::DoctorError::Other),
            typed(follow::FollowError::Off),
            typed(doctor::PanicError::Unreachable {
                detail: "gone".into(),
            }),
            below(image::ImageError::Other),
            below(inspect::InspectError::Other),
            typed(logs::LogsError::NoOutput { task: task() }),
            typed(preview::PreviewError::NoPreview { task: task() }),
            typed(push::PushError::NoRemote),
            typed(remove::RemoveError::PurgedMeanwhile { task: task() }),
            typed(restart::RestartError::Purged { task: task() }),
            below(review::ReviewError::Other),
            below(setup::SetupError::Other),
            typed(spawn::SpawnError::TaskExists { task: task() }),
            typed(stop::StopError::NoContainer { task: task() }),
            typed(gc::GcError::Remove {
                volume: "v".into(),
                detail: "in use".into(),
            }),
            below(sync::SyncError::Other),
            typed(crate::git::promote::PromoteError::Identity),
            typed(check::CheckError::BadRef {
                task: task(),
                leaf: "head".into(),
                value: "x".into(),
            }),
            typed(update::UpdateError::Running { task: task() }),
            typed(queue::QueueError::NoParent { task: task() }),
            typed(serve::ServeError::NoWorkers),
            below(wait::WaitError::Other),
            typed(compare::CompareError::TooFew { found: 1 }),
            typed(merge::MergeError::Dirty),
            typed(retry::RetryError::PurgedRefs { task: task() }),
            typed(followup::ContinueError::Running { task: task() }),
            typed(gate::GateError::Unpromoted {
                commits: vec![gate::RawCommit {
                    commit: "a".repeat(40),
                    task: task(),
                }],
            }),
            typed(hooks::HooksError::Unknown { name: task() }),
            typed(images::ImagesError::NotOurs(
                "git-agent:0123456789ab".into(),
            )),
        ];
        assert_eq!(cases.len(), OP_ERRORS.len(), "one case per registered type");
        for (e, hint) in cases {
            assert_eq!(find_hint(&e).as_deref(), Some(hint.as_str()), "{e:?}");
            assert_eq!(render(&e).last(), Some(&format!("Hint: {hint}")));
        }
    }

    /// An operation's error carried up inside an `anyhow::Error` without `into_report` (its
    /// `Other` then hides the error from below in the chain) keeps its hint and Ctrl-C.
    #[test]
    fn an_operation_error_wrapped_as_it_is_still_shows_what_it_holds() {
        use crate::ops::sync::SyncError;
        let e = anyhow::Error::new(SyncError::Other(hinted("busy", "wait for it")))
            .context("review failed");
        assert_eq!(find_hint(&e).as_deref(), Some("wait for it"));
        assert_eq!(
            render(&e),
            [
                "Error: review failed",
                "Caused by: busy",
                "Hint: wait for it"
            ]
        );
        let e = anyhow::Error::new(SyncError::Other(anyhow::Error::new(Interrupted)))
            .context("review failed");
        assert!(is_interrupted(&e));
        let e = anyhow::Error::new(SyncError::Other(anyhow::anyhow!("no")));
        assert!(!is_interrupted(&e));
        assert_eq!(find_hint(&e), None);
    }

    #[test]
    fn render_never_prints_an_empty_cause_or_a_dangling_colon() {
        let err = anyhow::anyhow!("")
            .context("the sandbox could not produce its work (exit 137): ")
            .context("sync failed:");
        let lines = render(&err);
        assert_eq!(
            lines,
            vec![
                "Error: sync failed".to_string(),
                "Caused by: the sandbox could not produce its work (exit 137)".to_string(),
            ]
        );
        for l in render(&anyhow::anyhow!("  ")) {
            assert!(!l.trim_end().ends_with(':'), "{l:?}");
            assert_ne!(l.trim(), "Error:");
        }
        let hinted_err = hinted("cannot do it: ", "run `git agent doctor`").context("outer");
        let lines = render(&hinted_err);
        assert_eq!(lines.last().unwrap(), "Hint: run `git agent doctor`");
        assert!(
            lines
                .iter()
                .all(|l| !l.ends_with(": ") && !l.ends_with(':'))
        );
    }

    #[test]
    fn a_hint_given_as_context_is_found() {
        let err = anyhow::anyhow!("HTTP 409")
            .context(Hint {
                message: "name taken".into(),
                hint: "wait".into(),
            })
            .context("spawn failed");
        assert_eq!(find_hint(&err).as_deref(), Some("wait"));
    }

    #[test]
    fn exit_detail_says_what_a_silent_exit_means() {
        assert_eq!(exit_detail(2, b"fatal: bad\n"), "exit 2: fatal: bad");
        let killed = exit_detail(137, b"");
        assert!(killed.starts_with("exit 137: killed"), "{killed}");
        assert!(killed.contains("memory"), "{killed}");
        assert_eq!(exit_detail(3, b" \n"), "exit 3; it printed nothing");
        assert!(!exit_detail(143, b"").ends_with(": "));
    }

    #[test]
    fn sanitize_escapes_terminal_controls() {
        assert_eq!(sanitize("ok\n\x1b[2Jx\r"), "ok\n\\x1b[2Jx\\x0d");
        assert_eq!(sanitize("tab\there"), "tab\there");
        assert_eq!(sanitize("evil\u{202e}hs.txt é"), "evil\\u{202e}hs.txt é");
    }
}
