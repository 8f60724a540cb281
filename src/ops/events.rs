//! What an operation tells its caller while it runs, instead of printing.
//!
//! An operation takes `&dyn Events` and emits [`Event`]s; the command line renders them on
//! stderr, tests collect them, a dashboard or server can forward them. Results and errors are
//! returned, never emitted.

use std::sync::Mutex;

use serde::Serialize;

/// One thing that happened during an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A step began (building an image, starting a container, fetching work, ...).
    Step {
        task: Option<String>,
        message: String,
    },
    /// Something the user should know about; the operation went on.
    Warning {
        task: Option<String>,
        message: String,
    },
    /// Another command holds the task; the operation waits for it.
    Waiting { task: String, holder: String },
    /// A line of output passed through from a build or a sandbox helper.
    Output { line: String },
    /// Counted work under way: `done` of `total` units of `what` (e.g. "re-creating
    /// commits"). Emitted at most every 100 ms while the work runs, and with `done ==
    /// total` at its end if any was emitted (quick work emits none); the renderer decides what
    /// to show (a bar on a terminal, sparse lines elsewhere).
    Progress {
        task: Option<String>,
        what: String,
        done: u64,
        total: u64,
    },
    /// Moved data under way: `done` bytes of `total` (0 when not known ahead) of `what`
    /// (e.g. "sending the repository"), `millis` after it began. Emitted at most every
    /// 100 ms once the transfer has run for about a second, and with `finished` at its end if
    /// any was emitted (a quick transfer emits none).
    Transfer {
        task: Option<String>,
        what: String,
        done: u64,
        total: u64,
        millis: u64,
        finished: bool,
    },
    /// A step of an image build began (e.g. `[3/12] RUN apt-get update`); the build's step
    /// before it, if any, ended.
    BuildStep { step: String },
    /// A line of an image build's output, control characters escaped. Every line goes to
    /// the build's log file too; a renderer shows these only when asked to be verbose.
    BuildOutput { line: String },
    /// An image build ended. When it failed, `tail` holds the last lines of its output
    /// (escaped); `log` is the file holding all of it, if one could be written.
    BuildEnd {
        ok: bool,
        tail: Vec<String>,
        log: Option<String>,
    },
}

impl Event {
    /// A step of an operation on `task` (or on none).
    pub fn step(task: Option<&str>, message: impl Into<String>) -> Event {
        Event::Step {
            task: task.map(str::to_string),
            message: message.into(),
        }
    }

    /// A warning about `task` (or about none).
    pub fn warning(task: Option<&str>, message: impl Into<String>) -> Event {
        Event::Warning {
            task: task.map(str::to_string),
            message: message.into(),
        }
    }
}

/// Where an operation's events go.
pub trait Events: Send + Sync {
    fn emit(&self, event: Event);
}

/// Drops every event (for callers that only want the result).
pub struct NoEvents;

impl Events for NoEvents {
    fn emit(&self, _: Event) {}
}

impl<F: Fn(Event) + Send + Sync> Events for F {
    fn emit(&self, event: Event) {
        self(event)
    }
}

/// Keeps every event, in order (for tests and for callers that render at the end).
#[derive(Default)]
pub struct Collected(Mutex<Vec<Event>>);

impl Collected {
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Events for Collected {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_tagged_for_json_streams() {
        let e = Event::Waiting {
            task: "t".into(),
            holder: "sync (pid 7)".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"waiting","task":"t","holder":"sync (pid 7)"}"#
        );
        let c = Collected::default();
        let sink: &dyn Events = &c;
        sink.emit(Event::step(Some("t"), "a"));
        sink.emit(Event::warning(None, "b"));
        assert_eq!(
            c.take(),
            vec![Event::step(Some("t"), "a"), Event::warning(None, "b")]
        );
        assert!(c.take().is_empty());
        let p = Event::Progress {
            task: Some("t".into()),
            what: "re-creating commits".into(),
            done: 3,
            total: 10,
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"event":"progress","task":"t","what":"re-creating commits","done":3,"total":10}"#
        );
    }
}
