//! The user's own commands run when a task's run ends: `agent.onFinish` (its command exited
//! 0), `agent.onFail` (it exited non-zero, or its container vanished), or when it waits for
//! input: `agent.onWait`; from git config only, and a desktop notification (`notify-send`,
//! when `agent.notify=true` and it is on PATH).
//!
//! The end events are fired by the command that records the run's end
//! ([`crate::sandbox::refresh`]: the follower, `sync`, `wait`, `review`, ... whichever comes
//! first). That record is a compare-and-swap change of the task's state carrying
//! `<event>:<run>` in `events_fired`, so exactly one command fires each event of each run,
//! once. A wait is fired by the task's follower ([`crate::ops::follow`]) when the sandbox's
//! waiting marker shows an episode it has not fired yet: the same kind of change records
//! `wait:<episode>` ([`claim_wait`]), so each waiting episode fires once.
//!
//! A command runs on the host through `sh -c <the user's setting>`, detached (its output in
//! `<common-dir>/git-agent/hooks/events.log`), from the work tree's top. What it is told
//! about the task is in environment variables only (`GIT_AGENT_EVENT`, `GIT_AGENT_TASK`,
//! `GIT_AGENT_STATUS`, `GIT_AGENT_EXIT_CODE`, `GIT_AGENT_REASON`: for a wait, the agent's
//! message, checked by [`crate::ops::follow`] to be one short printable line), never put into the
//! command's text: a task's name, exit code or reason cannot become shell code. This module
//! must not print; a hook that cannot start is left out silently (the task's end is recorded).

use std::process::Command;

use crate::git::{Config, Git};
use crate::task::{Status, TaskRecord};

/// An event of a task the user can hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEvent {
    Finish,
    Fail,
    /// The agent waits for input (see [`claim_wait`]).
    Wait,
}

impl TaskEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskEvent::Finish => "finish",
            TaskEvent::Fail => "fail",
            TaskEvent::Wait => "wait",
        }
    }

    /// The git config key holding the user's command.
    pub fn key(self) -> &'static str {
        match self {
            TaskEvent::Finish => "agent.onFinish",
            TaskEvent::Fail => "agent.onFail",
            TaskEvent::Wait => "agent.onWait",
        }
    }

    /// The event a run that ended as `record` says is.
    pub fn of(record: &TaskRecord) -> Option<TaskEvent> {
        match (record.status, record.exit_code) {
            (Status::Exited, Some(0)) => Some(TaskEvent::Finish),
            (Status::Exited, _) | (Status::Failed, _) => Some(TaskEvent::Fail),
            _ => None,
        }
    }

    /// The mark `events_fired` keeps for this event of the record's current run.
    pub fn mark(self, record: &TaskRecord) -> String {
        format!("{}:{}", self.as_str(), record.restarts)
    }
}

/// Mark the event of a run that just ended in `record` (inside the change that records the
/// end), returning it when it was not marked before: the caller fires it once its change
/// was written.
pub fn claim(record: &mut TaskRecord) -> Option<TaskEvent> {
    let event = TaskEvent::of(record)?;
    let mark = event.mark(record);
    if record.events_fired.contains(&mark) {
        return None;
    }
    record.events_fired.push(mark);
    Some(event)
}

/// Mark waiting episode `episode` of a running task as fired (inside the change that records
/// it), returning true when it was not before: the caller fires [`TaskEvent::Wait`] once its
/// change was written. Episodes count up in the sandbox, so one not above the last fired is
/// old (or a replay); only the last mark is kept.
pub fn claim_wait(record: &mut TaskRecord, episode: u64) -> bool {
    if record.status != Status::Running {
        return false;
    }
    let fired = record
        .events_fired
        .iter()
        .filter_map(|m| m.strip_prefix("wait:")?.parse::<u64>().ok())
        .max();
    if fired.is_some_and(|f| episode <= f) {
        return false;
    }
    record.events_fired.retain(|m| !m.starts_with("wait:"));
    record.events_fired.push(format!("wait:{episode}"));
    true
}

