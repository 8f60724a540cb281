//! The task model: names, the state record, and where a task's refs live.
//!
//! A task `<name>` owns the ref namespace `refs/agent/<name>/`:
//! - `base`  the commit the sandbox started from,
//! - `head`  the sandbox's branch as last synced,
//! - `wip`   a snapshot commit of its uncommitted changes (only while there are some),
//! - `state` a commit chain whose tree holds `task.toml` and `prompt.md`; every state change
//!   is a new commit, applied with a compare-and-swap ref update (see [`store`]).

pub mod lock;
pub mod merge;
pub mod name;
pub mod queue;
pub mod remote;
pub mod store;
pub mod trash;
pub mod usage;

use serde::{Deserialize, Serialize};

pub use merge::Merge;
pub use name::TaskName;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Refs written, sandbox being set up.
    #[default]
    Creating,
    /// The task's command is running.
    Running,
    /// The command finished (see `exit_code`).
    Exited,
    /// Stopped by the user before it finished.
    Stopped,
    /// Setting up the sandbox failed.
    Failed,
    /// Added with `git agent add`: waits for `git agent serve` to start it.
    Queued,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
            Status::Queued => "queued",
        }
    }
}

/// Runtime objects that belong to a task (ids or names on the container engine).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    pub image: String,
    pub image_id: String,
    pub container: Option<String>,
    pub volume: Option<String>,
    /// The task's internal network while its run has one: a finished run gives it back (see
    /// [`crate::sandbox::network`]), `restart` makes a new one.
    pub network: Option<String>,
    /// The IPv4 subnet (`a.b.c.d/n`) git-agent gave that network from `agent.subnets`.
    /// Absent in records from before git-agent chose subnets (the engine chose them).
    #[serde(default)]
    pub subnet: Option<String>,
    /// The volume holding the task user's home (agent sessions), if any.
    #[serde(default)]
    pub home_volume: Option<String>,
    /// The task's egress gateway container, while it has one.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The volume holding the sandbox helper's state (read-only root only).
    #[serde(default)]
    pub state_volume: Option<String>,
    /// The repository's object cache volume the workspace borrows history from (mounted
    /// read-only into the task and its readers), if it does (see `sandbox::cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
}

/// What `commit` last produced, so a later `commit` continues from there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    /// The task tip (head or wip) that was promoted.
    pub task_tip: String,
    /// The host branch's commit that corresponds to it.
    pub branch_tip: String,
    /// Not empty when the branch holds only part of the work: the pathspecs promoted so far
    /// (`commit -- <path>...`). A later commit promotes the rest (see `git::promote::partial`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pathspec: Vec<String>,
    /// With `pathspec`: the task tip of the last full promotion (none: the base), where the
    /// next commit's replay of the task's commits starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_from: Option<String>,
}

impl Promotion {
    /// Does the branch hold only part of the task's work up to `task_tip`?
    pub fn is_partial(&self) -> bool {
        !self.pathspec.is_empty()
    }
}