/// Is a command or a notification configured for `event`? (The follower only looks for
/// waits when one is.)
pub fn wanted(config: &Config, event: TaskEvent) -> bool {
    config
        .get(event.key())
        .is_some_and(|c| !c.trim().is_empty())
        || config.bool("agent.notify", false).unwrap_or(false)
}

/// Run the user's command for `event` of `record` and notify, when configured; never fails.
/// A command git-agent started for itself (`GIT_AGENT_NESTED`, e.g. the commit-message
/// helper's scratch task) claims its events without firing them.
pub fn fire(git: &Git, config: &Config, record: &TaskRecord, event: TaskEvent) {
    if std::env::var_os("GIT_AGENT_NESTED").is_some() {
        return;
    }
    let log = crate::task::lock::state_dir(git)
        .join("hooks")
        .join("events.log");
    let code = record.exit_code.map(|c| c.to_string()).unwrap_or_default();
    let vars = [
        ("GIT_AGENT_EVENT", event.as_str().to_string()),
        ("GIT_AGENT_TASK", record.name.clone()),
        ("GIT_AGENT_STATUS", record.status.as_str().to_string()),
        ("GIT_AGENT_EXIT_CODE", code.clone()),
        (
            "GIT_AGENT_REASON",
            record.reason.clone().unwrap_or_default(),
        ),
    ];
    if let Some(command) = config.get(event.key()).filter(|c| !c.trim().is_empty()) {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(command).current_dir(&git.dir);
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let _ = crate::detach::spawn(cmd, &log);
    }
    if config.bool("agent.notify", false).unwrap_or(false)
        && let Some(notify) = on_path("notify-send")
    {
        let summary = match event {
            TaskEvent::Finish => format!("git-agent: task {} finished", record.name),
            TaskEvent::Fail => format!("git-agent: task {} failed", record.name),
            TaskEvent::Wait => format!("git-agent: task {} waits for input", record.name),
        };
        let body = match (&record.exit_code, &record.reason) {
            (_, Some(r)) => r.clone(),
            (Some(c), None) => format!("exit code {c}"),
            (None, None) => String::new(),
        };
        let mut cmd = Command::new(notify);
        // Arguments, not a shell line; `--` so a value cannot be taken for an option.
        cmd.args(["--app-name=git-agent", "--"])
            .arg(summary)
            .arg(body)
            .current_dir(&git.dir);
        let _ = crate::detach::spawn(cmd, &log);
    }
}

fn on_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_of_a_run_is_claimed_once() {
        let mut r = TaskRecord {
            status: Status::Exited,
            exit_code: Some(0),
            ..Default::default()
        };
        assert_eq!(claim(&mut r), Some(TaskEvent::Finish));
        assert_eq!(claim(&mut r), None);
        // A restarted task's next run has events of its own.
        r.restarts = 1;
        r.exit_code = Some(2);
        assert_eq!(claim(&mut r), Some(TaskEvent::Fail));
        assert_eq!(r.events_fired, vec!["finish:0", "fail:1"]);
        r.status = Status::Running;
        assert_eq!(claim(&mut r), None);
    }

    #[test]
    fn each_waiting_episode_is_claimed_once_and_only_while_running() {
        let mut r = TaskRecord {
            status: Status::Running,
            events_fired: vec!["finish:0".into()],
            ..Default::default()
        };
        assert!(claim_wait(&mut r, 1));
        assert!(!claim_wait(&mut r, 1));
        assert!(claim_wait(&mut r, 3));
        // An older episode (a marker put back by the agent) is not fired again.
        assert!(!claim_wait(&mut r, 2));
        assert_eq!(r.events_fired, vec!["finish:0", "wait:3"]);
        r.status = Status::Exited;
        assert!(!claim_wait(&mut r, 4));
    }
}