/// The state record of one task, stored as `task.toml` in its state commit. `Default` is for
/// building records field by field (tests, new fields); every real record names its task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub name: String,
    pub agent: String,
    pub command: Vec<String>,
    /// The commit the task started from (includes the `--dirty` commit when used).
    pub base: String,
    /// The branch the task was started from, if any; `push` uses its remote.
    pub base_branch: Option<String>,
    pub dirty: bool,
    pub status: Status,
    pub exit_code: Option<i64>,
    /// Why the task failed or stopped, when known.
    pub reason: Option<String>,
    pub created: i64,
    pub started: Option<i64>,
    pub finished: Option<i64>,
    pub synced: Option<i64>,
    pub sandbox: Sandbox,
    pub promoted: Option<Promotion>,
    /// The prompt template used (`--type`), if any.
    #[serde(default)]
    pub template: Option<String>,
    /// The language stack of the image.
    #[serde(default)]
    pub stack: Option<String>,
    /// Seconds after which the run is stopped (`--timeout`).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Attached to a terminal (`spawn -i`) rather than headless.
    #[serde(default)]
    pub interactive: bool,
    /// Tasks started together by one `spawn --agent a,b` share a group.
    #[serde(default)]
    pub group: Option<String>,
    /// How many times `restart` recreated the container.
    #[serde(default)]
    pub restarts: u32,
    /// What the agent reported about its run (turns, tokens, cost, final message).
    #[serde(default)]
    pub stats: Option<crate::agent::claude::RunStats>,
    /// The task's egress policy (none for tasks from before egress control).
    #[serde(default)]
    pub network: Option<crate::egress::NetworkPolicy>,
    /// The container's root file system is read-only.
    #[serde(default)]
    pub read_only: bool,
    /// The agent-side read-only git guards are on (`--git-readonly`, see [`crate::guard`]).
    #[serde(default)]
    pub git_readonly: bool,
    /// The task's changes against its base, recorded when a sync brings work home (none in
    /// records from before it was recorded; a value that does not read as one is ignored).
    #[serde(default, deserialize_with = "lenient_changes")]
    pub changes: Option<Changes>,
    /// Kept outside `task.toml` (in `prompt.md`) so it stays readable with `git show`.
    #[serde(skip)]
    pub prompt: String,
    /// Set by `git agent merge` once the task's work is in one of the user's branches.
    #[serde(default)]
    pub merged: Option<Merge>,
    /// The spawn options of a queued task (`git agent add`), applied when a server starts it.
    #[serde(default)]
    pub queue: Option<queue::QueuedSpawn>,
    /// Who claimed the queued task to start it (see [`queue`]).
    #[serde(default)]
    pub claim: Option<queue::Claim>,
    /// The task this one starts after (`--after`): once it exited 0, on its work.
    #[serde(default)]
    pub after: Option<String>,
    /// The task this one retries (`git agent retry`), if it is a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// The tasks started as retries of this one, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried_as: Vec<String>,
    /// How many follow-up prompts `git agent continue` sent; the n-th is kept as
    /// `followup-<n>.md` in the state tree (`prompt.md` stays the original prompt).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub followups: u32,
    /// The event hooks (`agent.onFinish`, `agent.onFail`) fired for this task's runs, by the
    /// command that recorded the run's end (see [`crate::event_hooks`]): each fires once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events_fired: Vec<String>,
    /// The tip of the task's work whose review flags the user acknowledged
    /// (`git agent review <task> --ack`); the pre-push gate lets promoted work with flags
    /// through only once they were.
    #[serde(default)]
    pub reviewed: Option<String>,
    /// The engine the task runs on, by its name in `agent.engine.<name>.url` (none: the
    /// environment's engine; see [`crate::runtime::engines`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The engine's OCI runtime the task's code runs under (`--oci-runtime`,
    /// `agent.ociRuntime`; see [`crate::sandbox::oci`]); `None`: the engine's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_runtime: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a task changed against its base (what `git diff --shortstat <base> <tip>` says),
/// computed once when a sync brings its work home so `list` reads it instead of diffing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The tip (the `wip` snapshot, else `head`) it was computed for: a summary is only
    /// shown while the task's tip is still this commit.
    pub tip: String,
    pub files: u64,
    pub insertions: u64,
    pub deletions: u64,
}

impl Changes {
    /// The summary for `tip`, if this one was computed for it.
    pub fn for_tip(&self, tip: &str) -> Option<&Changes> {
        (self.tip == tip).then_some(self)
    }
}

/// A `changes` table that is not a summary (bad types, negative counts, a tip that is no
/// commit id) reads as none, so the task still lists and its summary is computed again.
fn lenient_changes<'de, D>(d: D) -> Result<Option<Changes>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = toml::Value::deserialize(d)?;
    Ok(Changes::deserialize(value).ok().filter(|c| {
        c.tip.len() == 40
            && c.tip
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }))
}

/// Ref names of a task's namespace (a fetched task's, `<remote>/<task>`, are under
/// [`remote::NAMESPACE`]).
pub fn ref_name(task: &str, leaf: &str) -> String {
    format!("{}{leaf}", remote::prefix(task))
}

/// The host branch a task's work is promoted to.
pub fn branch_name(task: &str) -> String {
    format!("agent/{task}")
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A short human age: `42s`, `5m`, `3h`, `2d`.
pub fn age(since: i64, now: i64) -> String {
    let s = (now - since).max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(age(100, 100), "0s");
        assert_eq!(age(0, 59), "59s");
        assert_eq!(age(0, 60), "1m");
        assert_eq!(age(0, 7200), "2h");
        assert_eq!(age(0, 3 * 86400 + 5), "3d");
        assert_eq!(age(10, 0), "0s");
    }

    /// A record written before subnets were recorded reads as one without a subnet, and a
    /// record with one keeps it.
    #[test]
    fn records_without_a_subnet_stay_readable() {
        let old = "image = \"i\"\nimage_id = \"sha256:1\"\ncontainer = \"c\"\nvolume = \"v\"\nnetwork = \"n\"\n";
        let s: Sandbox = toml::from_str(old).unwrap();
        assert_eq!(s.network.as_deref(), Some("n"));
        assert_eq!(s.subnet, None);
        let with = Sandbox {
            subnet: Some("10.242.0.16/28".into()),
            ..s
        };
        let text = toml::to_string(&with).unwrap();
        assert_eq!(toml::from_str::<Sandbox>(&text).unwrap(), with);
    }

    #[test]
    fn ref_names_live_under_one_namespace() {
        assert_eq!(ref_name("fix-1", "state"), "refs/agent/fix-1/state");
        assert_eq!(
            ref_name("origin/fix-1", "state"),
            "refs/agent-remotes/origin/fix-1/state"
        );
        assert_eq!(branch_name("fix-1"), "agent/fix-1");
    }
}
